package diffusion

import (
	"fmt"
	"math"
	"math/big"
)

// MeanType says what the model's first C output channels predict
// (guided-diffusion's ModelMeanType).
type MeanType int

// The model mean types. The zero value, MeanEpsilon, is ADM's.
const (
	MeanEpsilon   MeanType = iota // the noise eps (Ho et al. 2020)
	MeanStartX                    // x_0 itself
	MeanPreviousX                 // x_{t-1}, the posterior mean
)

// VarType says how the variance of p(x_{t-1} | x_t) is obtained
// (guided-diffusion's ModelVarType).
type VarType int

// The model variance types. The zero value, VarLearnedRange, is ADM's (learn_sigma).
const (
	VarLearnedRange VarType = iota // the model outputs v in [-1, 1] interpolating log beta~_t .. log beta_t
	VarLearned                     // the model outputs the log variance itself
	VarFixedSmall                  // beta~_t, the posterior variance
	VarFixedLarge                  // beta_t (beta~_1 at t = 0)
)

var meanTypeNames = []string{"epsilon", "start_x", "previous_x"}
var varTypeNames = []string{"learned_range", "learned", "fixed_small", "fixed_large"}

// String returns the type's name as ParseMeanType accepts it.
func (m MeanType) String() string {
	if m >= 0 && int(m) < len(meanTypeNames) {
		return meanTypeNames[m]
	}
	return fmt.Sprintf("MeanType(%d)", int(m))
}

// String returns the type's name as ParseVarType accepts it.
func (v VarType) String() string {
	if v >= 0 && int(v) < len(varTypeNames) {
		return varTypeNames[v]
	}
	return fmt.Sprintf("VarType(%d)", int(v))
}

// ParseMeanType returns the mean type named "epsilon", "start_x" or "previous_x".
func ParseMeanType(name string) (MeanType, error) {
	for i, n := range meanTypeNames {
		if n == name {
			return MeanType(i), nil
		}
	}
	return 0, fmt.Errorf("diffusion: unknown model mean type %q (want one of %v)", name, meanTypeNames)
}

// ParseVarType returns the variance type named "learned_range", "learned",
// "fixed_small" or "fixed_large".
func ParseVarType(name string) (VarType, error) {
	for i, n := range varTypeNames {
		if n == name {
			return VarType(i), nil
		}
	}
	return 0, fmt.Errorf("diffusion: unknown model variance type %q (want one of %v)", name, varTypeNames)
}

// EGGLogVarianceClamp is the upper bound EGG's sampler puts on the model log variance.
const EGGLogVarianceClamp = 5.0

// Config describes a diffusion process. The zero value is guided-diffusion's default
// ADM process without timestep rescaling: 1000 linear steps, epsilon prediction,
// learned-range variance, no respacing.
type Config struct {
	// BetaSchedule names the beta schedule ("linear" or "cosine"; "" means "linear").
	// It is ignored when Betas is set.
	BetaSchedule string
	// NumTimesteps is the number of steps of the original process (0 means 1000).
	// It is ignored when Betas is set.
	NumTimesteps int
	// Betas, when set, is the original process's beta schedule itself.
	Betas []float64
	// TimestepRespacing selects the steps to keep (see SpaceTimesteps; "" keeps all).
	TimestepRespacing string
	// MeanType and VarType say what the model outputs.
	MeanType MeanType
	VarType  VarType
	// RescaleTimesteps makes the model receive timesteps scaled to 0..1000
	// (guided-diffusion's rescale_timesteps; ADM checkpoints are trained with it).
	RescaleTimesteps bool
	// LogVarianceClamp, when set, is the upper bound PSample puts on the log variance
	// before it draws the noise, as EGG's p_sample does (EGGLogVarianceClamp).
	LogVarianceClamp *float64
}

