package adm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"egg/tensor"
)

// BenchmarkAttentionBlock times the ADM attention block (GroupNorm(32) -> 1x1 conv
// 256->768 -> legacy QKV attention, 4 heads of 64 -> 1x1 conv 256->256 -> residual)
// on Bx256x16x16: forward, and forward plus the input gradient of the output's sum.
func BenchmarkAttentionBlock(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	blk := newAttentionBlock(testDev, rng, 256, 4, false)
	for _, n := range []int{1, 4} {
		x := tensor.Randn(testDev, rng, n, 256, 16, 16)
		b.Run(fmt.Sprintf("B%d/forward", n), func(b *testing.B) {
			blk.Forward(x, nil) // warm-up: a device's first launches load its kernels
			testDev.Sync()
			for b.Loop() {
				blk.Forward(x, nil)
				testDev.Sync()
			}
		})
		b.Run(fmt.Sprintf("B%d/inputgrad", n), func(b *testing.B) {
			xg := x.Clone().SetRequiresGrad(true)
			tensor.Grad(blk.Forward(xg, nil), tensor.Full(testDev, 1, x.Shape()...), xg) // warm-up
			testDev.Sync()
			for b.Loop() {
				out := blk.Forward(xg, nil)
				tensor.Grad(out, tensor.Full(testDev, 1, out.Shape()...), xg)
				testDev.Sync()
			}
		})
	}
}
