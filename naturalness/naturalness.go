// Package naturalness scores how natural images are under a diffusion prior: by the
// prior's variational bound on their negative log-likelihood, in bits per dimension
// (Ho et al. 2020, eq. 5; Nichol & Dhariwal 2021, section 2 and their calc_bpd_loop).
// Lower is more natural: the prior explains the image with fewer bits.
//
// # The bound
//
// For an 8-bit image x0 in the diffusion's [-1, 1] space and a process of T steps
// (indices t = 0 .. T-1, as package diffusion counts them),
//
//	L(x0) = L_T + L_0 + sum_{t=1}^{T-1} L_t                                 (bits/dim)
//	L_T   = KL(q(x_T | x0) || N(0, I))                                      (the prior term)
//	L_0   = -log p(x0 | x_1), the discretized Gaussian decoder               (t = 0)
//	L_t   = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)),  x_t = q_sample(x0, t, eps_t)
//
// each averaged over the image's dimensions and divided by ln 2. The terms L_t and L_0
// are diffusion.VBTerms (guided-diffusion's _vb_terms_bpd, with the model's learned or
// fixed variance and, by default, its x0 prediction clipped to [-1, 1] as in
// guided-diffusion's calc_bpd_loop; see Config.Unclipped); L_T is computed exactly
// from diffusion.QMeanVariance and diffusion.NormalKL.
//
// # The estimate
//
// Evaluating all T terms costs T forward passes of the UNet per image. The Estimator
// evaluates K of them, a fixed, seeded, stratified subset:
//
//   - t = 0 (the decoder term, on another scale than the KL terms) always, weight 1;
//
//   - the other K-1 timesteps one per stratum: 1 .. T-1 is cut into K-1 contiguous
//     strata [b_j, b_{j+1}) with b_j = 1 + floor((T-1) (j/(K-1))^p) (then moved, where
//     needed, so that every stratum holds at least one step), and one timestep t_j is
//     drawn uniformly from each and weighted by its stratum's size n_j = b_{j+1} - b_j:
//
//     L_hat(x0) = L_T + L_0 + sum_j n_j L_{t_j}
//
// L_hat is unbiased for L over the draw of the timesteps (each t has inclusion
// probability 1/n_j and weight n_j), and with K >= T it is the full sum. With p = 1
// the strata are equal and the importance weight is (T-1)/(K-1), about T/K. The
// default p = 2 makes the strata near t = 0 narrow (the first ones a single step) and
// the late ones wide: the KL terms are largest and change fastest at small t (Nichol &
// Dhariwal 2021, figure 2), where one draw weighted by a wide stratum would dominate
// the estimate's variance.
//
// The timesteps and the noise eps_t are functions of the seed only, the same for every
// image (common random numbers): differences between images are not differences of
// draws, and an image's score does not depend on the batch it is scored in.
//
// Images must have the shape the prior was trained on; FromUint8, Fit and Quantize
// prepare 8-bit patches and continuous images (such as EGG's x0 predictions) for it.
// Only forward passes are run (no gradients).
package naturalness

