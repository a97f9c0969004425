package gemm

import (
	"fmt"
	"testing"
)

// BenchmarkPack measures packing a whole operand that does not fit in cache,
// block by block as serial does: B^T (576x4096, the weight-gradient shape)
// and A (4096x576 and 4096x4096 row strides).
func BenchmarkPack(b *testing.B) {
	avx := haveAVX2FMA
	for _, ld := range []int{4096, 4100} {
		src := make([]float32, 576*ld)
		dst := make([]float32, kc*roundUp(576, nr)+64)
		b.Run(fmt.Sprintf("BT_576x4096_ld%d", ld), func(b *testing.B) {
			for b.Loop() {
				for p0 := 0; p0 < 4096; p0 += kc {
					packB(avx, dst, src[p0:], ld, true, kc, 576)
				}
			}
			b.ReportMetric(576*4096*4*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
	for _, ld := range []int{576, 4096} {
		src := make([]float32, 4096*ld)
		dst := make([]float32, kc*mc+64)
		b.Run(fmt.Sprintf("AN_4096x576_ld%d", ld), func(b *testing.B) {
			for b.Loop() {
				for p0 := 0; p0 < 576; p0 += 192 {
					for i0 := 0; i0 < 4096; i0 += mc {
						packA(avx, dst, src[i0*ld+p0:], ld, false, min(mc, 4096-i0), 192)
					}
				}
			}
			b.ReportMetric(576*4096*4*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
