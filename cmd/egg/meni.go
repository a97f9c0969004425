package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"egg/checkpoint"
	"egg/imageio"
	"egg/mei"
	"egg/pool"
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
	stdout                      io.Writer
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

--out/meni.json holds, per neuron and role, the activation of the best natural image
(best on the --train models) and of the EGG image at each scale, and medians over
neurons.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error.`,
		Example: `  egg meni --pool pool.npz --train m1.safetensors,m2.safetensors --within m3.safetensors --neurons 0-9 \
      --weights prior.safetensors --scale 1,2,5,10 --steps 50 --norm 50 --top 5 --out meni/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMENI(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.pool, "pool", "", "image pool (.npz from egg pool) searched for natural images")
	f.StringVar(&o.train, "train", "", "model file(s) that drive the images (comma-separated: an ensemble)")
	f.StringVar(&o.within, "within", "", "held-out model file(s) of the same architecture")
	f.StringVar(&o.cross, "cross", "", "model file(s) of another architecture")
	f.StringVar(&o.truth, "truth", "", "ground-truth model file(s), when known")
	f.StringVar(&o.neurons, "neurons", "0", `neurons: "all", or indices and ranges like 0,3,5-9`)
	f.StringVar(&o.seeds, "seeds", "0,1,2", "EGG seeds; the best on the --train models is kept")
	f.StringVar(&o.scales, "scale", "1,2,5,10", "EGG energy scales (lambda), comma-separated")
	f.Float32Var(&o.norm, "norm", 50, "L2 norm of the model input (natural and EGG images)")
	f.StringVar(&o.gradNorm, "grad-norm", "sample", "EGG gradient normalisation: sample or batch")
	f.IntVar(&o.top, "top", 5, "natural images kept per neuron")
	f.IntVar(&o.batchSize, "batch-size", 8, "EGG samples (neuron x seed) per batch; natural patches are scored 8 times as many at once")
	f.StringVar(&o.out, "out", "meni", "output folder")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	o.prior.addFlags(f, "50")
	return cmd
}

// meniNeuron is one neuron's line of meni.json.
type meniNeuron struct {
	Neuron        int                           `json:"neuron"`
	Natural       map[string]float32            `json:"natural"`        // the best natural image (on train), per role
	NaturalSource string                        `json:"natural_source"` // its origin in the pool
	NaturalIndex  int                           `json:"natural_index"`
	EGG           map[string]map[string]float32 `json:"egg"` // scale -> role -> activation
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
	} `json:"median"`
	Neurons []meniNeuron              `json:"neurons"`
	Models  map[string][]mei.FileHash `json:"models"`
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
	if o.pool == "" {
		return usagef("--pool is required: the image pool searched for natural images")
	}
	if o.train == "" {
		return usagef("--train is required: the model file(s) whose neurons the images drive")
	}
	if o.top < 1 {
		return usagef("--top %d: want at least 1", o.top)
	}
	if !(o.norm > 0) {
		return usagef("--norm %v: want a positive norm", o.norm)
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
	dev := tensor.CPU(g.threads)
	models, train, err := loadModelSet(dev, o.train, o.within, o.cross, o.truth)
	if err != nil {
		return err
	}
	neurons, err := parseNeurons(o.neurons, train.Neurons())
	if err != nil {
		return err
	}
	shape := inputShape(train)
	ih, iw := shape[1], shape[2]
	// The prior first, so that a bad prior flag fails before the pool is scored.
	unet, sched, err := o.prior.load(dev, true)
	if err != nil {
		return err
	}
	prior := &mei.Prior{Denoiser: unet, Schedule: sched, Channels: unet.Config.InChannels, Size: unet.Config.ImageSize, Name: o.prior.weights}
	if h, err := checkpoint.FileSHA256(o.prior.weights); err == nil {
		models.Files["prior"] = []mei.FileHash{{Path: o.prior.weights, SHA256: h}}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("cannot create the output folder: %w", err)
	}

	// 1. Natural images.
	natDir := filepath.Join(o.out, "natural")
	natural, err := meniNatural(ctx, dev, o, models, neurons, ih, iw, natDir)
	if err != nil {
		return err
	}

	// 2. EGG at each scale.
	runs := map[string]map[int]mei.Record{}
	for _, sc := range scales {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted; finished work is in %s, run again to resume", o.out)
		}
		s := mei.Settings{Method: "egg", Seeds: seeds, BatchSize: o.batchSize, InputH: ih, InputW: iw, Norm: o.norm,
			Scale: sc, GradNorm: o.gradNorm, Steps: sched.NumTimesteps, PriorName: o.prior.weights}
		bar := progressbar.NewOptions(len(neurons)*len(seeds),
			progressbar.OptionSetDescription("EGG scale "+scaleName(sc)), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("MEIs"), progressbar.OptionSetVisibility(!o.quiet), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionThrottle(200*time.Millisecond))
		sum, err := mei.Run(ctx, dev, s, neurons, models, prior, filepath.Join(o.out, "scale_"+scaleName(sc)), bar)
		bar.Finish()
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
	}

	// 3. The summary.
	sum := summariseMENI(o, scales, seeds, sched.NumTimesteps, neurons, natural, runs, models)
	b, _ := json.MarshalIndent(sum, "", "  ")
	if err := imageio.WriteFileAtomic(filepath.Join(o.out, "meni.json"), b); err != nil {
		return err
	}
	printMENITable(stdout, sum)
	return nil
}

