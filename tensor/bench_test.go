package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkConvStack times 6 x [conv3x3 64->64 (padding 1, bias) -> GroupNorm(32,
// eps 1e-5, affine) -> SiLU] on a Bx64x64x64 input: the forward pass alone, and the
// forward pass plus the gradient of the output's sum w.r.t. the input (weights not
// requiring gradients). bench/ times the same workload in PyTorch.
func BenchmarkConvStack(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	dev := testDev
	type layer struct{ w, bias, gw, gb *Tensor }
	var layers []layer
	for range 6 {
		layers = append(layers, layer{
			w:    Scale(Randn(dev, rng, 64, 64, 3, 3), 1.0/24),
			bias: Randn(dev, rng, 64),
			gw:   Full(dev, 1, 64),
			gb:   New(dev, 64),
		})
	}
	run := func(x *Tensor) *Tensor {
		for _, l := range layers {
			x = SiLU(GroupNorm(Conv2D(x, l.w, l.bias, ConvOpts{Padding: 1}), 32, l.gw, l.gb, 1e-5))
		}
		return x
	}
	for _, n := range []int{1, 4} {
		x := Randn(dev, rng, n, 64, 64, 64)
		b.Run(fmt.Sprintf("B%d/forward", n), func(b *testing.B) {
			run(x) // warm-up: a device's first launches load its kernels
			dev.Sync()
			for b.Loop() {
				run(x)
				dev.Sync()
			}
		})
		b.Run(fmt.Sprintf("B%d/inputgrad", n), func(b *testing.B) {
			xg := x.Clone().SetRequiresGrad(true)
			Grad(run(xg), Full(dev, 1, n, 64, 64, 64), xg) // warm-up
			dev.Sync()
			for b.Loop() {
				out := run(xg)
				Grad(out, Full(dev, 1, out.Shape()...), xg)
				dev.Sync()
			}
		})
	}
}
