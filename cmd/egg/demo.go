package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"egg/ascent"
	"egg/checkpoint"
	"egg/imageio"
	"egg/mei"
	"egg/models"
	"egg/pool"
	"egg/progress"
	"egg/report"
	"egg/simulate"
	"egg/stats"
)

// The demo's defaults: the paper's MEI protocol (egg-method.md sections 3-5), scaled
// down so that the whole demo takes at most 3 minutes on a 2-core CPU.
const (
	demoPerKind    = 2       // default neurons: the first demoPerKind of each simulated kind
	demoSeeds      = "0,1,2" // the paper's seeds
	demoSteps      = "25"    // EGG respaced steps (paper: 100)
	demoScale      = 5.0     // EGG energy scale (the paper's)
	demoIterations = 250     // GA iterations (paper: 1000; the paper's 1:10 ratio to EGG steps)
	demoTop        = 5       // natural images per neuron
	demoBatch      = 9       // samples per batch: as fast per sample as all at once, and the progress bar moves
)

// demoOptions are the flags of `egg demo`.
type demoOptions struct {
	neurons    string
	seeds      string
	steps      string
	scale      float64
	iterations int
	norm       float32
	top        int
	batchSize  int
	out        string
	quiet      bool
	stdout     io.Writer
	maxPatches int // score only the first maxPatches patches of the pool (0: all; for tests)
}

