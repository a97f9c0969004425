package adm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"egg/nn"
	"egg/tensor"
)

// Block is a layer of the UNet that may use the timestep embedding (guided-diffusion's
// TimestepBlock): Forward maps x [N, C, H, W] and emb [N, E] to [N, C', H', W'].
type Block interface {
	nn.Module
	Forward(x, emb *tensor.Tensor) *tensor.Tensor
}

var (
	_ Block = (*ResBlock)(nil)
	_ Block = (*AttentionBlock)(nil)
	_ Block = (*Upsample)(nil)
	_ Block = (*Downsample)(nil)
	_ Block = (*convBlock)(nil)
)

// UNet is guided-diffusion's UNetModel.
type UNet struct {
	Config       Config
	TimeEmbed0   *nn.Linear // time_embed.0
	TimeEmbed2   *nn.Linear // time_embed.2
	LabelEmb     *tensor.Tensor
	InputBlocks  [][]Block
	MiddleBlock  []Block
	OutputBlocks [][]Block
	OutNorm      *nn.GroupNorm // out.0
	OutConv      *nn.Conv2d    // out.2
}

// New builds a UNet for cfg on dev, with weights drawn from rng as PyTorch's default
// init (nil: zeros, for loading a checkpoint).
func New(dev *tensor.Device, cfg Config, rng *rand.Rand) (*UNet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mc := cfg.ModelChannels
	ted := 4 * mc
	u := &UNet{
		Config:     cfg,
		TimeEmbed0: nn.NewLinear(dev, rng, mc, ted, true),
		TimeEmbed2: nn.NewLinear(dev, rng, ted, ted, true),
	}
	if cfg.NumClasses != nil {
		u.LabelEmb = tensor.New(dev, *cfg.NumClasses, ted)
		if rng != nil {
			v := make([]float32, u.LabelEmb.Len())
			for i := range v {
				v[i] = float32(rng.NormFloat64())
			}
			u.LabelEmb.SetValues(v)
		}
	}
	res := func(cin, cout int, up, down bool) *ResBlock {
		return newResBlock(dev, rng, cin, ted, cout, cfg.UseScaleShiftNorm, up, down)
	}
	attn := func(ch, heads int) *AttentionBlock {
		if cfg.NumHeadChannels != -1 {
			if ch%cfg.NumHeadChannels != 0 {
				panic(fmt.Sprintf("adm: %d channels are not a multiple of num_head_channels %d", ch, cfg.NumHeadChannels))
			}
			heads = ch / cfg.NumHeadChannels
		}
		return newAttentionBlock(dev, rng, ch, heads, cfg.UseNewAttentionOrder)
	}
	ch := cfg.ChannelMult[0] * mc
	inputCh := ch
	u.InputBlocks = [][]Block{{&convBlock{nn.NewConv2d(dev, rng, cfg.InChannels, ch, 3, tensor.ConvOpts{Padding: 1}, true)}}}
	chans := []int{ch}
	ds := 1
	for level, mult := range cfg.ChannelMult {
		for range cfg.NumResBlocks {
			layers := []Block{res(ch, mult*mc, false, false)}
			ch = mult * mc
			if slices.Contains(cfg.AttentionResolutions, ds) {
				layers = append(layers, attn(ch, cfg.NumHeads))
			}
			u.InputBlocks = append(u.InputBlocks, layers)
			chans = append(chans, ch)
		}
		if level != len(cfg.ChannelMult)-1 {
			if cfg.ResblockUpdown {
				u.InputBlocks = append(u.InputBlocks, []Block{res(ch, ch, false, true)})
			} else {
				u.InputBlocks = append(u.InputBlocks, []Block{newDownsample(dev, rng, ch, *cfg.ConvResample)})
			}
			chans = append(chans, ch)
			ds *= 2
		}
	}
	u.MiddleBlock = []Block{res(ch, ch, false, false), attn(ch, cfg.NumHeads), res(ch, ch, false, false)}
	for level := len(cfg.ChannelMult) - 1; level >= 0; level-- {
		mult := cfg.ChannelMult[level]
		for i := 0; i <= cfg.NumResBlocks; i++ {
			ich := chans[len(chans)-1]
			chans = chans[:len(chans)-1]
			layers := []Block{res(ch+ich, mc*mult, false, false)}
			ch = mc * mult
			if slices.Contains(cfg.AttentionResolutions, ds) {
				layers = append(layers, attn(ch, cfg.NumHeadsUpsample))
			}
			if level > 0 && i == cfg.NumResBlocks {
				if cfg.ResblockUpdown {
					layers = append(layers, res(ch, ch, true, false))
				} else {
					layers = append(layers, newUpsample(dev, rng, ch, *cfg.ConvResample))
				}
				ds /= 2
			}
			u.OutputBlocks = append(u.OutputBlocks, layers)
		}
	}
	u.OutNorm = nn.NewGroupNorm(dev, 32, ch, 1e-5)
	u.OutConv = nn.NewConv2d(dev, rng, inputCh, cfg.OutChannels, 3, tensor.ConvOpts{Padding: 1}, true)
	return u, nil
}

