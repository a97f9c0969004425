package gemm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCompare prints a GFLOP/s table of the pure-Go implementation against
// OpenBLAS for benchShapes on 1 and 2 threads. The implementations are
// measured alternately and the best of several rounds is kept, which makes
// the comparison robust to other load on the machine. It only runs with
// EGG_GEMM_COMPARE=1.
func TestCompare(t *testing.T) {
	if os.Getenv("EGG_GEMM_COMPARE") != "1" {
		t.Skip("set EGG_GEMM_COMPARE=1 to run")
	}
	if _, err := NewOpenBLAS(1); err != nil {
		t.Skipf("OpenBLAS unavailable: %v", err)
	}
	rounds := 7
	rng := rand.New(rand.NewPCG(5, 6))
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-22s %3s %10s %10s %8s\n", "shape", "thr", "openblas", NewGo(1).Name(), "go/ob")
	for _, s := range benchShapes {
		lda, ldb := s.k, s.n
		if s.transA {
			lda = s.m
		}
		if s.transB {
			ldb = s.k
		}
		a := make([]float32, s.m*s.k)
		b := make([]float32, s.k*s.n)
		c := make([]float32, s.m*s.n)
		for i := range a {
			a[i] = rng.Float32() - 0.5
		}
		for i := range b {
			b[i] = rng.Float32() - 0.5
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, th := range []int{1, 2} {
			ob, _ := NewOpenBLAS(th)
			impls := []Impl{ob, NewGo(th)}
			best := make([]float64, len(impls))
			for r := 0; r < rounds; r++ {
				for x, im := range impls {
					im.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
					n := 0
					start := time.Now()
					for time.Since(start) < 60*time.Millisecond {
						im.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
						n++
					}
					g := flops * float64(n) / time.Since(start).Seconds() / 1e9
					best[x] = max(best[x], g)
				}
			}
			fmt.Fprintf(&sb, "%-22s %3d %10.1f %10.1f %8.2f\n", s, th, best[0], best[1], best[1]/best[0])
		}
	}
	t.Log(sb.String())
}
