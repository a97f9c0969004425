package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"egg/guidance"
	"egg/imageio"
	"egg/progress"
)

// sampleOptions are the flags of `egg sample`.
type sampleOptions struct {
	prior     priorOptions
	sampler   string
	eta       float64
	n         int
	batchSize int
	seed      uint64
	out       string
	class     int
	quiet     bool
}

func newSampleCmd(g *globalOptions) *cobra.Command {
	o := &sampleOptions{}
	cmd := &cobra.Command{
		Use:   "sample",
		Short: "Draw unguided samples from a diffusion model",
		Long: `sample draws images from a guided-diffusion (ADM) model without guidance and writes
them as PNG files (sample_00000.png, ...) and a grid (grid.png) into --out.

Without --weights, --preset and --config it samples egg's built-in prior (32x32 gray
natural image patches; one log line names its file). --clip-x0 auto clips the x0
prediction to [-1, 1] at every step for priors with an ill-conditioned first step, such
as the cosine schedule of egg's own priors.

Sample k is drawn from its own random stream (seed, k), so the same seed gives the same
images whatever the batch size. Grayscale models write grayscale PNGs.

Exit status: 0 on success, 1 when sampling failed, 2 on a usage error.`,
		Example: `  egg sample --n 16 --out samples/    # the built-in prior
  egg sample --weights 256x256_diffusion_uncond.pt --preset 256x256_diffusion_uncond --steps 100 --n 4 --out samples/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSample(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	o.prior.addFlags(f, "100")
	f.StringVar(&o.sampler, "sampler", "ddpm", "ddpm or ddim")
	f.Float64Var(&o.eta, "eta", 0, "DDIM eta (0: deterministic)")
	f.IntVar(&o.n, "n", 8, "number of images")
	f.IntVar(&o.batchSize, "batch-size", 4, "images per batch")
	f.Uint64Var(&o.seed, "seed", 0, "random seed")
	f.StringVar(&o.out, "out", "samples", "output folder")
	f.IntVar(&o.class, "class", -1, "class label for class-conditional models (-1: random per image)")
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	return cmd
}

func runSample(ctx context.Context, g *globalOptions, o *sampleOptions) error {
	if o.n <= 0 || o.batchSize <= 0 {
		return usagef("--n and --batch-size must be positive")
	}
	if o.sampler != "ddpm" && o.sampler != "ddim" {
		return usagef("--sampler %q: want ddpm or ddim", o.sampler)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("cannot create the output folder: %w", err)
	}
	if _, err := applyDefaults(g, defaultFlags{Prior: &o.prior}, stderrLog(o.quiet)); err != nil {
		return err
	}
	dev, err := g.device()
	if err != nil {
		return err
	}
	prior, unet, err := o.prior.loadPrior(dev, false)
	if err != nil {
		return err
	}
	s := prior.Schedule
	cfg := unet.Config
	c, size := cfg.InChannels, cfg.ImageSize
	all := make([]float32, 0, o.n*c*size*size)
	bar := progress.New(os.Stderr, o.n*s.NumTimesteps, progress.Options{Description: "sampling", Unit: "steps", Hidden: o.quiet})
	for start := 0; start < o.n; start += o.batchSize {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted after %d images (written to %s)", start, o.out)
		}
		n := min(o.batchSize, o.n-start)
		rngs := make([]*rand.Rand, n)
		var labels []int
		for k := range rngs {
			rngs[k] = rand.New(rand.NewPCG(o.seed, uint64(start+k)))
			if cfg.NumClasses != nil {
				l := o.class
				if l < 0 {
					l = rngs[k].IntN(*cfg.NumClasses)
				}
				labels = append(labels, l)
			}
		}
		xT := guidance.Noise(dev, rngs, n, c, size, size)
		res := guidance.Unguided(prior.Denoiser, s, xT, rngs, labels, o.sampler == "ddim", o.eta, prior.ClipX0, func(guidance.Step) {
			bar.Add(n)
		})
		data := res.Sample.Data()
		per := c * size * size
		for k := 0; k < n; k++ {
			img, err := imageio.Image(data[k*per:(k+1)*per], c, size, size, imageio.Diffusion)
			if err != nil {
				return err
			}
			if err := imageio.WritePNG(filepath.Join(o.out, fmt.Sprintf("sample_%05d.png", start+k)), img); err != nil {
				return err
			}
		}
		all = append(all, data...)
	}
	bar.Finish()
	grid, err := imageio.Grid(all, o.n, c, size, size, 0, 2, imageio.Diffusion)
	if err != nil {
		return err
	}
	if err := imageio.WritePNG(filepath.Join(o.out, "grid.png"), grid); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d samples and grid.png to %s\n", o.n, o.out)
	return nil
}
