package encoder

import (
	"math/rand/v2"
	"slices"
	"testing"

	"egg/tensor"
)

// hookModel builds a small model of the named architecture ("attention": SE2d +
// attention on 12x12 images; "gaussian": ResNet to layer1.0 + Gaussian on 32x32).
func hookModel(t *testing.T, arch string, seed uint64) Model {
	t.Helper()
	stack := -1
	cfg := Config{InputShape: []int{1, 12, 12}, InputStd: 1}
	switch arch {
	case "attention":
		cfg.Core.SE2d = &SE2dConfig{InputChannels: 1, HiddenChannels: 4, InputKern: 5, HiddenKern: Kernels{3}, Layers: 2,
			DepthSeparable: true, FinalNonlinearity: true, Momentum: 0.1, Stack: &stack}
		cfg.Readout = ReadoutConfig{Neurons: 3, Attention: &AttentionConfig{DropoutPos: 0.3, EmbedOutDim: 4, KeyEmbedding: true,
			ValueEmbedding: true, Scale: true, Temperature: Temperature{Fixed: true, Value: 1}, UsePosEnc: true}}
	default:
		cfg.InputShape = []int{1, 32, 32}
		cfg.Core.ResNet = &ResNetConfig{ModelName: "resnet50", LayerName: "layer1.0", InputChannels: 1, FinalBatchNorm: true, FinalNonlinearity: true, Momentum: 0.1}
		cfg.Readout = ReadoutConfig{Neurons: 3, Gaussian: &GaussianConfig{GaussType: "isotropic", InitMuRange: 0.4, InitSigma: 0.6, Bias: true}}
	}
	m, err := New(tensor.CPU(1), cfg, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReseedNoise(t *testing.T) {
	dev := tensor.CPU(1)
	run := func(seed uint64) []float32 {
		e, err := NewEnsemble(hookModel(t, "attention", 1), hookModel(t, "attention", 2))
		if err != nil {
			t.Fatal(err)
		}
		g := hookModel(t, "gaussian", 1)
		if n := len(ReseedNoise(e, seed)); n != 2 {
			t.Fatalf("%d generators for an ensemble of 2", n)
		}
		if n := len(ReseedNoise(g, seed)); n != 1 {
			t.Fatalf("%d generators for one model", n)
		}
		e.SetTraining(true)
		g.SetTraining(true)
		out := slices.Clone(e.Forward(tensor.Randn(dev, rand.New(rand.NewPCG(1, 1)), 2, 1, 12, 12)).Data())
		return append(out, g.Forward(tensor.Randn(dev, rand.New(rand.NewPCG(2, 2)), 2, 1, 32, 32)).Data()...)
	}
	a, b, c := run(5), run(5), run(6)
	if !slices.Equal(a, b) {
		t.Error("the same noise seed gives different training outputs")
	}
	if slices.Equal(a[:6], c[:6]) || slices.Equal(a[6:], c[6:]) {
		t.Error("different noise seeds give the same training outputs")
	}
}
