package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"unicode/utf8"

	"egg/atomicfile"
)

// maxHeaderLen bounds the JSON header of a safetensors file (the reference implementation uses 100 MB too).
const maxHeaderLen = 100 << 20

// OpenSafetensors opens a safetensors file. The header is read and validated completely before it returns:
// every tensor's type, shape and byte range must be consistent with the file, so that a truncated download is
// reported here rather than on first use.
func OpenSafetensors(path string) (Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileErr(path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileErr(path, err)
	}
	r, err := openSafetensors(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

type stHeaderEntry struct {
	DType   *string   `json:"dtype"`
	Shape   *[]int64  `json:"shape"`
	Offsets *[]uint64 `json:"data_offsets"`
}

// openSafetensors parses the safetensors file of size bytes readable through ra.
func openSafetensors(path string, ra io.ReaderAt, size int64) (*tensorReader, error) {
	fail := func(format string, args ...any) (*tensorReader, error) {
		return nil, fmt.Errorf("checkpoint: %s: "+format, append([]any{path}, args...)...)
	}
	if size < 8 {
		return fail("file has only %d bytes; a safetensors file starts with an 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := ra.ReadAt(lenBuf[:], 0); err != nil {
		return fail("reading header length: %v", err)
	}
	n := le.Uint64(lenBuf[:])
	if n > maxHeaderLen {
		if legacyTorchKind(lenBuf[:]) != "" || lenBuf[0] == 0x80 {
			return fail("header length %d is implausible (limit %d bytes); this looks like a pickle, not safetensors (an old-format torch.save file?)", n, maxHeaderLen)
		}
		return fail("header length %d is implausible (limit %d bytes): not a safetensors file, or a corrupt one", n, maxHeaderLen)
	}
	if n > uint64(size-8) {
		return fail("truncated: the header claims %d bytes but only %d follow the length field; the file may be incompletely downloaded", n, size-8)
	}
	if n < 2 {
		return fail("header length %d is too small for a JSON object", n)
	}
	hdr := make([]byte, n)
	if _, err := ra.ReadAt(hdr, 8); err != nil {
		return fail("reading header: %v", err)
	}
	if hdr[0] != '{' {
		return fail("header does not start with '{' (first byte %#02x): not a safetensors file", hdr[0])
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &raw); err != nil {
		return fail("header is not valid JSON: %v", err)
	}
	dataStart := 8 + int64(n)
	dataLen := uint64(size - dataStart)
	meta := map[string]string{}
	entries := make(map[string]*entry, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return fail("__metadata__ must be an object of string values: %v", err)
			}
			if meta == nil {
				meta = map[string]string{}
			}
			continue
		}
		var h stHeaderEntry
		dec := json.NewDecoder(bytes.NewReader(msg))
		if err := dec.Decode(&h); err != nil {
			return fail("tensor %q: bad header entry: %v", name, err)
		}
		if h.DType == nil || h.Shape == nil || h.Offsets == nil {
			return fail("tensor %q: header entry needs \"dtype\", \"shape\" and \"data_offsets\"", name)
		}
		dt := DType(*h.DType)
		if dt.Size() == 0 {
			return fail("tensor %q: unknown or unsupported dtype %q", name, *h.DType)
		}
		shape := *h.Shape
		numel, ok := numelOf(shape)
		if !ok {
			return fail("tensor %q: invalid shape %v (negative or absurdly large dimension)", name, shape)
		}
		off := *h.Offsets
		if len(off) != 2 {
			return fail("tensor %q: data_offsets must be [begin, end], got %d numbers", name, len(off))
		}
		begin, end := off[0], off[1]
		if begin > end {
			return fail("tensor %q: data_offsets [%d,%d) end before they begin", name, begin, end)
		}
		if end > dataLen {
			return fail("truncated: tensor %q needs bytes [%d,%d) but the data section has only %d bytes; the file may be incompletely downloaded", name, begin, end, dataLen)
		}
		if numel > math.MaxInt64/8 {
			return fail("tensor %q: shape %v is absurdly large", name, shape)
		}
		want := uint64(numel) * uint64(dt.Size())
		if end-begin != want {
			return fail("tensor %q: %s shape %v needs %d bytes but data_offsets [%d,%d) hold %d", name, dt, shape, want, begin, end, end-begin)
		}
		ishape := make([]int, len(shape))
		for i, d := range shape {
			ishape[i] = int(d)
		}
		entries[name] = &entry{
			info:  Info{Name: name, DType: dt, Shape: ishape},
			numel: numel,
			ra:    ra,
			base:  dataStart + int64(begin),
			shape: shape,
		}
	}
	return newTensorReader(path, nil, entries, meta), nil
}

// Tensor is one array to write. Exactly one data field is set, matching DType: F32 for F32, F16 and BF16 (half
// types are rounded to nearest even), F64 for F64, I64 for I64, I32, I16 and I8 (values must fit), U8 for U8 and
// BOOL (BOOL values must be 0 or 1). The data field holds the elements in row-major order and its length equals
// the product of Shape; a tensor without elements may leave every field nil.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	F32   []float32
	F64   []float64
	I64   []int64
	U8    []byte
}