// Schedule is a (respaced) diffusion process: its configuration and its arrays, all of
// length NumTimesteps and computed once in float64 exactly as guided-diffusion's
// GaussianDiffusion computes them from the respaced betas. A Schedule must not be
// modified after New.
type Schedule struct {
	// NumTimesteps is the number of respaced steps S; indices i run over [0, S).
	NumTimesteps int
	// OriginalNumSteps is the number of steps of the process before respacing.
	OriginalNumSteps int
	// TimestepMap[i] is the original timestep of respaced step i.
	TimestepMap []int

	MeanType         MeanType
	VarType          VarType
	RescaleTimesteps bool
	LogVarianceClamp *float64

	Betas                       []float64 // beta_i of the respaced process
	AlphasCumprod               []float64 // abar_i
	AlphasCumprodPrev           []float64 // abar_{i-1}, 1 at i = 0
	AlphasCumprodNext           []float64 // abar_{i+1}, 0 at the last step
	SqrtAlphasCumprod           []float64 // sqrt(abar_i)
	SqrtOneMinusAlphasCumprod   []float64 // sqrt(1 - abar_i)
	LogOneMinusAlphasCumprod    []float64 // log(1 - abar_i)
	SqrtRecipAlphasCumprod      []float64 // sqrt(1 / abar_i)
	SqrtRecipm1AlphasCumprod    []float64 // sqrt(1 / abar_i - 1)
	PosteriorVariance           []float64 // beta~_i = beta_i (1 - abar_{i-1}) / (1 - abar_i)
	PosteriorLogVarianceClipped []float64 // log beta~_i, with beta~_1 at i = 0
	PosteriorMeanCoef1          []float64 // beta_i sqrt(abar_{i-1}) / (1 - abar_i), the x_0 coefficient
	PosteriorMeanCoef2          []float64 // (1 - abar_{i-1}) sqrt(alpha_i) / (1 - abar_i), the x_t coefficient
}

// NamedBetaSchedule returns the beta schedule called name ("linear" or "cosine") for
// numTimesteps steps, as guided-diffusion's get_named_beta_schedule:
//
//   - linear (Ho et al. 2020, rescaled to any number of steps): numpy's
//     linspace(s*1e-4, s*0.02, numTimesteps) with s = 1000/numTimesteps;
//   - cosine (Nichol & Dhariwal 2021, eq. 17): BetasForAlphaBar of
//     abar(t) = cos((t + 0.008)/1.008 * pi/2)^2 with max_beta 0.999.
func NamedBetaSchedule(name string, numTimesteps int) ([]float64, error) {
	if numTimesteps < 1 {
		return nil, fmt.Errorf("diffusion: beta schedule %q for %d timesteps", name, numTimesteps)
	}
	switch name {
	case "linear":
		scale := 1000 / float64(numTimesteps)
		return linspace(scale*0.0001, scale*0.02, numTimesteps), nil
	case "cosine":
		return BetasForAlphaBar(numTimesteps, func(t float64) float64 {
			c := cosRN((t + 0.008) / 1.008 * math.Pi / 2)
			return c * c
		}, 0.999), nil
	}
	return nil, fmt.Errorf("diffusion: unknown beta schedule %q (want linear or cosine)", name)
}

// BetasForAlphaBar discretises a cumulative-product function alphaBar on [0, 1] into
// numTimesteps betas: beta_i = min(1 - alphaBar((i+1)/T) / alphaBar(i/T), maxBeta)
// (guided-diffusion's betas_for_alpha_bar; use maxBeta < 1 to avoid singularities).
func BetasForAlphaBar(numTimesteps int, alphaBar func(t float64) float64, maxBeta float64) []float64 {
	betas := make([]float64, numTimesteps)
	n := float64(numTimesteps)
	for i := range betas {
		t1, t2 := float64(i)/n, float64(i+1)/n
		betas[i] = min(1-alphaBar(t2)/alphaBar(t1), maxBeta)
	}
	return betas
}

