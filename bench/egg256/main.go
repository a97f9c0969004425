// Command egg256 times one guided EGG step of the published 256x256 configuration
// (the 256x256_diffusion_uncond UNet, 553 M parameters, random weights) at batch 1
// and reports its wall time and the process's peak resident memory:
//
//	go run ./bench/egg256
//
// bench/torch_bench.py --big measures the same step in PyTorch.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"egg/adm"
	"egg/backend"
	"egg/diffusion"
	"egg/guidance"
	"egg/nn"
	"egg/tensor"
)

func main() {
	// Tensors hold no pointers, so collecting often is cheap, and it keeps the peak
	// memory of a diffusion step close to what is live (GOGC in the environment wins).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(20)
	}
	steps := flag.Int("steps", 1, "guided steps to time")
	threads := flag.Int("threads", 0, "CPU threads (0: all)")
	preset := flag.String("preset", "256x256_diffusion_uncond", "UNet preset")
	device := flag.String("device", "cpu", "device: cpu, cuda, cuda:N or auto")
	precision := flag.String("precision", "fp32", "GPU matrix precision: fp32, tf32, fp16 or bf16")
	batch := flag.Int("batch", 1, "images per step")
	imageSize := flag.Int("image-size", 0, "image size instead of the preset's (the same network on smaller images, for rehearsals)")
	flag.Parse()
	spec, err := backend.Parse(*device)
	if err != nil {
		log.Fatal(err)
	}
	dev, line, err := backend.Open(spec, backend.Options{Threads: *threads, Precision: *precision})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(line)
	cfg, err := adm.Preset(*preset)
	if err != nil {
		log.Fatal(err)
	}
	if *imageSize > 0 {
		cfg.ImageSize = *imageSize
	}
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Now()
	unet, err := adm.New(dev, cfg, rng)
	if err != nil {
		log.Fatal(err)
	}
	params := 0
	for _, e := range nn.StateDict(unet) {
		params += e.T.Len()
	}
	fmt.Printf("built %s: %.1f M parameters in %.1fs\n", *preset, float64(params)/1e6, time.Since(t0).Seconds())
	s, err := diffusion.New(diffusion.Config{RescaleTimesteps: true})
	if err != nil {
		log.Fatal(err)
	}
	size := cfg.ImageSize
	w := tensor.Randn(dev, rng, size, size)
	energy := guidance.EnergyFunc(func(x0 *tensor.Tensor) *tensor.Tensor {
		return tensor.Neg(tensor.Sum(tensor.Mul(tensor.Mean(x0, false, 1), w), false, 1, 2))
	})
	x := tensor.Randn(dev, rng, *batch, cfg.InChannels, size, size)
	noise := tensor.Randn(dev, rng, *batch, cfg.InChannels, size, size)
	runtime.GC()
	debug.FreeOSMemory()
	for i := 0; i < *steps; i++ {
		t1 := time.Now()
		guidance.GuidedStep(unet, s, x, 500, noise, energy, guidance.Options{Scale: 1})
		dev.Sync()
		fmt.Printf("guided step %d (batch %d): %.3fs\n", i, *batch, time.Since(t1).Seconds())
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		fmt.Printf("peak RSS: %.2f GiB\n", float64(ru.Maxrss)/(1<<20))
	}
	os.Exit(0)
}
