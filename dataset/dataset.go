package dataset

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
)

// The tiers a trial can belong to.
const (
	Train      = "train"
	Validation = "validation"
	Test       = "test"
)

// SplitSeed is the seed of the train/validation split of data sets without tiers.
const SplitSeed = 0

// ValidationFraction is the share of images Split puts into the validation tier.
const ValidationFraction = 0.2

// Dataset is a recording: N trials, each an image and the responses of Neurons
// neurons to it.
type Dataset struct {
	Source     string    // the file or folder it was read from, for messages
	N          int       // number of trials
	C, H, W    int       // image channels and size
	Images     []float32 // [N, C, H, W] pixels as stored
	Neurons    int       // number of neurons
	Responses  []float32 // [N, Neurons]
	Tiers      []string  // [N]: Train, Validation, Test (other names are ignored by Indices of those)
	ImageIDs   []int64   // [N] image shown in each trial; nil: every trial shows its own image
	Mask       []bool    // [N, Neurons] neuron recorded in trial; nil: every neuron in every trial
	NeuronIDs  []int64   // [Neurons] ids of the neurons; nil when unknown
	TiersSplit bool      // the file had no tiers and Split made them
}

// Load reads a data set from path: an .npz archive, or a static folder (a
// directory with data/ and meta/). logf, when not nil, receives one line for each
// thing worth knowing that is not an error (a split made because the file has no
// tiers, trials of unknown tiers).
func Load(path string, logf func(format string, args ...any)) (*Dataset, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w; give --data an .npz file or a static data folder", err)
	}
	var d *Dataset
	if st.IsDir() {
		d, err = ReadStatic(path)
	} else {
		d, err = ReadNPZ(path)
	}
	if err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if d.TiersSplit {
		logf("%s has no tiers: split its %d images at random (seed %d) into %d train and %d validation trials; there is no test tier",
			path, d.UniqueImages(), SplitSeed, len(d.Indices(Train)), len(d.Indices(Validation)))
	}
	counts := map[string]int{}
	for _, t := range d.Tiers {
		if t != Train && t != Validation && t != Test {
			counts[t]++
		}
	}
	for _, t := range slices.Sorted(maps.Keys(counts)) {
		logf("%s: ignoring %d trials of tier %q (known tiers: train, validation, test)", path, counts[t], t)
	}
	return d, nil
}

// UniqueImages returns the number of distinct images (trials that share an image id
// count once).
func (d *Dataset) UniqueImages() int {
	if d.ImageIDs == nil {
		return d.N
	}
	seen := map[int64]bool{}
	for _, id := range d.ImageIDs {
		seen[id] = true
	}
	return len(seen)
}

// Indices returns the trials of tier, in order.
func (d *Dataset) Indices(tier string) []int {
	var idx []int
	for i, t := range d.Tiers {
		if t == tier {
			idx = append(idx, i)
		}
	}
	return idx
}

// ImageLen returns the number of values of one image, C*H*W.
func (d *Dataset) ImageLen() int { return d.C * d.H * d.W }

// Image returns the pixels of trial i (aliasing Images).
func (d *Dataset) Image(i int) []float32 {
	n := d.ImageLen()
	return d.Images[i*n : (i+1)*n]
}

// PixelStats returns the mean and the standard deviation (over all pixels, ddof 0)
// of the images of the trials idx, computed in float64. A constant set of pixels
// gets standard deviation 1, so that dividing by it is safe.
func (d *Dataset) PixelStats(idx []int) (mean, std float64) {
	var s, ss float64
	var n int
	for _, i := range idx {
		for _, v := range d.Image(i) {
			s += float64(v)
		}
		n += d.ImageLen()
	}
	if n == 0 {
		return 0, 1
	}
	mean = s / float64(n)
	for _, i := range idx {
		for _, v := range d.Image(i) {
			dv := float64(v) - mean
			ss += dv * dv
		}
	}
	std = math.Sqrt(ss / float64(n))
	if std == 0 {
		std = 1
	}
	return mean, std
}

// Split returns tiers for n trials without them: the distinct images (by ids; each
// trial is its own image when ids is nil) are shuffled with a PCG source seeded
// (seed, 0), the first ceil(valFrac * images) go to Validation and the rest to
// Train; all trials of an image share its tier.
func Split(n int, ids []int64, valFrac float64, seed uint64) []string {
	key := func(i int) int64 {
		if ids == nil {
			return int64(i)
		}
		return ids[i]
	}
	var order []int64 // distinct images by first appearance
	seen := map[int64]bool{}
	for i := 0; i < n; i++ {
		if k := key(i); !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	perm := rng.Perm(len(order))
	nval := int(math.Ceil(valFrac * float64(len(order))))
	if len(order) > 1 {
		nval = min(max(nval, 1), len(order)-1)
	}
	tierOf := map[int64]string{}
	for j, p := range perm {
		t := Train
		if j < nval {
			t = Validation
		}
		tierOf[order[p]] = t
	}
	tiers := make([]string, n)
	for i := range tiers {
		tiers[i] = tierOf[key(i)]
	}
	return tiers
}

// check validates the assembled data set and fills what is missing: a mask-aware
// NaN check, tiers (Split), response values under a false mask set to 0. name
// formats the location of element idx of an array for messages.
func (d *Dataset) check(name func(array string, idx ...int) string) error {
	src := d.Source
	if d.N == 0 {
		return fmt.Errorf("dataset: %s has no trials", src)
	}
	if d.C < 1 || d.H < 1 || d.W < 1 {
		return fmt.Errorf("dataset: %s: images are %dx%dx%d; want [N, 1, H, W] or [N, H, W]", src, d.C, d.H, d.W)
	}
	if d.Neurons < 1 {
		return fmt.Errorf("dataset: %s: responses have no neurons", src)
	}
	il := d.ImageLen()
	for k, v := range d.Images {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			i, p := k/il, k%il
			return fmt.Errorf("dataset: %s is %v; replace the image or drop the trial", name("images", i, p/(d.H*d.W), p/d.W%d.H, p%d.W), v)
		}
	}
	for k, v := range d.Responses {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			if d.Mask != nil && !d.Mask[k] {
				d.Responses[k] = 0 // not recorded: not data
				continue
			}
			return fmt.Errorf("dataset: %s is %v; drop the trial, or mark the neuron as not recorded in a mask", name("responses", k/d.Neurons, k%d.Neurons), v)
		}
	}
	if d.Tiers == nil {
		d.Tiers = Split(d.N, d.ImageIDs, ValidationFraction, SplitSeed)
		d.TiersSplit = true
	}
	for i, t := range d.Tiers {
		d.Tiers[i] = strings.TrimSpace(t)
	}
	return nil
}

// lengthError is the message for a per-trial array of the wrong length.
func lengthError(src, array string, got, want int, unit string) error {
	return fmt.Errorf("dataset: %s: %s has %d entries but there are %d %s; every %s needs one", src, array, got, want, unit, strings.TrimSuffix(unit, "s"))
}
