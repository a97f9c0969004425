package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"egg/dataset"
	"egg/encoder"
	"egg/progress"
	"egg/train"
)

// trainOptions are the flags of `egg train`.
type trainOptions struct {
	data       string
	arch       string
	out        string
	size       train.ArchOptions
	coreFile   string
	corePrefix string
	train      train.Options
	checkpoint string
	resume     bool
	quiet      bool
	stderr     io.Writer // logs and the progress bar; nil: os.Stderr
}

// trainingMetadataKey is the model-file metadata key under which `egg train`
// records how the model was trained (JSON).
const trainingMetadataKey = "egg.training"

func newTrainCmd(g *globalOptions) *cobra.Command {
	o := &trainOptions{}
	def, size := train.Defaults(), train.DefaultArch()
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train an encoding model on recorded responses",
		Long: `train fits an encoding model (image -> firing rates) to a data set and writes it as
an egg model file (safetensors, its architecture in the metadata) for egg evaluate, mei
and the other commands.

The data set is an .npz file (images [N, 1, H, W] or [N, H, W], responses [N, neurons];
optional tiers, image_ids, mask, neuron_ids) or a neuralpredictors static folder
(data/images/<i>.npy, data/responses/<i>.npy, meta/trials/tiers.npy, ...). Without
tiers, the trials are split into train and validation at random with a fixed seed.

The recipe is the paper's: Poisson loss scaled by sqrt(N_train / batch) plus the model's
regularisers, AdamW, ReduceLROnPlateau on the validation correlation, early stopping
that restores the best weights. Pixels are z-scored with the mean and standard
deviation of the training images, which the model file records.

After every epoch a checkpoint (--checkpoint, by default next to --out) holds
everything needed to continue: after an interruption (Ctrl-C, a lost machine), run the
same command with --resume to finish with the same model as an uninterrupted run. The
checkpoint stays after training, so --resume with a larger --epochs extends a run that
reached its limit. The same --seed, data, flags and --threads give the same model, bit
for bit.

Task-driven architectures need the pretrained ResNet-50 (--core-weights), which stays
frozen; --channels, --layers and the kernel sizes apply to data-driven cores only.

Exit status: 0 on success, 1 when training failed or was interrupted, 2 on a usage error.`,
		Example: `  egg train --data v4.npz --arch data-driven-attention --out v4_attention.safetensors
  egg train --data v4.npz --arch task-driven-gaussian --core-weights resnet50_l2_eps0.1.pt --core-prefix module.model. --out v4_resnet.safetensors
  egg train --data v4.npz --arch data-driven-attention --out v4_attention.safetensors --resume`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTrain(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "data set: an .npz file or a static data folder (required)")
	f.StringVar(&o.arch, "arch", train.DataDrivenAttention, "architecture: "+strings.Join(train.ArchNames(), ", "))
	f.StringVarP(&o.out, "out", "o", "", "model file to write (.safetensors; required)")
	f.IntVar(&o.size.Channels, "channels", size.Channels, "channels of the data-driven core")
	f.IntVar(&o.size.Layers, "layers", size.Layers, "layers of the data-driven core")
	f.IntVar(&o.size.InputKern, "input-kern", size.InputKern, "kernel size of the data-driven core's first layer")
	f.IntVar(&o.size.HiddenKern, "hidden-kern", size.HiddenKern, "kernel size of the data-driven core's other layers")
	f.IntVar(&o.size.EmbedDim, "embed-dim", size.EmbedDim, "key and value size of the attention readout")
	f.StringVar(&o.size.LayerName, "resnet-layer", size.LayerName, "where the task-driven ResNet-50 is cut")
	f.StringVar(&o.coreFile, "core-weights", "", "pretrained ResNet-50 checkpoint for task-driven architectures (torchvision names)")
	f.StringVar(&o.corePrefix, "core-prefix", "", `prefix of the ResNet's tensor names in --core-weights ("module.model." for robustness-library files)`)
	f.IntVar(&o.train.Epochs, "epochs", def.Epochs, "most epochs to train")
	f.IntVar(&o.train.BatchSize, "batch-size", def.BatchSize, "images per training step")
	f.Float64Var(&o.train.LR, "lr", def.LR, "initial learning rate")
	f.Float64Var(&o.train.WeightDecay, "weight-decay", def.WeightDecay, "AdamW's decoupled weight decay")
	f.Uint64Var(&o.train.Seed, "seed", def.Seed, "random seed (initial weights, image order, training noise)")
	f.IntVar(&o.train.Patience, "patience", def.Patience, "early stopping: epochs without improvement before the best weights are restored")
	f.IntVar(&o.train.LRDecaySteps, "lr-decay-steps", def.LRDecaySteps, "early stopping: restores of the best weights before training stops")
	f.Float64Var(&o.train.Tolerance, "tolerance", def.Tolerance, "smallest improvement of the validation correlation that counts")
	f.Float64Var(&o.train.LRFactor, "lr-factor", def.LRFactor, "learning-rate reduction factor on a plateau")
	f.IntVar(&o.train.LRPatience, "lr-patience", def.LRPatience, "epochs without improvement before the learning rate is reduced")
	f.Float64Var(&o.train.MinLR, "min-lr", def.MinLR, "lowest learning rate")
	f.StringVar(&o.checkpoint, "checkpoint", "", "checkpoint file written after every epoch (default: --out with .checkpoint.safetensors)")
	f.BoolVar(&o.resume, "resume", false, "continue from the checkpoint if there is one")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	return cmd
}

