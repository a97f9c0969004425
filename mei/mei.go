// Package mei makes most exciting inputs (MEIs) for many neurons at once, by
// energy-guided diffusion (EGG) or by gradient ascent (GA), evaluates them on held-out
// models, and writes one record per neuron so that interrupted runs resume.
//
// The published protocol (egg-method.md sections 3-5 and 7): each neuron gets seeds
// 0, 1, 2; the seed whose image drives the training ensemble most is kept; the kept
// image is then scored by the training ensemble ("train"), a held-out ensemble of the
// same architecture ("within"), an ensemble of another architecture ("cross") and,
// when known, the ground truth ("truth").
//
// Layout of a run folder:
//
//	<out>/<method>/neuron_<id>.png   the MEI as the model sees it (model input, gray)
//	<out>/<method>/neuron_<id>.npy   the model input, [1, 1, H, W] float32
//	<out>/<method>/neuron_<id>.json  the record (written last: its presence means done)
//	<out>/<method>/summary.json      medians over neurons
package mei

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"egg/ascent"
	"egg/diffusion"
	"egg/energy"
	"egg/guidance"
	"egg/imageio"
	"egg/npy"
	"egg/stats"
	"egg/tensor"
)

// Model is a model that predicts responses to model inputs [N, 1, H, W].
type Model = energy.Model

// ModelSet holds the models an MEI is driven and judged by. Train is required; the
// others may be nil.
type ModelSet struct {
	Train, Within, Cross, Truth Model
	// Files records, per role, the files each model came from with their SHA-256,
	// for provenance.
	Files map[string][]FileHash
}

// FileHash names a model file and its SHA-256.
type FileHash struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// roles lists the evaluation roles in report order.
var roles = []string{"train", "within", "cross", "truth"}

func (m ModelSet) byRole(r string) Model {
	switch r {
	case "train":
		return m.Train
	case "within":
		return m.Within
	case "cross":
		return m.Cross
	case "truth":
		return m.Truth
	}
	return nil
}

// Prior is the diffusion model EGG steers.
type Prior struct {
	Denoiser guidance.Denoiser
	Schedule *diffusion.Schedule
	Channels int // image channels of the prior
	Size     int // image size of the prior
	Name     string
	// ClipX0 clips the x0 prediction to [-1, 1] at every step (guided-diffusion's
	// clip_denoised; see guidance.Options.ClipX0).
	ClipX0 bool
}

// Settings are the choices of a run, recorded with every neuron.
type Settings struct {
	Method    string   `json:"method"` // "egg" or "ga"
	Seeds     []uint64 `json:"seeds"`
	BatchSize int      `json:"batch_size"` // samples per batch; 0: 8 on the CPU, what fits on a GPU
	InputH    int      `json:"input_h"`
	InputW    int      `json:"input_w"`
	Norm      float32  `json:"norm"` // L2 norm of the model input
	// EGG
	Scale     float64 `json:"energy_scale,omitempty"`
	GradNorm  string  `json:"grad_norm,omitempty"` // "sample" (default) or "batch"
	Steps     int     `json:"steps,omitempty"`     // respaced diffusion steps
	PriorName string  `json:"prior,omitempty"`
	// ClipX0 says that the prior's x0 prediction was clipped to [-1, 1] at every step
	// (guided-diffusion's clip_denoised): Run sets it from Prior.ClipX0.
	ClipX0 bool `json:"clip_x0,omitempty"`
	// GA
	GA *ascent.Config `json:"ga,omitempty"`
	// NoSummary leaves summary.json out: a shard of a run writes only its records,
	// and Summarize makes the run's summary once every shard is done.
	NoSummary bool `json:"-"`
}

