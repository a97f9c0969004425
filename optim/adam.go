package optim

import (
	"fmt"
	"math"
	"math/big"
)

// AdamConfig holds the settings of Adam and AdamW beyond each group's learning rate
// and weight decay. Zero Beta1, Beta2 and Eps select PyTorch's defaults 0.9, 0.999
// and 1e-8.
type AdamConfig struct {
	Beta1, Beta2 float64 // decay rates of the first and second moments, in [0, 1)
	Eps          float64 // added to the denominator
	AMSGrad      bool    // normalise by the running maximum of the second moment
}

func (c AdamConfig) withDefaults() AdamConfig {
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	if c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1 || c.Eps < 0 || math.IsNaN(c.Eps) {
		panic(fmt.Sprintf("optim: invalid Adam settings %+v", c))
	}
	return c
}

// Adam is Adam (Kingma and Ba, 2015, Algorithm 1), as torch.optim.Adam, or with
// decoupled weight decay AdamW (Loshchilov and Hutter, 2019), as torch.optim.AdamW.
// For step t of a parameter:
//
//	AdamW:  p = p * (1 - lr * weight_decay)
//	Adam:   g = grad + weight_decay * p
//	m = beta1 * m + (1 - beta1) * g
//	v = beta2 * v + (1 - beta2) * g * g
//	vmax = max(vmax, v)  with AMSGrad, used instead of v below
//	p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
type Adam struct {
	base
	cfg       AdamConfig
	decoupled bool
	// bias corrections of the last step count seen, as PyTorch computes them
	lastStep int
	bc1, bc2 float64
}

var _ Optimizer = (*Adam)(nil)

// NewAdam returns Adam over the groups, with the groups' weight decay added to the
// gradient (L2 penalty). It panics on invalid settings.
func NewAdam(groups []Group, cfg AdamConfig) *Adam {
	return &Adam{base: newBase("adam", groups), cfg: cfg.withDefaults()}
}

// NewAdamW returns AdamW over the groups: Adam with the groups' weight decay applied
// to the parameters directly (decoupled). PyTorch's default weight decay for AdamW
// is 0.01; here it is whatever the groups say. It panics on invalid settings.
func NewAdamW(groups []Group, cfg AdamConfig) *Adam {
	return &Adam{base: newBase("adamw", groups), cfg: cfg.withDefaults(), decoupled: true}
}

// powInt returns b^n correctly rounded to float64, as Python's b ** n gives it (C's
// pow; math.Pow is several ulps off for large integer exponents).
func powInt(b float64, n int) float64 {
	x := new(big.Float).SetPrec(256).SetFloat64(1)
	y := new(big.Float).SetPrec(256).SetFloat64(b)
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			x.Mul(x, y)
		}
		y.Mul(y, y)
	}
	f, _ := x.Float64()
	return f
}

// corrections returns 1 - beta1^step and 1 - beta2^step.
func (o *Adam) corrections(step int) (bc1, bc2 float64) {
	if step != o.lastStep {
		o.lastStep = step
		o.bc1 = 1 - powInt(o.cfg.Beta1, step)
		o.bc2 = 1 - powInt(o.cfg.Beta2, step)
	}
	return o.bc1, o.bc2
}

// Step updates every parameter that has a gradient.
func (o *Adam) Step() {
	b1, b2 := float32(o.cfg.Beta1), float32(o.cfg.Beta2)
	a1, a2 := float32(1-o.cfg.Beta1), float32(1-o.cfg.Beta2) // alpha=1-beta1, value=1-beta2
	eps := float32(o.cfg.Eps)
	o.each(func(g *Group, p, grad []float32, s *ParamState) {
		if s.ExpAvg == nil {
			s.ExpAvg = make([]float32, len(p))
		}
		if s.ExpAvgSq == nil {
			s.ExpAvgSq = make([]float32, len(p))
		}
		if o.cfg.AMSGrad && s.MaxExpAvgSq == nil {
			s.MaxExpAvgSq = make([]float32, len(p))
		}
		s.Step++
		bc1, bc2 := o.corrections(s.Step)
		// Python floats, rounded to float32 where they meet the tensors.
		negStepSize := float32(-(g.LR / bc1))
		bc2Sqrt := float32(math.Sqrt(bc2))
		decay := float32(1 - g.LR*g.WeightDecay)
		wd := float32(g.WeightDecay)
		m, v, vmax := s.ExpAvg, s.ExpAvgSq, s.MaxExpAvgSq
		for i := range p {
			gi := grad[i]
			if o.decoupled {
				p[i] = mul32(p[i], decay) // param.mul_(1 - lr * weight_decay)
			} else if g.WeightDecay != 0 {
				gi = fma32(p[i], wd, gi) // grad.add(param, alpha=weight_decay)
			}
			m[i] = fma32(gi, a1, mul32(m[i], b1)) // exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
			// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2): the compiler
			// contracts PyTorch's self + value*t1*t2 into fma(value*t1, t2, self).
			v[i] = fma32(mul32(a2, gi), gi, mul32(v[i], b2))
			den := v[i]
			if vmax != nil {
				vmax[i] = max(vmax[i], v[i]) // torch.maximum
				den = vmax[i]
			}
			den = sqrt32(den)/bc2Sqrt + eps        // (sqrt / bias_correction2_sqrt).add_(eps)
			p[i] += mul32(negStepSize, m[i]) / den // param.addcdiv_(exp_avg, denom, value=-step_size)
		}
	})
}