// Visit implements nn.Module with guided-diffusion's state_dict names.
func (u *UNet) Visit(v nn.Visitor) {
	u.TimeEmbed0.Visit(v.Sub("time_embed.0"))
	u.TimeEmbed2.Visit(v.Sub("time_embed.2"))
	if u.LabelEmb != nil {
		v.Sub("label_emb").Param("weight", u.LabelEmb)
	}
	visitSeq := func(v nn.Visitor, blocks []Block) {
		for j, b := range blocks {
			b.Visit(v.Sub(strconv.Itoa(j)))
		}
	}
	for i, blocks := range u.InputBlocks {
		visitSeq(v.Sub("input_blocks."+strconv.Itoa(i)), blocks)
	}
	visitSeq(v.Sub("middle_block"), u.MiddleBlock)
	for i, blocks := range u.OutputBlocks {
		visitSeq(v.Sub("output_blocks."+strconv.Itoa(i)), blocks)
	}
	u.OutNorm.Visit(v.Sub("out.0"))
	u.OutConv.Visit(v.Sub("out.2"))
}

// Forward runs the UNet on x [N, Cin, H, W] at timesteps t (one float per sample, the
// value the model receives) with class labels y (nil for unconditional models), and
// returns [N, Cout, H, W].
func (u *UNet) Forward(x *tensor.Tensor, t []float32, y []int) *tensor.Tensor {
	if x.Rank() != 4 || x.Dim(1) != u.Config.InChannels || len(t) != x.Dim(0) {
		panic(fmt.Sprintf("adm: UNet input %v with %d timesteps; want [N, %d, H, W] and N timesteps", x.Shape(), len(t), u.Config.InChannels))
	}
	if (y != nil) != (u.LabelEmb != nil) {
		panic("adm: class labels must be given exactly when the model is class-conditional")
	}
	emb := tensor.TimestepEmbedding(x.Device(), t, u.Config.ModelChannels, 10000)
	emb = u.TimeEmbed2.Forward(tensor.SiLU(u.TimeEmbed0.Forward(emb)))
	if y != nil {
		emb = tensor.Add(emb, tensor.Embedding(u.LabelEmb, y))
	}
	run := func(blocks []Block, h *tensor.Tensor) *tensor.Tensor {
		for _, b := range blocks {
			h = b.Forward(h, emb)
		}
		return h
	}
	hs := make([]*tensor.Tensor, 0, len(u.InputBlocks))
	h := x
	for _, blocks := range u.InputBlocks {
		h = run(blocks, h)
		hs = append(hs, h)
	}
	h = run(u.MiddleBlock, h)
	for _, blocks := range u.OutputBlocks {
		skip := hs[len(hs)-1]
		hs = hs[:len(hs)-1]
		h = run(blocks, tensor.Concat(1, h, skip))
	}
	return u.OutConv.Forward(tensor.SiLU(u.OutNorm.Forward(h)))
}

// convBlock is a plain convolution inside a TimestepEmbedSequential (the first input block).
type convBlock struct{ conv *nn.Conv2d }

func (c *convBlock) Visit(v nn.Visitor)                         { c.conv.Visit(v) }
func (c *convBlock) Forward(x, _ *tensor.Tensor) *tensor.Tensor { return c.conv.Forward(x) }

