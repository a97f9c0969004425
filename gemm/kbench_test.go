package gemm

import (
	"sync"
	"testing"
)

func BenchmarkKernel(b *testing.B) {
	for _, par := range []int{1, 2} {
		b.Run(string(rune('0'+par)), func(b *testing.B) {
			var wg sync.WaitGroup
			for w := 0; w < par; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := make([]float32, 6*256)
					bb := make([]float32, 16*256)
					c := make([]float32, 6*16)
					for i := 0; i < b.N; i++ {
						kernelAVX2(256, &a[0], &bb[0], &c[0], 16, 1, 0)
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(par)*2*6*16*256*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