import (
	"context"
	"errors"
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

// Progress is told about each finished (image, timestep) evaluation; a
// progress.Bar is one.
type Progress interface {
	Add(n int) error
}

// Config are the settings of an Estimator.
type Config struct {
	// Steps is K, the number of timesteps evaluated per image (at least 2; K >= T
	// evaluates every timestep, which is the exact bound).
	Steps int
	// Power is the exponent p of the strata boundaries (see the package
	// documentation): 1 gives equal strata, 0 means the default 2.
	Power float64
	// Seed fixes the timesteps and the noise.
	Seed uint64
	// BatchSize is the number of (image, timestep) pairs per forward pass (0 means 8).
	BatchSize int
	// Unclipped leaves the model's x0 prediction unclipped in p(x_{t-1} | x_t). By
	// default it is clamped to [-1, 1] before the model mean is formed, as
	// guided-diffusion's NLL evaluation does (calc_bpd_loop with clip_denoised, the
	// default of image_nll.py): near t = T, where x0 = (x_t - sqrt(1 - abar) eps) /
	// sqrt(abar), an unclipped prediction multiplies the model's epsilon error by
	// 1/sqrt(abar) (1e4 at the last step of the cosine schedule) and one term can
	// outweigh all others by a factor of hundreds.
	Unclipped bool
}

// Estimator estimates the bits per dimension of images under one prior. It holds no
// mutable state: one Estimator may score many batches, one after the other or at once.
type Estimator struct {
	model   Denoiser
	sched   *diffusion.Schedule
	seed    uint64
	batch   int
	clip    bool
	steps   []int     // the evaluated timesteps, ascending, steps[0] = 0
	weights []float64 // their weights
}

// New returns the Estimator of the model with the process s (whose every step is a
// term of the bound: pass the process the model was trained on, not a respaced one,
// for the tightest bound) and the settings cfg.
func New(model Denoiser, s *diffusion.Schedule, cfg Config) (*Estimator, error) {
	if model == nil {
		return nil, errors.New("naturalness: no model")
	}
	if s == nil {
		return nil, errors.New("naturalness: no diffusion schedule")
	}
	steps, weights, err := Stratified(s.NumTimesteps, cfg.Steps, cfg.Power, cfg.Seed)
	if err != nil {
		return nil, err
	}
	b := cfg.BatchSize
	if b <= 0 {
		b = 8
	}
	return &Estimator{model: model, sched: s, seed: cfg.Seed, batch: b, clip: !cfg.Unclipped, steps: steps, weights: weights}, nil
}

// Stratified returns the K timesteps of a process of T steps that the estimate
// evaluates, ascending, and their weights (see the package documentation): 0 with
// weight 1, then one timestep drawn with the seed from each of K-1 strata of 1 .. T-1
// with boundaries spaced by the power p (0 means 2), weighted by its stratum's size.
// The weights sum to T. K >= T returns every timestep with weight 1. It fails for
// K < 2, T < 2 or a negative, NaN or infinite p.
func Stratified(T, K int, p float64, seed uint64) (steps []int, weights []float64, err error) {
	if T < 2 {
		return nil, nil, fmt.Errorf("naturalness: a process of %d timesteps; want at least 2", T)
	}
	if K < 2 {
		return nil, nil, fmt.Errorf("naturalness: %d timesteps per image; want at least 2 (the decoder term and one KL term)", K)
	}
	if p == 0 {
		p = 2
	}
	if !(p > 0) || math.IsInf(p, 0) {
		return nil, nil, fmt.Errorf("naturalness: strata power %v; want a positive number", p)
	}
	if K >= T {
		steps, weights = make([]int, T), make([]float64, T)
		for t := range steps {
			steps[t], weights[t] = t, 1
		}
		return steps, weights, nil
	}
	bounds := strataBounds(T, K, p)
	rng := rand.New(rand.NewPCG(seed, math.MaxUint64)) // the noise streams use 0 .. T-1
	steps, weights = []int{0}, []float64{1}
	for j := range K - 1 {
		lo, hi := bounds[j], bounds[j+1]
		steps = append(steps, lo+rng.IntN(hi-lo))
		weights = append(weights, float64(hi-lo))
	}
	return steps, weights, nil
}

// strataBounds returns the K boundaries b_0 = 1 < b_1 < ... < b_{K-1} = T of the K-1
// strata of 1 .. T-1, for 2 <= K < T and p > 0.
func strataBounds(T, K int, p float64) []int {
	strata := K - 1
	bounds := make([]int, strata+1)
	for j := range bounds {
		if p == 1 {
			bounds[j] = 1 + j*(T-1)/strata
		} else {
			bounds[j] = 1 + int(math.Floor(float64(T-1)*math.Pow(float64(j)/float64(strata), p)))
		}
	}
	bounds[strata] = T
	// At least one step per stratum: push boundaries up from the start, then cap
	// them so that every later stratum keeps room for its step.
	for j := 1; j <= strata; j++ {
		bounds[j] = max(bounds[j], bounds[j-1]+1)
	}
	bounds[strata] = T
	for j := strata - 1; j >= 1; j-- {
		bounds[j] = min(bounds[j], bounds[j+1]-1)
	}
	return bounds
}

// Timesteps returns the evaluated timesteps, ascending (the first is 0).
func (e *Estimator) Timesteps() []int { return append([]int(nil), e.steps...) }

// Weights returns the weights of the evaluated timesteps, in Timesteps' order.
func (e *Estimator) Weights() []float64 { return append([]float64(nil), e.weights...) }

// Score is one image's bound and its parts, all in bits per dimension.
type Score struct {
	// BitsPerDim is the estimate: Prior + sum_j Weights[j] Terms[j].
	BitsPerDim float64
	// Prior is L_T, exact.
	Prior float64
	// Terms holds L_t at each evaluated timestep (Timesteps' order, unweighted):
	// Terms[0] is the decoder term L_0.
	Terms []float64
}

// BitsPerDim returns the estimate of each image of x [N, C, H, W] (see Score).
func (e *Estimator) BitsPerDim(ctx context.Context, x *tensor.Tensor, progress Progress) ([]float64, error) {
	scores, err := e.Score(ctx, x, progress)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(scores))
	for i, s := range scores {
		out[i] = s.BitsPerDim
	}
	return out, nil
}