// ResBlock is guided-diffusion's residual block with timestep conditioning, optional
// scale-shift norm and optional up or down sampling.
type ResBlock struct {
	InNorm     *nn.GroupNorm // in_layers.0
	InConv     *nn.Conv2d    // in_layers.2
	EmbLinear  *nn.Linear    // emb_layers.1
	OutNorm    *nn.GroupNorm // out_layers.0
	OutConv    *nn.Conv2d    // out_layers.3
	Skip       *nn.Conv2d    // skip_connection (nil: identity)
	ScaleShift bool
	Up, Down   bool
}

func newResBlock(dev *tensor.Device, rng *rand.Rand, cin, embCh, cout int, scaleShift, up, down bool) *ResBlock {
	r := &ResBlock{
		InNorm:     nn.NewGroupNorm(dev, 32, cin, 1e-5),
		InConv:     nn.NewConv2d(dev, rng, cin, cout, 3, tensor.ConvOpts{Padding: 1}, true),
		OutNorm:    nn.NewGroupNorm(dev, 32, cout, 1e-5),
		OutConv:    nn.NewConv2d(dev, rng, cout, cout, 3, tensor.ConvOpts{Padding: 1}, true),
		ScaleShift: scaleShift, Up: up, Down: down,
	}
	embOut := cout
	if scaleShift {
		embOut = 2 * cout
	}
	r.EmbLinear = nn.NewLinear(dev, rng, embCh, embOut, true)
	if cin != cout {
		r.Skip = nn.NewConv2d(dev, rng, cin, cout, 1, tensor.ConvOpts{}, true)
	}
	return r
}

// Visit implements nn.Module.
func (r *ResBlock) Visit(v nn.Visitor) {
	r.InNorm.Visit(v.Sub("in_layers.0"))
	r.InConv.Visit(v.Sub("in_layers.2"))
	r.EmbLinear.Visit(v.Sub("emb_layers.1"))
	r.OutNorm.Visit(v.Sub("out_layers.0"))
	r.OutConv.Visit(v.Sub("out_layers.3"))
	if r.Skip != nil {
		r.Skip.Visit(v.Sub("skip_connection"))
	}
}

func resample(x *tensor.Tensor, up, down bool) *tensor.Tensor {
	switch {
	case up:
		return tensor.UpsampleNearest2D(x, 2)
	case down:
		return tensor.AvgPool2D(x, 2, 2, 0)
	}
	return x
}

// Forward implements Block.
func (r *ResBlock) Forward(x, emb *tensor.Tensor) *tensor.Tensor {
	h := tensor.SiLU(r.InNorm.Forward(x))
	if r.Up || r.Down {
		h = resample(h, r.Up, r.Down)
		x = resample(x, r.Up, r.Down)
	}
	h = r.InConv.Forward(h)
	e := r.EmbLinear.Forward(tensor.SiLU(emb))
	n, c := e.Dim(0), e.Dim(1)
	e = tensor.Reshape(e, n, c, 1, 1)
	if r.ScaleShift {
		half := c / 2
		parts := tensor.Split(e, 1, half, half)
		h = tensor.Add(tensor.Mul(r.OutNorm.Forward(h), tensor.AddScalar(parts[0], 1)), parts[1])
		h = r.OutConv.Forward(tensor.SiLU(h))
	} else {
		h = tensor.Add(h, e)
		h = r.OutConv.Forward(tensor.SiLU(r.OutNorm.Forward(h)))
	}
	if r.Skip != nil {
		x = r.Skip.Forward(x)
	}
	return tensor.Add(x, h)
}

// AttentionBlock is guided-diffusion's spatial self-attention block.
type AttentionBlock struct {
	Norm     *nn.GroupNorm
	QKV      *nn.Conv1x1
	ProjOut  *nn.Conv1x1
	Heads    int
	NewOrder bool // QKVAttention (split heads after q, k, v) instead of QKVAttentionLegacy
}

func newAttentionBlock(dev *tensor.Device, rng *rand.Rand, ch, heads int, newOrder bool) *AttentionBlock {
	return &AttentionBlock{
		Norm:     nn.NewGroupNorm(dev, 32, ch, 1e-5),
		QKV:      nn.NewConv1x1(dev, rng, ch, 3*ch),
		ProjOut:  nn.NewConv1x1(dev, rng, ch, ch),
		Heads:    heads,
		NewOrder: newOrder,
	}
}

