package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"egg/dataset"
	"egg/npy"
	"egg/recon"
	"egg/tensor"
)

// reconDataFile writes a data set of 6 random 20x20 trials (the last 3 test) of 4
// neurons; neuron 3 is not recorded in trial 4.
func reconDataFile(t *testing.T, dir string) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	d := &dataset.Dataset{N: 6, C: 1, H: 20, W: 20, Neurons: 4}
	for range 6 * 400 {
		d.Images = append(d.Images, float32(rng.IntN(256)))
	}
	for range 6 * 4 {
		d.Responses = append(d.Responses, float32(rng.Float64()))
	}
	d.Tiers = []string{"train", "train", "validation", "test", "test", "test"}
	d.Mask = make([]bool, 24)
	for i := range d.Mask {
		d.Mask[i] = true
	}
	d.Mask[4*4+3] = false
	path := filepath.Join(dir, "data.npz")
	if err := dataset.WriteNPZ(path, d); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReconstructCommand(t *testing.T) {
	dir := t.TempDir()
	prior := priorOptions{weights: meniPriorFile(t, dir), steps: "3", noiseSchedule: "linear", diffSteps: 1000}
	base := reconstructOptions{train: meniModelFile(t, dir, 1), within: meniModelFile(t, dir, 2), cross: meniModelFile(t, dir, 3),
		data: reconDataFile(t, dir), tier: "test", images: "0,1", norm: 10, clip: "-1.7,1.9", gdSteps: 4, gdLR: 0.05, gdBlur: 1,
		batchSize: 2, quiet: true, prior: prior}

	t.Run("model responses", func(t *testing.T) {
		o := base
		o.out = filepath.Join(dir, "model")
		var stdout bytes.Buffer
		o.stdout = &stdout
		if err := runReconstruct(context.Background(), testGlobal, &o); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"target_00000.png", "target_00001.json", "target_00000_egg.npy", "target_00001_gd.npy", "target_00000_target.npy", "summary.json"} {
			if _, err := os.Stat(filepath.Join(o.out, f)); err != nil {
				t.Error(err)
			}
		}
		var sum recon.Summary
		b, err := os.ReadFile(filepath.Join(o.out, "summary.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Targets != 2 || sum.Settings.Scale != 2 || sum.Settings.Steps != 3 || sum.Settings.Recorded {
			t.Fatalf("summary %+v", sum)
		}
		for _, m := range []string{"egg", "gd"} {
			for _, r := range recon.Roles {
				if _, ok := sum.Median[m][r]; !ok {
					t.Errorf("no median for %s %s", m, r)
				}
			}
		}
		// The target image's train distance is 0 (the targets are the train model's responses).
		if sum.Median["target"]["train"] != 0 {
			t.Errorf("target train distance %v", sum.Median["target"]["train"])
		}
		if !strings.Contains(stdout.String(), "egg") || !strings.Contains(stdout.String(), "cross") {
			t.Errorf("table:\n%s", stdout.String())
		}
		// Resume: a second run rewrites nothing.
		before, _ := os.ReadFile(filepath.Join(o.out, "target_00001.json"))
		if err := runReconstruct(context.Background(), testGlobal, &o); err != nil {
			t.Fatal(err)
		}
		if after, _ := os.ReadFile(filepath.Join(o.out, "target_00001.json")); string(after) != string(before) {
			t.Fatal("a resumed run rewrote a finished record")
		}
	})

	t.Run("recorded responses", func(t *testing.T) {
		o := base
		o.recorded, o.images = true, "0-2"
		o.out = filepath.Join(dir, "recorded")
		o.stdout = &bytes.Buffer{}
		if err := runReconstruct(context.Background(), testGlobal, &o); err != nil {
			t.Fatal(err)
		}
		var rec recon.Record
		b, err := os.ReadFile(filepath.Join(o.out, "target_00002.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Settings.Scale != 1 || !rec.Settings.Recorded {
			t.Fatalf("settings %+v", rec.Settings)
		}
		// The distance of the EGG input on train, over the neurons recorded in every
		// chosen trial (0-2; neuron 3 is missing in test trial 1), computed directly.
		d, err := dataset.Load(o.data, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := loadEnsemble(tensor.CPU(2), o.train)
		if err != nil {
			t.Fatal(err)
		}
		a, err := npy.ReadFile(filepath.Join(o.out, rec.Inputs["egg"]))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := a.Float32()
		r := m.Forward(tensor.FromSlice(tensor.CPU(2), v, 1, 1, 20, 20)).Data()
		trial := d.Indices("test")[2]
		var s float64
		for j := 0; j < 3; j++ {
			e := float64(r[j] - d.Responses[trial*4+j])
			s += e * e
		}
		if got := rec.Distance["egg"]["train"]; math.Abs(float64(got)-s/3) > 1e-5*(1+s) {
			t.Fatalf("recorded distance %v, want %v", got, s/3)
		}
	})

	t.Run("targets file", func(t *testing.T) {
		arr := npy.Float32s(make([]float32, 2*20*20), 2, 20, 20)
		for i := range arr.F64 {
			arr.F64[i] = float64(i % 251)
		}
		b, err := npy.EncodeNPZ(map[string]*npy.Array{"images": arr})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "targets.npz")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		o := base
		o.data, o.targets, o.images, o.gdSteps = "", path, "1", 2
		o.out = filepath.Join(dir, "file")
		o.stdout = &bytes.Buffer{}
		if err := runReconstruct(context.Background(), testGlobal, &o); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(o.out, "target_00001.png")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, mod := range []func(o *reconstructOptions){
			func(o *reconstructOptions) { o.norm = -1 },
			func(o *reconstructOptions) { o.targets = "x.npz" },
			func(o *reconstructOptions) { o.data = ""; o.targets = "x.npz"; o.recorded = true },
			func(o *reconstructOptions) { o.clip = "2,1" },
		} {
			o := base
			o.out = filepath.Join(dir, "usage")
			mod(&o)
			err := runReconstruct(context.Background(), testGlobal, &o)
			if _, ok := err.(usageError); !ok {
				t.Errorf("got %v, want a usage error", err)
			}
		}
	})
}
