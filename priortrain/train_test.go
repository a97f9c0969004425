package priortrain

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"egg/adm"
	"egg/checkpoint"
	"egg/nn"
	"egg/npy"
	"egg/tensor"
)

// tinyConfig is a 16x16 grayscale UNet with learned sigma: 32 model channels,
// multipliers (1,2), one residual block per level, attention at 8x8.
func tinyConfig() adm.Config {
	return adm.Config{ImageSize: 16, InChannels: 1, OutChannels: 2, ModelChannels: 32, ChannelMult: []int{1, 2},
		NumResBlocks: 1, AttentionResolutions: []int{2}, NumHeads: 1, NumHeadChannels: 32, NumHeadsUpsample: -1,
		UseScaleShiftNorm: true, ResblockUpdown: true}
}

var tinyDiffusion = Diffusion{NoiseSchedule: "linear", Steps: 1000, LearnSigma: true, RescaleTimesteps: true}

func tinyOptions(steps int) Options {
	o := Defaults()
	o.Steps, o.BatchSize, o.LR, o.EMA, o.CheckpointEvery, o.Validation = steps, 4, 1e-3, 0.9, 2, 8
	return o
}

func TestLoadPool(t *testing.T) {
	dir := t.TempDir()
	p, err := LoadPool(writePool(t, dir, 10, 3, 8))
	if err != nil {
		t.Fatal(err)
	}
	if p.N != 10 || p.C != 1 || p.Size != 8 || len(p.Images) != 640 || len(p.SHA256) != 64 {
		t.Fatalf("pool N %d C %d size %d, %d pixels, sha %q", p.N, p.C, p.Size, len(p.Images), p.SHA256)
	}
	if got := p.Indices(Validation); len(got) != 3 || got[0] != 7 {
		t.Errorf("validation indices %v, want [7 8 9]", got)
	}
	if want := synthImages(10, 8, 1); string(p.Images) != string(want) {
		t.Error("pixels differ from those written")
	}

	write := func(name string, arrays map[string]*npy.Array) string {
		b, err := npy.EncodeNPZ(arrays)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	u8 := func(shape ...int) *npy.Array {
		n := 1
		for _, s := range shape {
			n *= s
		}
		return &npy.Array{DType: "|u1", Shape: shape, I64: make([]int64, n)}
	}
	flat := write("flat.npz", map[string]*npy.Array{"images": u8(5, 4, 4)})
	if p, err := LoadPool(flat); err != nil || p.N != 5 || p.C != 1 || p.Size != 4 || len(p.Indices(Train)) != 5 {
		t.Errorf("[N, S, S] pool without tiers: %+v, %v", p, err)
	}
	notNPZ := filepath.Join(dir, "text.npz")
	if err := os.WriteFile(notNPZ, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "none.npz"), "no such file"},
		{"not npz", notNPZ, "not a readable .npz"},
		{"no images", write("noimg.npz", map[string]*npy.Array{"x": u8(2)}), "no images array"},
		{"float images", write("float.npz", map[string]*npy.Array{"images": npy.Float32s(make([]float32, 32), 2, 1, 4, 4)}), "want uint8"},
		{"not square", write("rect.npz", map[string]*npy.Array{"images": u8(2, 1, 4, 5)}), "square"},
		{"tiers count", write("tiers.npz", map[string]*npy.Array{"images": u8(2, 1, 4, 4), "tiers": {Shape: []int{3}, Str: []string{"train", "train", "train"}}}), "3 tiers for 2 images"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadPool(c.path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
		})
	}
}

// TestZeroInit: a fresh UNet predicts zero (eps 0 and variance value 0).
func TestZeroInit(t *testing.T) {
	u, err := NewUNet(testDev, tinyConfig(), 1)
	if err != nil {
		t.Fatal(err)
	}
	in := tensor.Full(testDev, 0.3, 2, 1, 16, 16)
	out := u.Forward(in, []float32{10, 900}, nil)
	for _, v := range out.Data() {
		if v != 0 {
			t.Fatalf("output %v of a fresh UNet, want 0", v)
		}
	}
}

