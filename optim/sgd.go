package optim

import "fmt"

// SGDConfig holds the settings of SGD beyond each group's learning rate and weight
// decay. The zero value is plain gradient descent.
type SGDConfig struct {
	Momentum  float64 // 0 for none
	Dampening float64 // applied to the gradient in the momentum update
	Nesterov  bool    // Nesterov momentum; needs Momentum > 0 and Dampening 0
}

// SGD is stochastic gradient descent with optional momentum, as torch.optim.SGD:
//
//	d = grad + weight_decay * p
//	buf = d on the first step, else momentum * buf + (1 - dampening) * d
//	d = d + momentum * buf with Nesterov, else buf   (when momentum != 0)
//	p = p - lr * d
type SGD struct {
	base
	cfg SGDConfig
}

var _ Optimizer = (*SGD)(nil)

// NewSGD returns SGD over the groups. It panics on a negative learning rate, weight
// decay or momentum, or on Nesterov momentum without momentum or with dampening.
func NewSGD(groups []Group, cfg SGDConfig) *SGD {
	if cfg.Momentum < 0 || (cfg.Nesterov && (cfg.Momentum <= 0 || cfg.Dampening != 0)) {
		panic(fmt.Sprintf("optim: invalid SGD settings %+v (Nesterov needs momentum > 0 and dampening 0)", cfg))
	}
	return &SGD{base: newBase("sgd", groups), cfg: cfg}
}

// Step updates every parameter that has a gradient.
func (o *SGD) Step() {
	mom := float32(o.cfg.Momentum)
	damp := float32(1 - o.cfg.Dampening) // alpha=1 - dampening
	o.each(func(g *Group, p, grad []float32, s *ParamState) {
		wd, negLR := float32(g.WeightDecay), float32(-g.LR)
		first := false
		if o.cfg.Momentum != 0 && s.MomentumBuffer == nil {
			s.MomentumBuffer = make([]float32, len(p))
			first = true
		}
		buf := s.MomentumBuffer
		for i := range p {
			d := grad[i]
			if g.WeightDecay != 0 {
				d = fma32(p[i], wd, d) // d_p.add(param, alpha=weight_decay)
			}
			if o.cfg.Momentum != 0 {
				if first {
					buf[i] = d // torch.clone(d_p)
				} else {
					buf[i] = fma32(d, damp, mul32(buf[i], mom)) // buf.mul_(momentum).add_(d_p, alpha=1-dampening)
				}
				if o.cfg.Nesterov {
					d = fma32(buf[i], mom, d) // d_p.add(buf, alpha=momentum)
				} else {
					d = buf[i]
				}
			}
			p[i] = fma32(d, negLR, p[i]) // param.add_(d_p, alpha=-lr)
		}
	})
}
