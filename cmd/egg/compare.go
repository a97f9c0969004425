package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"egg/imageio"
	"egg/report"
)

// compareOptions are the flags of `egg compare`.
type compareOptions struct {
	run    string
	json   bool
	stdout io.Writer // nil: os.Stdout
}

func newCompareCmd() *cobra.Command {
	o := &compareOptions{}
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare the EGG and gradient-ascent MEIs of a run, as the paper does",
		Long: `compare reads the records of --run/egg and --run/ga (made by egg mei --out with each
--method), pairs the neurons both have, and reports per evaluation role (train, within,
cross, truth):

  - the slope c of a Huber regression through the origin of the EGG activations on the
    GA activations (r_egg = c r_ga; scikit-learn's HuberRegressor, epsilon 1.35,
    alpha 0.0001): c > 1 means EGG's MEIs drive the neurons more;
  - the two-sided Wilcoxon signed-rank test of the paired activations (scipy's defaults);
  - the medians of both methods;

and the compute time per MEI of each method (median over the neurons; the paper found
EGG 4.7 times faster on a GPU). It writes the same as one JSON object to
--run/compare.json; --json prints that object instead of the table.

Exit status: 0 on success, 1 when the work failed (a method's records are missing, no
neuron has both), 2 on a usage error.`,
		Example: `  egg compare --run run/
  egg compare --run run/ --json | jq '.roles[] | {role, huber_slope, wilcoxon_p}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompare(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.run, "run", "", "run folder: the --out of egg mei, with egg/ and ga/ inside")
	f.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	return cmd
}

func runCompare(_ context.Context, o *compareOptions) error {
	if o.run == "" {
		return usagef("--run is required: the folder egg mei wrote (its --out), with egg/ and ga/ inside")
	}
	stdout := o.stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	r, err := report.ReadRun(o.run)
	if err != nil {
		return err
	}
	c, err := report.Compare(r)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(o.run, "compare.json")
	if err := imageio.WriteFileAtomic(path, b); err != nil {
		return err
	}
	if o.json {
		_, err := stdout.Write(b)
		return err
	}
	fmt.Fprintf(stdout, "%s: %d neurons with both an EGG and a GA MEI", o.run, len(c.Neurons))
	if len(c.OnlyEGG)+len(c.OnlyGA) > 0 {
		fmt.Fprintf(stdout, " (%d only EGG, %d only GA)", len(c.OnlyEGG), len(c.OnlyGA))
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "role\tneurons\thuber c (egg = c ga)\twilcoxon T\tp\tegg higher\tmedian egg\tmedian ga\t")
	for _, rc := range c.Roles {
		fmt.Fprintf(tw, "%s\t%d\t%.4g\t%g\t%.3g\t%d\t%.4g\t%.4g\t\n", rc.Role, rc.Neurons, rc.Slope, rc.Statistic, rc.PValue, rc.EGGHigher, rc.MedianEGG, rc.MedianGA)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "seconds per MEI (median): egg %.4g, ga %.4g; ga/egg %.3g\n", c.EGGSecondsPerMEI, c.GASecondsPerMEI, c.TimeRatio)
	fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	return nil
}
