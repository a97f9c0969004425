// Command egg generates neurally exciting images with energy-guided diffusion.
//
// Run `egg help` for the subcommands. Exit status: 0 on success, 1 when the work
// failed (the message says why and what to do), 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"

	"github.com/spf13/cobra"

	"egg/models"
)

// usageError marks errors in how the command was called (exit status 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	// Tensors hold no pointers, so collecting often is cheap, and it keeps the peak
	// memory of a diffusion step close to what is live (GOGC in the environment wins).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "egg:", err)
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		os.Exit(2)
	}
	os.Exit(1)
}

// globalOptions are the flags every subcommand has, and what the commands share.
type globalOptions struct {
	threads int
	// defaults installs egg's built-in defaults and returns their paths; nil means
	// models.Install("") (tests replace it).
	defaults func() (*models.Set, error)
}

func newRootCmd() *cobra.Command {
	g := &globalOptions{defaults: func() (*models.Set, error) { return models.Install("") }}
	root := &cobra.Command{
		Use:   "egg",
		Short: "Energy-guided diffusion for neurally exciting images",
		Long: `egg makes the images that drive model neurons most: most exciting inputs by
energy-guided diffusion (EGG) and by gradient ascent, and samples of the diffusion prior.

egg carries built-in defaults: a 32x32 diffusion prior of natural image patches, a
simulated population of 100 V4-like neurons, digital twins trained on it and a small
pool of natural patches. The commands that make images use them for the models not
given (see each command's help); "egg demo" runs the paper's EGG against
gradient-ascent comparison on them.

Exit status: 0 on success, 1 when the work failed, 2 on a usage error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().IntVarP(&g.threads, "threads", "j", 0, "CPU threads to use (0: all cores)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newSampleCmd(g), newMEICmd(g), newImportCmd(g), newCompareCmd(), newReportCmd())
	root.AddCommand(newTrainCmd(g), newEvaluateCmd(g), newPoolCmd(g), newTrainPriorCmd(g), newSimulateCmd(g), newMENICmd(g), newReconstructCmd(g))
	root.AddCommand(newDemoCmd(g))
	return root
}

func isFlagError(err error) bool {
	// cobra reports unknown commands and argument-count problems as plain errors.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires at least", "invalid argument"} {
		if len(msg) >= len(p) && contains(msg, p) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
