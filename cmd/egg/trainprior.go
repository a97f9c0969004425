package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"egg/adm"
	"egg/priortrain"
	"egg/progress"
)

// unetFlags describe a UNet by guided-diffusion's flags, for priors of any size.
type unetFlags struct {
	imageSize         int
	channels          int
	channelMult       string
	resBlocks         int
	attention         string // resolutions in pixels, as guided-diffusion's attention_resolutions
	headChannels      int
	heads             int
	scaleShiftNorm    bool
	resblockUpdown    bool
	newAttentionOrder bool
	learnSigma        bool
}

// unetFlagNames are the flags unetFlags reads; they are misuse beside --preset or --config.
var unetFlagNames = []string{"image-size", "channels", "channel-mult", "res-blocks", "attention", "head-channels",
	"heads", "scale-shift-norm", "resblock-updown", "new-attention-order", "learn-sigma"}

// trainPriorOptions are the flags of `egg train-prior`.
type trainPriorOptions struct {
	pool          string
	out           string
	preset        string
	configFile    string
	unet          unetFlags
	unetFlagsSet  []string // UNet flags given on the command line
	noiseSchedule string
	diffSteps     int
	train         priortrain.Options
	quiet         bool
	stderr        io.Writer // logs and the progress bar; nil: os.Stderr
}

