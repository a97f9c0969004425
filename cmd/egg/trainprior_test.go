package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/npy"
	"egg/priortrain"
	"egg/tensor"
)

// writeTinyPool writes an .npz pool of n 16x16 grayscale images (smooth gradients
// with a bump), the last nVal in the validation tier.
func writeTinyPool(t *testing.T, n, nVal int) string {
	t.Helper()
	const size = 16
	px := make([]int64, 0, n*size*size)
	tiers := make([]string, n)
	for i := 0; i < n; i++ {
		a, b := math.Cos(float64(i)), math.Sin(float64(3*i))
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				dx, dy := float64(x-8), float64(y-8)
				v := 128 + 50*a*float64(x-8)/8 + 50*b*float64(y-8)/8 + 60*math.Exp(-(dx*dx+dy*dy)/20)
				px = append(px, int64(max(0, min(255, math.Round(v)))))
			}
		}
		tiers[i] = "train"
		if i >= n-nVal {
			tiers[i] = "validation"
		}
	}
	b, err := npy.EncodeNPZ(map[string]*npy.Array{
		"images": {DType: "|u1", Shape: []int{n, 1, size, size}, I64: px},
		"tiers":  {Shape: []int{n}, Str: tiers},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pool.npz")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyTrainPrior returns the options of a 3-step run of a tiny UNet (32 channels,
// multipliers 1,2, one residual block, attention at 8x8) with a cosine process of
// 500 steps.
func tinyTrainPrior(pool, out string) *trainPriorOptions {
	o := &trainPriorOptions{pool: pool, out: out, noiseSchedule: "cosine", diffSteps: 500, quiet: true, stderr: &bytes.Buffer{}}
	o.unet = unetFlags{channels: 32, channelMult: "1,2", resBlocks: 1, attention: "8", headChannels: 32, heads: 4,
		scaleShiftNorm: true, resblockUpdown: true, learnSigma: true}
	o.train = priortrain.Defaults()
	o.train.Steps, o.train.BatchSize, o.train.CheckpointEvery, o.train.Validation = 3, 4, 2, 4
	return o
}

// TestTrainPriorThenSample trains a tiny prior in two pieces (a time limit stops the
// first after one step, --resume finishes it) and samples from the file without
// --preset or --config: the UNet and the process come from its metadata.
func TestTrainPriorThenSample(t *testing.T) {
	dir := t.TempDir()
	pool := writeTinyPool(t, 14, 2)
	out := filepath.Join(dir, "prior.safetensors")
	g := &globalOptions{threads: 2}
	o := tinyTrainPrior(pool, out)
	o.train.TimeLimit = 1 // nanosecond: stop after the first step
	if err := runTrainPrior(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	if log := o.stderr.(*bytes.Buffer).String(); !strings.Contains(log, "--resume to continue") {
		t.Errorf("time-limited run says:\n%s", log)
	}
	o = tinyTrainPrior(pool, out)
	o.train.Resume = true
	if err := runTrainPrior(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	if log := o.stderr.(*bytes.Buffer).String(); !strings.Contains(log, "resuming from") || !strings.Contains(log, "trained 3 steps") {
		t.Errorf("resumed run says:\n%s", log)
	}

	r, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	meta := r.Metadata()
	r.Close()
	var prov priortrain.Provenance
	if err := json.Unmarshal([]byte(meta[priortrain.TrainingKey]), &prov); err != nil {
		t.Fatal(err)
	}
	if prov.Steps != 3 || len(prov.PoolSHA256) != 64 || prov.TrainImages != 12 || prov.ValidationLoss == nil {
		t.Errorf("provenance %+v", prov)
	}

	po := priorOptions{weights: out, steps: "4", noiseSchedule: "linear", diffSteps: 1000}
	unet, s, err := po.load(tensor.CPU(1), false)
	if err != nil {
		t.Fatal(err)
	}
	if unet.Config.ImageSize != 16 || unet.Config.OutChannels != 2 || s.OriginalNumSteps != 500 || s.NumTimesteps != 4 {
		t.Errorf("loaded a %d-pixel UNet with %d outputs and a process of %d steps respaced to %d; want 16, 2, 500, 4",
			unet.Config.ImageSize, unet.Config.OutChannels, s.OriginalNumSteps, s.NumTimesteps)
	}
	so := &sampleOptions{prior: po, n: 2, batchSize: 2, sampler: "ddpm", out: filepath.Join(dir, "samples"), quiet: true}
	if err := runSample(context.Background(), g, so); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(so.out, "sample_00001.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 16 || b.Dy() != 16 {
		t.Errorf("sample of size %v, want 16x16", b)
	}
}

func TestTrainPriorErrors(t *testing.T) {
	pool := writeTinyPool(t, 6, 0)
	out := filepath.Join(t.TempDir(), "prior.safetensors")
	cases := []struct {
		name  string
		edit  func(o *trainPriorOptions)
		usage bool
		want  string
	}{
		{"no pool", func(o *trainPriorOptions) { o.pool = "" }, true, "--pool is required"},
		{"no out", func(o *trainPriorOptions) { o.out = "" }, true, "--out is required"},
		{"no steps", func(o *trainPriorOptions) { o.train.Steps = 0 }, true, "--steps is required"},
		{"preset and config", func(o *trainPriorOptions) { o.preset, o.configFile = "64x64_diffusion", "x.json" }, true, "not both"},
		{"preset and flags", func(o *trainPriorOptions) { o.preset, o.unetFlagsSet = "64x64_diffusion", []string{"--channels"} }, true, "--channels describe the UNet"},
		{"preset of another size", func(o *trainPriorOptions) { o.preset = "64x64_diffusion" }, true, "class-conditional"},
		{"channel mult", func(o *trainPriorOptions) { o.unet.channelMult = "1,x" }, true, "--channel-mult"},
		{"attention", func(o *trainPriorOptions) { o.unet.attention = "4" }, true, "--attention 4 is not a resolution of the UNet (16, 8)"},
		{"channels", func(o *trainPriorOptions) { o.unet.channels = 48 }, true, "multiple of 32"},
		{"schedule", func(o *trainPriorOptions) { o.noiseSchedule = "sqrt" }, true, "--noise-schedule"},
		{"missing pool", func(o *trainPriorOptions) { o.pool = filepath.Join(t.TempDir(), "none.npz") }, false, "no such file"},
		{"batch", func(o *trainPriorOptions) { o.train.BatchSize = 8 }, false, "smaller --batch-size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := tinyTrainPrior(pool, out)
			c.edit(o)
			err := runTrainPrior(context.Background(), &globalOptions{threads: 1}, o)
			if err == nil {
				t.Fatal("no error")
			}
			var ue usageError
			if errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v (usage %v); want usage %v and %q", err, errors.As(err, &ue), c.usage, c.want)
			}
		})
	}
}

func TestUNetFlagsDefaultAttention(t *testing.T) {
	for _, c := range []struct {
		size int
		mult string
		ds   []int
	}{{64, "1,2,2,2", []int{4, 8}}, {32, "1,2,2,2", []int{4, 8}}, {32, "1,2,2", []int{4}}, {16, "1,2", nil}} {
		u := unetFlags{channels: 64, channelMult: c.mult, resBlocks: 2, headChannels: 32, heads: 4, learnSigma: true}
		cfg, err := u.config(1, c.size)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.AttentionResolutions, c.ds) || cfg.ImageSize != c.size || cfg.OutChannels != 2 {
			t.Errorf("size %d: attention at downsampling %v, out %d; want %v, 2", c.size, cfg.AttentionResolutions, cfg.OutChannels, c.ds)
		}
	}
}
