package checkpoint

import (
	"archive/zip"
	"os"
	"path/filepath"
	"testing"
)

// benchFile writes a safetensors file with one F16 (or F32) tensor of n elements and a torch zip holding the
// same data, once per benchmark.
func benchFiles(b *testing.B, dt DType, n int) (st, pt string) {
	b.Helper()
	dir := b.TempDir()
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i%2048) * 0.25
	}
	st = filepath.Join(dir, "b.safetensors")
	if err := WriteSafetensors(st, []Tensor{{Name: "w", DType: dt, Shape: []int{n}, F32: vals}}, nil); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(st)
	if err != nil {
		b.Fatal(err)
	}
	hdr := 8 + int(le.Uint64(data))
	storage := map[DType]string{F16: "HalfStorage", F32: "FloatStorage"}[dt]
	root := odict{{"w", tspec{storage: storage, key: "0", numel: n, size: []int{n}, stride: []int{1}}}}
	pt = filepath.Join(dir, "b.pt")
	if err := os.WriteFile(pt, torchZip(b, "b", pickleOf(root), map[string][]byte{"0": data[hdr:]}, zip.Store, ""), 0o644); err != nil {
		b.Fatal(err)
	}
	return st, pt
}

func benchRead(b *testing.B, dt DType, torch bool) {
	const n = 32 << 20
	st, pt := benchFiles(b, dt, n)
	path := st
	if torch {
		path = pt
	}
	r, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.SetBytes(int64(n * dt.Size()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Float32("w"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadSafetensorsF16(b *testing.B) { benchRead(b, F16, false) }
func BenchmarkReadSafetensorsF32(b *testing.B) { benchRead(b, F32, false) }
func BenchmarkReadTorchF16(b *testing.B)       { benchRead(b, F16, true) }

func BenchmarkWriteSafetensorsF16(b *testing.B) {
	const n = 32 << 20
	vals := make([]float32, n)
	path := filepath.Join(b.TempDir(), "w.safetensors")
	b.SetBytes(n * 2)
	for i := 0; i < b.N; i++ {
		if err := WriteSafetensors(path, []Tensor{{Name: "w", DType: F16, Shape: []int{n}, F32: vals}}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeF16(b *testing.B) {
	src := make([]byte, 2<<20)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]float32, len(src)/2)
	b.SetBytes(int64(len(src)))
	for i := 0; i < b.N; i++ {
		decodeF32(F16, src, dst)
	}
}

func BenchmarkDecodeBF16(b *testing.B) {
	src := make([]byte, 2<<20)
	dst := make([]float32, len(src)/2)
	b.SetBytes(int64(len(src)))
	for i := 0; i < b.N; i++ {
		decodeF32(BF16, src, dst)
	}
}

func BenchmarkMemmoveBaseline(b *testing.B) {
	src := make([]byte, 2<<20)
	dst := make([]byte, 4<<20)
	b.SetBytes(int64(len(src)))
	for i := 0; i < b.N; i++ {
		copy(dst, src)
		copy(dst[len(src):], src)
	}
}
