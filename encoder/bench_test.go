package encoder

import (
	"math/rand/v2"
	"testing"

	"egg/optim"
	"egg/tensor"
)

// BenchmarkV4Model times the paper's data-driven model (preset v4_data_driven: SE2d
// core with 96 channels, a 9x9 first layer and 4 depth-separable 5x5 layers; attention
// readout with 128-dimensional keys; 1244 neurons; 1x100x100 inputs) with random
// weights, on all cores:
//
//   - B1/inputgrad: the gradient of neuron 7 with respect to one image, in evaluation
//     mode (what EGG and gradient-ascent MEIs need at every step);
//   - B16/train: one training step in training mode on 16 images: forward, Poisson
//     loss sum(y - t log(y + 1e-12)), backward to every parameter, an AdamW step.
//
// Besides wall time each reports cpu-s/op, the process's CPU time per operation,
// which a machine shared with other work inflates less.
func BenchmarkV4Model(b *testing.B) {
	dev := testDev
	cfg, err := Preset("v4_data_driven")
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	m, err := New(dev, cfg, rng)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("B1/inputgrad", func(b *testing.B) {
		x := tensor.Randn(dev, rng, 1, 1, 100, 100).SetRequiresGrad(true)
		seed := tensor.New(dev, 1, m.Neurons())
		seed.Data()[7] = 1
		tensor.Grad(m.Forward(x), seed, x) // warm-up: a device's first launches load its kernels
		dev.Sync()
		c0 := cpuSeconds()
		for b.Loop() {
			tensor.Grad(m.Forward(x), seed, x)
			dev.Sync()
		}
		reportCPU(b, c0)
	})
	b.Run("B16/train", func(b *testing.B) {
		params := Trainable(m)
		for _, p := range params {
			p.SetRequiresGrad(true)
		}
		m.SetTraining(true)
		defer func() {
			m.SetTraining(false)
			for _, p := range params {
				p.SetRequiresGrad(false).ZeroGrad()
			}
		}()
		opt := optim.NewAdamW([]optim.Group{{Params: params, LR: 1e-3, WeightDecay: 0.01}}, optim.AdamConfig{})
		x := tensor.Randn(dev, rng, 16, 1, 100, 100)
		target := tensor.New(dev, 16, m.Neurons())
		for i := range target.Data() {
			target.Data()[i] = float32(rng.IntN(4))
		}
		step := func() {
			opt.ZeroGrad()
			y := m.Forward(x)
			loss := tensor.Sum(tensor.Sub(y, tensor.Mul(target, tensor.Log(tensor.AddScalar(y, 1e-12)))), false)
			loss.Backward()
			opt.Step()
			dev.Sync()
		}
		step() // warm-up
		c0 := cpuSeconds()
		for b.Loop() {
			step()
		}
		reportCPU(b, c0)
	})
}

// reportCPU reports the CPU seconds per operation since c0.
func reportCPU(b *testing.B, c0 float64) {
	if c1 := cpuSeconds(); c0 >= 0 && c1 >= 0 {
		b.ReportMetric((c1-c0)/float64(b.N), "cpu-s/op")
	}
}
