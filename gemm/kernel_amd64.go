//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

// haveAVX2FMA reports whether the AVX2/FMA assembly kernels can run.
var haveAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernelAVX2 computes the 6x16 tile C = alpha*A*B + beta*C from packed
// micro-panels a (k x 6) and b (k x 16); ldc is in elements. When beta == 0
// C is not read. k >= 1.
//
//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

// packBN16AVX copies k rows of 16 floats (stride ldb) to dst contiguously.
//
//go:noescape
func packBN16AVX(dst, src *float32, ldb, k int)

// packBT16AVX transposes 16 rows (stride ldb) of 8*k8 floats into dst as
// 8*k8 rows of 16.
//
//go:noescape
func packBT16AVX(dst, src *float32, ldb, k8 int)

// packAN6AVX transposes 6 rows (stride lda) of 8*k8 floats into dst as
// 8*k8 rows of 6. It writes 2 floats past dst[48*k8-1].
//
//go:noescape
func packAN6AVX(dst, src *float32, lda, k8 int)

// packAT6Block packs np full 6-row micro-panels of a transposed A block:
// dst[q*6*kk + p*6 + r] = src[p*lda + q*6 + r] for p < kk, q < np, r < 6.
// It reads 2 floats past the 6*np used ones in every row but the last.
//
//go:noescape
func packAT6Block(dst, src *float32, lda, kk, np int)
