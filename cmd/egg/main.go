// Command egg generates neurally exciting images with energy-guided diffusion.
//
// Run `egg help` for the subcommands. Exit status: 0 on success, 1 when the work
// failed (the message says why and what to do), 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"egg/backend"
	"egg/jobs"
	"egg/models"
	"egg/tensor"
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
	// SIGTERM too: SLURM ends a cancelled, preempted or timed-out task with it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	var err error
	// A device failure (out of GPU memory, a failed launch) ends the run as an error.
	if derr := tensor.Catch(func() { err = root.ExecuteContext(ctx) }); derr != nil {
		err = derr
	}
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "egg:", err)
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		os.Exit(2)
	}
	var tr jobs.Transient
	if errors.As(err, &tr) {
		os.Exit(jobs.ExitTransient)
	}
	os.Exit(1)
}

// globalOptions are the flags every subcommand has, and what the commands share.
type globalOptions struct {
	threads   int
	devSpec   string // --device
	precision string // --precision
	dev       *tensor.Device
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

Exit status: 0 on success, 1 when the work failed, 2 on a usage error, 75 when a shard
(--shard) was interrupted by a signal and may be run again.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().IntVarP(&g.threads, "threads", "j", 0, "CPU threads to use (0: all cores)")
	root.PersistentFlags().StringVar(&g.devSpec, "device", "auto", "where to compute: auto (a GPU when one loads, else the CPU), cpu, cuda or cuda:N")
	root.PersistentFlags().StringVar(&g.precision, "precision", "fp32", "GPU matrix precision: fp32 (TF32 off, CPU parity), tf32, fp16 or bf16 (products and convolutions only)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newSampleCmd(g), newMEICmd(g), newImportCmd(g), newCompareCmd(), newReportCmd())
	root.AddCommand(newTrainCmd(g), newEvaluateCmd(g), newPoolCmd(g), newTrainPriorCmd(g), newSimulateCmd(g), newMENICmd(g), newReconstructCmd(g))
	root.AddCommand(newDemoCmd(g), newStatusCmd())
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

// device opens the device of --device and --precision once per process and logs
// which it is.
func (g *globalOptions) device() (*tensor.Device, error) {
	if g.dev != nil {
		return g.dev, nil
	}
	spec, err := backend.Parse(g.devSpec)
	if err != nil {
		return nil, usageError{err}
	}
	if err := backend.CheckPrecision(g.precision); err != nil {
		return nil, usageError{err}
	}
	dev, line, err := backend.Open(spec, backend.Options{Threads: g.threads, Precision: g.precision})
	if err != nil {
		return nil, fmt.Errorf("%w; or run on the CPU with --device cpu", err)
	}
	log.Print("egg: " + line)
	g.dev = dev
	return dev, nil
}
