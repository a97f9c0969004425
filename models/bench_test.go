package models

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"egg/guidance"
	"egg/priortrain"
	"egg/tensor"
)

// BenchmarkPriorForward times one forward pass of the default prior on a batch of 64
// images, the unit of unguided sampling.
func BenchmarkPriorForward(b *testing.B) {
	dev := tensor.CPU(runtime.NumCPU())
	s, err := Install(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	unet, _, err := priortrain.LoadModel(dev, s.Prior)
	if err != nil {
		b.Fatal(err)
	}
	size := unet.Config.ImageSize
	rngs := make([]*rand.Rand, 64)
	for k := range rngs {
		rngs[k] = rand.New(rand.NewPCG(1, uint64(k)))
	}
	x := guidance.Noise(dev, rngs, 64, 1, size, size)
	ts := make([]float32, 64)
	for i := range ts {
		ts[i] = 500
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		unet.Forward(x, ts, nil)
	}
}
