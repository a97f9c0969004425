package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"egg/dataset"
	"egg/encoder"
	"egg/models"
	"egg/npy"
	"egg/pool"
	"egg/progress"
	"egg/recon"
	"egg/tensor"
)

// reconstructOptions are the flags of `egg reconstruct`.
type reconstructOptions struct {
	train, within, cross string
	targets              string // .npz with an images array
	targetPool           string // set by the defaults: an egg pool whose validation patches are the targets
	data, tier           string
	images               string
	recorded             bool
	scale                float64 // 0: 2 for model responses, 1 for recorded ones
	norm                 float32
	clip                 string
	gdSteps              int
	gdLR, gdBlur         float64
	batchSize            int
	seed                 uint64
	out                  string
	quiet                bool
	prior                priorOptions
	stdout               io.Writer
	jobs                 jobOptions
	cmd                  *cobra.Command // for --executor slurm: the task's command line
}

func newReconstructCmd(g *globalOptions) *cobra.Command {
	o := &reconstructOptions{}
	cmd := &cobra.Command{
		Use:   "reconstruct",
		Short: "Reconstruct images from responses by EGG and by gradient descent",
		Long: `reconstruct finds images whose predicted responses match target responses
(egg-method.md sections 4, 5 and 7), by EGG and by a gradient-descent baseline.

Targets: the images of --targets (an .npz with an "images" array, [N, H, W] or
[N, C, H, W], in pixel units) or the trials of --tier of the data set --data, picked
by --images (positions among them, like 0-7). Pixels are z-scored with the --train
model's input normalisation. The target responses are the --train model's responses
to them (scale 2 by default) or, with --recorded (needs --data), the recorded
responses of those trials (scale 1 by default; neurons not recorded in every chosen
trial are left out).

EGG: guided diffusion with the energy mean_j (r_j(x) - target_j)^2 on the --train
model, per-sample gradient normalisation, --steps respaced steps; the model input is
the last x0 prediction resized, L2 norm --norm, clipped to --clip.
GD: AdamW on the model input from noise (--gd-lr, up to --gd-steps), the image
blurred (--gd-blur) and rescaled to norm --norm after every step; it stops once its
--train loss is below EGG's for that target.

Both are scored by the response distance (mean squared difference to the target
responses) on the --train, --within and --cross models. Outputs in --out:
target_<id>.png (target | EGG | GD), target_<id>_{target,egg,gd}.npy, target_<id>.json
and summary.json (medians per method and role). Finished targets are not recomputed.

Built-in defaults: without --train, egg uses its digital twins of 100 simulated V4
neurons for every role left empty (train: attention ensemble 1, within: attention
ensemble 2, cross: Gaussian-readout ensemble 1); without --weights/--preset/--config,
the built-in 32x32 prior; without --targets and --data, the validation patches of the
built-in pool. Without --norm the L2 norm is the paper's 60 at 100x100 scaled to the
same per-pixel RMS: 60*sqrt(H*W)/100 (19.2 for 32x32 inputs). One log line says each
choice.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error.`,
		Example: `  egg reconstruct --images 0-7 --steps 100 --out recon/    # the built-in defaults
  egg reconstruct --train m1.safetensors --within m2.safetensors --cross r1.safetensors \
      --data data.npz --tier test --images 0-7 --weights prior.safetensors --out recon/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { o.cmd = cmd; return runReconstruct(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.train, "train", "", "model file(s) whose responses are matched (comma-separated: an ensemble; default: the built-in twins)")
	f.StringVar(&o.within, "within", "", "held-out model file(s) of the same architecture")
	f.StringVar(&o.cross, "cross", "", "model file(s) of another architecture")
	f.StringVar(&o.targets, "targets", "", `target images: an .npz file with an "images" array`)
	f.StringVar(&o.data, "data", "", "data set (.npz or static folder) whose trials are the targets")
	f.StringVar(&o.tier, "tier", "test", "tier of --data the targets come from")
	f.StringVar(&o.images, "images", "0-7", `targets: "all", or positions and ranges like 0,3,5-9`)
	f.BoolVar(&o.recorded, "recorded", false, "match the recorded responses of --data (else the --train model's responses)")
	f.Float64Var(&o.scale, "scale", 0, "EGG energy scale (default 2, or 1 with --recorded)")
	f.Float32Var(&o.norm, "norm", 0, "L2 norm of the model input, EGG before the clip and GD (0: the paper's 60 at 100x100, scaled: 60*sqrt(H*W)/100)")
	f.StringVar(&o.clip, "clip", "-1.7,1.9", `clip range of the EGG model input, "lo,hi" or "none"`)
	f.IntVar(&o.gdSteps, "gd-steps", 5000, "GD steps at most")
	f.Float64Var(&o.gdLR, "gd-lr", 0.05, "GD AdamW learning rate")
	f.Float64Var(&o.gdBlur, "gd-blur", 1, "GD image blur sigma after each step (0: none)")
	f.IntVar(&o.batchSize, "batch-size", 8, "targets per batch")
	f.Uint64Var(&o.seed, "seed", 0, "seed of the noise")
	f.StringVar(&o.out, "out", "reconstruct", "output folder")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	o.prior.addFlags(f, "1000")
	o.jobs.addFlags(f, "targets")
	return cmd
}

// parseClip reads "lo,hi" (lo < hi) or "none".
func parseClip(s string) (lo, hi float32, err error) {
	if s == "" || s == "none" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, ",")
	x, err1 := strconv.ParseFloat(strings.TrimSpace(a), 32)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(b), 32)
	if !ok || err1 != nil || err2 != nil || !(x < y) {
		return 0, 0, usagef("--clip %q: want lo,hi with lo < hi (like -1.7,1.9) or none", s)
	}
	return float32(x), float32(y), nil
}

func runReconstruct(ctx context.Context, g *globalOptions, o *reconstructOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	stdout := o.stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	if o.targets != "" && o.data != "" {
		return usagef("give --targets images.npz or --data D (with --tier), not both")
	}
	if o.recorded && o.data == "" {
		return usagef("--recorded needs --data: the recorded responses come from the data set")
	}
	if o.norm < 0 || math.IsNaN(float64(o.norm)) {
		return usagef("--norm %v: want a positive norm (or 0 for the paper's, scaled to the input size)", o.norm)
	}
	if o.gdSteps < 0 || !(o.gdLR > 0) {
		return usagef("--gd-steps %d, --gd-lr %v: want steps >= 0 and a positive learning rate", o.gdSteps, o.gdLR)
	}
	if o.scale < 0 {
		return usagef("--scale %v: want a positive scale", o.scale)
	}
	shard, err := o.jobs.parse()
	if err != nil {
		return err
	}
	merge := func(all []int) error {
		sum, err := recon.SummarizeDir(o.out, all)
		if err != nil {
			return err
		}
		printReconTable(stdout, sum)
		return nil
	}
	if o.jobs.executor == "slurm" {
		return submitSlurm(ctx, o.cmd, &o.jobs, o.out, "reconstruct", recon.RecordName, merge)
	}
	lo, hi, err := parseClip(o.clip)
	if err != nil {
		return err
	}
	scale := o.scale
	if scale == 0 {
		scale = 2
		if o.recorded {
			scale = 1
		}
	}
	logf := stderrLog(o.quiet)
	builtin, err := applyDefaults(g, defaultFlags{Train: &o.train, Within: &o.within, Cross: &o.cross, Prior: &o.prior}, logf)
	if err != nil {
		return err
	}
	if o.targets == "" && o.data == "" && o.targetPool == "" {
		if builtin == nil {
			if builtin, err = g.builtin(); err != nil {
				if errors.Is(err, models.ErrMissing) {
					return usagef("give --targets images.npz or --data D (with --tier): %v", err)
				}
				return err
			}
		}
		o.targetPool = builtin.Pool
		logf("no --targets or --data: reconstructing the validation patches of egg's built-in pool, %s", builtin.Pool)
	}
	rs, err := setupRun(g, defaultFlags{Train: &o.train, Within: &o.within, Cross: &o.cross}, o.norm, paperNormRecon, logf)
	if err != nil {
		return err
	}
	dev, train, ih, iw, norm := rs.dev, rs.train, rs.ih, rs.iw, rs.norm
	models := recon.Models{Train: rs.models.Train, Within: rs.models.Within, Cross: rs.models.Cross, Files: rs.models.Files}
	targets, source, err := loadReconTargets(dev, o, train, ih, iw)
	if err != nil {
		return err
	}
	prior, _, err := o.prior.loadPrior(dev, true)
	if err != nil {
		return err
	}
	sched := prior.Schedule
	if models.Files["prior"], err = o.prior.hash(); err != nil {
		return err
	}
	gd := recon.DefaultGD()
	gd.MaxSteps, gd.LR, gd.BlurSigma, gd.Norm = o.gdSteps, o.gdLR, o.gdBlur, norm
	s := recon.Settings{Source: source, Recorded: o.recorded, Scale: scale, Steps: sched.NumTimesteps, Norm: norm,
		ClipLo: lo, ClipHi: hi, PriorName: o.prior.weights, Seed: o.seed, BatchSize: max(1, o.batchSize),
		InputH: ih, InputW: iw, GD: gd}
	if !shard.IsWhole() {
		// The shard's block of the targets.
		pos := make([]int, len(targets.IDs))
		for i := range pos {
			pos[i] = i
		}
		b := shard.Of(pos)
		lo, hi := 0, 0
		if len(b) > 0 {
			lo, hi = b[0], b[len(b)-1]+1
		}
		targets.IDs = targets.IDs[lo:hi]
		targets.Images = tensor.Slice(targets.Images, 0, lo, hi, 1)
		targets.Responses = tensor.Slice(targets.Responses, 0, lo, hi, 1)
		s.NoSummary = true
	}
	desc := "reconstructions"
	if !shard.IsWhole() {
		desc += ", shard " + shard.String()
	}
	bar := progress.New(os.Stderr, len(targets.IDs), progress.Options{Description: desc, Unit: "targets", Hidden: o.quiet})
	var sum recon.Summary
	err = runShard(ctx, newShardRun(o.cmd, &o.jobs, shard, o.out, "reconstruct", recon.RecordName, targets.IDs), func() error {
		var err error
		sum, err = recon.Run(ctx, s, targets, models, prior, o.out, bar)
		endBar(bar, err)
		return err
	}, merge)
	if err != nil {
		return err
	}
	if shard.IsWhole() {
		printReconTable(stdout, sum)
	}
	return nil
}

// loadReconTargets reads the target images (as model inputs) and their target
// responses.
func loadReconTargets(dev *tensor.Device, o *reconstructOptions, train encoder.Model, ih, iw int) (recon.Targets, string, error) {
	var t recon.Targets
	var pixels []float32
	var n, c, h, w int
	var d *dataset.Dataset
	var trials []int
	var source string
	switch {
	case o.targetPool != "":
		p, err := pool.Read(o.targetPool)
		if err != nil {
			return t, "", err
		}
		idx := p.Indices(pool.Validation)
		if len(idx) == 0 {
			return t, "", fmt.Errorf("the pool %s has no validation patches to reconstruct; give --targets or --data", o.targetPool)
		}
		n, c, h, w = len(idx), 1, p.Size, p.Size
		pixels = make([]float32, 0, n*h*w)
		for _, i := range idx {
			for _, v := range p.Patch(i) {
				pixels = append(pixels, float32(v))
			}
		}
		source = o.targetPool + ":" + pool.Validation
	case o.targets != "":
		arrs, err := npy.ReadNPZ(o.targets)
		if err != nil {
			return t, "", err
		}
		a, ok := arrs["images"]
		if !ok {
			return t, "", fmt.Errorf("%s has no \"images\" array", o.targets)
		}
		switch len(a.Shape) {
		case 3:
			n, c, h, w = a.Shape[0], 1, a.Shape[1], a.Shape[2]
		case 4:
			n, c, h, w = a.Shape[0], a.Shape[1], a.Shape[2], a.Shape[3]
		default:
			return t, "", fmt.Errorf("%s: images of shape %v; want [N, H, W] or [N, C, H, W]", o.targets, a.Shape)
		}
		if pixels, err = a.Float32(); err != nil {
			return t, "", fmt.Errorf("%s: %w", o.targets, err)
		}
		source = o.targets
	default:
		var err error
		d, err = dataset.Load(o.data, func(f string, a ...any) {
			if !o.quiet {
				fmt.Fprintf(os.Stderr, f+"\n", a...)
			}
		})
		if err != nil {
			return t, "", err
		}
		trials = d.Indices(o.tier)
		if len(trials) == 0 {
			return t, "", usagef("--tier %q: %s has no trials of that tier", o.tier, o.data)
		}
		if d.Neurons != train.Neurons() {
			return t, "", fmt.Errorf("the --train models predict %d neurons but %s has %d; use the data set the models were trained on", train.Neurons(), o.data, d.Neurons)
		}
		n, c, h, w = len(trials), d.C, d.H, d.W
		pixels = make([]float32, 0, n*d.ImageLen())
		for _, i := range trials {
			pixels = append(pixels, d.Image(i)...)
		}
		source = o.data + ":" + o.tier
	}
	if n == 0 {
		return t, "", usagef("no target images in %s", source)
	}
	pick, err := parseNeurons(o.images, n)
	if err != nil {
		return t, "", usagef("--images %q: want \"all\" or positions and ranges like 0-7 among the %d target images", o.images, n)
	}
	per := c * h * w
	sel := make([]float32, 0, len(pick)*per)
	for _, p := range pick {
		sel = append(sel, pixels[p*per:(p+1)*per]...)
	}
	x := tensor.FromSlice(dev, sel, len(pick), c, h, w)
	if c != 1 {
		x = tensor.Mean(x, true, 1)
	}
	if h != ih || w != iw {
		x = tensor.ResizeBilinear(x, ih, iw, false)
	}
	x = train.Config().Standardize(x).Detach()
	t.IDs, t.Images = pick, x
	if !o.recorded {
		t.Responses = train.Forward(x).Detach()
		return t, source, nil
	}
	nn := d.Neurons
	resp := make([]float32, 0, len(pick)*nn)
	var keep []int
	for j := 0; j < nn; j++ {
		ok := true
		for _, p := range pick {
			i := trials[p]
			v := d.Responses[i*nn+j]
			if math.IsNaN(float64(v)) || (d.Mask != nil && !d.Mask[i*nn+j]) {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, j)
		}
	}
	if len(keep) == 0 {
		return t, "", fmt.Errorf("no neuron of %s is recorded in every chosen trial", o.data)
	}
	for _, p := range pick {
		i := trials[p]
		for j := 0; j < nn; j++ {
			v := d.Responses[i*nn+j]
			if math.IsNaN(float64(v)) {
				v = 0 // left out by Neurons
			}
			resp = append(resp, v)
		}
	}
	t.Responses = tensor.FromSlice(dev, resp, len(pick), nn)
	if len(keep) < nn {
		t.Neurons = keep
	}
	return t, source, nil
}

// printReconTable prints the median distances per method (rows) and role (columns).
func printReconTable(w io.Writer, s recon.Summary) {
	fmt.Fprintf(w, "median response distance over %d targets (GD stopped early for %d; median %g GD steps)\n", s.Targets, s.GDStopped, s.MedianSteps)
	fmt.Fprintf(w, "%-8s", "")
	for _, r := range recon.Roles {
		fmt.Fprintf(w, " %10s", r)
	}
	fmt.Fprintln(w)
	for _, m := range recon.Methods {
		fmt.Fprintf(w, "%-8s", m)
		for _, r := range recon.Roles {
			if v, ok := s.Median[m][r]; ok {
				fmt.Fprintf(w, " %10.4g", v)
			} else {
				fmt.Fprintf(w, " %10s", "-")
			}
		}
		fmt.Fprintln(w)
	}
}
