// Package npy reads and writes NumPy arrays: .npy files (format versions 1.0-3.0,
// little- and big-endian numeric dtypes, unicode strings) and .npz archives (zip
// files of .npy members, stored or deflated), as numpy.save, numpy.savez and
// numpy.savez_compressed write them. Object arrays (pickles) are refused.
package npy

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Array is one decoded array. Exactly one of the data fields is set, by kind:
// floating point -> F64 (float16/32/64), integers -> I64, booleans -> Bool,
// unicode or byte strings -> Str. Data is in C (row-major) order.
type Array struct {
	DType string // NumPy's descr, e.g. "<f4", "|u1", "<U5"
	Shape []int
	F64   []float64
	I64   []int64
	Bool  []bool
	Str   []string
}

// Len returns the number of elements.
func (a *Array) Len() int {
	n := 1
	for _, s := range a.Shape {
		n *= s
	}
	return n
}

// Float32 returns the array as float32 values (numbers and booleans).
func (a *Array) Float32() ([]float32, error) {
	out := make([]float32, a.Len())
	switch {
	case a.F64 != nil:
		for i, v := range a.F64 {
			out[i] = float32(v)
		}
	case a.I64 != nil:
		for i, v := range a.I64 {
			out[i] = float32(v)
		}
	case a.Bool != nil:
		for i, v := range a.Bool {
			if v {
				out[i] = 1
			}
		}
	case a.Len() == 0:
	default:
		return nil, fmt.Errorf("npy: a %s array is not numeric", a.DType)
	}
	return out, nil
}

var headerRE = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'|'fortran_order'\s*:\s*(True|False)|'shape'\s*:\s*\(([^)]*)\)`)

// Header is what an .npy stream says before its data.
type Header struct {
	DType   string // NumPy's descr, e.g. "<f4", "|u1"
	Shape   []int
	Fortran bool // column-major data
	// Elements is the product of Shape, checked: ReadHeader refuses a shape whose
	// product overflows or exceeds MaxElements.
	Elements int
}

// MaxElements is the most elements an array may declare (2^31).
const MaxElements = 1 << 31

// ReadHeader reads the magic and the header of an .npy stream, leaving r at the
// start of the data.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	var magic [8]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return h, fmt.Errorf("npy: truncated header: %w", err)
	}
	if string(magic[:6]) != "\x93NUMPY" {
		return h, fmt.Errorf("npy: not a .npy file (bad magic)")
	}
	var hlen int
	switch magic[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return h, fmt.Errorf("npy: truncated header: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return h, fmt.Errorf("npy: truncated header: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return h, fmt.Errorf("npy: unsupported format version %d.%d", magic[6], magic[7])
	}
	if hlen > 1<<20 {
		return h, fmt.Errorf("npy: header of %d bytes is implausible", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return h, fmt.Errorf("npy: truncated header: %w", err)
	}
	gotShape, gotDescr := false, false
	h.Elements = 1
	for _, m := range headerRE.FindAllStringSubmatch(string(hb), -1) {
		switch {
		case m[1] != "":
			h.DType, gotDescr = m[1], true
		case m[2] != "":
			h.Fortran = m[2] == "True"
		default:
			gotShape = true
			for _, p := range strings.Split(m[3], ",") {
				p = strings.TrimSpace(p)
				if p == "" {
					continue
				}
				v, err := strconv.Atoi(strings.TrimSuffix(p, "L"))
				if err != nil || v < 0 {
					return h, fmt.Errorf("npy: bad shape %q", m[3])
				}
				h.Shape = append(h.Shape, v)
				if v > 0 && h.Elements > MaxElements/v {
					return h, fmt.Errorf("npy: shape (%s) declares more than %d elements", m[3], MaxElements)
				}
				h.Elements *= v
			}
		}
	}
	if !gotDescr || !gotShape {
		return h, fmt.Errorf("npy: header %q lacks descr or shape", string(hb))
	}
	return h, nil
}

// DecodeUint8 reads a C-ordered uint8 .npy stream as bytes, without widening them
// (Decode keeps integers as int64: eight times the memory of an image pool). The
// data is read as it comes, so a header that declares more than the stream holds
// costs no more memory than the stream.
func DecodeUint8(r io.Reader) (shape []int, data []uint8, err error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, nil, err
	}
	if d := h.DType; d != "|u1" && d != "<u1" && d != ">u1" && d != "u1" {
		return nil, nil, fmt.Errorf("npy: dtype %s; want uint8 (0-255)", d)
	}
	if h.Fortran && len(h.Shape) > 1 && h.Elements > 0 && h.Shape[len(h.Shape)-1] > 1 {
		return nil, nil, fmt.Errorf("npy: Fortran-ordered array; save it C-ordered (numpy.ascontiguousarray)")
	}
	data, err = io.ReadAll(io.LimitReader(r, int64(h.Elements)))
	if err != nil {
		return nil, nil, fmt.Errorf("npy: reading the data: %w", err)
	}
	if len(data) != h.Elements {
		return nil, nil, fmt.Errorf("npy: data truncated: %d of %d bytes", len(data), h.Elements)
	}
	return h.Shape, data, nil
}

