package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"egg/internal/refvec"
)

// ptCase returns an adm_unet reference case that ships a PyTorch checkpoint, and its
// UNet kwargs written to a JSON file.
func ptCase(t *testing.T) (weights, config string) {
	cases, err := refvec.Cases()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Kind == "adm_unet" && c.Exists("weights.pt") {
			var kw json.RawMessage
			c.Get(t, "guided_diffusion_unet_kwargs", &kw)
			config = filepath.Join(t.TempDir(), "unet.json")
			if err := os.WriteFile(config, kw, 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(c.Dir, "weights.pt"), config
		}
	}
	t.Skip("no adm_unet reference case with weights.pt")
	return "", ""
}

func TestSampleReproducible(t *testing.T) {
	weights, config := ptCase(t)
	run := func(batch int) string {
		o := &sampleOptions{n: 3, batchSize: batch, seed: 5, sampler: "ddpm", out: t.TempDir(), quiet: true}
		o.prior = priorOptions{weights: weights, configFile: config, steps: "8", noiseSchedule: "linear", diffSteps: 1000}
		if err := runSample(context.Background(), &globalOptions{threads: 2}, o); err != nil {
			t.Fatal(err)
		}
		return o.out
	}
	a, b := run(3), run(2)
	for _, name := range []string{"sample_00000.png", "sample_00002.png", "grid.png"} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
		if !bytes.HasPrefix(x, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
}

func TestSampleErrors(t *testing.T) {
	cases := []struct {
		name  string
		o     sampleOptions
		usage bool
	}{
		{"no weights", sampleOptions{n: 1, batchSize: 1, sampler: "ddpm", prior: priorOptions{preset: "64x64_diffusion"}}, true},
		{"bad sampler", sampleOptions{n: 1, batchSize: 1, sampler: "euler"}, true},
		{"missing file", sampleOptions{n: 1, batchSize: 1, sampler: "ddpm", prior: priorOptions{weights: "/nonexistent.pt", preset: "64x64_diffusion", steps: "10", noiseSchedule: "linear", diffSteps: 1000}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.out = t.TempDir()
			err := runSample(context.Background(), &globalOptions{threads: 1}, &c.o)
			if err == nil {
				t.Fatal("no error")
			}
			_, isUsage := err.(usageError)
			if isUsage != c.usage {
				t.Fatalf("usage error %v, want %v: %v", isUsage, c.usage, err)
			}
		})
	}
}