// TestTrainingLowersLoss: a tiny UNet trained for 12 steps scores a lower loss on
// fixed images, timesteps and noise than its initial weights.
func TestTrainingLowersLoss(t *testing.T) {
	pool, err := LoadPool(writePool(t, t.TempDir(), 40, 8, 16))
	if err != nil {
		t.Fatal(err)
	}
	o := tinyOptions(12)
	o.CheckpointEvery, o.BatchSize, o.LR = 0, 8, 2e-3
	tr, err := newTrainer(testDev, tinyConfig(), tinyDiffusion, pool, o)
	if err != nil {
		t.Fatal(err)
	}
	fixed := pool.Indices(Train)[:16]
	before := tr.scoreLoss(tr.model, fixed)
	var first, last Window
	o.Progress = func(p Progress) {
		if p.Step == 1 {
			first = p.Last
		}
		last = p.Recent
	}
	res, err := Run(context.Background(), testDev, tinyConfig(), tinyDiffusion, pool, o)
	if err != nil {
		t.Fatal(err)
	}
	tr.model = res.Raw
	after := tr.scoreLoss(res.Raw, fixed)
	t.Logf("loss on fixed images %.4f -> %.4f; training loss of step 1 %.4f (mse %.4f, vb %.4f), mean of all %d steps %.4f (mse %.4f, vb %.4f)",
		before, after, first.Loss, first.MSE, first.VB, last.Steps, last.Loss, last.MSE, last.VB)
	if !(after < 0.8*before) {
		t.Errorf("loss on fixed images %.4f -> %.4f after 12 steps, want a clear decrease", before, after)
	}
	if math.Abs(first.Loss-(first.MSE+first.VB)) > 1e-5 {
		t.Errorf("loss %v is not mse %v + vb %v", first.Loss, first.MSE, first.VB)
	}
	if !res.Finished || res.Step != 12 || res.Validation == nil {
		t.Errorf("result: finished %v at step %d, validation %v", res.Finished, res.Step, res.Validation)
	}
}

// weights returns every tensor of a checkpoint, by name.
func weights(t *testing.T, path string) map[string][]float32 {
	r, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string][]float32{}
	for _, n := range r.Names() {
		v, err := r.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

func sameWeights(t *testing.T, what string, a, b map[string][]float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d tensors vs %d", what, len(a), len(b))
	}
	for n, v := range a {
		w, ok := b[n]
		if !ok || len(w) != len(v) {
			t.Fatalf("%s: tensor %s missing or resized", what, n)
		}
		for i := range v {
			if math.Float32bits(v[i]) != math.Float32bits(w[i]) {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, n, i, v[i], w[i])
			}
		}
	}
}

