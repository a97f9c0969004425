package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"egg/ascent"
	"egg/mei"
	"egg/progress"
)

// meiOptions are the flags of `egg mei`.
type meiOptions struct {
	method                      string
	train, within, cross, truth string
	neurons, seeds              string
	scale                       float64
	norm                        float32
	gradNorm                    string
	iterations                  int
	lr, blur                    float64
	batchSize                   int
	out                         string
	quiet                       bool
	prior                       priorOptions
	jobs                        jobOptions
}

func newMEICmd(g *globalOptions) *cobra.Command {
	o := &meiOptions{}
	cmd := &cobra.Command{
		Use:   "mei",
		Short: "Make most exciting inputs (MEIs) for neurons, by EGG or gradient ascent",
		Long: `mei makes the images that drive model neurons most, for one neuron or thousands.

--method egg steers a diffusion model (--weights/--preset/--config) with the gradient of
minus the neuron's response (energy-guided diffusion); --method ga runs gradient ascent on
the model input as the sinzlab mei package does. Each neuron runs with every seed of
--seeds; the image that drives the --train models most is kept and then scored by the
--within, --cross and --truth models. Many neurons share a batch; each sample is an
independent run (per-sample gradient normalisation and noise).

Outputs in --out/<method>/: neuron_<id>.png (the model input), .npy (the same as an
array), .json (activations, seeds, settings, hashes of every model file, time), and
summary.json. Records are written last, atomically: a run that is interrupted resumes
where it stopped, without recomputing finished neurons.

Models are egg model files (safetensors with the architecture in their metadata); give
several, comma-separated, for an ensemble (the mean of their outputs).

Built-in defaults: without --train, egg uses its digital twins of 100 simulated V4
neurons for every role left empty (train: attention ensemble 1, within: attention
ensemble 2, cross: Gaussian-readout ensemble 1, truth: the simulated population), and
EGG without --weights/--preset/--config uses the built-in 32x32 prior. Without --norm
the model input's L2 norm is the paper's 25 at 100x100 scaled to the same per-pixel
RMS: 25*sqrt(H*W)/100 (8 for the built-in 32x32 twins). One log line says each choice.
--clip-x0 auto (the default) clips the prior's x0 prediction to [-1, 1] at every step
when the process needs it, as the built-in prior's cosine schedule does (without it the
first step's x0 prediction is the model's error times 20000 and the chain diverges).

Thousands of neurons: --shard i/N does part i of N of the neurons into the same
--out (any number of shards, on any machines that see the folder; the last to finish
writes summary.json); --executor slurm --shards N submits them as one sbatch array
(--slurm-args goes to sbatch; --wait follows it and prints the summary), and the
same command again submits only what is not done. "egg status OUT" says what is.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error, 75 when a
shard was interrupted by a signal (SLURM's RequeueExit=75 requeues it).`,
		Example: `  egg mei --method egg --neurons 0-9 --out run/     # the built-in defaults
  egg mei --method ga --train m1.safetensors,m2.safetensors --within m3.safetensors --neurons 0-9 --out run/
  egg mei --method egg --weights 256x256_diffusion_uncond.pt --preset 256x256_diffusion_uncond --train m1.safetensors --neurons 7 --scale 5
  egg mei --method ga --neurons all --out run/ --shards 16 --executor slurm --slurm-args "--partition=gpu --gres=gpu:1" --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMEI(cmd.Context(), cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.method, "method", "egg", "egg (energy-guided diffusion) or ga (gradient ascent)")
	f.StringVar(&o.train, "train", "", "model file(s) that drive the MEIs (comma-separated: an ensemble; default: the built-in twins)")
	f.StringVar(&o.within, "within", "", "held-out model file(s) of the same architecture")
	f.StringVar(&o.cross, "cross", "", "model file(s) of another architecture")
	f.StringVar(&o.truth, "truth", "", "ground-truth model file(s), when known")
	f.StringVar(&o.neurons, "neurons", "0", `neurons: "all", or indices and ranges like 0,3,5-9`)
	f.StringVar(&o.seeds, "seeds", "0,1,2", "seeds; the best on the --train models is kept")
	f.Float64Var(&o.scale, "scale", 5, "EGG energy scale (lambda)")
	f.Float32Var(&o.norm, "norm", 0, "L2 norm of the model input (0: the paper's 25 at 100x100, scaled: 25*sqrt(H*W)/100)")
	f.StringVar(&o.gradNorm, "grad-norm", "sample", "EGG gradient normalisation: sample (independent runs) or batch (the reference's)")
	f.IntVar(&o.iterations, "iterations", 1000, "GA iterations")
	f.Float64Var(&o.lr, "lr", 10, "GA AdamW learning rate")
	f.Float64Var(&o.blur, "blur", 1, "GA gradient blur sigma (0: none)")
	f.IntVar(&o.batchSize, "batch-size", 0, "samples (neuron x seed) per batch (0: 8 on the CPU; on a GPU as many as fit in its free memory)")
	f.StringVar(&o.out, "out", "meis", "output folder")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	o.prior.addFlags(f, "100")
	o.jobs.addFlags(f, "neurons")
	return cmd
}

// meiRecord is the record file of a neuron in a run folder (mei's naming).
const meiRecord = "neuron_%05d.json"

func runMEI(ctx context.Context, cmd *cobra.Command, g *globalOptions, o *meiOptions) error {
	if o.method != "egg" && o.method != "ga" {
		return usagef("--method %q: want egg or ga", o.method)
	}
	shard, err := o.jobs.parse()
	if err != nil {
		return err
	}
	dir := filepath.Join(o.out, o.method)
	merge := func(all []int) error {
		sum, err := mei.Summarize(dir, o.method, all)
		if err != nil {
			return err
		}
		printMEISummary(sum)
		return nil
	}
	// The flags first, so that a bad one fails before any work is submitted.
	seeds, err := parseSeeds(o.seeds)
	if err != nil {
		return err
	}
	if o.norm < 0 {
		return usagef("--norm %v: want a positive L2 norm (or 0 for the paper's, scaled to the input size)", o.norm)
	}
	switch {
	case o.batchSize < 0:
		return usagef("--batch-size %d: want a positive number of samples per batch, or 0 for the device's choice", o.batchSize)
	case o.method == "egg" && !(o.scale >= 0 && !math.IsInf(o.scale, 0)):
		return usagef("--scale %v: want a finite energy scale >= 0", o.scale)
	case o.method == "ga" && !(o.lr > 0 && !math.IsInf(o.lr, 0)):
		return usagef("--lr %v: want a finite positive learning rate", o.lr)
	case o.method == "ga" && !(o.blur >= 0 && !math.IsInf(o.blur, 0)):
		return usagef("--blur %v: want a blur sigma >= 0 (0: none)", o.blur)
	case o.method == "ga" && o.iterations < 1:
		return usagef("--iterations %d: want at least 1", o.iterations)
	}
	if o.jobs.executor == "slurm" {
		return submitSlurm(ctx, cmd, &o.jobs, dir, "mei", meiRecord, merge)
	}
	logf := stderrLog(o.quiet)
	df := defaultFlags{Train: &o.train, Within: &o.within, Cross: &o.cross, Truth: &o.truth}
	if o.method == "egg" {
		df.Prior = &o.prior
	}
	if _, err := applyDefaults(g, df, logf); err != nil {
		return err
	}
	rs, err := setupRun(g, df, o.norm, paperNormMEI, logf)
	if err != nil {
		return err
	}
	dev, models, norm := rs.dev, rs.models, rs.norm
	neurons, err := parseNeurons(o.neurons, rs.train.Neurons())
	if err != nil {
		return err
	}
	neurons = shard.Of(neurons)
	s := mei.Settings{Method: o.method, Seeds: seeds, BatchSize: o.batchSize, InputH: rs.ih, InputW: rs.iw, Norm: norm}
	var prior *mei.Prior
	if o.method == "egg" {
		if prior, _, err = o.prior.loadPrior(dev, true); err != nil {
			return err
		}
		s.Scale, s.GradNorm, s.Steps, s.PriorName = o.scale, o.gradNorm, prior.Schedule.NumTimesteps, o.prior.weights
		if models.Files["prior"], err = o.prior.hash(); err != nil {
			return err
		}
	} else {
		ga := ascent.Default()
		ga.Iterations, ga.LR, ga.BlurSigma, ga.Norm = o.iterations, o.lr, o.blur, norm
		s.GA = &ga
	}
	desc := o.method + " MEIs"
	if !shard.IsWhole() {
		desc += ", shard " + shard.String()
	}
	s.NoSummary = !shard.IsWhole()
	bar := progress.New(os.Stderr, len(neurons)*len(seeds), progress.Options{Description: desc, Unit: "MEIs", Hidden: o.quiet})
	var sum mei.Summary
	err = runShard(ctx, newShardRun(cmd, &o.jobs, shard, dir, "mei", meiRecord, neurons), func() error {
		var err error
		sum, err = mei.Run(ctx, dev, s, neurons, models, prior, o.out, bar)
		endBar(bar, err)
		return err
	}, merge)
	if err != nil {
		return err
	}
	if shard.IsWhole() {
		printMEISummary(sum)
	}
	return nil
}

// printMEISummary writes a run's summary as one JSON line on standard error.
func printMEISummary(sum mei.Summary) {
	b, _ := json.Marshal(map[string]any{"method": sum.Method, "neurons": sum.Neurons, "median": sum.Median, "seconds_per_mei": sum.SecondsPerMEI})
	fmt.Fprintf(os.Stderr, "\n%s\n", b)
}
