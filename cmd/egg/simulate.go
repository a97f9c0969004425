package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"egg/dataset"
	"egg/encoder"
	"egg/pool"
	"egg/progress"
	"egg/simulate"
	"egg/tensor"
	"egg/train"
)

// simulateOptions are the flags of `egg simulate`.
type simulateOptions struct {
	images   string
	out      string
	truthOut string
	neurons  int
	seed     uint64
	record   simulate.RecordOptions
	quiet    bool
	stderr   io.Writer // logs and the progress bar; nil: os.Stderr
}

// simulationMetadataKey is the model-file metadata key under which `egg simulate`
// records how the ground truth and its data set were made (JSON).
const simulationMetadataKey = "egg.simulation"

func newSimulateCmd(g *globalOptions) *cobra.Command {
	o := &simulateOptions{}
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Record a simulated V4 population's responses to an image pool: a data set with a known ground truth",
		Long: `simulate builds a population of simulated V4-like neurons (oriented-energy subunits
combined into corner, curvature and texture preferences, with divisive normalisation,
position tolerance and a softplus output; see the simulate package's documentation),
shows it the patches of an image pool (egg pool) and writes their Poisson responses as a
data set in egg's .npz format: the data egg train expects, with a ground truth.

The pool's train patches become train and validation trials (--val of them validation);
--test of its validation patches become test images, each shown --repeats times with
independent draws. Images are the pool's pixels; image_ids are the patches' indices in
the pool. The neurons see z-scored pixels, (pixel - mean) / std with the mean and
standard deviation of the train trials' pixels (as egg train z-scores them), and their
output nonlinearity is calibrated on the train images so that each neuron's mean rate is
5-20 spikes/s in a 200 ms counting window.

The population is written to --truth-out (default: --out with _truth.safetensors), a
model file for the --truth flag of egg mei: the ground truth that the twins trained on
the data set approximate. The same pool, flags and --seed give the same files.

Exit status: 0 on success, 1 when the simulation failed, 2 on a usage error.`,
		Example: `  egg simulate --images pool.npz --out v4.npz --neurons 100 --repeats 10 --test 100
  egg train --data v4.npz --arch data-driven-attention --out twin.safetensors
  egg mei --method ga --train twin.safetensors --truth v4_truth.safetensors --neurons 0-9`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimulate(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.images, "images", "", "image pool (.npz made by egg pool; required)")
	f.StringVarP(&o.out, "out", "o", "", "data set to write (.npz; required)")
	f.StringVar(&o.truthOut, "truth-out", "", "ground-truth model file to write (default: --out with _truth.safetensors)")
	f.IntVar(&o.neurons, "neurons", 100, "number of simulated neurons")
	f.Uint64Var(&o.seed, "seed", 0, "random seed (the population, the choice of images, the spike counts)")
	f.IntVar(&o.record.Repeats, "repeats", 10, "presentations of each test image")
	f.IntVar(&o.record.Test, "test", 100, "test images, from the pool's validation patches")
	f.Float64Var(&o.record.ValFraction, "val", 0.2, "share of the pool's train patches in the validation tier")
	f.IntVar(&o.record.Max, "max", 0, "most train and validation images, a random subset of the pool's train patches (0: all)")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	return cmd
}

