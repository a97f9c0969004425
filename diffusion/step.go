package diffusion

import (
	"fmt"
	"math"

	"egg/tensor"
)

// PMeanVariance returns p(x_{t-1} | x_t) at respaced index i from the model's output
// on x (guided-diffusion's p_mean_variance): the mean and the variance of the step, the
// log of the variance, and the prediction of x_0. x is [N, C, ...]; modelOutput is
// [N, 2C, ...] for the learned variance types and [N, C, ...] otherwise; every result
// has x's shape. With clipDenoised the x_0 prediction is clamped to [-1, 1] before the
// mean is computed. LogVarianceClamp is not applied here (EGG applies it in p_sample,
// see PSample). The results are differentiable with respect to x and modelOutput. It
// panics on mismatched shapes or an index out of range.
func PMeanVariance(s *Schedule, x, modelOutput *tensor.Tensor, i int, clipDenoised bool) (mean, variance, logVariance, predXStart *tensor.Tensor) {
	return pMeanVariance(s, x, modelOutput, s.same(i, x), clipDenoised)
}

// PSample is one DDPM step (Ho et al. 2020, Algorithm 2; guided-diffusion's p_sample):
// x_{t-1} = mean + exp(logVariance/2) * noise from PMeanVariance, with the log variance
// first clamped at s.LogVarianceClamp when that is set (EGG), and no noise at i = 0
// (where noise may be nil). noise is a standard normal draw of x's shape. It returns
// the sample and the x_0 prediction, both differentiable.
func PSample(s *Schedule, x, modelOutput *tensor.Tensor, i int, noise *tensor.Tensor, clipDenoised bool) (sample, predXStart *tensor.Tensor) {
	mean, _, logVariance, predXStart := PMeanVariance(s, x, modelOutput, i, clipDenoised)
	if i == 0 {
		return mean, predXStart
	}
	checkSame("PSample noise", noise, x)
	if s.LogVarianceClamp != nil {
		logVariance = tensor.Clamp(logVariance, float32(math.Inf(-1)), float32(*s.LogVarianceClamp))
	}
	return tensor.Add(mean, tensor.Mul(tensor.Exp(tensor.Scale(logVariance, 0.5)), noise)), predXStart
}

// DDIMSample is one DDIM step (Song et al. 2021, eq. 12; guided-diffusion's
// ddim_sample): with eps re-derived from the x_0 prediction of PMeanVariance,
//
//	sigma   = eta sqrt((1 - abar_prev)/(1 - abar)) sqrt(1 - abar/abar_prev)
//	x_{t-1} = x0_hat sqrt(abar_prev) + sqrt(1 - abar_prev - sigma^2) eps + sigma noise
//
// with no noise at i = 0. noise may be nil where it is unused (i = 0 or eta = 0). It
// returns the sample and the x_0 prediction, both differentiable.
func DDIMSample(s *Schedule, x, modelOutput *tensor.Tensor, i int, noise *tensor.Tensor, eta float64, clipDenoised bool) (sample, predXStart *tensor.Tensor) {
	t := s.same(i, x)
	_, _, _, predXStart = pMeanVariance(s, x, modelOutput, t, clipDenoised)
	eps := predictEpsFromXStart(s, x, predXStart, t)
	// The scalars are computed in float32, as the reference computes them on
	// float32 tensors; the conversions keep the compiler from fusing operations.
	ab, abPrev := float32(s.AlphasCumprod[i]), float32(s.AlphasCumprodPrev[i])
	sigma := float32(float32(eta)*sqrt32((1-abPrev)/(1-ab))) * sqrt32(1-ab/abPrev)
	c := sqrt32((1 - abPrev) - float32(sigma*sigma))
	meanPred := tensor.Add(
		tensor.Mul(predXStart, s.full(sqrt32(abPrev), x)),
		tensor.Mul(s.full(c, x), eps))
	if i == 0 || sigma == 0 {
		return meanPred, predXStart
	}
	checkSame("DDIMSample noise", noise, x)
	return tensor.Add(meanPred, tensor.Mul(s.full(sigma, x), noise)), predXStart
}

