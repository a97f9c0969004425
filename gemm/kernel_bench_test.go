package gemm

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkKernel measures the AVX2 micro-kernel alone (operands in L1), on
// 1 and 2 goroutines at once: the upper bound of the pure-Go path.
func BenchmarkKernel(b *testing.B) {
	if !haveAVX2FMA {
		b.Skip("no AVX2/FMA")
	}
	for _, par := range []int{1, 2} {
		b.Run(fmt.Sprintf("par%d", par), func(b *testing.B) {
			var wg sync.WaitGroup
			for w := 0; w < par; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := make([]float32, mr*kc)
					bb := make([]float32, nr*kc)
					c := make([]float32, mr*nr)
					for i := 0; i < b.N; i++ {
						kernelAVX2(kc, &a[0], &bb[0], &c[0], nr, 1, 0)
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(par)*2*mr*nr*kc*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
