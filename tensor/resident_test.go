package tensor_test

import (
	"math/rand/v2"
	"testing"

	"egg/internal/testdevice"
	"egg/tensor"
)

// TestConvStackStaysOnDevice: the conv stack of BenchmarkConvStack (conv, GroupNorm,
// SiLU), forward and input gradient, moves nothing between host and device once
// its inputs are there: every op of it has a device kernel.
func TestConvStackStaysOnDevice(t *testing.T) {
	dev, tr := testdevice.Counting()
	rng := rand.New(rand.NewPCG(1, 1))
	type layer struct{ w, bias, gw, gb *tensor.Tensor }
	var layers []layer
	for range 2 {
		layers = append(layers, layer{
			w:    tensor.Scale(tensor.Randn(dev, rng, 8, 8, 3, 3), 1.0/24),
			bias: tensor.Randn(dev, rng, 8),
			gw:   tensor.Full(dev, 1, 8),
			gb:   tensor.New(dev, 8),
		})
	}
	run := func(x *tensor.Tensor) *tensor.Tensor {
		for _, l := range layers {
			x = tensor.SiLU(tensor.GroupNorm(tensor.Conv2D(x, l.w, l.bias, tensor.ConvOpts{Padding: 1}), 4, l.gw, l.gb, 1e-5))
		}
		return x
	}
	x := tensor.Randn(dev, rng, 2, 8, 6, 6)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"forward", func() { run(x) }},
		{"inputgrad", func() {
			xg := x.Detach().SetRequiresGrad(true)
			out := run(xg)
			tensor.Grad(out, tensor.Full(dev, 1, out.Shape()...), xg)
		}},
	} {
		c.f() // the first run uploads the inputs made on the host
		dev.Sync()
		tr.Reset()
		c.f()
		dev.Sync()
		if up, down := tr.Elements(); up != 0 || down != 0 {
			t.Errorf("%s: %d elements uploaded and %d downloaded, want none", c.name, up, down)
		}
	}
}
