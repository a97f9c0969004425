package encoder

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"

	"egg/nn"
	"egg/tensor"
)

// Temperature is nnvision's temperature argument (learnable-per-neuron, value), which
// reads from and writes to JSON as the pair [bool, number].
type Temperature struct {
	Fixed bool    // the value is a fixed scalar (EGG: true); a learned per-neuron T otherwise
	Value float32 // the (initial) temperature
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Temperature) UnmarshalJSON(b []byte) error {
	var pair []json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil || len(pair) != 2 {
		return fmt.Errorf("encoder: temperature %s is not a pair [bool, number]", b)
	}
	if err := json.Unmarshal(pair[0], &t.Fixed); err != nil {
		return fmt.Errorf("encoder: temperature %s: first item is not a bool", b)
	}
	if err := json.Unmarshal(pair[1], &t.Value); err != nil {
		return fmt.Errorf("encoder: temperature %s: second item is not a number", b)
	}
	return nil
}

// MarshalJSON implements json.Marshaler.
func (t Temperature) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{t.Fixed, t.Value})
}

// AttentionConfig holds the arguments of the shared multi-head attention readout
// (nnvision's MultipleSharedMultiHeadAttention2d) under their Python names. Only the
// configuration of EGG's data-driven model is implemented: one head, key and value
// embeddings, fixed sinusoidal positional encoding, no layer norm, a fixed
// temperature; Validate rejects the others.
type AttentionConfig struct {
	Bias           *bool       `json:"bias,omitempty"`  // nil means true
	DropoutPos     float32     `json:"dropout_pos"`     // dropout after the positional encoding, in training
	EmbedOutDim    int         `json:"embed_out_dim"`   // key/value size E; 0 means the core's channels
	Heads          int         `json:"heads"`           // must be 1 (0 means 1)
	KeyEmbedding   bool        `json:"key_embedding"`   // keys from to_kv (must be true)
	ValueEmbedding bool        `json:"value_embedding"` // values from to_kv (must be true)
	LayerNorm      bool        `json:"layer_norm"`      // must be false
	LearnedPos     bool        `json:"learned_pos"`     // must be false
	Scale          bool        `json:"scale"`           // multiply the logits by C^-0.5
	Temperature    Temperature `json:"temperature"`     // divide the logits by T (must be fixed)
	UsePosEnc      bool        `json:"use_pos_enc"`     // add the fixed 2D positional encoding
	GammaFeatures  float32     `json:"gamma_features"`  // L1 penalty on the features
	GammaQuery     float32     `json:"gamma_query"`     // L1 penalty on the queries
	GammaEmbedding float32     `json:"gamma_embedding"` // mean-|w| penalty on to_kv

	StackPosEncoding bool `json:"stack_pos_encoding,omitempty"` // must be false
	NPosChannels     *int `json:"n_pos_channels,omitempty"`     // must be unset
}

// Validate reports the first setting this package does not implement.
func (c AttentionConfig) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("encoder: attention readout: "+format, a...)
	}
	switch {
	case c.Heads > 1:
		return bad("%d heads: only one head is implemented", c.Heads)
	case !c.KeyEmbedding || !c.ValueEmbedding:
		return bad("key_embedding and value_embedding must both be true")
	case c.LayerNorm:
		return bad("layer_norm is not implemented")
	case c.LearnedPos:
		return bad("learned positional encodings are not implemented")
	case !c.Temperature.Fixed:
		return bad("a learned temperature is not implemented (temperature [true, T] fixes it)")
	case c.Temperature.Value <= 0:
		return bad("temperature %v must be positive", c.Temperature.Value)
	case c.StackPosEncoding || c.NPosChannels != nil:
		return bad("stacked positional encodings are not implemented")
	case c.DropoutPos < 0 || c.DropoutPos >= 1:
		return bad("dropout_pos %v must lie in [0, 1)", c.DropoutPos)
	case c.EmbedOutDim < 0:
		return bad("embed_out_dim %d is negative", c.EmbedOutDim)
	}
	return nil
}

// PositionalEncoding returns the fixed 2D sinusoidal encoding [c, h*w] of
// nnvision's PositionalEncoding2D for an h x w map (h == w, c a multiple of 4): with
// D = c/2 and f_j = exp(2j * (-ln(10000) / D)) for j < D/2 (float32),
// P[p, 2j] = sin(p f_j) and P[p, 2j+1] = cos(p f_j); channel k < D of position
// s = r*w + col is P[r, k] (the row code) and channel k >= D is P[col, k-D] (the column
// code). It panics when the sizes do not fit.
func PositionalEncoding(dev *tensor.Device, c, h, w int) *tensor.Tensor {
	if c%4 != 0 || h != w || h < 1 {
		panic(fmt.Sprintf("encoder: PositionalEncoding: %d channels (need a multiple of 4) for a %dx%d map (need a square)", c, h, w))
	}
	d := c / 2
	step := float32(-math.Log(10000) / float64(d))
	p := make([]float32, h*d) // P[p, k]
	for j := 0; j < d/2; j++ {
		f := float32(math.Exp(float64(float32(2*j) * step)))
		for pos := 0; pos < h; pos++ {
			a := float64(float32(pos) * f)
			p[pos*d+2*j] = float32(math.Sin(a))
			p[pos*d+2*j+1] = float32(math.Cos(a))
		}
	}
	data := make([]float32, c*h*w)
	for k := 0; k < c; k++ {
		for r := 0; r < h; r++ {
			for col := 0; col < w; col++ {
				if k < d {
					data[k*h*w+r*w+col] = p[r*d+k]
				} else {
					data[k*h*w+r*w+col] = p[col*d+k-d]
				}
			}
		}
	}
	return tensor.FromSlice(dev, data, c, h*w)
}