// meniNatural finds (or, when a previous run left them, reads) the natural images of
// neurons.
func meniNatural(ctx context.Context, dev *tensor.Device, o *meniOptions, models mei.ModelSet, neurons []int, ih, iw int, dir string) (map[int]mei.NaturalRecord, error) {
	out := map[int]mei.NaturalRecord{}
	for _, n := range neurons {
		r, err := mei.ReadNatural(dir, n)
		if err != nil || r.Norm != o.norm || r.InputH != ih || r.InputW != iw || len(r.Hits) != o.top || r.Pool != o.pool {
			out = nil
			break
		}
		out[n] = r
	}
	if out != nil {
		return out, nil
	}
	p, err := pool.Read(o.pool)
	if err != nil {
		return nil, err
	}
	if p.Len() < o.top {
		return nil, usagef("--top %d: the pool has only %d patches", o.top, p.Len())
	}
	if !o.quiet {
		fmt.Fprintf(os.Stderr, "scoring %d natural images of %s for %d neurons\n", p.Len(), o.pool, len(neurons))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hits, err := mei.TopNatural(dev, models.Train, p.Images, p.Size, ih, iw, o.norm, neurons, o.top, 8*o.batchSize)
	if err != nil {
		return nil, err
	}
	for j := range hits {
		for i := range hits[j] {
			hits[j][i].Source = p.Sources[hits[j][i].Index]
			hits[j][i].Tier = p.Tiers[hits[j][i].Index]
		}
	}
	inputs := mei.EvaluateNatural(dev, models, p.Images, p.Size, ih, iw, o.norm, neurons, hits)
	out = map[int]mei.NaturalRecord{}
	for j, n := range neurons {
		rec := mei.NaturalRecord{Neuron: n, Norm: o.norm, InputH: ih, InputW: iw, Pool: o.pool, Hits: hits[j]}
		if err := mei.WriteNatural(dir, rec, inputs[j]); err != nil {
			return nil, err
		}
		rec.Image = fmt.Sprintf("neuron_%05d.png", n)
		out[n] = rec
	}
	return out, nil
}

var meniRoles = []string{"train", "within", "cross", "truth"}

func summariseMENI(o *meniOptions, scales []float64, seeds []uint64, steps int, neurons []int, natural map[int]mei.NaturalRecord, runs map[string]map[int]mei.Record, models mei.ModelSet) meniSummary {
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
	return s
}

// printMENITable prints the medians over neurons: one line for the natural images
// and one per EGG scale, one column per role.
func printMENITable(w io.Writer, s meniSummary) {
	fmt.Fprintf(w, "median activation over %d neurons (norm %g, %d steps, top %d natural images)\n", len(s.Neurons), s.Norm, s.Steps, s.Top)
	fmt.Fprintf(w, "%-14s", "")
	for _, r := range s.Roles {
		fmt.Fprintf(w, " %10s", r)
	}
	fmt.Fprintln(w)
	row := func(name string, v map[string]float32) {
		fmt.Fprintf(w, "%-14s", name)
		for _, r := range s.Roles {
			if x, ok := v[r]; ok {
				fmt.Fprintf(w, " %10.4g", x)
			} else {
				fmt.Fprintf(w, " %10s", "-")
			}
		}
		fmt.Fprintln(w)
	}
	row("natural", s.Median.Natural)
	for _, sc := range s.Scales {
		row("egg scale "+sc, s.Median.EGG[sc])
	}
}