func runSimulate(ctx context.Context, g *globalOptions, o *simulateOptions) error {
	switch {
	case o.images == "":
		return usagef("--images is required: an image pool made by egg pool")
	case o.out == "":
		return usagef("--out is required: the data set to write, e.g. v4.npz")
	case o.neurons < 1:
		return usagef("--neurons %d: want at least 1", o.neurons)
	case o.record.Repeats < 1 || o.record.Test < 0 || o.record.Max < 0:
		return usagef("--repeats must be at least 1, --test and --max at least 0")
	case o.record.ValFraction < 0 || o.record.ValFraction >= 1:
		return usagef("--val %g: want a fraction in [0, 1)", o.record.ValFraction)
	}
	if o.truthOut == "" {
		o.truthOut = strings.TrimSuffix(o.out, ".npz") + "_truth.safetensors"
	}
	stderr := o.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	p, err := pool.Read(o.images)
	if err != nil {
		return err
	}
	dev := tensor.CPU(g.threads)
	cfg := simulate.Config{Size: p.Size, Neurons: o.neurons, Seed: o.seed}
	m, err := simulate.New(dev, cfg)
	if err != nil {
		return err
	}
	var bar *progress.Bar
	opts := o.record
	opts.Seed = o.seed
	opts.Progress = func(done, total int) {
		if o.quiet {
			return
		}
		if bar == nil {
			bar = progress.New(stderr, total, progress.Options{Description: "recording", Unit: "images", Clear: true})
		}
		bar.Set(done)
	}
	start := time.Now()
	d, err := simulate.Record(ctx, m, p, opts)
	if bar != nil {
		bar.Finish()
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; nothing was written")
	}
	if err != nil {
		return err
	}
	if err := dataset.WriteNPZ(o.out, d); err != nil {
		return err
	}
	d.Source = o.out
	tr, va, te := d.Indices(dataset.Train), d.Indices(dataset.Validation), d.Indices(dataset.Test)
	logf("recorded %d neurons (%s) on %d %dx%d images of %s in %s", o.neurons, kinds(m), d.UniqueImages(), p.Size, p.Size, o.images, time.Since(start).Round(time.Millisecond))
	logf("wrote %s: %d train, %d validation and %d test trials (%d test images x %d repeats); pixels z-scored with mean %.4g and std %.4g",
		o.out, len(tr), len(va), len(te), opts.Test, opts.Repeats, m.Config().InputMean, m.Config().InputStd)
	lo, hi, mean := rateRange(d, tr)
	logf("mean responses over the train trials: %.2f to %.2f spikes per trial (%.1f to %.1f spikes/s), %.2f on average",
		lo, hi, lo/simulate.DefaultWindow, hi/simulate.DefaultWindow, mean)
	meta := map[string]any{"pool": o.images, "data": o.out, "seed": o.seed, "neurons": o.neurons, "repeats": opts.Repeats,
		"test": opts.Test, "val": opts.ValFraction, "max": opts.Max}
	if len(te) > 0 {
		ev, err := train.Evaluate(m, d, dataset.Test, 64)
		if err != nil {
			return err
		}
		meta["truth_test_correlation"], meta["truth_average_correlation"], meta["oracle"] = ev.SingleTrial, ev.Average, ev.Oracle
		logf("the ground truth on the test trials: single-trial correlation %.4f, correlation to the trial average %.4f (oracle of the data %.4f): the best a twin can do",
			ev.SingleTrial, ev.Average, ev.Oracle)
	}
	js, err := json.Marshal(finite(meta))
	if err != nil {
		return fmt.Errorf("cannot record the simulation settings: %w", err)
	}
	if err := simulate.Save(o.truthOut, m, map[string]string{simulationMetadataKey: string(js)}); err != nil {
		return fmt.Errorf("cannot write the ground truth: %w", err)
	}
	logf("wrote the ground truth to %s (use it as egg mei --truth)", o.truthOut)
	return nil
}

// kinds counts the population's neurons of each kind.
func kinds(m *simulate.Model) string {
	count := map[string]int{}
	for _, n := range m.Describe() {
		count[n.Kind]++
	}
	var parts []string
	for _, k := range []string{simulate.Angle, simulate.Curve, simulate.Texture} {
		parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
	}
	return strings.Join(parts, ", ")
}

// rateRange returns the lowest and highest per-neuron mean response over trials idx,
// and their mean.
func rateRange(d *dataset.Dataset, idx []int) (lo, hi, mean float64) {
	means := make([]float64, d.Neurons)
	for _, i := range idx {
		for j, v := range d.Responses[i*d.Neurons : (i+1)*d.Neurons] {
			means[j] += float64(v) / float64(len(idx))
		}
	}
	for _, v := range means {
		mean += v / float64(len(means))
	}
	if len(idx) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	return slices.Min(means), slices.Max(means), mean
}

// loadModel loads an egg model file: an encoding model (encoder.Save, egg train) or a
// simulated population (simulate.Save, egg simulate).
func loadModel(dev *tensor.Device, path string) (encoder.Model, error) {
	if simulate.IsModelFile(path) {
		return simulate.LoadOn(dev, path)
	}
	return encoder.LoadOn(dev, path)
}