// DDIMReverseSample is one step of the deterministic DDIM ODE run forwards, from x_t to
// x_{t+1} (guided-diffusion's ddim_reverse_sample, eta = 0):
// x_{t+1} = x0_hat sqrt(abar_next) + sqrt(1 - abar_next) eps. It returns the sample and
// the x_0 prediction.
func DDIMReverseSample(s *Schedule, x, modelOutput *tensor.Tensor, i int, clipDenoised bool) (sample, predXStart *tensor.Tensor) {
	t := s.same(i, x)
	_, _, _, predXStart = pMeanVariance(s, x, modelOutput, t, clipDenoised)
	eps := predictEpsFromXStart(s, x, predXStart, t)
	abNext := float32(s.AlphasCumprodNext[i])
	return tensor.Add(
		tensor.Mul(predXStart, s.full(sqrt32(abNext), x)),
		tensor.Mul(s.full(sqrt32(1-abNext), x), eps)), predXStart
}

// PredictXStartFromEps returns x0_hat = sqrt(1/abar_i) x - sqrt(1/abar_i - 1) eps
// (Ho et al. 2020, eq. 15 solved for x_0).
func PredictXStartFromEps(s *Schedule, x, eps *tensor.Tensor, i int) *tensor.Tensor {
	return predictXStartFromEps(s, x, eps, s.same(i, x))
}

// PredictEpsFromXStart returns eps = (sqrt(1/abar_i) x - x0) / sqrt(1/abar_i - 1), the
// inverse of PredictXStartFromEps.
func PredictEpsFromXStart(s *Schedule, x, x0 *tensor.Tensor, i int) *tensor.Tensor {
	return predictEpsFromXStart(s, x, x0, s.same(i, x))
}

// PredictXStartFromXPrev returns x_0 from the posterior mean xPrev:
// (xPrev - PosteriorMeanCoef2 x) / PosteriorMeanCoef1, computed as the reference does,
// (1/coef1) xPrev - (coef2/coef1) x.
func PredictXStartFromXPrev(s *Schedule, x, xPrev *tensor.Tensor, i int) *tensor.Tensor {
	return predictXStartFromXPrev(s, x, xPrev, s.same(i, x))
}

// pMeanVariance is PMeanVariance with one index per sample.
func pMeanVariance(s *Schedule, x, modelOutput *tensor.Tensor, t []int, clip bool) (mean, variance, logVariance, predXStart *tensor.Tensor) {
	if x.Rank() < 2 {
		panic(fmt.Sprintf("diffusion: x of shape %v: want [N, C, ...]", x.Shape()))
	}
	c := x.Dim(1)
	out := modelOutput
	switch s.VarType {
	case VarLearned, VarLearnedRange:
		want := append([]int(nil), x.Shape()...)
		want[1] = 2 * c
		if !equalInts(modelOutput.Shape(), want) {
			panic(fmt.Sprintf("diffusion: model output of shape %v for x of shape %v: want %v (learned variance)",
				modelOutput.Shape(), x.Shape(), want))
		}
		parts := tensor.Split(modelOutput, 1, c, c)
		out = parts[0]
		v := parts[1]
		if s.VarType == VarLearned {
			logVariance = v
		} else {
			minLog := s.coef(s.PosteriorLogVarianceClipped, t, x)
			maxLog := s.coefFunc(func(i int) float64 { return math.Log(s.Betas[i]) }, t, x)
			// The model's v is in [-1, 1] for [min_var, max_var].
			frac := tensor.Scale(tensor.AddScalar(v, 1), 0.5)
			logVariance = tensor.Add(tensor.Mul(frac, maxLog), tensor.Mul(tensor.AddScalar(tensor.Neg(frac), 1), minLog))
		}
		variance = tensor.Exp(logVariance)
	case VarFixedSmall:
		checkSame("model output", modelOutput, x)
		variance = tensor.Expand(s.coef(s.PosteriorVariance, t, x), x.Shape()...)
		logVariance = tensor.Expand(s.coef(s.PosteriorLogVarianceClipped, t, x), x.Shape()...)
	case VarFixedLarge:
		checkSame("model output", modelOutput, x)
		// beta~_1 at the first step gives a better decoder log-likelihood.
		large := func(i int) float64 {
			if i == 0 {
				return s.PosteriorVariance[1]
			}
			return s.Betas[i]
		}
		variance = tensor.Expand(s.coefFunc(large, t, x), x.Shape()...)
		logVariance = tensor.Expand(s.coefFunc(func(i int) float64 { return math.Log(large(i)) }, t, x), x.Shape()...)
	default:
		panic(fmt.Sprintf("diffusion: invalid %v", s.VarType))
	}
	process := func(x0 *tensor.Tensor) *tensor.Tensor {
		if clip {
			return tensor.Clamp(x0, -1, 1)
		}
		return x0
	}
	switch s.MeanType {
	case MeanPreviousX:
		predXStart = process(predictXStartFromXPrev(s, x, out, t))
		mean = out
	case MeanStartX:
		predXStart = process(out)
		mean = posteriorMean(s, predXStart, x, t)
	case MeanEpsilon:
		predXStart = process(predictXStartFromEps(s, x, out, t))
		mean = posteriorMean(s, predXStart, x, t)
	default:
		panic(fmt.Sprintf("diffusion: invalid %v", s.MeanType))
	}
	return mean, variance, logVariance, predXStart
}

