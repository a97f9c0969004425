package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/dataset"
	"egg/encoder"
	"egg/nn"
	"egg/tensor"
	"egg/train"
)

// writeTinyData writes an .npz data set of 12x12 images and 3 neurons, each
// responding (Poisson) to the contrast of one image patch; the test images are shown
// three times each.
func writeTinyData(t *testing.T, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	const size, neurons = 12, 3
	d := &dataset.Dataset{N: 0, C: 1, H: size, W: size, Neurons: neurons, NeuronIDs: []int64{11, 12, 13}}
	image := func() []float32 {
		img := make([]float32, size*size)
		for i := range img {
			img[i] = float32(rng.IntN(256))
		}
		return img
	}
	add := func(img []float32, tier string, id int64) {
		d.N++
		d.Images = append(d.Images, img...)
		d.Tiers = append(d.Tiers, tier)
		d.ImageIDs = append(d.ImageIDs, id)
		for n := 0; n < neurons; n++ {
			var s float64
			for y := 3 * n; y < 3*n+4; y++ {
				for x := 4; x < 8; x++ {
					s += (float64(img[y*size+x]) - 128) / 74 / 4
				}
			}
			lambda := 0.5 + 2*math.Max(s, 0)
			k, p, l := 0, 1.0, math.Exp(-lambda)
			for p *= rng.Float64(); p > l; p *= rng.Float64() {
				k++
			}
			d.Responses = append(d.Responses, float32(k))
		}
	}
	id := int64(0)
	for i := 0; i < 150; i++ {
		add(image(), dataset.Train, id)
		id++
	}
	for i := 0; i < 40; i++ {
		add(image(), dataset.Validation, id)
		id++
	}
	for i := 0; i < 10; i++ {
		img := image()
		for r := 0; r < 3; r++ {
			add(img, dataset.Test, id)
		}
		id++
	}
	path := filepath.Join(t.TempDir(), "tiny.npz")
	if err := dataset.WriteNPZ(path, d); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyTrain returns options of a fast data-driven run on data.
func tinyTrain(data, out, arch string, epochs int) *trainOptions {
	o := &trainOptions{data: data, out: out, arch: arch, quiet: true, stderr: &bytes.Buffer{}}
	o.size = train.ArchOptions{Channels: 4, Layers: 1, InputKern: 5, EmbedDim: 8, LayerName: "layer1.0"}
	o.train = train.Defaults()
	o.train.Epochs, o.train.BatchSize, o.train.LR, o.train.Seed = epochs, 32, 0.02, 4
	return o
}

var testGlobal = &globalOptions{threads: 2}

func TestTrainCommand(t *testing.T) {
	data := writeTinyData(t, 1)
	dir := t.TempDir()
	for _, arch := range []string{train.DataDrivenGaussian, train.DataDrivenAttention} {
		t.Run(arch, func(t *testing.T) {
			out := filepath.Join(dir, arch+".safetensors")
			o := tinyTrain(data, out, arch, 3)
			if err := runTrain(context.Background(), testGlobal, o); err != nil {
				t.Fatal(err)
			}
			log := o.stderr.(*bytes.Buffer).String()
			for _, want := range []string{"epoch 0: validation correlation", "epoch 3/3: loss", "reached the limit of 3 epochs; wrote " + out, "test correlation"} {
				if !strings.Contains(log, want) {
					t.Errorf("log does not say %q:\n%s", want, log)
				}
			}
			m, err := encoder.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			cfg := m.Config()
			if cfg.Name != arch || cfg.InputStd < 70 || cfg.InputStd > 80 || !slices.Equal(cfg.NeuronIDs, []int64{11, 12, 13}) {
				t.Errorf("model config %+v", cfg)
			}
			r, err := checkpoint.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if md := r.Metadata()[trainingMetadataKey]; !strings.Contains(md, `"best_epoch"`) || !strings.Contains(md, `"test_correlation"`) {
				t.Errorf("training metadata %q", md)
			}
			if _, err := os.Stat(checkpointPath(out)); err != nil {
				t.Errorf("no checkpoint: %v", err)
			}
		})
	}
}

func TestTrainCommandResume(t *testing.T) {
	data := writeTinyData(t, 2)
	dir := t.TempDir()
	full := filepath.Join(dir, "full.safetensors")
	if err := runTrain(context.Background(), testGlobal, tinyTrain(data, full, train.DataDrivenGaussian, 4)); err != nil {
		t.Fatal(err)
	}
	// An interrupted run: Ctrl-C during epoch 3 (the checkpoint holds epoch 2).
	part := filepath.Join(dir, "part.safetensors")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := tinyTrain(data, part, train.DataDrivenGaussian, 4)
	o.stderr = &cancelOnLog{w: &bytes.Buffer{}, text: "epoch 2/4", cancel: cancel}
	err := runTrain(ctx, testGlobal, o)
	if err == nil || !strings.Contains(err.Error(), "interrupted in epoch 3") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := os.Stat(part); err == nil {
		t.Fatal("an interrupted run wrote the model")
	}
	o = tinyTrain(data, part, train.DataDrivenGaussian, 4)
	o.resume = true
	if err := runTrain(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	if log := o.stderr.(*bytes.Buffer).String(); !strings.Contains(log, "resuming from") {
		t.Errorf("log:\n%s", log)
	}
	a, _ := os.ReadFile(full)
	b, _ := os.ReadFile(part)
	if !bytes.Equal(a, b) {
		t.Error("the resumed run's model file differs from the uninterrupted run's")
	}
}

// cancelOnLog passes log output on and cancels once it sees text: logging the end
// of epoch 2 cancels the run, whose next step sees the cancelled context.
type cancelOnLog struct {
	w      *bytes.Buffer
	text   string
	cancel func()
}

func (c *cancelOnLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.text)) {
		c.cancel()
	}
	return c.w.Write(p)
}