// Visit implements nn.Module.
func (a *AttentionBlock) Visit(v nn.Visitor) {
	a.Norm.Visit(v.Sub("norm"))
	a.QKV.Visit(v.Sub("qkv"))
	a.ProjOut.Visit(v.Sub("proj_out"))
}

// Forward implements Block (emb is unused).
func (a *AttentionBlock) Forward(x, _ *tensor.Tensor) *tensor.Tensor {
	shape := x.Shape()
	b, c := shape[0], shape[1]
	xf := tensor.Reshape(x, b, c, -1)
	qkv := a.QKV.Forward(a.Norm.Forward(xf))
	h := Attention(qkv, a.Heads, a.NewOrder)
	h = a.ProjOut.Forward(h)
	return tensor.Reshape(tensor.Add(xf, h), shape...)
}

// Attention computes multi-head self-attention from qkv [B, 3*H*C, T] and returns
// [B, H*C, T]. Legacy order splits heads first ([B*H, 3*C, T] then q, k, v); the new
// order splits q, k, v first. Both scale q and k by C^(-1/4) before the product, as
// guided-diffusion does.
func Attention(qkv *tensor.Tensor, heads int, newOrder bool) *tensor.Tensor {
	bs, width, length := qkv.Dim(0), qkv.Dim(1), qkv.Dim(2)
	ch := width / (3 * heads)
	var q, k, v *tensor.Tensor
	if newOrder {
		p := tensor.Split(qkv, 1, heads*ch, heads*ch, heads*ch)
		q = tensor.Reshape(p[0], bs*heads, ch, length)
		k = tensor.Reshape(p[1], bs*heads, ch, length)
		v = tensor.Reshape(p[2], bs*heads, ch, length)
	} else {
		p := tensor.Split(tensor.Reshape(qkv, bs*heads, 3*ch, length), 1, ch, ch, ch)
		q, k, v = p[0], p[1], p[2]
	}
	scale := float32(1 / math.Sqrt(math.Sqrt(float64(ch))))
	// weight[b, t, s] = sum_c q[b, c, t] k[b, c, s]
	w := tensor.MatMulT(tensor.Scale(q, scale), tensor.Scale(k, scale), true, false)
	w = tensor.Softmax(w, -1)
	// out[b, c, t] = sum_s w[b, t, s] v[b, c, s]
	out := tensor.MatMulT(v, w, false, true)
	return tensor.Reshape(out, bs, heads*ch, length)
}

// Upsample doubles the resolution (nearest), then optionally convolves (3x3).
type Upsample struct{ Conv *nn.Conv2d }

func newUpsample(dev *tensor.Device, rng *rand.Rand, ch int, useConv bool) *Upsample {
	u := &Upsample{}
	if useConv {
		u.Conv = nn.NewConv2d(dev, rng, ch, ch, 3, tensor.ConvOpts{Padding: 1}, true)
	}
	return u
}

// Visit implements nn.Module.
func (u *Upsample) Visit(v nn.Visitor) {
	if u.Conv != nil {
		u.Conv.Visit(v.Sub("conv"))
	}
}

// Forward implements Block.
func (u *Upsample) Forward(x, _ *tensor.Tensor) *tensor.Tensor {
	x = tensor.UpsampleNearest2D(x, 2)
	if u.Conv != nil {
		x = u.Conv.Forward(x)
	}
	return x
}

// Downsample halves the resolution with a stride-2 3x3 convolution, or 2x2 average
// pooling when conv_resample is off.
type Downsample struct{ Op *nn.Conv2d }

func newDownsample(dev *tensor.Device, rng *rand.Rand, ch int, useConv bool) *Downsample {
	d := &Downsample{}
	if useConv {
		d.Op = nn.NewConv2d(dev, rng, ch, ch, 3, tensor.ConvOpts{Stride: 2, Padding: 1}, true)
	}
	return d
}

// Visit implements nn.Module.
func (d *Downsample) Visit(v nn.Visitor) {
	if d.Op != nil {
		d.Op.Visit(v.Sub("op"))
	}
}

// Forward implements Block.
func (d *Downsample) Forward(x, _ *tensor.Tensor) *tensor.Tensor {
	if d.Op != nil {
		return d.Op.Forward(x)
	}
	return tensor.AvgPool2D(x, 2, 2, 0)
}
