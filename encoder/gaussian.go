package encoder

import (
	"fmt"
	"math/rand/v2"

	"egg/nn"
	"egg/tensor"
)

// GaussianConfig holds the arguments of nnvision's MultipleFullGaussian2d readout
// under the Python names of its model function (task_core_gauss_readout).
type GaussianConfig struct {
	GaussType    string  `json:"gauss_type"`              // "isotropic" (the only type implemented)
	InitMuRange  float32 `json:"init_mu_range"`           // positions start uniform in [-r, r]
	InitSigma    float32 `json:"init_sigma_range"`        // sigma starts at this value
	Bias         bool    `json:"readout_bias"`            // a bias per neuron
	GammaReadout float32 `json:"gamma_readout"`           // weight of the L1 penalty on the features
	BatchSample  *bool   `json:"batch_sample,omitempty"`  // a position per image in training (nil: true)
	AlignCorners *bool   `json:"align_corners,omitempty"` // grid_sample's align_corners (nil: true)
}

func orTrue(b *bool) bool { return b == nil || *b }

// Validate reports the first setting this package does not implement.
func (c GaussianConfig) Validate() error {
	if c.GaussType != "isotropic" {
		return fmt.Errorf("encoder: Gaussian readout: gauss_type %q is not implemented (only isotropic)", c.GaussType)
	}
	return nil
}

// GaussianReadout is neuralpredictors' FullGaussian2d with an isotropic Gaussian, as
// one session of nnvision's MultipleFullGaussian2d. Each neuron n reads the feature
// map at one position: out[b, n] = sum_c Features[0, c, 0, n] * S[b, c, n] + Bias[n],
// S = grid_sample(x, grid, bilinear, zero padding, align_corners) with grid[..., 0]
// along the width. In evaluation grid = clamp(Mu, -1, 1); in training each image (or
// the whole batch when BatchSample is false) gets grid = clamp(Mu + e * Sigma, -1, 1), e ~ N(0, 1)
// drawn from Noise. As in PyTorch, every forward pass first clamps Mu itself to
// [-1, 1] in place.
//
// Tensors are named <Session>._mu [1, N, 1, 2], <Session>.sigma [1, N, 1, 1],
// <Session>._features [1, C, 1, N] and <Session>.bias [N].
type GaussianReadout struct {
	Cfg      GaussianConfig // the settings
	Session  string         // the data key in tensor names
	Mu       *tensor.Tensor // _mu [1, N, 1, 2]: positions (x, y) in [-1, 1]
	Sigma    *tensor.Tensor // sigma [1, N, 1, 1]: spread of the sampled positions
	Features *tensor.Tensor // _features [1, C, 1, N]
	Bias     *tensor.Tensor // nil without bias
	Training bool           // sample positions (see SetTraining)
	Noise    *rand.Rand     // source of the sampled positions in training
}

// NewGaussianReadout builds a readout of neurons from a feature map with channels
// channels, initialised as neuralpredictors does from rng (positions uniform in
// [-InitMuRange, InitMuRange], sigma InitSigma, features 1/channels, bias 0; nil rng:
// zeros). The training noise source is seeded from rng (a fixed seed when nil).
func NewGaussianReadout(dev *tensor.Device, cfg GaussianConfig, session string, channels, neurons int, rng *rand.Rand) (*GaussianReadout, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if channels < 1 || neurons < 1 {
		return nil, fmt.Errorf("encoder: Gaussian readout: %d channels and %d neurons must be positive", channels, neurons)
	}
	r := &GaussianReadout{
		Cfg: cfg, Session: session,
		Mu:       tensor.New(dev, 1, neurons, 1, 2),
		Sigma:    tensor.New(dev, 1, neurons, 1, 1),
		Features: tensor.New(dev, 1, channels, 1, neurons),
		Noise:    noiseSource(rng),
	}
	if cfg.Bias {
		r.Bias = tensor.New(dev, neurons)
	}
	if rng != nil {
		mu := make([]float32, r.Mu.Len())
		for i := range mu {
			mu[i] = float32((2*rng.Float64() - 1) * float64(cfg.InitMuRange))
		}
		r.Mu.SetValues(mu)
		fill(r.Sigma, cfg.InitSigma)
		fill(r.Features, 1/float32(channels))
	}
	return r, nil
}

// noiseSource returns a training-noise source seeded from rng, or from a fixed seed.
func noiseSource(rng *rand.Rand) *rand.Rand {
	if rng == nil {
		return rand.New(rand.NewPCG(0, 0))
	}
	return rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
}

func fill(t *tensor.Tensor, v float32) {
	vs := make([]float32, t.Len())
	for i := range vs {
		vs[i] = v
	}
	t.SetValues(vs)
}

// Visit implements nn.Module.
func (r *GaussianReadout) Visit(v nn.Visitor) {
	s := v.Sub(r.Session)
	s.Param("_mu", r.Mu)
	s.Param("sigma", r.Sigma)
	s.Param("_features", r.Features)
	s.Param("bias", r.Bias)
}

// Neurons implements Readout.
func (r *GaussianReadout) Neurons() int { return r.Mu.Dim(1) }

// SetTraining implements Readout.
func (r *GaussianReadout) SetTraining(training bool) { r.Training = training }

// Grid clamps Mu to [-1, 1] in place and returns the positions read in evaluation,
// a [1, N, 1, 2] tensor.
func (r *GaussianReadout) Grid() *tensor.Tensor {
	r.Mu.Assign(tensor.Clamp(r.Mu.Detach(), -1, 1))
	return tensor.Clamp(r.Mu, -1, 1)
}

// Forward implements Readout for x [B, C, H, W].
func (r *GaussianReadout) Forward(x *tensor.Tensor) *tensor.Tensor {
	if x.Rank() != 4 || x.Dim(1) != r.Features.Dim(1) {
		panic(fmt.Sprintf("encoder: Gaussian readout: feature map %v, want [B, %d, H, W]", x.Shape(), r.Features.Dim(1)))
	}
	b, c, n := x.Dim(0), x.Dim(1), r.Neurons()
	r.Mu.Assign(tensor.Clamp(r.Mu.Detach(), -1, 1)) // in place, as PyTorch's mu.data.clamp_ (on the device there)
	var grid *tensor.Tensor
	if r.Training {
		rows := b
		if !orTrue(r.Cfg.BatchSample) {
			rows = 1
		}
		e := tensor.Randn(x.Device(), r.Noise, rows, n, 1, 2)
		grid = tensor.Clamp(tensor.Add(tensor.Mul(e, r.Sigma), r.Mu), -1, 1)
		if rows != b {
			grid = tensor.Expand(grid, b, n, 1, 2)
		}
	} else {
		grid = tensor.Clamp(tensor.Expand(r.Mu, b, n, 1, 2), -1, 1)
	}
	s := tensor.Reshape(tensor.GridSample(x, grid, orTrue(r.Cfg.AlignCorners)), b, c, n)
	y := tensor.Sum(tensor.Mul(s, tensor.Reshape(r.Features, 1, c, n)), false, 1)
	if r.Bias != nil {
		y = tensor.Add(y, r.Bias)
	}
	return y
}

// Regularizer implements Readout: GammaReadout * sum |Features|, or nil when
// GammaReadout is 0.
func (r *GaussianReadout) Regularizer() *tensor.Tensor {
	if r.Cfg.GammaReadout == 0 {
		return nil
	}
	return tensor.Scale(tensor.Sum(tensor.Abs(r.Features), false), r.Cfg.GammaReadout)
}
