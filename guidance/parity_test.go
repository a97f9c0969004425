package guidance

import (
	"egg/internal/testdevice"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"egg/adm"
	"egg/diffusion"
	"egg/internal/refvec"
	"egg/nn"
	"egg/tensor"
)

var testDev = testdevice.Get()

// samplerEnergy is the energy of the egg_sampler vectors: z = the bilinear resize of
// x0 to W's size (align_corners false), averaged over channels, rescaled to L2 norm
// `norm` per sample; E_b = -sum(W * z_b).
func samplerEnergy(w *tensor.Tensor, norm float32) Energy {
	return EnergyFunc(func(x0 *tensor.Tensor) *tensor.Tensor {
		h, wd := w.Dim(0), w.Dim(1)
		z := tensor.Mean(tensor.ResizeBilinear(x0, h, wd, false), true, 1)
		z = tensor.ChangeNorm(z, norm)
		n := x0.Dim(0)
		return tensor.Neg(tensor.Sum(tensor.Mul(tensor.Reshape(z, n, h, wd), w), false, 1, 2))
	})
}

// normFromWhat reads "rescaled to L2 norm <v>" from the case description.
func normFromWhat(t *testing.T, what string) float32 {
	i := strings.Index(what, "L2 norm ")
	if i < 0 {
		t.Fatalf("cannot find the energy's L2 norm in %q", what)
	}
	var v float32
	if _, err := fmt.Sscanf(what[i+len("L2 norm "):], "%g", &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func checkSampler(t *testing.T, c refvec.Case) {
	var unetDir, spacing, what string
	c.Get(t, "unet", &unetDir)
	c.Get(t, "spacing", &spacing)
	c.Get(t, "what", &what)
	var runs map[string]struct {
		EnergyScale   float64 `json:"energy_scale"`
		NormalizeGrad bool    `json:"normalize_grad"`
		UseAlphaBar   bool    `json:"use_alpha_bar"`
	}
	c.Get(t, "runs", &runs)
	// The UNet of the named folder.
	cases, err := refvec.Cases()
	if err != nil {
		t.Fatal(err)
	}
	var uc *refvec.Case
	for k := range cases {
		if cases[k].Name == filepath.Base(unetDir) {
			uc = &cases[k]
		}
	}
	if uc == nil {
		t.Fatalf("unet folder %q not found", unetDir)
	}
	var cfg adm.Config
	uc.Get(t, "guided_diffusion_unet_kwargs", &cfg)
	unet, err := adm.New(testDev, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(unet, uc.Open(t, "weights.safetensors"), nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	clamp := diffusion.EGGLogVarianceClamp
	s, err := diffusion.New(diffusion.Config{TimestepRespacing: spacing, RescaleTimesteps: true, LogVarianceClamp: &clamp})
	if err != nil {
		t.Fatal(err)
	}
	v := c.Open(t, "vectors.safetensors")
	wd, ws := refvec.F32(t, v, "energy.W")
	energy := samplerEnergy(tensor.FromSlice(testDev, wd, ws...), normFromWhat(t, what))
	tol := c.Tol(t, 0)
	names := make([]string, 0, len(runs))
	for name := range runs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		run := runs[name]
		t.Run(name, func(t *testing.T) {
			opts := Options{Scale: run.EnergyScale, Norm: Raw, UseAlphaBar: run.UseAlphaBar}
			if run.NormalizeGrad {
				opts.Norm = Batch
			}
			get := func(key string) ([]float32, []int) { return refvec.F32(t, v, name+"."+key) }
			xT, shape := get("x_T")
			noise, _ := get("noise")
			samples, _ := get("samples")
			x0s, _ := get("pred_xstart")
			xprimes, _ := get("x_prime")
			energies, es := get("energy")
			steps, n := es[0], es[1]
			size := len(xT)
			if steps != s.NumTimesteps {
				t.Fatalf("%d recorded steps for a schedule of %d", steps, s.NumTimesteps)
			}
			xt := xT
			worst := 0.0
			for k := 0; k < steps; k++ {
				i := steps - 1 - k
				var z *tensor.Tensor
				if i > 0 {
					z = tensor.FromSlice(testDev, noise[k*size:(k+1)*size], shape...)
				}
				st, err := GuidedStep(unet, s, tensor.FromSlice(testDev, xt, shape...), i, z, energy, opts)
				if err != nil {
					t.Fatal(err)
				}
				sl := func(a []float32) []float32 { return a[k*size : (k+1)*size] }
				for _, cmp := range []struct {
					what      string
					got, want []float32
				}{
					{"pred_xstart", st.X0.Data(), sl(x0s)},
					{"x_prime", st.XPrime.Data(), sl(xprimes)},
					{"samples", st.Sample.Data(), sl(samples)},
					{"energy", st.Energy, energies[k*n : (k+1)*n]},
					{"update", sub(st.XPrime.Data(), st.Sample.Data()), sub(sl(xprimes), sl(samples))},
				} {
					d, sc := refvec.Diff(cmp.got, cmp.want)
					if d/sc > tol {
						t.Errorf("step %d (index %d) %s: max abs diff %.3g, relative %.3g > %.1g", k, i, cmp.what, d, d/sc, tol)
					}
					worst = math.Max(worst, d/sc)
				}
				// Feed the reference x_t to the next step so that drift cannot mask a bug.
				xt = sl(samples)
			}
			t.Logf("%d steps: worst relative difference %.3g (tolerance %.1g)", steps, worst, tol)
		})
	}
}

func sub(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

func TestParity(t *testing.T) {
	refvec.Run(t, map[string]func(*testing.T, refvec.Case){"egg_sampler": checkSampler})
}
