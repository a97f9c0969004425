package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"egg/checkpoint"
	"egg/encoder"
	"egg/mei"
	"egg/models"
	"egg/tensor"
)

// builtin installs (or finds installed) egg's built-in defaults.
func (g *globalOptions) builtin() (*models.Set, error) {
	if g != nil && g.defaults != nil {
		return g.defaults()
	}
	return models.Install("")
}

// defaultFlags points at the flags of a command that egg's built-in defaults can fill;
// a nil field is a flag the command does not have (or does not need now, like the
// prior of a gradient-ascent run).
type defaultFlags struct {
	// Train, Within, Cross and Truth are the model roles (comma-separated files).
	Train, Within, Cross, Truth *string
	// Prior is the diffusion prior's options.
	Prior *priorOptions
	// Pool is an image pool (.npz from egg pool).
	Pool *string
}

// applyDefaults fills the flags of f that the user left empty from egg's built-in
// defaults (package models), logging one line per group filled through logf:
//
//   - the roles, when Train is empty: train is the attention-1 ensemble, and each of
//     Within, Cross and Truth that is empty becomes attention-2, gaussian-1 and the
//     simulated V4 population (the ground truth) — the paper's roles (models.Set.Roles);
//   - the prior, when Prior names no --weights, --preset or --config: the built-in
//     32x32 gray prior, whose file describes its UNet and process;
//   - the pool, when Pool is empty: the built-in pool of natural patches.
//
// It returns the installed set, or nil when it filled nothing. When this build has no
// defaults and something needs filling, the error is a usage error of one line that
// names the missing flags and scripts/build-defaults.sh.
func applyDefaults(g *globalOptions, f defaultFlags, logf func(format string, a ...any)) (*models.Set, error) {
	roles := f.Train != nil && *f.Train == ""
	prior := f.Prior != nil && f.Prior.weights == "" && f.Prior.preset == "" && f.Prior.configFile == ""
	pool := f.Pool != nil && *f.Pool == ""
	if !roles && !prior && !pool {
		return nil, nil
	}
	set, err := g.builtin()
	if err != nil {
		var missing []string
		if roles {
			missing = append(missing, "--train")
		}
		if prior {
			missing = append(missing, "--weights")
		}
		if pool {
			missing = append(missing, "--pool")
		}
		err = fmt.Errorf("no %s given and %w", strings.Join(missing, ", "), err)
		if errors.Is(err, models.ErrMissing) {
			return nil, usageError{err}
		}
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if roles {
		train, within, cross := set.Roles()
		*f.Train = strings.Join(train, ",")
		filled := []string{fmt.Sprintf("train %s (%d models)", models.AttentionA1, len(train))}
		for _, r := range []struct {
			flag  *string
			files []string
			what  string
		}{
			{f.Within, within, fmt.Sprintf("within %s (%d models)", models.AttentionA2, len(within))},
			{f.Cross, cross, fmt.Sprintf("cross %s (%d models)", models.GaussianB1, len(cross))},
			{f.Truth, []string{set.Truth}, "truth the simulated V4 population"},
		} {
			if r.flag != nil && *r.flag == "" {
				*r.flag = strings.Join(r.files, ",")
				filled = append(filled, r.what)
			}
		}
		logf("no --train: using egg's built-in digital twins of 100 simulated V4 neurons: %s, from %s", strings.Join(filled, ", "), set.Dir)
	}
	if prior {
		f.Prior.weights = set.Prior
		logf("no --weights: using egg's built-in diffusion prior of 32x32 gray natural patches, %s", set.Prior)
	}
	if pool {
		*f.Pool = set.Pool
		logf("no --pool: using egg's built-in pool of natural patches, %s", set.Pool)
	}
	return set, nil
}

// Paper values of the L2 norm of the model input at its 100x100 input size
// (egg-method.md section 4).
const (
	paperNormMEI   = 25 // MEIs (EGG and GA)
	paperNormMENI  = 50 // most exciting natural images
	paperNormRecon = 60 // reconstructions
)

// scaledNorm returns the L2 norm of an h x w model input with the same per-pixel RMS
// as norm paper at the paper's 100x100: paper * sqrt(h*w) / 100.
func scaledNorm(paper float64, h, w int) float32 {
	return float32(paper * math.Sqrt(float64(h*w)) / 100)
}

// resolveNorm returns norm when the user set it (> 0), else the paper's value scaled
// to an h x w input (scaledNorm), logging it; a negative norm is a usage error.
func resolveNorm(norm float32, paper float64, h, w int, logf func(format string, a ...any)) (float32, error) {
	if norm < 0 || math.IsNaN(float64(norm)) {
		return 0, usagef("--norm %v: want a positive L2 norm (or 0 for the paper's, scaled to the input size)", norm)
	}
	if norm > 0 {
		return norm, nil
	}
	c := scaledNorm(paper, h, w)
	if logf != nil {
		logf("no --norm: L2 norm of the %dx%d model input %.4g (the paper's %g at 100x100, scaled to the same per-pixel RMS)", h, w, c, paper)
	}
	return c, nil
}

// stderrLog returns a logf that prints lines to stderr, or nothing when quiet.
func stderrLog(quiet bool) func(format string, a ...any) {
	return func(format string, a ...any) {
		if !quiet {
			fmt.Fprintf(os.Stderr, format+"\n", a...)
		}
	}
}

// loadEnsemble loads the comma-separated model files of one role as one model (an
// ensemble when there are several) and hashes them for provenance.
func loadEnsemble(dev *tensor.Device, list string) (encoder.Model, []mei.FileHash, error) {
	var members []encoder.Model
	var hashes []mei.FileHash
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		m, err := loadModel(dev, p)
		if err != nil {
			return nil, nil, fmt.Errorf("loading model %s: %w", p, err)
		}
		h, err := checkpoint.FileSHA256(p)
		if err != nil {
			return nil, nil, err
		}
		members = append(members, m)
		hashes = append(hashes, mei.FileHash{Path: p, SHA256: h})
	}
	switch len(members) {
	case 0:
		return nil, nil, nil
	case 1:
		return members[0], hashes, nil
	}
	e, err := encoder.NewEnsemble(members...)
	if err != nil {
		return nil, nil, err
	}
	return e, hashes, nil
}

