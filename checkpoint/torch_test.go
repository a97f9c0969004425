package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The two golden files in testdata were written by torch 1.13 (Debian python3-torch) with torch.save:
//
// testdata/torch_checkpoint.pt, a training checkpoint whose state_dict must be picked by OpenTorch's rule:
//
//	m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))   # then, under no_grad:
//	m[0].weight = arange(6.).reshape(2, 3) * 0.25 - 0.5; m[0].bias = [1.5, -2.0]; m[1].weight = [1., 2.]
//	m[1].bias = [0.5, 0.25]; m[1].running_mean = [0.1, 0.2]; m[1].running_var = [1., 3.]; num_batches_tracked = 42
//	torch.save({"epoch": 7, "state_dict": m.state_dict(), "args": argparse.Namespace(lr=0.1, name="run"),
//	            "np": np.float64(1.5), "optimizer": {"state": {0: {"step": tensor(3.), "exp_avg": full((2, 3), 0.125)}},
//	            "param_groups": [{"lr": 0.001, "params": [0]}]}, "set": {1, 2}}, "torch_checkpoint.pt")
//
// testdata/torch_dtypes.pt, every dtype and several kinds of views (no preferred key, so all is flattened):
//
//	w = tensor([0.25, 0.75]); qkv = arange(6.).reshape(3, 2)
//	torch.save({"bf": arange(12, dtype=bfloat16).reshape(3, 4).t(),
//	  "h": (arange(20, dtype=float16) / 4)[5:15].reshape(2, 5),
//	  "f16special": tensor([inf, -inf, nan, 6.0e-8, 65504., -0.0], dtype=float16),
//	  "f64": tensor([1/3, -2.5], dtype=float64), "i8": tensor([-128, 127], dtype=int8),
//	  "i16": tensor([-32768, 7], dtype=int16), "i32": tensor([-2**31, 5], dtype=int32),
//	  "u8": tensor([0, 255], dtype=uint8), "b": tensor([True, False, True]),
//	  "expanded": tensor([1., 2.]).expand(3, 2), "param": nn.Parameter(tensor([0.5, -0.5])),
//	  "nested": {"x": tensor([9.]), "deeper": {"y": tensor([[1, 2], [3, 4]])}},
//	  "tied_a": w, "tied_b": w, "q": qkv[0], "k": qkv[1], "v": qkv[2], "scalar": tensor(3.5),
//	  "empty": zeros(0, 3), "list": [tensor([1.]), tensor([2.])], "note": "hello", "count": 3}, "torch_dtypes.pt")

type wantTensor struct {
	name  string
	dtype DType
	shape []int
	vals  []float64
}

var goldenCheckpoint = []wantTensor{
	{"0.bias", F32, []int{2}, []float64{1.5, -2}},
	{"0.weight", F32, []int{2, 3}, []float64{-0.5, -0.25, 0, 0.25, 0.5, 0.75}},
	{"1.bias", F32, []int{2}, []float64{0.5, 0.25}},
	{"1.num_batches_tracked", I64, []int{}, []float64{42}},
	{"1.running_mean", F32, []int{2}, []float64{float64(float32(0.1)), float64(float32(0.2))}},
	{"1.running_var", F32, []int{2}, []float64{1, 3}},
	{"1.weight", F32, []int{2}, []float64{1, 2}},
}

func seq(start, n int, scale float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(start+i) * scale
	}
	return out
}

var goldenDTypes = []wantTensor{
	{"b", BOOL, []int{3}, []float64{1, 0, 1}},
	{"bf", BF16, []int{4, 3}, []float64{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}},
	{"empty", F32, []int{0, 3}, []float64{}},
	{"expanded", F32, []int{3, 2}, []float64{1, 2, 1, 2, 1, 2}},
	{"f16special", F16, []int{6}, []float64{math.Inf(1), math.Inf(-1), math.NaN(), f16Value(1), 65504, math.Copysign(0, -1)}},
	{"f64", F64, []int{2}, []float64{1.0 / 3, -2.5}},
	{"h", F16, []int{2, 5}, seq(5, 10, 0.25)},
	{"i16", I16, []int{2}, []float64{-32768, 7}},
	{"i32", I32, []int{2}, []float64{-1 << 31, 5}},
	{"i8", I8, []int{2}, []float64{-128, 127}},
	{"k", F32, []int{2}, []float64{2, 3}},
	{"list.0", F32, []int{1}, []float64{1}},
	{"list.1", F32, []int{1}, []float64{2}},
	{"nested.deeper.y", I64, []int{2, 2}, []float64{1, 2, 3, 4}},
	{"nested.x", F32, []int{1}, []float64{9}},
	{"param", F32, []int{2}, []float64{0.5, -0.5}},
	{"q", F32, []int{2}, []float64{0, 1}},
	{"scalar", F32, []int{}, []float64{3.5}},
	{"tied_a", F32, []int{2}, []float64{0.25, 0.75}},
	{"tied_b", F32, []int{2}, []float64{0.25, 0.75}},
	{"u8", U8, []int{2}, []float64{0, 255}},
	{"v", F32, []int{2}, []float64{4, 5}},
}

