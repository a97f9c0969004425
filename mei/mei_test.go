package mei

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"egg/adm"
	"egg/ascent"
	"egg/diffusion"
	"egg/encoder"
	"egg/energy"
	"egg/npy"
	"egg/tensor"
)

var dev = tensor.CPU(2)

// tinyModel is a small random data-driven encoding model on 1x20x20 inputs.
func tinyModel(t *testing.T, seed uint64) encoder.Model { return tinyModelOn(t, dev, seed) }

func tinyModelOn(t *testing.T, dev *tensor.Device, seed uint64) encoder.Model {
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

func tinyPrior(t *testing.T) *Prior { return tinyPriorOn(t, dev) }

func tinyPriorOn(t *testing.T, dev *tensor.Device) *Prior {
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

type counter struct{ n int }

// cancelAfter cancels a run once n units of work are done.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Add(n int) error {
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return nil
}

func (c *counter) Add(n int) error { c.n += n; return nil }

func TestRunRecordsAndResume(t *testing.T) {
	models := ModelSet{Train: tinyModel(t, 1), Within: tinyModel(t, 2), Cross: tinyModel(t, 3)}
	ga := ascent.Default()
	ga.Iterations = 5
	for _, method := range []string{"ga", "egg"} {
		t.Run(method, func(t *testing.T) {
			s := Settings{Method: method, Seeds: []uint64{0, 1}, BatchSize: 3, InputH: 20, InputW: 20, Norm: 5, Scale: 2, GA: &ga}
			neurons := []int{0, 2, 3}
			out := t.TempDir()
			var prior *Prior
			if method == "egg" {
				prior = tinyPrior(t)
			}
			c := &counter{}
			sum, err := Run(context.Background(), dev, s, neurons, models, prior, out, c)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Neurons != 3 || c.n != 6 {
				t.Fatalf("summary of %d neurons, progress %d", sum.Neurons, c.n)
			}
			for _, role := range []string{"train", "within", "cross"} {
				if _, ok := sum.Median[role]; !ok {
					t.Fatalf("no median for %s", role)
				}
			}
			for _, r := range sum.Records {
				if r.Activations["train"] != r.SeedTrain[itoa(r.Seed)] {
					t.Fatalf("neuron %d: kept seed %d's train activation %v differs from the record %v", r.Neuron, r.Seed, r.SeedTrain, r.Activations)
				}
				for _, v := range r.SeedTrain {
					if v > r.Activations["train"] {
						t.Fatalf("neuron %d: a better seed was not kept", r.Neuron)
					}
				}
				for _, f := range []string{r.Image, r.Input} {
					if _, err := os.Stat(filepath.Join(out, method, f)); err != nil {
						t.Fatal(err)
					}
				}
				if method == "egg" && len(r.Energy) != 4 {
					t.Fatalf("energy trace of %d steps", len(r.Energy))
				}
				if method == "egg" {
					// The prior-space image is the one the model input was made of.
					checkPriorImage(t, filepath.Join(out, method), r, prior, energy.Transform{Height: 20, Width: 20, Norm: 5})
				} else if r.PriorImage != "" {
					t.Errorf("GA record with a prior image %q", r.PriorImage)
				}
			}
			// A second run resumes: nothing is recomputed.
			before := readAll(t, filepath.Join(out, method))
			if _, err := Run(context.Background(), dev, s, neurons, models, prior, out, nil); err != nil {
				t.Fatal(err)
			}
			if after := readAll(t, filepath.Join(out, method)); !reflect.DeepEqual(before, after) {
				t.Fatal("a resumed run rewrote finished records")
			}
			// An interrupted run, resumed, gives the same records as an uninterrupted one.
			out2 := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			stop := &cancelAfter{n: 3, cancel: cancel}
			if _, err := Run(ctx, dev, s, neurons, models, prior, out2, stop); err == nil {
				t.Fatal("cancelled run reported success")
			}
			if got := len(readAll(t, filepath.Join(out2, method))); got != 1 {
				t.Fatalf("%d neurons finished before the interruption, want 1", got)
			}
			sum2, err := Run(context.Background(), dev, s, neurons, models, prior, out2, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range sum2.Records {
				if r.Seed != sum.Records[i].Seed || !reflect.DeepEqual(r.Activations, sum.Records[i].Activations) {
					t.Fatalf("neuron %d: %v vs %v", r.Neuron, r.Activations, sum.Records[i].Activations)
				}
			}
		})
	}
}

func itoa(v uint64) string { b, _ := json.Marshal(v); return string(b) }

func readAll(t *testing.T, dir string) map[string]string {
	m := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "neuron_*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = string(b)
	}
	return m
}

// A batch of neurons gives the same MEIs as one neuron at a time (per-sample
// gradient normalisation and per-sample noise streams).
func TestBatchIndependence(t *testing.T) {
	models := ModelSet{Train: tinyModel(t, 1)}
	prior := tinyPrior(t)
	s := Settings{Method: "egg", Seeds: []uint64{4}, BatchSize: 3, InputH: 20, InputW: 20, Norm: 5, Scale: 2}
	a, err := Run(context.Background(), dev, s, []int{0, 1, 2}, models, prior, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.BatchSize = 1
	b, err := Run(context.Background(), dev, s, []int{0, 1, 2}, models, prior, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Records {
		x, y := a.Records[i].Activations["train"], b.Records[i].Activations["train"]
		if d := x - y; d > 1e-4 || d < -1e-4 {
			t.Fatalf("neuron %d: batch %v, alone %v", i, x, y)
		}
	}
}

func TestFillBatch(t *testing.T) {
	for _, c := range []struct {
		free       uint64
		perSample  int64
		left, want int
	}{
		{free: 10 << 30, perSample: 1 << 30, left: 100, want: 8},
		{free: 10 << 30, perSample: 1 << 30, left: 3, want: 3},
		{free: 1 << 20, perSample: 1 << 30, left: 100, want: 1},
		{free: 100 << 30, perSample: 1 << 10, left: 1 << 20, want: 1024},
		{free: 1 << 30, perSample: 0, left: 100, want: 8},
		{free: 1 << 30, perSample: 0, left: 0, want: 1},
	} {
		if got := fillBatch(c.free, c.perSample, c.left); got != c.want {
			t.Errorf("fillBatch(%d, %d, %d) = %d, want %d", c.free, c.perSample, c.left, got, c.want)
		}
	}
}

// On an accelerator, BatchSize 0 runs one sample, measures its memory and fills
// the free memory with the rest; the MEIs are the CPU's.
func TestAutoBatchOnDevice(t *testing.T) {
	acc := tensor.NewAccelerated(tensor.NewHostAccelerator(true), tensor.CPU(2))
	s := Settings{Method: "egg", Seeds: []uint64{4, 5}, InputH: 20, InputW: 20, Norm: 5, Scale: 2}
	neurons := []int{0, 1, 2}
	a, err := Run(context.Background(), dev, s, neurons, ModelSet{Train: tinyModel(t, 1)}, tinyPrior(t), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), acc, s, neurons, ModelSet{Train: tinyModelOn(t, acc, 1)}, tinyPriorOn(t, acc), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Records[0].Settings.BatchSize != 8 {
		t.Errorf("CPU batch size %d, want 8", a.Records[0].Settings.BatchSize)
	}
	if got := b.Records[len(b.Records)-1].Settings.BatchSize; got != len(neurons)*len(s.Seeds)-1 {
		t.Errorf("device batch size after the probe %d, want all %d remaining samples", got, len(neurons)*len(s.Seeds)-1)
	}
	for i := range a.Records {
		x, y := a.Records[i].Activations["train"], b.Records[i].Activations["train"]
		if d := x - y; d > 1e-3*max(1, x) || d < -1e-3*max(1, x) {
			t.Errorf("neuron %d: CPU %v, device %v", i, x, y)
		}
	}
}

// checkPriorImage checks that r's prior-space image is [C, S, S] and that the
// transform makes r's model input of it.
func checkPriorImage(t *testing.T, dir string, r Record, p *Prior, tr energy.Transform) {
	t.Helper()
	a, err := npy.ReadFile(filepath.Join(dir, r.PriorImage))
	if err != nil {
		t.Fatalf("neuron %d: %v", r.Neuron, err)
	}
	if want := []int{p.Channels, p.Size, p.Size}; !reflect.DeepEqual(a.Shape, want) {
		t.Fatalf("neuron %d: prior image of shape %v, want %v", r.Neuron, a.Shape, want)
	}
	x0, _ := a.Float32()
	in, err := npy.ReadFile(filepath.Join(dir, r.Input))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := in.Float32()
	got := tr.Apply(tensor.FromSlice(dev, x0, 1, p.Channels, p.Size, p.Size)).Values()
	for i := range want {
		if d := got[i] - want[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("neuron %d: the prior image's model input differs at %d: %v, want %v", r.Neuron, i, got[i], want[i])
		}
	}
}

// nanModel answers NaN for every neuron.
type nanModel struct{ Model }

func (m nanModel) Forward(x *tensor.Tensor) *tensor.Tensor {
	y := m.Model.Forward(x)
	return tensor.Add(y, tensor.Full(y.Device(), float32(math.NaN()), y.Shape()...))
}

// TestNaNModel: a scoring model that outputs NaN ends the run with an error that
// names the role; no record (empty or not) is left for the neuron.
func TestNaNModel(t *testing.T) {
	ga := ascent.Default()
	ga.Iterations = 2
	models := ModelSet{Train: tinyModel(t, 1), Within: nanModel{tinyModel(t, 2)}}
	s := Settings{Method: "ga", Seeds: []uint64{0}, BatchSize: 2, InputH: 20, InputW: 20, Norm: 5, GA: &ga}
	out := t.TempDir()
	_, err := Run(context.Background(), dev, s, []int{0}, models, nil, out, nil)
	if err == nil || !strings.Contains(err.Error(), "within model") {
		t.Fatalf("error %v, want one naming the within model", err)
	}
	if recs, _ := filepath.Glob(filepath.Join(out, "ga", "neuron_*.json")); len(recs) != 0 {
		t.Errorf("records left: %v", recs)
	}
}

// TestResumeRefusesOtherRuns: a folder's records are reused only by a run with the
// same settings and model files (by hash); another batch size or file path is the
// same run, another norm or model file is refused in one line, and nothing is
// overwritten.
func TestResumeRefusesOtherRuns(t *testing.T) {
	ga := ascent.Default()
	ga.Iterations = 2
	base := Settings{Method: "ga", Seeds: []uint64{0}, BatchSize: 2, InputH: 20, InputW: 20, Norm: 5, GA: &ga}
	files := func(within string) map[string][]FileHash {
		return map[string][]FileHash{"train": {{Path: "a.safetensors", SHA256: "aa"}}, "within": {{Path: "b.safetensors", SHA256: within}}}
	}
	out := t.TempDir()
	models := ModelSet{Train: tinyModel(t, 1), Files: files("bb")}
	if _, err := Run(context.Background(), dev, base, []int{0, 1}, models, nil, out, nil); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, filepath.Join(out, "ga"))
	for _, c := range []struct {
		name   string
		change func(s *Settings, m *ModelSet)
		err    string // "" for a resumed run
	}{
		{"another batch size", func(s *Settings, m *ModelSet) { s.BatchSize = 1 }, ""},
		{"the same file elsewhere", func(s *Settings, m *ModelSet) {
			m.Files = files("bb")
			m.Files["train"][0].Path = "/elsewhere/a.safetensors"
		}, ""},
		{"another norm", func(s *Settings, m *ModelSet) { s.Norm = 6 }, "other settings"},
		{"another within model", func(s *Settings, m *ModelSet) { m.Files = files("cc") }, "other model files"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, m := base, models
			m.Files = files("bb")
			c.change(&s, &m)
			_, err := Run(context.Background(), dev, s, []int{0, 1}, m, nil, out, nil)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
			if after := readAll(t, filepath.Join(out, "ga")); !reflect.DeepEqual(before, after) {
				t.Error("the records changed")
			}
		})
	}
}
