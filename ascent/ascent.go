// Package ascent is the gradient-ascent baseline for most exciting inputs (MEIs), as
// the sinzlab `mei` package runs it for EGG's comparison (egg-method.md section 5).
//
// From an initial image x (model-input space, [N, C, H, W]), each iteration i:
//
//	e_i = f(x)                         (the objective of each sample, before the update)
//	g   = d(-sum e_i)/dx
//	g'  = GaussianBlur_sigma(g)        (preconditioning; mei.legacy.ops.GaussianBlur)
//	x   = AdamW step on x with g'      (torch.optim.AdamW)
//	x   = x * c / ||x||_2 per sample   (mei.legacy.ops.ChangeNorm)
//
// Samples of a batch are independent runs (their objectives do not interact), so a
// batch of many neurons gives the same images as one run per neuron.
package ascent

import (
	"context"
	"fmt"
	"math"

	"egg/optim"
	"egg/tensor"
)

// Objective returns the value each sample of a batch [N, ...] should maximise, [N].
type Objective func(x *tensor.Tensor) *tensor.Tensor

// Config holds the settings of a run; Default gives the published ones.
type Config struct {
	Iterations  int     // update steps; the reference's stopper lets Iterations+1 run (see Steps)
	LR          float64 // AdamW learning rate
	Beta1       float64
	Beta2       float64
	Eps         float64
	WeightDecay float64
	BlurSigma   float64 // Gaussian blur of the gradient; 0 disables it
	Norm        float32 // L2 norm of each image after every step; 0 disables it
	// BlurImage blurs the image after each step instead of the gradient (the
	// reconstruction baseline of the EGG paper).
	BlurImage bool
}

// Default is the configuration of EGG's scripts/meis_ga.py: 1000 iterations, AdamW
// (lr 10, betas 0.9/0.999, eps 1e-8, weight decay 0.01), blur sigma 1, norm 25.
func Default() Config {
	return Config{Iterations: 1000, LR: 10, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, BlurSigma: 1, Norm: 25}
}

// Steps is the number of updates a run makes: Iterations + 1, as mei's NumIterations
// stopper stops when the step index reaches Iterations after evaluating it.
func (c Config) Steps() int { return c.Iterations + 1 }

// Step is what the callback sees after each update.
type Step struct {
	Index          int
	Evaluation     []float32      // the objective of the image before the update, per sample
	Grad           *tensor.Tensor // d(-objective)/dx
	Preconditioned *tensor.Tensor // the blurred gradient fed to AdamW
	Image          *tensor.Tensor // the image after the update and the norm constraint
}

// Result is the outcome of a run.
type Result struct {
	Image      *tensor.Tensor // the final image
	Evaluation []float32      // the objective of the image before the last update (mei's score)
}

// Run performs gradient ascent from x0 (not modified). callback (may be nil) sees
// every step. It returns an error if the objective becomes NaN or infinite, and
// ctx's error, between two steps, once ctx is done.
func Run(ctx context.Context, x0 *tensor.Tensor, f Objective, cfg Config, callback func(Step)) (Result, error) {
	if cfg.Iterations < 0 || cfg.LR <= 0 {
		return Result{}, fmt.Errorf("ascent: need iterations >= 0 and a positive learning rate (got %d, %g)", cfg.Iterations, cfg.LR)
	}
	x := x0.Clone().SetRequiresGrad(true)
	opt := optim.NewAdamW([]optim.Group{{Params: []*tensor.Tensor{x}, LR: cfg.LR, WeightDecay: cfg.WeightDecay}},
		optim.AdamConfig{Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.Eps})
	var res Result
	for i := 0; i < cfg.Steps(); i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		e := f(x)
		if e.Rank() != 1 || e.Dim(0) != x.Dim(0) {
			panic(fmt.Sprintf("ascent: objective of shape %v for a batch of %d", e.Shape(), x.Dim(0)))
		}
		eval := e.Values()
		for k, v := range eval {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return res, fmt.Errorf("ascent: the objective of sample %d is %v at iteration %d; lower the learning rate or check the model", k, v, i)
			}
		}
		g := tensor.Grad(tensor.Neg(tensor.Sum(e, false)), nil, x)[0]
		pg := g
		if cfg.BlurSigma > 0 && !cfg.BlurImage {
			pg = tensor.GaussianBlur(g, cfg.BlurSigma)
		}
		x.SetGrad(pg)
		opt.Step()
		x.SetGrad(nil)
		next := x.Detach()
		if cfg.BlurSigma > 0 && cfg.BlurImage {
			next = tensor.GaussianBlur(next, cfg.BlurSigma)
		}
		if cfg.Norm > 0 {
			next = tensor.ChangeNorm(next, cfg.Norm)
		}
		// In place, on the device when x is there (next is x itself when there is
		// neither blur nor norm).
		if cfg.BlurSigma > 0 && cfg.BlurImage || cfg.Norm > 0 {
			x.Assign(next)
		}
		res = Result{Image: x.Detach().Clone(), Evaluation: eval}
		if callback != nil {
			callback(Step{Index: i, Evaluation: eval, Grad: g, Preconditioned: pg, Image: res.Image})
		}
	}
	return res, nil
}