// checkTensors compares a reader with a table, via Float64, Float32 and (for integer types) Int64.
func checkTensors(t *testing.T, r Reader, want []wantTensor) {
	t.Helper()
	var names []string
	for _, w := range want {
		names = append(names, w.name)
	}
	if !reflect.DeepEqual(r.Names(), names) {
		t.Fatalf("names\n%q\nwant\n%q", r.Names(), names)
	}
	for _, w := range want {
		info, ok := r.Info(w.name)
		if !ok || info.DType != w.dtype || !reflect.DeepEqual(info.Shape, w.shape) {
			t.Fatalf("%s: info %+v, want %s %v", w.name, info, w.dtype, w.shape)
		}
		f64, err := r.Float64(w.name)
		if err != nil {
			t.Fatal(err)
		}
		f32, err := r.Float32(w.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(f64) != len(w.vals) || len(f32) != len(w.vals) {
			t.Fatalf("%s: %d/%d values, want %d", w.name, len(f64), len(f32), len(w.vals))
		}
		for i, v := range w.vals {
			if !sameFloat(f64[i], v) || !sameFloat(float64(f32[i]), float64(float32(v))) {
				t.Fatalf("%s[%d] = %v / %v, want %v", w.name, i, f64[i], f32[i], v)
			}
		}
		if !w.dtype.IsFloat() {
			i64, err := r.Int64(w.name)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range w.vals {
				if float64(i64[i]) != v {
					t.Fatalf("%s: Int64[%d] = %d, want %v", w.name, i, i64[i], v)
				}
			}
		}
	}
	if len(r.Metadata()) != 0 {
		t.Fatalf("torch checkpoints have no metadata, got %v", r.Metadata())
	}
}

func TestTorchGolden(t *testing.T) {
	for _, c := range []struct {
		file string
		want []wantTensor
	}{
		{"testdata/torch_checkpoint.pt", goldenCheckpoint},
		{"testdata/torch_dtypes.pt", goldenDTypes},
	} {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			for _, open := range []func(string) (Reader, error){Open, OpenTorch} {
				r, err := open(c.file)
				if err != nil {
					t.Fatal(err)
				}
				checkTensors(t, r, c.want)
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// The same archive with deflated entries (the fallback path) reads the same.
			data, err := os.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			r, err := OpenTorch(writeTemp(t, "deflated.pt", rezip(t, data, zip.Deflate)))
			if err != nil {
				t.Fatal(err)
			}
			checkTensors(t, r, c.want)
			r.Close()
		})
	}
	// OpenTorchFlat exposes the whole checkpoint, optimizer state included.
	r, err := OpenTorchFlat("testdata/torch_checkpoint.pt")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := []string{"optimizer.state.0.exp_avg", "optimizer.state.0.step"}
	for _, w := range goldenCheckpoint {
		want = append(want, "state_dict."+w.name)
	}
	sort.Strings(want)
	if !reflect.DeepEqual(r.Names(), want) {
		t.Fatalf("flat names %q, want %q", r.Names(), want)
	}
	if v, err := r.Float32("optimizer.state.0.exp_avg"); err != nil || len(v) != 6 || v[5] != 0.125 {
		t.Fatalf("exp_avg %v %v", v, err)
	}
	if _, err := r.Int64("optimizer.state.0.step"); err == nil {
		t.Fatal("Int64 of a float tensor succeeded")
	}
}

