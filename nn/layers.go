package nn

import (
	"math/rand/v2"

	"egg/tensor"
)

// Conv2d is a 2D convolution with weight [Cout, Cin/groups, kH, kW] and optional bias.
type Conv2d struct {
	Weight, Bias *tensor.Tensor
	Opts         tensor.ConvOpts
}

// NewConv2d makes a k x k convolution; rng (nil: zeros) draws PyTorch's default init.
func NewConv2d(dev *tensor.Device, rng *rand.Rand, cin, cout, k int, opts tensor.ConvOpts, bias bool) *Conv2d {
	g := max(opts.Groups, 1)
	fan := cin / g * k * k
	c := &Conv2d{Weight: uniform(tensor.New(dev, cout, cin/g, k, k), rng, fanInBound(fan)), Opts: opts}
	if bias {
		c.Bias = uniform(tensor.New(dev, cout), rng, fanInBound(fan))
	}
	return c
}

// Visit implements Module.
func (c *Conv2d) Visit(v Visitor) {
	v.Param("weight", c.Weight)
	v.Param("bias", c.Bias)
}

// Forward convolves x [N, Cin, H, W].
func (c *Conv2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Conv2D(x, c.Weight, c.Bias, c.Opts)
}

// Conv1x1 is PyTorch's Conv1d with kernel size 1 (weight [Cout, Cin, 1]) applied to
// [N, C, L]; it runs as a pointwise 2D convolution.
type Conv1x1 struct {
	Weight, Bias *tensor.Tensor
}

// NewConv1x1 makes a kernel-1 Conv1d.
func NewConv1x1(dev *tensor.Device, rng *rand.Rand, cin, cout int) *Conv1x1 {
	return &Conv1x1{
		Weight: uniform(tensor.New(dev, cout, cin, 1, 1), rng, fanInBound(cin)),
		Bias:   uniform(tensor.New(dev, cout), rng, fanInBound(cin)),
	}
}

// Visit implements Module.
func (c *Conv1x1) Visit(v Visitor) {
	v.Param("weight", c.Weight)
	v.Param("bias", c.Bias)
}

// Forward maps x [N, Cin, L] to [N, Cout, L].
func (c *Conv1x1) Forward(x *tensor.Tensor) *tensor.Tensor {
	n, l := x.Dim(0), x.Dim(2)
	y := tensor.Conv2D(tensor.Reshape(x, n, x.Dim(1), l, 1), c.Weight, c.Bias, tensor.ConvOpts{})
	return tensor.Reshape(y, n, c.Weight.Dim(0), l)
}

// Linear maps [..., in] to [..., out] with weight [out, in] and optional bias.
type Linear struct {
	Weight, Bias *tensor.Tensor
}

// NewLinear makes a Linear layer with PyTorch's default init from rng (nil: zeros).
func NewLinear(dev *tensor.Device, rng *rand.Rand, in, out int, bias bool) *Linear {
	l := &Linear{Weight: uniform(tensor.New(dev, out, in), rng, fanInBound(in))}
	if bias {
		l.Bias = uniform(tensor.New(dev, out), rng, fanInBound(in))
	}
	return l
}

// Visit implements Module.
func (l *Linear) Visit(v Visitor) {
	v.Param("weight", l.Weight)
	v.Param("bias", l.Bias)
}

// Forward applies the layer.
func (l *Linear) Forward(x *tensor.Tensor) *tensor.Tensor { return tensor.Linear(x, l.Weight, l.Bias) }

// GroupNorm normalises groups of channels; weight and bias are [C].
type GroupNorm struct {
	Groups       int
	Eps          float32
	Weight, Bias *tensor.Tensor
}

// NewGroupNorm makes an affine GroupNorm initialised to the identity.
func NewGroupNorm(dev *tensor.Device, groups, channels int, eps float32) *GroupNorm {
	return &GroupNorm{Groups: groups, Eps: eps, Weight: tensor.Full(dev, 1, channels), Bias: tensor.New(dev, channels)}
}

// Visit implements Module.
func (g *GroupNorm) Visit(v Visitor) {
	v.Param("weight", g.Weight)
	v.Param("bias", g.Bias)
}

// Forward normalises x [N, C, ...].
func (g *GroupNorm) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.GroupNorm(x, g.Groups, g.Weight, g.Bias, g.Eps)
}

// BatchNorm2d normalises channels with batch statistics while training and running
// statistics otherwise, as torch.nn.BatchNorm2d.
type BatchNorm2d struct {
	Weight, Bias            *tensor.Tensor // nil when not affine
	RunningMean, RunningVar *tensor.Tensor
	Momentum, Eps           float32
	Training                bool
}

// NewBatchNorm2d makes a BatchNorm2d with PyTorch's initial state.
func NewBatchNorm2d(dev *tensor.Device, channels int, affine bool, momentum, eps float32) *BatchNorm2d {
	b := &BatchNorm2d{RunningMean: tensor.New(dev, channels), RunningVar: tensor.Full(dev, 1, channels), Momentum: momentum, Eps: eps}
	if affine {
		b.Weight, b.Bias = tensor.Full(dev, 1, channels), tensor.New(dev, channels)
	}
	return b
}

// Visit implements Module.
func (b *BatchNorm2d) Visit(v Visitor) {
	v.Param("weight", b.Weight)
	v.Param("bias", b.Bias)
	v.Buffer("running_mean", b.RunningMean)
	v.Buffer("running_var", b.RunningVar)
	v.Ignore("num_batches_tracked")
}

// Forward normalises x [N, C, H, W].
func (b *BatchNorm2d) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.BatchNorm2D(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, b.Training, b.Momentum, b.Eps)
}
