// Package refvec finds and reads the reference vectors that prove egg's parity with
// the original PyTorch code (see ../shared/refvectors/README.md).
//
// Cases are discovered by reading every */config.json under the folder named by the
// environment variable EGG_REFVECTORS (default: ../shared/refvectors relative to the
// repository root) and dispatching on their "kind"; nothing is hard-coded.
package refvec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"egg/checkpoint"
)

// Case is one folder of reference vectors.
type Case struct {
	Name   string                     // folder name, used as the subtest name
	Dir    string                     // absolute path of the folder
	Kind   string                     // the config's "kind"
	Config map[string]json.RawMessage // the whole config.json
}

// Dir returns the reference-vector folder: $EGG_REFVECTORS, or ../shared/refvectors
// next to the repository root (found by walking up from the working directory to go.mod).
func Dir() (string, error) {
	if d := os.Getenv("EGG_REFVECTORS"); d != "" {
		return filepath.Abs(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared", "refvectors"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("refvec: no go.mod above %s", wd)
		}
	}
}

// Cases returns every case folder, sorted by name.
func Cases() ([]Case, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	cfgs, err := filepath.Glob(filepath.Join(dir, "*", "config.json"))
	if err != nil {
		return nil, err
	}
	var res []Case
	for _, p := range cfgs {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("refvec: %s: %w", p, err)
		}
		var kind string
		if err := json.Unmarshal(cfg["kind"], &kind); err != nil {
			return nil, fmt.Errorf("refvec: %s: no kind: %w", p, err)
		}
		res = append(res, Case{Name: filepath.Base(filepath.Dir(p)), Dir: filepath.Dir(p), Kind: kind, Config: cfg})
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Name < res[j].Name })
	return res, nil
}

// Run runs one subtest per case, named after its folder, calling the handler of the
// case's kind; a case whose kind has no handler is skipped by name. Tests call it from
// a TestParity function with the handlers for the kinds their package implements.
// When the folder is missing the whole test is skipped with a message.
func Run(t *testing.T, handlers map[string]func(t *testing.T, c Case)) {
	cases, err := Cases()
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		d, _ := Dir()
		t.Skipf("no reference vectors under %s (set EGG_REFVECTORS)", d)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			h, ok := handlers[c.Kind]
			if !ok {
				t.Skipf("kind %q is not checked by this package", c.Kind)
			}
			h(t, c)
		})
	}
}

// Get decodes config key into v, failing the test when it is missing or malformed.
func (c Case) Get(t testing.TB, key string, v any) {
	t.Helper()
	raw, ok := c.Config[key]
	if !ok {
		t.Fatalf("%s: config.json has no %q", c.Name, key)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: config key %q: %v", c.Name, key, err)
	}
}

// Has reports whether the config has key.
func (c Case) Has(key string) bool { _, ok := c.Config[key]; return ok }

// Open opens a file of the case (safetensors or .pt), failing the test on error.
func (c Case) Open(t testing.TB, file string) checkpoint.Reader {
	t.Helper()
	r, err := checkpoint.Open(filepath.Join(c.Dir, file))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Exists reports whether the case folder has file.
func (c Case) Exists(file string) bool {
	_, err := os.Stat(filepath.Join(c.Dir, file))
	return err == nil
}

// F32 reads a tensor as float32 with its shape, failing the test on error.
func F32(t testing.TB, r checkpoint.Reader, name string) ([]float32, []int) {
	t.Helper()
	info, ok := r.Info(name)
	if !ok {
		t.Fatalf("reference tensor %q missing", name)
	}
	v, err := r.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v, info.Shape
}

// Diff returns max|got - want| and the scale max(1, max|want|) used by the
// "relative to max(1, max|expected|)" tolerances.
func Diff(got, want []float32) (maxAbs, scale float64) {
	scale = 1
	for i := range want {
		if math.IsNaN(float64(want[i])) {
			return math.Inf(1), 1
		}
		scale = math.Max(scale, math.Abs(float64(want[i])))
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = math.Max(maxAbs, d)
	}
	return maxAbs, scale
}

// Close fails the test when got and want differ by more than tol * max(1, max|want|)
// (or have different lengths), and logs the error either way.
func Close(t testing.TB, what string, got, want []float32, tol float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return math.Inf(1)
	}
	d, s := Diff(got, want)
	rel := d / s
	if rel > tol {
		t.Errorf("%s: max abs diff %.3g (relative %.3g) exceeds %.1g", what, d, rel, tol)
	} else {
		t.Logf("%s: max abs diff %.3g (relative %.3g, tolerance %.1g)", what, d, rel, tol)
	}
	return rel
}

var numberRE = regexp.MustCompile(`\d+(\.\d+)?e-?\d+|\d+\.\d+`)

// Tol returns the n-th number (0-based) written in the case's "tolerance" string,
// e.g. 1e-4 for "max abs difference 1e-4 relative to max(1, max|expected|)".
func (c Case) Tol(t testing.TB, n int) float64 {
	t.Helper()
	var s string
	c.Get(t, "tolerance", &s)
	m := numberRE.FindAllString(s, -1)
	if n >= len(m) {
		t.Fatalf("%s: tolerance %q has no number %d", c.Name, s, n)
	}
	v, err := strconv.ParseFloat(m[n], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
