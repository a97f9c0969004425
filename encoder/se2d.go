package encoder

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"

	"egg/nn"
	"egg/tensor"
)

// Kernels is a list of kernel sizes that reads from JSON as a number (one size for
// every layer) or a list (one per layer), as nnvision's hidden_kern.
type Kernels []int

// UnmarshalJSON implements json.Unmarshaler.
func (k *Kernels) UnmarshalJSON(b []byte) error {
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*k = Kernels{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("encoder: kernel sizes %s are neither a number nor a list of numbers", b)
	}
	*k = many
	return nil
}

// MarshalJSON implements json.Marshaler: one size is written as a number.
func (k Kernels) MarshalJSON() ([]byte, error) {
	if len(k) == 1 {
		return json.Marshal(k[0])
	}
	return json.Marshal([]int(k))
}

// at returns the kernel size of hidden layer l (1-based).
func (k Kernels) at(l int) int {
	if len(k) == 1 {
		return k[0]
	}
	return k[l-1]
}

// SE2dConfig holds the arguments of nnvision's SE2dCore under their Python names, so
// that an nnvision model_config decodes into it directly. Only the configuration EGG
// uses is supported (BatchNorm without biases, no squeeze-excitation blocks, no skip
// connections, the last layer read out); Validate rejects the others.
type SE2dConfig struct {
	InputChannels     int     `json:"input_channels"`               // channels of the input images
	HiddenChannels    int     `json:"hidden_channels"`              // channels of every layer
	InputKern         int     `json:"input_kern"`                   // kernel size of layer 0
	HiddenKern        Kernels `json:"hidden_kern"`                  // kernel sizes of layers 1..Layers-1
	Layers            int     `json:"layers"`                       // number of layers, layer 0 included
	PadInput          bool    `json:"pad_input"`                    // pad layer 0 by InputKern/2 (EGG: no)
	DepthSeparable    bool    `json:"depth_separable"`              // hidden layers are 1x1, depthwise, 1x1
	HiddenDilation    int     `json:"hidden_dilation,omitempty"`    // dilation of hidden kernels; 0 means 1
	FirstLayerStride  int     `json:"first_layer_stride,omitempty"` // stride of layer 0; 0 means 1
	FinalNonlinearity bool    `json:"final_nonlinearity"`           // ELU after the last layer too
	Momentum          float32 `json:"momentum"`                     // BatchNorm momentum (PyTorch's convention)
	GammaInput        float32 `json:"gamma_input"`                  // weight of the Laplace penalty on layer 0
	LaplacePadding    *int    `json:"laplace_padding"`              // padding of the Laplace filter; nil means 1

	// Flags that are only checked: they must keep EGG's values.
	GammaHidden      float32 `json:"gamma_hidden,omitempty"`      // must be 0
	BatchNorm        *bool   `json:"batch_norm,omitempty"`        // must be true when set
	FinalBatchNorm   *bool   `json:"final_batch_norm,omitempty"`  // must be true when set
	Bias             *bool   `json:"bias,omitempty"`              // must be false when set
	Linear           bool    `json:"linear,omitempty"`            // must be false
	NSEBlocks        int     `json:"n_se_blocks,omitempty"`       // must be 0
	Skip             int     `json:"skip,omitempty"`              // must be 0 or 1
	Stack            *int    `json:"stack,omitempty"`             // must be -1 (the default here)
	InputRegularizer string  `json:"input_regularizer,omitempty"` // "" or "LaplaceL2norm"
}

// Validate reports the first setting this package does not implement.
func (c SE2dConfig) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("encoder: SE2d core: "+format, a...)
	}
	switch {
	case c.InputChannels < 1 || c.HiddenChannels < 1 || c.Layers < 1 || c.InputKern < 1:
		return bad("input_channels %d, hidden_channels %d, layers %d and input_kern %d must be positive",
			c.InputChannels, c.HiddenChannels, c.Layers, c.InputKern)
	case c.Layers > 1 && len(c.HiddenKern) != 1 && len(c.HiddenKern) != c.Layers-1:
		return bad("hidden_kern %v: need one size or %d", []int(c.HiddenKern), c.Layers-1)
	case c.GammaHidden != 0:
		return bad("gamma_hidden %v (group sparsity) is not implemented", c.GammaHidden)
	case c.BatchNorm != nil && !*c.BatchNorm, c.FinalBatchNorm != nil && !*c.FinalBatchNorm:
		return bad("cores without BatchNorm are not implemented")
	case c.Bias != nil && *c.Bias:
		return bad("convolution biases are not implemented (nnvision forbids them with BatchNorm)")
	case c.Linear:
		return bad("linear cores are not implemented")
	case c.NSEBlocks != 0:
		return bad("n_se_blocks %d: squeeze-excitation blocks are not implemented", c.NSEBlocks)
	case c.Skip > 1:
		return bad("skip %d: skip connections are not implemented", c.Skip)
	case c.Stack != nil && *c.Stack != -1:
		return bad("stack %d: only the last layer (stack -1) can be read out", *c.Stack)
	case c.InputRegularizer != "" && c.InputRegularizer != "LaplaceL2norm":
		return bad("input_regularizer %q is not implemented (only LaplaceL2norm)", c.InputRegularizer)
	}
	for l := 1; l < c.Layers; l++ {
		if c.HiddenKern.at(l) < 1 {
			return bad("hidden_kern %v must be positive", []int(c.HiddenKern))
		}
	}
	return nil
}

