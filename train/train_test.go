package train

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"egg/dataset"
	"egg/encoder"
	"egg/nn"
	"egg/tensor"
)

var testDev = tensor.CPU(2)

// smallArch is a data-driven model for 20x20 images: 8 channels, a 9x9 first layer
// and one depth-separable layer.
func smallArch(t *testing.T, name string, d *dataset.Dataset) encoder.Config {
	t.Helper()
	cfg, err := Architecture(name, ArchOptions{Channels: 8, Layers: 2, InputKern: 9, HiddenKern: 5, EmbedDim: 16})
	if err != nil {
		t.Fatal(err)
	}
	return ForData(cfg, d)
}

func newModel(t *testing.T, cfg encoder.Config, seed uint64) encoder.Model {
	t.Helper()
	m, err := NewModel(testDev, cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// weights returns a copy of every tensor of m.
func weights(m encoder.Model) [][]float32 {
	var w [][]float32
	for _, e := range nn.StateDict(m) {
		w = append(w, slices.Clone(e.T.Data()))
	}
	return w
}

func sameWeights(a, b [][]float32) bool {
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

// TestTrainRecoversSimulatedNeurons trains a small data-driven model on simulated
// Gabor neurons and compares its test correlation with the ground truth's (the
// correlation of the true rates with the Poisson responses, the best any model can
// do).
func TestTrainRecoversSimulatedNeurons(t *testing.T) {
	sim := simulate(1, 20, 8, 1000, 200, 60, 4)
	d := sim.d
	cfg, err := Architecture(DataDrivenGaussian, ArchOptions{Channels: 8, Layers: 1, InputKern: 9})
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, ForData(cfg, d), 3)
	o := Defaults()
	o.Epochs, o.LR, o.Seed = 40, 0.01, 5
	o.Logf = t.Logf
	start := time.Now()
	res, err := Run(context.Background(), m, d, o)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := Evaluate(m, d, dataset.Test, 64)
	if err != nil {
		t.Fatal(err)
	}
	idx := d.Indices(dataset.Test)
	resp, _, ids := rows(d, idx)
	var rate []float32
	for _, i := range idx {
		rate = append(rate, sim.rate[i*d.Neurons:(i+1)*d.Neurons]...)
	}
	truth := Score(rate, resp, d.Neurons, ids, nil)
	gt := Mean(truth.SingleTrial)
	t.Logf("%d epochs (best %d; %s) in %v", res.Epochs, res.BestEpoch, res.Stopped, time.Since(start).Round(time.Millisecond))
	t.Logf("test single-trial correlation: model %.3f, ground truth %.3f; trial-averaged: model %.3f, ground truth %.3f; oracle %.3f",
		ev.SingleTrial, gt, ev.Average, Mean(truth.Average), ev.Oracle)
	if ev.SingleTrial < 0.9*gt {
		t.Errorf("model's test correlation %.3f is below 90%% of the ground truth's %.3f", ev.SingleTrial, gt)
	}
	if ev.Average < 0.9*Mean(truth.Average) {
		t.Errorf("model's trial-averaged correlation %.3f is below 90%% of the ground truth's %.3f", ev.Average, Mean(truth.Average))
	}
	if res.Initial >= res.BestCorrelation || res.BestEpoch == 0 {
		t.Errorf("training did not improve the validation correlation: %.3f -> %.3f", res.Initial, res.BestCorrelation)
	}
}

// resumeCase is a short run with frequent early-stopping events, so that a resumed
// run must restore every piece of state to match.
func resumeOptions(seed uint64, ckpt string) Options {
	o := Defaults()
	o.Epochs, o.BatchSize, o.LR, o.Seed = 6, 32, 0.02, seed
	o.Patience, o.LRPatience, o.LRDecaySteps = 2, 0, 4
	o.Checkpoint = ckpt
	return o
}

func TestResumeMatchesUninterrupted(t *testing.T) {
	d := simulate(2, 20, 4, 200, 60, 10, 2).d
	for _, arch := range []string{DataDrivenGaussian, DataDrivenAttention} {
		t.Run(arch, func(t *testing.T) {
			cfg := smallArch(t, arch, d)
			dir := t.TempDir()
			full := func(seed uint64, ckpt string) ([][]float32, *Result) {
				m := newModel(t, cfg, 1)
				res, err := Run(context.Background(), m, d, resumeOptions(seed, ckpt))
				if err != nil {
					t.Fatal(err)
				}
				return weights(m), res
			}
			want, wantRes := full(7, filepath.Join(dir, "a.ckpt"))
			again, _ := full(7, "")
			if !sameWeights(want, again) {
				t.Fatal("two runs with the same seed give different weights")
			}
			if other, _ := full(8, ""); sameWeights(want, other) {
				t.Fatal("runs with different seeds give the same weights")
			}

			// Interrupt: cancel in the middle of epoch 3, or stop after epoch 2.
			ckpt := filepath.Join(dir, "b.ckpt")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := resumeOptions(7, ckpt)
			stop := errors.New("stop")
			if arch == DataDrivenGaussian {
				o.Progress = func(epoch, batch, _ int) {
					if epoch == 3 && batch == 2 {
						cancel()
					}
				}
			} else {
				o.AfterEpoch = func(e Epoch) error {
					if e.Epoch == 2 {
						return stop
					}
					return nil
				}
			}
			_, err := Run(ctx, newModel(t, cfg, 1), d, o)
			if arch == DataDrivenGaussian && (!errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "--resume")) {
				t.Fatalf("interrupted run: %v", err)
			}
			if arch == DataDrivenAttention && !errors.Is(err, stop) {
				t.Fatalf("stopped run: %v", err)
			}
			o = resumeOptions(7, ckpt)
			o.Resume = true
			var logs []string
			o.Logf = func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
			m := newModel(t, cfg, 99) // the checkpoint overwrites these weights
			res, err := Run(context.Background(), m, d, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(logs) == 0 || !strings.Contains(logs[0], "resuming from") {
				t.Errorf("first log line %q", logs)
			}
			if res.ResumedFrom != 2 {
				t.Errorf("resumed from epoch %d, want 2", res.ResumedFrom)
			}
			if !sameWeights(want, weights(m)) {
				t.Error("the resumed run's weights differ from the uninterrupted run's")
			}
			if len(res.History) != len(wantRes.History) || res.BestEpoch != wantRes.BestEpoch || res.Stopped != wantRes.Stopped {
				t.Errorf("resumed run: %d epochs, best %d, %q; uninterrupted: %d, %d, %q",
					len(res.History), res.BestEpoch, res.Stopped, len(wantRes.History), wantRes.BestEpoch, wantRes.Stopped)
			}
			for i := range min(len(res.History), len(wantRes.History)) {
				a, b := res.History[i], wantRes.History[i]
				if a.Loss != b.Loss || a.Correlation != b.Correlation || a.LR != b.LR {
					t.Errorf("epoch %d: resumed %+v, uninterrupted %+v", i+1, a, b)
				}
			}
			// The model holds the best weights: its validation correlation is the best one.
			val := d.Indices(dataset.Validation)
			resp, mask, _ := rows(d, val)
			if c := Mean(Score(Predict(m, d, val, 50), resp, d.Neurons, nil, mask).SingleTrial); c != res.BestCorrelation {
				t.Errorf("final validation correlation %v, best %v", c, res.BestCorrelation)
			}
			// Resuming a finished run changes nothing.
			m2 := newModel(t, cfg, 98)
			if _, err := Run(context.Background(), m2, d, o); err != nil {
				t.Fatal(err)
			}
			if !sameWeights(want, weights(m2)) {
				t.Error("resuming a finished run changed the weights")
			}
		})
	}
}

func TestResumeExtendsEpochs(t *testing.T) {
	d := simulate(2, 20, 4, 200, 60, 10, 2).d
	cfg := smallArch(t, DataDrivenGaussian, d)
	o := resumeOptions(3, "")
	o.Patience = 10 // no early stopping in these runs
	m := newModel(t, cfg, 1)
	if _, err := Run(context.Background(), m, d, o); err != nil {
		t.Fatal(err)
	}
	want := weights(m)
	o.Checkpoint, o.Epochs = filepath.Join(t.TempDir(), "e.ckpt"), 3
	res, err := Run(context.Background(), newModel(t, cfg, 1), d, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stopped != "reached the limit of 3 epochs" {
		t.Errorf("stopped: %q", res.Stopped)
	}
	o.Epochs, o.Resume = 6, true
	m = newModel(t, cfg, 1)
	if res, err = Run(context.Background(), m, d, o); err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom != 3 || res.Epochs != 6 || !sameWeights(want, weights(m)) {
		t.Errorf("3 + 3 epochs: resumed from %d, %d epochs, same weights as 6 epochs: %v", res.ResumedFrom, res.Epochs, sameWeights(want, weights(m)))
	}
}

func TestResumeRefusesOtherRuns(t *testing.T) {
	d := simulate(2, 20, 4, 60, 20, 5, 2).d
	cfg := smallArch(t, DataDrivenGaussian, d)
	ckpt := filepath.Join(t.TempDir(), "c.ckpt")
	o := resumeOptions(1, ckpt)
	o.Epochs = 1
	if _, err := Run(context.Background(), newModel(t, cfg, 1), d, o); err != nil {
		t.Fatal(err)
	}
	other := simulate(3, 20, 4, 60, 20, 5, 2).d
	attn := smallArch(t, DataDrivenAttention, d)
	cases := []struct {
		name   string
		cfg    encoder.Config
		d      *dataset.Dataset
		change func(o *Options)
		want   string
	}{
		{"batch size", cfg, d, func(o *Options) { o.BatchSize = 16 }, "--batch-size 32 (now 16)"},
		{"seed", cfg, d, func(o *Options) { o.Seed = 2 }, "--seed 1 (now 2)"},
		{"data", ForData(cfg, other), other, func(*Options) {}, "other data"},
		{"architecture", attn, d, func(*Options) {}, "another architecture"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := resumeOptions(1, ckpt)
			o.Resume = true
			c.change(&o)
			_, err := Run(context.Background(), newModel(t, c.cfg, 1), c.d, o)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "without --resume") {
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
		})
	}
	// More epochs than the checkpoint's run is fine.
	o = resumeOptions(1, ckpt)
	o.Resume, o.Epochs = true, 2
	res, err := Run(context.Background(), newModel(t, cfg, 1), d, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFrom != 1 {
		t.Errorf("resumed from %d", res.ResumedFrom)
	}
}

func TestRunErrors(t *testing.T) {
	d := simulate(2, 20, 4, 30, 10, 5, 2).d
	cfg := smallArch(t, DataDrivenGaussian, d)
	noVal := *d
	noVal.Tiers = slices.Clone(d.Tiers)
	for i, tier := range noVal.Tiers {
		if tier == dataset.Validation {
			noVal.Tiers[i] = dataset.Train
		}
	}
	fewer := *d
	fewer.Neurons = 3
	bad := Defaults()
	bad.BatchSize = 0
	cases := []struct {
		name string
		d    *dataset.Dataset
		o    Options
		want string
	}{
		{"no validation", &noVal, Defaults(), "no validation trials"},
		{"neurons", &fewer, Defaults(), "predicts 4 neurons but simulation has 3"},
		{"options", d, bad, "batch size 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Run(context.Background(), newModel(t, cfg, 1), c.d, c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
		})
	}
}
