package optim

import (
	"fmt"
	"math"

	"egg/tensor"
)

// Group is a set of parameters that share a learning rate and a weight decay, like
// one of PyTorch's param_groups.
type Group struct {
	Params      []*tensor.Tensor
	LR          float64 // learning rate
	WeightDecay float64 // L2 penalty (SGD, Adam) or decoupled decay (AdamW)
}

// Optimizer is what every optimiser of this package does.
type Optimizer interface {
	// Step updates every parameter that has a gradient, in place.
	Step()
	// ZeroGrad drops the gradients of all parameters (PyTorch's set_to_none=True).
	ZeroGrad()
	// ParamGroups returns the optimiser's groups; changing a group's LR or
	// WeightDecay takes effect at the next Step.
	ParamGroups() []*Group
	// State returns a copy of the optimiser's accumulated state.
	State() *State
	// LoadState restores a state saved by State from an optimiser of the same kind
	// over parameters of the same shapes.
	LoadState(s *State) error
}

// State is the resumable state of an optimiser: the learning rate of each group and,
// for every parameter in group order, what the optimiser has accumulated for it.
type State struct {
	Kind   string       // "sgd", "adam" or "adamw"
	LR     []float64    // per group
	Params []ParamState // per parameter, groups in order
}

// ParamState is what an optimiser keeps for one parameter, under PyTorch's names.
// Buffers an optimiser has not created yet (before the parameter's first step, or
// that its settings do not use) are nil.
type ParamState struct {
	Step           int       // Adam, AdamW: steps taken with this parameter
	ExpAvg         []float32 // Adam, AdamW: first moment
	ExpAvgSq       []float32 // Adam, AdamW: second moment
	MaxExpAvgSq    []float32 // Adam, AdamW with AMSGrad: running maximum of ExpAvgSq
	MomentumBuffer []float32 // SGD with momentum
}

// clone returns a deep copy of s.
func (s ParamState) clone() ParamState {
	c := func(v []float32) []float32 {
		if v == nil {
			return nil
		}
		return append([]float32(nil), v...)
	}
	return ParamState{Step: s.Step, ExpAvg: c(s.ExpAvg), ExpAvgSq: c(s.ExpAvgSq),
		MaxExpAvgSq: c(s.MaxExpAvgSq), MomentumBuffer: c(s.MomentumBuffer)}
}

// base holds the groups and per-parameter state every optimiser has.
type base struct {
	kind   string
	groups []*Group
	state  []ParamState // per parameter, groups in order
}

func newBase(kind string, groups []Group) base {
	b := base{kind: kind}
	for i := range groups {
		g := groups[i]
		g.Params = append([]*tensor.Tensor(nil), g.Params...)
		if g.LR < 0 || math.IsNaN(g.LR) {
			panic(fmt.Sprintf("optim: group %d: invalid learning rate %v", i, g.LR))
		}
		if g.WeightDecay < 0 || math.IsNaN(g.WeightDecay) {
			panic(fmt.Sprintf("optim: group %d: invalid weight decay %v", i, g.WeightDecay))
		}
		for j, p := range g.Params {
			if p == nil {
				panic(fmt.Sprintf("optim: group %d: parameter %d is nil", i, j))
			}
		}
		b.groups = append(b.groups, &g)
		b.state = append(b.state, make([]ParamState, len(g.Params))...)
	}
	return b
}

// each calls f for every parameter with a gradient, with its group and state. f gets
// the host slices of Data (no copy on the CPU) and updates p in place; it runs no op,
// so on an accelerator the slices stay the tensors' storage until f returns.
func (b *base) each(f func(g *Group, p []float32, grad []float32, s *ParamState)) {
	k := 0
	for _, g := range b.groups {
		for _, p := range g.Params {
			if gr := p.Grad(); gr != nil {
				if gr.Len() != p.Len() {
					panic(fmt.Sprintf("optim: gradient of shape %v for a parameter of shape %v", gr.Shape(), p.Shape()))
				}
				f(g, p.Data(), gr.Data(), &b.state[k])
			}
			k++
		}
	}
}

// ZeroGrad drops the gradients of all parameters.
func (b *base) ZeroGrad() {
	for _, g := range b.groups {
		for _, p := range g.Params {
			p.ZeroGrad()
		}
	}
}

// ParamGroups returns the live groups.
func (b *base) ParamGroups() []*Group { return b.groups }

// State returns a deep copy of the optimiser's state.
func (b *base) State() *State {
	s := &State{Kind: b.kind}
	for _, g := range b.groups {
		s.LR = append(s.LR, g.LR)
	}
	for _, ps := range b.state {
		s.Params = append(s.Params, ps.clone())
	}
	return s
}

// LoadState restores s after checking that it fits the optimiser's parameters.
func (b *base) LoadState(s *State) error {
	if s.Kind != b.kind {
		return fmt.Errorf("optim: state of a %q optimiser loaded into %q", s.Kind, b.kind)
	}
	if len(s.LR) != len(b.groups) || len(s.Params) != len(b.state) {
		return fmt.Errorf("optim: state for %d groups and %d parameters loaded into %d groups and %d parameters",
			len(s.LR), len(s.Params), len(b.groups), len(b.state))
	}
	k := 0
	for _, g := range b.groups {
		for _, p := range g.Params {
			ps := s.Params[k]
			for _, buf := range [][]float32{ps.ExpAvg, ps.ExpAvgSq, ps.MaxExpAvgSq, ps.MomentumBuffer} {
				if buf != nil && len(buf) != p.Len() {
					return fmt.Errorf("optim: state of parameter %d has %d values for a parameter of shape %v", k, len(buf), p.Shape())
				}
			}
			if ps.Step < 0 {
				return fmt.Errorf("optim: state of parameter %d has step %d", k, ps.Step)
			}
			k++
		}
	}
	for i, g := range b.groups {
		g.LR = s.LR[i]
	}
	for i := range b.state {
		b.state[i] = s.Params[i].clone()
	}
	return nil
}

// fma32 returns a*b + c rounded once to float32, as the FMA instruction computes it
// (PyTorch's AVX2 kernels for add with alpha use one).
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24-bit times 24-bit significands
	s := p + float64(c)          // the exact sum rounded once to float64
	bits := math.Float64bits(s)
	if exp := bits >> 52 & 0x7ff; exp >= 1023-126 && bits&(1<<29-1) != 1<<28 {
		// A float32-normal value that is not halfway between two float32s: rounding it
		// again to float32 gives the same result as rounding p + c once.
		return float32(s)
	}
	r := float32(s)
	if float64(r) == s {
		return r
	}
	other := float32(math.Nextafter(s, 2*s-float64(r))) // the float32 on s's other side
	if mid := (float64(r) + float64(other)) / 2; s != mid {
		return r
	}
	// s is a tie; the float64 rounding error e decides the side (TwoSum: p + c = s + e).
	bb := s - p
	e := (p - (s - bb)) + (float64(c) - bb)
	switch {
	case e > 0:
		return float32(math.Nextafter(s, math.Inf(1)))
	case e < 0:
		return float32(math.Nextafter(s, math.Inf(-1)))
	}
	return r
}

// mul32 returns a*b rounded to float32, never fused with a following addition.
func mul32(a, b float32) float32 { return float32(a * b) }

// sqrt32 returns the correctly rounded float32 square root.
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
