package gemm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// benchShape is one benchmarked product; the names say the transposes and
// m x n x k.
type benchShape struct {
	transA, transB bool
	m, n, k        int
}

func (s benchShape) String() string {
	tr := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_%dx%dx%d", tr(s.transA), tr(s.transB), s.m, s.n, s.k)
}

// benchShapes are typical engine products: conv forward (NN 64x4096x576),
// its NHWC variants, conv input gradient (TN 576x4096x64), weight gradient
// (NT 64x576x4096), a small square-ish one and a big square one.
var benchShapes = []benchShape{
	{false, false, 64, 4096, 576},
	{false, false, 4096, 64, 576},
	{true, false, 4096, 64, 576},
	{false, true, 4096, 64, 576},
	{true, false, 576, 4096, 64},
	{false, false, 576, 4096, 64},
	{false, true, 64, 576, 4096},
	{false, false, 256, 256, 64},
	{false, false, 1024, 1024, 1024},
	{true, true, 1024, 1024, 1024},
	{false, false, 16, 16, 16},
}

// BenchmarkSgemm runs BenchmarkSgemm/<impl>-t<threads>/<shape> and reports
// GFLOP/s. Set EGG_GEMM_BENCH_THREADS=1 (or 2) to restrict thread counts,
// EGG_GEMM_BENCH_GENERIC=1 to include the portable kernel on AVX2 machines.
func BenchmarkSgemm(b *testing.B) {
	threads := []int{1, 2}
	switch os.Getenv("EGG_GEMM_BENCH_THREADS") {
	case "1":
		threads = []int{1}
	case "2":
		threads = []int{2}
	}
	type mk struct {
		name string
		new  func(t int) Impl
	}
	makers := []mk{{NewGo(1).Name(), func(t int) Impl { return NewGo(t) }}}
	if haveAVX2FMA && os.Getenv("EGG_GEMM_BENCH_GENERIC") == "1" {
		makers = append(makers, mk{"go-generic", newGoGeneric})
	}
	if _, err := NewOpenBLAS(1); err == nil {
		makers = append(makers, mk{"openblas", func(t int) Impl { ob, _ := NewOpenBLAS(t); return ob }})
	} else {
		b.Logf("skipping OpenBLAS: %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, mkr := range makers {
		for _, t := range threads {
			b.Run(fmt.Sprintf("%s-t%d", mkr.name, t), func(b *testing.B) {
				impl := mkr.new(t)
				for _, s := range benchShapes {
					b.Run(s.String(), func(b *testing.B) {
						lda, ldb := s.k, s.n
						if s.transA {
							lda = s.m
						}
						if s.transB {
							ldb = s.k
						}
						a := make([]float32, s.m*s.k)
						bb := make([]float32, s.k*s.n)
						c := make([]float32, s.m*s.n)
						for i := range a {
							a[i] = rng.Float32() - 0.5
						}
						for i := range bb {
							bb[i] = rng.Float32() - 0.5
						}
						impl.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
						b.ResetTimer()
						for b.Loop() {
							impl.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
						}
						flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
						b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			})
		}
	}
}
