package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// allDTypeTensors returns one tensor of every writable dtype, with edge values.
func allDTypeTensors() []Tensor {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	floats := []float32{0, float32(math.Copysign(0, -1)), 1, -2.5, 1.0 / 3, 65504, 65520, 1e-7, 6e-8, 1e-30, inf, -inf, nan, 3.4e38}
	return []Tensor{
		{Name: "f32", DType: F32, Shape: []int{2, 7}, F32: floats},
		{Name: "f16", DType: F16, Shape: []int{14}, F32: floats},
		{Name: "bf16", DType: BF16, Shape: []int{7, 2}, F32: floats},
		{Name: "f64", DType: F64, Shape: []int{2, 2}, F64: []float64{1.0 / 3, -1e300, math.Inf(-1), math.SmallestNonzeroFloat64}},
		{Name: "i64", DType: I64, Shape: []int{3}, I64: []int64{math.MinInt64, math.MaxInt64, -1}},
		{Name: "i32", DType: I32, Shape: []int{3}, I64: []int64{math.MinInt32, math.MaxInt32, -1}},
		{Name: "i16", DType: I16, Shape: []int{3}, I64: []int64{math.MinInt16, math.MaxInt16, -1}},
		{Name: "i8", DType: I8, Shape: []int{3}, I64: []int64{math.MinInt8, math.MaxInt8, -1}},
		{Name: "u8", DType: U8, Shape: []int{3}, U8: []byte{0, 255, 7}},
		{Name: "bool", DType: BOOL, Shape: []int{1, 3}, U8: []byte{1, 0, 1}},
		{Name: "scalar", DType: F32, Shape: []int{}, F32: []float32{42}},
		{Name: "empty", DType: F32, Shape: []int{0, 5}},
		{Name: "a/weird \"name\" é", DType: F64, Shape: []int{1}, F64: []float64{7}},
	}
}

// expectF64 is what reading t back as float64 must give (half types rounded as the writer does).
func expectF64(t Tensor) []float64 {
	var out []float64
	switch {
	case t.F32 != nil:
		for _, v := range t.F32 {
			switch t.DType {
			case F16:
				v = Float16ToFloat32(Float32ToFloat16(v))
			case BF16:
				v = BFloat16ToFloat32(Float32ToBFloat16(v))
			}
			out = append(out, float64(v))
		}
	case t.F64 != nil:
		out = t.F64
	case t.I64 != nil:
		for _, v := range t.I64 {
			out = append(out, float64(v))
		}
	case t.U8 != nil:
		for _, v := range t.U8 {
			out = append(out, float64(v))
		}
	}
	return out
}

func sameFloat(a, b float64) bool {
	return a == b && math.Signbit(a) == math.Signbit(b) || math.IsNaN(a) && math.IsNaN(b)
}

