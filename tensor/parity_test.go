package tensor

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/internal/refvec"
)

// TestParity checks the engine's ops against the PyTorch reference vectors of every
// case of kind "ops": each key group of vectors.safetensors (resize_*, groupnorm,
// blur_*, changenorm) is recomputed and compared with the case's tolerance; a key
// that no check reads fails the test. adamw.* belongs to package optim.
func TestParity(t *testing.T) {
	refvec.Run(t, map[string]func(*testing.T, refvec.Case){"ops": checkOpsCase})
}

// opsVectors reads the tensors of one ops case and remembers which keys were used.
type opsVectors struct {
	r    checkpoint.Reader
	used map[string]bool
}

// get reads key as a tensor of its stored shape and marks it checked.
func (v *opsVectors) get(t *testing.T, key string) *Tensor {
	t.Helper()
	data, shape := refvec.F32(t, v.r, key)
	v.used[key] = true
	return FromSlice(testDev, data, shape...)
}

// whatNumber extracts the first capture of re from the case's "what" text for key,
// failing the test when it is absent.
func whatNumber(t *testing.T, what map[string]string, key string, re *regexp.Regexp) float64 {
	t.Helper()
	m := re.FindStringSubmatch(what[key])
	if m == nil {
		t.Fatalf("what[%q] = %q does not match %v", key, what[key], re)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var (
	acRE        = regexp.MustCompile(`_ac([01])$`)
	sigmaRE     = regexp.MustCompile(`sigma(\d+(?:[.p]\d+)?)$`)
	groupsRE    = regexp.MustCompile(`GroupNorm\((\d+),`)
	epsRE       = regexp.MustCompile(`eps=([0-9.e+-]+)`)
	changeNRE   = regexp.MustCompile(`ChangeNorm\(([0-9.e+-]+)\)`)
	otherCaseRE = regexp.MustCompile(`^adamw(\.|$)`)
)

func checkOpsCase(t *testing.T, c refvec.Case) {
	tol := c.Tol(t, 0)
	var what map[string]string
	c.Get(t, "what", &what)
	v := &opsVectors{r: c.Open(t, "vectors.safetensors"), used: map[string]bool{}}

	groups := map[string]bool{}
	for _, name := range v.r.Names() {
		if g, _, ok := strings.Cut(name, "."); ok {
			groups[g] = true
		}
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)

	for _, g := range names {
		switch {
		case strings.HasPrefix(g, "resize_"):
			t.Run(g, func(t *testing.T) { checkResize(t, v, g, tol) })
		case g == "groupnorm":
			groupsN := int(whatNumber(t, what, "groupnorm", groupsRE))
			eps := float32(whatNumber(t, what, "groupnorm", epsRE))
			t.Run(g, func(t *testing.T) { checkGroupNorm(t, v, g, groupsN, eps, tol) })
		case strings.HasPrefix(g, "blur_"):
			t.Run(g, func(t *testing.T) { checkBlur(t, v, g, tol) })
		case g == "changenorm":
			norm := float32(whatNumber(t, what, "changenorm", changeNRE))
			t.Run(g, func(t *testing.T) { checkChangeNorm(t, v, g, norm, tol) })
		}
	}

	for _, name := range v.r.Names() {
		if !v.used[name] && !otherCaseRE.MatchString(name) {
			t.Errorf("unchecked key %q", name)
		}
	}
}

// checkResize: y = ResizeBilinear(x) to y's size, align_corners from the name's
// _ac0/_ac1; grad_x = d(sum(y*r))/dx.
func checkResize(t *testing.T, v *opsVectors, g string, tol float64) {
	m := acRE.FindStringSubmatch(g)
	if m == nil {
		t.Fatalf("%s: no _ac0/_ac1 suffix to read align_corners from", g)
	}
	ac := m[1] == "1"
	x := v.get(t, g+".x").SetRequiresGrad(true)
	want := v.get(t, g+".y")
	r := v.get(t, g+".r")
	wantG := v.get(t, g+".grad_x")
	y := ResizeBilinear(x, want.Dim(2), want.Dim(3), ac)
	refvec.Close(t, g+".y", y.Data(), want.Data(), tol)
	gx := Grad(y, r, x)[0]
	refvec.Close(t, g+".grad_x", gx.Data(), wantG.Data(), tol)
}

func checkGroupNorm(t *testing.T, v *opsVectors, g string, groups int, eps float32, tol float64) {
	x := v.get(t, g+".x").SetRequiresGrad(true)
	w := v.get(t, g+".weight")
	b := v.get(t, g+".bias")
	want := v.get(t, g+".y")
	r := v.get(t, g+".r")
	wantG := v.get(t, g+".grad_x")
	y := GroupNorm(x, groups, w, b, eps)
	refvec.Close(t, g+".y", y.Data(), want.Data(), tol)
	gx := Grad(y, r, x)[0]
	refvec.Close(t, g+".grad_x", gx.Data(), wantG.Data(), tol)
}

// checkBlur reads sigma from the group name (blur_sigma1, blur_sigma1p5 or
// blur_sigma1.5) and checks the kernel and the blurred image.
func checkBlur(t *testing.T, v *opsVectors, g string, tol float64) {
	m := sigmaRE.FindStringSubmatch(g)
	if m == nil {
		t.Fatalf("%s: no sigma in the name", g)
	}
	sigma, err := strconv.ParseFloat(strings.Replace(m[1], "p", ".", 1), 64)
	if err != nil {
		t.Fatal(err)
	}
	wantK := v.get(t, g+".kernel_1d")
	refvec.Close(t, g+".kernel_1d", gaussianKernel1D(sigma), wantK.Data(), tol)
	x := v.get(t, g+".x")
	want := v.get(t, g+".y")
	refvec.Close(t, g+".y", GaussianBlur(x, sigma).Data(), want.Data(), tol)
}

func checkChangeNorm(t *testing.T, v *opsVectors, g string, norm float32, tol float64) {
	x := v.get(t, g+".x")
	want := v.get(t, g+".y")
	refvec.Close(t, g+".y", ChangeNorm(x, norm).Data(), want.Data(), tol)
}
