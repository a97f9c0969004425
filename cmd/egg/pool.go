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

	"egg/pool"
	"egg/progress"
)

// poolOptions are the flags of `egg pool`.
type poolOptions struct {
	images string
	out    string
	scales string // comma-separated; "" leaves pool.Scales
	pool   pool.Options
	quiet  bool
	stderr io.Writer // logs and the progress bar; nil: os.Stderr
}

func newPoolCmd(g *globalOptions) *cobra.Command {
	o := &poolOptions{}
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Cut a folder of photographs into an image pool of grayscale patches",
		Long: `pool turns a folder of images (PNG and JPEG, searched recursively) into an image
pool: grayscale patches of --size pixels, stored as uint8 in an .npz file, for training
a diffusion prior (egg train-prior), simulating neurons (egg simulate) and searching
most exciting natural images.

Each image is converted to gray (BT.601 luma), downsampled by each factor of --scales
(area averaging), and cut into patches every --stride pixels (default: no overlap).
Patches whose RMS contrast (the standard deviation of their [0, 1] pixels) is below
--contrast are rejected. --flips adds the mirror image of every patch. --val of the
images (or of the patches, with --split-by patch) form the validation tier. --max keeps
a random subset of that many patches, --per-image at most that many per image.

The images are read one at a time, so any folder fits (point it at ImageNet with
--max); the pool holds --size^2 bytes per patch. The pool records where every patch
came from (source: "file:scale:x:y:flip"), the files read, the settings, and the
folder's manifest.tsv (also looked for in the parent folder), as written by
scripts/fetch-images.sh. The same folder, flags and --seed give the same pool.

Exit status: 0 on success, 1 when the pool could not be made, 2 on a usage error.`,
		Example: `  scripts/fetch-images.sh ~/.cache/egg-images
  egg pool --images ~/.cache/egg-images/images --out pool.npz --size 64 --scales 0.5,0.25,0.125 --flips
  egg pool --images /data/imagenet/train --out imagenet64.npz --size 64 --scales 0.25 --max 200000 --per-image 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.pool.Workers = g.threads
			return runPool(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.images, "images", "", "folder of PNG and JPEG images, searched recursively (required)")
	f.StringVarP(&o.out, "out", "o", "", "pool file to write (.npz; required)")
	f.IntVar(&o.pool.Size, "size", 64, "patch side in pixels")
	f.StringVar(&o.scales, "scales", "1,0.5,0.25", "downsampling factors in (0, 1], comma-separated")
	f.IntVar(&o.pool.Stride, "stride", 0, "pixels between patches (0: --size, no overlap)")
	f.Float64Var(&o.pool.MinContrast, "contrast", 0.05, "reject patches of lower RMS contrast (standard deviation of [0, 1] pixels)")
	f.BoolVar(&o.pool.Flips, "flips", false, "add the left-right mirror image of every patch")
	f.Float64Var(&o.pool.ValFraction, "val", 0.1, "share of images (or patches) in the validation tier")
	f.StringVar(&o.pool.SplitBy, "split-by", pool.ByImage, "validation split by image or by patch")
	f.Uint64Var(&o.pool.Seed, "seed", 0, "random seed (split, subsets)")
	f.IntVar(&o.pool.Max, "max", 0, "keep a random subset of at most this many patches, mirror images included (0: all)")
	f.IntVar(&o.pool.PerImage, "per-image", 0, "keep at most this many patches of each image, before mirroring (0: all)")
	f.StringVar(&o.pool.Manifest, "manifest", "", `manifest to store with the pool (default: manifest.tsv in --images or its parent; "-": none)`)
	f.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	return cmd
}

func runPool(ctx context.Context, o *poolOptions) error {
	switch {
	case o.images == "":
		return usagef("--images is required: a folder of PNG or JPEG images")
	case o.out == "":
		return usagef("--out is required: the pool file to write, e.g. pool.npz")
	}
	if o.scales != "" {
		o.pool.Scales = nil
		for _, f := range strings.Split(o.scales, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return usagef("--scales %q: want factors in (0, 1] like 1,0.5,0.25", o.scales)
			}
			o.pool.Scales = append(o.pool.Scales, v)
		}
	}
	if err := o.pool.Validate(); err != nil {
		return usageError{err}
	}
	stderr := o.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	var bar *progress.Bar
	progress := func(done, total int) {
		if o.quiet {
			return
		}
		if bar == nil {
			bar = progress.New(stderr, total, progress.Options{Description: "cutting", Unit: "images", Clear: true})
		}
		bar.Set(done)
	}
	start := time.Now()
	p, st, err := pool.Build(ctx, o.images, o.pool, progress, logf)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	if err := p.WriteNPZ(o.out); err != nil {
		return err
	}
	pct := func(n int) float64 { return 100 * float64(n) / float64(max(st.Candidates, 1)) }
	logf("read %d images (%.1f megapixels) in %s; %d could not be decoded", st.Files, float64(st.Pixels)/1e6, time.Since(start).Round(time.Millisecond), st.Failed)
	logf("cut %d patches of %dx%d at scales %v: %d (%.1f%%) below RMS contrast %g, %d left out by --per-image, %d by --max",
		st.Candidates, o.pool.Size, o.pool.Size, scalesOf(o.pool.Scales), st.LowContrast, pct(st.LowContrast), o.pool.MinContrast, st.PerImage, st.OverMax)
	flips := ""
	if o.pool.Flips {
		flips = ", mirror images included"
	}
	logf("wrote %s: %d patches (%d train, %d validation%s)", o.out, st.Kept, st.Kept-st.Validation, st.Validation, flips)
	return nil
}

// scalesOf returns the scales Build uses.
func scalesOf(s []float64) []float64 {
	if len(s) == 0 {
		return []float64{1}
	}
	return s
}