// TestResumeIsExact: training 7 steps in one go, in pieces (4 steps, then resumed to
// 7) and with an interruption after step 3 (then resumed) give the same raw and EMA
// weights and optimiser state, bit for bit. The pool's 18 train images make batches
// of 4 wrap to a new epoch after step 4.
func TestResumeIsExact(t *testing.T) {
	dir := t.TempDir()
	pool, err := LoadPool(writePool(t, dir, 20, 2, 16))
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, steps int, resume bool, ctx context.Context, progress func(Progress)) (*Result, error) {
		o := tinyOptions(steps)
		o.Checkpoint, o.Resume, o.Progress = filepath.Join(dir, name+".ckpt.safetensors"), resume, progress
		return Run(ctx, testDev, tinyConfig(), tinyDiffusion, pool, o)
	}
	bg := context.Background()
	if _, err := run("whole", 7, false, bg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := run("pieces", 4, false, bg, nil); err != nil {
		t.Fatal(err)
	}
	res, err := run("pieces", 7, true, bg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom != 4 || res.Step != 7 {
		t.Errorf("resumed from %d to %d, want 4 to 7", res.ResumedFrom, res.Step)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	_, err = run("interrupted", 7, false, ctx, func(p Progress) {
		if p.Step == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := run("interrupted", 7, true, bg, nil); err != nil {
		t.Fatal(err)
	}
	whole := weights(t, filepath.Join(dir, "whole.ckpt.safetensors"))
	sameWeights(t, "in pieces", whole, weights(t, filepath.Join(dir, "pieces.ckpt.safetensors")))
	sameWeights(t, "interrupted", whole, weights(t, filepath.Join(dir, "interrupted.ckpt.safetensors")))

	// A resume with other settings is refused and says which.
	o := tinyOptions(8)
	o.Checkpoint, o.Resume, o.LR = filepath.Join(dir, "whole.ckpt.safetensors"), true, 5e-4
	if _, err := Run(bg, testDev, tinyConfig(), tinyDiffusion, pool, o); err == nil || !strings.Contains(err.Error(), "--lr 0.001 (now 0.0005)") {
		t.Errorf("resume with another --lr: %v", err)
	}
}

// TestTimeLimit: a run with a tiny time limit stops after one step, unfinished, with
// a checkpoint to continue from.
func TestTimeLimit(t *testing.T) {
	dir := t.TempDir()
	pool, err := LoadPool(writePool(t, dir, 12, 0, 16))
	if err != nil {
		t.Fatal(err)
	}
	o := tinyOptions(3)
	o.Checkpoint, o.TimeLimit = filepath.Join(dir, "ckpt.safetensors"), time.Nanosecond
	res, err := Run(context.Background(), testDev, tinyConfig(), tinyDiffusion, pool, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Finished || res.Step != 1 || !strings.Contains(res.Stopped, "time limit") || res.Validation != nil {
		t.Fatalf("finished %v at step %d (%s), validation %v", res.Finished, res.Step, res.Stopped, res.Validation)
	}
	o.TimeLimit, o.Resume = 0, true
	if res, err = Run(context.Background(), testDev, tinyConfig(), tinyDiffusion, pool, o); err != nil || !res.Finished || res.Step != 3 {
		t.Fatalf("resumed: %+v, %v", res, err)
	}
}

func TestRunErrors(t *testing.T) {
	pool, err := LoadPool(writePool(t, t.TempDir(), 6, 0, 16))
	if err != nil {
		t.Fatal(err)
	}
	rgb := tinyConfig()
	rgb.InChannels, rgb.OutChannels = 3, 6
	big := tinyConfig()
	big.ImageSize = 32
	fixed := tinyConfig()
	fixed.OutChannels = 1
	cases := []struct {
		name string
		cfg  adm.Config
		d    Diffusion
		o    func(*Options)
		want string
	}{
		{"channels", rgb, tinyDiffusion, nil, "in_channels 1"},
		{"size", big, tinyDiffusion, nil, "32x32"},
		{"sigma", fixed, tinyDiffusion, nil, "learn_sigma needs out_channels 2"},
		{"batch", tinyConfig(), tinyDiffusion, func(o *Options) { o.BatchSize = 7 }, "smaller --batch-size"},
		{"ema", tinyConfig(), tinyDiffusion, func(o *Options) { o.EMA = 1 }, "EMA rate"},
		{"schedule", tinyConfig(), Diffusion{NoiseSchedule: "quadratic", Steps: 1000, LearnSigma: true}, nil, "quadratic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := tinyOptions(1)
			if c.o != nil {
				c.o(&o)
			}
			_, err := Run(context.Background(), testDev, c.cfg, c.d, pool, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
		})
	}
}

func TestModelMetadata(t *testing.T) {
	u, err := NewUNet(testDev, tinyConfig(), 2)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "prior.safetensors")
	v := 0.25
	if err := WriteModel(path, u, tinyDiffusion, &Provenance{Steps: 3, PoolSHA256: "abc", ValidationLoss: &v}); err != nil {
		t.Fatal(err)
	}
	r, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg, d, err := ReadMetadata(r.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	want := tinyConfig()
	want.Validate()
	if cfg == nil || d == nil || cfg.ModelChannels != want.ModelChannels || !cfg.LearnSigma() || *d != tinyDiffusion {
		t.Fatalf("metadata: %+v, %+v", cfg, d)
	}
	if !strings.Contains(r.Metadata()[TrainingKey], `"pool_sha256":"abc"`) {
		t.Errorf("provenance %s", r.Metadata()[TrainingKey])
	}
	if _, _, err := ReadMetadata(map[string]string{ConfigKey: "{"}); err == nil {
		t.Error("a broken egg.adm entry was accepted")
	}
	if c, d, err := ReadMetadata(nil); c != nil || d != nil || err != nil {
		t.Errorf("no metadata: %v %v %v", c, d, err)
	}
}

// TestEMAWarmup checks the EMA rule: without warm-up the first step keeps rate x the
// initial weights; with it, the first step's rate is capped at 1/10.
func TestEMAWarmup(t *testing.T) {
	pool, err := LoadPool(writePool(t, t.TempDir(), 16, 4, 16))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		warmup bool
		rate   float32 // the rate of step 0
	}{{false, 0.9}, {true, 0.1}} {
		o := tinyOptions(1)
		o.CheckpointEvery, o.Validation, o.EMAWarmup = 0, 0, c.warmup
		init, err := NewUNet(testDev, tinyConfig(), o.Seed)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), testDev, tinyConfig(), tinyDiffusion, pool, o)
		if err != nil {
			t.Fatal(err)
		}
		in, raw, ema := nn.StateDict(init), nn.StateDict(res.Raw), nn.StateDict(res.Model)
		var worst float64
		moved := false
		for i := range in {
			a, w, e := in[i].T.Data(), raw[i].T.Data(), ema[i].T.Data()
			for j := range a {
				want := a[j]*c.rate + w[j]*(1-c.rate)
				worst = math.Max(worst, math.Abs(float64(e[j]-want)))
				moved = moved || a[j] != w[j]
			}
		}
		if !moved || worst > 1e-6 {
			t.Errorf("warmup %v: EMA after one step differs from %g init + %g raw by %g (weights moved: %v)", c.warmup, c.rate, 1-c.rate, worst, moved)
		}
	}
}
