package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"egg/dataset"
	"egg/encoder"
	"egg/tensor"
	"egg/train"
)

// evaluateOptions are the flags of `egg evaluate`.
type evaluateOptions struct {
	models    []string
	data      string
	tier      string
	json      bool
	perNeuron bool
	batchSize int
	stdout    io.Writer // the report; nil: os.Stdout
	stderr    io.Writer // log lines; nil: os.Stderr
}

func newEvaluateCmd(g *globalOptions) *cobra.Command {
	o := &evaluateOptions{}
	cmd := &cobra.Command{
		Use:   "evaluate",
		Short: "Score encoding models on the test trials of a data set",
		Long: `evaluate predicts the responses to the images of one tier of a data set (test by
default) and reports, per neuron and as means over neurons:

  single-trial correlation    Pearson correlation of predictions and single-trial responses
  average correlation         correlation with the responses averaged over the trials of
                              each image (image_ids; without them it is the single-trial one)
  oracle correlation          leave-one-out correlation of each trial with the mean of the
                              other trials of its image: what a perfect model of the mean
                              response would roughly reach (only with repeated images)

Several --model flags evaluate their ensemble (the mean of the models' outputs); the
models must share the pixel normalisation, that is, come from the same data set.

Exit status: 0 on success, 1 when the evaluation failed, 2 on a usage error.`,
		Example: `  egg evaluate --model v4_attention.safetensors --data v4.npz
  egg evaluate --model a1.safetensors --model a2.safetensors --data v4.npz --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEvaluate(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.models, "model", "m", nil, "model file written by egg train (repeat for an ensemble; required)")
	f.StringVar(&o.data, "data", "", "data set: an .npz file or a static data folder (required)")
	f.StringVar(&o.tier, "tier", dataset.Test, "tier to score: test, validation or train")
	f.BoolVar(&o.json, "json", false, "print one JSON object instead of text")
	f.BoolVar(&o.perNeuron, "per-neuron", false, "also print a table of the per-neuron scores (text output)")
	f.IntVar(&o.batchSize, "batch-size", 64, "images per forward pass")
	return cmd
}

// jsonFloat is a float64 that JSON writes as null when it is NaN or infinite.
type jsonFloat float64

// MarshalJSON implements json.Marshaler.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

func jsonFloats(v []float64) []jsonFloat {
	if v == nil {
		return nil
	}
	out := make([]jsonFloat, len(v))
	for i, x := range v {
		out[i] = jsonFloat(x)
	}
	return out
}

// evaluationJSON is the --json report.
type evaluationJSON struct {
	Models      []string  `json:"models"`
	Data        string    `json:"data"`
	Tier        string    `json:"tier"`
	Trials      int       `json:"trials"`
	Images      int       `json:"images"`
	Neurons     int       `json:"neurons"`
	SingleTrial jsonFloat `json:"single_trial_correlation"`
	Average     jsonFloat `json:"average_correlation"`
	Oracle      jsonFloat `json:"oracle_correlation"` // null without repeated images
	PerNeuron   struct {
		NeuronIDs   []int64     `json:"neuron_ids,omitempty"`
		SingleTrial []jsonFloat `json:"single_trial_correlation"`
		Average     []jsonFloat `json:"average_correlation"`
		Oracle      []jsonFloat `json:"oracle_correlation"` // null without repeated images
	} `json:"per_neuron"`
}

// loadModels loads the models (an ensemble when there are several).
func loadModels(dev *tensor.Device, paths []string) (encoder.Model, error) {
	var ms []encoder.Model
	for i, p := range paths {
		m, err := loadModel(dev, p)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			a, b := ms[0].Config(), m.Config()
			if a.InputMean != b.InputMean || a.InputStd != b.InputStd {
				return nil, fmt.Errorf("%s z-scores pixels with mean %g and std %g but %s with %g and %g; ensemble members must be trained on the same data set",
					paths[0], a.InputMean, a.InputStd, p, b.InputMean, b.InputStd)
			}
		}
		ms = append(ms, m)
	}
	if len(ms) == 1 {
		return ms[0], nil
	}
	return encoder.NewEnsemble(ms...)
}

func runEvaluate(ctx context.Context, g *globalOptions, o *evaluateOptions) error {
	switch {
	case len(o.models) == 0:
		return usagef("--model is required (a model file written by egg train; repeat it for an ensemble)")
	case o.data == "":
		return usagef("--data is required (an .npz file or a static data folder)")
	case o.batchSize < 1:
		return usagef("--batch-size must be positive")
	}
	stdout, stderr := o.stdout, o.stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	dev, err := g.device()
	if err != nil {
		return err
	}
	m, err := loadModels(dev, o.models)
	if err != nil {
		return err
	}
	d, err := dataset.Load(o.data, logf)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ev, err := train.Evaluate(m, d, o.tier, o.batchSize)
	if err != nil {
		return err
	}
	if o.json {
		r := evaluationJSON{Models: o.models, Data: o.data, Tier: ev.Tier, Trials: ev.Trials, Images: ev.Images, Neurons: d.Neurons,
			SingleTrial: jsonFloat(ev.SingleTrial), Average: jsonFloat(ev.Average), Oracle: jsonFloat(ev.Oracle)}
		r.PerNeuron.NeuronIDs = ev.NeuronIDs
		r.PerNeuron.SingleTrial = jsonFloats(ev.PerNeuron.SingleTrial)
		r.PerNeuron.Average = jsonFloats(ev.PerNeuron.Average)
		r.PerNeuron.Oracle = jsonFloats(ev.PerNeuron.Oracle)
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("cannot encode the report: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	var sb strings.Builder
	what := "model " + o.models[0]
	if len(o.models) > 1 {
		what = fmt.Sprintf("ensemble of %d models (%s)", len(o.models), strings.Join(o.models, ", "))
	}
	fmt.Fprintf(&sb, "%s on the %s tier of %s: %d trials of %d images, %d neurons\n", what, ev.Tier, o.data, ev.Trials, ev.Images, d.Neurons)
	fmt.Fprintf(&sb, "  single-trial correlation  %s\n", fmtCorr(ev.SingleTrial))
	fmt.Fprintf(&sb, "  average correlation       %s\n", fmtCorr(ev.Average))
	fmt.Fprintf(&sb, "  oracle correlation        %s\n", fmtCorr(ev.Oracle))
	if o.perNeuron {
		fmt.Fprintf(&sb, "%8s %10s %12s %8s %8s\n", "neuron", "id", "single-trial", "average", "oracle")
		p := ev.PerNeuron
		for n := range p.SingleTrial {
			id, oracle := "-", math.NaN()
			if ev.NeuronIDs != nil {
				id = fmt.Sprint(ev.NeuronIDs[n])
			}
			if p.Oracle != nil {
				oracle = p.Oracle[n]
			}
			fmt.Fprintf(&sb, "%8d %10s %12s %8s %8s\n", n, id, fmtCorr(p.SingleTrial[n]), fmtCorr(p.Average[n]), fmtCorr(oracle))
		}
	}
	_, err = io.WriteString(stdout, sb.String())
	return err
}

// fmtCorr prints a correlation, or "-" for none.
func fmtCorr(c float64) string {
	if math.IsNaN(c) {
		return "-"
	}
	return fmt.Sprintf("%.4f", c)
}
