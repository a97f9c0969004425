package dataset

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"egg/npy"
)

// ReadNPZ reads a data set from an .npz archive (see the package documentation for
// the arrays).
func ReadNPZ(path string) (*Dataset, error) {
	arrs, err := npy.ReadNPZ(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	need := func(name string) (*npy.Array, error) {
		a, ok := arrs[name]
		if !ok {
			have := slices.Sorted(maps.Keys(arrs))
			return nil, fmt.Errorf("dataset: %s has no %q array (it has %s); save images [N, 1, H, W] and responses [N, neurons] with numpy.savez", path, name, strings.Join(have, ", "))
		}
		return a, nil
	}
	img, err := need("images")
	if err != nil {
		return nil, err
	}
	resp, err := need("responses")
	if err != nil {
		return nil, err
	}
	d := &Dataset{Source: path}
	rank3 := len(img.Shape) == 3
	switch len(img.Shape) {
	case 3:
		d.N, d.C, d.H, d.W = img.Shape[0], 1, img.Shape[1], img.Shape[2]
	case 4:
		d.N, d.C, d.H, d.W = img.Shape[0], img.Shape[1], img.Shape[2], img.Shape[3]
	default:
		return nil, fmt.Errorf("dataset: %s: images has shape %v; want [N, 1, H, W] or [N, H, W]", path, img.Shape)
	}
	if d.Images, err = img.Float32(); err != nil {
		return nil, fmt.Errorf("dataset: %s: images: %w", path, err)
	}
	if len(resp.Shape) != 2 {
		return nil, fmt.Errorf("dataset: %s: responses has shape %v; want [N, neurons]", path, resp.Shape)
	}
	if resp.Shape[0] != d.N {
		return nil, fmt.Errorf("dataset: %s: images has %d trials but responses has %d; each trial needs an image and a row of responses", path, d.N, resp.Shape[0])
	}
	d.Neurons = resp.Shape[1]
	if d.Responses, err = resp.Float32(); err != nil {
		return nil, fmt.Errorf("dataset: %s: responses: %w", path, err)
	}
	if a, ok := arrs["tiers"]; ok {
		if a.Str == nil && a.Len() > 0 {
			return nil, fmt.Errorf("dataset: %s: tiers is %s, not strings; save it as an array of \"train\", \"validation\" and \"test\"", path, a.DType)
		}
		if a.Len() != d.N {
			return nil, lengthError(path, "tiers", a.Len(), d.N, "trials")
		}
		d.Tiers = slices.Clone(a.Str)
	}
	if a, ok := arrs["image_ids"]; ok {
		if d.ImageIDs, err = ints(a); err != nil {
			return nil, fmt.Errorf("dataset: %s: image_ids: %w", path, err)
		}
		if len(d.ImageIDs) != d.N {
			return nil, lengthError(path, "image_ids", len(d.ImageIDs), d.N, "trials")
		}
	}
	if a, ok := arrs["mask"]; ok {
		if len(a.Shape) != 2 || a.Shape[0] != d.N || a.Shape[1] != d.Neurons {
			return nil, fmt.Errorf("dataset: %s: mask has shape %v; want [%d, %d] like responses", path, a.Shape, d.N, d.Neurons)
		}
		v, err := a.Float32()
		if err != nil {
			return nil, fmt.Errorf("dataset: %s: mask: %w", path, err)
		}
		d.Mask = make([]bool, len(v))
		for i, x := range v {
			d.Mask[i] = x != 0
		}
	}
	if a, ok := arrs["neuron_ids"]; ok {
		if d.NeuronIDs, err = ints(a); err != nil {
			return nil, fmt.Errorf("dataset: %s: neuron_ids: %w", path, err)
		}
		if len(d.NeuronIDs) != d.Neurons {
			return nil, lengthError(path, "neuron_ids", len(d.NeuronIDs), d.Neurons, "neurons")
		}
	}
	name := func(array string, idx ...int) string {
		if array == "images" && rank3 {
			idx = append(idx[:1], idx[2:]...)
		}
		s := make([]string, len(idx))
		for i, v := range idx {
			s[i] = strconv.Itoa(v)
		}
		return fmt.Sprintf("%s: %s[%s]", path, array, strings.Join(s, ", "))
	}
	if err := d.check(name); err != nil {
		return nil, err
	}
	return d, nil
}

// ints returns an integer array's values (whole floats are accepted).
func ints(a *npy.Array) ([]int64, error) {
	switch {
	case a.I64 != nil:
		return slices.Clone(a.I64), nil
	case a.F64 != nil:
		out := make([]int64, len(a.F64))
		for i, v := range a.F64 {
			if v != math.Trunc(v) {
				return nil, fmt.Errorf("value %v at index %d is not an integer", v, i)
			}
			out[i] = int64(v)
		}
		return out, nil
	case a.Len() == 0:
		return []int64{}, nil
	}
	return nil, fmt.Errorf("a %s array is not integers", a.DType)
}

// ReadStatic reads a data set in the static folder layout of neuralpredictors
// (see the package documentation).
func ReadStatic(dir string) (*Dataset, error) {
	imgDir := filepath.Join(dir, "data", "images")
	respDir := filepath.Join(dir, "data", "responses")
	ni, err := countTrials(imgDir)
	if err != nil {
		return nil, err
	}
	nr, err := countTrials(respDir)
	if err != nil {
		return nil, err
	}
	if ni != nr {
		return nil, fmt.Errorf("dataset: %s has %d images but %s has %d responses; each trial needs both files", imgDir, ni, respDir, nr)
	}
	d := &Dataset{Source: dir, N: ni}
	var first []int
	for i := 0; i < ni; i++ {
		p := filepath.Join(imgDir, fmt.Sprintf("%d.npy", i))
		a, err := npy.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		shape := a.Shape
		if len(shape) == 2 {
			shape = []int{1, shape[0], shape[1]}
		}
		if len(shape) != 3 {
			return nil, fmt.Errorf("dataset: %s has shape %v; want [1, H, W] or [H, W]", p, a.Shape)
		}
		if i == 0 {
			first = shape
			d.C, d.H, d.W = shape[0], shape[1], shape[2]
			d.Images = make([]float32, 0, ni*d.ImageLen())
		} else if !slices.Equal(shape, first) {
			return nil, fmt.Errorf("dataset: %s has shape %v but image 0 has %v; every image must have the same size", p, shape, first)
		}
		v, err := a.Float32()
		if err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", p, err)
		}
		d.Images = append(d.Images, v...)
	}
	for i := 0; i < ni; i++ {
		p := filepath.Join(respDir, fmt.Sprintf("%d.npy", i))
		a, err := npy.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		if len(a.Shape) != 1 {
			return nil, fmt.Errorf("dataset: %s has shape %v; want [neurons]", p, a.Shape)
		}
		if i == 0 {
			d.Neurons = a.Shape[0]
			d.Responses = make([]float32, 0, ni*d.Neurons)
		} else if a.Shape[0] != d.Neurons {
			return nil, fmt.Errorf("dataset: %s has %d responses but trial 0 has %d; every trial needs one response per neuron", p, a.Shape[0], d.Neurons)
		}
		v, err := a.Float32()
		if err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", p, err)
		}
		d.Responses = append(d.Responses, v...)
	}
	meta := func(parts ...string) (*npy.Array, string, error) {
		p := filepath.Join(append([]string{dir, "meta"}, parts...)...)
		a, err := npy.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, p, nil
		}
		if err != nil {
			return nil, p, fmt.Errorf("dataset: %w", err)
		}
		return a, p, nil
	}
	a, p, err := meta("trials", "tiers.npy")
	if err != nil {
		return nil, err
	}
	if a != nil {
		if a.Str == nil && a.Len() > 0 {
			return nil, fmt.Errorf("dataset: %s is %s, not strings; save it as an array of \"train\", \"validation\" and \"test\"", p, a.DType)
		}
		if a.Len() != d.N {
			return nil, lengthError(p, "tiers", a.Len(), d.N, "trials")
		}
		d.Tiers = slices.Clone(a.Str)
	}
	if a, p, err = meta("trials", "frame_image_id.npy"); err != nil {
		return nil, err
	}
	if a != nil {
		if d.ImageIDs, err = ints(a); err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", p, err)
		}
		if len(d.ImageIDs) != d.N {
			return nil, lengthError(p, "frame_image_id", len(d.ImageIDs), d.N, "trials")
		}
	}
	if a, p, err = meta("neurons", "unit_ids.npy"); err != nil {
		return nil, err
	}
	if a != nil {
		if d.NeuronIDs, err = ints(a); err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", p, err)
		}
		if len(d.NeuronIDs) != d.Neurons {
			return nil, lengthError(p, "unit_ids", len(d.NeuronIDs), d.Neurons, "neurons")
		}
	}
	name := func(array string, idx ...int) string {
		s := make([]string, len(idx)-1)
		for i, v := range idx[1:] {
			s[i] = strconv.Itoa(v)
		}
		return fmt.Sprintf("%s[%s]", filepath.Join(dir, "data", array, fmt.Sprintf("%d.npy", idx[0])), strings.Join(s, ", "))
	}
	if err := d.check(name); err != nil {
		return nil, err
	}
	return d, nil
}

// countTrials returns the number of <i>.npy files in dir after checking that they
// are 0.npy ... (n-1).npy.
func countTrials(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("dataset: %w; a static data folder has data/images/<i>.npy and data/responses/<i>.npy", err)
	}
	seen := map[int]bool{}
	for _, e := range ents {
		stem, ok := strings.CutSuffix(e.Name(), ".npy")
		if !ok || e.IsDir() {
			continue
		}
		i, err := strconv.Atoi(stem)
		if err != nil || i < 0 {
			return 0, fmt.Errorf("dataset: %s: file %s is not named <trial>.npy", dir, e.Name())
		}
		seen[i] = true
	}
	for i := range len(seen) {
		if !seen[i] {
			return 0, fmt.Errorf("dataset: %s has %d trial files but %d.npy is missing; trials must be numbered 0 to %d", dir, len(seen), i, len(seen)-1)
		}
	}
	if len(seen) == 0 {
		return 0, fmt.Errorf("dataset: %s has no <trial>.npy files", dir)
	}
	return len(seen), nil
}
