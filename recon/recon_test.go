package recon

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"egg/adm"
	"egg/diffusion"
	"egg/encoder"
	"egg/guidance"
	"egg/npy"
	"egg/tensor"
)

var dev = tensor.CPU(2)

// tinyModel is a small random data-driven encoding model on 1x20x20 inputs.
func tinyModel(t *testing.T, seed uint64) encoder.Model {
	cfg, err := encoder.Preset("v4_data_driven")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Core.SE2d.HiddenChannels, cfg.Core.SE2d.Layers, cfg.Core.SE2d.InputKern = 8, 2, 5
	cfg.Readout.Neurons, cfg.Readout.Attention.EmbedOutDim = 4, 8
	cfg.InputShape = []int{1, 20, 20}
	m, err := encoder.New(dev, cfg, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tinyPrior(t *testing.T) *Prior {
	cfg := adm.Config{ImageSize: 16, InChannels: 1, OutChannels: 2, ModelChannels: 32, ChannelMult: []int{1, 1},
		NumResBlocks: 1, AttentionResolutions: []int{2}, NumHeads: 1, NumHeadChannels: -1, NumHeadsUpsample: -1}
	u, err := adm.New(dev, cfg, rand.New(rand.NewPCG(9, 9)))
	if err != nil {
		t.Fatal(err)
	}
	c := diffusion.EGGLogVarianceClamp
	s, err := diffusion.New(diffusion.Config{TimestepRespacing: "4", RescaleTimesteps: true, LogVarianceClamp: &c})
	if err != nil {
		t.Fatal(err)
	}
	return &Prior{Denoiser: u, Schedule: s, Channels: 1, Size: 16, Name: "tiny"}
}

func randImages(seed uint64, n int) *tensor.Tensor {
	rngs := make([]*rand.Rand, n)
	for k := range rngs {
		rngs[k] = rand.New(rand.NewPCG(seed, uint64(k)))
	}
	return guidance.Noise(dev, rngs, n, 1, 20, 20)
}

func TestDistance(t *testing.T) {
	m := tinyModel(t, 1)
	x := randImages(1, 3)
	target := m.Forward(randImages(2, 3)).Detach()
	r := m.Forward(x).Data()
	nn := target.Dim(1)
	got := Distance(m, x, target, nil)
	sub := Distance(m, x, target, []int{1, 3})
	for k := 0; k < 3; k++ {
		var s, ss float64
		for j := 0; j < nn; j++ {
			d := float64(r[k*nn+j] - target.Data()[k*nn+j])
			s += d * d
			if j == 1 || j == 3 {
				ss += d * d
			}
		}
		if math.Abs(float64(got[k])-s/float64(nn)) > 1e-5*(1+s) {
			t.Errorf("sample %d: distance %v, want %v", k, got[k], s/float64(nn))
		}
		if math.Abs(float64(sub[k])-ss/2) > 1e-5*(1+ss) {
			t.Errorf("sample %d: distance over neurons 1, 3 %v, want %v", k, sub[k], ss/2)
		}
	}
	if d := Distance(m, x, m.Forward(x).Detach(), nil); d[0] != 0 || d[2] != 0 {
		t.Errorf("distance to its own responses %v", d)
	}
}

func TestGDStopsEarly(t *testing.T) {
	m := tinyModel(t, 1)
	target := m.Forward(randImages(2, 2)).Detach()
	x0 := randImages(3, 2)
	cfg := DefaultGD()
	cfg.MaxSteps, cfg.Norm, cfg.LR = 20, 10, 0.1
	free, err := GD(context.Background(), m, x0, target, nil, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for k := range 2 {
		if free.Steps[k] != 20 || free.Stopped[k] {
			t.Fatalf("sample %d: %d steps, stopped %v without a threshold", k, free.Steps[k], free.Stopped[k])
		}
	}
	// The first loss is the loss of x0; a threshold above it stops at once, one
	// just above the 20-step loss stops before or at step 20.
	init := Distance(m, x0, target, nil)
	stop := []float32{init[0] + 1, free.Loss[1] * 1.0001}
	res, err := GD(context.Background(), m, x0, target, nil, stop, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped[0] || res.Steps[0] != 0 || !reflect.DeepEqual(res.Image.Data()[:400], x0.Data()[:400]) {
		t.Fatalf("sample 0: stopped %v after %d steps", res.Stopped[0], res.Steps[0])
	}
	if !res.Stopped[1] || res.Steps[1] > 20 || res.Loss[1] >= stop[1] {
		t.Fatalf("sample 1: stopped %v after %d steps at loss %v (threshold %v)", res.Stopped[1], res.Steps[1], res.Loss[1], stop[1])
	}
	// The kept loss is the loss of the kept image.
	if d := Distance(m, res.Image, target, nil); math.Abs(float64(d[1]-res.Loss[1])) > 1e-5 {
		t.Fatalf("kept loss %v, image loss %v", res.Loss[1], d[1])
	}
	// Sample 1 alone follows the same path as in the batch.
	alone, err := GD(context.Background(), m, tensor.Select(x0, 0, []int{1}), tensor.Select(target, 0, []int{1}), nil, stop[1:], cfg)
	if err != nil {
		t.Fatal(err)
	}
	if alone.Steps[0] != res.Steps[1] || math.Abs(float64(alone.Loss[0]-res.Loss[1])) > 1e-5 {
		t.Fatalf("alone: %d steps loss %v; batch: %d steps loss %v", alone.Steps[0], alone.Loss[0], res.Steps[1], res.Loss[1])
	}
	// Descent: the loss goes down.
	if free.Loss[0] >= init[0] || free.Loss[1] >= init[1] {
		t.Fatalf("loss %v after 20 steps from %v", free.Loss, init)
	}
}

func TestRunFilesAndResume(t *testing.T) {
	models := Models{Train: tinyModel(t, 1), Within: tinyModel(t, 2), Cross: tinyModel(t, 3)}
	imgs := randImages(5, 2)
	targets := Targets{IDs: []int{3, 7}, Images: imgs, Responses: models.Train.Forward(imgs).Detach()}
	gd := DefaultGD()
	gd.MaxSteps, gd.Norm = 5, 10
	s := Settings{Scale: 2, Steps: 4, Norm: 10, ClipLo: -1.7, ClipHi: 1.9, BatchSize: 2, InputH: 20, InputW: 20, GD: gd}
	out := t.TempDir()
	prior := tinyPrior(t)
	sum, err := Run(context.Background(), s, targets, models, prior, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Targets != 2 {
		t.Fatalf("%d targets", sum.Targets)
	}
	for _, f := range []string{"target_00003.png", "target_00003.json", "target_00003_egg.npy", "target_00007_gd.npy", "target_00007_target.npy", "summary.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	for _, meth := range []string{"egg", "gd"} {
		for _, role := range Roles {
			if _, ok := sum.Median[meth][role]; !ok {
				t.Errorf("no median for %s %s", meth, role)
			}
		}
	}
	if sum.Median["target"]["train"] != 0 {
		t.Errorf("the target's own train distance %v", sum.Median["target"]["train"])
	}
	// Distances in the records match a direct computation from the written inputs.
	for _, r := range sum.Records {
		egg := readInput(t, filepath.Join(out, r.Inputs["egg"]))
		k := 0
		if r.Target == 7 {
			k = 1
		}
		tg := tensor.Select(targets.Responses, 0, []int{k})
		for _, role := range Roles {
			want := Distance(models.byRole(role), egg, tg, nil)[0]
			if got := r.Distance["egg"][role]; math.Abs(float64(got-want)) > 1e-5*(1+float64(want)) {
				t.Errorf("target %d %s: distance %v, want %v", r.Target, role, got, want)
			}
		}
		v := egg.Data()
		for _, x := range v {
			if x < -1.7-1e-6 || x > 1.9+1e-6 {
				t.Fatalf("EGG input %v outside the clip", x)
			}
		}
		// GD stops once it beats EGG on the train model, or runs all its steps.
		if r.GDStopped && r.Distance["gd"]["train"] >= r.Distance["egg"]["train"] {
			t.Errorf("target %d: GD stopped at %v, EGG %v", r.Target, r.Distance["gd"]["train"], r.Distance["egg"]["train"])
		}
		if !r.GDStopped && r.GDSteps != gd.MaxSteps {
			t.Errorf("target %d: GD ran %d steps without stopping", r.Target, r.GDSteps)
		}
	}
	// Resume: finished targets are not recomputed; a new target is.
	before, _ := os.ReadFile(filepath.Join(out, "target_00003.json"))
	imgs3 := randImages(6, 3)
	targets3 := Targets{IDs: []int{3, 7, 9}, Images: imgs3, Responses: models.Train.Forward(imgs3).Detach()}
	sum2, err := Run(context.Background(), s, targets3, models, prior, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(out, "target_00003.json"))
	if string(before) != string(after) || sum2.Targets != 3 {
		t.Fatalf("resume rewrote a finished record or lost one (%d targets)", sum2.Targets)
	}
	if _, err := os.Stat(filepath.Join(out, "target_00009.json")); err != nil {
		t.Fatal(err)
	}
}

func readInput(t *testing.T, path string) *tensor.Tensor {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return tensor.FromSlice(dev, v, a.Shape...)
}