// Record is what a run keeps for one neuron.
type Record struct {
	Neuron      int                   `json:"neuron"`
	Method      string                `json:"method"`
	Seed        uint64                `json:"seed"`        // the kept seed
	SeedTrain   map[string]float32    `json:"seed_train"`  // train activation of each seed's image
	Activations map[string]float32    `json:"activations"` // train, within, cross, truth
	Seconds     float64               `json:"seconds"`     // compute time for this neuron (all its seeds)
	Energy      []float32             `json:"energy,omitempty"`
	Settings    Settings              `json:"settings"`
	Models      map[string][]FileHash `json:"models"`
	Image       string                `json:"image"`
	Input       string                `json:"input"`
	// PriorImage (EGG) is the kept seed's last x0 prediction in the prior's space,
	// [C, S, S] float32 .npy: the image the model input was made from.
	PriorImage string    `json:"prior_image,omitempty"`
	Finished   time.Time `json:"finished"`
}

// Summary is a run's result over neurons.
type Summary struct {
	Method        string             `json:"method"`
	Neurons       int                `json:"neurons"`
	Median        map[string]float32 `json:"median"` // per role
	Mean          map[string]float32 `json:"mean"`
	SecondsPerMEI float64            `json:"seconds_per_mei"` // median over neurons, per seed
	Records       []Record           `json:"-"`
}

// Progress is told about each finished unit of work (a neuron and seed); a
// progress.Bar is one.
type Progress interface {
	Add(n int) error
}

// Run makes the MEIs of neurons with the settings s and writes them under out.
// Neurons whose record already exists are loaded, not recomputed. prior is needed
// for method "egg". It stops early, leaving every finished neuron on disk, when ctx
// is cancelled.
func Run(ctx context.Context, dev *tensor.Device, s Settings, neurons []int, models ModelSet, prior *Prior, out string, progress Progress) (Summary, error) {
	if models.Train == nil {
		return Summary{}, errors.New("mei: a training model is required")
	}
	if len(s.Seeds) == 0 {
		s.Seeds = []uint64{0}
	}
	// BatchSize 0: 8 on the CPU; on a GPU, one sample first to measure what a
	// sample takes, then as many as fit in the free memory.
	probe := false
	if s.BatchSize <= 0 {
		s.BatchSize = 8
		if m, ok := dev.Memory(); ok && m.Free > 0 {
			s.BatchSize, probe = 1, true
		}
	}
	if s.Method == "egg" && prior != nil {
		s.ClipX0 = prior.ClipX0
	}
	dir := filepath.Join(out, s.Method)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("mei: cannot create the output folder: %w", err)
	}
	var done []Record
	var todo []int
	for _, n := range neurons {
		if r, err := readRecord(dir, n); err == nil {
			if d := differs(r, s, models.Files); d != "" {
				return Summary{}, fmt.Errorf("mei: %s holds neuron %d's MEI made with other %s: give another --out, or delete its records to remake them", dir, n, d)
			}
			done = append(done, r)
			if progress != nil {
				progress.Add(len(s.Seeds))
			}
			continue
		}
		todo = append(todo, n)
	}
	// Work items are (neuron, seed) pairs, batched.
	type item struct {
		neuron int
		seed   uint64
	}
	var items []item
	for _, n := range todo {
		for _, sd := range s.Seeds {
			items = append(items, item{n, sd})
		}
	}
	results := map[int]map[uint64]result{}
	remaining := map[int]int{}
	for _, n := range todo {
		remaining[n] = len(s.Seeds)
		results[n] = map[uint64]result{}
	}
	tr := energy.Transform{Height: s.InputH, Width: s.InputW, Norm: s.Norm}
	for start, size := 0, 0; start < len(items); start += size {
		if err := ctx.Err(); err != nil {
			return Summary{}, interrupted(ctx, err, len(done), dir)
		}
		batch := items[start:min(start+s.BatchSize, len(items))]
		size = len(batch)
		ns := make([]int, len(batch))
		rngs := make([]*rand.Rand, len(batch))
		for k, it := range batch {
			ns[k] = it.neuron
			rngs[k] = rand.New(rand.NewPCG(it.seed, uint64(it.neuron)))
		}
		t0 := time.Now()
		var live0, every int64
		if probe {
			// Collect often during the probe so that the peak counts what one
			// sample needs, not the garbage a run leaves between collections.
			every = dev.SetCollectEvery(64 << 20)
			dev.ResetPeak()
			m, _ := dev.Memory()
			live0 = m.Live
		}
		var inputs, x0 *tensor.Tensor // x0: EGG's last x0 predictions, in the prior's space
		var trace [][]float32
		switch s.Method {
		case "egg":
			if prior == nil {
				return Summary{}, errors.New("mei: method egg needs a diffusion prior")
			}
			var err error
			if inputs, x0, trace, err = runEGG(ctx, dev, s, prior, tr, models.Train, ns, rngs); err != nil {
				return Summary{}, interrupted(ctx, err, len(done), dir)
			}
		case "ga":
			var err error
			if inputs, err = runGA(ctx, dev, s, models.Train, ns, rngs); err != nil {
				return Summary{}, interrupted(ctx, err, len(done), dir)
			}
		default:
			return Summary{}, fmt.Errorf("mei: unknown method %q (want egg or ga)", s.Method)
		}
		secs := time.Since(t0).Seconds() / float64(len(batch))
		if probe {
			probe = false
			dev.SetCollectEvery(every)
			m, _ := dev.Memory()
			s.BatchSize = fillBatch(m.Free, m.Peak-live0, len(items)-start-1)
			log.Printf("egg: mei: one sample took %.1f MiB of device memory, %.1f GiB are free: batches of %d",
				float64(m.Peak-live0)/(1<<20), float64(m.Free)/(1<<30), s.BatchSize)
		}
		train := respond(models.Train, inputs, ns)
		per := s.InputH * s.InputW
		in := inputs.Values()
		var x0v []float32
		x0per := 0
		if x0 != nil {
			x0v, x0per = x0.Values(), x0.Len()/x0.Dim(0)
		}
		for k, it := range batch {
			r := result{input: in[k*per : (k+1)*per : (k+1)*per], train: train[k], seconds: secs}
			if trace != nil {
				r.energy = trace[k]
			}
			if x0v != nil {
				r.x0, r.x0Shape = x0v[k*x0per:(k+1)*x0per:(k+1)*x0per], x0.Shape()[1:]
			}
			results[it.neuron][it.seed] = r
			remaining[it.neuron]--
			if progress != nil {
				progress.Add(1)
			}
			if remaining[it.neuron] == 0 {
				rec, err := finish(dev, dir, s, it.neuron, results[it.neuron], models)
				if err != nil {
					return Summary{}, err
				}
				done = append(done, rec)
				delete(results, it.neuron)
			}
		}
	}
	sum := summarise(s.Method, done)
	if s.NoSummary {
		return sum, nil
	}
	return sum, writeSummary(dir, sum)
}

