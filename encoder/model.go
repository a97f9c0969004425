package encoder

import (
	"fmt"

	"egg/nn"
	"egg/tensor"
)

// Model maps images [N, 1, H, W] of z-scored pixels to predicted firing rates
// [N, Neurons()]. Its tensors carry the reference's state_dict names (nn.Module).
type Model interface {
	nn.Module
	// Forward predicts the responses to x [N, C, H, W]; the result is [N, Neurons()].
	Forward(x *tensor.Tensor) *tensor.Tensor
	// Neurons returns the number of predicted neurons.
	Neurons() int
	// SetTraining switches between training behaviour (batch statistics, sampled
	// readout positions, dropout) and evaluation (the default).
	SetTraining(training bool)
	// Config returns the architecture the model was built from.
	Config() Config
}

// Core maps images [N, Cin, H, W] to feature maps [N, C, H', W'].
type Core interface {
	nn.Module
	// Forward computes the feature map of x.
	Forward(x *tensor.Tensor) *tensor.Tensor
	// OutShape returns the feature map's [C, H', W'] for inputs of h x w pixels.
	OutShape(h, w int) (c, ho, wo int)
	// SetTraining switches the core's BatchNorms between batch and running statistics.
	SetTraining(training bool)
	// Regularizer returns the core's training penalty (a scalar), or nil for none.
	Regularizer() *tensor.Tensor
	// Trainable returns the core's parameters that training updates.
	Trainable() []*tensor.Tensor
}

// Readout maps feature maps [N, C, H, W] to responses [N, neurons] before the output
// nonlinearity.
type Readout interface {
	nn.Module
	// Forward reads the responses out of the feature map x.
	Forward(x *tensor.Tensor) *tensor.Tensor
	// Neurons returns the number of neurons read out.
	Neurons() int
	// SetTraining switches the readout's training noise on or off.
	SetTraining(training bool)
	// Regularizer returns the readout's training penalty (a scalar), or nil for none.
	Regularizer() *tensor.Tensor
}

var (
	_ Model   = (*Encoder)(nil)
	_ Model   = (*Ensemble)(nil)
	_ Core    = (*SE2dCore)(nil)
	_ Core    = (*ResNetCore)(nil)
	_ Readout = (*GaussianReadout)(nil)
	_ Readout = (*AttentionReadout)(nil)
)

// Encoder is one encoding model: out = ELU(Readout(Core(x)) + Offset) + 1, as
// nnvision's Encoder (Offset 0, the data-driven model) and EncoderShifter without a
// shifter (Offset -1, the task-driven model). Its tensors are named core.* and
// readout.*.
type Encoder struct {
	Core    Core    // core.*
	Readout Readout // readout.*
	Offset  float32 // added before the ELU
	cfg     Config
}

// Visit implements nn.Module.
func (e *Encoder) Visit(v nn.Visitor) {
	e.Core.Visit(v.Sub("core"))
	e.Readout.Visit(v.Sub("readout"))
}

// Forward implements Model.
func (e *Encoder) Forward(x *tensor.Tensor) *tensor.Tensor {
	return e.Output(e.Readout.Forward(e.Core.Forward(x)))
}

// Output applies the output nonlinearity ELU(r + Offset) + 1 to readout values r.
func (e *Encoder) Output(r *tensor.Tensor) *tensor.Tensor {
	if e.Offset != 0 {
		r = tensor.AddScalar(r, e.Offset)
	}
	return tensor.AddScalar(tensor.ELU(r, 1), 1)
}

// Neurons implements Model.
func (e *Encoder) Neurons() int { return e.Readout.Neurons() }

// SetTraining implements Model.
func (e *Encoder) SetTraining(training bool) {
	e.Core.SetTraining(training)
	e.Readout.SetTraining(training)
}

// Config implements Model.
func (e *Encoder) Config() Config { return e.cfg }

// Regularizer returns the training penalty of the core and the readout (a scalar),
// or nil when neither has one.
func (e *Encoder) Regularizer() *tensor.Tensor {
	return addOpt(e.Core.Regularizer(), e.Readout.Regularizer())
}

// addOpt adds two optional scalars.
func addOpt(a, b *tensor.Tensor) *tensor.Tensor {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return tensor.Add(a, b)
}

// Ensemble averages the outputs (after the output nonlinearity) of models that
// predict the same neurons, as mei.modules.EnsembleModel. Its tensors are named
// members.<i>.*.
type Ensemble struct {
	Members []Model // members.0, members.1, ...
}

// NewEnsemble returns the ensemble of members. It fails when there are none or
// when they predict different numbers of neurons.
func NewEnsemble(members ...Model) (*Ensemble, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("encoder: an ensemble needs at least one member")
	}
	for i, m := range members {
		if m.Neurons() != members[0].Neurons() {
			return nil, fmt.Errorf("encoder: ensemble member %d predicts %d neurons, member 0 predicts %d", i, m.Neurons(), members[0].Neurons())
		}
	}
	return &Ensemble{Members: members}, nil
}

// Visit implements nn.Module.
func (e *Ensemble) Visit(v nn.Visitor) {
	mv := v.Sub("members")
	for i, m := range e.Members {
		m.Visit(mv.Sub(fmt.Sprint(i)))
	}
}

// Forward implements Model: the mean of the members' outputs.
func (e *Ensemble) Forward(x *tensor.Tensor) *tensor.Tensor {
	var sum *tensor.Tensor
	for _, m := range e.Members {
		y := m.Forward(x)
		if sum == nil {
			sum = y
		} else {
			sum = tensor.Add(sum, y)
		}
	}
	if len(e.Members) == 1 {
		return sum
	}
	return tensor.Scale(sum, 1/float32(len(e.Members)))
}

// Neurons implements Model.
func (e *Ensemble) Neurons() int { return e.Members[0].Neurons() }

// SetTraining implements Model.
func (e *Ensemble) SetTraining(training bool) {
	for _, m := range e.Members {
		m.SetTraining(training)
	}
}

// Config implements Model: a Config whose Members are the members' configs.
func (e *Ensemble) Config() Config {
	c := Config{}
	for _, m := range e.Members {
		c.Members = append(c.Members, m.Config())
	}
	if len(c.Members) > 0 {
		m0 := c.Members[0]
		c.InputShape, c.InputMean, c.InputStd, c.NeuronIDs = m0.InputShape, m0.InputMean, m0.InputStd, m0.NeuronIDs
	}
	return c
}

// Trainable returns the parameters a trainer should update: every parameter of m
// except the frozen weights of task-driven cores.
func Trainable(m Model) []*tensor.Tensor {
	switch m := m.(type) {
	case *Encoder:
		return append(m.Core.Trainable(), nn.Params(m.Readout)...)
	case *Ensemble:
		var ps []*tensor.Tensor
		for _, mm := range m.Members {
			ps = append(ps, Trainable(mm)...)
		}
		return ps
	}
	return nn.Params(m)
}

// Regularizer returns the training penalty of m (the sum over an ensemble's
// members), or nil when it has none.
func Regularizer(m Model) *tensor.Tensor {
	switch m := m.(type) {
	case *Encoder:
		return m.Regularizer()
	case *Ensemble:
		var r *tensor.Tensor
		for _, mm := range m.Members {
			r = addOpt(r, Regularizer(mm))
		}
		return r
	}
	return nil
}
