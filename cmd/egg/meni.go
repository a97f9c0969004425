package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"egg/adm"
	"egg/checkpoint"
	"egg/diffusion"
	"egg/imageio"
	"egg/mei"
	"egg/naturalness"
	"egg/npy"
	"egg/pool"
	"egg/priortrain"
	"egg/progress"
	"egg/report"
	"egg/stats"
	"egg/tensor"
)

// meniOptions are the flags of `egg meni`.
type meniOptions struct {
	pool                        string
	train, within, cross, truth string
	neurons, seeds, scales      string
	norm                        float32
	gradNorm                    string
	top                         int
	batchSize                   int
	out                         string
	quiet                       bool
	prior                       priorOptions
	// natSteps is K, the timesteps of the naturalness bound per image (0: off);
	// natSeed fixes them and their noise.
	natSteps int
	natSeed  uint64
	stdout   io.Writer
	jobs     jobOptions
	cmd      *cobra.Command // for --executor slurm: the task's command line
}

func newMENICmd(g *globalOptions) *cobra.Command {
	o := &meniOptions{}
	cmd := &cobra.Command{
		Use:   "meni",
		Short: "Most exciting natural images: EGG at low energy scales against the best pool patches",
		Long: `meni compares the most exciting natural images (MENIs) of EGG with the natural images of a
pool that drive each neuron most (egg-method.md sections 4 and 7).

Natural images: every patch of --pool (all tiers) becomes a model input as EGG's
images do (pixels to [-1, 1], resize to the model input, L2 norm --norm) and is scored
by the --train models; the --top best patches per neuron are kept and scored by every
role (--within, --cross, --truth). Written to --out/natural/neuron_<id>.png (the
patches as model inputs, best first) and .json.

EGG: for each energy scale of --scale, egg mei --method egg runs into
--out/scale_<s>/egg/ (each a resumable run folder), with --steps respaced steps and
input norm --norm.

The EGG image of each neuron is also kept in the prior's own space, as the x0
prediction of the last step: --out/scale_<s>/x0/neuron_<id>.npy, [1, C, S, S] float32.

Naturalness (unless --naturalness-steps 0): every EGG image and every top natural
image is scored by the diffusion prior's negative log-likelihood bound in bits per
dimension (lower is more natural), under the process the prior was trained on (every
step, not the --steps respacing) and estimated from --naturalness-steps timesteps
(package naturalness: t = 0 and a seeded stratified draw of the others, weighted by
stratum size). Images are first put in the prior's shape and quantised to 8 bits:
natural patches resized to the prior's size and repeated over its channels, EGG
images clamped to [-1, 1]. Scores are cached in --out/naturalness.json by image
content and settings, so a resumed run does not score an image twice.

--out/meni.json holds, per neuron and role, the activation of the best natural image
(best on the --train models) and of the EGG image at each scale, the bits/dim of each
of these images, and medians over neurons. --out/sweep.html plots activation (train,
and truth when given) against bits/dim, one point per image and one colour per scale,
the natural images as their own series.

Built-in defaults: without --train, the built-in digital twins of 100 simulated V4
neurons drive the images (--within, --cross and --truth, when empty, are the other
twins and the simulated population itself); without --weights, --preset or --config,
the built-in 32x32 prior runs EGG; without --pool, the built-in pool of natural
patches is searched. Without --norm, the model input's L2 norm is the paper's 50 at
100x100 scaled to the same per-pixel RMS: 50*sqrt(H*W)/100. One log line says each
choice.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error.`,
		Example: `  egg meni --neurons 0-9 --out meni/     # the built-in defaults
  egg meni --pool pool.npz --train m1.safetensors,m2.safetensors --within m3.safetensors --neurons 0-9 \
      --weights prior.safetensors --scale 1,2,5,10 --steps 50 --norm 50 --top 5 --out meni/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { o.cmd = cmd; return runMENI(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.pool, "pool", "", "image pool (.npz from egg pool) searched for natural images (default: the built-in pool)")
	f.StringVar(&o.train, "train", "", "model file(s) that drive the images (comma-separated: an ensemble; default: the built-in twins)")
	f.StringVar(&o.within, "within", "", "held-out model file(s) of the same architecture")
	f.StringVar(&o.cross, "cross", "", "model file(s) of another architecture")
	f.StringVar(&o.truth, "truth", "", "ground-truth model file(s), when known")
	f.StringVar(&o.neurons, "neurons", "0", `neurons: "all", or indices and ranges like 0,3,5-9`)
	f.StringVar(&o.seeds, "seeds", "0,1,2", "EGG seeds; the best on the --train models is kept")
	f.StringVar(&o.scales, "scale", "1,2,5,10", "EGG energy scales (lambda), comma-separated")
	f.Float32Var(&o.norm, "norm", 0, "L2 norm of the model input, natural and EGG images (0: the paper's 50 at 100x100, scaled: 50*sqrt(H*W)/100)")
	f.StringVar(&o.gradNorm, "grad-norm", "sample", "EGG gradient normalisation: sample or batch")
	f.IntVar(&o.top, "top", 5, "natural images kept per neuron")
	f.IntVar(&o.batchSize, "batch-size", 8, "EGG samples (neuron x seed) per batch; natural patches are scored 8 times as many at once")
	f.StringVar(&o.out, "out", "meni", "output folder")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	f.IntVar(&o.natSteps, "naturalness-steps", 50, "timesteps K of the prior's likelihood bound per image (bits/dim); 0 turns naturalness off")
	f.Uint64Var(&o.natSeed, "naturalness-seed", 0, "seed of the naturalness timesteps and noise")
	o.prior.addFlags(f, "50")
	o.jobs.addFlags(f, "neurons")
	return cmd
}

// meniNeuron is one neuron's line of meni.json.
type meniNeuron struct {
	Neuron        int                           `json:"neuron"`
	Natural       map[string]float32            `json:"natural"`        // the best natural image (on train), per role
	NaturalSource string                        `json:"natural_source"` // its origin in the pool
	NaturalIndex  int                           `json:"natural_index"`
	EGG           map[string]map[string]float32 `json:"egg"` // scale -> role -> activation
	// NaturalBPD is the naturalness (bits/dim under the prior) of the best natural
	// image, NaturalTopBPD that of every top natural image, best first.
	NaturalBPD    *float64  `json:"natural_bits_per_dim,omitempty"`
	NaturalTopBPD []float64 `json:"natural_top_bits_per_dim,omitempty"`
	// EGGBPD is the naturalness of the EGG image at each scale.
	EGGBPD map[string]float64 `json:"egg_bits_per_dim,omitempty"`
}

// meniSummary is meni.json.
type meniSummary struct {
	Pool   string   `json:"pool"`
	Norm   float32  `json:"norm"`
	Steps  int      `json:"steps"`
	Scales []string `json:"scales"`
	Top    int      `json:"top"`
	Seeds  []uint64 `json:"seeds"`
	Roles  []string `json:"roles"`
	Median struct {
		Natural map[string]float32            `json:"natural"`
		EGG     map[string]map[string]float32 `json:"egg"`
		// Ratio is the median over neurons of EGG / natural activation, per scale and role.
		Ratio map[string]map[string]float32 `json:"ratio_egg_to_natural"`
		// NaturalBPD is the median over neurons of the best natural image's bits/dim,
		// NaturalTopBPD the median over every top natural image of every neuron.
		NaturalBPD    *float64 `json:"natural_bits_per_dim,omitempty"`
		NaturalTopBPD *float64 `json:"natural_top_bits_per_dim,omitempty"`
		// EGGBPD is the median over neurons of the EGG image's bits/dim, per scale.
		EGGBPD map[string]float64 `json:"egg_bits_per_dim,omitempty"`
	} `json:"median"`
	// Naturalness says how the bits/dim were estimated; nil when naturalness is off.
	Naturalness *meniNaturalness          `json:"naturalness,omitempty"`
	Neurons     []meniNeuron              `json:"neurons"`
	Models      map[string][]mei.FileHash `json:"models"`
}

// parseScales reads comma-separated positive energy scales, in the order given.
func parseScales(spec string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || !(v > 0) {
			return nil, usagef("--scale %q: want positive numbers like 1,2,5,10", spec)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, usagef("--scale is empty")
	}
	return out, nil
}

func scaleName(s float64) string { return strconv.FormatFloat(s, 'g', -1, 64) }

func runMENI(ctx context.Context, g *globalOptions, o *meniOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	stdout := o.stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	if o.top < 1 {
		return usagef("--top %d: want at least 1", o.top)
	}
	if o.norm < 0 || math.IsNaN(float64(o.norm)) {
		return usagef("--norm %v: want a positive L2 norm (or 0 for the paper's, scaled to the input size)", o.norm)
	}
	if o.natSteps < 0 || o.natSteps == 1 {
		return usagef("--naturalness-steps %d: want 0 (no naturalness) or at least 2", o.natSteps)
	}
	scales, err := parseScales(o.scales)
	if err != nil {
		return err
	}
	seeds, err := parseSeeds(o.seeds)
	if err != nil {
		return err
	}
	if o.batchSize < 1 {
		o.batchSize = 8
	}
	shard, err := o.jobs.parse()
	if err != nil {
		return err
	}
	// A neuron is done when its EGG image at the last scale is.
	record := filepath.Join("scale_"+scaleName(scales[len(scales)-1]), "egg", meiRecord)
	if o.jobs.executor == "slurm" {
		// The last task to finish merges the run (naturalness, meni.json, the sweep).
		return submitSlurm(ctx, o.cmd, &o.jobs, o.out, "meni", record, func([]int) error {
			var sum meniSummary
			b, err := os.ReadFile(filepath.Join(o.out, "meni.json"))
			if err == nil {
				err = json.Unmarshal(b, &sum)
			}
			if err != nil {
				return fmt.Errorf("the run's summary: %w (run egg meni without --executor to merge it here)", err)
			}
			printMENITable(stdout, sum)
			return nil
		})
	}
	logf := stderrLog(o.quiet)
	df := defaultFlags{Train: &o.train, Within: &o.within, Cross: &o.cross, Truth: &o.truth, Prior: &o.prior, Pool: &o.pool}
	if _, err := applyDefaults(g, df, logf); err != nil {
		return err
	}
	rs, err := setupRun(g, df, o.norm, paperNormMENI, logf)
	if err != nil {
		return err
	}
	dev, models, ih, iw := rs.dev, rs.models, rs.ih, rs.iw
	o.norm = rs.norm
	neurons, err := parseNeurons(o.neurons, rs.train.Neurons())
	if err != nil {
		return err
	}
	// The prior first, so that a bad prior flag fails before the pool is scored.
	prior, unet, err := o.prior.loadPrior(dev, true)
	if err != nil {
		return err
	}
	sched, clipX0 := prior.Schedule, prior.ClipX0
	if models.Files["prior"], err = o.prior.hash(); err != nil {
		return err
	}
	var est *naturalness.Estimator
	var natInfo *meniNaturalness
	if o.natSteps > 0 {
		full, err := meniFullSchedule(o.prior, unet.Config)
		if err != nil {
			return err
		}
		est, err = naturalness.New(unet, full, naturalness.Config{Steps: o.natSteps, Seed: o.natSeed, BatchSize: o.batchSize})
		if err != nil {
			return usageError{fmt.Errorf("--naturalness-steps: %w", err)}
		}
		natInfo = &meniNaturalness{Steps: len(est.Timesteps()), Timesteps: full.NumTimesteps, Seed: o.natSeed,
			Evaluated: est.Timesteps(), Weights: est.Weights(), Channels: prior.Channels, Size: prior.Size,
			Process: fmt.Sprintf("%d steps, %v mean, %v variance", full.NumTimesteps, full.MeanType, full.VarType)}
		natInfo.Fingerprint = meniNaturalnessFingerprint(natInfo, full, models.Files["prior"], o.prior.weights)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("cannot create the output folder: %w", err)
	}
	if o.jobs.shard == "" {
		return o.stages(ctx, dev, stdout, neurons, true, scales, seeds, ih, iw, models, prior, sched, clipX0, est, natInfo)
	}
	// A shard makes its neurons' natural and EGG images; the last one to finish
	// runs the stages over every neuron (reading what the shards made) for the
	// naturalness and the summary.
	return runShard(ctx, newShardRun(o.cmd, &o.jobs, shard, o.out, "meni", record, shard.Of(neurons)), func() error {
		return o.stages(ctx, dev, stdout, shard.Of(neurons), false, scales, seeds, ih, iw, models, prior, sched, clipX0, est, natInfo)
	}, func(all []int) error {
		return o.stages(ctx, dev, stdout, all, true, scales, seeds, ih, iw, models, prior, sched, clipX0, est, natInfo)
	})
}

// stages runs meni's stages for neurons: the natural images and EGG at each scale,
// then (whole) the naturalness, meni.json and the sweep page.
func (o *meniOptions) stages(ctx context.Context, dev *tensor.Device, stdout io.Writer, neurons []int, whole bool, scales []float64,
	seeds []uint64, ih, iw int, models mei.ModelSet, prior *mei.Prior, sched *diffusion.Schedule, clipX0 bool,
	est *naturalness.Estimator, natInfo *meniNaturalness) error {
	loadPool := sync.OnceValues(func() (*pool.Pool, error) { return pool.Read(o.pool) })

	// 1. Natural images.
	natDir := filepath.Join(o.out, "natural")
	natural, err := mei.FindNatural(ctx, dev, natDir, models, neurons, mei.NaturalSearch{
		PoolPath: o.pool, Load: loadPool, InputH: ih, InputW: iw, Norm: o.norm, Top: o.top, Batch: 8 * o.batchSize,
		Logf: stderrLog(o.quiet)})
	if errors.Is(err, mei.ErrTooFewPatches) {
		err = usageError{err}
	}
	if err != nil {
		return err
	}

	// 2. EGG at each scale (mei keeps each image in the prior's space as well).
	runs := map[string]map[int]mei.Record{}
	x0s := map[string]map[int][]float32{}
	for _, sc := range scales {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted; finished work is in %s, run again to resume", o.out)
		}
		s := mei.Settings{Method: "egg", Seeds: seeds, BatchSize: o.batchSize, InputH: ih, InputW: iw, Norm: o.norm,
			Scale: sc, GradNorm: o.gradNorm, Steps: sched.NumTimesteps, PriorName: o.prior.weights, ClipX0: clipX0,
			NoSummary: !whole}
		bar := progress.New(os.Stderr, len(neurons)*len(seeds), progress.Options{Description: "EGG scale " + scaleName(sc), Unit: "MEIs", Hidden: o.quiet})
		scaleDir := filepath.Join(o.out, "scale_"+scaleName(sc))
		sum, err := mei.Run(ctx, dev, s, neurons, models, prior, scaleDir, bar)
		endBar(bar, err)
		if !o.quiet {
			fmt.Fprintln(os.Stderr)
		}
		if err != nil {
			return fmt.Errorf("EGG at scale %s: %w", scaleName(sc), err)
		}
		recs := map[int]mei.Record{}
		for _, r := range sum.Records {
			recs[r.Neuron] = r
		}
		runs[scaleName(sc)] = recs
		kept, missing, err := meniKeepX0(scaleDir, recs, prior.Channels, prior.Size)
		if err != nil {
			return fmt.Errorf("EGG at scale %s: %w", scaleName(sc), err)
		}
		if len(missing) > 0 && est != nil {
			fmt.Fprintf(os.Stderr, "egg meni: scale %s: no image in the prior's space for neuron(s) %v (made by an older egg?); "+
				"their naturalness is left out (delete %s to remake them)\n", scaleName(sc), missing, scaleDir)
		}
		x0s[scaleName(sc)] = kept
	}

	if !whole {
		return nil
	}

	// 3. Naturalness.
	var nat *meniNatResult
	if est != nil {
		nat, err = meniScoreNaturalness(ctx, dev, o, est, natInfo, natural, x0s, loadPool)
		if err != nil {
			return fmt.Errorf("scoring the naturalness of the images: %w (the EGG and natural images are kept in %s, the scores so far in "+
				"naturalness.json: run again to resume, or give --naturalness-steps 0 to skip this step)", err, o.out)
		}
	}

	// 4. The summary and the sweep page.
	sum := summariseMENI(o, scales, seeds, sched.NumTimesteps, neurons, natural, runs, models, nat)
	sum.Naturalness = natInfo
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return fmt.Errorf("writing meni.json: %w", err)
	}
	if err := imageio.WriteFileAtomic(filepath.Join(o.out, "meni.json"), b); err != nil {
		return err
	}
	sweepPath := filepath.Join(o.out, "sweep.html")
	if nat != nil {
		if err := report.WriteSweep(sweepPath, meniSweep(o, sum, natural)); err != nil {
			return err
		}
	} else if err := os.Remove(sweepPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the sweep page of an earlier run: %w", err)
	}
	printMENITable(stdout, sum)
	return nil
}

var meniRoles = []string{"train", "within", "cross", "truth"}

func summariseMENI(o *meniOptions, scales []float64, seeds []uint64, steps int, neurons []int, natural map[int]mei.NaturalRecord,
	runs map[string]map[int]mei.Record, models mei.ModelSet, nat *meniNatResult) meniSummary {
	s := meniSummary{Pool: o.pool, Norm: o.norm, Steps: steps, Top: o.top, Seeds: seeds, Models: models.Files}
	for _, sc := range scales {
		s.Scales = append(s.Scales, scaleName(sc))
	}
	for _, r := range meniRoles {
		if _, ok := models.Files[r]; ok {
			s.Roles = append(s.Roles, r)
		}
	}
	for _, n := range neurons {
		line := meniNeuron{Neuron: n, Natural: map[string]float32{}, EGG: map[string]map[string]float32{}}
		if nr, ok := natural[n]; ok && len(nr.Hits) > 0 {
			best := nr.Hits[0]
			line.NaturalSource, line.NaturalIndex = best.Source, best.Index
			for _, r := range s.Roles {
				if v, ok := best.Activations[r]; ok {
					line.Natural[r] = v
				}
			}
		}
		for _, sc := range s.Scales {
			if rec, ok := runs[sc][n]; ok {
				line.EGG[sc] = rec.Activations
			}
		}
		if nat != nil {
			if top := nat.natural[n]; len(top) > 0 {
				line.NaturalTopBPD = top
				best := top[0]
				line.NaturalBPD = &best
			}
			for _, sc := range s.Scales {
				if v, ok := nat.egg[sc][n]; ok {
					if line.EGGBPD == nil {
						line.EGGBPD = map[string]float64{}
					}
					line.EGGBPD[sc] = v
				}
			}
		}
		s.Neurons = append(s.Neurons, line)
	}
	med := func(get func(meniNeuron) (float32, bool)) (float32, bool) {
		var v []float64
		for _, l := range s.Neurons {
			if x, ok := get(l); ok {
				v = append(v, float64(x))
			}
		}
		if len(v) == 0 {
			return 0, false
		}
		slices.Sort(v)
		k := len(v)
		if k%2 == 1 {
			return float32(v[k/2]), true
		}
		return float32((v[k/2-1] + v[k/2]) / 2), true
	}
	s.Median.Natural = map[string]float32{}
	s.Median.EGG = map[string]map[string]float32{}
	s.Median.Ratio = map[string]map[string]float32{}
	for _, r := range s.Roles {
		if v, ok := med(func(l meniNeuron) (float32, bool) { x, ok := l.Natural[r]; return x, ok }); ok {
			s.Median.Natural[r] = v
		}
	}
	for _, sc := range s.Scales {
		s.Median.EGG[sc] = map[string]float32{}
		s.Median.Ratio[sc] = map[string]float32{}
		for _, r := range s.Roles {
			if v, ok := med(func(l meniNeuron) (float32, bool) { x, ok := l.EGG[sc][r]; return x, ok }); ok {
				s.Median.EGG[sc][r] = v
			}
			if v, ok := med(func(l meniNeuron) (float32, bool) {
				e, ok1 := l.EGG[sc][r]
				nat, ok2 := l.Natural[r]
				if !ok1 || !ok2 || nat == 0 {
					return 0, false
				}
				return e / nat, true
			}); ok {
				s.Median.Ratio[sc][r] = v
			}
		}
	}
	if nat != nil {
		var best, top []float64
		for _, l := range s.Neurons {
			if l.NaturalBPD != nil {
				best = append(best, *l.NaturalBPD)
			}
			top = append(top, l.NaturalTopBPD...)
		}
		if v, ok := medianF64(best); ok {
			s.Median.NaturalBPD = &v
		}
		if v, ok := medianF64(top); ok {
			s.Median.NaturalTopBPD = &v
		}
		s.Median.EGGBPD = map[string]float64{}
		for _, sc := range s.Scales {
			var v []float64
			for _, l := range s.Neurons {
				if x, ok := l.EGGBPD[sc]; ok {
					v = append(v, x)
				}
			}
			if m, ok := medianF64(v); ok {
				s.Median.EGGBPD[sc] = m
			}
		}
	}
	return s
}

// medianF64 returns the median of v, and false when v is empty.
func medianF64(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	return stats.Median(v), true
}

// printMENITable prints the medians over neurons: one line for the natural images
// and one per EGG scale, one column per role, and the bits/dim when naturalness was
// scored.
func printMENITable(w io.Writer, s meniSummary) {
	fmt.Fprintf(w, "median activation over %d neurons (norm %g, %d steps, top %d natural images)", len(s.Neurons), s.Norm, s.Steps, s.Top)
	if s.Naturalness != nil {
		fmt.Fprintf(w, "; bits/dim under the prior (%d of %d timesteps; lower is more natural)", s.Naturalness.Steps, s.Naturalness.Timesteps)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-14s", "")
	for _, r := range s.Roles {
		fmt.Fprintf(w, " %10s", r)
	}
	if s.Naturalness != nil {
		fmt.Fprintf(w, " %10s", "bits/dim")
	}
	fmt.Fprintln(w)
	row := func(name string, v map[string]float32, bpd *float64) {
		fmt.Fprintf(w, "%-14s", name)
		for _, r := range s.Roles {
			if x, ok := v[r]; ok {
				fmt.Fprintf(w, " %10.4g", x)
			} else {
				fmt.Fprintf(w, " %10s", "-")
			}
		}
		if s.Naturalness != nil {
			if bpd != nil {
				fmt.Fprintf(w, " %10.4g", *bpd)
			} else {
				fmt.Fprintf(w, " %10s", "-")
			}
		}
		fmt.Fprintln(w)
	}
	row("natural", s.Median.Natural, s.Median.NaturalBPD)
	for _, sc := range s.Scales {
		var bpd *float64
		if v, ok := s.Median.EGGBPD[sc]; ok {
			bpd = &v
		}
		row("egg scale "+sc, s.Median.EGG[sc], bpd)
	}
}

// meniNaturalness records in meni.json how the bits/dim were estimated.
type meniNaturalness struct {
	Steps     int       `json:"steps"`               // K: timesteps evaluated per image (at most T)
	Timesteps int       `json:"timesteps"`           // T: steps of the prior's process, the terms of the bound
	Seed      uint64    `json:"seed"`                // fixes the evaluated timesteps and their noise
	Evaluated []int     `json:"evaluated_timesteps"` // the K timesteps, ascending (0: the decoder term)
	Weights   []float64 `json:"weights"`             // their weights (stratum sizes; they sum to T)
	Process   string    `json:"process"`
	Channels  int       `json:"channels"` // the prior's image shape, which every image is put in
	Size      int       `json:"size"`
	// Fingerprint identifies the prior and these settings; naturalness.json caches
	// scores under it.
	Fingerprint string `json:"fingerprint"`
}

// meniNatResult is the naturalness of a run's images, in bits per dimension.
type meniNatResult struct {
	egg     map[string]map[int]float64 // scale -> neuron -> the EGG image's bits/dim
	natural map[int][]float64          // neuron -> each top natural image's, best first
}

// meniNaturalnessVersion is part of the fingerprint of cached scores: change it when
// the way images are prepared or scored changes (now: the prior's shape, 8 bits, x0
// predictions clipped to [-1, 1]).
const meniNaturalnessVersion = 1

// meniNaturalnessFingerprint hashes the prior file (its SHA-256, else its path), its
// process and the estimator's settings.
func meniNaturalnessFingerprint(info *meniNaturalness, s *diffusion.Schedule, prior []mei.FileHash, path string) string {
	id := path
	if len(prior) > 0 {
		id = prior[0].SHA256
	}
	b, _ := json.Marshal(struct {
		Version   int
		Prior     string
		Info      meniNaturalness
		Betas     []float64
		Mean, Var string
		Rescale   bool
	}{meniNaturalnessVersion, id, *info, s.Betas, s.MeanType.String(), s.VarType.String(), s.RescaleTimesteps})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// meniFullSchedule returns the process the prior was trained on with every step kept
// (the run's --steps respacing dropped) and no EGG clamp: the bound's terms. It reads
// the flags as priorOptions.load does, with the process defaults of an egg prior
// file's metadata.
func meniFullSchedule(o priorOptions, cfg adm.Config) (*diffusion.Schedule, error) {
	po := o
	po.steps = ""
	if po.preset == "" && po.configFile == "" {
		r, err := checkpoint.Open(o.weights)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		_, md, err := priortrain.ReadMetadata(r.Metadata())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.weights, err)
		}
		po.applyFileProcess(md)
	}
	return po.schedule(cfg, false)
}

// meniKeepX0 reads, for every neuron of recs, the prior-space image of its kept
// seed that mei.Run recorded (Record.PriorImage, in scaleDir/egg). It returns the
// images by neuron and the neurons that have none (runs made by an egg that did not
// keep them).
func meniKeepX0(scaleDir string, recs map[int]mei.Record, channels, size int) (map[int][]float32, []int, error) {
	kept := map[int][]float32{}
	var missing []int
	neurons := make([]int, 0, len(recs))
	for n := range recs {
		neurons = append(neurons, n)
	}
	slices.Sort(neurons)
	for _, n := range neurons {
		rec := recs[n]
		if rec.PriorImage == "" {
			missing = append(missing, n)
			continue
		}
		v, err := readX0(filepath.Join(scaleDir, "egg", rec.PriorImage), channels, size)
		if err != nil {
			return nil, nil, fmt.Errorf("the image of neuron %d in the prior's space: %w", n, err)
		}
		kept[n] = v
	}
	return kept, missing, nil
}

// readX0 reads a [channels, size, size] float32 image.
func readX0(path string, channels, size int) ([]float32, error) {
	a, err := npy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(a.Shape) != 3 || a.Shape[0] != channels || a.Shape[1] != size || a.Shape[2] != size {
		return nil, fmt.Errorf("%s holds shape %v; want [%d %d %d]", path, a.Shape, channels, size, size)
	}
	return a.Float32()
}

// meniNatCache is naturalness.json: bits/dim by image content, for one fingerprint.
type meniNatCache struct {
	Fingerprint string             `json:"fingerprint"`
	BitsPerDim  map[string]float64 `json:"bits_per_dim"`
}

// imageKey identifies an image by its shape and values.
func imageKey(shape []int, v []float32) string {
	h := sha256.New()
	fmt.Fprint(h, shape)
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// meniScoreNaturalness scores the EGG images (x0s, by scale and neuron) and the top
// natural images of every neuron with est, after putting them in the prior's shape
// and quantising them, reusing and extending the cache in naturalness.json.
func meniScoreNaturalness(ctx context.Context, dev *tensor.Device, o *meniOptions, est *naturalness.Estimator, info *meniNaturalness,
	natural map[int]mei.NaturalRecord, x0s map[string]map[int][]float32, loadPool func() (*pool.Pool, error)) (*meniNatResult, error) {
	cachePath := filepath.Join(o.out, "naturalness.json")
	cache := meniNatCache{Fingerprint: info.Fingerprint, BitsPerDim: map[string]float64{}}
	if b, err := os.ReadFile(cachePath); err == nil {
		var c meniNatCache
		if json.Unmarshal(b, &c) == nil && c.Fingerprint == info.Fingerprint && c.BitsPerDim != nil {
			cache = c
		}
	}
	shape := []int{1, info.Channels, info.Size, info.Size}
	type job struct {
		key  string
		data []float32
	}
	var todo []job
	queued := map[string]bool{}
	add := func(x *tensor.Tensor) string {
		q := naturalness.Quantize(x)
		k := imageKey(shape, q.Data())
		if _, ok := cache.BitsPerDim[k]; !ok && !queued[k] {
			queued[k] = true
			todo = append(todo, job{k, q.Data()})
		}
		return k
	}
	sortedKeys := func(m map[int][]float32) []int {
		k := make([]int, 0, len(m))
		for n := range m {
			k = append(k, n)
		}
		slices.Sort(k)
		return k
	}
	eggKeys := map[string]map[int]string{}
	scaleNames := make([]string, 0, len(x0s))
	for sc := range x0s {
		scaleNames = append(scaleNames, sc)
	}
	slices.Sort(scaleNames)
	for _, sc := range scaleNames {
		eggKeys[sc] = map[int]string{}
		for _, n := range sortedKeys(x0s[sc]) {
			eggKeys[sc][n] = add(tensor.FromSlice(dev, x0s[sc][n], shape...))
		}
	}
	natKeys := map[int][]string{}
	if len(natural) > 0 {
		p, err := loadPool()
		if err != nil {
			return nil, err
		}
		neurons := make([]int, 0, len(natural))
		for n := range natural {
			neurons = append(neurons, n)
		}
		slices.Sort(neurons)
		for _, n := range neurons {
			for _, h := range natural[n].Hits {
				if h.Index < 0 || h.Index >= p.Len() {
					return nil, fmt.Errorf("the natural images of neuron %d name patch %d, but %s has %d patches: delete %s to find them again",
						n, h.Index, o.pool, p.Len(), filepath.Join(o.out, "natural"))
				}
				x, err := naturalness.FromUint8(dev, p.Patch(h.Index), 1, p.Size, 1)
				if err == nil {
					x, err = naturalness.Fit(x, info.Channels, info.Size)
				}
				if err != nil {
					return nil, fmt.Errorf("patch %d of %s: %w", h.Index, o.pool, err)
				}
				natKeys[n] = append(natKeys[n], add(x))
			}
		}
	}
	if len(todo) > 0 {
		if !o.quiet {
			fmt.Fprintf(os.Stderr, "scoring the naturalness of %d images (%d timesteps each)\n", len(todo), info.Steps)
		}
		bar := progress.New(os.Stderr, len(todo)*info.Steps, progress.Options{Description: "naturalness", Unit: "steps", Hidden: o.quiet})
		per := info.Channels * info.Size * info.Size
		chunk := max(1, o.batchSize)
		for start := 0; start < len(todo); start += chunk {
			jobs := todo[start:min(start+chunk, len(todo))]
			data := make([]float32, 0, len(jobs)*per)
			for _, j := range jobs {
				data = append(data, j.data...)
			}
			bpd, err := est.BitsPerDim(ctx, tensor.FromSlice(dev, data, len(jobs), info.Channels, info.Size, info.Size), bar)
			if err != nil {
				return nil, err
			}
			for i, j := range jobs {
				cache.BitsPerDim[j.key] = bpd[i]
			}
			b, err := json.Marshal(cache)
			if err != nil {
				return nil, fmt.Errorf("caching the scores: %w", err)
			}
			if err := imageio.WriteFileAtomic(cachePath, b); err != nil {
				return nil, fmt.Errorf("caching the scores: %w", err)
			}
		}
		bar.Finish()
		if !o.quiet {
			fmt.Fprintln(os.Stderr)
		}
	}
	res := &meniNatResult{egg: map[string]map[int]float64{}, natural: map[int][]float64{}}
	for sc, m := range eggKeys {
		res.egg[sc] = map[int]float64{}
		for n, k := range m {
			res.egg[sc][n] = cache.BitsPerDim[k]
		}
	}
	for n, keys := range natKeys {
		for _, k := range keys {
			res.natural[n] = append(res.natural[n], cache.BitsPerDim[k])
		}
	}
	return res, nil
}

// meniSweep is the content of sweep.html: for each scale the EGG images, and the top
// natural images, as activation against bits/dim for the train role and, when given,
// the truth.
func meniSweep(o *meniOptions, s meniSummary, natural map[int]mei.NaturalRecord) report.Sweep {
	sw := report.Sweep{Title: "egg meni: activation against naturalness, " + filepath.Base(filepath.Clean(o.out))}
	sw.Roles = []string{"train"}
	if slices.Contains(s.Roles, "truth") {
		sw.Roles = append(sw.Roles, "truth")
	}
	if n := s.Naturalness; n != nil {
		sw.Notes = append(sw.Notes, fmt.Sprintf("Naturalness: the prior's negative log-likelihood bound in bits per dimension (%s), "+
			"estimated from %d of its %d timesteps (seed %d), each image first put in the prior's shape (%dx%d, %s) and quantised to 8 bits.",
			o.prior.weights, n.Steps, n.Timesteps, n.Seed, n.Size, n.Size, channelWords(n.Channels)))
	}
	sw.Notes = append(sw.Notes, fmt.Sprintf("%d neurons; EGG with %d steps, model-input norm %g, seeds %v; natural images: the top %d of %s on the train models.",
		len(s.Neurons), s.Steps, s.Norm, s.Seeds, s.Top, o.pool))
	toF64 := func(m map[string]float32) map[string]float64 {
		out := make(map[string]float64, len(m))
		for k, v := range m {
			out[k] = float64(v)
		}
		return out
	}
	for _, sc := range s.Scales {
		sr := report.SweepSeries{Name: "EGG scale " + sc}
		for _, l := range s.Neurons {
			if v, ok := l.EGGBPD[sc]; ok {
				sr.Points = append(sr.Points, report.SweepPoint{Neuron: l.Neuron, BitsPerDim: v, Activations: toF64(l.EGG[sc])})
			}
		}
		sw.Series = append(sw.Series, sr)
	}
	nat := report.SweepSeries{Name: fmt.Sprintf("natural (top %d)", s.Top), Natural: true}
	for _, l := range s.Neurons {
		hits := natural[l.Neuron].Hits
		for i, v := range l.NaturalTopBPD {
			if i < len(hits) {
				nat.Points = append(nat.Points, report.SweepPoint{Neuron: l.Neuron, BitsPerDim: v, Activations: toF64(hits[i].Activations)})
			}
		}
	}
	sw.Series = append(sw.Series, nat)
	return sw
}

// channelWords names a channel count: "gray" for 1, "N channels" otherwise.
func channelWords(c int) string {
	if c == 1 {
		return "gray"
	}
	return fmt.Sprintf("%d channels", c)
}