// TestTorchExposureRule checks which tensors OpenTorch exposes for various checkpoint layouts.
func TestTorchExposureRule(t *testing.T) {
	ten := func(key string) tspec {
		return tspec{storage: "FloatStorage", key: key, numel: 2, size: []int{2}, stride: []int{1}}
	}
	storages := map[string][]byte{"0": f32Bytes(1, 2), "1": f32Bytes(3, 4)}
	ns := opaque{"argparse", "Namespace", odict{{"lr", 0.1}, {"t", ten("1")}}}
	cases := []struct {
		name string
		root any
		want []string // nil: an error is expected, containing errWant
		err  string
	}{
		{"flat state dict", odict{{"conv.weight", ten("0")}, {"conv.bias", ten("1")}}, []string{"conv.bias", "conv.weight"}, ""},
		{"training checkpoint", odict{{"epoch", 3}, {"state_dict", odict{{"w", ten("0")}}}, {"optimizer", odict{{"m", ten("1")}}}, {"args", ns}}, []string{"w"}, ""},
		{"model_state_dict", odict{{"model_state_dict", odict{{"w", ten("0")}}}, {"best", 0.5}}, []string{"w"}, ""},
		{"model and ema", odict{{"model", odict{{"w", ten("0")}}}, {"ema", odict{{"w", ten("1")}}}}, []string{"w"}, ""},
		{"net", odict{{"net", odict{{"w", ten("0")}}}, {"note", "x"}}, []string{"w"}, ""},
		{"two preferred keys", odict{{"model", odict{{"w", ten("0")}}}, {"state_dict", odict{{"w", ten("1")}}}}, []string{"model.w", "state_dict.w"}, ""},
		{"preferred key without direct tensors", odict{{"state_dict", odict{{"sub", odict{{"w", ten("0")}}}}}}, []string{"state_dict.sub.w"}, ""},
		{"preferred key not a dict", odict{{"model", ten("0")}, {"x", ten("1")}}, []string{"model", "x"}, ""},
		{"opaque objects ignored", odict{{"args", ns}, {"w", ten("0")}}, []string{"w"}, ""},
		{"numpy and unknown calls ignored", odict{{"np", call{"numpy.core.multiarray", "scalar", []any{"f8", "x"}}}, {"os", call{"os", "system", []any{"rm -rf /"}}}, {"w", ten("0")}}, []string{"w"}, ""},
		{"unsupported tensor outside the state dict", odict{{"state_dict", odict{{"w", ten("0")}}}, {"opt", call{"torch._utils", "_rebuild_sparse_tensor", nil}}}, []string{"w"}, ""},
		{"parameter", odict{{"p", call{"torch._utils", "_rebuild_parameter", []any{ten("0"), 1, odict{}}}}}, []string{"p"}, ""},
		{"list root", []any{ten("0"), odict{{"a", ten("1")}}, "x"}, []string{"0", "1.a"}, ""},
		{"tensor root", ten("0"), []string{""}, ""},
		{"int keys", odict{{0, ten("0")}, {1, odict{{"x", ten("1")}}}}, []string{"0", "1.x"}, ""},
		{"empty dict", odict{}, []string{}, ""},
		{"duplicate names", odict{{"a.b", ten("0")}, {"a", odict{{"b", ten("1")}}}}, nil, "two tensors would both be named \"a.b\""},
		{"string root", "hello", nil, "holds a str"},
		{"object root", ns, nil, "argparse.Namespace object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "x.pt", torchZip(t, "archive", pickleOf(c.root), storages, zip.Store, "little"))
			r, err := Open(path)
			if c.want == nil {
				checkErrPrefix(t, err, path)
				if !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %q does not contain %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := r.Names(); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("names %q, want %q", got, c.want)
			}
			if err := readAllTensors(r); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTorchViews checks strided reads, including views larger than the conversion buffer, big-endian archives
// and compressed storages.
func TestTorchViews(t *testing.T) {
	const rows, cols = 600, 700 // 420000 elements: several chunks for every element size
	base := make([]float32, rows*cols+3)
	for i := range base {
		base[i] = float32(i)
	}
	transposed := func(i, j int) float32 { return base[3+j*rows+i] } // logical [cols... see below]
	root := odict{
		// A (cols, rows) transposed view of a (rows, cols)... stored column-major with offset 3.
		{"t", tspec{storage: "FloatStorage", key: "0", numel: len(base), offset: 3, size: []int{rows, cols}, stride: []int{1, rows}}},
		{"c", tspec{storage: "FloatStorage", key: "0", numel: len(base), offset: 3, size: []int{rows, cols}, stride: []int{cols, 1}}},
		{"h", tspec{storage: "HalfStorage", key: "1", numel: 4, offset: 1, size: []int{2, 1, 2}, stride: []int{1, 5, 1}}},
		{"row", tspec{storage: "FloatStorage", key: "0", numel: len(base), offset: 5, size: []int{1, 4}, stride: []int{99, 2}}},
	}
	half := []uint16{Float32ToFloat16(1), Float32ToFloat16(2), Float32ToFloat16(3), Float32ToFloat16(4)}
	for _, bo := range []string{"", "little", "big"} {
		for _, method := range []uint16{zip.Store, zip.Deflate} {
			order := binary.ByteOrder(binary.LittleEndian)
			if bo == "big" {
				order = binary.BigEndian
			}
			fb := make([]byte, 4*len(base))
			for i, v := range base {
				order.PutUint32(fb[4*i:], math.Float32bits(v))
			}
			hb := make([]byte, 8)
			for i, v := range half {
				order.PutUint16(hb[2*i:], v)
			}
			path := writeTemp(t, "v.pt", torchZip(t, "v", pickleOf(root), map[string][]byte{"0": fb, "1": hb}, method, bo))
			r, err := OpenTorch(path)
			if err != nil {
				t.Fatal(err)
			}
			tv, err := r.Float32("t")
			if err != nil {
				t.Fatal(err)
			}
			cv, err := r.Float64("c")
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < rows; i++ {
				for j := 0; j < cols; j++ {
					if tv[i*cols+j] != transposed(i, j) {
						t.Fatalf("byteorder %q method %d: t[%d,%d] = %v, want %v", bo, method, i, j, tv[i*cols+j], transposed(i, j))
					}
					if cv[i*cols+j] != float64(base[3+i*cols+j]) {
						t.Fatalf("c[%d,%d] = %v", i, j, cv[i*cols+j])
					}
				}
			}
			if hv, err := r.Float32("h"); err != nil || !reflect.DeepEqual(hv, []float32{2, 3, 3, 4}) {
				t.Fatalf("byteorder %q: h = %v, %v", bo, hv, err)
			}
			if rv, err := r.Float32("row"); err != nil || !reflect.DeepEqual(rv, []float32{5, 7, 9, 11}) {
				t.Fatalf("row = %v, %v", rv, err)
			}
			r.Close()
		}
	}
}

func TestTorchErrors(t *testing.T) {
	ten := tspec{storage: "FloatStorage", key: "0", numel: 2, size: []int{2}, stride: []int{1}}
	ok := map[string][]byte{"0": f32Bytes(1, 2)}
	zipOf := func(root any, storages map[string][]byte, byteorder string) []byte {
		return torchZip(t, "archive", pickleOf(root), storages, zip.Store, byteorder)
	}
	withEntries := func(entries map[string]string) []byte {
		var names []string
		for k := range entries {
			names = append(names, k)
		}
		sort.Strings(names)
		var b strings.Builder
		w := zip.NewWriter(&b)
		for _, n := range names {
			f, _ := w.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
			f.Write([]byte(entries[n]))
		}
		w.Close()
		return []byte(b.String())
	}
	legacy := []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X")
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"legacy torch.save", legacy, "torch>=1.6"},
		{"no data.pkl", withEntries(map[string]string{"archive/version": "3\n"}), "data.pkl"},
		{"torchscript", withEntries(map[string]string{"m/data.pkl": string(pickleOf(opaque{"__torch__", "Net", odict{}})), "m/constants.pkl": "\x80\x02).", "m/version": "3\n"}), "TorchScript"},
		{"missing storage", zipOf(odict{{"w", ten}}, nil, ""), "storage \"0\" of tensor \"w\" is missing"},
		{"short storage", zipOf(odict{{"w", ten}}, map[string][]byte{"0": f32Bytes(1)}, ""), "truncated: tensor \"w\""},
		{"view past storage", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "0", numel: 2, offset: 1, size: []int{2}, stride: []int{1}}}}, ok, ""), "needs element 2"},
		{"stride past storage", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "0", numel: 2, size: []int{2, 2}, stride: []int{1, 1}}}}, ok, ""), ""},
		{"negative stride", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "0", numel: 2, size: []int{2}, stride: []int{-1}}}}, ok, ""), "negative stride"},
		{"negative size", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "0", numel: 2, size: []int{-2}, stride: []int{1}}}}, ok, ""), "invalid size"},
		{"overflowing view", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "0", numel: 2, size: []int{2, 2}, stride: []int{1 << 30, 1 << 30}}}}, ok, ""), "needs element"},
		{"size/stride mismatch", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "0", numel: 2, size: []int{2}, stride: []int{1, 1}}}}, ok, ""), "equal length"},
		{"unsupported storage", zipOf(odict{{"w", tspec{storage: "ComplexFloatStorage", key: "0", numel: 1, size: []int{1}, stride: []int{1}}}}, ok, ""), "torch.ComplexFloatStorage, which is not supported"},
		{"bad storage key", zipOf(odict{{"w", tspec{storage: "FloatStorage", key: "../x", numel: 2, size: []int{2}, stride: []int{1}}}}, ok, ""), "invalid storage key"},
		{"quantized tensor", zipOf(odict{{"state_dict", odict{{"q", call{"torch._utils", "_rebuild_qtensor", []any{1, 2}}}}}}, ok, ""), "\"q\" is built by torch._utils._rebuild_qtensor, which is not supported"},
		{"bad byteorder", zipOf(odict{{"w", ten}}, ok, "middle"), "byte order"},
		{"corrupt pickle", withEntries(map[string]string{"a/data.pkl": "\x80\x02}(X\x05\x00\x00\x00ab"}), "data.pkl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "e.pt", c.data)
			for _, open := range []func(string) (Reader, error){Open, OpenTorch} {
				r, err := open(path)
				if err == nil {
					r.Close()
				}
				checkErrPrefix(t, err, path)
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %q does not contain %q", err, c.want)
				}
			}
		})
	}
	path := writeTemp(t, "text.pt", []byte("hello world, this is not a checkpoint"))
	if _, err := OpenTorch(path); err == nil || !strings.Contains(err.Error(), "not a PyTorch zip checkpoint") {
		t.Fatalf("text file: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pt")
	for _, open := range []func(string) (Reader, error){Open, OpenTorch, OpenTorchFlat, OpenSafetensors} {
		_, err := open(missing)
		checkErrPrefix(t, err, missing)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("missing file: %v does not wrap fs.ErrNotExist", err)
		}
	}
}