// AttentionReadout is the paper's attention readout (one session of nnvision's
// MultipleSharedMultiHeadAttention2d, one head). For a feature map x [B, C, H, W]
// flattened to X [B, C, S] (S = H*W): Xe = X + PosEnc (then dropout DropoutPos in
// training); keys and values K, V [B, E, S] are the shared bias-free Linear to_kv
// (C -> 2E) at every position; per neuron n the logits K[b, :, s] . Query[0, :, n] *
// scale / T (scale = C^-0.5 when Cfg.Scale, else 1; T = Cfg.Temperature.Value) are
// softmaxed over s, the values averaged with those weights, dotted with
// Features[0, :, n] and Bias[n] added.
//
// Tensors are named position_embedding.twod_pe [C, S] (a fixed buffer), to_kv.weight
// [2E, C], <Session>.neuron_query [1, E, N], <Session>._features [1, E, N] and
// <Session>.bias [N].
type AttentionReadout struct {
	Cfg      AttentionConfig // the settings
	Session  string          // the data key in tensor names
	PosEnc   *tensor.Tensor  // nil unless Cfg.UsePosEnc
	ToKV     *nn.Linear      // to_kv: weight [2E, C], no bias
	Query    *tensor.Tensor  // neuron_query [1, E, N]
	Features *tensor.Tensor  // _features [1, E, N]
	Bias     *tensor.Tensor  // nil without bias
	Training bool            // apply dropout (see SetTraining)
	Noise    *rand.Rand      // source of the dropout masks in training
}

// NewAttentionReadout builds a readout of neurons from a channels x h x w feature map.
// PosEnc is generated (PositionalEncoding); with rng, to_kv gets PyTorch's default
// Linear initialisation and queries and features N(0, 1/E) draws (the reference's
// initialisation is not available), bias 0; nil rng leaves zeros. The dropout noise
// source is seeded from rng (a fixed seed when nil).
func NewAttentionReadout(dev *tensor.Device, cfg AttentionConfig, session string, channels, h, w, neurons int, rng *rand.Rand) (*AttentionReadout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if channels < 1 || neurons < 1 {
		return nil, fmt.Errorf("encoder: attention readout: %d channels and %d neurons must be positive", channels, neurons)
	}
	if cfg.UsePosEnc && (channels%4 != 0 || h != w) {
		return nil, fmt.Errorf("encoder: attention readout: the positional encoding needs channels divisible by 4 and a square map, got %d channels on %dx%d", channels, h, w)
	}
	e := cfg.embedDim(channels)
	r := &AttentionReadout{
		Cfg: cfg, Session: session,
		ToKV:     nn.NewLinear(dev, rng, channels, 2*e, false),
		Query:    tensor.New(dev, 1, e, neurons),
		Features: tensor.New(dev, 1, e, neurons),
		Noise:    noiseSource(rng),
	}
	if cfg.UsePosEnc {
		r.PosEnc = PositionalEncoding(dev, channels, h, w)
	}
	if cfg.Bias == nil || *cfg.Bias {
		r.Bias = tensor.New(dev, neurons)
	}
	if rng != nil {
		std := 1 / math.Sqrt(float64(e))
		for _, t := range []*tensor.Tensor{r.Query, r.Features} {
			v := make([]float32, t.Len())
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
			t.SetValues(v)
		}
	}
	return r, nil
}

func (c AttentionConfig) embedDim(channels int) int {
	if c.EmbedOutDim > 0 {
		return c.EmbedOutDim
	}
	return channels
}

// Visit implements nn.Module.
func (r *AttentionReadout) Visit(v nn.Visitor) {
	v.Sub("position_embedding").Buffer("twod_pe", r.PosEnc)
	r.ToKV.Visit(v.Sub("to_kv"))
	s := v.Sub(r.Session)
	s.Param("neuron_query", r.Query)
	s.Param("_features", r.Features)
	s.Param("bias", r.Bias)
}

// Neurons implements Readout.
func (r *AttentionReadout) Neurons() int { return r.Query.Dim(2) }

// SetTraining implements Readout.
func (r *AttentionReadout) SetTraining(training bool) { r.Training = training }

