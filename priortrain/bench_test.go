package priortrain

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"egg/adm"
	"egg/diffusion"
	"egg/gemm"
	"egg/guidance"
	"egg/tensor"
)

// priorConfig is a candidate default prior: grayscale, learned sigma, channel
// multipliers (1,2,2,2), 2 residual blocks per level, attention at the resolutions
// size/4 and size/8 (16x16 and 8x8 for 64x64 images, 8x8 and 4x4 for 32x32) with 32
// channels per head, scale-shift norm, resblock up/down, legacy attention.
func priorConfig(size, channels int) adm.Config {
	return adm.Config{ImageSize: size, InChannels: 1, OutChannels: 2, ModelChannels: channels,
		ChannelMult: []int{1, 2, 2, 2}, NumResBlocks: 2, AttentionResolutions: []int{4, 8},
		NumHeads: 1, NumHeadChannels: 32, NumHeadsUpsample: -1, UseScaleShiftNorm: true, ResblockUpdown: true}
}

// candidates are the prior sizes (image size, model channels) the benchmarks time:
//
//	go test ./priortrain -run '^$' -bench Prior -benchtime 3x
//
// egg train-prior's default flags make the first, on a 32x32 pool.
var candidates = []struct{ size, ch int }{{32, 32}, {32, 64}, {64, 32}, {64, 64}}

// flopCounter is a GEMM that counts the floating-point operations it does, so that
// benchmarks report the work of a step (2 m n k per product) beside its time.
type flopCounter struct {
	gemm.Impl
	flops atomic.Int64
}

// Sgemm implements gemm.Impl.
func (c *flopCounter) Sgemm(ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	c.Impl.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
	c.flops.Add(2 * int64(m) * int64(n) * int64(k))
}

// Serial implements gemm.Impl.
func (c *flopCounter) Serial() gemm.Impl { return c }

// countingDevice returns a 2-thread CPU device whose GEMM counts its work.
func countingDevice() (*tensor.Device, *flopCounter) {
	c := &flopCounter{Impl: gemm.New(1)}
	return tensor.NewCPU(c, 2), c
}

// cpuTime returns the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCPU runs f b.N times and reports, beside the wall-clock ns/op, the CPU
// milliseconds per call (the machine may be shared: CPU time is what the run used)
// and the GFLOP of matrix products per call.
func benchCPU(b *testing.B, fc *flopCounter, f func()) {
	f() // warm the buffer pools
	c0 := cpuTime()
	fc.flops.Store(0)
	b.ResetTimer()
	for b.Loop() {
		f()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-c0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(fc.flops.Load())/1e9/float64(b.N), "GFLOP/op")
}

// BenchmarkPriorEGGStep times one EGG step of candidate default priors at batch 8:
// the UNet forward at t = 500, the DDPM step, a linear energy of x0_hat and its
// gradient w.r.t. x_t through the UNet (guidance.GuidedStep), as
// guidance.BenchmarkEGGStep does for a colour model.
func BenchmarkPriorEGGStep(b *testing.B) {
	for _, c := range candidates {
		b.Run(fmt.Sprintf("S%d/C%d/B8", c.size, c.ch), func(b *testing.B) {
			dev, fc := countingDevice()
			unet, err := adm.New(dev, priorConfig(c.size, c.ch), rand.New(rand.NewPCG(3, 3)))
			if err != nil {
				b.Fatal(err)
			}
			s, err := diffusion.New(diffusion.Config{RescaleTimesteps: true})
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(4, 4))
			w := tensor.Randn(dev, rng, c.size, c.size)
			energy := guidance.EnergyFunc(func(x0 *tensor.Tensor) *tensor.Tensor {
				m := tensor.Mean(x0, false, 1)
				return tensor.Neg(tensor.Sum(tensor.Mul(m, w), false, 1, 2))
			})
			x := tensor.Randn(dev, rng, 8, 1, c.size, c.size)
			noise := tensor.Randn(dev, rng, 8, 1, c.size, c.size)
			benchCPU(b, fc, func() { guidance.GuidedStep(unet, s, x, 500, noise, energy, guidance.Options{Scale: 1}) })
		})
	}
}

// BenchmarkPriorTrainStep times one training step of candidate default priors at
// batch 16: batch assembly, the UNet forward, the hybrid loss, the backward pass to
// every weight, AdamW and the EMA update.
func BenchmarkPriorTrainStep(b *testing.B) {
	for _, c := range candidates {
		b.Run(fmt.Sprintf("S%d/C%d/B16", c.size, c.ch), func(b *testing.B) {
			dev, fc := countingDevice()
			pool := &Pool{Path: "synthetic", N: 64, C: 1, Size: c.size, Images: synthImages(64, c.size, 1)}
			o := Defaults()
			o.Steps = 1 << 30
			tr, err := newTrainer(dev, priorConfig(c.size, c.ch), Diffusion{NoiseSchedule: "linear", Steps: 1000, LearnSigma: true, RescaleTimesteps: true}, pool, o)
			if err != nil {
				b.Fatal(err)
			}
			var w window
			setGrad(tr, true)
			benchCPU(b, fc, func() {
				if _, err := tr.trainStep(&w); err != nil {
					b.Fatal(err)
				}
			})
			n := 0
			for _, p := range tr.params {
				n += p.Len()
			}
			b.ReportMetric(float64(n)/1e6, "Mparams")
		})
	}
}

func setGrad(t *trainer, on bool) {
	for _, p := range t.params {
		p.SetRequiresGrad(on)
	}
}