// Decode reads one .npy stream.
func Decode(r io.Reader) (*Array, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	a := &Array{DType: h.DType, Shape: h.Shape}
	if strings.HasPrefix(a.DType, "|O") || strings.HasPrefix(a.DType, "O") {
		return nil, fmt.Errorf("npy: object arrays (pickles) are not supported; save the data as numbers or strings")
	}
	if err := a.decodeData(r, h.Elements); err != nil {
		return nil, err
	}
	if h.Fortran && len(a.Shape) > 1 {
		a.toCOrder()
	}
	return a, nil
}

func (a *Array) decodeData(r io.Reader, n int) error {
	d := a.DType
	if len(d) < 2 {
		return fmt.Errorf("npy: bad dtype %q", d)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if d[0] == '>' {
		order = binary.BigEndian
	}
	kind := d[1]
	size, err := strconv.Atoi(d[2:])
	if err != nil || size <= 0 {
		return fmt.Errorf("npy: unsupported dtype %q", d)
	}
	elem := size
	if kind == 'U' {
		elem = 4 * size
	}
	buf := make([]byte, n*elem)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("npy: data truncated: want %d bytes: %w", len(buf), err)
	}
	switch {
	case kind == 'f' && (size == 2 || size == 4 || size == 8):
		a.F64 = make([]float64, n)
		for i := range a.F64 {
			b := buf[i*size:]
			switch size {
			case 2:
				a.F64[i] = float64(half(order.Uint16(b)))
			case 4:
				a.F64[i] = float64(math.Float32frombits(order.Uint32(b)))
			case 8:
				a.F64[i] = math.Float64frombits(order.Uint64(b))
			}
		}
	case (kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8):
		a.I64 = make([]int64, n)
		for i := range a.I64 {
			b := buf[i*size:]
			var u uint64
			switch size {
			case 1:
				u = uint64(b[0])
			case 2:
				u = uint64(order.Uint16(b))
			case 4:
				u = uint64(order.Uint32(b))
			case 8:
				u = order.Uint64(b)
			}
			if kind == 'i' {
				shift := 64 - 8*size
				a.I64[i] = int64(u<<shift) >> shift
			} else {
				a.I64[i] = int64(u)
			}
		}
	case kind == 'b' && size == 1:
		a.Bool = make([]bool, n)
		for i := range a.Bool {
			a.Bool[i] = buf[i] != 0
		}
	case kind == 'U':
		a.Str = make([]string, n)
		for i := range a.Str {
			var sb strings.Builder
			for j := 0; j < size; j++ {
				c := order.Uint32(buf[(i*size+j)*4:])
				if c == 0 {
					break
				}
				sb.WriteRune(rune(c))
			}
			a.Str[i] = sb.String()
		}
	case kind == 'S':
		a.Str = make([]string, n)
		for i := range a.Str {
			a.Str[i] = string(bytes.TrimRight(buf[i*size:(i+1)*size], "\x00"))
		}
	default:
		return fmt.Errorf("npy: unsupported dtype %q", d)
	}
	return nil
}

// toCOrder reorders Fortran-ordered data to C order.
func (a *Array) toCOrder() {
	n := a.Len()
	r := len(a.Shape)
	perm := make([]int, n)
	idx := make([]int, r)
	for c := 0; c < n; c++ {
		// c is a C-order index; find its Fortran-order offset.
		rem := c
		for k := r - 1; k >= 0; k-- {
			idx[k] = rem % a.Shape[k]
			rem /= a.Shape[k]
		}
		f, stride := 0, 1
		for k := 0; k < r; k++ {
			f += idx[k] * stride
			stride *= a.Shape[k]
		}
		perm[c] = f
	}
	switch {
	case a.F64 != nil:
		a.F64 = permute(a.F64, perm)
	case a.I64 != nil:
		a.I64 = permute(a.I64, perm)
	case a.Bool != nil:
		a.Bool = permute(a.Bool, perm)
	case a.Str != nil:
		a.Str = permute(a.Str, perm)
	}
}

