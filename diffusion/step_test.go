package diffusion

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"egg/tensor"
)

var testDev = tensor.CPU(1)

func randn(seed uint64, shape ...int) *tensor.Tensor {
	return tensor.Randn(testDev, rand.New(rand.NewPCG(seed, 7)), shape...)
}

func mustNew(t testing.TB, cfg Config) *Schedule {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// maxAbsDiff returns max |a - b| over the elements of two tensors of one shape.
func maxAbsDiff(t testing.TB, a, b *tensor.Tensor) float64 {
	t.Helper()
	if !equalInts(a.Shape(), b.Shape()) {
		t.Fatalf("shapes %v and %v", a.Shape(), b.Shape())
	}
	m := 0.0
	for i, v := range a.Data() {
		m = math.Max(m, math.Abs(float64(v)-float64(b.Data()[i])))
	}
	return m
}

func expectPanic(t *testing.T, what, contains string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("%s: no panic", what)
			return
		}
		if msg, _ := r.(string); !strings.Contains(msg, contains) {
			t.Errorf("%s: panic %v, want one mentioning %q", what, r, contains)
		}
	}()
	f()
}

// TestPMeanVarianceFormulas checks PMeanVariance against the formulas evaluated in
// float64, for every variance type.
func TestPMeanVarianceFormulas(t *testing.T) {
	const n, c, h = 2, 3, 4
	x := randn(1, n, c, h, h)
	eps := randn(2, n, c, h, h)
	v := tensor.Clamp(randn(3, n, c, h, h), -1, 1)
	for _, vt := range []VarType{VarLearnedRange, VarLearned, VarFixedSmall, VarFixedLarge} {
		t.Run(vt.String(), func(t *testing.T) {
			s := mustNew(t, Config{TimestepRespacing: "50", VarType: vt})
			out := eps
			if vt == VarLearnedRange || vt == VarLearned {
				out = tensor.Concat(1, eps, v)
			}
			for _, i := range []int{0, 1, 17, 49} {
				mean, variance, logVar, x0 := PMeanVariance(s, x, out, i, false)
				for k := range x.Len() {
					xv, ev, vv := float64(x.Data()[k]), float64(eps.Data()[k]), float64(v.Data()[k])
					wx0 := s.SqrtRecipAlphasCumprod[i]*xv - s.SqrtRecipm1AlphasCumprod[i]*ev
					wmean := s.PosteriorMeanCoef1[i]*wx0 + s.PosteriorMeanCoef2[i]*xv
					var wlog, wvar float64
					switch vt {
					case VarLearnedRange:
						f := (vv + 1) / 2
						wlog = f*math.Log(s.Betas[i]) + (1-f)*s.PosteriorLogVarianceClipped[i]
					case VarLearned:
						wlog = vv
					case VarFixedSmall:
						wlog = s.PosteriorLogVarianceClipped[i]
						wvar = s.PosteriorVariance[i] // 0 at i = 0, unlike exp(wlog)
					case VarFixedLarge:
						wlog = math.Log(s.Betas[i])
						if i == 0 {
							wlog = math.Log(s.PosteriorVariance[1])
						}
					}
					if vt != VarFixedSmall {
						wvar = math.Exp(wlog)
					}
					for _, chk := range []struct {
						name      string
						got, want float64
					}{
						{"pred_xstart", float64(x0.Data()[k]), wx0},
						{"mean", float64(mean.Data()[k]), wmean},
						{"log_variance", float64(logVar.Data()[k]), wlog},
						{"variance", float64(variance.Data()[k]), wvar},
					} {
						if d := math.Abs(chk.got-chk.want) / math.Max(1, math.Abs(chk.want)); d > 1e-5 {
							t.Fatalf("i=%d [%d]: %s = %v, want %v", i, k, chk.name, chk.got, chk.want)
						}
					}
				}
				if vt == VarFixedSmall && i == 0 && variance.Data()[0] != 0 {
					t.Errorf("fixed_small variance at i=0 = %v, want 0", variance.Data()[0])
				}
			}
		})
	}
}

