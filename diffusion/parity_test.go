package diffusion

import (
	"egg/internal/testdevice"
	"math"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"egg/checkpoint"
	"egg/internal/refvec"
	"egg/tensor"
)

// TestParity checks the package against guided-diffusion's numbers (reference vectors
// of kind "diffusion_schedule"). Everything is discovered from the key names: the
// spacings from timestep_map[S] and spaced[S].*, the schedule names from betas[K], the
// etas from step.ddim_sample[eta=E].*. Every key must be checked: an unknown one fails.
func TestParity(t *testing.T) {
	refvec.Run(t, map[string]func(*testing.T, refvec.Case){
		"diffusion_schedule": testScheduleCase,
	})
}

// f64Tol is the relative tolerance of the float64 schedule arrays.
const f64Tol = 1e-12

var (
	reTimestepMap = regexp.MustCompile(`^timestep_map\[(.*)\]$`)
	reBetas       = regexp.MustCompile(`^betas\[(.+)\]$`)
	reSpaced      = regexp.MustCompile(`^spaced\[(.*)\]\.(\w+)$`)
	rePMV         = regexp.MustCompile(`^step\.p_mean_variance\.(\w+)$`)
	rePSample     = regexp.MustCompile(`^step\.p_sample\.(\w+)$`)
	reDDIM        = regexp.MustCompile(`^step\.ddim_sample\[eta=([^\]]+)\]\.(\w+)$`)
)

// scheduleArrays maps guided-diffusion's attribute names to the Schedule's arrays.
var scheduleArrays = map[string]func(s *Schedule) []float64{
	"betas":                          func(s *Schedule) []float64 { return s.Betas },
	"alphas_cumprod":                 func(s *Schedule) []float64 { return s.AlphasCumprod },
	"alphas_cumprod_prev":            func(s *Schedule) []float64 { return s.AlphasCumprodPrev },
	"alphas_cumprod_next":            func(s *Schedule) []float64 { return s.AlphasCumprodNext },
	"sqrt_alphas_cumprod":            func(s *Schedule) []float64 { return s.SqrtAlphasCumprod },
	"sqrt_one_minus_alphas_cumprod":  func(s *Schedule) []float64 { return s.SqrtOneMinusAlphasCumprod },
	"log_one_minus_alphas_cumprod":   func(s *Schedule) []float64 { return s.LogOneMinusAlphasCumprod },
	"sqrt_recip_alphas_cumprod":      func(s *Schedule) []float64 { return s.SqrtRecipAlphasCumprod },
	"sqrt_recipm1_alphas_cumprod":    func(s *Schedule) []float64 { return s.SqrtRecipm1AlphasCumprod },
	"posterior_variance":             func(s *Schedule) []float64 { return s.PosteriorVariance },
	"posterior_log_variance_clipped": func(s *Schedule) []float64 { return s.PosteriorLogVarianceClipped },
	"posterior_mean_coef1":           func(s *Schedule) []float64 { return s.PosteriorMeanCoef1 },
	"posterior_mean_coef2":           func(s *Schedule) []float64 { return s.PosteriorMeanCoef2 },
}

// scheduleCase holds what one case needs while its keys are checked.
type scheduleCase struct {
	t       *testing.T
	c       refvec.Case
	r       checkpoint.Reader
	checked map[string]bool
}

func (sc *scheduleCase) f64(name string) []float64 {
	sc.t.Helper()
	v, err := sc.r.Float64(name)
	if err != nil {
		sc.t.Fatalf("%s: %v", name, err)
	}
	return v
}

func (sc *scheduleCase) i64(name string) []int64 {
	sc.t.Helper()
	v, err := sc.r.Int64(name)
	if err != nil {
		sc.t.Fatalf("%s: %v", name, err)
	}
	return v
}

// configOr decodes an optional config key into v, leaving v alone when it is absent.
func configOr[T any](t *testing.T, c refvec.Case, key string, v *T) {
	if c.Has(key) {
		c.Get(t, key, v)
	}
}

