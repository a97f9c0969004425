// Package energy turns encoding models into the energies that guide diffusion (and
// the objectives of gradient ascent), and maps diffusion images to model inputs
// (egg-method.md section 4).
//
// A diffusion image x0 [N, C, S, S] (range about [-1, 1]) becomes a model input
// [N, 1, H, W] by a bilinear resize (align_corners false, no antialias), the mean over
// channels, a rescale to a fixed L2 norm per image (no mean subtraction), an optional
// clip, and an optional receptive-field mask. Energies are one value per sample; lower
// is better, so exciting a neuron means minus its response.
package energy

import (
	"fmt"
	"math"

	"egg/tensor"
)

// Model maps model inputs [N, 1, H, W] to responses [N, neurons]. Encoding models and
// ensembles of package encoder are Models.
type Model interface {
	Forward(x *tensor.Tensor) *tensor.Tensor
}

// Transform maps diffusion images to model inputs.
type Transform struct {
	Height, Width int     // the model's input size
	Norm          float32 // L2 norm of each input image; 0 leaves the norm alone
	ClipLo        float32 // with ClipLo < ClipHi, values are clamped to [ClipLo, ClipHi]
	ClipHi        float32
	Mask          *tensor.Tensor // [1, 1, H, W] or [H, W] multiplied into the input; nil for none
}

// Apply maps x [N, C, S, S] to [N, 1, Height, Width], differentiably.
func (t Transform) Apply(x *tensor.Tensor) *tensor.Tensor {
	if x.Rank() != 4 {
		panic(fmt.Sprintf("energy: Transform of shape %v; want [N, C, H, W]", x.Shape()))
	}
	if x.Dim(2) != t.Height || x.Dim(3) != t.Width {
		x = tensor.ResizeBilinear(x, t.Height, t.Width, false)
	}
	if x.Dim(1) != 1 {
		x = tensor.Mean(x, true, 1)
	}
	if t.Norm > 0 {
		x = tensor.ChangeNorm(x, t.Norm)
	}
	if t.ClipLo < t.ClipHi {
		x = tensor.Clamp(x, t.ClipLo, t.ClipHi)
	}
	if t.Mask != nil {
		x = tensor.Mul(x, tensor.Reshape(t.Mask, 1, 1, t.Height, t.Width))
	}
	return x
}

// Activation is minus the response of one neuron per sample: sample k of a batch
// drives neuron Neurons[k] (so a batch can hold many neurons).
type Activation struct {
	Model     Model
	Transform Transform
	Neurons   []int
}

// Energy implements guidance.Energy.
func (a Activation) Energy(x0 *tensor.Tensor) *tensor.Tensor {
	return tensor.Neg(a.Responses(a.Transform.Apply(x0)))
}

// Responses returns the response of sample k's neuron for model inputs x, [N].
func (a Activation) Responses(x *tensor.Tensor) *tensor.Tensor {
	r := a.Model.Forward(x)
	return pick(r, a.Neurons)
}

// pick returns r[k, idx[k]] for every row k of r [N, M], as [N].
func pick(r *tensor.Tensor, idx []int) *tensor.Tensor {
	n, m := r.Dim(0), r.Dim(1)
	if len(idx) != n {
		panic(fmt.Sprintf("energy: %d neurons for a batch of %d", len(idx), n))
	}
	oneHot := make([]float32, n*m)
	for k, j := range idx {
		if j < 0 || j >= m {
			panic(fmt.Sprintf("energy: neuron %d out of range for a model of %d neurons", j, m))
		}
		oneHot[k*m+j] = 1
	}
	return tensor.Sum(tensor.Mul(r, tensor.FromSlice(r.Device(), oneHot, n, m)), false, 1)
}

// Population is minus a weighted sum of responses: E = -sum_j w_j r_j(x).
type Population struct {
	Model     Model
	Transform Transform
	Weights   []float32 // one per neuron
}

