package pool

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// The tiers of a pool's patches (the names of package dataset).
const (
	Train      = "train"
	Validation = "validation"
)

// Ways to split a pool into tiers (Options.SplitBy).
const (
	ByImage = "image"
	ByPatch = "patch"
)

// ManifestName is the file Build looks for, in the folder and in its parent, when
// Options.Manifest is empty.
const ManifestName = "manifest.tsv"

// Options say how Build cuts a pool.
type Options struct {
	Size        int       `json:"size"`         // patch side S in pixels (required)
	Scales      []float64 `json:"scales"`       // downsampling factors in (0, 1]; empty: {1}
	Stride      int       `json:"stride"`       // distance between patch corners; 0: Size (no overlap)
	MinContrast float64   `json:"min_contrast"` // patches of lower RMS contrast ([0, 1] pixels) are rejected
	Flips       bool      `json:"flips"`        // add the mirror image of every patch
	ValFraction float64   `json:"val_fraction"` // share of images (or patches) in the validation tier
	SplitBy     string    `json:"split_by"`     // ByImage (""), or ByPatch
	Seed        uint64    `json:"seed"`         // seeds every random choice
	Max         int       `json:"max"`          // most patches kept, mirror images included (0: all; with Flips, rounded down to even)
	PerImage    int       `json:"per_image"`    // most patches kept per image before mirroring (0: all)
	// Manifest is a TSV file whose lines are stored with the pool; "" looks for
	// ManifestName in the folder and its parent, "-" stores none.
	Manifest string `json:"-"`
	// Workers is the number of images decoded at once (0: GOMAXPROCS). It changes
	// nothing in the result.
	Workers int `json:"-"`
}

// Validate reports the first problem of o (a bad size, scale, fraction, ...).
func (o *Options) Validate() error {
	switch {
	case o.Size < 1:
		return fmt.Errorf("pool: patch size %d must be positive", o.Size)
	case o.Stride < 0:
		return fmt.Errorf("pool: stride %d must not be negative", o.Stride)
	case o.MinContrast < 0 || o.MinContrast >= 0.5:
		return fmt.Errorf("pool: contrast threshold %g must be in [0, 0.5) (RMS contrast of [0, 1] pixels; natural patches have about 0.05-0.3)", o.MinContrast)
	case o.ValFraction < 0 || o.ValFraction >= 1 || math.IsNaN(o.ValFraction):
		return fmt.Errorf("pool: validation fraction %g must be in [0, 1)", o.ValFraction)
	case o.SplitBy != "" && o.SplitBy != ByImage && o.SplitBy != ByPatch:
		return fmt.Errorf("pool: split by %q: want %q or %q", o.SplitBy, ByImage, ByPatch)
	case o.Max < 0 || o.PerImage < 0:
		return fmt.Errorf("pool: the most patches (%d) and most per image (%d) must not be negative", o.Max, o.PerImage)
	case o.Flips && o.Max == 1:
		return fmt.Errorf("pool: with mirror images, keep at least 2 patches (a patch and its mirror image)")
	}
	for _, s := range o.Scales {
		if !(s > 0 && s <= 1) {
			return fmt.Errorf("pool: scale %g must be in (0, 1] (images are only downsampled)", s)
		}
	}
	return nil
}

// Pool is a set of grayscale patches with their tiers and origins.
type Pool struct {
	Size     int      // patch side S
	Images   []uint8  // [N, 1, S, S] pixels
	Tiers    []string // [N] Train or Validation
	Sources  []string // [N] "file:scale:x:y:flip" (see Source)
	Files    []string // the images read, relative to the folder, '/'-separated
	Manifest []string // the lines of the folder's manifest, header first (nil: none)
	Settings string   // the Options that made the pool, as JSON ("" when unknown)
}

// Len returns the number of patches.
func (p *Pool) Len() int { return len(p.Tiers) }

// Patch returns the pixels of patch i, [S, S] (aliasing Images).
func (p *Pool) Patch(i int) []uint8 {
	n := p.Size * p.Size
	return p.Images[i*n : (i+1)*n]
}

// Indices returns the patches of tier, in order.
func (p *Pool) Indices(tier string) []int {
	var idx []int
	for i, t := range p.Tiers {
		if t == tier {
			idx = append(idx, i)
		}
	}
	return idx
}

// Source is the origin of a patch.
type Source struct {
	File  string  // the image, relative to the pool's folder
	Scale float64 // the image was downsampled by this factor
	X, Y  int     // top-left corner in the downsampled image
	Flip  bool    // the patch is mirrored left-right
}

// String formats s as "file:scale:x:y:flip" (flip 0 or 1), the form of the pool's
// source array.
func (s Source) String() string {
	f := 0
	if s.Flip {
		f = 1
	}
	return fmt.Sprintf("%s:%s:%d:%d:%d", s.File, strconv.FormatFloat(s.Scale, 'g', -1, 64), s.X, s.Y, f)
}

