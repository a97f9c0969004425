// Package guidance is the energy-guided diffusion sampler (EGG; Pierzchlewicz et al.,
// NeurIPS 2023, "Energy Guided Diffusion for Generating Neurally Exciting Images").
//
// At every respaced step i, from T'-1 down to 0 (egg-method.md section 3):
//
//	x'     = DDPM step of x_t (mean + sigma z; no noise at i = 0)
//	x0_hat = the model's prediction of x_0 from x_t
//	g      = d E(x0_hat) / d x_t, back-propagated through the denoiser
//	g      = g / (||g||_2 + 1e-6)            (per sample, over the batch, or not at all)
//	g      = g * sqrt(1 - abar_i)            (optional, use_alpha_bar)
//	x_{t-1} = x' - lambda g                  (also at the last step)
//
// Shapes are [N, C, H, W]; energies are one value per sample, and the gradient of
// their sum is taken, so that samples of a batch stay independent unless the
// reference's batch-wide normalisation is asked for.
package guidance

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"egg/diffusion"
	"egg/tensor"
)

// Denoiser is a diffusion model: it maps x_t [N, C, H, W] at model timesteps t (one
// per sample) and class labels y (nil when unconditional) to its output (epsilon and,
// with a learned variance, the variance values). adm.UNet is one.
type Denoiser interface {
	Forward(x *tensor.Tensor, t []float32, y []int) *tensor.Tensor
}

// Energy is a differentiable function of a batch of images [N, C, H, W] that returns
// one energy per sample, [N]. Lower energy is better: to excite a neuron, use minus
// its response.
type Energy interface {
	Energy(x *tensor.Tensor) *tensor.Tensor
}

// EnergyFunc adapts a function to Energy.
type EnergyFunc func(x *tensor.Tensor) *tensor.Tensor

// Energy implements Energy.
func (f EnergyFunc) Energy(x *tensor.Tensor) *tensor.Tensor { return f(x) }

// Norm says how the energy gradient is normalised before the update.
type Norm int

const (
	// PerSample divides each sample's gradient by its own L2 norm (+1e-6): each sample
	// of a batch is an independent run. The default.
	PerSample Norm = iota
	// Batch divides the whole batch's gradient by the norm of the batch tensor, as
	// the reference implementation does (it couples the samples of a batch).
	Batch
	// Raw leaves the gradient as it is.
	Raw
)

// ParseNorm reads "sample", "batch" or "none".
func ParseNorm(s string) (Norm, error) {
	switch s {
	case "sample", "per-sample":
		return PerSample, nil
	case "batch":
		return Batch, nil
	case "none", "raw":
		return Raw, nil
	}
	return 0, fmt.Errorf("guidance: unknown gradient normalisation %q (want sample, batch or none)", s)
}

// Options are the settings of a guided run.
type Options struct {
	Scale       float64 // the energy scale lambda
	Norm        Norm
	UseAlphaBar bool  // multiply the gradient by sqrt(1 - abar_i)
	Labels      []int // class labels for class-conditional denoisers, else nil
	// ClipX0 clips the x0 prediction to [-1, 1] before the posterior mean
	// (guided-diffusion's clip_denoised); the energy then sees the clipped x0. A
	// process whose first x0 prediction is ill-conditioned (the cosine schedule)
	// needs it.
	ClipX0 bool
	// Callback, when set, is called after every step.
	Callback func(Step)
}

// Step is what the callback sees after respaced step Index (counting down to 0).
type Step struct {
	Index  int
	Xt     *tensor.Tensor // the input of the step
	X0     *tensor.Tensor // the model's x0 prediction at this step
	XPrime *tensor.Tensor // the DDPM sample before the guidance update
	Sample *tensor.Tensor // x_{t-1}, after the update
	Energy []float32      // the energy of X0, per sample
}

// Result is the outcome of a run.
type Result struct {
	Sample *tensor.Tensor // the last x_{t-1}
	X0     *tensor.Tensor // the x0 prediction of the last step (what the MEI scripts keep)
}

// NonFiniteEnergyError says that the energy of a sample turned NaN or infinite
// (usually an energy scale too large for the model, or a model that outputs NaN).
type NonFiniteEnergyError struct {
	Sample, Step int
	Value        float32
}

func (e *NonFiniteEnergyError) Error() string {
	return fmt.Sprintf("guidance: the energy of sample %d is %v at step %d", e.Sample, e.Value, e.Step)
}