// TestTorchTruncatedAndFlipped cuts a real checkpoint at every length (always an error) and flips every byte
// (an error or a readable file, never a panic). Most cases run in memory; writing thousands of files is slow.
func TestTorchTruncatedAndFlipped(t *testing.T) {
	data, err := os.ReadFile("testdata/torch_dtypes.pt")
	if err != nil {
		t.Fatal(err)
	}
	const name = "mem.pt"
	for n := 0; n < len(data); n++ {
		_, err := openTorch(name, bytes.NewReader(data[:n]), int64(n), true)
		if err == nil {
			t.Fatalf("cut at %d of %d bytes: no error", n, len(data))
		}
		checkErrPrefix(t, err, name)
		if n > 4 && !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut at %d: error does not say truncated: %v", n, err)
		}
		if n%257 == 0 || n == len(data)-1 { // the same through the file-based entry points
			path := writeTemp(t, "cut.pt", data[:n])
			fr, ferr := Open(path)
			if ferr == nil {
				fr.Close()
				t.Fatalf("cut at %d of %d bytes: no error", n, len(data))
			}
			checkErrPrefix(t, ferr, path)
		}
	}
	for i := range data {
		for _, mask := range []byte{0x5a, 0x80} {
			d := append([]byte(nil), data...)
			d[i] ^= mask
			r, err := openTorch(name, bytes.NewReader(d), int64(len(d)), true)
			if err != nil {
				checkErrPrefix(t, err, name)
				continue
			}
			readAllTensors(r)
		}
	}
}

