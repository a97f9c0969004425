package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"sort"
	"unsafe"
)

// Info describes one stored tensor.
type Info struct {
	Name  string // the tensor's name in the checkpoint
	DType DType  // element type as stored
	Shape []int  // logical shape; empty for a scalar
}

// Numel returns the number of elements of the tensor (1 for a scalar).
func (i Info) Numel() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// Reader gives access to the tensors of one checkpoint file. Data is read lazily per tensor (ReadAt on the
// file), so a large checkpoint never needs to be in memory twice. All methods are safe for concurrent use.
type Reader interface {
	// Names returns the tensor names, sorted.
	Names() []string
	// Info describes the named tensor; ok is false if there is none.
	Info(name string) (Info, bool)
	// Float32 returns a row-major contiguous copy of the tensor converted to float32 (from any type; strided
	// and transposed torch views are materialised in logical row-major order).
	Float32(name string) ([]float32, error)
	// Float64 is Float32 for float64; it is exact for every stored type but I64/U64 beyond 2^53.
	Float64(name string) ([]float64, error)
	// Int64 returns the values of an integer or BOOL tensor; it refuses floating-point tensors.
	Int64(name string) ([]int64, error)
	// Metadata returns a copy of the safetensors __metadata__ map; it is empty for PyTorch checkpoints.
	Metadata() map[string]string
	// Close releases the file. The Reader must not be used afterwards.
	Close() error
}

// Open opens a checkpoint and picks the format by content, not by file name: a zip archive (or a pre-1.6
// torch.save pickle, which yields an explanatory error) is read as a PyTorch checkpoint, anything else as
// safetensors.
func Open(path string) (Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileErr(path, err)
	}
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	f.Close()
	if looksLikeTorch(head[:n]) {
		return OpenTorch(path)
	}
	return OpenSafetensors(path)
}

// fileErr formats an operating-system error on path as "checkpoint: <path>: <op>: <reason>" (the *fs.PathError's
// own copy of the path is dropped; errors.Is still sees the underlying error, e.g. fs.ErrNotExist).
func fileErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("checkpoint: %s: %s: %w", path, pe.Op, pe.Err)
	}
	return fmt.Errorf("checkpoint: %s: %w", path, err)
}

// looksLikeTorch reports whether a file starting with head is a zip archive or a legacy torch.save file.
func looksLikeTorch(head []byte) bool {
	if bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")) {
		return true
	}
	return legacyTorchKind(head) != ""
}

// legacyMagic is the pickled magic number (LONG1 0x1950a86a20f9469cfc6c) that starts a pre-1.6 torch.save file.
var legacyMagic = []byte{0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// legacyTorchKind recognises torch.save files in the formats used before PyTorch 1.6.
func legacyTorchKind(head []byte) string {
	if len(head) >= 2+len(legacyMagic) && head[0] == 0x80 && head[1] <= 5 && bytes.Equal(head[2:2+len(legacyMagic)], legacyMagic) {
		return "legacy (pre-1.6, non-zip) torch.save pickle"
	}
	if len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")) {
		return "legacy tar-based torch.save archive"
	}
	return ""
}

// entry locates one tensor's bytes.
type entry struct {
	info    Info
	numel   int64
	ra      io.ReaderAt // the storage (safetensors: the whole file)
	base    int64       // byte offset of the storage in ra
	offset  int64       // element offset of the tensor's first element in the storage
	shape   []int64
	strides []int64 // element strides; nil when the tensor is contiguous row-major
	swap    bool    // stored big-endian
}

// tensorReader implements Reader for both formats.
type tensorReader struct {
	path    string
	closer  io.Closer
	names   []string
	entries map[string]*entry
	meta    map[string]string
}

func newTensorReader(path string, closer io.Closer, entries map[string]*entry, meta map[string]string) *tensorReader {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return &tensorReader{path: path, closer: closer, names: names, entries: entries, meta: meta}
}

func (r *tensorReader) Names() []string { return append([]string{}, r.names...) }

func (r *tensorReader) Info(name string) (Info, bool) {
	e, ok := r.entries[name]
	if !ok {
		return Info{}, false
	}
	inf := e.info
	inf.Shape = append([]int{}, inf.Shape...)
	return inf, true
}

func (r *tensorReader) Metadata() map[string]string {
	m := make(map[string]string, len(r.meta))
	for k, v := range r.meta {
		m[k] = v
	}
	return m
}

func (r *tensorReader) Close() error {
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", r.path, err)
	}
	return nil
}

func (r *tensorReader) lookup(name string) (*entry, error) {
	e, ok := r.entries[name]
	if !ok {
		return nil, fmt.Errorf("checkpoint: %s: no tensor named %q", r.path, name)
	}
	if e.numel > math.MaxInt/8 {
		return nil, fmt.Errorf("checkpoint: %s: tensor %q has %d elements, too many to hold in memory", r.path, name, e.numel)
	}
	return e, nil
}