func newTrainPriorCmd(g *globalOptions) *cobra.Command {
	o := &trainPriorOptions{}
	def := priortrain.Defaults()
	cmd := &cobra.Command{
		Use:   "train-prior",
		Short: "Train a diffusion prior (ADM UNet) on an image pool",
		Long: `train-prior trains a guided-diffusion (ADM) UNet on the images of a pool, as
guided-diffusion's image_train.py does, and writes the EMA weights as an egg prior
file (safetensors) that egg sample and egg mei read without --preset or --config:
its metadata holds the UNet ("egg.adm"), the diffusion process ("egg.diffusion") and
how it was trained ("egg.training": steps, seed, the pool's SHA-256, losses).

The pool is an .npz archive (egg pool writes one) with images, uint8 [N, 1, S, S]
(or [N, C, S, S]), and optionally tiers ("train", "validation"). Training uses the
train tier; the EMA weights' loss on --validation images of the validation tier is
reported at every checkpoint.

The recipe: pixels scaled to [-1, 1], random left-right flips, timesteps drawn
uniformly, the hybrid loss L_simple + 0.001 L_vlb with a learned variance (Nichol &
Dhariwal 2021), AdamW, an exponential moving average of the weights (--ema), and
zero-initialised output layers. The progress bar shows the loss (its mse and vb
parts) and the steps per second.

The UNet is a released preset (--preset), a JSON file of UNetModel keyword arguments
(--config) or, by default, the flags below: in_channels is the pool's, out_channels
twice that (learned variance), image_size the pool's. --attention takes resolutions
in pixels as guided-diffusion does (16,8 at 64x64 means downsampling factors 4 and
8); by default image-size/4 and image-size/8.

A checkpoint (--checkpoint, by default next to --out) is written every
--checkpoint-every steps, at the end, at --time-limit and on Ctrl-C. It holds the
raw and EMA weights and AdamW's state; every random choice follows from --seed and
the step, so running the same command with --resume continues exactly as if the run
had never stopped, and --resume with a larger --steps extends a finished run.
--time-limit trains in pieces: the run stops cleanly after that long and still
writes --out (the EMA weights so far).

Exit status: 0 on success (time limit included), 1 when training failed or was
interrupted, 2 on a usage error.`,
		Example: `  egg train-prior --pool patches64.npz --out prior.safetensors --steps 40000 --time-limit 50m
  egg train-prior --pool patches64.npz --out prior.safetensors --steps 40000 --time-limit 50m --resume
  egg train-prior --pool patches32.npz --out prior32.safetensors --channels 32 --steps 20000 --ema 0.999
  egg sample --weights prior.safetensors --steps 100 --n 16 --out samples/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range unetFlagNames {
				if cmd.Flags().Changed(name) {
					o.unetFlagsSet = append(o.unetFlagsSet, "--"+name)
				}
			}
			return runTrainPrior(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.pool, "pool", "", "image pool: an .npz archive with images, uint8 [N, 1, S, S] (required)")
	f.StringVarP(&o.out, "out", "o", "", "prior file to write (.safetensors; required)")
	f.StringVar(&o.preset, "preset", "", "UNet flags of a released guided-diffusion checkpoint: "+strings.Join(adm.PresetNames(), ", "))
	f.StringVar(&o.configFile, "config", "", "JSON file of guided-diffusion UNetModel keyword arguments (instead of the UNet flags)")
	f.IntVar(&o.unet.imageSize, "image-size", 0, "image size of the UNet (0: the pool's)")
	f.IntVar(&o.unet.channels, "channels", defaultPriorChannels, "model channels (a multiple of 32)")
	f.StringVar(&o.unet.channelMult, "channel-mult", "1,2,2,2", "channel multiplier of each resolution level")
	f.IntVar(&o.unet.resBlocks, "res-blocks", 2, "residual blocks per level")
	f.StringVar(&o.unet.attention, "attention", "", "resolutions (pixels) with self-attention, e.g. 16,8 (default: image-size/4 and image-size/8; none: no attention)")
	f.IntVar(&o.unet.headChannels, "head-channels", 32, "channels per attention head (-1: use --heads)")
	f.IntVar(&o.unet.heads, "heads", 4, "attention heads, when --head-channels is -1")
	f.BoolVar(&o.unet.scaleShiftNorm, "scale-shift-norm", true, "condition residual blocks on the timestep by scale and shift of the norm")
	f.BoolVar(&o.unet.resblockUpdown, "resblock-updown", true, "resample with residual blocks instead of convolutions")
	f.BoolVar(&o.unet.newAttentionOrder, "new-attention-order", false, "split q, k, v before heads (guided-diffusion's QKVAttention)")
	f.BoolVar(&o.unet.learnSigma, "learn-sigma", true, "learn the variance (out_channels = 2 x in_channels) with the hybrid loss")
	f.StringVar(&o.noiseSchedule, "noise-schedule", "linear", "beta schedule: linear or cosine")
	f.IntVar(&o.diffSteps, "diffusion-steps", 1000, "steps of the diffusion process")
	f.IntVar(&o.train.Steps, "steps", 0, "training steps in all, resumed ones included (required)")
	f.IntVar(&o.train.BatchSize, "batch-size", def.BatchSize, "images per step")
	f.Float64Var(&o.train.LR, "lr", def.LR, "AdamW learning rate")
	f.IntVar(&o.train.LRAnnealSteps, "lr-anneal-steps", 0, "anneal the learning rate linearly to 0 at this step (0: constant)")
	f.Float64Var(&o.train.WeightDecay, "weight-decay", def.WeightDecay, "AdamW's decoupled weight decay")
	f.Float64Var(&o.train.EMA, "ema", def.EMA, "EMA rate of the weights (the EMA is the trained prior; 0.999 suits runs under ~50k steps)")
	f.BoolVar(&o.train.EMAWarmup, "ema-warmup", true, "cap the EMA rate of step k at (1+k)/(10+k) so the random initial weights fade quickly (guided-diffusion has no warm-up: --ema-warmup=false); may be turned on when resuming")
	f.Uint64Var(&o.train.Seed, "seed", def.Seed, "random seed (initial weights, image order, flips, timesteps, noise)")
	f.BoolVar(&o.train.Flip, "flip", def.Flip, "flip images left-right at random")
	f.StringVar(&o.train.Checkpoint, "checkpoint", "", "checkpoint file (default: --out with .checkpoint.safetensors)")
	f.IntVar(&o.train.CheckpointEvery, "checkpoint-every", def.CheckpointEvery, "steps between checkpoints (0: only at the end)")
	f.BoolVar(&o.train.Resume, "resume", false, "continue from the checkpoint if there is one")
	f.DurationVar(&o.train.TimeLimit, "time-limit", 0, "stop cleanly after this long (e.g. 50m; 0: no limit); --resume continues")
	f.IntVar(&o.train.Validation, "validation", def.Validation, "validation images scored at every checkpoint (0: none)")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	return cmd
}

// defaultPriorChannels is the default --channels (see priortrain's benchmarks).
const defaultPriorChannels = 32

// config returns the UNet the flags describe for a pool of c-channel size x size
// images.
func (u unetFlags) config(c, size int) (adm.Config, error) {
	if u.imageSize == 0 {
		u.imageSize = size
	}
	cfg := adm.Config{ImageSize: u.imageSize, InChannels: c, OutChannels: c, ModelChannels: u.channels,
		NumResBlocks: u.resBlocks, NumHeads: u.heads, NumHeadChannels: u.headChannels, NumHeadsUpsample: -1,
		UseScaleShiftNorm: u.scaleShiftNorm, ResblockUpdown: u.resblockUpdown, UseNewAttentionOrder: u.newAttentionOrder}
	if u.learnSigma {
		cfg.OutChannels = 2 * c
	}
	var err error
	if cfg.ChannelMult, err = parseInts(u.channelMult); err != nil || len(cfg.ChannelMult) == 0 {
		return cfg, usagef("--channel-mult %q: want positive integers such as 1,2,2,2", u.channelMult)
	}
	for _, m := range cfg.ChannelMult {
		if m < 1 {
			return cfg, usagef("--channel-mult %q: want positive integers such as 1,2,2,2", u.channelMult)
		}
	}
	if u.resBlocks < 1 || u.channels < 1 {
		return cfg, usagef("--res-blocks %d and --channels %d must be positive", u.resBlocks, u.channels)
	}
	levels := len(cfg.ChannelMult)
	if u.imageSize%(1<<(levels-1)) != 0 {
		return cfg, usagef("--image-size %d does not halve %d times (%d levels in --channel-mult)", u.imageSize, levels-1, levels)
	}
	var res []int
	switch u.attention {
	case "":
		res = []int{u.imageSize / 4, u.imageSize / 8}
	case "none":
	default:
		if res, err = parseInts(u.attention); err != nil {
			return cfg, usagef("--attention %q: want resolutions in pixels such as 16,8, or none", u.attention)
		}
	}
	var levelsRes []string
	for l := 0; l < levels; l++ {
		levelsRes = append(levelsRes, strconv.Itoa(u.imageSize>>l))
	}
	for _, r := range res {
		if r < 1 || u.imageSize%r != 0 || u.imageSize/r >= 1<<levels || (u.imageSize/r)&(u.imageSize/r-1) != 0 {
			if u.attention == "" {
				continue // the default skips resolutions the UNet lacks
			}
			return cfg, usagef("--attention %d is not a resolution of the UNet (%s)", r, strings.Join(levelsRes, ", "))
		}
		cfg.AttentionResolutions = append(cfg.AttentionResolutions, u.imageSize/r)
	}
	if u.headChannels != -1 && u.headChannels < 1 || u.headChannels == -1 && u.heads < 1 {
		return cfg, usagef("--head-channels %d: want a positive number, or -1 with --heads", u.headChannels)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	if u.headChannels > 0 {
		for _, m := range cfg.ChannelMult {
			if ch := m * u.channels; ch%u.headChannels != 0 {
				return cfg, usagef("--head-channels %d does not divide the %d channels of a level", u.headChannels, ch)
			}
		}
	}
	return cfg, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func runTrainPrior(ctx context.Context, g *globalOptions, o *trainPriorOptions) error {
	switch {
	case o.pool == "":
		return usagef("--pool is required (an .npz image pool; egg pool makes one from a folder of images)")
	case o.out == "":
		return usagef("--out is required (the prior file to write, e.g. prior.safetensors)")
	case o.train.Steps < 1:
		return usagef("--steps is required: the number of training steps in all (e.g. 40000; resume with a larger number to train on)")
	case o.preset != "" && o.configFile != "":
		return usagef("give --preset or --config, not both")
	case (o.preset != "" || o.configFile != "") && len(o.unetFlagsSet) > 0:
		return usagef("%s describe the UNet without --preset or --config; drop one or the other", strings.Join(o.unetFlagsSet, ", "))
	}
	stderr := o.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	var bar *progress.Bar
	logf := func(format string, a ...any) {
		if bar != nil {
			bar.Clear()
		}
		fmt.Fprintf(stderr, format+"\n", a...)
	}
	pool, err := priortrain.LoadPool(o.pool)
	if err != nil {
		return err
	}
	var cfg adm.Config
	switch {
	case o.preset != "":
		cfg, err = adm.Preset(o.preset)
	case o.configFile != "":
		cfg, err = adm.LoadConfig(o.configFile)
	default:
		cfg, err = o.unet.config(pool.C, pool.Size)
	}
	if err != nil {
		return err
	}
	d := priortrain.Diffusion{NoiseSchedule: o.noiseSchedule, Steps: o.diffSteps, LearnSigma: cfg.LearnSigma(), RescaleTimesteps: true}
	if o.noiseSchedule != "linear" && o.noiseSchedule != "cosine" {
		return usagef("--noise-schedule %q: want linear or cosine", o.noiseSchedule)
	}
	if o.diffSteps < 2 {
		return usagef("--diffusion-steps %d: want at least 2 (guided-diffusion uses 1000)", o.diffSteps)
	}
	if err := priortrain.CheckConfig(cfg, d, pool); err != nil {
		return usageError{err}
	}
	opts := o.train
	if opts.Checkpoint == "" {
		opts.Checkpoint = checkpointPath(o.out)
	}
	if _, err := os.Stat(opts.Checkpoint); err == nil && !opts.Resume {
		logf("starting over: the checkpoint %s will be overwritten (pass --resume to continue it instead)", opts.Checkpoint)
	}
	opts.Logf = logf
	var shown priortrain.Window // smoothed losses for the bar
	first := 0                  // the step this piece starts at; the bar counts this piece's steps
	opts.Progress = func(p priortrain.Progress) {
		if o.quiet {
			return
		}
		if bar == nil {
			if p.Step >= p.Steps {
				return // nothing to train
			}
			first = p.Step
			bar = progress.New(stderr, p.Steps-p.Step, progress.Options{Description: "training", Unit: "steps"})
			return
		}
		// A moving average of the losses over about the last 50 steps (the plain mean
		// while there are fewer).
		shown.Steps++
		a := max(0.02, 1/float64(shown.Steps))
		shown.Loss += a * (p.Last.Loss - shown.Loss)
		shown.MSE += a * (p.Last.MSE - shown.MSE)
		shown.VB += a * (p.Last.VB - shown.VB)
		bar.Describe(fmt.Sprintf("loss %.4f (mse %.4f, vb %.4f)", shown.Loss, shown.MSE, shown.VB))
		bar.Set(p.Step - first)
	}
	dev, err := g.device()
	if err != nil {
		return err
	}
	attn := "no attention"
	if len(cfg.AttentionResolutions) > 0 {
		var rs []string
		for _, ds := range cfg.AttentionResolutions {
			rs = append(rs, fmt.Sprintf("%dx%d", cfg.ImageSize/ds, cfg.ImageSize/ds))
		}
		attn = "attention at " + strings.Join(rs, " and ")
	}
	logf("training a %dx%d UNet with %d channels in and %d out (%d model channels, multipliers %v, %d residual blocks per level, %s) on %s: %d images, %d in the train tier",
		cfg.ImageSize, cfg.ImageSize, cfg.InChannels, cfg.OutChannels, cfg.ModelChannels, cfg.ChannelMult, cfg.NumResBlocks, attn,
		o.pool, pool.N, len(pool.Indices(priortrain.Train)))
	res, err := priortrain.Run(ctx, dev, cfg, d, pool, opts)
	if bar != nil {
		bar.Exit() // keeps its state: full when finished, else where training stopped
		fmt.Fprintln(stderr)
		bar = nil
	}
	if err != nil {
		return err
	}
	prov := res.Provenance(pool, opts, dev.Threads())
	if err := priortrain.WriteModel(o.out, res.Model, d, prov); err != nil {
		return fmt.Errorf("cannot write the prior: %w", err)
	}
	val := ""
	if res.Validation != nil {
		val = fmt.Sprintf(", validation loss (EMA) %.5f", *res.Validation)
	}
	if !res.Finished {
		logf("%s; wrote the EMA weights so far to %s%s. Run the same command with --resume to continue (checkpoint %s)",
			res.Stopped, o.out, val, opts.Checkpoint)
		return nil
	}
	if res.ResumedFrom == res.Step {
		logf("the checkpoint %s is at step %d already: nothing to train (raise --steps to train on)", opts.Checkpoint, res.Step)
	}
	logf("%s in %s; wrote %s (EMA weights; loss %.5f%s)", res.Stopped, time.Duration(res.Seconds*float64(time.Second)).Round(time.Second),
		o.out, res.Last.Loss, val)
	return nil
}
