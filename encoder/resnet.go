package encoder

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"egg/nn"
	"egg/tensor"
)

// ResNetConfig holds the arguments of nnvision's TaskDrivenCore3 under their Python
// names. The network is torchvision's ResNet-50 (v1.5) truncated after LayerName.
type ResNetConfig struct {
	// ModelName is the ptrnets model; any ResNet-50 variant ("resnet50",
	// "resnet50_l2_eps0_1", ...) has this architecture (the weights come from a checkpoint).
	ModelName string `json:"model_name"`
	// LayerName is where the network is cut: "layer<L>" (after the whole layer) or
	// "layer<L>.<k>" (after block k of layer L); EGG uses "layer3.0".
	LayerName         string  `json:"layer_name"`
	InputChannels     int     `json:"input_channels"` // 1: the grayscale input is repeated to 3 channels
	FinalBatchNorm    bool    `json:"final_batchnorm"`
	FinalNonlinearity bool    `json:"final_nonlinearity"`
	Momentum          float32 `json:"momentum"`  // of OutBatchNorm (PyTorch's convention)
	FineTune          bool    `json:"fine_tune"` // train the ResNet's weights too (default: frozen)
}

// resnet50Blocks is the number of Bottleneck blocks per layer of ResNet-50.
var resnet50Blocks = [4]int{3, 4, 6, 3}

// cut parses LayerName into the last layer (1-4) and the number of its blocks kept.
func (c ResNetConfig) cut() (layer, blocks int, err error) {
	name, idx, partial := strings.Cut(c.LayerName, ".")
	l, err1 := strconv.Atoi(strings.TrimPrefix(name, "layer"))
	if !strings.HasPrefix(name, "layer") || err1 != nil || l < 1 || l > 4 {
		return 0, 0, fmt.Errorf("encoder: ResNet core: layer_name %q is not layer<1-4> or layer<L>.<block>", c.LayerName)
	}
	if !partial {
		return l, resnet50Blocks[l-1], nil
	}
	k, err := strconv.Atoi(idx)
	if err != nil || k < 0 || k >= resnet50Blocks[l-1] {
		return 0, 0, fmt.Errorf("encoder: ResNet core: layer_name %q: layer%d has blocks 0-%d", c.LayerName, l, resnet50Blocks[l-1]-1)
	}
	return l, k + 1, nil
}

// Validate reports the first setting this package does not implement.
func (c ResNetConfig) Validate() error {
	if !strings.HasPrefix(c.ModelName, "resnet50") {
		return fmt.Errorf("encoder: ResNet core: model_name %q is not a ResNet-50 (the only architecture implemented)", c.ModelName)
	}
	if c.InputChannels != 1 && c.InputChannels != 3 {
		return fmt.Errorf("encoder: ResNet core: input_channels %d must be 1 or 3", c.InputChannels)
	}
	_, _, err := c.cut()
	return err
}

// Bottleneck is torchvision's v1.5 Bottleneck block: conv1 1x1 -> bn1 -> ReLU ->
// conv2 3x3 (stride) -> bn2 -> ReLU -> conv3 1x1 -> bn3, plus the input (or its
// downsample: 1x1 conv with stride, BatchNorm), then ReLU.
type Bottleneck struct {
	Conv1, Conv2, Conv3 *nn.Conv2d      // conv1 (1x1), conv2 (3x3, the block's stride), conv3 (1x1)
	BN1, BN2, BN3       *nn.BatchNorm2d // bn1, bn2, bn3
	DownConv            *nn.Conv2d      // downsample.0, or nil
	DownBN              *nn.BatchNorm2d // downsample.1, or nil
}

func newBottleneck(dev *tensor.Device, rng *rand.Rand, cin, planes, stride int) *Bottleneck {
	conv := func(cin, cout, k int, o tensor.ConvOpts) *nn.Conv2d {
		c := nn.NewConv2d(dev, nil, cin, cout, k, o, false)
		kaimingFanOut(c.Weight, rng)
		return c
	}
	bn := func(c int) *nn.BatchNorm2d { return nn.NewBatchNorm2d(dev, c, true, 0.1, 1e-5) }
	out := 4 * planes
	b := &Bottleneck{
		Conv1: conv(cin, planes, 1, tensor.ConvOpts{}), BN1: bn(planes),
		Conv2: conv(planes, planes, 3, tensor.ConvOpts{Stride: stride, Padding: 1}), BN2: bn(planes),
		Conv3: conv(planes, out, 1, tensor.ConvOpts{}), BN3: bn(out),
	}
	if stride != 1 || cin != out {
		b.DownConv, b.DownBN = conv(cin, out, 1, tensor.ConvOpts{Stride: stride}), bn(out)
	}
	return b
}

// kaimingFanOut fills w with N(0, 2 / fan_out) draws from rng, torchvision's ResNet
// initialisation; nil rng leaves w alone.
func kaimingFanOut(w *tensor.Tensor, rng *rand.Rand) {
	if rng == nil {
		return
	}
	s := w.Shape()
	std := math.Sqrt(2 / float64(s[0]*s[2]*s[3]))
	v := make([]float32, w.Len())
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	w.SetValues(v)
}

