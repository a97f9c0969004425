package npy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	cases := []*Array{
		Float32s([]float32{1, -2.5, 3}, 3),
		{DType: "<f8", Shape: []int{2, 2}, F64: []float64{1, 2, 3, 4.25}},
		{DType: "|u1", Shape: []int{2, 3}, I64: []int64{0, 1, 2, 253, 254, 255}},
		{Shape: []int{2}, I64: []int64{-5, 1 << 40}},
		{Shape: []int{3}, Bool: []bool{true, false, true}},
		{Shape: []int{3}, Str: []string{"train", "test", "validation"}},
		{Shape: []int{}, F64: []float64{7}},
	}
	for _, a := range cases {
		b, err := EncodeBytes(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Shape) != len(a.Shape) || got.Len() != a.Len() {
			t.Fatalf("shape %v, want %v", got.Shape, a.Shape)
		}
		for i := range a.Str {
			if got.Str[i] != a.Str[i] {
				t.Fatalf("str %v", got.Str)
			}
		}
		for i := range a.I64 {
			if got.I64[i] != a.I64[i] {
				t.Fatalf("int %v", got.I64)
			}
		}
		for i := range a.F64 {
			if got.F64[i] != a.F64[i] {
				t.Fatalf("float %v", got.F64)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	good, _ := EncodeBytes(Float32s([]float32{1, 2, 3, 4}, 4))
	for n := 0; n < len(good); n += 7 {
		if _, err := Decode(bytes.NewReader(good[:n])); err == nil {
			t.Fatalf("truncated at %d: no error", n)
		}
	}
	obj := bytes.Replace(good, []byte("<f4"), []byte("|O8"), 1)
	if _, err := Decode(bytes.NewReader(obj)); err == nil {
		t.Fatal("object array accepted")
	}
}

// TestNumPy reads files written by NumPy itself, when python3 with numpy is present.
func TestNumPy(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	dir := t.TempDir()
	script := `import numpy as np, sys
d = sys.argv[1]
np.savez_compressed(d + '/a.npz', x=np.arange(6, dtype=np.float32).reshape(2, 3), f=np.asfortranarray(np.arange(6, dtype='>i4').reshape(2, 3)), s=np.array(['train', 'test']), m=np.array([True, False]), h=np.array([0.5, -2], dtype=np.float16))`
	if out, err := exec.Command(py, "-c", script, dir).CombinedOutput(); err != nil {
		t.Skipf("numpy unavailable: %s", out)
	}
	arrs, err := ReadNPZ(filepath.Join(dir, "a.npz"))
	if err != nil {
		t.Fatal(err)
	}
	if x := arrs["x"]; x.F64[5] != 5 || x.Shape[1] != 3 {
		t.Fatalf("x %v %v", x.Shape, x.F64)
	}
	if f := arrs["f"]; f.I64[1] != 1 || f.I64[3] != 3 {
		t.Fatalf("fortran order %v", f.I64)
	}
	if s := arrs["s"]; s.Str[0] != "train" || s.Str[1] != "test" {
		t.Fatalf("strings %v", s.Str)
	}
	if m := arrs["m"]; !m.Bool[0] || m.Bool[1] {
		t.Fatalf("bools %v", m.Bool)
	}
	if h := arrs["h"]; h.F64[0] != 0.5 || h.F64[1] != -2 {
		t.Fatalf("halves %v", h.F64)
	}
	// And NumPy reads what we write.
	b, _ := EncodeNPZ(map[string]*Array{"y": Float32s([]float32{1, 2}, 2), "t": {Shape: []int{1}, Str: []string{"validation"}}})
	p := filepath.Join(dir, "b.npz")
	os.WriteFile(p, b, 0o644)
	if out, err := exec.Command(py, "-c", `import numpy as np, sys; z = np.load(sys.argv[1]); assert z['y'].tolist() == [1, 2] and z['t'][0] == 'validation'`, p).CombinedOutput(); err != nil {
		t.Fatalf("numpy cannot read our npz: %s", out)
	}
}

// TestDecodeUint8: bytes come back unwidened; a wrong dtype, Fortran order, a
// shape whose product overflows and a stream shorter than its header are errors,
// and a header declaring far more than the stream holds costs no such allocation.
func TestDecodeUint8(t *testing.T) {
	stream := func(header string, data []byte) []byte {
		h := header
		for (10+len(h)+1)%64 != 0 {
			h += " "
		}
		h += "\n"
		b := []byte("\x93NUMPY\x01\x00")
		b = append(b, byte(len(h)), byte(len(h)>>8))
		return append(append(b, h...), data...)
	}
	for _, c := range []struct {
		name  string
		in    []byte
		shape []int
		err   string
	}{
		{"ok", stream("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", []byte{0, 1, 2, 253, 254, 255}), []int{2, 3}, ""},
		{"float", stream("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", []byte{0, 0, 0, 0}), nil, "want uint8"},
		{"fortran", stream("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }", make([]byte, 6)), nil, "Fortran"},
		{"overflow", stream("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", nil), nil, "more than"},
		{"truncated", stream("{'descr': '|u1', 'fortran_order': False, 'shape': (2000000000,), }", []byte{1, 2, 3}), nil, "truncated: 3 of 2000000000"},
		{"no magic", []byte("PK\x03\x04 not npy"), nil, "bad magic"},
	} {
		t.Run(c.name, func(t *testing.T) {
			shape, data, err := DecodeUint8(bytes.NewReader(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(shape, c.shape) || !bytes.Equal(data, []byte{0, 1, 2, 253, 254, 255}) {
				t.Errorf("shape %v data %v", shape, data)
			}
		})
	}
}
