package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"egg/dataset"
	"egg/encoder"
	"egg/tensor"
)

// The architectures Architecture knows: a data-driven (SE2d) or task-driven
// (ResNet-50 to layer3.0, frozen) core with the paper's attention readout or an
// isotropic Gaussian readout.
const (
	DataDrivenAttention = "data-driven-attention"
	DataDrivenGaussian  = "data-driven-gaussian"
	TaskDrivenGaussian  = "task-driven-gaussian"
	TaskDrivenAttention = "task-driven-attention"
)

// ArchNames lists the architecture names, in the paper's order.
func ArchNames() []string {
	return []string{DataDrivenAttention, DataDrivenGaussian, TaskDrivenGaussian, TaskDrivenAttention}
}

// ArchOptions size an architecture. DefaultArch gives the paper's values.
type ArchOptions struct {
	Channels   int    // channels of every layer of the data-driven core
	Layers     int    // layers of the data-driven core, the first included
	InputKern  int    // kernel size of the data-driven core's first layer
	HiddenKern int    // kernel size of its depth-separable layers
	EmbedDim   int    // key/value size of the attention readout
	LayerName  string // where the task-driven ResNet-50 is cut ("layer3.0")
}

// DefaultArch returns the paper's sizes: 96 channels, 5 layers, kernels 9 and 5,
// attention embedding 128, ResNet cut after layer3.0.
func DefaultArch() ArchOptions {
	return ArchOptions{Channels: 96, Layers: 5, InputKern: 9, HiddenKern: 5, EmbedDim: 128, LayerName: "layer3.0"}
}

// Architecture returns the encoder.Config of the named architecture with the sizes
// of o, for 1x100x100 inputs and the paper's 1244 neurons; ForData fits it to a data
// set. The data-driven core is encoder.Preset("v4_data_driven")'s (Laplace penalty
// 10 on the first layer) and its output nonlinearity is ELU(x) + 1; the task-driven
// core is encoder.Preset("v4_task_driven")'s with ELU(x - 1) + 1. The attention
// readout is the data-driven preset's (L1 1 on features and queries, dropout 0.1 on
// the positional encoding); the Gaussian readout is the task-driven preset's for the
// ResNet (mu range 0.4, sigma 0.6, L1 3) and neuralpredictors' usual one for the
// SE2d core (mu range 0.3, sigma 0.1, L1 4; a sigma near 1 spreads the sampled
// positions over the whole feature map and training then fails).
func Architecture(name string, o ArchOptions) (encoder.Config, error) {
	dd, err := encoder.Preset("v4_data_driven")
	if err != nil {
		return encoder.Config{}, err
	}
	td, err := encoder.Preset("v4_task_driven")
	if err != nil {
		return encoder.Config{}, err
	}
	if !slices.Contains(ArchNames(), name) {
		return encoder.Config{}, fmt.Errorf("train: no architecture %q (have %s)", name, strings.Join(ArchNames(), ", "))
	}
	dataDriven := strings.HasPrefix(name, "data-driven-")
	var cfg encoder.Config
	if dataDriven {
		if o.Channels < 1 || o.Layers < 1 || o.InputKern < 1 || (o.Layers > 1 && o.HiddenKern < 1) {
			return encoder.Config{}, fmt.Errorf("train: channels %d, layers %d and kernel sizes %d, %d must be positive", o.Channels, o.Layers, o.InputKern, o.HiddenKern)
		}
		cfg = dd
		se := *dd.Core.SE2d
		se.HiddenChannels, se.Layers, se.InputKern = o.Channels, o.Layers, o.InputKern
		se.HiddenKern = encoder.Kernels{max(o.HiddenKern, 1)}
		cfg.Core.SE2d = &se
		cfg.EluOffset = 0
	} else {
		cfg = td
		rn := *td.Core.ResNet
		if o.LayerName != "" {
			rn.LayerName = o.LayerName
		}
		cfg.Core.ResNet = &rn
		cfg.EluOffset = -1
	}
	cfg.Readout = encoder.ReadoutConfig{Neurons: dd.Readout.Neurons}
	switch {
	case name == DataDrivenAttention || name == TaskDrivenAttention:
		at := *dd.Readout.Attention
		if o.EmbedDim > 0 {
			at.EmbedOutDim = o.EmbedDim
		}
		cfg.Readout.Attention = &at
	case name == DataDrivenGaussian:
		cfg.Readout.Gaussian = &encoder.GaussianConfig{GaussType: "isotropic", InitMuRange: 0.3, InitSigma: 0.1, Bias: true, GammaReadout: 4}
	default: // TaskDrivenGaussian
		g := *td.Readout.Gaussian
		cfg.Readout.Gaussian = &g
	}
	cfg.Name = name
	return cfg, nil
}

// ForData returns cfg fitted to d: input shape [C, H, W], one output per neuron
// (with d's neuron ids), and the pixel normalisation of d's training images
// (InputMean, InputStd).
func ForData(cfg encoder.Config, d *dataset.Dataset) encoder.Config {
	cfg.InputShape = []int{d.C, d.H, d.W}
	cfg.Readout.Neurons = d.Neurons
	cfg.NeuronIDs = slices.Clone(d.NeuronIDs)
	if cfg.Core.SE2d != nil {
		se := *cfg.Core.SE2d
		se.InputChannels = d.C
		cfg.Core.SE2d = &se
	}
	if cfg.Core.ResNet != nil {
		rn := *cfg.Core.ResNet
		rn.InputChannels = d.C
		cfg.Core.ResNet = &rn
	}
	mean, std := d.PixelStats(d.Indices(dataset.Train))
	cfg.InputMean, cfg.InputStd = float32(mean), float32(std)
	return cfg
}

// initStream is the PCG stream of a model's initial weights (the streams from 0 up
// are the readouts' training noise, see encoder.ReseedNoise).
const initStream = math.MaxUint64 - 1

// NewModel builds the model of cfg on dev with initial weights drawn from the PCG
// stream (seed, 2^64-2), so that one seed fixes a whole training run.
func NewModel(dev *tensor.Device, cfg encoder.Config, seed uint64) (encoder.Model, error) {
	return encoder.New(dev, cfg, rand.New(rand.NewPCG(seed, initStream)))
}