// TestMeanTypesAgree: a model predicting x0 (or the posterior mean) that the
// epsilon model implies gives the same step.
func TestMeanTypesAgree(t *testing.T) {
	x := randn(1, 2, 3, 4, 4)
	eps := randn(2, 2, 3, 4, 4)
	v := tensor.Scale(randn(3, 2, 3, 4, 4), 0.3)
	epsSched := mustNew(t, Config{TimestepRespacing: "25"})
	const i = 12
	mean, _, logVar, x0 := PMeanVariance(epsSched, x, tensor.Concat(1, eps, v), i, false)

	sx := mustNew(t, Config{TimestepRespacing: "25", MeanType: MeanStartX})
	mean2, _, logVar2, x02 := PMeanVariance(sx, x, tensor.Concat(1, x0, v), i, false)
	if d := maxAbsDiff(t, mean, mean2) + maxAbsDiff(t, x0, x02) + maxAbsDiff(t, logVar, logVar2); d > 1e-6 {
		t.Errorf("start_x: differs by %g", d)
	}
	px := mustNew(t, Config{TimestepRespacing: "25", MeanType: MeanPreviousX})
	mean3, _, _, x03 := PMeanVariance(px, x, tensor.Concat(1, mean, v), i, false)
	if d := maxAbsDiff(t, mean, mean3); d != 0 {
		t.Errorf("previous_x: mean differs by %g", d)
	}
	if d := maxAbsDiff(t, x0, x03); d > 1e-4 {
		t.Errorf("previous_x: x0 differs by %g", d)
	}
}

func TestClipDenoised(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "10", VarType: VarFixedSmall})
	x := tensor.Scale(randn(1, 1, 3, 8, 8), 5)
	eps := randn(2, 1, 3, 8, 8)
	_, _, _, x0 := PMeanVariance(s, x, eps, 9, true)
	for _, v := range x0.Data() {
		if v < -1 || v > 1 {
			t.Fatalf("clipped x0 has %v", v)
		}
	}
	mean, _, _, _ := PMeanVariance(s, x, eps, 9, true)
	want := posteriorMean(s, x0, x, s.same(9, x))
	if d := maxAbsDiff(t, mean, want); d != 0 {
		t.Errorf("mean does not use the clipped x0 (diff %g)", d)
	}
}

// TestPredictRoundTrip: QSample and PredictXStartFromEps / PredictEpsFromXStart
// invert each other.
func TestPredictRoundTrip(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "100"})
	x0 := tensor.Clamp(randn(1, 2, 3, 5, 5), -1, 1)
	noise := randn(2, 2, 3, 5, 5)
	for _, i := range []int{0, 10, 50, 99} {
		xt := QSample(s, x0, []int{i, i}, noise)
		if d := maxAbsDiff(t, PredictXStartFromEps(s, xt, noise, i), x0); d > 2e-4 {
			t.Errorf("i=%d: x0 from eps off by %g", i, d)
		}
		if i > 0 {
			if d := maxAbsDiff(t, PredictEpsFromXStart(s, xt, x0, i), noise); d > 1e-4 {
				t.Errorf("i=%d: eps from x0 off by %g", i, d)
			}
		}
		xprev, _, _ := QPosteriorMeanVariance(s, x0, xt, []int{i, i})
		if d := maxAbsDiff(t, PredictXStartFromXPrev(s, xt, xprev, i), x0); d > 1e-3 {
			t.Errorf("i=%d: x0 from x_{t-1} off by %g", i, d)
		}
	}
}

