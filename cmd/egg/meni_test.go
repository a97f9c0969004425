package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"egg/adm"
	"egg/encoder"
	"egg/energy"
	"egg/jobs"
	"egg/mei"
	"egg/models"
	"egg/naturalness"
	"egg/npy"
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
		neurons: "0,2", seeds: "0,1", scales: "1,2", norm: 10, gradNorm: "sample", top: 3, batchSize: 4,
		out: filepath.Join(dir, "out"), quiet: true, natSteps: 6, natSeed: 3,
		prior: priorOptions{weights: meniPriorFile(t, dir), steps: "3", noiseSchedule: "linear", diffSteps: 1000},
	}
	var stdout bytes.Buffer
	o.stdout = &stdout
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"natural/neuron_00000.png", "natural/neuron_00002.json", "scale_1/egg/neuron_00000.png",
		"scale_2/egg/neuron_00002.json", "scale_2/egg/summary.json", "meni.json",
		"scale_1/egg/neuron_00000_x0.npy", "scale_2/egg/neuron_00002_x0.npy", "naturalness.json", "sweep.html"} {
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
	checkMENINaturalness(t, o, sum)
	for _, w := range []string{"natural", "egg scale 1", "egg scale 2", "within", "bits/dim"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, stdout.String())
		}
	}
	// A second run resumes: the natural and EGG records are not rewritten.
	before, _ := os.ReadFile(filepath.Join(o.out, "scale_1/egg/neuron_00000.json"))
	nat, _ := os.ReadFile(filepath.Join(o.out, "natural/neuron_00000.json"))
	cache, _ := os.ReadFile(filepath.Join(o.out, "naturalness.json"))
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(o.out, "scale_1/egg/neuron_00000.json"))
	nat2, _ := os.ReadFile(filepath.Join(o.out, "natural/neuron_00000.json"))
	cache2, _ := os.ReadFile(filepath.Join(o.out, "naturalness.json"))
	if !bytes.Equal(before, after) || !bytes.Equal(nat, nat2) || !bytes.Equal(cache, cache2) {
		t.Error("a resumed run rewrote finished records or scores")
	}
	var again meniSummary
	if b, err := os.ReadFile(filepath.Join(o.out, "meni.json")); err != nil || json.Unmarshal(b, &again) != nil {
		t.Fatalf("reading meni.json again: %v", err)
	}
	for i, l := range again.Neurons {
		for sc, v := range l.EGGBPD {
			if v != sum.Neurons[i].EGGBPD[sc] {
				t.Errorf("neuron %d scale %s: %v bits/dim after resuming, %v before", l.Neuron, sc, v, sum.Neurons[i].EGGBPD[sc])
			}
		}
	}

	// An EGG image made without its prior-space image (an older egg: no prior_image
	// in its record) is left out of the naturalness, the rest stays.
	recPath := filepath.Join(o.out, "scale_2/egg/neuron_00002.json")
	var old map[string]any
	if b, err := os.ReadFile(recPath); err != nil || json.Unmarshal(b, &old) != nil {
		t.Fatalf("reading %s: %v", recPath, err)
	}
	delete(old, "prior_image")
	if b, err := json.Marshal(old); err != nil || os.WriteFile(recPath, b, 0o644) != nil {
		t.Fatal("rewriting the record")
	}
	if err := os.Remove(filepath.Join(o.out, "scale_2/egg/neuron_00002_x0.npy")); err != nil {
		t.Fatal(err)
	}
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	var lost meniSummary
	if b, err := os.ReadFile(filepath.Join(o.out, "meni.json")); err != nil || json.Unmarshal(b, &lost) != nil {
		t.Fatalf("reading meni.json again: %v", err)
	}
	if _, ok := lost.Neurons[1].EGGBPD["2"]; ok {
		t.Error("neuron 2 at scale 2 has a naturalness without its image")
	}
	if _, ok := lost.Neurons[1].EGGBPD["1"]; !ok || lost.Median.EGGBPD["2"] != lost.Neurons[0].EGGBPD["2"] {
		t.Errorf("after losing one image: neuron 2 %v, median at scale 2 %v", lost.Neurons[1].EGGBPD, lost.Median.EGGBPD)
	}

	// Another naturalness seed scores every image again.
	o.natSeed = 4
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	var reseeded meniSummary
	if b, err := os.ReadFile(filepath.Join(o.out, "meni.json")); err != nil || json.Unmarshal(b, &reseeded) != nil {
		t.Fatalf("reading meni.json again: %v", err)
	}
	if reseeded.Naturalness.Fingerprint == sum.Naturalness.Fingerprint || reseeded.Neurons[0].EGGBPD["1"] == sum.Neurons[0].EGGBPD["1"] {
		t.Errorf("seed 4 kept fingerprint %s and bits/dim %v", reseeded.Naturalness.Fingerprint, reseeded.Neurons[0].EGGBPD["1"])
	}

	// Without naturalness: no bits/dim, no sweep page.
	o.natSteps = 0
	stdout.Reset()
	if err := runMENI(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	var off meniSummary
	if b, err := os.ReadFile(filepath.Join(o.out, "meni.json")); err != nil || json.Unmarshal(b, &off) != nil {
		t.Fatalf("reading meni.json: %v", err)
	}
	if off.Naturalness != nil || off.Median.EGGBPD != nil || off.Neurons[0].NaturalBPD != nil || off.Neurons[0].EGGBPD != nil {
		t.Errorf("naturalness off, yet meni.json has %+v", off)
	}
	if _, err := os.Stat(filepath.Join(o.out, "sweep.html")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("naturalness off, yet sweep.html is there (%v)", err)
	}
	if strings.Contains(stdout.String(), "bits/dim") {
		t.Errorf("naturalness off, yet the table has bits/dim:\n%s", stdout.String())
	}
}