// LogitScale returns the factor of the attention logits, scale / T.
func (r *AttentionReadout) LogitScale(channels int) float32 {
	s := float32(1)
	if r.Cfg.Scale {
		s = float32(math.Pow(float64(channels), -0.5))
	}
	return s / r.Cfg.Temperature.Value
}

// attention holds the intermediate results of one forward pass.
type attention struct {
	key, value *tensor.Tensor // [B, E, S]
	weights    *tensor.Tensor // softmax over positions, [B, N, S]
	out        *tensor.Tensor // [B, N]
}

// Forward implements Readout for x [B, C, H, W].
func (r *AttentionReadout) Forward(x *tensor.Tensor) *tensor.Tensor { return r.attend(x).out }

// AttentionMaps returns where each neuron looks in the feature map x [B, C, H, W]:
// its attention weights as a [B, N, H, W] tensor (each map sums to 1; no history).
func (r *AttentionReadout) AttentionMaps(x *tensor.Tensor) *tensor.Tensor {
	a := r.attend(x).weights
	return tensor.Reshape(a, x.Dim(0), r.Neurons(), x.Dim(2), x.Dim(3))
}

func (r *AttentionReadout) attend(x *tensor.Tensor) attention {
	c := r.ToKV.Weight.Dim(1)
	if x.Rank() != 4 || x.Dim(1) != c {
		panic(fmt.Sprintf("encoder: attention readout: feature map %v, want [B, %d, H, W]", x.Shape(), c))
	}
	b, s := x.Dim(0), x.Dim(2)*x.Dim(3)
	e, n := r.Query.Dim(1), r.Neurons()
	if r.PosEnc != nil && r.PosEnc.Dim(1) != s {
		panic(fmt.Sprintf("encoder: attention readout: feature map %v does not match the positional encoding %v", x.Shape(), r.PosEnc.Shape()))
	}
	xe := tensor.Reshape(x, b, c, s)
	if r.PosEnc != nil {
		xe = tensor.Add(xe, r.PosEnc)
	}
	if r.Training && r.Cfg.DropoutPos > 0 {
		xe = tensor.Mul(xe, dropoutMask(x.Device(), r.Noise, r.Cfg.DropoutPos, b, c, s))
	}
	// Keys and values: the Linear layer at every position is a 1x1 convolution of
	// the [B, C, S, 1] map with the halves of to_kv's weight.
	xe = tensor.Reshape(xe, b, c, s, 1)
	wk := tensor.Reshape(tensor.Slice(r.ToKV.Weight, 0, 0, e, 1), e, c, 1, 1)
	wv := tensor.Reshape(tensor.Slice(r.ToKV.Weight, 0, e, 2*e, 1), e, c, 1, 1)
	key := tensor.Reshape(tensor.Conv2D(xe, wk, nil, tensor.ConvOpts{}), b, e, s)
	value := tensor.Reshape(tensor.Conv2D(xe, wv, nil, tensor.ConvOpts{}), b, e, s)
	// Scaled queries and features as [N, E]; the softmax over positions, the
	// pooling of the values and the dot with the features are one fused op.
	q := tensor.Scale(tensor.Transpose(tensor.Reshape(r.Query, e, n), 0, 1), r.LogitScale(c))
	f := tensor.Transpose(tensor.Reshape(r.Features, e, n), 0, 1)
	out, att := tensor.AttentionPool(q, key, value, f)
	if r.Bias != nil {
		out = tensor.Add(out, r.Bias)
	}
	return attention{key: key, value: value, weights: att, out: out}
}

// dropoutMask returns a [shape] tensor of inverted-dropout factors: 0 with
// probability p, 1/(1-p) otherwise.
func dropoutMask(dev *tensor.Device, rng *rand.Rand, p float32, shape ...int) *tensor.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	m := make([]float32, n)
	keep := 1 / (1 - p)
	for i := range m {
		if rng.Float32() >= p {
			m[i] = keep
		}
	}
	return tensor.FromSlice(dev, m, shape...)
}

// Regularizer implements Readout: GammaFeatures * sum|Features| + GammaQuery *
// sum|Query| + GammaEmbedding * mean|to_kv.weight| (terms with a zero weight are
// left out), or nil when every weight is 0.
func (r *AttentionReadout) Regularizer() *tensor.Tensor {
	var reg *tensor.Tensor
	term := func(gamma float32, t *tensor.Tensor, mean bool) {
		if gamma == 0 {
			return
		}
		a := tensor.Abs(t)
		var s *tensor.Tensor
		if mean {
			s = tensor.Mean(a, false)
		} else {
			s = tensor.Sum(a, false)
		}
		reg = addOpt(reg, tensor.Scale(s, gamma))
	}
	term(r.Cfg.GammaFeatures, r.Features, false)
	term(r.Cfg.GammaQuery, r.Query, false)
	term(r.Cfg.GammaEmbedding, r.ToKV.Weight, true)
	return reg
}