// cosRN returns cos(x) correctly rounded. Python's math.cos (glibc's cos) is
// within about 0.502 ulp, so the two agree except at near-ties; Go's math.Cos is
// an ulp away more often, and the cosine schedule's 1 - abar(t2)/abar(t1) cancels so
// much that one ulp of abar becomes a relative error of several 1e-12 in beta. The
// Taylor series is summed in 160-bit floating point, which is exact enough for the
// |x| <= 4 it is used for.
func cosRN(x float64) float64 {
	if math.IsNaN(x) || math.Abs(x) > 4 {
		return math.Cos(x)
	}
	const prec = 160
	f := func() *big.Float { return new(big.Float).SetPrec(prec) }
	x2 := f().SetFloat64(x)
	x2.Mul(x2, x2)
	sum, term, div := f().SetInt64(1), f().SetInt64(1), f()
	for k := int64(1); k < 100; k++ {
		term.Mul(term, x2)
		term.Quo(term, div.SetInt64((2*k-1)*(2*k)))
		term.Neg(term)
		sum.Add(sum, term)
		if term.Sign() == 0 || term.MantExp(nil) < sum.MantExp(nil)-prec {
			break
		}
	}
	c, _ := sum.Float64()
	return c
}

// linspace is numpy.linspace(start, stop, num) in float64: start + i*step with
// step = (stop-start)/(num-1), and the last value exactly stop.
func linspace(start, stop float64, num int) []float64 {
	y := make([]float64, num)
	if num == 1 {
		y[0] = start
		return y
	}
	div := float64(num - 1)
	delta := stop - start
	step := delta / div
	for i := range y {
		if step == 0 {
			y[i] = float64(float64(i)/div)*delta + start
		} else {
			// The conversion keeps the compiler from fusing into an FMA, which numpy
			// does not do.
			y[i] = float64(float64(i)*step) + start
		}
	}
	y[num-1] = stop
	return y
}

// New computes the schedule of the process cfg describes: the original betas, the
// kept timesteps (SpaceTimesteps), the respaced betas 1 - abar_{t_i}/abar_{t_{i-1}} and
// every derived array, as guided-diffusion's SpacedDiffusion does. (guided-diffusion
// always builds a SpacedDiffusion, so even a process that keeps every step has its betas
// recomputed from abar; New does the same.) It returns an error for an unknown schedule,
// a bad respacing string or betas outside (0, 1].
func New(cfg Config) (*Schedule, error) {
	base := cfg.Betas
	if base == nil {
		name := cfg.BetaSchedule
		if name == "" {
			name = "linear"
		}
		n := cfg.NumTimesteps
		if n == 0 {
			n = 1000
		}
		var err error
		if base, err = NamedBetaSchedule(name, n); err != nil {
			return nil, err
		}
	}
	if err := checkBetas(base); err != nil {
		return nil, err
	}
	if cfg.MeanType < 0 || int(cfg.MeanType) >= len(meanTypeNames) {
		return nil, fmt.Errorf("diffusion: invalid %v", cfg.MeanType)
	}
	if cfg.VarType < 0 || int(cfg.VarType) >= len(varTypeNames) {
		return nil, fmt.Errorf("diffusion: invalid %v", cfg.VarType)
	}
	keep, err := SpaceTimesteps(len(base), cfg.TimestepRespacing)
	if err != nil {
		return nil, err
	}
	abar := cumprod(base)
	betas := make([]float64, 0, len(keep))
	last := 1.0
	for _, t := range keep {
		betas = append(betas, 1-abar[t]/last)
		last = abar[t]
	}
	if err := checkBetas(betas); err != nil {
		return nil, fmt.Errorf("%w (after respacing %q)", err, cfg.TimestepRespacing)
	}
	if len(betas) < 2 {
		// guided-diffusion fails here too: beta~_0 = 0 has no beta~_1 to stand in for it.
		return nil, fmt.Errorf("diffusion: timestep respacing %q keeps %d step; a process needs at least 2",
			cfg.TimestepRespacing, len(betas))
	}
	s := fromBetas(betas)
	s.OriginalNumSteps = len(base)
	s.TimestepMap = keep
	s.MeanType, s.VarType = cfg.MeanType, cfg.VarType
	s.RescaleTimesteps = cfg.RescaleTimesteps
	if cfg.LogVarianceClamp != nil {
		v := *cfg.LogVarianceClamp
		s.LogVarianceClamp = &v
	}
	return s, nil
}

