package encoder

import (
	"fmt"
	"math/rand/v2"

	"egg/checkpoint"
	"egg/nn"
)

// ReseedNoise gives every readout of m (each member of an ensemble, in order) a new
// training-noise source (the sampled positions of a GaussianReadout, the dropout
// masks of an AttentionReadout): a PCG seeded (seed, i) for the i-th readout. It
// returns the generators, whose state (MarshalBinary) a trainer saves and restores
// to resume training exactly where it stopped.
func ReseedNoise(m Model, seed uint64) []*rand.PCG {
	var pcgs []*rand.PCG
	var visit func(Model)
	visit = func(m Model) {
		switch m := m.(type) {
		case *Ensemble:
			for _, mm := range m.Members {
				visit(mm)
			}
		case *Encoder:
			p := rand.NewPCG(seed, uint64(len(pcgs)))
			switch r := m.Readout.(type) {
			case *GaussianReadout:
				r.Noise = rand.New(p)
			case *AttentionReadout:
				r.Noise = rand.New(p)
			default:
				return
			}
			pcgs = append(pcgs, p)
		}
	}
	visit(m)
	return pcgs
}

// backbone visits a ResNet core's network under torchvision's names, without the
// OutBatchNorm that nnvision adds after it.
type backbone struct{ c *ResNetCore }

func (b backbone) Visit(v nn.Visitor) {
	c := *b.c
	c.OutBN, c.NNVisionNames = nil, false
	c.Visit(v)
}

// LoadBackbone fills the ResNet of e's task-driven core from a checkpoint of the
// pretrained network alone (torchvision names such as layer3.0.conv1.weight, after
// prefix: "" for a torchvision state_dict, "module.model." for a robustness-library
// checkpoint). Tensors the truncated network does not use (layer4, fc, ...) are
// ignored; the core's OutBatchNorm keeps its state, since it is trained with the
// readout.
func LoadBackbone(e *Encoder, path, prefix string) error {
	rn, ok := e.Core.(*ResNetCore)
	if !ok {
		return fmt.Errorf("encoder: LoadBackbone: %s: the model's core is not a ResNet", path)
	}
	r, err := checkpoint.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := nn.Load(backbone{rn}, r, nn.LoadOptions{Prefix: prefix, AllowUnexpected: true}); err != nil {
		return fmt.Errorf("encoder: %s: %w", path, err)
	}
	return nil
}
