package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"egg/dataset"
	"egg/pool"
	"egg/simulate"
	"egg/tensor"
)

// writeTestPool cuts a pool of 32x32 patches (with a validation tier) from
// synthetic photographs.
func writeTestPool(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTestPhotos(t, dir, 6, 192, 160)
	p, _, err := pool.Build(context.Background(), dir, pool.Options{Size: 32, MinContrast: 0.05, Flips: true, ValFraction: 0.3, SplitBy: pool.ByPatch}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pool.npz")
	if err := p.WriteNPZ(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSimulateCommand(t *testing.T) {
	poolPath := writeTestPool(t)
	dir := t.TempDir()
	run := func(seed uint64) (*simulateOptions, string) {
		out := filepath.Join(dir, "v4.npz")
		var log bytes.Buffer
		o := &simulateOptions{images: poolPath, out: out, neurons: 8, seed: seed, quiet: true, stderr: &log,
			record: simulate.RecordOptions{Test: 6, Repeats: 3, ValFraction: 0.2}}
		if err := runSimulate(context.Background(), testGlobal, o); err != nil {
			t.Fatal(err)
		}
		return o, log.String()
	}
	o, log := run(3)
	for _, want := range []string{"recorded 8 neurons", "18 test trials (6 test images x 3 repeats)", "spikes/s", "the ground truth on the test trials: single-trial correlation", "v4_truth.safetensors"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not say %q:\n%s", want, log)
		}
	}
	first, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(o.out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Neurons != 8 || d.H != 32 || len(d.Indices(dataset.Test)) != 18 || len(d.Indices(dataset.Validation)) == 0 {
		t.Errorf("data set: %d neurons, %dx%d, %d test trials", d.Neurons, d.H, d.W, len(d.Indices(dataset.Test)))
	}
	truth := filepath.Join(dir, "v4_truth.safetensors")
	m, err := loadModel(tensor.CPU(1), truth)
	if err != nil {
		t.Fatal(err)
	}
	if m.Neurons() != 8 || m.Config().InputShape[1] != 32 || m.Config().InputStd == 0 {
		t.Errorf("ground truth: %d neurons, config %+v", m.Neurons(), m.Config())
	}
	// The same seed gives the same data set.
	run(3)
	if again, _ := os.ReadFile(o.out); !bytes.Equal(first, again) {
		t.Error("the same seed gives another data set")
	}
}

func TestSimulateCommandErrors(t *testing.T) {
	poolPath := writeTestPool(t)
	out := filepath.Join(t.TempDir(), "v4.npz")
	ok := simulate.RecordOptions{Test: 2, Repeats: 2, ValFraction: 0.2}
	cases := []struct {
		name  string
		o     simulateOptions
		usage bool
		want  string
	}{
		{"no images", simulateOptions{out: out, neurons: 2, record: ok}, true, "--images"},
		{"no out", simulateOptions{images: poolPath, neurons: 2, record: ok}, true, "--out"},
		{"no neurons", simulateOptions{images: poolPath, out: out, record: ok}, true, "--neurons"},
		{"no repeats", simulateOptions{images: poolPath, out: out, neurons: 2, record: simulate.RecordOptions{Test: 2}}, true, "--repeats"},
		{"bad val", simulateOptions{images: poolPath, out: out, neurons: 2, record: simulate.RecordOptions{Test: 2, Repeats: 1, ValFraction: 1}}, true, "--val"},
		{"missing pool", simulateOptions{images: poolPath + ".nope", out: out, neurons: 2, record: ok}, false, "egg pool"},
		{"too many test images", simulateOptions{images: poolPath, out: out, neurons: 2, record: simulate.RecordOptions{Test: 100000, Repeats: 1}}, false, "validation patches"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.quiet, c.o.stderr = true, &bytes.Buffer{}
			err := runSimulate(context.Background(), testGlobal, &c.o)
			var ue usageError
			if err == nil || errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v (usage error: %v); want one about %q, usage error %v", err, errors.As(err, &ue), c.want, c.usage)
			}
		})
	}
	if _, err := loadModel(tensor.CPU(1), poolPath); err == nil {
		t.Error("loadModel read a pool")
	}
}