// Energy implements guidance.Energy.
func (p Population) Energy(x0 *tensor.Tensor) *tensor.Tensor {
	r := p.Model.Forward(p.Transform.Apply(x0))
	if r.Dim(1) != len(p.Weights) {
		panic(fmt.Sprintf("energy: %d weights for %d neurons", len(p.Weights), r.Dim(1)))
	}
	w := tensor.FromSlice(r.Device(), p.Weights, 1, len(p.Weights))
	return tensor.Neg(tensor.Sum(tensor.Mul(r, w), false, 1))
}

// Match is the mean squared error between the responses and target responses, per
// sample: E_k = mean_j (r_j(x_k) - target_kj)^2 (reconstruction from responses).
type Match struct {
	Model     Model
	Transform Transform
	Target    *tensor.Tensor // [N, neurons]
	// Neurons, when set, restricts the error to these neurons.
	Neurons []int
}

// Energy implements guidance.Energy.
func (m Match) Energy(x0 *tensor.Tensor) *tensor.Tensor {
	r := m.Model.Forward(m.Transform.Apply(x0))
	target := m.Target
	if m.Neurons != nil {
		r = tensor.Select(r, 1, m.Neurons)
		target = tensor.Select(target, 1, m.Neurons)
	}
	return tensor.Mean(tensor.Pow(tensor.Sub(r, target), 2), false, 1)
}

// Inpaint is ||target - x0 * mask||_2 per sample, in diffusion-image space: it keeps
// the masked part of a target image (the inpainting energy of the EGG code).
type Inpaint struct {
	Target *tensor.Tensor // [N, C, S, S] or [1, C, S, S]
	Mask   *tensor.Tensor // broadcastable to the images, 1 where the target is kept
}

// Energy implements guidance.Energy.
func (p Inpaint) Energy(x0 *tensor.Tensor) *tensor.Tensor {
	d := tensor.Sub(tensor.Mul(p.Target, p.Mask), tensor.Mul(x0, p.Mask))
	axes := make([]int, x0.Rank()-1)
	for i := range axes {
		axes[i] = i + 1
	}
	return tensor.Sqrt(tensor.AddScalar(tensor.Sum(tensor.Pow(d, 2), false, axes...), 1e-12))
}

// Sum adds energies with weights: E = sum_i w_i E_i.
type Sum struct {
	Terms []interface {
		Energy(*tensor.Tensor) *tensor.Tensor
	}
	Weights []float32
}

// Energy implements guidance.Energy.
func (s Sum) Energy(x0 *tensor.Tensor) *tensor.Tensor {
	var total *tensor.Tensor
	for i, e := range s.Terms {
		v := e.Energy(x0)
		if s.Weights != nil {
			v = tensor.Scale(v, s.Weights[i])
		}
		if total == nil {
			total = v
		} else {
			total = tensor.Add(total, v)
		}
	}
	return total
}

// ReceptiveFieldMask builds a population receptive-field mask from the input
// gradients of the summed responses over images x [N, 1, H, W] (EGG's recipe): the
// mean of |d sum_j r_j / dx| over images, blurred (sigma), scaled to a maximum of 1,
// and thresholded (values below threshold become 0, the rest 1).
func ReceptiveFieldMask(m Model, x *tensor.Tensor, sigma float64, threshold float32) *tensor.Tensor {
	xg := x.Detach().SetRequiresGrad(true)
	g := tensor.Grad(tensor.Sum(m.Forward(xg), false), nil, xg)[0]
	a := tensor.Mean(tensor.Abs(g), true, 0)
	if sigma > 0 {
		a = tensor.GaussianBlur(a, sigma)
	}
	d := a.Values()
	peak := float32(0)
	for _, v := range d {
		peak = float32(math.Max(float64(peak), float64(v)))
	}
	mask := make([]float32, len(d))
	for i, v := range d {
		if peak > 0 && v/peak >= threshold {
			mask[i] = 1
		}
	}
	return tensor.FromSlice(x.Device(), mask, 1, 1, x.Dim(2), x.Dim(3))
}