func TestSafetensorsRoundTrip(t *testing.T) {
	tensors := allDTypeTensors()
	metas := []map[string]string{nil, {}, {"format": "pt", "note": "quotes \" and \\ and é and <html>", "": "empty key"}}
	for mi, meta := range metas {
		t.Run(fmt.Sprintf("meta%d", mi), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := WriteSafetensors(path, tensors, meta); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := r.Metadata()
			if len(meta) == 0 && len(got) != 0 || len(meta) > 0 && !reflect.DeepEqual(got, meta) {
				t.Fatalf("metadata %v, want %v", got, meta)
			}
			var want []string
			for _, ts := range tensors {
				want = append(want, ts.Name)
			}
			sort.Strings(want)
			if !reflect.DeepEqual(r.Names(), want) {
				t.Fatalf("names %q, want %q", r.Names(), want)
			}
			for _, ts := range tensors {
				info, ok := r.Info(ts.Name)
				if !ok || info.DType != ts.DType || !reflect.DeepEqual(info.Shape, ts.Shape) || info.Name != ts.Name {
					t.Fatalf("%s: info %+v", ts.Name, info)
				}
				exp := expectF64(ts)
				f64, err := r.Float64(ts.Name)
				if err != nil {
					t.Fatal(err)
				}
				f32, err := r.Float32(ts.Name)
				if err != nil {
					t.Fatal(err)
				}
				if len(f64) != info.Numel() || len(f32) != info.Numel() || len(exp) != info.Numel() {
					t.Fatalf("%s: lengths %d %d %d, numel %d", ts.Name, len(f64), len(f32), len(exp), info.Numel())
				}
				for i := range exp {
					if !sameFloat(f64[i], exp[i]) || !sameFloat(float64(f32[i]), float64(float32(exp[i]))) {
						t.Fatalf("%s[%d]: got %v / %v, want %v", ts.Name, i, f64[i], f32[i], exp[i])
					}
				}
				if ts.DType == F32 && ts.F32 != nil {
					for i, v := range f32 { // bit-exact, NaN payload included
						if math.Float32bits(v) != math.Float32bits(ts.F32[i]) {
							t.Fatalf("%s[%d] bits differ", ts.Name, i)
						}
					}
				}
				i64, err := r.Int64(ts.Name)
				if ts.DType.IsFloat() {
					checkErrPrefix(t, err, path)
				} else if err != nil {
					t.Fatal(err)
				} else if ts.I64 != nil && !reflect.DeepEqual(i64, ts.I64) {
					t.Fatalf("%s: Int64 %v, want %v", ts.Name, i64, ts.I64)
				}
			}
			if _, ok := r.Info("missing"); ok {
				t.Fatal("Info of a missing tensor")
			}
			if _, err := r.Float32("missing"); err == nil {
				t.Fatal("Float32 of a missing tensor")
			}
		})
	}
}