// TestRefVectorsTorch: in every reference case that holds both weights.pt and weights.safetensors, the .pt must
// expose exactly the same tensors, with the same shapes and bit-identical float32 values.
func TestRefVectorsTorch(t *testing.T) {
	dir := refVectorsDir(t)
	if dir == "" {
		t.Skip("reference vectors not found (set EGG_REFVECTORS)")
	}
	configs, _ := filepath.Glob(filepath.Join(dir, "*", "config.json"))
	cases := 0
	strided, half := 0, 0
	for _, cfg := range configs {
		caseDir := filepath.Dir(cfg)
		pt, st := filepath.Join(caseDir, "weights.pt"), filepath.Join(caseDir, "weights.safetensors")
		if _, err := os.Stat(pt); err != nil {
			continue
		}
		if _, err := os.Stat(st); err != nil {
			continue
		}
		cases++
		t.Run(filepath.Base(caseDir), func(t *testing.T) {
			rp, err := Open(pt)
			if err != nil {
				t.Fatal(err)
			}
			defer rp.Close()
			rs, err := Open(st)
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			inPT, inST := map[string]bool{}, map[string]bool{}
			for _, n := range rp.Names() {
				inPT[n] = true
			}
			for _, n := range rs.Names() {
				inST[n] = true
			}
			var onlyPT, onlyST []string
			for n := range inPT {
				if !inST[n] {
					onlyPT = append(onlyPT, n)
				}
			}
			for n := range inST {
				if !inPT[n] {
					onlyST = append(onlyST, n)
				}
			}
			if len(onlyPT)+len(onlyST) > 0 {
				sort.Strings(onlyPT)
				sort.Strings(onlyST)
				t.Fatalf("name sets differ: only in .pt %q, only in .safetensors %q", onlyPT, onlyST)
			}
			for _, n := range rs.Names() {
				ip, _ := rp.Info(n)
				is, _ := rs.Info(n)
				if !reflect.DeepEqual(ip.Shape, is.Shape) {
					// The vectors store 0-d tensors (BatchNorm's num_batches_tracked) as shape [1] in
					// safetensors; accept exactly that difference and report it.
					if ip.Numel() == 1 && is.Numel() == 1 && len(ip.Shape)+len(is.Shape) == 1 {
						t.Logf("%s: shape %v in .pt, %v in .safetensors (0-d stored as [1])", n, ip.Shape, is.Shape)
					} else {
						t.Fatalf("%s: shape %v in .pt, %v in .safetensors", n, ip.Shape, is.Shape)
					}
				}
				if e := rp.(*tensorReader).entries[n]; e.strides != nil {
					strided++
				}
				if ip.DType == F16 {
					half++
				}
				vp, err := rp.Float32(n)
				if err != nil {
					t.Fatal(err)
				}
				vs, err := rs.Float32(n)
				if err != nil {
					t.Fatal(err)
				}
				for i := range vs {
					if math.Float32bits(vp[i]) != math.Float32bits(vs[i]) {
						t.Fatalf("%s[%d]: %v in .pt, %v in .safetensors", n, i, vp[i], vs[i])
					}
				}
				if !ip.DType.IsFloat() || !is.DType.IsFloat() {
					ip64, err1 := rp.Int64(n)
					is64, err2 := rs.Int64(n)
					if err1 != nil || err2 != nil || !reflect.DeepEqual(ip64, is64) {
						t.Fatalf("%s: Int64 %v/%v, %v/%v", n, ip64, err1, is64, err2)
					}
				}
			}
		})
	}
	if cases == 0 {
		t.Skipf("no case under %s holds both weights.pt and weights.safetensors", dir)
	}
	t.Logf("%d cases; %d strided views and %d float16 tensors among the .pt tensors", cases, strided, half)
}

