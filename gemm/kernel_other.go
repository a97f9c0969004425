//go:build !amd64 || purego

package gemm

// haveAVX2FMA is false where the assembly kernels do not exist.
const haveAVX2FMA = false

func kernelAVX2(k int, a, b, c *float32, ldc int, alpha, beta float32) { panic("gemm: no AVX2") }
func packBN16AVX(dst, src *float32, ldb, k int)                        { panic("gemm: no AVX2") }
func packBT16AVX(dst, src *float32, ldb, k8 int)                       { panic("gemm: no AVX2") }
func packAN6AVX(dst, src *float32, lda, k8 int)                        { panic("gemm: no AVX2") }
func packAT6Block(dst, src *float32, lda, kk, np int)                  { panic("gemm: no AVX2") }