// TestSafetensorsLayout checks the byte layout: 8-byte aligned header, tensors in name order, contiguous data,
// __metadata__ first, nothing else in the directory once the atomic write is done.
func TestSafetensorsLayout(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	ts := []Tensor{
		{Name: "b", DType: F16, Shape: []int{3}, F32: []float32{1, 2, 3}},
		{Name: "a", DType: F32, Shape: []int{2}, F32: []float32{1, 2}},
	}
	if err := WriteSafetensors(path, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	// Overwrite: must replace the file.
	if err := WriteSafetensors(path, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(data)
	if n%8 != 0 {
		t.Fatalf("header length %d not a multiple of 8", n)
	}
	hdr := string(data[8 : 8+n])
	want := `{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[3],"data_offsets":[8,14]}}`
	if strings.TrimRight(hdr, " ") != want {
		t.Fatalf("header\n%s\nwant\n%s", hdr, want)
	}
	if uint64(len(data)) != 8+n+14 {
		t.Fatalf("file is %d bytes, want %d", len(data), 8+n+14)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the output", len(entries))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestWriteSafetensorsErrors(t *testing.T) {
	cases := []struct {
		name string
		ts   []Tensor
		meta map[string]string
	}{
		{"wrong field", []Tensor{{Name: "x", DType: F32, Shape: []int{1}, F64: []float64{1}}}, nil},
		{"two fields", []Tensor{{Name: "x", DType: F32, Shape: []int{1}, F32: []float32{1}, F64: []float64{1}}}, nil},
		{"no data", []Tensor{{Name: "x", DType: F32, Shape: []int{1}}}, nil},
		{"length", []Tensor{{Name: "x", DType: F32, Shape: []int{2, 2}, F32: []float32{1, 2, 3}}}, nil},
		{"negative dim", []Tensor{{Name: "x", DType: F32, Shape: []int{-1}, F32: []float32{}}}, nil},
		{"huge", []Tensor{{Name: "x", DType: F32, Shape: []int{1 << 40, 1 << 40}, F32: []float32{}}}, nil},
		{"unknown dtype", []Tensor{{Name: "x", DType: "F8_E4M3", Shape: []int{1}, U8: []byte{1}}}, nil},
		{"u16 not writable", []Tensor{{Name: "x", DType: U16, Shape: []int{1}, I64: []int64{1}}}, nil},
		{"duplicate", []Tensor{{Name: "x", DType: U8, Shape: []int{1}, U8: []byte{1}}, {Name: "x", DType: U8, Shape: []int{1}, U8: []byte{1}}}, nil},
		{"metadata name", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{1}, U8: []byte{1}}}, nil},
		{"i8 range", []Tensor{{Name: "x", DType: I8, Shape: []int{1}, I64: []int64{128}}}, nil},
		{"i32 range", []Tensor{{Name: "x", DType: I32, Shape: []int{1}, I64: []int64{-1<<31 - 1}}}, nil},
		{"bool value", []Tensor{{Name: "x", DType: BOOL, Shape: []int{1}, U8: []byte{2}}}, nil},
		{"bad utf8 name", []Tensor{{Name: "\xff", DType: U8, Shape: []int{1}, U8: []byte{1}}}, nil},
		{"bad utf8 metadata", nil, map[string]string{"k": "\xfe"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.safetensors")
			checkErrPrefix(t, WriteSafetensors(path, c.ts, c.meta), path)
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("left %d files behind", len(entries))
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "no", "such", "dir.safetensors")
	checkErrPrefix(t, WriteSafetensors(bad, nil, nil), bad)
}

// validSafetensors returns the bytes of a small valid file with several dtypes.
func validSafetensors(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.safetensors")
	ts := []Tensor{
		{Name: "w", DType: F16, Shape: []int{2, 3}, F32: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "b", DType: F32, Shape: []int{3}, F32: []float32{-1, 0, 1}},
		{Name: "n", DType: I64, Shape: []int{}, I64: []int64{9}},
	}
	if err := WriteSafetensors(path, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readAllTensors reads every tensor in every representation; it is what fuzzing and corruption tests run.
func readAllTensors(r Reader) error {
	var first error
	for _, n := range r.Names() {
		info, ok := r.Info(n)
		if !ok {
			return fmt.Errorf("Info(%q) missing", n)
		}
		if info.Numel() > 1<<20 {
			continue
		}
		if _, err := r.Float32(n); err != nil && first == nil {
			first = err
		}
		if _, err := r.Float64(n); err != nil && first == nil {
			first = err
		}
		r.Int64(n)
	}
	r.Metadata()
	return first
}

func TestSafetensorsTruncated(t *testing.T) {
	data := validSafetensors(t)
	dir := t.TempDir()
	for n := 0; n < len(data); n++ {
		path := filepath.Join(dir, fmt.Sprintf("t%d.safetensors", n))
		if err := os.WriteFile(path, data[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := OpenSafetensors(path)
		if err == nil {
			r.Close()
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(data))
		}
		checkErrPrefix(t, err, path)
		if n == len(data)-1 && !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("error for a file one byte short does not say truncated: %v", err)
		}
	}
}

func TestSafetensorsCorrupt(t *testing.T) {
	valid := validSafetensors(t)
	hdrLen := int(binary.LittleEndian.Uint64(valid))
	withHeader := func(h string) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, uint64(len(h)))
		b.WriteString(h)
		b.Write(make([]byte, 16))
		return b.Bytes()
	}
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"empty file", "8-byte", nil},
		{"huge header length", "implausible", append([]byte{0, 0, 0, 0, 0, 0, 0, 0x7f}, valid[8:]...)},
		{"header beyond file", "truncated", append(binary.LittleEndian.AppendUint64(nil, uint64(len(valid))), valid[8:]...)},
		{"pickle", "pickle", []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")},
		{"not json", "JSON", withHeader("{nope}")},
		{"not an object", "'{'", withHeader(`["a"]`)},
		{"tiny header", "too small", withHeader(`{`)},
		{"entry not object", "bad header entry", withHeader(`{"x":5}`)},
		{"missing offsets", "data_offsets", withHeader(`{"x":{"dtype":"F32","shape":[1]}}`)},
		{"missing shape", "shape", withHeader(`{"x":{"dtype":"F32","data_offsets":[0,4]}}`)},
		{"unknown dtype", "unknown", withHeader(`{"x":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}`)},
		{"negative dim", "invalid shape", withHeader(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`)},
		{"fractional dim", "bad header entry", withHeader(`{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`)},
		{"overflowing shape", "invalid shape", withHeader(`{"x":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}}`)},
		{"absurd shape", "absurdly large", withHeader(`{"x":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}`)},
		{"three offsets", "[begin, end]", withHeader(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`)},
		{"reversed offsets", "before they begin", withHeader(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`)},
		{"negative offset", "bad header entry", withHeader(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`)},
		{"offset past data", "truncated", withHeader(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}}`)},
		{"huge offset", "truncated", withHeader(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}`)},
		{"size mismatch", "needs 8 bytes", withHeader(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`)},
		{"bad metadata", "__metadata__", withHeader(`{"__metadata__":{"a":1}}`)},
		{"dtype not string", "bad header entry", withHeader(`{"x":{"dtype":3,"shape":[1],"data_offsets":[0,4]}}`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "c.safetensors", c.data)
			r, err := OpenSafetensors(path)
			if err == nil {
				r.Close()
			}
			checkErrPrefix(t, err, path)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
	// Flip every header byte (and the length field) in turn: errors or a readable file, never a panic.
	t.Run("flipped bytes", func(t *testing.T) {
		for i := 0; i < 8+hdrLen; i++ {
			for _, mask := range []byte{0xff, 0x01, 0x20} {
				d := append([]byte(nil), valid...)
				d[i] ^= mask
				r, err := openSafetensors("mem", bytes.NewReader(d), int64(len(d)))
				if err != nil {
					checkErrPrefix(t, err, "mem")
					continue
				}
				readAllTensors(r)
			}
		}
	})
	t.Run("accepts header padding", func(t *testing.T) {
		path := writeTemp(t, "p.safetensors", withHeader(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   `))
		r, err := OpenSafetensors(path)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	})
}