// ParseSource reads a source string; the file name may itself contain colons.
func ParseSource(str string) (Source, error) {
	parts := strings.Split(str, ":")
	if len(parts) < 5 {
		return Source{}, fmt.Errorf("pool: source %q is not file:scale:x:y:flip", str)
	}
	k := len(parts) - 4
	s := Source{File: strings.Join(parts[:k], ":")}
	var err [4]error
	s.Scale, err[0] = strconv.ParseFloat(parts[k], 64)
	s.X, err[1] = strconv.Atoi(parts[k+1])
	s.Y, err[2] = strconv.Atoi(parts[k+2])
	var f int
	f, err[3] = strconv.Atoi(parts[k+3])
	if e := errors.Join(err[:]...); e != nil || (f != 0 && f != 1) {
		return Source{}, fmt.Errorf("pool: source %q is not file:scale:x:y:flip", str)
	}
	s.Flip = f == 1
	return s, nil
}

// Stats counts what Build did.
type Stats struct {
	Files       int   // images read
	Failed      int   // files that could not be decoded (skipped)
	Pixels      int64 // pixels of the images read, at full size
	Candidates  int   // patches cut, before the contrast threshold
	LowContrast int   // patches rejected for low contrast
	PerImage    int   // patches left out by Options.PerImage
	OverMax     int   // patches left out by Options.Max (mirror images included)
	Kept        int   // patches in the pool, mirror images included
	Validation  int   // of which in the validation tier
}

// item is one kept patch with its mirror image.
type item struct {
	seq      int // position in the stream, for the final order
	file     int
	scale    float64
	x, y     int
	tier     string
	pix, mir []uint8 // mir is nil without flips
}

// imageResult is what a worker makes of one file.
type imageResult struct {
	items       []item
	pixels      int64
	candidates  int
	lowContrast int
	perImage    int
	err         error
}