func (c SE2dConfig) dilation() int { return max(c.HiddenDilation, 1) }
func (c SE2dConfig) stride() int   { return max(c.FirstLayerStride, 1) }

func (c SE2dConfig) inputPadding() int {
	if c.PadInput {
		return c.InputKern / 2
	}
	return 0
}

// hiddenPadding is nnvision's ((k - 1) * dilation + 1) // 2 for hidden layer l.
func (c SE2dConfig) hiddenPadding(l int) int {
	return ((c.HiddenKern.at(l)-1)*c.dilation() + 1) / 2
}

// SE2dLayer is one layer of an SE2dCore: a convolution (Conv for the first layer and
// for plain hidden layers; InDepth, Spatial and OutDepth for depth-separable ones),
// BatchNorm and, when ELU is set, ELU(alpha = 1).
type SE2dLayer struct {
	Conv                       *nn.Conv2d      // features.layer<l>.conv, or nil
	InDepth, Spatial, OutDepth *nn.Conv2d      // features.layer<l>.ds_conv.{in_depth,spatial,out_depth}_conv, or nil
	Norm                       *nn.BatchNorm2d // features.layer<l>.norm
	ELU                        bool            // apply ELU after the BatchNorm
}

// Visit implements nn.Module.
func (l *SE2dLayer) Visit(v nn.Visitor) {
	if l.Conv != nil {
		l.Conv.Visit(v.Sub("conv"))
	} else {
		ds := v.Sub("ds_conv")
		l.InDepth.Visit(ds.Sub("in_depth_conv"))
		l.Spatial.Visit(ds.Sub("spatial_conv"))
		l.OutDepth.Visit(ds.Sub("out_depth_conv"))
	}
	l.Norm.Visit(v.Sub("norm"))
}

// Forward applies the layer to x [N, C, H, W].
func (l *SE2dLayer) Forward(x *tensor.Tensor) *tensor.Tensor {
	if l.Conv != nil {
		x = l.Conv.Forward(x)
	} else {
		x = l.OutDepth.Forward(l.Spatial.Forward(l.InDepth.Forward(x)))
	}
	x = l.Norm.Forward(x)
	if l.ELU {
		x = tensor.ELU(x, 1)
	}
	return x
}

// SE2dCore is nnvision's SE2dCore as EGG's data-driven model uses it: layer 0 is a
// convolution (no bias) of the input, then BatchNorm and ELU; each further layer is a
// depth-separable convolution (1x1, depthwise k x k with padding ((k-1)*dilation+1)/2,
// 1x1, all without bias), or a plain one, followed by BatchNorm and ELU (none after
// the last layer unless FinalNonlinearity). The last layer's output is the feature
// map. Tensors are named features.layer<l>.*; the checkpoints' training-only buffer
// _input_weights_regularizer.laplace.filter is accepted and ignored.
type SE2dCore struct {
	Cfg    SE2dConfig   // the architecture
	Layers []*SE2dLayer // features.layer0, features.layer1, ...
}

// NewSE2dCore builds the core of cfg on dev. Convolution weights are drawn from rng
// with nnvision's Xavier-normal initialisation (nil: zeros, for loading weights);
// BatchNorms start as the identity.
func NewSE2dCore(dev *tensor.Device, cfg SE2dConfig, rng *rand.Rand) (*SE2dCore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ch := cfg.HiddenChannels
	conv := func(cin, cout, k int, o tensor.ConvOpts) *nn.Conv2d {
		c := nn.NewConv2d(dev, nil, cin, cout, k, o, false)
		xavierNormal(c.Weight, rng)
		return c
	}
	bn := func() *nn.BatchNorm2d { return nn.NewBatchNorm2d(dev, ch, true, cfg.Momentum, 1e-5) }
	c := &SE2dCore{Cfg: cfg}
	c.Layers = append(c.Layers, &SE2dLayer{
		Conv: conv(cfg.InputChannels, ch, cfg.InputKern, tensor.ConvOpts{Stride: cfg.stride(), Padding: cfg.inputPadding()}),
		Norm: bn(),
		ELU:  cfg.Layers > 1 || cfg.FinalNonlinearity,
	})
	for l := 1; l < cfg.Layers; l++ {
		k := cfg.HiddenKern.at(l)
		o := tensor.ConvOpts{Padding: cfg.hiddenPadding(l), Dilation: cfg.dilation()}
		layer := &SE2dLayer{Norm: bn(), ELU: cfg.FinalNonlinearity || l < cfg.Layers-1}
		if cfg.DepthSeparable {
			layer.InDepth = conv(ch, ch, 1, tensor.ConvOpts{})
			o.Groups = ch
			layer.Spatial = conv(ch, ch, k, o)
			layer.OutDepth = conv(ch, ch, 1, tensor.ConvOpts{})
		} else {
			layer.Conv = conv(ch, ch, k, o)
		}
		c.Layers = append(c.Layers, layer)
	}
	return c, nil
}