// TestRefVectorsSafetensors reads every safetensors file in the reference vectors completely and rewrites it:
// files whose tensors are stored in name order (the layout WriteSafetensors produces) must come out byte-identical.
func TestRefVectorsSafetensors(t *testing.T) {
	dir := refVectorsDir(t)
	if dir == "" {
		t.Skip("reference vectors not found (set EGG_REFVECTORS)")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.safetensors"))
	if len(files) == 0 {
		t.Skipf("no safetensors files under %s", dir)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		t.Run(rel, func(t *testing.T) {
			r, err := Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var ts []Tensor
			for _, n := range r.Names() {
				info, _ := r.Info(n)
				tt := Tensor{Name: n, DType: info.DType, Shape: info.Shape}
				switch info.DType {
				case F32, F16, BF16:
					tt.F32, err = r.Float32(n)
				case F64:
					tt.F64, err = r.Float64(n)
				case U8, BOOL:
					var v []int64
					v, err = r.Int64(n)
					tt.U8 = make([]byte, len(v))
					for i, x := range v {
						tt.U8[i] = byte(x)
					}
				default:
					tt.I64, err = r.Int64(n)
				}
				if err != nil {
					t.Fatal(err)
				}
				ts = append(ts, tt)
			}
			orig, _ := os.ReadFile(f)
			out := filepath.Join(t.TempDir(), "copy.safetensors")
			if err := WriteSafetensors(out, ts, r.Metadata()); err != nil {
				t.Fatal(err)
			}
			copied, _ := os.ReadFile(out)
			if bytes.Equal(orig, copied) {
				return
			}
			if nameOrdered(t, orig) {
				t.Fatalf("rewritten file differs from the original (%d vs %d bytes)", len(copied), len(orig))
			}
			t.Logf("original is not stored in name order; compared values only")
		})
	}
}

// nameOrdered reports whether a safetensors file stores its tensors in name order, header compact as ours.
func nameOrdered(t *testing.T, data []byte) bool {
	n := binary.LittleEndian.Uint64(data)
	var h map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	type ent struct {
		Offsets []uint64 `json:"data_offsets"`
	}
	var names []string
	for k := range h {
		if k != "__metadata__" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var pos uint64
	for _, k := range names {
		var e ent
		json.Unmarshal(h[k], &e)
		if e.Offsets[0] != pos {
			return false
		}
		pos = e.Offsets[1]
	}
	return true
}
