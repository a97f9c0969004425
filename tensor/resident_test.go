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

// TestAssign: Assign writes into the tensor's storage (its views see it), records
// no gradient, and on a device copies there without a host transfer.
func TestAssign(t *testing.T) {
	dev, tr := testdevice.Counting()
	for _, d := range []*tensor.Device{tensor.CPU(1), dev} {
		p := tensor.FromSlice(d, []float32{-3, 0.5, 2}, 3).SetRequiresGrad(true)
		view := p.Detach()
		tensor.Clamp(p, -1, 1) // uploads p on the device
		d.Sync()
		tr.Reset()
		p.Assign(tensor.Clamp(p.Detach(), -1, 1))
		d.Sync()
		if up, down := tr.Elements(); up != 0 || down != 0 {
			t.Errorf("%d elements uploaded, %d downloaded", up, down)
		}
		if got := view.Values(); got[0] != -1 || got[1] != 0.5 || got[2] != 1 {
			t.Errorf("the view holds %v after Assign", got)
		}
		if !p.RequiresGrad() {
			t.Error("Assign dropped requires-grad")
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Assign of 2 elements into 3 did not panic")
		}
	}()
	tensor.New(tensor.CPU(1), 3).Assign(tensor.New(tensor.CPU(1), 2))
}