// Score estimates the bound for each image of x [N, C, H, W], images in [-1, 1] (8-bit
// values, see Quantize, for the decoder term to be a likelihood), running the model on
// batches of (image, timestep) pairs. It stops with ctx's error when ctx is
// cancelled, and fails on non-finite pixels or results.
func (e *Estimator) Score(ctx context.Context, x *tensor.Tensor, progress Progress) (scores []Score, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if x == nil || x.Rank() != 4 || x.Dim(0) < 1 {
		shape := []int(nil)
		if x != nil {
			shape = x.Shape()
		}
		return nil, fmt.Errorf("naturalness: images of shape %v; want [N, C, H, W] with N >= 1", shape)
	}
	xv := x.Values()
	for k, v := range xv {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("naturalness: pixel %d of the images is %v", k, v)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			scores, err = nil, fmt.Errorf("naturalness: scoring images of shape %v: %v", x.Shape(), r)
		}
	}()
	x = x.Detach()
	n, per := x.Dim(0), x.Len()/x.Dim(0)
	dev := x.Device()
	img := x.Shape()[1:]
	s := e.sched

	scores = make([]Score, n)
	prior := e.prior(x)
	for i := range scores {
		scores[i] = Score{Prior: prior[i], Terms: make([]float64, len(e.steps))}
	}
	noise := make([][]float32, len(e.steps))
	for j, t := range e.steps {
		noise[j] = Noise(e.seed, t, per)
	}

	type pair struct{ image, step int }
	pairs := make([]pair, 0, n*len(e.steps))
	for i := range n {
		for j := range e.steps {
			pairs = append(pairs, pair{i, j})
		}
	}
	for start := 0; start < len(pairs); start += e.batch {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("naturalness: %w", err)
		}
		batch := pairs[start:min(start+e.batch, len(pairs))]
		b := len(batch)
		x0 := make([]float32, 0, b*per)
		eps := make([]float32, 0, b*per)
		idx := make([]int, b)
		ts := make([]float32, b)
		for k, p := range batch {
			x0 = append(x0, xv[p.image*per:(p.image+1)*per]...)
			eps = append(eps, noise[p.step]...)
			idx[k] = e.steps[p.step]
			ts[k] = s.ModelTimestep(idx[k])
		}
		shape := append([]int{b}, img...)
		x0t := tensor.FromSlice(dev, x0, shape...)
		xt := diffusion.QSample(s, x0t, idx, tensor.FromSlice(dev, eps, shape...)).Detach()
		out := e.model.Forward(xt, ts, nil).Detach()
		vb := diffusion.VBTerms(s, x0t, xt, out, idx, e.clip).Values()
		for k, p := range batch {
			scores[p.image].Terms[p.step] = float64(vb[k])
		}
		if progress != nil {
			progress.Add(b)
		}
	}
	for i := range scores {
		total := scores[i].Prior
		for j, w := range e.weights {
			total += w * scores[i].Terms[j]
		}
		if math.IsNaN(total) || math.IsInf(total, 0) {
			return nil, fmt.Errorf("naturalness: the bound of image %d is %v (prior term %v)", i, total, scores[i].Prior)
		}
		scores[i].BitsPerDim = total
	}
	return scores, nil
}

// prior returns L_T = KL(q(x_T | x0) || N(0, I)) of each image in bits per dimension
// (guided-diffusion's _prior_bpd).
func (e *Estimator) prior(x0 *tensor.Tensor) []float64 {
	n := x0.Dim(0)
	last := make([]int, n)
	for i := range last {
		last[i] = e.sched.NumTimesteps - 1
	}
	mean, _, logVar := diffusion.QMeanVariance(e.sched, x0, last)
	zero := tensor.Scalar(x0.Device(), 0)
	kl := diffusion.MeanFlat(diffusion.NormalKL(mean, logVar, zero, zero)).Values()
	out := make([]float64, n)
	for i, v := range kl {
		out[i] = float64(v) / math.Ln2
	}
	return out
}

// Noise returns the standard normal noise eps_t (size values) that the estimate with
// the given seed uses at timestep t for every image.
func Noise(seed uint64, t, size int) []float32 {
	rng := rand.New(rand.NewPCG(seed, uint64(t)))
	v := make([]float32, size)
	for k := range v {
		v[k] = float32(rng.NormFloat64())
	}
	return v
}
