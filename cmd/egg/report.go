package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"egg/report"
)

// reportOptions are the flags of `egg report`.
type reportOptions struct {
	run, out string
	quiet    bool
}

func newReportCmd() *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write a self-contained HTML page about an MEI run",
		Long: `report reads the records of an MEI run (the --out of egg mei) and writes one HTML file
that needs nothing else: the run's settings and model files (with their SHA-256), a
summary per method (median and mean activation per role, seconds per MEI), the EGG
against gradient-ascent comparison when the run has both (scatter plots per role with
y = x and the Huber slope, the Wilcoxon test, time per MEI), and one row per neuron with
its MEIs, their activations and the EGG energy over the diffusion steps. When the run
folder has a natural/ subfolder (egg demo writes one: the pool patches that drive each
neuron most, as mei.WriteNatural writes them), each row also shows the neuron's top
natural images and the activations of the best one. Images are
embedded, plots are inline SVG; the page has no scripts and no links.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error.`,
		Example: `  egg report --run run/
  egg report --run run/ --out ~/public/run.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReport(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.run, "run", "", "run folder: the --out of egg mei")
	f.StringVar(&o.out, "out", "", "HTML file to write (default: <run>/report.html)")
	f.BoolVar(&o.quiet, "quiet", false, "do not print the path written")
	return cmd
}

func runReport(_ context.Context, o *reportOptions) error {
	if o.run == "" {
		return usagef("--run is required: the folder egg mei wrote (its --out)")
	}
	path, err := report.Write(o.run, o.out)
	if err != nil {
		return err
	}
	if !o.quiet {
		fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	}
	return nil
}