func (r *tensorReader) Float32(name string) ([]float32, error) {
	e, err := r.lookup(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, e.numel)
	if e.info.DType == F32 && e.strides == nil && !e.swap && nativeLittle {
		return out, r.readRaw(e, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), 4*len(out)))
	}
	return out, r.chunks(e, func(raw []byte, first int) {
		decodeF32(e.info.DType, raw, out[first:first+len(raw)/e.info.DType.Size()])
	})
}

func (r *tensorReader) Float64(name string) ([]float64, error) {
	e, err := r.lookup(name)
	if err != nil {
		return nil, err
	}
	out := make([]float64, e.numel)
	if e.info.DType == F64 && e.strides == nil && !e.swap && nativeLittle {
		return out, r.readRaw(e, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), 8*len(out)))
	}
	return out, r.chunks(e, func(raw []byte, first int) {
		decodeF64(e.info.DType, raw, out[first:first+len(raw)/e.info.DType.Size()])
	})
}

func (r *tensorReader) Int64(name string) ([]int64, error) {
	e, err := r.lookup(name)
	if err != nil {
		return nil, err
	}
	if e.info.DType.IsFloat() {
		return nil, fmt.Errorf("checkpoint: %s: tensor %q has floating-point type %s; use Float32 or Float64", r.path, name, e.info.DType)
	}
	out := make([]int64, e.numel)
	if e.info.DType == I64 && e.strides == nil && !e.swap && nativeLittle {
		return out, r.readRaw(e, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), 8*len(out)))
	}
	bad := -1
	err = r.chunks(e, func(raw []byte, first int) {
		if i := decodeI64(e.info.DType, raw, out[first:first+len(raw)/e.info.DType.Size()]); i >= 0 && bad < 0 {
			bad = first + i
		}
	})
	if err == nil && bad >= 0 {
		err = fmt.Errorf("checkpoint: %s: tensor %q: element %d does not fit an int64", r.path, name, bad)
	}
	return out, err
}

// chunkBytes is the size of the buffer through which data is read and converted.
const chunkBytes = 1 << 20

// readErr wraps an I/O error on tensor e.
func (r *tensorReader) readErr(e *entry, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("checkpoint: %s: tensor %q: data ends early; the file may have been truncated after it was opened", r.path, e.info.Name)
	}
	return fmt.Errorf("checkpoint: %s: tensor %q: %w", r.path, e.info.Name, err)
}

// readRaw reads a contiguous, native-order tensor straight into dst.
func (r *tensorReader) readRaw(e *entry, dst []byte) error {
	if len(dst) == 0 {
		return nil
	}
	start := e.base + e.offset*int64(e.info.DType.Size())
	if _, err := e.ra.ReadAt(dst, start); err != nil {
		return r.readErr(e, err)
	}
	return nil
}

// chunks reads the tensor's elements in logical row-major order and passes them to visit in pieces: raw holds
// whole little-endian elements and first is the index of the first of them.
func (r *tensorReader) chunks(e *entry, visit func(raw []byte, first int)) error {
	if e.numel == 0 {
		return nil
	}
	size := e.info.DType.Size()
	per := chunkBytes / size
	if e.strides == nil {
		total := int(e.numel)
		buf := make([]byte, min(total, per)*size)
		start := e.base + e.offset*int64(size)
		for first := 0; first < total; first += per {
			n := min(per, total-first)
			b := buf[:n*size]
			if _, err := e.ra.ReadAt(b, start+int64(first)*int64(size)); err != nil {
				return r.readErr(e, err)
			}
			if e.swap {
				swapBytes(b, size)
			}
			visit(b, first)
		}
		return nil
	}
	// Strided view: read the span of the storage the view touches, then gather.
	span := int64(1)
	for i, d := range e.shape {
		span += (d - 1) * e.strides[i]
	}
	src := make([]byte, span*int64(size))
	if _, err := e.ra.ReadAt(src, e.base+e.offset*int64(size)); err != nil {
		return r.readErr(e, err)
	}
	if e.swap {
		swapBytes(src, size)
	}
	nd := len(e.shape)
	idx := make([]int64, nd)
	pos := int64(0)
	total := int(e.numel)
	buf := make([]byte, min(total, per)*size)
	for first := 0; first < total; first += per {
		n := min(per, total-first)
		b := buf[:n*size]
		for k := 0; k < n; k++ {
			copy(b[k*size:(k+1)*size], src[pos*int64(size):])
			for d := nd - 1; d >= 0; d-- {
				idx[d]++
				pos += e.strides[d]
				if idx[d] < e.shape[d] {
					break
				}
				pos -= idx[d] * e.strides[d]
				idx[d] = 0
			}
		}
		visit(b, first)
	}
	return nil
}

// numelOf multiplies the dimensions, reporting false on a negative dimension or overflow past 2^62.
func numelOf(shape []int64) (int64, bool) {
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
	}
	for _, d := range shape {
		if d == 0 {
			return 0, true
		}
	}
	n := uint64(1)
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<62 {
			return 0, false
		}
		n = lo
	}
	return int64(n), true
}
