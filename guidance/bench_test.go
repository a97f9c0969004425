package guidance

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"egg/adm"
	"egg/diffusion"
	"egg/tensor"
)

// BenchmarkEGGStep times one guided step: the UNet forward at t = 500, x0_hat, an
// energy (minus the sum of a fixed random 64x64 map times the channel mean of x0_hat)
// and its gradient w.r.t. x_t through the UNet. The UNet: image 64, 3 -> 6 channels,
// 64 model channels, channel multipliers (1,2,3,4), 2 res blocks, attention at 16x16
// and 8x8, 32 channels per head, scale-shift norm, resblock up/down, legacy
// attention, random weights. bench/ times the same step in PyTorch.
func BenchmarkEGGStep(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	cfg := adm.Config{ImageSize: 64, InChannels: 3, OutChannels: 6, ModelChannels: 64, ChannelMult: []int{1, 2, 3, 4},
		NumResBlocks: 2, AttentionResolutions: []int{4, 8}, NumHeads: 1, NumHeadChannels: 32, NumHeadsUpsample: -1,
		UseScaleShiftNorm: true, ResblockUpdown: true}
	unet, err := adm.New(testDev, cfg, rng)
	if err != nil {
		b.Fatal(err)
	}
	s, err := diffusion.New(diffusion.Config{RescaleTimesteps: true})
	if err != nil {
		b.Fatal(err)
	}
	w := tensor.Randn(testDev, rng, 64, 64)
	energy := EnergyFunc(func(x0 *tensor.Tensor) *tensor.Tensor {
		m := tensor.Mean(x0, false, 1)
		return tensor.Neg(tensor.Sum(tensor.Mul(m, w), false, 1, 2))
	})
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("B%d", n), func(b *testing.B) {
			x := tensor.Randn(testDev, rng, n, 3, 64, 64)
			noise := tensor.Randn(testDev, rng, n, 3, 64, 64)
			GuidedStep(unet, s, x, 500, noise, energy, Options{Scale: 1}) // warm-up: a device's first launches load its kernels
			testDev.Sync()
			for b.Loop() {
				GuidedStep(unet, s, x, 500, noise, energy, Options{Scale: 1})
				testDev.Sync()
			}
		})
	}
}
