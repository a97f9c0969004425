package pool

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"

	"egg/atomicfile"
	"egg/npy"
)

// WriteNPZ writes p to path as an .npz archive (see the package documentation),
// atomically: through a temporary file in the same folder, renamed into place. The
// patches are streamed, not copied.
func (p *Pool) WriteNPZ(path string) error {
	if err := p.check(); err != nil {
		return err
	}
	err := atomicfile.Write(path, func(f *bufio.Writer) error { return p.writeZip(f) })
	if err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	return nil
}

// writeZip streams the archive.
func (p *Pool) writeZip(f io.Writer) error {
	fail := func(err error) error { return err }
	z := zip.NewWriter(f)
	member := func(name string) (io.Writer, error) {
		return z.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Deflate})
	}
	// Members in name order, as npy.EncodeNPZ writes them.
	strs := map[string][]string{"files": p.Files, "manifest": p.Manifest, "settings": {p.Settings}, "source": p.Sources, "tiers": p.Tiers}
	for _, name := range []string{"files", "images", "manifest", "settings", "source", "tiers"} {
		if name == "manifest" && p.Manifest == nil {
			continue
		}
		w, err := member(name)
		if err != nil {
			return fail(err)
		}
		if name == "images" {
			if _, err := w.Write(npyHeader("|u1", p.Len(), 1, p.Size, p.Size)); err != nil {
				return fail(err)
			}
			if _, err := w.Write(p.Images); err != nil {
				return fail(err)
			}
			continue
		}
		s := strs[name]
		if err := npy.Encode(w, &npy.Array{Shape: []int{len(s)}, Str: s}); err != nil {
			return fail(err)
		}
	}
	return z.Close()
}

// check reports an inconsistent pool.
func (p *Pool) check() error {
	n := p.Len()
	switch {
	case p.Size < 1:
		return fmt.Errorf("pool: patch size %d must be positive", p.Size)
	case len(p.Images) != n*p.Size*p.Size:
		return fmt.Errorf("pool: %d pixels for %d patches of %dx%d", len(p.Images), n, p.Size, p.Size)
	case len(p.Sources) != n:
		return fmt.Errorf("pool: %d sources for %d patches", len(p.Sources), n)
	}
	return nil
}

// npyHeader returns the .npy (format 1.0) header of an array of descr and shape,
// padded to a multiple of 64 bytes as numpy writes it.
func npyHeader(descr string, shape ...int) []byte {
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = strconv.Itoa(s)
	}
	st := strings.Join(dims, ", ")
	if len(shape) == 1 {
		st += ","
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, st)
	pad := (64 - (10+len(h)+1)%64) % 64
	h += strings.Repeat(" ", pad) + "\n"
	out := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(out[8:], uint16(len(h)))
	return append(out, h...)
}

// Read reads a pool written by WriteNPZ (or by numpy.savez with the same arrays;
// only images is required: tiers default to Train, sources to "").
func Read(path string) (*Pool, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("pool: %w; give an .npz image pool made by egg pool", err)
	}
	defer z.Close()
	p := &Pool{}
	var shape []int
	found := false
	for _, f := range z.File {
		name := strings.TrimSuffix(f.Name, ".npy")
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("pool: %s: %s: %w", path, f.Name, err)
		}
		if name == "images" {
			shape, p.Images, err = npy.DecodeUint8(rc)
			found = true
		} else {
			var a *npy.Array
			a, err = npy.Decode(rc)
			if err == nil {
				switch name {
				case "tiers":
					p.Tiers = a.Str
				case "source":
					p.Sources = a.Str
				case "files":
					p.Files = a.Str
				case "manifest":
					p.Manifest = a.Str
				case "settings":
					if len(a.Str) == 1 {
						p.Settings = a.Str[0]
					}
				}
			}
		}
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("pool: %s: %s: %w", path, f.Name, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("pool: %s has no images array; make image pools with egg pool", path)
	}
	switch {
	case len(shape) == 4 && shape[1] == 1 && shape[2] == shape[3]:
		p.Size = shape[2]
	case len(shape) == 3 && shape[1] == shape[2]:
		p.Size = shape[1]
	default:
		return nil, fmt.Errorf("pool: %s: images has shape %v; want [N, 1, S, S] grayscale square patches", path, shape)
	}
	n := shape[0]
	if p.Tiers == nil {
		p.Tiers = make([]string, n)
		for i := range p.Tiers {
			p.Tiers[i] = Train
		}
	}
	if p.Sources == nil {
		p.Sources = make([]string, n)
	}
	if len(p.Tiers) != n || len(p.Sources) != n {
		return nil, fmt.Errorf("pool: %s: %d patches but %d tiers and %d sources; every patch needs one of each", path, n, len(p.Tiers), len(p.Sources))
	}
	for i, t := range p.Tiers {
		p.Tiers[i] = strings.TrimSpace(t)
	}
	return p, nil
}