// TestDDIMDeterministic: with eta = 0 and the true noise as the model's eps, a DDIM
// step lands on q(x_{t-1} | x_0) with the same noise.
func TestDDIMDeterministic(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "ddim50", VarType: VarFixedLarge})
	x0 := tensor.Clamp(randn(1, 2, 3, 5, 5), -1, 1)
	noise := randn(2, 2, 3, 5, 5)
	for _, i := range []int{1, 20, 49} {
		xt := QSample(s, x0, []int{i, i}, noise)
		got, _ := DDIMSample(s, xt, noise, i, nil, 0, false)
		want := QSample(s, x0, []int{i - 1, i - 1}, noise)
		if d := maxAbsDiff(t, got, want); d > 1e-4 {
			t.Errorf("i=%d: DDIM step off q(x_{t-1}|x_0) by %g", i, d)
		}
		back, _ := DDIMReverseSample(s, want, noise, i-1, false)
		if d := maxAbsDiff(t, back, xt); d > 1e-4 {
			t.Errorf("i=%d: reverse DDIM step off by %g", i, d)
		}
	}
	// At i = 0 the sample is x0_hat itself (abar_prev = 1).
	xt := QSample(s, x0, []int{0, 0}, noise)
	got, x0hat := DDIMSample(s, xt, noise, 0, nil, 1, false)
	if d := maxAbsDiff(t, got, x0hat); d > 1e-6 {
		t.Errorf("i=0: sample differs from x0_hat by %g", d)
	}
}

func TestDDIMNoise(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "20", VarType: VarFixedSmall})
	x := randn(1, 1, 2, 3, 3)
	eps := randn(2, 1, 2, 3, 3)
	z := randn(3, 1, 2, 3, 3)
	const i, eta = 7, 0.7
	det, _ := DDIMSample(s, x, eps, i, nil, 0, false)
	smp, _ := DDIMSample(s, x, eps, i, z, eta, false)
	ab, abp := s.AlphasCumprod[i], s.AlphasCumprodPrev[i]
	sigma := eta * math.Sqrt((1-abp)/(1-ab)) * math.Sqrt(1-ab/abp)
	x0 := PredictXStartFromEps(s, x, eps, i)
	for k := range x.Len() {
		want := float64(x0.Data()[k])*math.Sqrt(abp) + math.Sqrt(1-abp-sigma*sigma)*float64(eps.Data()[k]) +
			sigma*float64(z.Data()[k])
		if d := math.Abs(float64(smp.Data()[k]) - want); d > 1e-5 {
			t.Fatalf("[%d] = %v, want %v", k, smp.Data()[k], want)
		}
	}
	if maxAbsDiff(t, det, smp) == 0 {
		t.Error("eta > 0 adds no noise")
	}
	expectPanic(t, "DDIM eta > 0 without noise", "nil", func() { DDIMSample(s, x, eps, i, nil, eta, false) })
}

// TestPSampleClamp: EGG's clamp bounds the log variance used for the noise, and only
// there.
func TestPSampleClamp(t *testing.T) {
	x := randn(1, 1, 2, 3, 3)
	eps := randn(2, 1, 2, 3, 3)
	logv := tensor.Full(testDev, 8, 1, 2, 3, 3)
	logv.Data()[0] = 2 // below the clamp: unchanged
	out := tensor.Concat(1, eps, logv)
	z := randn(3, 1, 2, 3, 3)
	const i = 5
	for _, clamp := range []bool{false, true} {
		cfg := Config{TimestepRespacing: "10", VarType: VarLearned}
		if clamp {
			cfg.LogVarianceClamp = new(EGGLogVarianceClamp)
		}
		s := mustNew(t, cfg)
		mean, variance, _, _ := PMeanVariance(s, x, out, i, false)
		if variance.Data()[1] != float32(math.Exp(8)) {
			t.Errorf("clamp %v: PMeanVariance variance %v, want e^8 unclamped", clamp, variance.Data()[1])
		}
		smp, _ := PSample(s, x, out, i, z, false)
		for k := range x.Len() {
			lv := float64(logv.Data()[k])
			if clamp {
				lv = math.Min(lv, EGGLogVarianceClamp)
			}
			want := float64(mean.Data()[k]) + math.Exp(lv/2)*float64(z.Data()[k])
			if d := math.Abs(float64(smp.Data()[k])-want) / math.Max(1, math.Abs(want)); d > 1e-6 {
				t.Errorf("clamp %v [%d]: %v, want %v", clamp, k, smp.Data()[k], want)
			}
		}
		// No noise at the last step.
		last, _ := PSample(s, x, out, 0, nil, false)
		mean0, _, _, _ := PMeanVariance(s, x, out, 0, false)
		if d := maxAbsDiff(t, last, mean0); d != 0 {
			t.Errorf("clamp %v: i=0 sample differs from the mean by %g", clamp, d)
		}
	}
}

