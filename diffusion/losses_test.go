package diffusion

import (
	"math"
	"testing"

	"egg/tensor"
)

func TestNormalKL(t *testing.T) {
	s := func(v float32) *tensor.Tensor { return tensor.Scalar(testDev, v) }
	tests := []struct {
		m1, lv1, m2, lv2 float32
	}{
		{0, 0, 0, 0}, {0, 0, 1, 0}, {0.5, -1, -0.3, 0.7}, {2, 1.5, 2, -2},
	}
	for _, tc := range tests {
		got := float64(NormalKL(s(tc.m1), s(tc.lv1), s(tc.m2), s(tc.lv2)).Item())
		v1, v2 := math.Exp(float64(tc.lv1)), math.Exp(float64(tc.lv2))
		d := float64(tc.m1 - tc.m2)
		want := 0.5*math.Log(v2/v1) + (v1+d*d)/(2*v2) - 0.5
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("KL(N(%v, e^%v) || N(%v, e^%v)) = %v, want %v", tc.m1, tc.lv1, tc.m2, tc.lv2, got, want)
		}
	}
	// Broadcasting: a batch against a scalar prior.
	m := randn(1, 2, 3)
	kl := NormalKL(m, tensor.Full(testDev, 0, 2, 3), tensor.Scalar(testDev, 0), tensor.Scalar(testDev, 0))
	for k, v := range kl.Data() {
		if want := 0.5 * m.Data()[k] * m.Data()[k]; math.Abs(float64(v-want)) > 1e-6 {
			t.Errorf("KL to N(0, 1) [%d] = %v, want %v", k, v, want)
		}
	}
}

// TestDiscretizedGaussianLogLikelihood: the probabilities of the 256 bins sum to 1,
// and a narrow Gaussian on a bin gives it nearly all the mass.
func TestDiscretizedGaussianLogLikelihood(t *testing.T) {
	const bins = 256
	x := make([]float32, bins)
	for k := range x {
		x[k] = float32(k)/127.5 - 1
	}
	xs := tensor.FromSlice(testDev, x, 1, bins)
	for _, tc := range []struct{ mean, std float32 }{{0.1, 0.3}, {-0.95, 0.05}, {0.99, 0.5}, {0, 2}} {
		ll := DiscretizedGaussianLogLikelihood(xs,
			tensor.Full(testDev, tc.mean, 1, bins), tensor.Full(testDev, float32(math.Log(float64(tc.std))), 1, bins))
		sum := 0.0
		for _, v := range ll.Data() {
			if v > 0 {
				t.Fatalf("mean %v std %v: log-probability %v > 0", tc.mean, tc.std, v)
			}
			sum += math.Exp(float64(v))
		}
		if math.Abs(sum-1) > 1e-3 {
			t.Errorf("mean %v std %v: probabilities sum to %v", tc.mean, tc.std, sum)
		}
	}
	one := tensor.FromSlice(testDev, []float32{x[100]}, 1)
	ll := DiscretizedGaussianLogLikelihood(one, one, tensor.Full(testDev, float32(math.Log(1e-4)), 1))
	if v := ll.Item(); v < -1e-5 {
		t.Errorf("narrow Gaussian on its bin: log-probability %v, want about 0", v)
	}
}

// TestVBTerms: a model with the true posterior has zero KL, and step 0 gives the
// decoder's negative log-likelihood.
func TestVBTerms(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "20", VarType: VarFixedSmall})
	x0 := tensor.Clamp(randn(1, 3, 2, 4, 4), -1, 1)
	noise := randn(2, 3, 2, 4, 4)
	ts := []int{0, 5, 19}
	xt := QSample(s, x0, ts, noise)
	vb := VBTerms(s, x0, xt, noise, ts, false)
	if !equalInts(vb.Shape(), []int{3}) {
		t.Fatalf("VBTerms shape %v", vb.Shape())
	}
	for k := 1; k < 3; k++ {
		if v := vb.Data()[k]; math.Abs(float64(v)) > 1e-3 {
			t.Errorf("t=%d: KL with the true eps = %v, want 0", ts[k], v)
		}
	}
	mean, _, logVar, _ := pMeanVariance(s, xt, noise, ts, false)
	nll := -tensor.Mean(DiscretizedGaussianLogLikelihood(
		tensor.Slice(x0, 0, 0, 1, 1), tensor.Slice(mean, 0, 0, 1, 1), tensor.Scale(tensor.Slice(logVar, 0, 0, 1, 1), 0.5)), false).Item()
	if d := math.Abs(float64(vb.Data()[0]) - float64(nll)/math.Ln2); d > 1e-4 {
		t.Errorf("t=0: %v, want the decoder NLL %v bits", vb.Data()[0], float64(nll)/math.Ln2)
	}
	// A wrong eps costs bits.
	vbWrong := VBTerms(s, x0, xt, tensor.Scale(noise, -1), ts, false)
	if vbWrong.Data()[1] <= 0.01 {
		t.Errorf("KL with a wrong eps = %v, want > 0", vbWrong.Data()[1])
	}
}