func checkBetas(b []float64) error {
	if len(b) == 0 {
		return fmt.Errorf("diffusion: empty beta schedule")
	}
	for i, v := range b {
		if !(v > 0 && v <= 1) {
			return fmt.Errorf("diffusion: beta[%d] = %v is outside (0, 1]", i, v)
		}
	}
	return nil
}

func cumprod(b []float64) []float64 {
	out := make([]float64, len(b))
	p := 1.0
	for i, v := range b {
		p *= 1 - v
		out[i] = p
	}
	return out
}

// fromBetas computes the arrays of GaussianDiffusion.__init__ from betas, in float64
// and in the reference's order of operations.
func fromBetas(betas []float64) *Schedule {
	n := len(betas)
	mk := func() []float64 { return make([]float64, n) }
	s := &Schedule{
		NumTimesteps:                n,
		Betas:                       append([]float64(nil), betas...),
		AlphasCumprod:               mk(),
		AlphasCumprodPrev:           mk(),
		AlphasCumprodNext:           mk(),
		SqrtAlphasCumprod:           mk(),
		SqrtOneMinusAlphasCumprod:   mk(),
		LogOneMinusAlphasCumprod:    mk(),
		SqrtRecipAlphasCumprod:      mk(),
		SqrtRecipm1AlphasCumprod:    mk(),
		PosteriorVariance:           mk(),
		PosteriorLogVarianceClipped: mk(),
		PosteriorMeanCoef1:          mk(),
		PosteriorMeanCoef2:          mk(),
	}
	p := 1.0
	for i, b := range betas {
		p *= 1.0 - b // np.cumprod(1 - betas): a sequential product
		s.AlphasCumprod[i] = p
	}
	for i := range n {
		ac := s.AlphasCumprod[i]
		prev, next := 1.0, 0.0
		if i > 0 {
			prev = s.AlphasCumprod[i-1]
		}
		if i < n-1 {
			next = s.AlphasCumprod[i+1]
		}
		b := betas[i]
		s.AlphasCumprodPrev[i] = prev
		s.AlphasCumprodNext[i] = next
		s.SqrtAlphasCumprod[i] = math.Sqrt(ac)
		s.SqrtOneMinusAlphasCumprod[i] = math.Sqrt(1.0 - ac)
		s.LogOneMinusAlphasCumprod[i] = math.Log(1.0 - ac)
		s.SqrtRecipAlphasCumprod[i] = math.Sqrt(1.0 / ac)
		s.SqrtRecipm1AlphasCumprod[i] = math.Sqrt(1.0/ac - 1)
		s.PosteriorVariance[i] = b * (1.0 - prev) / (1.0 - ac)
		s.PosteriorMeanCoef1[i] = b * math.Sqrt(prev) / (1.0 - ac)
		s.PosteriorMeanCoef2[i] = (1.0 - prev) * math.Sqrt(1.0-b) / (1.0 - ac)
	}
	for i := range n {
		j := i
		if i == 0 && n > 1 {
			j = 1 // log(append(beta~[1], beta~[1:])): beta~_0 = 0 has no logarithm
		}
		s.PosteriorLogVarianceClipped[i] = math.Log(s.PosteriorVariance[j])
	}
	return s
}

// ModelTimestep returns the timestep the model is called with at respaced index i:
// the original timestep TimestepMap[i], times 1000/OriginalNumSteps when
// RescaleTimesteps is set (computed in float32, as guided-diffusion's _WrappedModel
// does; with 1000 original steps it is the original timestep itself). It panics when i
// is out of range.
func (s *Schedule) ModelTimestep(i int) float32 {
	s.check(i)
	t := float32(s.TimestepMap[i])
	if s.RescaleTimesteps {
		t *= float32(1000.0 / float64(s.OriginalNumSteps))
	}
	return t
}

// check panics when i is not a respaced index of s.
func (s *Schedule) check(i int) {
	if i < 0 || i >= s.NumTimesteps {
		panic(fmt.Sprintf("diffusion: step index %d out of range [0, %d)", i, s.NumTimesteps))
	}
}
