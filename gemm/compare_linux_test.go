package gemm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time consumed by the calling OS thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// TestCompare prints a GFLOP/s table of the pure-Go implementation against
// OpenBLAS for benchShapes on 1 and 2 threads. The implementations are
// measured alternately and the best of several rounds is kept, which makes
// the comparison robust to other load on the machine. For one thread it also
// reports GFLOP/s over the calling thread's CPU time (both OpenBLAS with one
// thread and the serial Go path compute on the calling thread), which
// ignores the time the thread was descheduled. It only runs with
// EGG_GEMM_COMPARE=1.
func TestCompare(t *testing.T) {
	if os.Getenv("EGG_GEMM_COMPARE") != "1" {
		t.Skip("set EGG_GEMM_COMPARE=1 to run")
	}
	if _, err := NewOpenBLAS(1); err != nil {
		t.Skipf("OpenBLAS unavailable: %v", err)
	}
	rounds := 9
	rng := rand.New(rand.NewPCG(5, 6))
	var sb strings.Builder
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	gn := NewGo(1).Name()
	fmt.Fprintf(&sb, "\n%-22s %3s %10s %10s %8s %12s %12s %8s\n", "shape", "thr", "openblas", gn, "go/ob", "openblas-cpu", gn+"-cpu", "go/ob")
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
			bestCPU := make([]float64, len(impls))
			for r := 0; r < rounds; r++ {
				for x, im := range impls {
					im.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
					n := 0
					start, cpu0 := time.Now(), threadCPU()
					for time.Since(start) < 40*time.Millisecond {
						im.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
						n++
					}
					wall, cpu := time.Since(start), threadCPU()-cpu0
					best[x] = max(best[x], flops*float64(n)/wall.Seconds()/1e9)
					if cpu > 0 {
						bestCPU[x] = max(bestCPU[x], flops*float64(n)/cpu.Seconds()/1e9)
					}
					if x == 0 && th > 1 {
						// OpenBLAS' idle workers spin for ~0.13 s after a
						// threaded call; let them sleep before timing Go.
						time.Sleep(200 * time.Millisecond)
					}
				}
			}
			if th == 1 {
				fmt.Fprintf(&sb, "%-22s %3d %10.1f %10.1f %8.2f %12.1f %12.1f %8.2f\n", s, th, best[0], best[1], best[1]/best[0], bestCPU[0], bestCPU[1], bestCPU[1]/bestCPU[0])
			} else {
				fmt.Fprintf(&sb, "%-22s %3d %10.1f %10.1f %8.2f\n", s, th, best[0], best[1], best[1]/best[0])
			}
		}
	}
	t.Log(sb.String())
}