func testScheduleCase(t *testing.T, c refvec.Case) {
	sc := &scheduleCase{t: t, c: c, r: c.Open(t, "vectors.safetensors"), checked: map[string]bool{}}
	names := sc.r.Names()

	// The original number of steps is the length of the named beta schedules.
	numTimesteps := 0
	for _, n := range names {
		if reBetas.MatchString(n) {
			info, _ := sc.r.Info(n)
			if len(info.Shape) != 1 || (numTimesteps != 0 && info.Shape[0] != numTimesteps) {
				t.Fatalf("%s: shape %v (other beta schedules have %d steps)", n, info.Shape, numTimesteps)
			}
			numTimesteps = info.Shape[0]
		}
	}
	if numTimesteps == 0 {
		t.Fatal("no betas[K] key: cannot tell the number of original timesteps")
	}
	// Flags of the respaced processes; the defaults are the ones config.json's "what"
	// states (learn_sigma=True, rescale_timesteps=True, the linear schedule).
	scheduleName, learnSigma, rescale := "linear", true, true
	configOr(t, c, "noise_schedule", &scheduleName)
	configOr(t, c, "learn_sigma", &learnSigma)
	configOr(t, c, "rescale_timesteps", &rescale)
	cfg := func(spacing string) Config {
		cfg := Config{BetaSchedule: scheduleName, NumTimesteps: numTimesteps, TimestepRespacing: spacing,
			MeanType: MeanEpsilon, VarType: VarLearnedRange, RescaleTimesteps: rescale}
		if !learnSigma {
			cfg.VarType = VarFixedLarge
		}
		return cfg
	}

	t.Run("timestep_map", func(t *testing.T) {
		for _, n := range names {
			m := reTimestepMap.FindStringSubmatch(n)
			if m == nil {
				continue
			}
			sc.checked[n] = true
			want := sc.i64(n)
			got, err := SpaceTimesteps(numTimesteps, m[1])
			if err != nil {
				t.Errorf("SpaceTimesteps(%d, %q): %v", numTimesteps, m[1], err)
				continue
			}
			if !slices.Equal(toInt64(got), want) {
				t.Errorf("SpaceTimesteps(%d, %q) = %v, want %v", numTimesteps, m[1], got, want)
				continue
			}
			t.Logf("%s: %d steps, exact", n, len(want))
		}
	})

	t.Run("betas", func(t *testing.T) {
		for _, n := range names {
			m := reBetas.FindStringSubmatch(n)
			if m == nil {
				continue
			}
			sc.checked[n] = true
			got, err := NamedBetaSchedule(m[1], numTimesteps)
			if err != nil {
				t.Error(err)
				continue
			}
			closeF64(t, n, got, sc.f64(n))
		}
	})

	t.Run("spaced", func(t *testing.T) {
		schedules := map[string]*Schedule{}
		for _, n := range names {
			m := reSpaced.FindStringSubmatch(n)
			if m == nil {
				continue
			}
			spacing, field := m[1], m[2]
			get, ok := scheduleArrays[field]
			if !ok {
				continue // left unchecked: reported below
			}
			sc.checked[n] = true
			s := schedules[spacing]
			if s == nil {
				var err error
				if s, err = New(cfg(spacing)); err != nil {
					t.Errorf("%s: %v", n, err)
					continue
				}
				schedules[spacing] = s
			}
			closeF64(t, n, get(s), sc.f64(n))
		}
	})

	t.Run("step", func(t *testing.T) { sc.checkStep(t, cfg) })

	for _, n := range names {
		if !sc.checked[n] {
			t.Errorf("unchecked key %q", n)
		}
	}
}