// TestGradientThroughStep: x_t may require a gradient, and it flows through both the
// step's own x_t terms and the model output computed from x_t, as EGG needs.
func TestGradientThroughStep(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "50", RescaleTimesteps: true, LogVarianceClamp: new(EGGLogVarianceClamp)})
	const i = 30
	const a = float32(0.3)
	x := randn(1, 2, 3, 4, 4).SetRequiresGrad(true)
	r := randn(2, 2, 3, 4, 4)
	z := randn(3, 2, 3, 4, 4)
	// A stand-in model: eps = a x, v = tanh(x).
	out := tensor.Concat(1, tensor.Scale(x, a), tensor.Tanh(x))
	sample, x0 := PSample(s, x, out, i, z, false)
	if !sample.RequiresGrad() || !x0.RequiresGrad() {
		t.Fatal("outputs do not require a gradient")
	}
	g := tensor.Grad(tensor.Sum(tensor.Mul(x0, r), false), nil, x)[0]
	// x0 = sqrt(1/abar) x - sqrt(1/abar - 1) a x.
	k := float64(float32(s.SqrtRecipAlphasCumprod[i])) - float64(a)*float64(float32(s.SqrtRecipm1AlphasCumprod[i]))
	for j, gv := range g.Data() {
		want := k * float64(r.Data()[j])
		if math.Abs(float64(gv)-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Fatalf("d x0/dx [%d] = %v, want %v", j, gv, want)
		}
	}
	// The sample's gradient, checked by central differences in one coordinate.
	f := func(xs *tensor.Tensor) float64 {
		o := tensor.Concat(1, tensor.Scale(xs, a), tensor.Tanh(xs))
		smp, _ := PSample(s, xs, o, i, z, false)
		sum := 0.0
		for j, v := range smp.Data() {
			sum += float64(v) * float64(r.Data()[j])
		}
		return sum
	}
	// The first backward pass consumed the graph: run the step again.
	sample, _ = PSample(s, x, tensor.Concat(1, tensor.Scale(x, a), tensor.Tanh(x)), i, z, false)
	gs := tensor.Grad(tensor.Sum(tensor.Mul(sample, r), false), nil, x)[0]
	for _, j := range []int{0, 7, 40} {
		const h = 1e-2
		xp, xm := x.Detach().Clone(), x.Detach().Clone()
		xp.Data()[j] += h
		xm.Data()[j] -= h
		num := (f(xp) - f(xm)) / (2 * h)
		if d := math.Abs(float64(gs.Data()[j]) - num); d > 2e-3*math.Max(1, math.Abs(num)) {
			t.Errorf("d sample/dx [%d] = %v, central difference %v", j, gs.Data()[j], num)
		}
	}
}

func TestStepPanics(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "10"})
	x := randn(1, 2, 3, 4, 4)
	expectPanic(t, "index", "out of range", func() { PMeanVariance(s, x, tensor.Concat(1, x, x), 10, false) })
	expectPanic(t, "negative index", "out of range", func() { s.ModelTimestep(-1) })
	expectPanic(t, "C channels for learned variance", "want [2 6 4 4]", func() { PMeanVariance(s, x, x, 3, false) })
	expectPanic(t, "noise shape", "noise", func() { PSample(s, x, tensor.Concat(1, x, x), 3, randn(2, 1, 3, 4, 4), false) })
	expectPanic(t, "nil noise", "nil", func() { PSample(s, x, tensor.Concat(1, x, x), 3, nil, false) })
	expectPanic(t, "QSample indices", "step indices", func() { QSample(s, x, []int{1}, x) })
}