// TestConcurrentReads reads every tensor from several goroutines at once (run with -race), through stored and
// deflated torch archives and a safetensors file.
func TestConcurrentReads(t *testing.T) {
	data, err := os.ReadFile("testdata/torch_dtypes.pt")
	if err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(t.TempDir(), "all.safetensors")
	if err := WriteSafetensors(st, allDTypeTensors(), nil); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"testdata/torch_dtypes.pt", writeTemp(t, "deflated.pt", rezip(t, data, zip.Deflate)), st} {
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]float64{}
		for _, n := range r.Names() {
			if want[n], err = r.Float64(n); err != nil {
				t.Fatal(err)
			}
		}
		errs := make(chan error, 8)
		for g := 0; g < 8; g++ {
			go func() {
				for k := 0; k < 20; k++ {
					for _, n := range r.Names() {
						got, err := r.Float64(n)
						if err != nil {
							errs <- err
							return
						}
						for i := range got {
							if !sameFloat(got[i], want[n][i]) {
								errs <- fmt.Errorf("%s: %s[%d] differs between goroutines", path, n, i)
								return
							}
						}
					}
				}
				errs <- nil
			}()
		}
		for g := 0; g < 8; g++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
		if _, err := r.Float32(r.Names()[0]); err == nil {
			t.Fatalf("%s: read after Close succeeded", path)
		}
	}
}