// WriteSafetensors writes tensors and metadata to path as a safetensors file, atomically: the data go to a
// temporary file in the same directory, which is synced and then renamed over path. Tensors are stored sorted
// by name, the header is padded with spaces to a multiple of 8 bytes, and the "__metadata__" entry is written
// only when metadata is not empty.
func WriteSafetensors(path string, tensors []Tensor, metadata map[string]string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("checkpoint: %s: "+format, append([]any{path}, args...)...)
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fail("metadata entry %q is not valid UTF-8", k)
		}
	}
	ts := make([]*Tensor, len(tensors))
	seen := make(map[string]bool, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		if t.Name == "__metadata__" {
			return fail("a tensor cannot be named __metadata__")
		}
		if seen[t.Name] {
			return fail("two tensors are named %q", t.Name)
		}
		seen[t.Name] = true
		if err := checkTensor(t); err != nil {
			return fail("tensor %q: %v", t.Name, err)
		}
		ts[i] = t
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })

	// Header: __metadata__ first, then the tensors in file order.
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		hdr.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			writeJSONString(&hdr, k)
			hdr.WriteByte(':')
			writeJSONString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	offset := uint64(0)
	for i, t := range ts {
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		writeJSONString(&hdr, t.Name)
		hdr.WriteString(`:{"dtype":"`)
		hdr.WriteString(string(t.DType))
		hdr.WriteString(`","shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(strconv.Itoa(d))
		}
		nbytes := uint64(numel(t.Shape)) * uint64(t.DType.Size())
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, offset, offset+nbytes)
		offset += nbytes
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}

	err := atomicfile.Write(path, func(w *bufio.Writer) error {
		var lenBuf [8]byte
		le.PutUint64(lenBuf[:], uint64(hdr.Len()))
		w.Write(lenBuf[:])
		if _, err := w.Write(hdr.Bytes()); err != nil {
			return err
		}
		scratch := make([]byte, 0, 8*4096)
		for _, t := range ts {
			writeTensorData(w, t, scratch)
		}
		return nil // a write error stays in the buffered writer and surfaces at its flush
	})
	if err != nil {
		return fileErr(path, err)
	}
	return nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// checkTensor validates a tensor to be written.
func checkTensor(t *Tensor) error {
	if !utf8.ValidString(t.Name) {
		return errors.New("name is not valid UTF-8")
	}
	n := uint64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
	}
	for _, d := range t.Shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<50 {
			return fmt.Errorf("shape %v is too large", t.Shape)
		}
		n = lo
	}
	set := 0
	var have string
	var length int
	if t.F32 != nil {
		set++
		have, length = "F32", len(t.F32)
	}
	if t.F64 != nil {
		set++
		have, length = "F64", len(t.F64)
	}
	if t.I64 != nil {
		set++
		have, length = "I64", len(t.I64)
	}
	if t.U8 != nil {
		set++
		have, length = "U8", len(t.U8)
	}
	var want string
	switch t.DType {
	case F32, F16, BF16:
		want = "F32"
	case F64:
		want = "F64"
	case I64, I32, I16, I8:
		want = "I64"
	case U8, BOOL:
		want = "U8"
	default:
		return fmt.Errorf("cannot write dtype %q (writable: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", t.DType)
	}
	if set > 1 {
		return errors.New("more than one data field is set")
	}
	if set == 0 {
		if n == 0 {
			return nil
		}
		return fmt.Errorf("no data: dtype %s is written from the %s field", t.DType, want)
	}
	if have != want {
		return fmt.Errorf("dtype %s is written from the %s field, but %s is set", t.DType, want, have)
	}
	if uint64(length) != n {
		return fmt.Errorf("shape %v has %d elements but the %s field holds %d", t.Shape, n, have, length)
	}
	var lo, hi int64
	switch t.DType {
	case I32:
		lo, hi = math.MinInt32, math.MaxInt32
	case I16:
		lo, hi = math.MinInt16, math.MaxInt16
	case I8:
		lo, hi = math.MinInt8, math.MaxInt8
	}
	if lo != hi {
		for i, v := range t.I64 {
			if v < lo || v > hi {
				return fmt.Errorf("element %d = %d does not fit %s", i, v, t.DType)
			}
		}
	}
	if t.DType == BOOL {
		for i, v := range t.U8 {
			if v > 1 {
				return fmt.Errorf("element %d = %d is not a boolean (0 or 1)", i, v)
			}
		}
	}
	return nil
}

// writeTensorData encodes t's elements little-endian through scratch (capacity a multiple of 8).
func writeTensorData(w *bufio.Writer, t *Tensor, scratch []byte) {
	size := t.DType.Size()
	per := cap(scratch) / size
	var n int
	switch {
	case t.F32 != nil:
		n = len(t.F32)
	case t.F64 != nil:
		n = len(t.F64)
	case t.I64 != nil:
		n = len(t.I64)
	case t.U8 != nil:
		w.Write(t.U8)
		return
	}
	for first := 0; first < n; first += per {
		k := min(per, n-first)
		b := scratch[:k*size]
		switch t.DType {
		case F32:
			for i, v := range t.F32[first : first+k] {
				le.PutUint32(b[4*i:], math.Float32bits(v))
			}
		case F16:
			for i, v := range t.F32[first : first+k] {
				le.PutUint16(b[2*i:], Float32ToFloat16(v))
			}
		case BF16:
			for i, v := range t.F32[first : first+k] {
				le.PutUint16(b[2*i:], Float32ToBFloat16(v))
			}
		case F64:
			for i, v := range t.F64[first : first+k] {
				le.PutUint64(b[8*i:], math.Float64bits(v))
			}
		case I64:
			for i, v := range t.I64[first : first+k] {
				le.PutUint64(b[8*i:], uint64(v))
			}
		case I32:
			for i, v := range t.I64[first : first+k] {
				le.PutUint32(b[4*i:], uint32(v))
			}
		case I16:
			for i, v := range t.I64[first : first+k] {
				le.PutUint16(b[2*i:], uint16(v))
			}
		case I8:
			for i, v := range t.I64[first : first+k] {
				b[i] = byte(v)
			}
		}
		w.Write(b)
	}
}

// writeJSONString writes s as a JSON string literal.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode appends a newline
}
