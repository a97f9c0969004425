package diffusion

import (
	"fmt"
	"math"

	"egg/tensor"
)

// QMeanVariance returns q(x_t | x_0) (Ho et al. 2020, eq. 4): the mean
// sqrt(abar_t) x0, the variance 1 - abar_t and its log, each of x0's shape. t holds one
// respaced index per sample.
func QMeanVariance(s *Schedule, x0 *tensor.Tensor, t []int) (mean, variance, logVariance *tensor.Tensor) {
	mean = tensor.Mul(s.coef(s.SqrtAlphasCumprod, t, x0), x0)
	variance = tensor.Expand(s.coefFunc(func(i int) float64 { return 1.0 - s.AlphasCumprod[i] }, t, x0), x0.Shape()...)
	logVariance = tensor.Expand(s.coef(s.LogOneMinusAlphasCumprod, t, x0), x0.Shape()...)
	return mean, variance, logVariance
}

// QSample draws x_t ~ q(x_t | x_0) with the given standard normal noise (Ho et al.
// 2020, eq. 4; guided-diffusion's q_sample): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.
// t holds one respaced index per sample; noise has x0's shape.
func QSample(s *Schedule, x0 *tensor.Tensor, t []int, noise *tensor.Tensor) *tensor.Tensor {
	checkSame("QSample noise", noise, x0)
	return tensor.Add(
		tensor.Mul(s.coef(s.SqrtAlphasCumprod, t, x0), x0),
		tensor.Mul(s.coef(s.SqrtOneMinusAlphasCumprod, t, x0), noise))
}

// QPosteriorMeanVariance returns the diffusion posterior q(x_{t-1} | x_t, x_0) (Ho et
// al. 2020, eqs. 6-7): its mean PosteriorMeanCoef1 x0 + PosteriorMeanCoef2 xt, its
// variance and its clipped log variance, each of xt's shape. t holds one respaced index
// per sample.
func QPosteriorMeanVariance(s *Schedule, x0, xt *tensor.Tensor, t []int) (mean, variance, logVarianceClipped *tensor.Tensor) {
	mean = posteriorMean(s, x0, xt, t)
	variance = tensor.Expand(s.coef(s.PosteriorVariance, t, xt), xt.Shape()...)
	logVarianceClipped = tensor.Expand(s.coef(s.PosteriorLogVarianceClipped, t, xt), xt.Shape()...)
	return mean, variance, logVarianceClipped
}

// NormalKL returns the element-wise KL divergence KL(N(mean1, e^logvar1) ||
// N(mean2, e^logvar2)) in nats, with broadcasting (guided-diffusion's normal_kl):
//
//	0.5 (-1 + logvar2 - logvar1 + e^(logvar1 - logvar2) + (mean1 - mean2)^2 e^-logvar2)
func NormalKL(mean1, logvar1, mean2, logvar2 *tensor.Tensor) *tensor.Tensor {
	d := tensor.Sub(mean1, mean2)
	k := tensor.Sub(tensor.AddScalar(logvar2, -1), logvar1)
	k = tensor.Add(k, tensor.Exp(tensor.Sub(logvar1, logvar2)))
	k = tensor.Add(k, tensor.Mul(tensor.Mul(d, d), tensor.Exp(tensor.Neg(logvar2))))
	return tensor.Scale(k, 0.5)
}

// approxStandardNormalCDF is the tanh approximation of the standard normal CDF:
// 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
func approxStandardNormalCDF(x *tensor.Tensor) *tensor.Tensor {
	x3 := tensor.Mul(tensor.Mul(x, x), x)
	in := tensor.Scale(tensor.Add(x, tensor.Scale(x3, 0.044715)), float32(math.Sqrt(2.0/math.Pi)))
	return tensor.Scale(tensor.AddScalar(tensor.Tanh(in), 1), 0.5)
}

// DiscretizedGaussianLogLikelihood returns, element-wise, the log-probability in nats
// of the 8-bit image x (scaled to [-1, 1]) under a Gaussian of the given means and log
// standard deviations discretized to bins of width 2/255, the edge bins reaching to
// ±infinity (Ho et al. 2020, eq. 13; guided-diffusion's
// discretized_gaussian_log_likelihood, with its tanh approximation of the normal CDF).
// All three tensors have one shape. The result is differentiable with respect to
// means and logScales (not x).
func DiscretizedGaussianLogLikelihood(x, means, logScales *tensor.Tensor) *tensor.Tensor {
	checkSame("means", means, x)
	checkSame("log scales", logScales, x)
	const halfBin = float32(1.0 / 255.0)
	centered := tensor.Sub(x, means)
	invStdv := tensor.Exp(tensor.Neg(logScales))
	cdfPlus := approxStandardNormalCDF(tensor.Mul(invStdv, tensor.AddScalar(centered, halfBin)))
	cdfMin := approxStandardNormalCDF(tensor.Mul(invStdv, tensor.AddScalar(centered, -halfBin)))
	floor := float32(1e-12)
	inf := float32(math.Inf(1))
	logCDFPlus := tensor.Log(tensor.Clamp(cdfPlus, floor, inf))
	logOneMinusCDFMin := tensor.Log(tensor.Clamp(tensor.AddScalar(tensor.Neg(cdfMin), 1), floor, inf))
	logCDFDelta := tensor.Log(tensor.Clamp(tensor.Sub(cdfPlus, cdfMin), floor, inf))
	// th.where(x < -0.999, log_cdf_plus, th.where(x > 0.999, log_one_minus_cdf_min,
	// log_cdf_delta)) as a sum of masked terms: every term is finite, so the masks select
	// exactly, gradients included. (Values, not Data: x stays valid on an accelerator.)
	xs := x.Values()
	low, high, mid := make([]float32, len(xs)), make([]float32, len(xs)), make([]float32, len(xs))
	for k, v := range xs {
		switch {
		case v < float32(-0.999):
			low[k] = 1
		case v > float32(0.999):
			high[k] = 1
		default:
			mid[k] = 1
		}
	}
	dev, shape := x.Device(), x.Shape()
	return tensor.Add(tensor.Add(
		tensor.Mul(logCDFPlus, tensor.FromSlice(dev, low, shape...)),
		tensor.Mul(logOneMinusCDFMin, tensor.FromSlice(dev, high, shape...))),
		tensor.Mul(logCDFDelta, tensor.FromSlice(dev, mid, shape...)))
}

