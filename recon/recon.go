// Package recon reconstructs images from neural responses (egg-method.md sections 4,
// 5 and 7): given target responses, EGG steers a diffusion prior with the energy
// E = mean_j (r_j(x) - r_target_j)^2, and a gradient-descent baseline minimises the
// same loss directly on the model input. Both are scored by the response distance on
// the training model and on held-out models of the same ("within") and another
// ("cross") architecture.
//
// Layout of a run folder:
//
//	<out>/target_<id>.png      target | EGG | GD, side by side (model inputs, gray)
//	<out>/target_<id>_egg.npy  the EGG reconstruction, [1, 1, H, W] float32
//	<out>/target_<id>_gd.npy   the GD reconstruction
//	<out>/target_<id>_target.npy the target image as the model sees it
//	<out>/target_<id>.json     the record (written last: its presence means done)
//	<out>/summary.json         medians over targets, per method and role
package recon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"

	"egg/energy"
	"egg/guidance"
	"egg/imageio"
	"egg/mei"
	"egg/npy"
	"egg/stats"
	"egg/tensor"
)

// Model maps model inputs [N, 1, H, W] to responses [N, neurons].
type Model = energy.Model

// Roles lists the evaluation roles in report order.
var Roles = []string{"train", "within", "cross"}

// Methods lists the reconstruction methods; "target" scores the target image itself
// (the floor a perfect reconstruction reaches).
var Methods = []string{"egg", "gd", "target"}

// Models are the models a reconstruction is driven (Train) and judged by.
type Models struct {
	Train, Within, Cross Model
	Files                map[string][]mei.FileHash
}

func (m Models) byRole(r string) Model {
	switch r {
	case "train":
		return m.Train
	case "within":
		return m.Within
	case "cross":
		return m.Cross
	}
	return nil
}

// Targets are the images to reconstruct and the responses that describe them.
type Targets struct {
	IDs       []int          // one id per target (its index in the source), names the files
	Images    *tensor.Tensor // [N, 1, H, W] model inputs
	Responses *tensor.Tensor // [N, neurons] target responses
	// Neurons, when set, restricts the loss and the distances to these neurons (for
	// recorded responses where some neurons were not recorded).
	Neurons []int
}

// Distance returns, per sample, the mean over neurons of (r(x) - target)^2, where
// r is m's response to the model inputs x [N, 1, H, W] and target is [N, neurons]
// (restricted to neurons when not nil). No gradients are recorded.
func Distance(m Model, x, target *tensor.Tensor, neurons []int) []float32 {
	e := loss(m, x.Detach(), target, neurons)
	return e.Values()
}

// loss is the differentiable per-sample matching loss.
func loss(m Model, x, target *tensor.Tensor, neurons []int) *tensor.Tensor {
	r := m.Forward(x)
	if neurons != nil {
		r = tensor.Select(r, 1, neurons)
		target = tensor.Select(target, 1, neurons)
	}
	return tensor.Mean(tensor.Pow(tensor.Sub(r, target), 2), false, 1)
}