func permute[T any](v []T, perm []int) []T {
	out := make([]T, len(v))
	for c, f := range perm {
		out[c] = v[f]
	}
	return out
}

func half(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0: // zero or subnormal: mant * 2^-24
		v := float32(mant) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

// ReadFile reads a .npy file.
func ReadFile(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	defer f.Close()
	a, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ReadNPZ reads every array of an .npz archive, by name (without ".npy").
func ReadNPZ(path string) (map[string]*Array, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %s is not a readable .npz archive: %w", path, err)
	}
	defer z.Close()
	out := map[string]*Array{}
	for _, f := range z.File {
		if !strings.HasSuffix(f.Name, ".npy") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("npy: %s: %s: %w", path, f.Name, err)
		}
		a, err := Decode(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, f.Name, err)
		}
		out[strings.TrimSuffix(f.Name, ".npy")] = a
	}
	return out, nil
}

// Encode writes a .npy (format 1.0, or 2.0 for long headers) of a with dtype
// "<f4" for F64 data unless a.DType says "<f8", "<i8" for I64 unless "|u1", "|b1" for
// Bool, and "<U<n>" for Str.
func Encode(w io.Writer, a *Array) error {
	var data bytes.Buffer
	descr := a.DType
	switch {
	case a.F64 != nil:
		if descr != "<f8" {
			descr = "<f4"
		}
		for _, v := range a.F64 {
			if descr == "<f8" {
				binary.Write(&data, binary.LittleEndian, v)
			} else {
				binary.Write(&data, binary.LittleEndian, float32(v))
			}
		}
	case a.I64 != nil:
		if descr != "|u1" {
			descr = "<i8"
		}
		for _, v := range a.I64 {
			if descr == "|u1" {
				data.WriteByte(byte(v))
			} else {
				binary.Write(&data, binary.LittleEndian, v)
			}
		}
	case a.Bool != nil:
		descr = "|b1"
		for _, v := range a.Bool {
			if v {
				data.WriteByte(1)
			} else {
				data.WriteByte(0)
			}
		}
	case a.Str != nil:
		width := 1
		for _, s := range a.Str {
			width = max(width, utf8.RuneCountInString(s))
		}
		descr = fmt.Sprintf("<U%d", width)
		for _, s := range a.Str {
			rs := []rune(s)
			for j := 0; j < width; j++ {
				var c uint32
				if j < len(rs) {
					c = uint32(rs[j])
				}
				binary.Write(&data, binary.LittleEndian, c)
			}
		}
	default:
		descr = "<f4"
	}
	shape := make([]string, len(a.Shape))
	for i, s := range a.Shape {
		shape[i] = strconv.Itoa(s)
	}
	st := strings.Join(shape, ", ")
	if len(a.Shape) == 1 {
		st += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, st)
	version, lenBytes := byte(1), 2
	if len(header)+11 > 65535 {
		version, lenBytes = 2, 4
	}
	pre := 6 + 2 + lenBytes
	pad := (64 - (pre+len(header)+1)%64) % 64
	header += strings.Repeat(" ", pad) + "\n"
	var out bytes.Buffer
	out.WriteString("\x93NUMPY")
	out.WriteByte(version)
	out.WriteByte(0)
	if version == 1 {
		binary.Write(&out, binary.LittleEndian, uint16(len(header)))
	} else {
		binary.Write(&out, binary.LittleEndian, uint32(len(header)))
	}
	out.WriteString(header)
	out.Write(data.Bytes())
	_, err := w.Write(out.Bytes())
	return err
}

// Float32s makes an Array of float32 values with the given shape.
func Float32s(v []float32, shape ...int) *Array {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return &Array{DType: "<f4", Shape: shape, F64: f}
}

// EncodeBytes returns the .npy encoding of a.
func EncodeBytes(a *Array) ([]byte, error) {
	var b bytes.Buffer
	err := Encode(&b, a)
	return b.Bytes(), err
}

// EncodeNPZ returns an .npz archive (deflated) of the arrays, members in name order.
func EncodeNPZ(arrays map[string]*Array) ([]byte, error) {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	names := make([]string, 0, len(arrays))
	for n := range arrays {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, err := z.CreateHeader(&zip.FileHeader{Name: filepath.ToSlash(n) + ".npy", Method: zip.Deflate})
		if err != nil {
			return nil, err
		}
		if err := Encode(w, arrays[n]); err != nil {
			return nil, err
		}
	}
	if err := z.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