// checkStep checks one p_mean_variance / p_sample / ddim_sample step.
func (sc *scheduleCase) checkStep(t *testing.T, cfg func(string) Config) {
	names := sc.r.Names()
	hasStep := false
	for _, n := range names {
		if len(n) > 5 && n[:5] == "step." {
			hasStep = true
		}
	}
	if !hasStep {
		t.Skip("no step.* keys")
	}
	// The step runs in the respaced process of config.json's "spacing"; without it, in
	// the only one the keys name.
	var spacing string
	if sc.c.Has("spacing") {
		sc.c.Get(t, "spacing", &spacing)
	} else {
		seen := map[string]bool{}
		for _, n := range names {
			if m := reSpaced.FindStringSubmatch(n); m != nil {
				seen[m[1]] = true
			}
		}
		if len(seen) != 1 {
			t.Fatalf("config.json has no \"spacing\" and the keys name %d spaced processes", len(seen))
		}
		for k := range seen {
			spacing = k
		}
	}
	s, err := New(cfg(spacing))
	if err != nil {
		t.Fatal(err)
	}
	tol := 1e-5
	if sc.c.Has("tolerance") {
		tol = sc.c.Tol(t, 0)
	}
	dev := testdevice.Get()
	load := func(name string) *tensor.Tensor {
		t.Helper()
		sc.checked[name] = true
		v, shape := refvec.F32(t, sc.r, name)
		return tensor.FromSlice(dev, v, shape...)
	}
	x := load("step.x_t")
	out := load("step.model_output")
	noise := load("step.noise")
	idx64 := sc.i64("step.index")
	sc.checked["step.index"] = true
	n := x.Dim(0)
	if len(idx64) != n {
		t.Fatalf("step.index has %d values for a batch of %d", len(idx64), n)
	}
	idx := make([]int, n)
	for k, v := range idx64 {
		idx[k] = int(v)
	}

	// The model timestep.
	if sc.has("step.model_timestep") {
		sc.checked["step.model_timestep"] = true
		want := sc.f64("step.model_timestep")
		for k, i := range idx {
			got := float64(s.ModelTimestep(i))
			// The timestep may be stored in float16: allow its rounding.
			if math.Abs(got-want[k]) > math.Abs(want[k])*0x1p-11 {
				t.Errorf("ModelTimestep(%d) = %v, want %v", i, got, want[k])
			}
		}
		t.Logf("step.model_timestep: %v for indices %v", want, idx)
	}

	// Each sample runs alone at its own index, then the batch is put back together, so
	// that batches with mixed indices are checked too.
	perSample := func(f func(x, out, noise *tensor.Tensor, i int) []*tensor.Tensor) []*tensor.Tensor {
		var parts [][]*tensor.Tensor
		for k := range n {
			sl := func(a *tensor.Tensor) *tensor.Tensor { return tensor.Slice(a, 0, k, k+1, 1) }
			parts = append(parts, f(sl(x), sl(out), sl(noise), idx[k]))
		}
		res := make([]*tensor.Tensor, len(parts[0]))
		for j := range res {
			col := make([]*tensor.Tensor, n)
			for k := range n {
				col[k] = parts[k][j]
			}
			res[j] = tensor.Concat(0, col...)
		}
		return res
	}
	pmv := perSample(func(x, out, _ *tensor.Tensor, i int) []*tensor.Tensor {
		m, v, lv, x0 := PMeanVariance(s, x, out, i, false)
		return []*tensor.Tensor{m, v, lv, x0}
	})
	pmvOut := map[string]*tensor.Tensor{"mean": pmv[0], "variance": pmv[1], "log_variance": pmv[2], "pred_xstart": pmv[3]}
	ps := perSample(func(x, out, noise *tensor.Tensor, i int) []*tensor.Tensor {
		smp, x0 := PSample(s, x, out, i, noise, false)
		return []*tensor.Tensor{smp, x0}
	})
	psOut := map[string]*tensor.Tensor{"sample": ps[0], "pred_xstart": ps[1]}

	for _, name := range names {
		var got *tensor.Tensor
		if m := rePMV.FindStringSubmatch(name); m != nil {
			got = pmvOut[m[1]]
		} else if m := rePSample.FindStringSubmatch(name); m != nil {
			got = psOut[m[1]]
		} else if m := reDDIM.FindStringSubmatch(name); m != nil {
			eta, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Errorf("%s: eta: %v", name, err)
				continue
			}
			dd := perSample(func(x, out, noise *tensor.Tensor, i int) []*tensor.Tensor {
				smp, x0 := DDIMSample(s, x, out, i, noise, eta, false)
				return []*tensor.Tensor{smp, x0}
			})
			got = map[string]*tensor.Tensor{"sample": dd[0], "pred_xstart": dd[1]}[m[2]]
		} else {
			continue
		}
		if got == nil {
			continue // an unknown output: left unchecked, reported by the caller
		}
		sc.checked[name] = true
		want, shape := refvec.F32(t, sc.r, name)
		if !slices.Equal(shape, got.Shape()) {
			t.Errorf("%s: shape %v, want %v", name, got.Shape(), shape)
			continue
		}
		refvec.Close(t, name, got.Data(), want, tol)
	}
}

func (sc *scheduleCase) has(name string) bool {
	_, ok := sc.r.Info(name)
	return ok
}

// closeF64 fails when got and want differ anywhere by more than f64Tol relative to
// |want| (exact zeros must be matched exactly), and logs the largest relative
// difference.
func closeF64(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	worst, at := 0.0, 0
	for i := range want {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) || (math.IsInf(got[i], 0) != math.IsInf(want[i], 0)) {
			d = math.Inf(1)
		} else if got[i] == want[i] {
			d = 0
		}
		rel := d / math.Max(math.Abs(want[i]), math.SmallestNonzeroFloat64)
		if rel > worst {
			worst, at = rel, i
		}
	}
	if worst > f64Tol {
		t.Errorf("%s: relative difference %.3g at [%d] (got %v, want %v) exceeds %.0g", what, worst, at, got[at], want[at], f64Tol)
		return
	}
	t.Logf("%s: max relative difference %.3g", what, worst)
}

func toInt64(v []int) []int64 {
	r := make([]int64, len(v))
	for i, x := range v {
		r[i] = int64(x)
	}
	return r
}