func newDemoCmd(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run EGG against gradient ascent on the built-in models and write a report",
		Long: fmt.Sprintf(`demo runs the paper's MEI comparison end to end on egg's built-in defaults, with no
files of your own: the digital twins of 100 simulated V4 neurons, their ground truth,
the 32x32 diffusion prior and the natural-image pool.

For each neuron of --neurons (default: the first %d neurons of each simulated kind:
angle, curve, texture) it makes an MEI by EGG (--steps respaced steps, energy scale
--scale) and one by gradient ascent (--iterations), each the best of --seeds on the
training ensemble (attention twins, ensemble 1), and scores them on the held-out
ensemble of the same architecture (within), the Gaussian-readout ensemble (cross) and
the simulated neurons themselves (truth). It also finds the --top patches of the pool
that drive each neuron most. The model input's L2 norm is the paper's 25 at 100x100
scaled to 32x32 (8) unless --norm says otherwise; the natural patches get the same
norm.

The defaults are the paper's protocol scaled down to finish within about 3 minutes on
a 2-core CPU: %s EGG steps (paper: 100) at the paper's scale %g, %d GA iterations
(paper: 1000; both a quarter of the paper's), the paper's seeds %s.

Outputs in --out: egg/ and ga/ (egg mei's run folders), natural/ (the natural
images), report.html (egg report's page, with the natural images beside the MEIs) and
summary.json: per method (egg, ga) the median over neurons of the train, within,
cross and truth activations and the seconds per MEI, the same for the best natural
image, per-neuron values, the settings and the SHA-256 of every model file. Progress
goes to stderr; a table of the medians and the report's path to stdout. An
interrupted demo resumes where it stopped when run again with the same --out.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error.`, demoPerKind, demoSteps, demoScale, demoIterations, demoSeeds),
		Example: `  egg demo
  egg demo --out demo-big --neurons 0-19 --steps 100 --iterations 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.neurons, "neurons", "", fmt.Sprintf(`neurons: "all", or indices and ranges like 0,3,5-9 (default: the first %d of each kind)`, demoPerKind))
	f.StringVar(&o.seeds, "seeds", demoSeeds, "seeds; the best on the training ensemble is kept")
	f.StringVar(&o.steps, "steps", demoSteps, `EGG timestep respacing: "N", "ddimN" or "a,b,c"`)
	f.Float64Var(&o.scale, "scale", demoScale, "EGG energy scale (lambda)")
	f.IntVar(&o.iterations, "iterations", demoIterations, "GA iterations")
	f.Float32Var(&o.norm, "norm", 0, "L2 norm of the model input (0: the paper's 25 at 100x100, scaled: 25*sqrt(H*W)/100)")
	f.IntVar(&o.top, "top", demoTop, "natural images kept per neuron")
	f.IntVar(&o.batchSize, "batch-size", demoBatch, "samples (neuron x seed) per batch (0: all at once)")
	f.StringVar(&o.out, "out", "demo", "output folder")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bars or log lines")
	return cmd
}

// demoStats are the medians over neurons of one method (or of the best natural
// images, without seconds).
type demoStats struct {
	Neurons       int      `json:"neurons"`
	Train         *float64 `json:"train,omitempty"`
	Within        *float64 `json:"within,omitempty"`
	Cross         *float64 `json:"cross,omitempty"`
	Truth         *float64 `json:"truth,omitempty"`
	SecondsPerMEI *float64 `json:"seconds_per_mei,omitempty"`
}

// role returns the median of role r, and whether there is one.
func (s demoStats) role(r string) (float64, bool) {
	var p *float64
	switch r {
	case "train":
		p = s.Train
	case "within":
		p = s.Within
	case "cross":
		p = s.Cross
	case "truth":
		p = s.Truth
	}
	if p == nil {
		return 0, false
	}
	return *p, true
}

// demoNeuron is one neuron's line of summary.json.
type demoNeuron struct {
	Neuron  int                `json:"neuron"`
	Kind    string             `json:"kind,omitempty"` // of the simulated neuron
	EGG     map[string]float32 `json:"egg"`            // role -> activation of the kept MEI
	GA      map[string]float32 `json:"ga"`
	Natural map[string]float32 `json:"natural"` // of the best natural image
}

// demoSettings are the demo's choices, recorded in summary.json.
type demoSettings struct {
	Neurons      []int    `json:"neurons"`
	Seeds        []uint64 `json:"seeds"`
	Norm         float32  `json:"norm"`
	InputH       int      `json:"input_h"`
	InputW       int      `json:"input_w"`
	EGGSteps     int      `json:"egg_steps"`
	EGGRespacing string   `json:"egg_respacing"`
	EnergyScale  float64  `json:"energy_scale"`
	GradNorm     string   `json:"grad_norm"`
	ClipX0       bool     `json:"clip_x0"` // the prior's x0 prediction clipped to [-1, 1] (egg mei --clip-x0)
	GAIterations int      `json:"ga_iterations"`
	GALR         float64  `json:"ga_lr"`
	GABlur       float64  `json:"ga_blur_sigma"`
	Top          int      `json:"top_natural"`
	BatchSize    int      `json:"batch_size"`
	Threads      int      `json:"threads"`
}

// demoSummary is summary.json.
type demoSummary struct {
	EGG     demoStats `json:"egg"`
	GA      demoStats `json:"ga"`
	Natural demoStats `json:"natural"`
	// TimeRatio is GA's seconds per MEI over EGG's.
	TimeRatio   float64                   `json:"time_ratio_ga_to_egg"`
	Neurons     []demoNeuron              `json:"neurons"`
	Settings    demoSettings              `json:"settings"`
	Models      map[string][]mei.FileHash `json:"models"`
	Report      string                    `json:"report"`
	WallSeconds float64                   `json:"wall_seconds"` // of the last invocation
}

var demoRoles = []string{"train", "within", "cross", "truth"}

func runDemo(ctx context.Context, g *globalOptions, o *demoOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	stdout := o.stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	start := time.Now()
	// The demo's tensors are small (32x32 images), so it collects garbage less often
	// than main's setting, which keeps the peak memory of 256x256 diffusion steps low
	// (about 20% faster here); GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(100))
	}
	seeds, err := parseSeeds(o.seeds)
	if err != nil {
		return err
	}
	switch {
	case o.iterations < 1:
		return usagef("--iterations %d: want at least 1", o.iterations)
	case !(o.scale > 0):
		return usagef("--scale %v: want a positive energy scale", o.scale)
	case o.top < 1:
		return usagef("--top %d: want at least 1", o.top)
	case o.batchSize < 0:
		return usagef("--batch-size %d: want 0 (all at once) or more", o.batchSize)
	case o.norm < 0 || math.IsNaN(float64(o.norm)):
		return usagef("--norm %v: want a positive L2 norm (or 0 for the paper's, scaled to the input size)", o.norm)
	}
	logf := stderrLog(o.quiet)
	set, err := g.builtin()
	if err != nil {
		if errors.Is(err, models.ErrMissing) {
			return errors.New("egg demo runs on the built-in defaults, and this egg was built without them (models/data is empty): run scripts/build-defaults.sh, then rebuild egg")
		}
		return fmt.Errorf("egg demo: %w", err)
	}
	logf("egg demo: built-in defaults in %s (%.1f s)", set.Dir, time.Since(start).Seconds())
	train, within, cross := set.Roles()
	dev, err := g.device()
	if err != nil {
		return err
	}
	ms, tm, err := loadModelSet(dev, strings.Join(train, ","), strings.Join(within, ","), strings.Join(cross, ","), set.Truth)
	if err != nil {
		return fmt.Errorf("loading the built-in models: %w", err)
	}
	var truth *simulate.Model
	if t, ok := ms.Truth.(*simulate.Model); ok {
		truth = t
	}
	neurons, err := demoNeurons(o.neurons, tm.Neurons(), truth)
	if err != nil {
		return err
	}
	shape := inputShape(tm)
	ih, iw := shape[1], shape[2]
	norm, err := resolveNorm(o.norm, paperNormMEI, ih, iw, logf)
	if err != nil {
		return err
	}
	po := priorOptions{weights: set.Prior, steps: o.steps, noiseSchedule: "linear", diffSteps: 1000, clipX0: "auto"}
	prior, _, err := po.loadPrior(dev, true)
	if err != nil {
		return fmt.Errorf("loading the built-in prior: %w", err)
	}
	sched, clipX0 := prior.Schedule, prior.ClipX0
	// Provenance: the records of each method name the files that made them; summary.json
	// names them all.
	files := map[string][]mei.FileHash{}
	for role, hs := range ms.Files {
		files[role] = hs
	}
	for role, path := range map[string]string{"prior": set.Prior, "pool": set.Pool} {
		h, err := checkpoint.FileSHA256(path)
		if err != nil {
			return fmt.Errorf("hashing the built-in %s: %w", role, err)
		}
		files[role] = []mei.FileHash{{Path: path, SHA256: h}}
	}
	batch := o.batchSize
	if batch == 0 {
		batch = len(neurons) * len(seeds)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("cannot create the output folder: %w", err)
	}
	kinds := map[int]string{}
	if truth != nil {
		d := truth.Describe()
		for _, n := range neurons {
			kinds[n] = d[n].Kind
		}
	}
	var names []string
	for _, n := range neurons {
		if k := kinds[n]; k != "" {
			names = append(names, fmt.Sprintf("%d (%s)", n, k))
		} else {
			names = append(names, fmt.Sprint(n))
		}
	}
	logf("egg demo: neurons %s; seeds %s; EGG %d steps at scale %g; GA %d iterations; input %dx%d, norm %.4g",
		strings.Join(names, ", "), o.seeds, sched.NumTimesteps, o.scale, o.iterations, ih, iw, norm)

	ga := ascent.Default()
	ga.Iterations, ga.Norm = o.iterations, norm
	settings := map[string]mei.Settings{
		report.EGG: {Method: report.EGG, Seeds: seeds, BatchSize: batch, InputH: ih, InputW: iw, Norm: norm,
			Scale: o.scale, GradNorm: "sample", Steps: sched.NumTimesteps, PriorName: set.Prior, ClipX0: clipX0},
		report.GA: {Method: report.GA, Seeds: seeds, BatchSize: batch, InputH: ih, InputW: iw, Norm: norm, GA: &ga},
	}
	sums := map[string]mei.Summary{}
	for _, method := range []string{report.EGG, report.GA} {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted; finished work is in %s, run egg demo again to resume", o.out)
		}
		s := settings[method]
		bar := progress.New(os.Stderr, len(neurons)*len(seeds), progress.Options{Description: method + " MEIs", Unit: "MEIs", Hidden: o.quiet})
		var p *mei.Prior
		run := ms
		run.Files = map[string][]mei.FileHash{}
		for _, role := range demoRoles {
			if hs, ok := files[role]; ok {
				run.Files[role] = hs
			}
		}
		if method == report.EGG {
			p = prior
			run.Files["prior"] = files["prior"]
		}
		t0 := time.Now()
		sum, err := mei.Run(ctx, dev, s, neurons, run, p, o.out, bar)
		bar.Finish()
		if !o.quiet {
			fmt.Fprintln(os.Stderr)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted; finished work is in %s, run egg demo again to resume", o.out)
			}
			return fmt.Errorf("%s MEIs: %w", method, err)
		}
		logf("egg demo: %s MEIs in %s (%.1f s)", method, filepath.Join(o.out, method), time.Since(t0).Seconds())
		var other []int
		for _, r := range sum.Records {
			// The batch size does not change the images (every sample has its own
			// noise and gradient normalisation).
			a, b := r.Settings, s
			a.BatchSize, b.BatchSize = 0, 0
			if !reflect.DeepEqual(a, b) {
				other = append(other, r.Neuron)
			}
		}
		if len(other) > 0 {
			logf("note: %d %s records in %s (neurons %v) were made by an earlier run with other settings and were kept; delete the folder to remake them",
				len(other), method, filepath.Join(o.out, method), other)
		}
		sums[method] = sum
	}

	t0 := time.Now()
	natural, err := mei.FindNatural(ctx, dev, filepath.Join(o.out, report.NaturalDir), ms, neurons, mei.NaturalSearch{
		PoolPath: set.Pool, InputH: ih, InputW: iw, Norm: norm, Top: o.top, Batch: max(256, 8*batch),
		Load: func() (*pool.Pool, error) {
			p, err := pool.Read(set.Pool)
			if err != nil {
				return nil, fmt.Errorf("reading the built-in pool: %w", err)
			}
			if o.maxPatches > 0 && o.maxPatches < p.Len() {
				p.Images, p.Tiers, p.Sources = p.Images[:o.maxPatches*p.Size*p.Size], p.Tiers[:o.maxPatches], p.Sources[:o.maxPatches]
			}
			return p, nil
		},
		Logf: func(format string, a ...any) { logf("egg demo: "+format, a...) },
	})
	if errors.Is(err, mei.ErrTooFewPatches) {
		err = usageError{err}
	}
	if err != nil {
		return err
	}
	logf("egg demo: natural images in %s (%.1f s)", filepath.Join(o.out, report.NaturalDir), time.Since(t0).Seconds())
	page, err := report.Write(o.out, "")
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	sum := summariseDemo(neurons, kinds, sums, natural)
	sum.Settings = demoSettings{Neurons: neurons, Seeds: seeds, Norm: norm, InputH: ih, InputW: iw, EGGSteps: sched.NumTimesteps,
		EGGRespacing: o.steps, EnergyScale: o.scale, GradNorm: "sample", ClipX0: clipX0, GAIterations: ga.Iterations, GALR: ga.LR, GABlur: ga.BlurSigma, Top: o.top, BatchSize: batch, Threads: dev.Threads()}
	sum.Models, sum.Report = files, page
	sum.WallSeconds = time.Since(start).Seconds()
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return fmt.Errorf("writing summary.json: %w", err)
	}
	if err := imageio.WriteFileAtomic(filepath.Join(o.out, "summary.json"), b); err != nil {
		return err
	}
	logf("egg demo: done in %.1f s", sum.WallSeconds)
	printDemoTable(stdout, sum)
	fmt.Fprintf(stdout, "report: %s\n", page)
	return nil
}

// demoNeurons reads --neurons, or picks the first demoPerKind neurons of each kind of
// the simulated population (angle, curve, texture), in index order; without the
// population's description, the first 3*demoPerKind neurons.
func demoNeurons(spec string, total int, truth *simulate.Model) ([]int, error) {
	if spec != "" {
		return parseNeurons(spec, total)
	}
	kinds := []string{simulate.Angle, simulate.Curve, simulate.Texture}
	if truth == nil {
		return parseNeurons(fmt.Sprintf("0-%d", min(total, demoPerKind*len(kinds))-1), total)
	}
	count := map[string]int{}
	var out []int
	for i, n := range truth.Describe() {
		if count[n.Kind] < demoPerKind {
			count[n.Kind]++
			out = append(out, i)
		}
	}
	return out, nil
}

// summariseDemo gives the medians and the per-neuron lines of summary.json.
func summariseDemo(neurons []int, kinds map[int]string, sums map[string]mei.Summary, natural map[int]mei.NaturalRecord) demoSummary {
	var s demoSummary
	recs := map[string]map[int]mei.Record{}
	for m, sum := range sums {
		recs[m] = map[int]mei.Record{}
		for _, r := range sum.Records {
			recs[m][r.Neuron] = r
		}
	}
	for _, n := range neurons {
		line := demoNeuron{Neuron: n, Kind: kinds[n], EGG: recs[report.EGG][n].Activations, GA: recs[report.GA][n].Activations}
		if nr, ok := natural[n]; ok && len(nr.Hits) > 0 {
			line.Natural = nr.Hits[0].Activations
		}
		s.Neurons = append(s.Neurons, line)
	}
	stats := func(get func(demoNeuron) map[string]float32) demoStats {
		var st demoStats
		for _, l := range s.Neurons {
			if len(get(l)) > 0 {
				st.Neurons++
			}
		}
		for _, r := range demoRoles {
			var v []float64
			for _, l := range s.Neurons {
				if x, ok := get(l)[r]; ok {
					v = append(v, float64(x))
				}
			}
			if len(v) == 0 {
				continue
			}
			m := stats.Median(v)
			switch r {
			case "train":
				st.Train = &m
			case "within":
				st.Within = &m
			case "cross":
				st.Cross = &m
			case "truth":
				st.Truth = &m
			}
		}
		return st
	}
	s.EGG = stats(func(l demoNeuron) map[string]float32 { return l.EGG })
	s.GA = stats(func(l demoNeuron) map[string]float32 { return l.GA })
	s.Natural = stats(func(l demoNeuron) map[string]float32 { return l.Natural })
	egg, ga := sums[report.EGG].SecondsPerMEI, sums[report.GA].SecondsPerMEI
	s.EGG.SecondsPerMEI, s.GA.SecondsPerMEI = &egg, &ga
	if egg > 0 {
		s.TimeRatio = ga / egg
	}
	return s
}

// printDemoTable prints the medians over neurons: one row per method and one for the
// best natural images, one column per role, and the seconds per MEI.
func printDemoTable(w io.Writer, s demoSummary) {
	fmt.Fprintf(w, "median over %d neurons (activations of the kept image; seconds per MEI)\n", len(s.Neurons))
	fmt.Fprintf(w, "%-14s", "")
	for _, r := range demoRoles {
		fmt.Fprintf(w, " %9s", r)
	}
	fmt.Fprintf(w, " %9s\n", "s/MEI")
	row := func(name string, st demoStats) {
		fmt.Fprintf(w, "%-14s", name)
		for _, r := range demoRoles {
			if v, ok := st.role(r); ok {
				fmt.Fprintf(w, " %9.4g", v)
			} else {
				fmt.Fprintf(w, " %9s", "-")
			}
		}
		if st.SecondsPerMEI != nil {
			fmt.Fprintf(w, " %9.3g\n", *st.SecondsPerMEI)
		} else {
			fmt.Fprintf(w, " %9s\n", "-")
		}
	}
	row("egg", s.EGG)
	row("ga", s.GA)
	row("natural (best)", s.Natural)
	if s.TimeRatio > 0 {
		fmt.Fprintf(w, "GA takes %.2gx the time of EGG per MEI\n", s.TimeRatio)
	}
}