func writeSummary(dir string, sum Summary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return fmt.Errorf("mei: summary: %w", err)
	}
	return imageio.WriteFileAtomic(filepath.Join(dir, "summary.json"), b)
}

// Summarize reads the records of neurons in dir (a run's <out>/<method> folder,
// made by several shards) and writes the run's summary.json. A missing or damaged
// record is an error.
func Summarize(dir, method string, neurons []int) (Summary, error) {
	var recs []Record
	for _, n := range neurons {
		r, err := readRecord(dir, n)
		if err != nil {
			return Summary{}, fmt.Errorf("mei: the record of neuron %d: %w", n, err)
		}
		recs = append(recs, r)
	}
	sum := summarise(method, recs)
	return sum, writeSummary(dir, sum)
}

// interrupted is err, or, once ctx is done (a signal), the line that says what is
// kept and how to resume.
func interrupted(ctx context.Context, err error, done int, dir string) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("mei: interrupted; %d neurons are finished in %s, run again to resume", done, dir)
}

// fillBatch returns how many samples of perSample bytes fit in 80% of free
// bytes, at least 1 and at most left (the samples still to do) and 1024.
func fillBatch(free uint64, perSample int64, left int) int {
	if perSample <= 0 {
		return max(1, min(left, 8))
	}
	n := int(0.8 * float64(free) / float64(perSample))
	return max(1, min(n, left, 1024))
}

