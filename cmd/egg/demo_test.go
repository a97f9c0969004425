package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/mei"
	"egg/models"
	"egg/recon"
	"egg/simulate"
	"egg/tensor"
)

// builtinGlobal returns global options whose built-in defaults are installed into a
// fresh temporary folder; it fails the test when this build has no defaults (see
// scripts/build-defaults.sh).
func builtinGlobal(t *testing.T) (*globalOptions, *models.Set) {
	t.Helper()
	if !models.Available() {
		t.Fatal("this build has no built-in defaults; run scripts/build-defaults.sh")
	}
	set, err := models.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &globalOptions{threads: 2, defaults: func() (*models.Set, error) { return set, nil }}, set
}

// missingGlobal returns global options whose built-in defaults are missing.
func missingGlobal() *globalOptions {
	return &globalOptions{threads: 2, defaults: func() (*models.Set, error) { return nil, models.ErrMissing }}
}

// allFinite reports whether every number in the decoded JSON value v is finite.
func allFinite(v any) bool {
	switch x := v.(type) {
	case float64:
		return !math.IsNaN(x) && !math.IsInf(x, 0)
	case map[string]any:
		for _, e := range x {
			if !allFinite(e) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !allFinite(e) {
				return false
			}
		}
	}
	return true
}

func TestDemo(t *testing.T) {
	g, set := builtinGlobal(t)
	o := &demoOptions{neurons: "0,1", seeds: "0", steps: "5", scale: demoScale, iterations: 20, top: 3,
		out: filepath.Join(t.TempDir(), "demo"), quiet: true, maxPatches: 200}
	var stdout bytes.Buffer
	o.stdout = &stdout
	if err := runDemo(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"egg/neuron_00000.png", "egg/neuron_00001.json", "ga/neuron_00000.png", "ga/neuron_00001.npy",
		"natural/neuron_00000.png", "natural/neuron_00001.json", "report.html", "summary.json"} {
		b, err := os.ReadFile(filepath.Join(o.out, f))
		if err != nil {
			t.Error(err)
			continue
		}
		if strings.HasSuffix(f, ".png") {
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(o.out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if !allFinite(raw) {
		t.Error("summary.json has a number that is not finite")
	}
	for _, method := range []string{"egg", "ga"} {
		m, ok := raw[method].(map[string]any)
		if !ok {
			t.Fatalf("summary.json has no %q object", method)
		}
		for _, k := range []string{"train", "within", "cross", "truth", "seconds_per_mei"} {
			if _, ok := m[k].(float64); !ok {
				t.Errorf("summary.json: %s.%s is %v, want a number", method, k, m[k])
			}
		}
		if m["seconds_per_mei"].(float64) <= 0 {
			t.Errorf("%s seconds per MEI %v", method, m["seconds_per_mei"])
		}
	}
	var sum demoSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.Settings.Neurons, []int{0, 1}) || sum.Settings.EGGSteps != 5 || sum.Settings.GAIterations != 20 ||
		sum.Settings.Norm != 8 || sum.Settings.Top != 3 || len(sum.Neurons) != 2 || sum.Neurons[0].Kind == "" || !sum.Settings.ClipX0 {
		t.Errorf("summary %+v", sum)
	}
	// Every model file is hashed.
	train, within, cross := set.Roles()
	want := map[string][]string{"train": train, "within": within, "cross": cross, "truth": {set.Truth}, "prior": {set.Prior}, "pool": {set.Pool}}
	for role, files := range want {
		got := sum.Models[role]
		if len(got) != len(files) {
			t.Errorf("%s: %d hashed files, want %d", role, len(got), len(files))
			continue
		}
		for i, f := range files {
			h, err := checkpoint.FileSHA256(f)
			if err != nil {
				t.Fatal(err)
			}
			if got[i].Path != f || got[i].SHA256 != h {
				t.Errorf("%s file %d: %+v, want %s %s", role, i, got[i], f, h)
			}
		}
	}
	page, err := os.ReadFile(filepath.Join(o.out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"natural images of neuron 1", "egg MEI of neuron 0", "ga MEI of neuron 1", "EGG against gradient ascent"} {
		if !bytes.Contains(page, []byte(w)) {
			t.Errorf("the report lacks %q", w)
		}
	}
	for _, w := range []string{"egg", "ga", "natural", "truth", "s/MEI", "report: " + filepath.Join(o.out, "report.html")} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("the table lacks %q:\n%s", w, stdout.String())
		}
	}
	// A second run resumes: nothing finished is recomputed.
	var before [][]byte
	files := []string{"egg/neuron_00000.json", "ga/neuron_00001.json", "natural/neuron_00000.json"}
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(o.out, f))
		before = append(before, b)
	}
	o.stdout = &bytes.Buffer{}
	if err := runDemo(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if b, _ := os.ReadFile(filepath.Join(o.out, f)); !bytes.Equal(b, before[i]) {
			t.Errorf("a resumed demo rewrote %s", f)
		}
	}
}