// Visit implements nn.Module.
func (b *Bottleneck) Visit(v nn.Visitor) {
	b.Conv1.Visit(v.Sub("conv1"))
	b.BN1.Visit(v.Sub("bn1"))
	b.Conv2.Visit(v.Sub("conv2"))
	b.BN2.Visit(v.Sub("bn2"))
	b.Conv3.Visit(v.Sub("conv3"))
	b.BN3.Visit(v.Sub("bn3"))
	if b.DownConv != nil {
		b.DownConv.Visit(v.Sub("downsample.0"))
		b.DownBN.Visit(v.Sub("downsample.1"))
	}
}

// Forward applies the block to x [N, C, H, W].
func (b *Bottleneck) Forward(x *tensor.Tensor) *tensor.Tensor {
	h := tensor.ReLU(b.BN1.Forward(b.Conv1.Forward(x)))
	h = tensor.ReLU(b.BN2.Forward(b.Conv2.Forward(h)))
	h = b.BN3.Forward(b.Conv3.Forward(h))
	id := x
	if b.DownConv != nil {
		id = b.DownBN.Forward(b.DownConv.Forward(x))
	}
	return tensor.ReLU(tensor.Add(h, id))
}

func (b *Bottleneck) norms() []*nn.BatchNorm2d {
	ns := []*nn.BatchNorm2d{b.BN1, b.BN2, b.BN3}
	if b.DownBN != nil {
		ns = append(ns, b.DownBN)
	}
	return ns
}

// ResNetCore is nnvision's TaskDrivenCore3 on a ResNet-50: a grayscale input is
// repeated to 3 channels (no ImageNet normalisation), then conv1 (7x7, stride 2,
// padding 3) -> bn1 -> ReLU -> max pool (3x3, stride 2, padding 1) -> the Bottleneck
// layers up to the cut, then OutBatchNorm and ReLU when configured.
//
// Tensors carry torchvision's names (conv1.weight, layer3.0.downsample.1.bias, ...)
// and OutBatchNorm.*; with NNVisionNames they carry nnvision's instead:
// features.TaskDriven.<torchvision name> with the blocks of a partly kept layer
// written <k>.* (layer3.0.* is features.TaskDriven.0.*), and features.OutBatchNorm.*.
// Models built by New use nnvision's names.
//
// The weights are frozen unless Cfg.FineTune. As in PyTorch, SetTraining(true) still
// switches every BatchNorm to batch statistics (and running-statistics updates).
type ResNetCore struct {
	Cfg           ResNetConfig    // the architecture
	Conv1         *nn.Conv2d      // conv1 [64, 3, 7, 7]
	BN1           *nn.BatchNorm2d // bn1
	Layers        [][]*Bottleneck // Layers[i] holds the kept blocks of layer i+1
	OutBN         *nn.BatchNorm2d // nil unless Cfg.FinalBatchNorm
	NNVisionNames bool            // visit tensors under nnvision's names (see above)
}

// NewResNetCore builds the core of cfg on dev. Convolution weights are drawn from
// rng with torchvision's initialisation (nil: zeros, for loading weights).
func NewResNetCore(dev *tensor.Device, cfg ResNetConfig, rng *rand.Rand) (*ResNetCore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	last, keep, _ := cfg.cut()
	c := &ResNetCore{Cfg: cfg, Conv1: nn.NewConv2d(dev, nil, 3, 64, 7, tensor.ConvOpts{Stride: 2, Padding: 3}, false),
		BN1: nn.NewBatchNorm2d(dev, 64, true, 0.1, 1e-5)}
	kaimingFanOut(c.Conv1.Weight, rng)
	cin := 64
	for l := 1; l <= last; l++ {
		planes := 64 << (l - 1)
		n := resnet50Blocks[l-1]
		if l == last {
			n = keep
		}
		var blocks []*Bottleneck
		for k := 0; k < n; k++ {
			stride := 1
			if k == 0 && l > 1 {
				stride = 2
			}
			blocks = append(blocks, newBottleneck(dev, rng, cin, planes, stride))
			cin = 4 * planes
		}
		c.Layers = append(c.Layers, blocks)
	}
	if cfg.FinalBatchNorm {
		c.OutBN = nn.NewBatchNorm2d(dev, cin, true, cfg.Momentum, 1e-5)
	}
	return c, nil
}

// partial reports whether the last kept layer is cut inside.
func (c *ResNetCore) partial() bool {
	return strings.Contains(c.Cfg.LayerName, ".")
}

// Visit implements nn.Module.
func (c *ResNetCore) Visit(v nn.Visitor) {
	net, top := v, v
	if c.NNVisionNames {
		top = v.Sub("features")
		net = top.Sub("TaskDriven")
	}
	c.Conv1.Visit(net.Sub("conv1"))
	c.BN1.Visit(net.Sub("bn1"))
	for i, blocks := range c.Layers {
		lv := net.Sub(fmt.Sprintf("layer%d", i+1))
		if c.NNVisionNames && c.partial() && i == len(c.Layers)-1 {
			lv = net // clip_model keeps the child names of a partly kept layer
		}
		for k, b := range blocks {
			b.Visit(lv.Sub(strconv.Itoa(k)))
		}
	}
	if c.OutBN != nil {
		c.OutBN.Visit(top.Sub("OutBatchNorm"))
	}
}

