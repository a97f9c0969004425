package priortrain

import (
	"archive/zip"
	"bufio"
	"fmt"
	"strings"

	"egg/checkpoint"
	"egg/npy"
)

// Pool is a set of square uint8 images to train a prior on.
type Pool struct {
	Path   string   // the file it was read from
	SHA256 string   // hex SHA-256 of that file
	N      int      // images
	C      int      // channels (1: grayscale)
	Size   int      // height and width
	Images []uint8  // [N, C, Size, Size], row-major
	Tiers  []string // tier of each image, or nil (all train)
}

// Tier names of a pool.
const (
	Train      = "train"
	Validation = "validation"
)

// ImageLen returns the number of values of one image, C x Size x Size.
func (p *Pool) ImageLen() int { return p.C * p.Size * p.Size }

// Image returns image i, [C, Size, Size].
func (p *Pool) Image(i int) []uint8 {
	n := p.ImageLen()
	return p.Images[i*n : (i+1)*n]
}

// Indices returns the images of a tier in order; without tiers, every image is in
// the train tier and no other.
func (p *Pool) Indices(tier string) []int {
	var idx []int
	for i := 0; i < p.N; i++ {
		if (p.Tiers == nil && tier == Train) || (p.Tiers != nil && p.Tiers[i] == tier) {
			idx = append(idx, i)
		}
	}
	return idx
}

// LoadPool reads an image pool from an .npz archive: images, uint8 [N, C, S, S] or
// [N, S, S], and optional tiers, strings [N]. Other arrays are ignored. The images
// are read as bytes, so pools of millions of patches fit in memory.
func LoadPool(path string) (*Pool, error) {
	fail := func(format string, a ...any) (*Pool, error) {
		return nil, fmt.Errorf("priortrain: pool %s: "+format, append([]any{path}, a...)...)
	}
	sum, err := checkpoint.FileSHA256(path)
	if err != nil {
		return nil, fmt.Errorf("priortrain: %w", err)
	}
	z, err := zip.OpenReader(path)
	if err != nil {
		return fail("not a readable .npz archive (%v); make one with egg pool", err)
	}
	defer z.Close()
	p := &Pool{Path: path, SHA256: sum}
	var shape []int
	found := false
	for _, f := range z.File {
		switch f.Name {
		case "images.npy":
			found = true
			rc, err := f.Open()
			if err != nil {
				return fail("%v", err)
			}
			shape, p.Images, err = npy.DecodeUint8(bufio.NewReaderSize(rc, 1<<20))
			rc.Close()
			if err != nil {
				return fail("images: %v", err)
			}
		case "tiers.npy":
			rc, err := f.Open()
			if err != nil {
				return fail("%v", err)
			}
			a, err := npy.Decode(rc)
			rc.Close()
			if err != nil {
				return fail("tiers: %v", err)
			}
			if a.Str == nil || len(a.Shape) != 1 {
				return fail("tiers is a %s array of shape %v; want strings [N] such as \"train\" and \"validation\"", a.DType, a.Shape)
			}
			p.Tiers = a.Str
			for i, t := range p.Tiers {
				p.Tiers[i] = strings.TrimSpace(t)
			}
		}
	}
	if !found {
		return fail("has no images array; want images, uint8 [N, 1, S, S]")
	}
	switch len(shape) {
	case 3:
		p.N, p.C, p.Size = shape[0], 1, shape[1]
	case 4:
		p.N, p.C, p.Size = shape[0], shape[1], shape[2]
	}
	if (len(shape) != 3 && len(shape) != 4) || shape[len(shape)-1] != p.Size {
		return fail("images have shape %v; want [N, C, S, S] or [N, S, S] (square images)", shape)
	}
	if p.N == 0 || p.C == 0 || p.Size == 0 {
		return fail("images have shape %v: the pool is empty", shape)
	}
	if p.Tiers != nil && len(p.Tiers) != p.N {
		return fail("has %d tiers for %d images", len(p.Tiers), p.N)
	}
	return p, nil
}