// finish picks the best seed of a neuron, evaluates it and writes its files.
func finish(dev *tensor.Device, dir string, s Settings, neuron int, rs map[uint64]result, models ModelSet) (Record, error) {
	seeds := make([]uint64, 0, len(rs))
	for sd := range rs {
		seeds = append(seeds, sd)
	}
	slices.Sort(seeds)
	best := seeds[0]
	rec := Record{Neuron: neuron, Method: s.Method, SeedTrain: map[string]float32{}, Activations: map[string]float32{},
		Settings: s, Models: models.Files}
	for _, sd := range seeds {
		r := rs[sd]
		rec.SeedTrain[fmt.Sprint(sd)] = r.train
		rec.Seconds += r.seconds
		if r.train > rs[best].train {
			best = sd
		}
	}
	b := rs[best]
	rec.Seed = best
	rec.Energy = b.energy
	x := tensor.FromSlice(dev, b.input, 1, 1, s.InputH, s.InputW)
	for _, role := range roles {
		if m := models.byRole(role); m != nil {
			rec.Activations[role] = respond(m, x, []int{neuron})[0]
		}
	}
	if err := checkFinite(rec); err != nil {
		return rec, err
	}
	base := fmt.Sprintf("neuron_%05d", neuron)
	rec.Image, rec.Input = base+".png", base+".npy"
	img, err := imageio.Image(b.input, 1, s.InputH, s.InputW, inputRange(b.input))
	if err != nil {
		return rec, err
	}
	if err := imageio.WritePNG(filepath.Join(dir, rec.Image), img); err != nil {
		return rec, err
	}
	arr, err := npy.EncodeBytes(npy.Float32s(b.input, 1, 1, s.InputH, s.InputW))
	if err != nil {
		return rec, err
	}
	if err := imageio.WriteFileAtomic(filepath.Join(dir, rec.Input), arr); err != nil {
		return rec, err
	}
	if b.x0 != nil {
		rec.PriorImage = base + "_x0.npy"
		arr, err := npy.EncodeBytes(npy.Float32s(b.x0, b.x0Shape...))
		if err != nil {
			return rec, err
		}
		if err := imageio.WriteFileAtomic(filepath.Join(dir, rec.PriorImage), arr); err != nil {
			return rec, err
		}
	}
	rec.Finished = time.Now().UTC()
	j, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return rec, fmt.Errorf("mei: the record of neuron %d: %w", neuron, err)
	}
	return rec, imageio.WriteFileAtomic(filepath.Join(dir, base+".json"), j)
}

// differs says how a record's settings or model files differ from the run's, or ""
// when they do not. The batch size (the results do not depend on it) and file
// paths (the same file may lie elsewhere on another machine) do not count; the
// files' hashes do.
func differs(r Record, s Settings, files map[string][]FileHash) string {
	a, b := r.Settings, s
	a.BatchSize, b.BatchSize, a.PriorName, b.PriorName = 0, 0, "", ""
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		return fmt.Sprintf("settings (%s; now %s)", ja, jb)
	}
	return FilesDiffer(r.Models, files)
}

// FilesDiffer says how two runs' model files differ by role, by their hashes (not
// their paths), or "" when they do not.
func FilesDiffer(a, b map[string][]FileHash) string {
	hashes := func(m map[string][]FileHash) string {
		var parts []string
		for _, role := range append(roles, "prior") {
			for _, h := range m[role] {
				parts = append(parts, role+":"+h.SHA256)
			}
		}
		return strings.Join(parts, " ")
	}
	if ha, hb := hashes(a), hashes(b); ha != hb {
		return fmt.Sprintf("model files (%s; now %s)", ha, hb)
	}
	return ""
}

// checkFinite refuses a record with a NaN or infinite response: a model that
// outputs NaN would otherwise leave a record JSON cannot hold.
func checkFinite(rec Record) error {
	bad := func(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }
	for _, role := range roles {
		if v, ok := rec.Activations[role]; ok && bad(v) {
			return fmt.Errorf("mei: neuron %d: the %s model's response to its MEI is %v (a damaged model file?); nothing was written for it", rec.Neuron, role, v)
		}
	}
	for sd, v := range rec.SeedTrain {
		if bad(v) {
			return fmt.Errorf("mei: neuron %d: the train model's response to seed %s's image is %v (a damaged model file, or a --scale or --lr too large?)", rec.Neuron, sd, v)
		}
	}
	return nil
}