// GuidedStep runs step i of EGG from x_t with the given noise (nil at i = 0) and
// returns the step's record. Neither xt nor the results carry history. A NaN or
// infinite energy is a *NonFiniteEnergyError.
func GuidedStep(model Denoiser, s *diffusion.Schedule, xt *tensor.Tensor, i int, noise *tensor.Tensor, energy Energy, opts Options) (Step, error) {
	x := xt.Detach().SetRequiresGrad(true)
	n := x.Dim(0)
	ts := make([]float32, n)
	for k := range ts {
		ts[k] = s.ModelTimestep(i)
	}
	out := model.Forward(x, ts, opts.Labels)
	xprime, x0 := diffusion.PSample(s, x, out, i, noise, opts.ClipX0)
	e := energy.Energy(x0)
	if e.Rank() != 1 || e.Dim(0) != n {
		panic(fmt.Sprintf("guidance: the energy returned shape %v for %d samples; want [%d]", e.Shape(), n, n))
	}
	energies := e.Values()
	for k, v := range energies {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return Step{}, &NonFiniteEnergyError{Sample: k, Step: i, Value: v}
		}
	}
	g := tensor.Grad(tensor.Sum(e, false), nil, x)[0]
	update := normalise(g, opts.Norm)
	if opts.UseAlphaBar {
		update = tensor.Scale(update, float32(math.Sqrt(1-s.AlphasCumprod[i])))
	}
	xp := xprime.Detach()
	next := tensor.Sub(xp, tensor.Scale(update, float32(opts.Scale)))
	return Step{Index: i, Xt: xt, X0: x0.Detach(), XPrime: xp, Sample: next, Energy: energies}, nil
}

// normalise divides g by its L2 norm (+1e-6) per sample or over the whole batch.
func normalise(g *tensor.Tensor, norm Norm) *tensor.Tensor {
	switch norm {
	case Raw:
		return g
	case Batch:
		return tensor.Div(g, tensor.AddScalar(tensor.L2Norm(g, false), 1e-6))
	}
	axes := make([]int, g.Rank()-1)
	for k := range axes {
		axes[k] = k + 1
	}
	return tensor.Div(g, tensor.AddScalar(tensor.L2Norm(g, true, axes...), 1e-6))
}

// Noise draws a standard normal batch [N, ...shape] with sample k drawn from rngs[k],
// so that a sample's noise does not depend on the batch it runs in.
func Noise(dev *tensor.Device, rngs []*rand.Rand, shape ...int) *tensor.Tensor {
	if len(rngs) != shape[0] {
		panic(fmt.Sprintf("guidance: %d random sources for a batch of %d", len(rngs), shape[0]))
	}
	n := 1
	for _, s := range shape {
		n *= s
	}
	v := make([]float32, n)
	size := n / shape[0]
	for k, r := range rngs {
		for j := range size {
			v[k*size+j] = float32(r.NormFloat64())
		}
	}
	return tensor.FromSlice(dev, v, shape...)
}

// Sample runs EGG from x_T over every respaced step of s. The noise of the stochastic
// steps of sample k is drawn from rngs[k], in step order, so a sample's trajectory
// does not depend on its batch. It stops with a *NonFiniteEnergyError if the energy
// turns NaN or infinite (the step and sample are named), and with ctx's error,
// between two steps, once ctx is done.
func Sample(ctx context.Context, model Denoiser, s *diffusion.Schedule, xT *tensor.Tensor, energy Energy, rngs []*rand.Rand, opts Options) (Result, error) {
	x := xT
	var last Step
	for i := s.NumTimesteps - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		var noise *tensor.Tensor
		if i > 0 {
			noise = Noise(x.Device(), rngs, x.Shape()...)
		}
		var err error
		if last, err = GuidedStep(model, s, x, i, noise, energy, opts); err != nil {
			return Result{}, err
		}
		if opts.Callback != nil {
			opts.Callback(last)
		}
		x = last.Sample
	}
	return Result{Sample: last.Sample, X0: last.X0}, nil
}

// Unguided runs plain ancestral DDPM sampling (or DDIM with eta when ddim is set)
// without gradients, for `egg sample`; noise as in Sample, x0 clipped as
// Options.ClipX0 when clip is set. callback (may be nil) sees each step.
func Unguided(model Denoiser, s *diffusion.Schedule, xT *tensor.Tensor, rngs []*rand.Rand, labels []int, ddim bool, eta float64, clip bool, callback func(Step)) Result {
	x := xT.Detach()
	var res Result
	for i := s.NumTimesteps - 1; i >= 0; i-- {
		ts := make([]float32, x.Dim(0))
		for k := range ts {
			ts[k] = s.ModelTimestep(i)
		}
		out := model.Forward(x, ts, labels)
		var noise *tensor.Tensor
		if i > 0 && (!ddim || eta > 0) {
			noise = Noise(x.Device(), rngs, x.Shape()...)
		}
		var next, x0 *tensor.Tensor
		if ddim {
			next, x0 = diffusion.DDIMSample(s, x, out, i, noise, eta, clip)
		} else {
			next, x0 = diffusion.PSample(s, x, out, i, noise, clip)
		}
		if callback != nil {
			callback(Step{Index: i, Xt: x, X0: x0, XPrime: next, Sample: next})
		}
		x = next
		res = Result{Sample: next, X0: x0}
	}
	return res
}