// TestTrainingLosses: the MSE is L_simple, and the bound reaches only the variance.
func TestTrainingLosses(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "50"})
	x0 := tensor.Clamp(randn(1, 2, 3, 4, 4), -1, 1)
	noise := randn(2, 2, 3, 4, 4)
	ts := []int{3, 40}
	xt := QSample(s, x0, ts, noise)
	out := tensor.Concat(1, randn(3, 2, 3, 4, 4), tensor.Clamp(randn(4, 2, 3, 4, 4), -1, 1)).SetRequiresGrad(true)
	l := TrainingLosses(s, x0, xt, noise, out, ts)
	if l.VB == nil || !equalInts(l.Loss.Shape(), []int{2}) || !equalInts(l.MSE.Shape(), []int{2}) {
		t.Fatalf("losses %v", l)
	}
	epsHat := tensor.Slice(out, 1, 0, 3, 1)
	for k := range 2 {
		want := 0.0
		per := 3 * 4 * 4
		for j := range per {
			d := float64(noise.Data()[k*per+j] - epsHat.Data()[k*per+j])
			want += d * d
		}
		want /= float64(per)
		if math.Abs(float64(l.MSE.Data()[k])-want) > 1e-5 {
			t.Errorf("MSE[%d] = %v, want %v", k, l.MSE.Data()[k], want)
		}
		if got := l.Loss.Data()[k]; math.Abs(float64(got-l.MSE.Data()[k]-l.VB.Data()[k])) > 1e-5 {
			t.Errorf("loss[%d] = %v != mse + vb", k, got)
		}
	}
	gVB := tensor.Grad(tensor.Sum(l.VB, false), nil, out)[0]
	gMSE := tensor.Grad(tensor.Sum(l.MSE, false), nil, out)[0]
	per := 3 * 4 * 4
	var vbEps, vbVar, mseVar float64
	for k := range 2 {
		for j := range 2 * per {
			i := k*2*per + j
			if j < per {
				vbEps += math.Abs(float64(gVB.Data()[i]))
			} else {
				vbVar += math.Abs(float64(gVB.Data()[i]))
				mseVar += math.Abs(float64(gMSE.Data()[i]))
			}
		}
	}
	if vbEps != 0 || mseVar != 0 || vbVar == 0 {
		t.Errorf("|d vb/d eps| = %v (want 0), |d mse/d v| = %v (want 0), |d vb/d v| = %v (want > 0)", vbEps, mseVar, vbVar)
	}
	// Fixed variance: no bound.
	sf := mustNew(t, Config{TimestepRespacing: "50", VarType: VarFixedLarge})
	lf := TrainingLosses(sf, x0, xt, noise, epsHat, ts)
	if lf.VB != nil || lf.Loss != lf.MSE {
		t.Errorf("fixed variance: VB %v, loss %v", lf.VB, lf.Loss)
	}
}

func TestQMeanVariance(t *testing.T) {
	s := mustNew(t, Config{TimestepRespacing: "10"})
	x0 := randn(1, 2, 1, 2, 2)
	ts := []int{2, 7}
	mean, variance, logVar := QMeanVariance(s, x0, ts)
	for k := range x0.Len() {
		i := ts[k/4]
		if d := math.Abs(float64(mean.Data()[k]) - s.SqrtAlphasCumprod[i]*float64(x0.Data()[k])); d > 1e-6 {
			t.Errorf("mean [%d] off by %g", k, d)
		}
		if float64(variance.Data()[k]) != float64(float32(1-s.AlphasCumprod[i])) ||
			float64(logVar.Data()[k]) != float64(float32(s.LogOneMinusAlphasCumprod[i])) {
			t.Errorf("[%d]: variance %v, log %v", k, variance.Data()[k], logVar.Data()[k])
		}
	}
}