// MeanFlat returns the mean over every axis but the first: [N, ...] -> [N].
func MeanFlat(x *tensor.Tensor) *tensor.Tensor {
	if x.Rank() < 2 {
		return x
	}
	axes := make([]int, x.Rank()-1)
	for k := range axes {
		axes[k] = k + 1
	}
	return tensor.Mean(x, false, axes...)
}

// VBTerms returns the variational-bound term of each sample in bits per dimension
// (guided-diffusion's _vb_terms_bpd), [N]: the KL divergence from the posterior
// q(x_{t-1} | x_t, x_0) to the model's p(x_{t-1} | x_t) (PMeanVariance of
// modelOutput), and at t = 0 the negative log-likelihood of x0 under the discretized
// Gaussian decoder. t holds one respaced index per sample.
func VBTerms(s *Schedule, x0, xt, modelOutput *tensor.Tensor, t []int, clipDenoised bool) *tensor.Tensor {
	trueMean, _, trueLogVariance := QPosteriorMeanVariance(s, x0, xt, t)
	mean, _, logVariance, _ := pMeanVariance(s, xt, modelOutput, t, clipDenoised)
	ln2 := tensor.Scalar(x0.Device(), float32(math.Ln2))
	kl := tensor.Div(MeanFlat(NormalKL(trueMean, trueLogVariance, mean, logVariance)), ln2)
	nll := tensor.Div(MeanFlat(tensor.Neg(DiscretizedGaussianLogLikelihood(x0, mean, tensor.Scale(logVariance, 0.5)))), ln2)
	first, rest := make([]float32, len(t)), make([]float32, len(t))
	for k, i := range t {
		if i == 0 {
			first[k] = 1
		} else {
			rest[k] = 1
		}
	}
	dev := x0.Device()
	return tensor.Add(
		tensor.Mul(nll, tensor.FromSlice(dev, first, len(t))),
		tensor.Mul(kl, tensor.FromSlice(dev, rest, len(t))))
}

// Losses are the per-sample training losses of TrainingLosses, each [N].
type Losses struct {
	Loss *tensor.Tensor // MSE + VB (MSE alone for fixed variances)
	MSE  *tensor.Tensor // mean squared error of the model's mean output (L_simple)
	VB   *tensor.Tensor // variational-bound term with the mean frozen, or nil for fixed variances
}

// TrainingLosses returns guided-diffusion's training_losses for the MSE loss type, the
// hybrid loss of Nichol & Dhariwal 2021 (eq. 16): the mean squared error between the
// model's mean output and its target (the noise for MeanEpsilon, x0 for MeanStartX, the
// posterior mean for MeanPreviousX; Ho et al. 2020, eq. 14) plus, for the learned
// variance types, VBTerms computed with the mean output detached so that the bound
// trains only the variance. xt must be QSample(s, x0, t, noise) and modelOutput the
// model's output on xt at the timesteps ModelTimestep(t[n]). guided-diffusion's
// RESCALED_MSE loss type (its default for learned sigmas) multiplies VB by
// NumTimesteps/1000 before adding it; do so from the returned VB where needed.
func TrainingLosses(s *Schedule, x0, xt, noise, modelOutput *tensor.Tensor, t []int) Losses {
	checkSame("x_t", xt, x0)
	checkSame("noise", noise, x0)
	var l Losses
	out := modelOutput
	if s.VarType == VarLearned || s.VarType == VarLearnedRange {
		c := x0.Dim(1)
		want := append([]int(nil), x0.Shape()...)
		want[1] = 2 * c
		if !equalInts(modelOutput.Shape(), want) {
			panic(fmt.Sprintf("diffusion: model output of shape %v for x of shape %v: want %v (learned variance)",
				modelOutput.Shape(), x0.Shape(), want))
		}
		parts := tensor.Split(modelOutput, 1, c, c)
		out = parts[0]
		frozen := tensor.Concat(1, out.Detach(), parts[1])
		l.VB = VBTerms(s, x0, xt, frozen, t, false)
	}
	var target *tensor.Tensor
	switch s.MeanType {
	case MeanEpsilon:
		target = noise
	case MeanStartX:
		target = x0
	case MeanPreviousX:
		target = posteriorMean(s, x0, xt, t)
	default:
		panic(fmt.Sprintf("diffusion: invalid %v", s.MeanType))
	}
	checkSame("model mean output", out, x0)
	d := tensor.Sub(target, out)
	l.MSE = MeanFlat(tensor.Mul(d, d))
	l.Loss = l.MSE
	if l.VB != nil {
		l.Loss = tensor.Add(l.MSE, l.VB)
	}
	return l
}
