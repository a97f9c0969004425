package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"egg/adm"
	"egg/encoder"
	"egg/mei"
	"egg/pool"
	"egg/priortrain"
	"egg/tensor"
)

// meniModelFile writes a small random encoding model on 1x20x20 inputs.
func meniModelFile(t *testing.T, dir string, seed uint64) string {
	t.Helper()
	cfg, err := encoder.Preset("v4_data_driven")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Core.SE2d.HiddenChannels, cfg.Core.SE2d.Layers, cfg.Core.SE2d.InputKern = 8, 2, 5
	cfg.Readout.Neurons, cfg.Readout.Attention.EmbedOutDim = 4, 8
	cfg.InputShape = []int{1, 20, 20}
	m, err := encoder.New(tensor.CPU(2), cfg, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("m%d.safetensors", seed))
	if err := encoder.Save(path, m, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// meniPriorFile writes a tiny random 16x16 gray diffusion prior.
func meniPriorFile(t *testing.T, dir string) string {
	t.Helper()
	cfg := adm.Config{ImageSize: 16, InChannels: 1, OutChannels: 2, ModelChannels: 32, ChannelMult: []int{1, 1},
		NumResBlocks: 1, AttentionResolutions: []int{2}, NumHeads: 1, NumHeadChannels: -1, NumHeadsUpsample: -1}
	u, err := adm.New(tensor.CPU(2), cfg, rand.New(rand.NewPCG(9, 9)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prior.safetensors")
	d := priortrain.Diffusion{NoiseSchedule: "linear", Steps: 1000, LearnSigma: true, RescaleTimesteps: true}
	if err := priortrain.WriteModel(path, u, d, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// meniPoolFile writes a pool of n random 12x12 patches.
func meniPoolFile(t *testing.T, dir string, n int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(4, 4))
	p := &pool.Pool{Size: 12, Images: make([]uint8, n*144)}
	for i := range p.Images {
		p.Images[i] = uint8(rng.IntN(256))
	}
	for i := 0; i < n; i++ {
		tier := pool.Train
		if i%4 == 3 {
			tier = pool.Validation
		}
		p.Tiers = append(p.Tiers, tier)
		p.Sources = append(p.Sources, pool.Source{File: fmt.Sprintf("img%d.png", i/3), Scale: 1, X: 12 * (i % 3)}.String())
		p.Files = append(p.Files, fmt.Sprintf("img%d.png", i/3))
	}
	path := filepath.Join(dir, "pool.npz")
	if err := p.WriteNPZ(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMENICommand(t *testing.T) {
	dir := t.TempDir()
	o := &meniOptions{
		pool: meniPoolFile(t, dir, 30), train: meniModelFile(t, dir, 1), within: meniModelFile(t, dir, 2), cross: meniModelFile(t, dir, 3),
		neurons: "0,2", seeds: "0", scales: "1,2", norm: 10, gradNorm: "sample", top: 3, batchSize: 4,
		out: filepath.Join(dir, "out"), quiet: true,
		prior: priorOptions{weights: meniPriorFile(t, dir), steps: "3", noiseSchedule: "linear", diffSteps: 1000},
	}
	var stdout bytes.Buffer
	o.stdout = &stdout
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"natural/neuron_00000.png", "natural/neuron_00002.json", "scale_1/egg/neuron_00000.png",
		"scale_2/egg/neuron_00002.json", "scale_2/egg/summary.json", "meni.json"} {
		if _, err := os.Stat(filepath.Join(o.out, f)); err != nil {
			t.Error(err)
		}
	}
	var sum meniSummary
	b, err := os.ReadFile(filepath.Join(o.out, "meni.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Neurons) != 2 || len(sum.Scales) != 2 || strings.Join(sum.Roles, ",") != "train,within,cross" {
		t.Fatalf("summary %+v", sum)
	}
	for _, l := range sum.Neurons {
		for _, r := range sum.Roles {
			if _, ok := l.Natural[r]; !ok {
				t.Errorf("neuron %d: no natural %s activation", l.Neuron, r)
			}
			for _, sc := range sum.Scales {
				if _, ok := l.EGG[sc][r]; !ok {
					t.Errorf("neuron %d: no EGG scale %s %s activation", l.Neuron, sc, r)
				}
			}
		}
		if l.NaturalSource == "" {
			t.Errorf("neuron %d: no source", l.Neuron)
		}
	}
	if _, ok := sum.Median.EGG["2"]["cross"]; !ok {
		t.Error("no median for scale 2, cross")
	}
	// The natural records hold the top 3 of the whole pool by train activation.
	nr, err := mei.ReadNatural(filepath.Join(o.out, "natural"), 2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.Read(o.pool)
	if err != nil {
		t.Fatal(err)
	}
	dev := tensor.CPU(2)
	m, _, err := loadEnsemble(dev, o.train)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Forward(mei.NaturalInputs(dev, p.Images, p.Len(), p.Size, 20, 20, 10))
	var better int
	for i := 0; i < p.Len(); i++ {
		if r.Data()[i*4+2] > nr.Hits[2].Activation+1e-5 {
			better++
		}
	}
	if better != 2 || len(nr.Hits) != 3 {
		t.Errorf("%d patches beat the third natural image; want 2", better)
	}
	for _, w := range []string{"natural", "egg scale 1", "egg scale 2", "within"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, stdout.String())
		}
	}
	// A second run resumes: the natural and EGG records are not rewritten.
	before, _ := os.ReadFile(filepath.Join(o.out, "scale_1/egg/neuron_00000.json"))
	nat, _ := os.ReadFile(filepath.Join(o.out, "natural/neuron_00000.json"))
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(o.out, "scale_1/egg/neuron_00000.json"))
	nat2, _ := os.ReadFile(filepath.Join(o.out, "natural/neuron_00000.json"))
	if !bytes.Equal(before, after) || !bytes.Equal(nat, nat2) {
		t.Error("a resumed run rewrote finished records")
	}
}

func TestMENIErrors(t *testing.T) {
	base := meniOptions{pool: "p.npz", train: "m.safetensors", neurons: "0", seeds: "0", scales: "1", norm: 50, top: 5, quiet: true}
	for _, c := range []struct {
		name string
		edit func(o *meniOptions)
		want string
	}{
		{"no pool", func(o *meniOptions) { o.pool = "" }, "--pool is required"},
		{"no train", func(o *meniOptions) { o.train = "" }, "--train is required"},
		{"top", func(o *meniOptions) { o.top = 0 }, "--top"},
		{"scale", func(o *meniOptions) { o.scales = "1,x" }, "--scale"},
		{"negative scale", func(o *meniOptions) { o.scales = "-1" }, "--scale"},
		{"norm", func(o *meniOptions) { o.norm = 0 }, "--norm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.edit(&o)
			err := runMENI(context.Background(), testGlobal, &o)
			var ue usageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want a usage error with %q", err, c.want)
			}
		})
	}
}