func TestDemoNeurons(t *testing.T) {
	_, set := builtinGlobal(t)
	m, err := simulate.LoadOn(tensor.CPU(1), set.Truth)
	if err != nil {
		t.Fatal(err)
	}
	got, err := demoNeurons("", m.Neurons(), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3*demoPerKind || !slices.IsSorted(got) {
		t.Fatalf("default neurons %v", got)
	}
	count := map[string]int{}
	d := m.Describe()
	for _, n := range got {
		count[d[n].Kind]++
	}
	for _, k := range []string{"angle", "curve", "texture"} {
		if count[k] != demoPerKind {
			t.Errorf("%d %s neurons among %v, want %d", count[k], k, got, demoPerKind)
		}
	}
	if got, err := demoNeurons("3-4", 100, nil); err != nil || !slices.Equal(got, []int{3, 4}) {
		t.Errorf("--neurons 3-4 gave %v, %v", got, err)
	}
	if got, err := demoNeurons("", 100, nil); err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Errorf("without kinds: %v, %v", got, err)
	}
}

func TestDemoErrors(t *testing.T) {
	base := demoOptions{seeds: "0", steps: "5", scale: 5, iterations: 10, top: 3, quiet: true}
	cases := []struct {
		name    string
		edit    func(o *demoOptions)
		missing bool // the build has no defaults
		usage   bool
		want    string
	}{
		{"no defaults", func(o *demoOptions) {}, true, false, "scripts/build-defaults.sh"},
		{"seeds", func(o *demoOptions) { o.seeds = "x" }, false, true, "--seeds"},
		{"iterations", func(o *demoOptions) { o.iterations = 0 }, false, true, "--iterations"},
		{"scale", func(o *demoOptions) { o.scale = -1 }, false, true, "--scale"},
		{"top", func(o *demoOptions) { o.top = 0 }, false, true, "--top"},
		{"norm", func(o *demoOptions) { o.norm = -2 }, false, true, "--norm"},
		{"neurons", func(o *demoOptions) { o.neurons = "100" }, false, true, "--neurons"},
	}
	withDefaults, _ := builtinGlobal(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base
			o.out = filepath.Join(t.TempDir(), "demo")
			c.edit(&o)
			g := withDefaults
			if c.missing {
				g = missingGlobal()
			}
			err := runDemo(context.Background(), g, &o)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v; want one line with %q", err, c.want)
			}
			var ue usageError
			if errors.As(err, &ue) != c.usage {
				t.Errorf("usage error: %v, want %v", errors.As(err, &ue), c.usage)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	g, set := builtinGlobal(t)
	train, within, cross := set.Roles()
	join := func(f []string) string { return strings.Join(f, ",") }
	type flags struct{ train, within, cross, truth, weights, preset, pool string }
	cases := []struct {
		name    string
		in      flags
		noPrior bool // the command needs no prior
		noPool  bool
		missing bool
		want    flags
		filled  bool // a set is returned
		err     string
	}{
		{"all given", flags{"t", "w", "c", "x", "p.safetensors", "", "pool.npz"}, false, false, false,
			flags{"t", "w", "c", "x", "p.safetensors", "", "pool.npz"}, false, ""},
		{"nothing given", flags{}, false, false, false,
			flags{join(train), join(within), join(cross), set.Truth, set.Prior, "", set.Pool}, true, ""},
		{"within given", flags{within: "mine.safetensors", weights: "p"}, false, false, false,
			flags{join(train), "mine.safetensors", join(cross), set.Truth, "p", "", set.Pool}, true, ""},
		{"train given", flags{train: "t"}, false, true, false, flags{train: "t", weights: set.Prior}, true, ""},
		{"preset given", flags{train: "t", preset: "64x64_diffusion"}, false, true, false, flags{train: "t", preset: "64x64_diffusion"}, false, ""},
		{"no prior needed", flags{}, true, true, false, flags{join(train), join(within), join(cross), set.Truth, "", "", ""}, true, ""},
		{"missing, needed", flags{pool: "p"}, false, false, true, flags{pool: "p"}, false, "no --train, --weights given and this egg was built without"},
		{"missing, not needed", flags{"t", "", "", "", "w", "", "p"}, false, false, true, flags{"t", "", "", "", "w", "", "p"}, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.in
			prior := priorOptions{weights: f.weights, preset: f.preset}
			df := defaultFlags{Train: &f.train, Within: &f.within, Cross: &f.cross, Truth: &f.truth, Prior: &prior, Pool: &f.pool}
			if c.noPrior {
				df.Prior = nil
			}
			if c.noPool {
				df.Pool = nil
			}
			gg := g
			if c.missing {
				gg = missingGlobal()
			}
			var logged []string
			got, err := applyDefaults(gg, df, func(format string, a ...any) { logged = append(logged, format) })
			if c.err != "" {
				var ue usageError
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "scripts/build-defaults.sh") || !errors.As(err, &ue) {
					t.Fatalf("error %v, want a usage error with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f.weights, f.preset = prior.weights, prior.preset
			if f != c.want {
				t.Errorf("flags %+v\nwant %+v", f, c.want)
			}
			if (got != nil) != c.filled || (len(logged) > 0) != c.filled {
				t.Errorf("set %v and %d log lines; want filled %v", got != nil, len(logged), c.filled)
			}
		})
	}
}

func TestScaledNorm(t *testing.T) {
	cases := []struct {
		paper float64
		h, w  int
		set   float32
		want  float32
		err   bool
	}{
		{paperNormMEI, 100, 100, 0, 25, false},
		{paperNormRecon, 100, 100, 0, 60, false},
		{paperNormMEI, 32, 32, 0, 8, false},
		{paperNormRecon, 32, 32, 0, 19.2, false},
		{paperNormMENI, 64, 64, 0, 32, false},
		{paperNormMEI, 32, 32, 12.5, 12.5, false},
		{paperNormMEI, 32, 32, -1, 0, true},
	}
	for _, c := range cases {
		got, err := resolveNorm(c.set, c.paper, c.h, c.w, nil)
		if (err != nil) != c.err || math.Abs(float64(got-c.want)) > 1e-5 {
			t.Errorf("resolveNorm(%v, %v, %d, %d) = %v, %v; want %v (error %v)", c.set, c.paper, c.h, c.w, got, err, c.want, c.err)
		}
	}
}

func TestSampleDefaultPrior(t *testing.T) {
	g, _ := builtinGlobal(t)
	o := &sampleOptions{n: 2, batchSize: 2, sampler: "ddpm", out: t.TempDir(), quiet: true,
		prior: priorOptions{steps: "3", noiseSchedule: "linear", diffSteps: 1000}}
	if err := runSample(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sample_00000.png", "sample_00001.png", "grid.png"} {
		b, err := os.ReadFile(filepath.Join(o.out, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if f != "grid.png" && (img.Bounds().Dx() != 32 || img.Bounds().Dy() != 32) {
			t.Errorf("%s is %v, want 32x32", f, img.Bounds())
		}
	}
	// Without defaults, no --weights is a usage error that says what to do.
	o.prior.weights = ""
	err := runSample(context.Background(), missingGlobal(), o)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "build-defaults.sh") {
		t.Errorf("error %v", err)
	}
}

func TestMEIDefaults(t *testing.T) {
	g, set := builtinGlobal(t)
	train, within, cross := set.Roles()
	otherCross := set.Ensembles[models.GaussianB2]
	cases := []struct {
		name   string
		method string
		cross  string // given --cross
		want   map[string][]string
		norm   float32
	}{
		{"ga, every role", "ga", "", map[string][]string{"train": train, "within": within, "cross": cross, "truth": {set.Truth}}, 8},
		{"egg, every role and the prior", "egg", "", map[string][]string{"train": train, "within": within, "cross": cross, "truth": {set.Truth}, "prior": {set.Prior}}, 8},
		{"ga, cross given", "ga", strings.Join(otherCross, ","), map[string][]string{"train": train, "within": within, "cross": otherCross, "truth": {set.Truth}}, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &meiOptions{method: c.method, cross: c.cross, neurons: "3", seeds: "0", scale: 5, gradNorm: "sample",
				iterations: 3, lr: 10, blur: 1, batchSize: 2, out: t.TempDir(), quiet: true,
				prior: priorOptions{steps: "2", noiseSchedule: "linear", diffSteps: 1000}}
			if err := runMEI(context.Background(), nil, g, o); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(o.out, c.method, "neuron_00003.json"))
			if err != nil {
				t.Fatal(err)
			}
			var rec mei.Record
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Settings.Norm != c.norm || (c.method == "ga" && rec.Settings.GA.Norm != c.norm) {
				t.Errorf("norm %v, want %v", rec.Settings.Norm, c.norm)
			}
			// The built-in prior has the cosine schedule: its x0 prediction is clipped.
			if rec.Settings.ClipX0 != (c.method == "egg") {
				t.Errorf("clip_x0 %v", rec.Settings.ClipX0)
			}
			if len(rec.Models) != len(c.want) {
				t.Errorf("roles %v, want %v", rec.Models, c.want)
			}
			for role, files := range c.want {
				var got []string
				for _, h := range rec.Models[role] {
					got = append(got, h.Path)
					if len(h.SHA256) != 64 {
						t.Errorf("%s: hash %q", role, h.SHA256)
					}
				}
				if !slices.Equal(got, files) {
					t.Errorf("%s files %v, want %v", role, got, files)
				}
			}
			for _, role := range []string{"train", "within", "cross", "truth"} {
				if _, ok := rec.Activations[role]; !ok {
					t.Errorf("no %s activation", role)
				}
			}
		})
	}
	// Without defaults, an empty --train says how to get them.
	o := &meiOptions{method: "ga", neurons: "0", seeds: "0", iterations: 2, lr: 10, blur: 1, out: t.TempDir(), quiet: true}
	if err := runMEI(context.Background(), nil, missingGlobal(), o); err == nil || !strings.Contains(err.Error(), "no --train given") {
		t.Errorf("error %v", err)
	}
}

func TestReconstructDefaults(t *testing.T) {
	g, set := builtinGlobal(t)
	o := &reconstructOptions{images: "0", tier: "test", clip: "-1.7,1.9", gdSteps: 2, gdLR: 0.05, gdBlur: 1, batchSize: 1,
		out: t.TempDir(), quiet: true, stdout: &bytes.Buffer{}, prior: priorOptions{steps: "2", noiseSchedule: "linear", diffSteps: 1000}}
	if err := runReconstruct(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	var sum recon.Summary
	b, err := os.ReadFile(filepath.Join(o.out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Settings.Source != set.Pool+":validation" || math.Abs(float64(sum.Settings.Norm)-19.2) > 1e-5 || sum.Settings.PriorName != set.Prior {
		t.Errorf("settings %+v", sum.Settings)
	}
	for _, m := range []string{"egg", "gd"} {
		for _, r := range []string{"train", "within", "cross"} {
			if _, ok := sum.Median[m][r]; !ok {
				t.Errorf("no median for %s %s", m, r)
			}
		}
	}
}