// TorchvisionName maps a tensor name of the core under nnvision's names
// (features.TaskDriven.0.conv1.weight) to torchvision's (layer3.0.conv1.weight), for
// loading a core from a torchvision-style checkpoint; other names come back unchanged.
func (c *ResNetCore) TorchvisionName(name string) string {
	if rest, ok := strings.CutPrefix(name, "features.OutBatchNorm."); ok {
		return "OutBatchNorm." + rest
	}
	rest, ok := strings.CutPrefix(name, "features.TaskDriven.")
	if !ok {
		return name
	}
	if c.partial() && len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		return fmt.Sprintf("layer%d.", len(c.Layers)) + rest
	}
	return rest
}

// Forward implements Core.
func (c *ResNetCore) Forward(x *tensor.Tensor) *tensor.Tensor {
	if x.Rank() != 4 || x.Dim(1) != c.Cfg.InputChannels {
		panic(fmt.Sprintf("encoder: ResNet core: input %v, want [N, %d, H, W]", x.Shape(), c.Cfg.InputChannels))
	}
	w := c.Conv1.Weight
	if c.Cfg.InputChannels == 1 {
		// conv(repeat(x, 3 channels), w) = conv(x, sum over w's input channels).
		w = tensor.Sum(w, true, 1)
	}
	h := tensor.Conv2D(x, w, nil, c.Conv1.Opts)
	h = tensor.ReLU(c.BN1.Forward(h))
	h = tensor.MaxPool2D(h, 3, 2, 1)
	for _, blocks := range c.Layers {
		for _, b := range blocks {
			h = b.Forward(h)
		}
	}
	if c.OutBN != nil {
		h = c.OutBN.Forward(h)
	}
	if c.Cfg.FinalNonlinearity {
		h = tensor.ReLU(h)
	}
	return h
}

// Stages returns the intermediate outputs of the reference's module names for x:
// "relu" (after conv1, bn1, ReLU), "maxpool", "layer<L>" for whole layers,
// "layer<L>.<k>" for the blocks of a partly kept layer, "OutBatchNorm" (before the
// final ReLU) and "out".
func (c *ResNetCore) Stages(x *tensor.Tensor) map[string]*tensor.Tensor {
	st := map[string]*tensor.Tensor{}
	w := c.Conv1.Weight
	if c.Cfg.InputChannels == 1 {
		w = tensor.Sum(w, true, 1)
	}
	h := tensor.ReLU(c.BN1.Forward(tensor.Conv2D(x, w, nil, c.Conv1.Opts)))
	st["relu"] = h
	h = tensor.MaxPool2D(h, 3, 2, 1)
	st["maxpool"] = h
	for i, blocks := range c.Layers {
		for k, b := range blocks {
			h = b.Forward(h)
			if c.partial() && i == len(c.Layers)-1 {
				st[fmt.Sprintf("layer%d.%d", i+1, k)] = h
			}
		}
		if !c.partial() || i < len(c.Layers)-1 {
			st[fmt.Sprintf("layer%d", i+1)] = h
		}
	}
	if c.OutBN != nil {
		h = c.OutBN.Forward(h)
		st["OutBatchNorm"] = h
	}
	if c.Cfg.FinalNonlinearity {
		h = tensor.ReLU(h)
	}
	st["out"] = h
	return st
}

// OutShape implements Core.
func (c *ResNetCore) OutShape(h, w int) (int, int, int) {
	down := func(n, k, s, p int) int { return (n+2*p-k)/s + 1 }
	h, w = down(h, 7, 2, 3), down(w, 7, 2, 3)
	h, w = down(h, 3, 2, 1), down(w, 3, 2, 1)
	for l := 2; l <= len(c.Layers); l++ {
		h, w = down(h, 3, 2, 1), down(w, 3, 2, 1)
	}
	return 4 * (64 << (len(c.Layers) - 1)), h, w
}

// SetTraining implements Core: every BatchNorm follows the mode, as in PyTorch.
func (c *ResNetCore) SetTraining(training bool) {
	c.BN1.Training = training
	for _, blocks := range c.Layers {
		for _, b := range blocks {
			for _, n := range b.norms() {
				n.Training = training
			}
		}
	}
	if c.OutBN != nil {
		c.OutBN.Training = training
	}
}

// Trainable implements Core: the OutBatchNorm's weight and bias, and the ResNet's
// weights only when Cfg.FineTune (they are frozen otherwise, as in nnvision).
func (c *ResNetCore) Trainable() []*tensor.Tensor {
	if c.Cfg.FineTune {
		return nn.Params(c)
	}
	if c.OutBN == nil {
		return nil
	}
	return nn.Params(c.OutBN)
}

// Regularizer implements Core: the task-driven core has no penalty.
func (c *ResNetCore) Regularizer() *tensor.Tensor { return nil }
