package pool

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
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

var (
	descrRE = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	shapeRE = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
	orderRE = regexp.MustCompile(`'fortran_order'\s*:\s*True`)
)

// readU8 reads a C-ordered uint8 .npy stream without widening its values.
func readU8(r io.Reader) (shape []int, data []uint8, err error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil || string(pre[:6]) != "\x93NUMPY" {
		return nil, nil, fmt.Errorf("not a .npy array")
	}
	var hlen int
	switch pre[6] {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return nil, nil, err
		}
		hlen = int(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, err
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return nil, nil, fmt.Errorf("unsupported .npy version %d", pre[6])
	}
	if hlen > 1<<20 {
		return nil, nil, fmt.Errorf(".npy header of %d bytes is implausible", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, err
	}
	d, s := descrRE.FindSubmatch(hb), shapeRE.FindSubmatch(hb)
	if d == nil || s == nil {
		return nil, nil, fmt.Errorf(".npy header %q lacks descr or shape", hb)
	}
	if descr := string(d[1]); descr != "|u1" && descr != "<u1" && descr != "u1" {
		return nil, nil, fmt.Errorf("patches are %s, not uint8", descr)
	}
	n := 1
	for _, p := range strings.Split(string(s[1]), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return nil, nil, fmt.Errorf("bad shape %q", s[1])
		}
		shape = append(shape, v)
		n *= v
	}
	if orderRE.Match(hb) && len(shape) > 1 && n > 0 && shape[len(shape)-1] > 1 {
		return nil, nil, fmt.Errorf("patches are stored in Fortran order; save them in C order")
	}
	data = make([]uint8, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("truncated data: %w", err)
	}
	return shape, data, nil
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
			shape, p.Images, err = readU8(rc)
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