// checkMENINaturalness checks the naturalness of a meni run: finite bits/dim for every
// image, medians that are the medians of the per-neuron values, EGG images kept in the
// prior's space that make the run's model inputs, scores equal to scoring the images
// afresh, and the sweep page.
func checkMENINaturalness(t *testing.T, o *meniOptions, sum meniSummary) {
	t.Helper()
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v > 0 }
	if sum.Naturalness == nil || sum.Naturalness.Steps != 6 || sum.Naturalness.Timesteps != 1000 || len(sum.Naturalness.Evaluated) != 6 {
		t.Fatalf("naturalness settings %+v", sum.Naturalness)
	}
	var best, top []float64
	perScale := map[string][]float64{}
	for _, l := range sum.Neurons {
		if l.NaturalBPD == nil || len(l.NaturalTopBPD) != o.top || *l.NaturalBPD != l.NaturalTopBPD[0] {
			t.Errorf("neuron %d: natural bits/dim %v, top %v", l.Neuron, l.NaturalBPD, l.NaturalTopBPD)
			continue
		}
		best = append(best, *l.NaturalBPD)
		for _, v := range l.NaturalTopBPD {
			if !finite(v) {
				t.Errorf("neuron %d: natural bits/dim %v", l.Neuron, v)
			}
			top = append(top, v)
		}
		for _, sc := range sum.Scales {
			v, ok := l.EGGBPD[sc]
			if !ok || !finite(v) {
				t.Errorf("neuron %d scale %s: EGG bits/dim %v (%v)", l.Neuron, sc, v, ok)
			}
			perScale[sc] = append(perScale[sc], v)
		}
	}
	medianOf := func(v []float64) float64 { m, _ := medianF64(v); return m }
	if sum.Median.NaturalBPD == nil || *sum.Median.NaturalBPD != medianOf(best) ||
		sum.Median.NaturalTopBPD == nil || *sum.Median.NaturalTopBPD != medianOf(top) {
		t.Errorf("natural medians %v, %v; want %v, %v", sum.Median.NaturalBPD, sum.Median.NaturalTopBPD, medianOf(best), medianOf(top))
	}
	for _, sc := range sum.Scales {
		if got, want := sum.Median.EGGBPD[sc], medianOf(perScale[sc]); got != want || len(perScale[sc]) != 2 {
			t.Errorf("scale %s: median %v bits/dim; the median of %v is %v", sc, got, perScale[sc], want)
		}
	}

	// The kept images are the EGG images, and their scores are their naturalness.
	dev := tensor.CPU(2)
	unet, _, err := o.prior.load(dev, true)
	if err != nil {
		t.Fatal(err)
	}
	full, err := meniFullSchedule(o.prior, unet.Config)
	if err != nil {
		t.Fatal(err)
	}
	est, err := naturalness.New(unet, full, naturalness.Config{Steps: o.natSteps, Seed: o.natSeed})
	if err != nil {
		t.Fatal(err)
	}
	tr := energy.Transform{Height: 20, Width: 20, Norm: o.norm}
	for _, l := range sum.Neurons {
		for _, sc := range sum.Scales {
			dir := filepath.Join(o.out, "scale_"+sc)
			x0, err := readX0(filepath.Join(dir, "egg", fmt.Sprintf("neuron_%05d_x0.npy", l.Neuron)), 1, 16)
			if err != nil {
				t.Fatal(err)
			}
			if !sameModelInput(dev, x0, 1, 16, tr, filepath.Join(dir, "egg", fmt.Sprintf("neuron_%05d.npy", l.Neuron))) {
				t.Errorf("neuron %d scale %s: the kept image does not make the run's model input", l.Neuron, sc)
			}
			other := sum.Neurons[1-slices.Index([]int{0, 2}, l.Neuron)].Neuron
			if sameModelInput(dev, x0, 1, 16, tr, filepath.Join(dir, "egg", fmt.Sprintf("neuron_%05d.npy", other))) {
				t.Errorf("neuron %d scale %s: the kept image makes neuron %d's model input too", l.Neuron, sc, other)
			}
			v, err := est.BitsPerDim(context.Background(), naturalness.Quantize(tensor.FromSlice(dev, x0, 1, 1, 16, 16)), nil)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(v[0]-l.EGGBPD[sc]) > 1e-6*v[0] {
				t.Errorf("neuron %d scale %s: %v bits/dim in meni.json, %v scored afresh", l.Neuron, sc, l.EGGBPD[sc], v[0])
			}
		}
	}
	nr, err := mei.ReadNatural(filepath.Join(o.out, "natural"), 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.Read(o.pool)
	if err != nil {
		t.Fatal(err)
	}
	x, err := naturalness.FromUint8(dev, p.Patch(nr.Hits[1].Index), 1, p.Size, 1)
	if err != nil {
		t.Fatal(err)
	}
	if x, err = naturalness.Fit(x, 1, 16); err != nil {
		t.Fatal(err)
	}
	v, err := est.BitsPerDim(context.Background(), naturalness.Quantize(x), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.Neurons[0].NaturalTopBPD[1]; math.Abs(v[0]-got) > 1e-6*v[0] {
		t.Errorf("neuron 0, second natural image: %v bits/dim in meni.json, %v scored afresh", got, v[0])
	}

	page, err := os.ReadFile(filepath.Join(o.out, "sweep.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"EGG scale 1", "EGG scale 2", "natural (top 3)", "train activation", "bits/dim"} {
		if !strings.Contains(string(page), w) {
			t.Errorf("sweep.html lacks %q", w)
		}
	}
	if n := strings.Count(string(page), "<svg"); n != 1 {
		t.Errorf("sweep.html has %d plots; want 1 (train; no truth models)", n)
	}
	if n := strings.Count(string(page), `class="pt"`); n != 2*2+2*3 {
		t.Errorf("sweep.html has %d points; want %d", n, 2*2+2*3)
	}
}

func TestMENIErrors(t *testing.T) {
	base := meniOptions{pool: "p.npz", train: "m.safetensors", neurons: "0", seeds: "0", scales: "1", norm: 50, top: 5, quiet: true,
		prior: priorOptions{weights: "prior.safetensors"}}
	for _, c := range []struct {
		name string
		edit func(o *meniOptions)
		want string
	}{
		{"no pool, no defaults", func(o *meniOptions) { o.pool = "" }, "no --pool given and this egg was built without"},
		{"no train, no defaults", func(o *meniOptions) { o.train = "" }, "no --train given and this egg was built without"},
		{"top", func(o *meniOptions) { o.top = 0 }, "--top"},
		{"scale", func(o *meniOptions) { o.scales = "1,x" }, "--scale"},
		{"negative scale", func(o *meniOptions) { o.scales = "-1" }, "--scale"},
		{"norm", func(o *meniOptions) { o.norm = -1 }, "--norm"},
		{"NaN norm", func(o *meniOptions) { o.norm = float32(math.NaN()) }, "--norm"},
		{"one naturalness step", func(o *meniOptions) { o.natSteps = 1 }, "--naturalness-steps 1: want 0"},
		{"negative naturalness steps", func(o *meniOptions) { o.natSteps = -5 }, "--naturalness-steps -5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.edit(&o)
			// Built-in defaults, were they used, are missing.
			g := &globalOptions{threads: 2, defaults: func() (*models.Set, error) { return nil, models.ErrMissing }}
			err := runMENI(context.Background(), g, &o)
			var ue usageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want a usage error with %q", err, c.want)
			}
		})
	}
}