// GDConfig is the gradient-descent baseline: AdamW on the model input, a Gaussian
// blur of the image after every step and a rescale to a fixed L2 norm.
type GDConfig struct {
	MaxSteps    int     `json:"max_steps"` // updates at most
	LR          float64 `json:"lr"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	BlurSigma   float64 `json:"blur_sigma"` // blur of the image after each step; 0: none
	Norm        float32 `json:"norm"`       // L2 norm of each image after each step; 0: none
}

// DefaultGD is the paper's baseline: AdamW lr 0.05 (betas 0.9/0.999, eps 1e-8,
// weight decay 0.01 as torch's default), up to 5000 steps, image blur sigma 1,
// norm 60.
func DefaultGD() GDConfig {
	return GDConfig{MaxSteps: 5000, LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, BlurSigma: 1, Norm: 60}
}

// GDResult is the outcome of a gradient-descent run, per sample.
type GDResult struct {
	Image   *tensor.Tensor // [N, 1, H, W], the kept images
	Loss    []float32      // the loss of each kept image on the model
	Steps   []int          // updates made before the image was kept
	Stopped []bool         // stopped early: the loss fell below the threshold
}

// GD minimises the matching loss of each sample of x0 [N, 1, H, W] (not modified)
// on m by AdamW (torch.optim.AdamW's update, in float64 per element). Before each
// update the loss of the current image is evaluated; a sample whose loss is below
// stop[k] (stop may be nil) is kept as it is and leaves the batch, so that a batch
// gives the same images as one run per sample. After MaxSteps updates the last
// images are kept. It returns an error if the loss turns NaN or infinite.
func GD(ctx context.Context, m Model, x0, target *tensor.Tensor, neurons []int, stop []float32, cfg GDConfig) (GDResult, error) {
	if cfg.MaxSteps < 0 || !(cfg.LR > 0) {
		return GDResult{}, fmt.Errorf("recon: need max steps >= 0 and a positive learning rate (got %d, %g)", cfg.MaxSteps, cfg.LR)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	n := x0.Dim(0)
	if stop != nil && len(stop) != n {
		return GDResult{}, fmt.Errorf("recon: %d thresholds for %d samples", len(stop), n)
	}
	shape := x0.Shape()
	per := x0.Len() / n
	dev := x0.Device()
	res := GDResult{Image: tensor.New(dev, shape...), Loss: make([]float32, n), Steps: make([]int, n), Stopped: make([]bool, n)}
	x := x0.Values()
	mom := make([]float64, len(x))
	vel := make([]float64, len(x))
	active := make([]int, n)
	for k := range active {
		active[k] = k
	}
	tgt := target.Detach()
	for step := 0; len(active) > 0; step++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// Gather the active samples.
		buf := make([]float32, len(active)*per)
		for j, k := range active {
			copy(buf[j*per:(j+1)*per], x[k*per:(k+1)*per])
		}
		bshape := append([]int{len(active)}, shape[1:]...)
		xb := tensor.FromSlice(dev, buf, bshape...).SetRequiresGrad(true)
		e := loss(m, xb, tensor.Select(tgt, 0, active), neurons)
		ev := e.Values() // e is used again below (the gradient)
		var keep []int
		for j, k := range active {
			v := ev[j]
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return res, fmt.Errorf("recon: the loss of sample %d is %v at step %d; lower --gd-lr", k, v, step)
			}
			done := step == cfg.MaxSteps
			if stop != nil && v < stop[k] {
				done, res.Stopped[k] = true, true
			}
			if done {
				// No op uses res.Image before GD returns: writing its Data is safe.
				copy(res.Image.Data()[k*per:(k+1)*per], x[k*per:(k+1)*per])
				res.Loss[k], res.Steps[k] = v, step
				continue
			}
			keep = append(keep, j)
		}
		if len(keep) == 0 {
			break
		}
		g := tensor.Grad(tensor.Sum(e, false), nil, xb)[0].Data()
		t := float64(step + 1)
		bc1 := 1 - math.Pow(cfg.Beta1, t)
		bc2 := 1 - math.Pow(cfg.Beta2, t)
		next := make([]float32, len(keep)*per)
		var idx []int
		for i, j := range keep {
			k := active[j]
			idx = append(idx, k)
			for q := 0; q < per; q++ {
				p := k*per + q
				gr := float64(g[j*per+q])
				w := float64(x[p]) * (1 - cfg.LR*cfg.WeightDecay)
				mom[p] = cfg.Beta1*mom[p] + (1-cfg.Beta1)*gr
				vel[p] = cfg.Beta2*vel[p] + (1-cfg.Beta2)*gr*gr
				denom := math.Sqrt(vel[p])/math.Sqrt(bc2) + cfg.Eps
				next[i*per+q] = float32(w - cfg.LR/bc1*mom[p]/denom)
			}
		}
		nt := tensor.FromSlice(dev, next, append([]int{len(keep)}, shape[1:]...)...)
		if cfg.BlurSigma > 0 {
			nt = tensor.GaussianBlur(nt, cfg.BlurSigma)
		}
		if cfg.Norm > 0 {
			nt = tensor.ChangeNorm(nt, cfg.Norm)
		}
		nv := nt.Data() // nt is not used again
		for i, k := range idx {
			copy(x[k*per:(k+1)*per], nv[i*per:(i+1)*per])
		}
		active = idx
	}
	return res, nil
}

// Prior is the diffusion model EGG steers.
type Prior = mei.Prior

// EGG reconstructs the targets by energy-guided diffusion with the energy
// energy.Match on m and per-sample gradient normalisation; sample k's noise comes
// from rngs[k]. It returns the model inputs: the transform of the last x0 prediction.
func EGG(ctx context.Context, p *Prior, m Model, tr energy.Transform, target *tensor.Tensor, neurons []int, scale float64, rngs []*rand.Rand) (img *tensor.Tensor, err error) {
	dev := target.Device()
	e := energy.Match{Model: m, Transform: tr, Target: target.Detach(), Neurons: neurons}
	xT := guidance.Noise(dev, rngs, len(rngs), p.Channels, p.Size, p.Size)
	res, err := guidance.Sample(ctx, p.Denoiser, p.Schedule, xT, e, rngs, guidance.Options{Scale: scale, Norm: guidance.PerSample, ClipX0: p.ClipX0})
	if err != nil {
		return nil, fmt.Errorf("recon: %w; try a smaller --scale", err)
	}
	return tr.Apply(res.X0).Detach(), nil
}

// Settings are the choices of a run, recorded with every target.
type Settings struct {
	Source    string   `json:"source"`   // where the targets came from
	Recorded  bool     `json:"recorded"` // recorded responses (else the train model's)
	Scale     float64  `json:"scale"`    // EGG energy scale
	Steps     int      `json:"steps"`    // respaced diffusion steps
	Norm      float32  `json:"norm"`     // L2 norm of the EGG input (before the clip)
	ClipLo    float32  `json:"clip_lo"`  // with ClipLo < ClipHi, EGG inputs are clipped
	ClipHi    float32  `json:"clip_hi"`
	PriorName string   `json:"prior"`
	Seed      uint64   `json:"seed"` // noise of target id: PCG(Seed, id) (EGG), PCG(Seed, id | 1<<40) (GD init)
	BatchSize int      `json:"batch_size"`
	InputH    int      `json:"input_h"`
	InputW    int      `json:"input_w"`
	GD        GDConfig `json:"gd"`
	// NoSummary leaves summary.json out: a shard of a run writes only its records,
	// and SummarizeDir makes the run's summary once every shard is done.
	NoSummary bool `json:"-"`
}

// Record is what a run keeps for one target.
type Record struct {
	Target int `json:"target"`
	// Distance holds, per method and role, the mean squared difference between the
	// role model's responses to the reconstruction and the target responses.
	Distance map[string]map[string]float32 `json:"distance"`
	// DistanceOwn is the same against the role model's own responses to the target
	// image (its view of how well the image is reconstructed).
	DistanceOwn map[string]map[string]float32 `json:"distance_own"`
	GDSteps     int                           `json:"gd_steps"`
	GDStopped   bool                          `json:"gd_stopped_early"`
	EGGSeconds  float64                       `json:"egg_seconds"`
	GDSeconds   float64                       `json:"gd_seconds"`
	Settings    Settings                      `json:"settings"`
	Models      map[string][]mei.FileHash     `json:"models"`
	Image       string                        `json:"image"`
	Inputs      map[string]string             `json:"inputs"` // method -> .npy
	Finished    time.Time                     `json:"finished"`
}

// Summary is a run's result over targets.
type Summary struct {
	Targets     int                           `json:"targets"`
	Median      map[string]map[string]float32 `json:"median"`     // method -> role -> median distance
	MedianOwn   map[string]map[string]float32 `json:"median_own"` // the same for DistanceOwn
	GDStopped   int                           `json:"gd_stopped_early"`
	MedianSteps float64                       `json:"gd_median_steps"`
	Settings    Settings                      `json:"settings"`
	Records     []Record                      `json:"-"`
}

// Progress is told about each finished target.
type Progress interface {
	Add(n int) error
}

func base(id int) string { return fmt.Sprintf("target_%05d", id) }

// ReadRecord reads the record of target id from dir.
func ReadRecord(dir string, id int) (Record, error) {
	var r Record
	b, err := os.ReadFile(filepath.Join(dir, base(id)+".json"))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Target != id {
		return r, fmt.Errorf("recon: record of target %d holds target %d", id, r.Target)
	}
	return r, nil
}

// Run reconstructs the targets by EGG and GD with settings s, writes every target's
// files under out and out/summary.json, and returns the summary. Targets whose record
// exists are loaded, not recomputed. It stops early, leaving finished targets on
// disk, when ctx is cancelled.
func Run(ctx context.Context, s Settings, t Targets, models Models, prior *Prior, out string, progress Progress) (Summary, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if models.Train == nil {
		return Summary{}, errors.New("recon: a training model is required")
	}
	if prior == nil {
		return Summary{}, errors.New("recon: a diffusion prior is required")
	}
	n := len(t.IDs)
	if t.Images.Dim(0) != n || t.Responses.Dim(0) != n {
		return Summary{}, fmt.Errorf("recon: %d ids, %d images, %d responses", n, t.Images.Dim(0), t.Responses.Dim(0))
	}
	if s.BatchSize <= 0 {
		s.BatchSize = 8
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return Summary{}, fmt.Errorf("recon: cannot create the output folder: %w", err)
	}
	var done []Record
	var todo []int // positions in t
	for i, id := range t.IDs {
		if r, err := ReadRecord(out, id); err == nil {
			if d := differs(r, s, models.Files); d != "" {
				return Summary{}, fmt.Errorf("recon: %s holds target %d's reconstruction made with other %s: give another --out, or delete its records to remake them", out, id, d)
			}
			done = append(done, r)
			if progress != nil {
				progress.Add(1)
			}
			continue
		}
		todo = append(todo, i)
	}
	tr := energy.Transform{Height: s.InputH, Width: s.InputW, Norm: s.Norm, ClipLo: s.ClipLo, ClipHi: s.ClipHi}
	for start := 0; start < len(todo); start += s.BatchSize {
		if err := ctx.Err(); err != nil {
			return Summary{}, fmt.Errorf("recon: interrupted; %d targets are finished in %s, run again to resume", len(done), out)
		}
		pos := todo[start:min(start+s.BatchSize, len(todo))]
		imgs := tensor.Select(t.Images, 0, pos)
		tgt := tensor.Select(t.Responses, 0, pos)
		rngs := make([]*rand.Rand, len(pos))
		gdRngs := make([]*rand.Rand, len(pos))
		for k, p := range pos {
			rngs[k] = rand.New(rand.NewPCG(s.Seed, uint64(t.IDs[p])))
			gdRngs[k] = rand.New(rand.NewPCG(s.Seed, uint64(t.IDs[p])|1<<40))
		}
		t0 := time.Now()
		egg, err := EGG(ctx, prior, models.Train, tr, tgt, t.Neurons, s.Scale, rngs)
		if err != nil {
			return Summary{}, err
		}
		eggSecs := time.Since(t0).Seconds() / float64(len(pos))
		thresh := Distance(models.Train, egg, tgt, t.Neurons)
		t0 = time.Now()
		x0 := guidance.Noise(imgs.Device(), gdRngs, len(pos), 1, s.InputH, s.InputW)
		gd, err := GD(ctx, models.Train, x0, tgt, t.Neurons, thresh, s.GD)
		if err != nil {
			if ctx.Err() != nil {
				return Summary{}, fmt.Errorf("recon: interrupted; %d targets are finished in %s, run again to resume", len(done), out)
			}
			return Summary{}, err
		}
		gdSecs := time.Since(t0).Seconds() / float64(len(pos))
		inputs := map[string]*tensor.Tensor{"egg": egg, "gd": gd.Image, "target": imgs}
		dist := map[string]map[string][]float32{}
		own := map[string]map[string][]float32{}
		for _, role := range Roles {
			m := models.byRole(role)
			if m == nil {
				continue
			}
			ownTarget := m.Forward(imgs.Detach()).Detach()
			for _, meth := range Methods {
				if dist[meth] == nil {
					dist[meth], own[meth] = map[string][]float32{}, map[string][]float32{}
				}
				dist[meth][role] = Distance(m, inputs[meth], tgt, t.Neurons)
				own[meth][role] = Distance(m, inputs[meth], ownTarget, t.Neurons)
			}
		}
		per := s.InputH * s.InputW
		host := map[string][]float32{}
		for _, meth := range Methods {
			host[meth] = inputs[meth].Values()
		}
		for k, p := range pos {
			id := t.IDs[p]
			rec := Record{Target: id, Distance: map[string]map[string]float32{}, DistanceOwn: map[string]map[string]float32{},
				GDSteps: gd.Steps[k], GDStopped: gd.Stopped[k], EGGSeconds: eggSecs, GDSeconds: gdSecs,
				Settings: s, Models: models.Files, Image: base(id) + ".png", Inputs: map[string]string{}}
			for meth, byRole := range dist {
				rec.Distance[meth], rec.DistanceOwn[meth] = map[string]float32{}, map[string]float32{}
				for role, v := range byRole {
					rec.Distance[meth][role] = v[k]
					rec.DistanceOwn[meth][role] = own[meth][role][k]
				}
			}
			var strip []float32
			for _, meth := range Methods {
				v := host[meth][k*per : (k+1)*per]
				strip = append(strip, v...)
				name := base(id) + "_" + meth + ".npy"
				arr, err := npy.EncodeBytes(npy.Float32s(v, 1, 1, s.InputH, s.InputW))
				if err != nil {
					return Summary{}, err
				}
				if err := imageio.WriteFileAtomic(filepath.Join(out, name), arr); err != nil {
					return Summary{}, err
				}
				rec.Inputs[meth] = name
			}
			// target | EGG | GD share one gray scale, symmetric around 0.
			img, err := imageio.Grid(strip, 3, 1, s.InputH, s.InputW, 3, 2, symRange(strip))
			if err != nil {
				return Summary{}, err
			}
			if err := imageio.WritePNG(filepath.Join(out, rec.Image), img); err != nil {
				return Summary{}, err
			}
			rec.Finished = time.Now().UTC()
			j, err := json.MarshalIndent(rec, "", "  ")
			if err != nil { // a NaN distance: a model that outputs NaN
				return Summary{}, fmt.Errorf("recon: the record of target %d: %w (does a model output NaN?)", id, err)
			}
			if err := imageio.WriteFileAtomic(filepath.Join(out, base(id)+".json"), j); err != nil {
				return Summary{}, err
			}
			done = append(done, rec)
			if progress != nil {
				progress.Add(1)
			}
		}
	}
	sum := Summarise(s, done)
	if s.NoSummary {
		return sum, nil
	}
	return sum, writeSummary(out, sum)
}

// differs says how a record's settings or model files differ from the run's, or ""
// (the batch size and the prior's path do not count; the files' hashes do).
func differs(r Record, s Settings, files map[string][]mei.FileHash) string {
	a, b := r.Settings, s
	a.BatchSize, b.BatchSize, a.PriorName, b.PriorName = 0, 0, "", ""
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		return fmt.Sprintf("settings (%s; now %s)", ja, jb)
	}
	return mei.FilesDiffer(r.Models, files)
}

func writeSummary(out string, sum Summary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return fmt.Errorf("recon: summary: %w", err)
	}
	return imageio.WriteFileAtomic(filepath.Join(out, "summary.json"), b)
}

// RecordName is the record file of target id in a run folder, as a fmt pattern.
const RecordName = "target_%05d.json"

// SummarizeDir reads the records of targets ids in out (a run made by several
// shards) and writes the run's summary.json, with the settings of the first.
func SummarizeDir(out string, ids []int) (Summary, error) {
	var recs []Record
	for _, id := range ids {
		r, err := ReadRecord(out, id)
		if err != nil {
			return Summary{}, fmt.Errorf("recon: the record of target %d: %w", id, err)
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return Summary{}, errors.New("recon: no records to summarize")
	}
	sum := Summarise(recs[0].Settings, recs)
	return sum, writeSummary(out, sum)
}

func symRange(v []float32) imageio.Range {
	m := float32(1e-6)
	for _, x := range v {
		m = max(m, float32(math.Abs(float64(x))))
	}
	return imageio.Range{Lo: -m, Hi: m}
}

// Summarise takes the medians over records, per method and role.
func Summarise(s Settings, recs []Record) Summary {
	sort.Slice(recs, func(i, j int) bool { return recs[i].Target < recs[j].Target })
	sum := Summary{Targets: len(recs), Median: map[string]map[string]float32{}, MedianOwn: map[string]map[string]float32{}, Settings: s, Records: recs}
	var steps []float64
	for _, r := range recs {
		steps = append(steps, float64(r.GDSteps))
		if r.GDStopped {
			sum.GDStopped++
		}
	}
	if len(steps) > 0 {
		sum.MedianSteps = stats.Median(steps)
	}
	for _, meth := range Methods {
		for _, pair := range []struct {
			dst map[string]map[string]float32
			get func(Record) map[string]map[string]float32
		}{{sum.Median, func(r Record) map[string]map[string]float32 { return r.Distance }},
			{sum.MedianOwn, func(r Record) map[string]map[string]float32 { return r.DistanceOwn }}} {
			for _, role := range Roles {
				var v []float64
				for _, r := range recs {
					if x, ok := pair.get(r)[meth][role]; ok {
						v = append(v, float64(x))
					}
				}
				if len(v) == 0 {
					continue
				}
				if pair.dst[meth] == nil {
					pair.dst[meth] = map[string]float32{}
				}
				pair.dst[meth][role] = float32(stats.Median(v))
			}
		}
	}
	return sum
}