// result is one (neuron, seed) outcome.
type result struct {
	input   []float32 // model input [1, H, W]
	train   float32   // the driving model's response to it
	seconds float64   // compute time
	energy  []float32 // EGG: the energy at every step
	x0      []float32 // EGG: the last x0 prediction, in the prior's space
	x0Shape []int     // its [C, S, S]
}

// inputRange maps a model input symmetrically around 0 to gray levels, so that 0 is
// mid-gray and the largest |value| is black or white.
func inputRange(v []float32) imageio.Range {
	m := float32(1e-6)
	for _, x := range v {
		m = max(m, float32(math.Abs(float64(x))))
	}
	return imageio.Range{Lo: -m, Hi: m}
}

// respond returns the response of sample k's neuron ns[k] to inputs x, without
// gradients.
func respond(m Model, x *tensor.Tensor, ns []int) []float32 {
	r := m.Forward(x.Detach())
	nn := r.Dim(1)
	v := r.Values()
	out := make([]float32, len(ns))
	for k, n := range ns {
		out[k] = v[k*nn+n]
	}
	return out
}

// runEGG returns the model inputs, the last x0 predictions (in the prior's space)
// and each sample's energies by step.
func runEGG(ctx context.Context, dev *tensor.Device, s Settings, p *Prior, tr energy.Transform, train Model, ns []int, rngs []*rand.Rand) (inputs, x0 *tensor.Tensor, trace [][]float32, err error) {
	norm, err := guidance.ParseNorm(s.GradNorm)
	if s.GradNorm == "" {
		norm, err = guidance.PerSample, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	e := energy.Activation{Model: train, Transform: tr, Neurons: ns}
	xT := guidance.Noise(dev, rngs, len(ns), p.Channels, p.Size, p.Size)
	trace = make([][]float32, len(ns))
	res, err := guidance.Sample(ctx, p.Denoiser, p.Schedule, xT, e, rngs, guidance.Options{
		Scale: s.Scale, Norm: norm, ClipX0: p.ClipX0,
		Callback: func(st guidance.Step) {
			for k, v := range st.Energy {
				trace[k] = append(trace[k], v)
			}
		},
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mei: %w; try a smaller --scale", err)
	}
	return tr.Apply(res.X0).Detach(), res.X0.Detach(), trace, nil
}

func runGA(ctx context.Context, dev *tensor.Device, s Settings, train Model, ns []int, rngs []*rand.Rand) (*tensor.Tensor, error) {
	cfg := ascent.Default()
	if s.GA != nil {
		cfg = *s.GA
	}
	x0 := guidance.Noise(dev, rngs, len(ns), 1, s.InputH, s.InputW)
	obj := func(x *tensor.Tensor) *tensor.Tensor {
		return energy.Activation{Model: train, Neurons: ns, Transform: energy.Transform{Height: s.InputH, Width: s.InputW}}.Responses(x)
	}
	res, err := ascent.Run(ctx, x0, obj, cfg, nil)
	if err != nil {
		return nil, err
	}
	return res.Image, nil
}

func readRecord(dir string, neuron int) (Record, error) {
	var r Record
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("neuron_%05d.json", neuron)))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Neuron != neuron {
		return r, fmt.Errorf("mei: record of neuron %d holds neuron %d", neuron, r.Neuron)
	}
	return r, nil
}

func summarise(method string, recs []Record) Summary {
	sort.Slice(recs, func(i, j int) bool { return recs[i].Neuron < recs[j].Neuron })
	s := Summary{Method: method, Neurons: len(recs), Median: map[string]float32{}, Mean: map[string]float32{}, Records: recs}
	for _, role := range roles {
		var v []float64
		for _, r := range recs {
			if a, ok := r.Activations[role]; ok {
				v = append(v, float64(a))
			}
		}
		if len(v) > 0 {
			s.Median[role] = float32(stats.Median(v))
			s.Mean[role] = float32(mean(v))
		}
	}
	var secs []float64
	for _, r := range recs {
		secs = append(secs, r.Seconds/float64(max(1, len(r.SeedTrain))))
	}
	if len(secs) > 0 {
		s.SecondsPerMEI = stats.Median(secs)
	}
	return s
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