// TestMENIDefaults runs egg meni with no model, prior or pool flags: the built-in
// defaults fill them, with every role and the naturalness of every image.
func TestMENIDefaults(t *testing.T) {
	if !models.Available() {
		t.Skip("this build has no built-in defaults (scripts/build-defaults.sh)")
	}
	set, err := models.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := &globalOptions{threads: 2, defaults: func() (*models.Set, error) { return set, nil }}
	o := &meniOptions{neurons: "5", seeds: "0", scales: "1,4", gradNorm: "sample", top: 2, batchSize: 4, out: t.TempDir(), quiet: true,
		natSteps: 3, prior: priorOptions{steps: "2", noiseSchedule: "linear", diffSteps: 1000}, stdout: io.Discard}
	if err := runMENI(context.Background(), g, o); err != nil {
		t.Fatal(err)
	}
	var sum meniSummary
	if b, err := os.ReadFile(filepath.Join(o.out, "meni.json")); err != nil || json.Unmarshal(b, &sum) != nil {
		t.Fatalf("reading meni.json: %v", err)
	}
	if sum.Pool != set.Pool || strings.Join(sum.Roles, ",") != "train,within,cross,truth" || len(sum.Models["prior"]) != 1 {
		t.Errorf("pool %s, roles %v, models %v", sum.Pool, sum.Roles, sum.Models)
	}
	l := sum.Neurons[0]
	if l.NaturalBPD == nil || len(l.EGGBPD) != 2 || len(l.EGG["4"]) != 4 {
		t.Errorf("neuron line %+v", l)
	}
	page, err := os.ReadFile(filepath.Join(o.out, "sweep.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), "<svg"); n != 2 {
		t.Errorf("sweep.html has %d plots; want 2 (train and truth)", n)
	}
}

// sameModelInput reports whether the model input tr makes of the image x0 is the one
// stored in the .npy file input.
func sameModelInput(dev *tensor.Device, x0 []float32, channels, size int, tr energy.Transform, input string) bool {
	a, err := npy.ReadFile(input)
	if err != nil {
		return false
	}
	want, err := a.Float32()
	if err != nil {
		return false
	}
	got := tr.Apply(tensor.FromSlice(dev, x0, 1, channels, size, size)).Data()
	if len(got) != len(want) {
		return false
	}
	scale := 1.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > 1e-4*scale {
			return false
		}
	}
	return true
}