// checkpointPath is the default checkpoint next to the model file.
func checkpointPath(out string) string {
	return strings.TrimSuffix(out, ".safetensors") + ".checkpoint.safetensors"
}

func runTrain(ctx context.Context, g *globalOptions, o *trainOptions) error {
	switch {
	case o.data == "":
		return usagef("--data is required (an .npz file or a static data folder)")
	case o.out == "":
		return usagef("--out is required (the model file to write, e.g. model.safetensors)")
	case !slices.Contains(train.ArchNames(), o.arch):
		return usagef("--arch %q: want one of %s", o.arch, strings.Join(train.ArchNames(), ", "))
	}
	// The model file is written at the end: an unwritable folder must not cost a
	// whole training.
	if err := checkWritable(filepath.Dir(o.out)); err != nil {
		return err
	}
	stderr := o.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	taskDriven := strings.HasPrefix(o.arch, "task-driven-")
	if taskDriven && o.coreFile == "" {
		return usagef("--arch %s needs the pretrained ResNet-50: pass --core-weights FILE (a torchvision or robustness-library checkpoint)", o.arch)
	}
	cfg, err := train.Architecture(o.arch, o.size)
	if err != nil {
		return usageError{err}
	}
	d, err := dataset.Load(o.data, logf)
	if err != nil {
		return err
	}
	cfg = train.ForData(cfg, d)
	dev, err := g.device()
	if err != nil {
		return err
	}
	m, err := train.NewModel(dev, cfg, o.train.Seed)
	if err != nil {
		return usageError{err}
	}
	if taskDriven {
		if err := encoder.LoadBackbone(m.(*encoder.Encoder), o.coreFile, o.corePrefix); err != nil {
			return err
		}
	}
	opts := o.train
	opts.Checkpoint, opts.Resume, opts.Logf = o.checkpoint, o.resume, logf
	if opts.Checkpoint == "" {
		opts.Checkpoint = checkpointPath(o.out)
	}
	if _, err := os.Stat(opts.Checkpoint); err == nil && !o.resume {
		logf("starting over: the checkpoint %s will be overwritten (pass --resume to continue it instead)", opts.Checkpoint)
	}
	var bar *progress.Bar
	opts.Progress = func(epoch, batch, batches int) {
		switch {
		case o.quiet:
		case batch == 0:
			// A bar within each epoch on a terminal; elsewhere the epochs' own log
			// lines are the progress.
			bar = progress.New(stderr, batches, progress.Options{Description: fmt.Sprintf("epoch %d", epoch), Unit: "steps", Clear: true,
				Hidden: !progress.IsTerminal(stderr)})
		case batch == batches:
			bar.Finish()
		default:
			bar.Set(batch)
		}
	}
	logf("training %s (%s) on %s: %d neurons, %dx%dx%d images, %d train, %d validation and %d test trials; pixels z-scored with mean %.4g and std %.4g",
		o.arch, cfg.Arch(), o.data, d.Neurons, d.C, d.H, d.W, len(d.Indices(dataset.Train)), len(d.Indices(dataset.Validation)),
		len(d.Indices(dataset.Test)), cfg.InputMean, cfg.InputStd)
	res, err := train.Run(ctx, m, d, opts)
	if err != nil {
		return err
	}
	meta := map[string]any{
		"data": o.data, "arch": o.arch, "seed": o.train.Seed, "epochs": res.Epochs, "best_epoch": res.BestEpoch,
		"validation_correlation": res.BestCorrelation, "stopped": res.Stopped,
	}
	summary := ""
	if len(d.Indices(dataset.Test)) > 0 {
		ev, err := train.Evaluate(m, d, dataset.Test, opts.BatchSize)
		if err != nil {
			return err
		}
		meta["test_correlation"] = ev.SingleTrial
		summary = fmt.Sprintf(", test correlation %.4f", ev.SingleTrial)
	}
	js, err := json.Marshal(finite(meta))
	if err != nil {
		return fmt.Errorf("cannot record the training summary: %w", err)
	}
	if err := encoder.Save(o.out, m, map[string]string{trainingMetadataKey: string(js)}); err != nil {
		return fmt.Errorf("cannot write the model: %w", err)
	}
	logf("%s; wrote %s (weights of epoch %d: validation correlation %.4f%s)", res.Stopped, o.out, res.BestEpoch, res.BestCorrelation, summary)
	return nil
}

// finite replaces non-finite numbers of m by nil, which JSON can hold.
func finite(m map[string]any) map[string]any {
	for k, v := range m {
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			m[k] = nil
		}
	}
	return m
}