func predictXStartFromEps(s *Schedule, x, eps *tensor.Tensor, t []int) *tensor.Tensor {
	checkSame("eps", eps, x)
	return tensor.Sub(
		tensor.Mul(s.coef(s.SqrtRecipAlphasCumprod, t, x), x),
		tensor.Mul(s.coef(s.SqrtRecipm1AlphasCumprod, t, x), eps))
}

func predictEpsFromXStart(s *Schedule, x, x0 *tensor.Tensor, t []int) *tensor.Tensor {
	checkSame("x0", x0, x)
	return tensor.Div(
		tensor.Sub(tensor.Mul(s.coef(s.SqrtRecipAlphasCumprod, t, x), x), x0),
		s.coef(s.SqrtRecipm1AlphasCumprod, t, x))
}

func predictXStartFromXPrev(s *Schedule, x, xPrev *tensor.Tensor, t []int) *tensor.Tensor {
	checkSame("x_{t-1}", xPrev, x)
	return tensor.Sub(
		tensor.Mul(s.coefFunc(func(i int) float64 { return 1.0 / s.PosteriorMeanCoef1[i] }, t, x), xPrev),
		tensor.Mul(s.coefFunc(func(i int) float64 { return s.PosteriorMeanCoef2[i] / s.PosteriorMeanCoef1[i] }, t, x), x))
}

// posteriorMean returns PosteriorMeanCoef1 x0 + PosteriorMeanCoef2 x_t.
func posteriorMean(s *Schedule, x0, xt *tensor.Tensor, t []int) *tensor.Tensor {
	checkSame("x_0", x0, xt)
	return tensor.Add(
		tensor.Mul(s.coef(s.PosteriorMeanCoef1, t, xt), x0),
		tensor.Mul(s.coef(s.PosteriorMeanCoef2, t, xt), xt))
}

// same returns the index i for each of x's N samples, checking it.
func (s *Schedule) same(i int, x *tensor.Tensor) []int {
	s.check(i)
	if x.Rank() < 1 {
		panic(fmt.Sprintf("diffusion: x of shape %v has no batch axis", x.Shape()))
	}
	t := make([]int, x.Dim(0))
	for k := range t {
		t[k] = i
	}
	return t
}

// coef is guided-diffusion's _extract_into_tensor before its expand: arr[t[n]] rounded
// to float32, as an [N, 1, ..., 1] tensor of x's rank that broadcasts against x.
func (s *Schedule) coef(arr []float64, t []int, x *tensor.Tensor) *tensor.Tensor {
	return s.coefFunc(func(i int) float64 { return arr[i] }, t, x)
}

// coefFunc is coef for the array whose element i is f(i).
func (s *Schedule) coefFunc(f func(i int) float64, t []int, x *tensor.Tensor) *tensor.Tensor {
	if x.Rank() < 1 || len(t) != x.Dim(0) {
		panic(fmt.Sprintf("diffusion: %d step indices for x of shape %v", len(t), x.Shape()))
	}
	v := make([]float32, len(t))
	for k, i := range t {
		s.check(i)
		v[k] = float32(f(i))
	}
	shape := make([]int, x.Rank())
	for k := range shape {
		shape[k] = 1
	}
	shape[0] = len(t)
	return tensor.FromSlice(x.Device(), v, shape...)
}

// full returns the float32 scalar v as an [N, 1, ..., 1] tensor against x.
func (s *Schedule) full(v float32, x *tensor.Tensor) *tensor.Tensor {
	shape := make([]int, x.Rank())
	for k := range shape {
		shape[k] = 1
	}
	shape[0] = x.Dim(0)
	return tensor.Full(x.Device(), v, shape...)
}

// sqrt32 is a float32 square root (correctly rounded, as float32 sqrt is in PyTorch).
func sqrt32(v float32) float32 { return float32(math.Sqrt(float64(v))) }

func checkSame(what string, a, x *tensor.Tensor) {
	if a == nil {
		panic(fmt.Sprintf("diffusion: %s is nil", what))
	}
	if !equalInts(a.Shape(), x.Shape()) {
		panic(fmt.Sprintf("diffusion: %s of shape %v for x of shape %v", what, a.Shape(), x.Shape()))
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
