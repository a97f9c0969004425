package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"egg/checkpoint"
	"egg/encoder"
	"egg/mei"
	"egg/tensor"
)

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
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, usagef("--seeds is empty")
	}
	return out, nil
}