// Build cuts a pool from the PNG and JPEG files under dir (see the package
// documentation). progress, when not nil, is called after each image with the
// number of images done and the total; logf, when not nil, receives a line for each
// file that could not be decoded. Build stops with ctx's error when ctx is done.
func Build(ctx context.Context, dir string, o Options, progress func(done, total int), logf func(format string, a ...any)) (*Pool, Stats, error) {
	var st Stats
	if err := o.Validate(); err != nil {
		return nil, st, err
	}
	if len(o.Scales) == 0 {
		o.Scales = []float64{1}
	}
	if o.Stride == 0 {
		o.Stride = o.Size
	}
	if o.SplitBy == "" {
		o.SplitBy = ByImage
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	files, err := listImages(dir)
	if err != nil {
		return nil, st, err
	}
	if len(files) == 0 {
		return nil, st, fmt.Errorf("pool: %s holds no PNG or JPEG file (.png, .jpg, .jpeg, searched recursively)", dir)
	}
	valFile := make([]bool, len(files))
	if o.SplitBy == ByImage && o.ValFraction > 0 {
		if len(files) < 2 {
			return nil, st, fmt.Errorf("pool: %s holds one image, and a validation split by image needs two; split by patch or use no validation", dir)
		}
		nval := min(max(int(math.Round(o.ValFraction*float64(len(files)))), 1), len(files)-1)
		for _, i := range rand.New(rand.NewPCG(o.Seed, 1)).Perm(len(files))[:nval] {
			valFile[i] = true
		}
	}
	p := &Pool{Size: o.Size, Files: files}
	if p.Manifest, err = readManifest(dir, o.Manifest); err != nil {
		return nil, st, err
	}
	js, err := json.Marshal(o)
	if err != nil {
		return nil, st, fmt.Errorf("pool: %w", err)
	}
	p.Settings = string(js)

	// Images are decoded by workers and taken in file order.
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		i   int
		out chan imageResult
	}
	jobs := make(chan job)
	queue := make(chan chan imageResult, 2*workers)
	go func() {
		defer close(queue)
		defer close(jobs)
		for i := range files {
			ch := make(chan imageResult, 1)
			select {
			case queue <- ch:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- job{i, ch}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		go func() {
			for j := range jobs {
				j.out <- cutImage(filepath.Join(dir, filepath.FromSlash(files[j.i])), files[j.i], j.i, valFile[j.i], &o)
			}
		}()
	}

	// Reservoir sampling (algorithm R) over items when Max is set.
	per := 1
	if o.Flips {
		per = 2
	}
	capacity := math.MaxInt
	if o.Max > 0 {
		capacity = o.Max / per
	}
	rng := rand.New(rand.NewPCG(o.Seed, 2))
	var kept []item
	var read []string
	seq, done := 0, 0
	for ch := range queue {
		var r imageResult
		select {
		case r = <-ch:
		case <-ctx.Done():
			return nil, st, ctx.Err()
		}
		i := done
		done++
		if progress != nil {
			progress(done, len(files))
		}
		if r.err != nil {
			st.Failed++
			logf("skipping %s: %v", files[i], r.err)
			continue
		}
		read = append(read, files[i])
		st.Files++
		st.Pixels += r.pixels
		st.Candidates += r.candidates
		st.LowContrast += r.lowContrast
		st.PerImage += r.perImage
		for _, it := range r.items {
			it.seq = seq
			seq++
			if len(kept) < capacity {
				kept = append(kept, it)
				continue
			}
			if j := rng.IntN(seq); j < capacity {
				kept[j] = it
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	if st.Files == 0 {
		return nil, st, fmt.Errorf("pool: none of the %d image files under %s could be decoded", len(files), dir)
	}
	st.OverMax = (seq - len(kept)) * per
	slices.SortFunc(kept, func(a, b item) int { return a.seq - b.seq })
	p.Files = read
	n := len(kept) * per
	p.Images = make([]uint8, 0, n*o.Size*o.Size)
	p.Tiers = make([]string, 0, n)
	p.Sources = make([]string, 0, n)
	for _, it := range kept {
		src := Source{File: files[it.file], Scale: it.scale, X: it.x, Y: it.y}
		p.Images = append(p.Images, it.pix...)
		p.Tiers = append(p.Tiers, it.tier)
		p.Sources = append(p.Sources, src.String())
		if it.mir != nil {
			src.Flip = true
			p.Images = append(p.Images, it.mir...)
			p.Tiers = append(p.Tiers, it.tier)
			p.Sources = append(p.Sources, src.String())
		}
	}
	st.Kept = p.Len()
	st.Validation = len(p.Indices(Validation))
	if st.Kept == 0 {
		return nil, st, fmt.Errorf("pool: no patch was kept from %d images (%d cut, %d below the contrast threshold %g); lower the contrast threshold or the patch size, or add scales",
			st.Files, st.Candidates, st.LowContrast, o.MinContrast)
	}
	return p, st, nil
}

// cutImage decodes one file and cuts its patches.
func cutImage(path, rel string, file int, validation bool, o *Options) imageResult {
	g, err := decodeGray(path)
	if err != nil {
		return imageResult{err: err}
	}
	r := imageResult{pixels: int64(g.w) * int64(g.h)}
	rng := rand.New(rand.NewPCG(o.Seed, pathHash(rel)))
	tier := Train
	if validation {
		tier = Validation
	}
	for _, s := range o.Scales {
		w, h := max(1, int(math.Round(s*float64(g.w)))), max(1, int(math.Round(s*float64(g.h))))
		sg := g.resize(w, h)
		for y := 0; y+o.Size <= h; y += o.Stride {
			for x := 0; x+o.Size <= w; x += o.Stride {
				r.candidates++
				pix := sg.patch(x, y, o.Size)
				if Contrast(pix) < o.MinContrast {
					r.lowContrast++
					continue
				}
				r.items = append(r.items, item{file: file, scale: s, x: x, y: y, tier: tier, pix: pix})
			}
		}
	}
	if o.PerImage > 0 && len(r.items) > o.PerImage {
		pick := rng.Perm(len(r.items))[:o.PerImage]
		slices.Sort(pick)
		sub := make([]item, len(pick))
		for k, i := range pick {
			sub[k] = r.items[i]
		}
		r.perImage = len(r.items) - len(sub)
		r.items = sub
	}
	for k := range r.items {
		it := &r.items[k]
		if o.SplitBy == ByPatch && rng.Float64() < o.ValFraction {
			it.tier = Validation
		}
		if o.Flips {
			it.mir = mirror(it.pix, o.Size)
		}
	}
	return r
}

// pathHash seeds the random choices about one image.
func pathHash(rel string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(rel))
	return h.Sum64()
}

// listImages returns the image files under dir, relative and '/'-separated, in
// lexical order; hidden files and folders are skipped.
func listImages(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("pool: %w; give a folder of PNG or JPEG images", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("pool: %s is not a folder; give a folder of PNG or JPEG images", dir)
	}
	var files []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && isImage(d.Name()) {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pool: listing %s: %w", dir, err)
	}
	slices.Sort(files)
	return files, nil
}

// readManifest returns the lines of the manifest named by name ("" looks for
// ManifestName in dir and its parent; "-" means none).
func readManifest(dir, name string) ([]string, error) {
	if name == "-" {
		return nil, nil
	}
	candidates := []string{name}
	if name == "" {
		candidates = []string{filepath.Join(dir, ManifestName), filepath.Join(filepath.Dir(filepath.Clean(dir)), ManifestName)}
	}
	for _, c := range candidates {
		f, err := os.Open(c)
		if errors.Is(err, fs.ErrNotExist) && name == "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pool: manifest: %w", err)
		}
		defer f.Close()
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
				lines = append(lines, l)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("pool: manifest %s: %w", c, err)
		}
		return lines, nil
	}
	return nil, nil
}