// loadModelSet loads the models of each role (comma-separated file lists; train is
// required, the others may be empty), checks that they describe the same neurons, and
// records the files' hashes. It returns the set and the training model.
func loadModelSet(dev *tensor.Device, train, within, cross, truth string) (mei.ModelSet, encoder.Model, error) {
	models := mei.ModelSet{Files: map[string][]mei.FileHash{}}
	tm, h, err := loadEnsemble(dev, train)
	if err != nil {
		return models, nil, err
	}
	if tm == nil {
		return models, nil, usagef("--train names no model file")
	}
	models.Train, models.Files["train"] = tm, h
	for _, r := range []struct {
		name string
		list string
		dst  *mei.Model
	}{{"within", within, &models.Within}, {"cross", cross, &models.Cross}, {"truth", truth, &models.Truth}} {
		m, h, err := loadEnsemble(dev, r.list)
		if err != nil {
			return models, nil, err
		}
		if m == nil {
			continue
		}
		if m.Neurons() != tm.Neurons() {
			return models, nil, fmt.Errorf("the --%s models predict %d neurons, the --train models %d: they must describe the same neurons", r.name, m.Neurons(), tm.Neurons())
		}
		*r.dst = m
		models.Files[r.name] = h
	}
	return models, tm, nil
}

// inputShape returns a model's input [C, H, W], or the paper's [1, 100, 100] when its
// configuration does not say.
func inputShape(m encoder.Model) []int {
	if s := m.Config().InputShape; len(s) == 3 {
		return s
	}
	return []int{1, 100, 100}
}

// parseNeurons reads "all", or a list of indices and ranges such as "0,3,5-9".
func parseNeurons(spec string, total int) ([]int, error) {
	if spec == "all" {
		out := make([]int, total)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi := part, part
		if i := strings.Index(part, "-"); i > 0 {
			lo, hi = part[:i], part[i+1:]
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, usagef("--neurons %q: want \"all\" or indices and ranges like 0,3,5-9", spec)
		}
		if b >= total {
			return nil, usagef("--neurons: neuron %d does not exist; the model has %d neurons (0-%d)", b, total, total-1)
		}
		for n := a; n <= b; n++ {
			seen[n] = true
		}
	}
	if len(seen) == 0 {
		return nil, usagef("--neurons %q selects no neuron", spec)
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out, nil
}

// parseSeeds reads a comma-separated list of seeds.
func parseSeeds(spec string) ([]uint64, error) {
	var out []uint64
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, usagef("--seeds %q: want non-negative integers like 0,1,2", spec)
		}
		if slices.Contains(out, v) {
			return nil, usagef("--seeds %q: seed %d is given twice (it would make the same image twice)", spec, v)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, usagef("--seeds is empty")
	}
	return out, nil
}

// runSetup is what a command that makes images for model neurons starts from: the
// device, the models by role (with their files' hashes), the driving model, and
// the model input's size and L2 norm.
type runSetup struct {
	dev    *tensor.Device
	models mei.ModelSet
	train  encoder.Model
	ih, iw int
	norm   float32
}

// setupRun opens the device, loads the models of the roles in df (after the
// built-in defaults have filled those left empty: applyDefaults) and resolves the
// input norm: norm, or 0 for the paper's norm paper at 100x100 scaled to the input.
func setupRun(g *globalOptions, df defaultFlags, norm float32, paper float64, logf func(string, ...any)) (*runSetup, error) {
	dev, err := g.device()
	if err != nil {
		return nil, err
	}
	role := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	models, train, err := loadModelSet(dev, role(df.Train), role(df.Within), role(df.Cross), role(df.Truth))
	if err != nil {
		return nil, err
	}
	shape := inputShape(train)
	r := &runSetup{dev: dev, models: models, train: train, ih: shape[1], iw: shape[2]}
	if r.norm, err = resolveNorm(norm, paper, r.ih, r.iw, logf); err != nil {
		return nil, err
	}
	return r, nil
}

// checkWritable reports, before long work, whether files can be created in dir.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".egg-write-check-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s (for --out): %w; give a folder that exists and is writable", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