func TestTrainCommandTaskDriven(t *testing.T) {
	data := writeTinyData(t, 3)
	dir := t.TempDir()
	// A stand-in for the pretrained ResNet-50: random weights under torchvision's
	// names, with a robustness-library prefix and an extra tensor.
	cfg, _ := train.Architecture(train.TaskDrivenGaussian, train.ArchOptions{LayerName: "layer1.0"})
	rn, err := encoder.NewResNetCore(tensor.CPU(1), *cfg.Core.ResNet, rand.New(rand.NewPCG(5, 5)))
	if err != nil {
		t.Fatal(err)
	}
	var ts []checkpoint.Tensor
	for _, e := range nn.StateDict(rn) {
		if !strings.HasPrefix(e.Name, "OutBatchNorm") {
			ts = append(ts, checkpoint.Tensor{Name: "module.model." + e.Name, DType: "F32", Shape: e.T.Shape(), F32: e.T.Data()})
		}
	}
	ts = append(ts, checkpoint.Tensor{Name: "module.model.fc.weight", DType: "F32", Shape: []int{2}, F32: []float32{1, 2}})
	core := filepath.Join(dir, "resnet.safetensors")
	if err := checkpoint.WriteSafetensors(core, ts, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "td.safetensors")
	o := tinyTrain(data, out, train.TaskDrivenGaussian, 1)
	err = runTrain(context.Background(), testGlobal, o)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--core-weights") {
		t.Fatalf("without --core-weights: %v", err)
	}
	o.coreFile, o.corePrefix = core, "module.model."
	if err := runTrain(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	m, err := encoder.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*encoder.Encoder).Core.(*encoder.ResNetCore)
	if !slices.Equal(got.Conv1.Weight.Data(), rn.Conv1.Weight.Data()) || !slices.Equal(got.Layers[0][0].Conv3.Weight.Data(), rn.Layers[0][0].Conv3.Weight.Data()) {
		t.Error("the trained model's ResNet weights are not the pretrained ones (loaded and frozen)")
	}
}

func TestTrainCommandErrors(t *testing.T) {
	data := writeTinyData(t, 4)
	cases := []struct {
		name  string
		o     *trainOptions
		usage bool
		want  string
	}{
		{"no data", tinyTrain("", "m.safetensors", train.DataDrivenGaussian, 1), true, "--data is required"},
		{"no out", tinyTrain(data, "", train.DataDrivenGaussian, 1), true, "--out is required"},
		{"bad arch", tinyTrain(data, "m.safetensors", "cnn", 1), true, `--arch "cnn"`},
		{"missing data", tinyTrain("/nonexistent.npz", "m.safetensors", train.DataDrivenGaussian, 1), false, "give --data an .npz file"},
		{"unwritable out", tinyTrain(data, "/nonexistent/dir/m.safetensors", train.DataDrivenGaussian, 1), false, "cannot write in /nonexistent/dir"},
		{"map too small", func() *trainOptions {
			o := tinyTrain(data, "m.safetensors", train.DataDrivenGaussian, 1)
			o.size.InputKern = 15
			return o
		}(), true, "too small"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := runTrain(context.Background(), testGlobal, c.o)
			var ue usageError
			if err == nil || errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v (usage %v), want one that says %q (usage %v)", err, errors.As(err, &ue), c.want, c.usage)
			}
		})
	}
}