// xavierNormal fills w with N(0, 2 / (fan_in + fan_out)) draws from rng, as
// torch.nn.init.xavier_normal_ (fans from w's first two axes times its kernel size);
// nil rng leaves w alone.
func xavierNormal(w *tensor.Tensor, rng *rand.Rand) {
	if rng == nil {
		return
	}
	s := w.Shape()
	rf := 1
	for _, d := range s[2:] {
		rf *= d
	}
	std := math.Sqrt(2 / float64(s[0]*rf+s[1]*rf))
	v := make([]float32, w.Len())
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	w.SetValues(v)
}

// Visit implements nn.Module.
func (c *SE2dCore) Visit(v nn.Visitor) {
	f := v.Sub("features")
	for l, layer := range c.Layers {
		layer.Visit(f.Sub(fmt.Sprintf("layer%d", l)))
	}
	v.Ignore("_input_weights_regularizer.laplace.filter")
}

// Forward implements Core: the last layer's output.
func (c *SE2dCore) Forward(x *tensor.Tensor) *tensor.Tensor {
	for _, l := range c.Layers {
		x = l.Forward(x)
	}
	return x
}

// ForwardLayers returns the output of every layer for x.
func (c *SE2dCore) ForwardLayers(x *tensor.Tensor) []*tensor.Tensor {
	outs := make([]*tensor.Tensor, len(c.Layers))
	for i, l := range c.Layers {
		x = l.Forward(x)
		outs[i] = x
	}
	return outs
}

// OutShape implements Core.
func (c *SE2dCore) OutShape(h, w int) (int, int, int) {
	k, p, s := c.Cfg.InputKern, c.Cfg.inputPadding(), c.Cfg.stride()
	h, w = (h+2*p-k)/s+1, (w+2*p-k)/s+1
	for l := 1; l < c.Cfg.Layers; l++ {
		ext := c.Cfg.dilation() * (c.Cfg.HiddenKern.at(l) - 1)
		p := c.Cfg.hiddenPadding(l)
		h, w = h+2*p-ext, w+2*p-ext
	}
	return c.Cfg.HiddenChannels, h, w
}

// SetTraining implements Core.
func (c *SE2dCore) SetTraining(training bool) {
	for _, l := range c.Layers {
		l.Norm.Training = training
	}
}

// Trainable implements Core: the data-driven core is trained whole.
func (c *SE2dCore) Trainable() []*tensor.Tensor { return nn.Params(c) }

// Regularizer implements Core: GammaInput times LaplacePenalty, or nil when
// GammaInput is 0.
func (c *SE2dCore) Regularizer() *tensor.Tensor {
	if c.Cfg.GammaInput == 0 {
		return nil
	}
	return tensor.Scale(c.LaplacePenalty(), c.Cfg.GammaInput)
}

// LaplacePenalty returns neuralpredictors' LaplaceL2norm of the first layer's filters
// w [O, I, k, k] (a scalar): with every filter convolved with the Laplace kernel
// [[0, -1, 0], [-1, 4, -1], [0, -1, 0]] (zero padding LaplacePadding, default 1),
// sum(laplace(w)^2) / sum(w^2).
func (c *SE2dCore) LaplacePenalty() *tensor.Tensor {
	w := c.Layers[0].Conv.Weight
	s := w.Shape()
	pad := 1
	if c.Cfg.LaplacePadding != nil {
		pad = *c.Cfg.LaplacePadding
	}
	lap := tensor.FromSlice(w.Device(), []float32{0, -1, 0, -1, 4, -1, 0, -1, 0}, 1, 1, 3, 3)
	filters := tensor.Reshape(w, s[0]*s[1], 1, s[2], s[3])
	num := tensor.Sum(tensor.Pow(tensor.Conv2D(filters, lap, nil, tensor.ConvOpts{Padding: pad}), 2), false)
	return tensor.Div(num, tensor.Sum(tensor.Pow(filters, 2), false))
}