// TestMENIShards: egg meni in two shards (--shard 0/2, 1/2) makes the run a whole
// run makes: the last shard merges it (naturalness, meni.json), and meni.json's
// numbers equal the whole run's.
func TestMENIShards(t *testing.T) {
	dir := t.TempDir()
	poolFile, m1, m2, priorFile := meniPoolFile(t, dir, 30), meniModelFile(t, dir, 1), meniModelFile(t, dir, 2), meniPriorFile(t, dir)
	run := func(out, shard string) {
		t.Helper()
		o := &meniOptions{
			pool: poolFile, train: m1, within: m2, neurons: "0-2", seeds: "0,1", scales: "1,2", norm: 10, gradNorm: "sample",
			top: 3, batchSize: 4, out: filepath.Join(dir, out), quiet: true, natSteps: 6, natSeed: 3, stdout: io.Discard,
			prior: priorOptions{weights: priorFile, steps: "3", noiseSchedule: "linear", diffSteps: 1000},
			jobs:  jobOptions{shard: shard},
		}
		if err := runMENI(context.Background(), testGlobal, o); err != nil {
			t.Fatal(err)
		}
	}
	run("whole", "")
	for i, sh := range []string{"1/2", "0/2"} {
		run("sharded", sh)
		_, err := os.Stat(filepath.Join(dir, "sharded", "meni.json"))
		if (err == nil) != (i == 1) {
			t.Fatalf("after shard %s: meni.json exists %v", sh, err == nil)
		}
	}
	read := func(out string) meniSummary {
		var s meniSummary
		b, err := os.ReadFile(filepath.Join(dir, out, "meni.json"))
		if err != nil || json.Unmarshal(b, &s) != nil {
			t.Fatalf("%s/meni.json: %v", out, err)
		}
		return s
	}
	a, b := read("whole"), read("sharded")
	if len(a.Neurons) != 3 || !reflect.DeepEqual(a.Median, b.Median) || !reflect.DeepEqual(a.Neurons, b.Neurons) {
		t.Errorf("whole %+v\nsharded %+v", a.Median, b.Median)
	}
	if rs, err := jobs.Status(filepath.Join(dir, "sharded"), 0, ""); err != nil || !rs.Complete() {
		t.Errorf("status %+v, %v", rs, err)
	}
}
