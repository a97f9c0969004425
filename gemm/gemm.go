package gemm

import (
	"fmt"
	"log"
	"os"
	"runtime"
)

// Impl is one SGEMM implementation. Matrices are row-major; lda, ldb and
// ldc are row strides. transA means op(A) = A^T where A is stored k x m
// (lda >= m); likewise transB means B is stored n x k (ldb >= k).
// Implementations are safe for concurrent use.
type Impl interface {
	// Sgemm computes C = alpha*op(A)*op(B) + beta*C where op(A) is m x k,
	// op(B) is k x n and C is m x n. When beta == 0, C is overwritten
	// without being read.
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	// Name reports the implementation: "openblas", "go-avx2" or "go-generic".
	Name() string
	// Serial returns a view of the same implementation that computes each
	// call on the calling goroutine (one thread), for callers that already
	// run independent products in parallel. OpenBLAS cannot limit the
	// threads of one call: its Serial view is itself (see the package doc).
	Serial() Impl
}

// New returns OpenBLAS when its shared library loads, unless the
// environment variable EGG_GEMM=go forces the pure-Go implementation;
// otherwise it returns the pure-Go implementation. threads is the number of
// cores to use per call (<= 0 means runtime.NumCPU()). It logs one line
// saying which GEMM is in use and why.
func New(threads int) Impl {
	threads = normThreads(threads)
	per := fmt.Sprintf("%d threads per call", threads)
	if threads == 1 {
		per = "one thread per call"
	}
	if v := os.Getenv("EGG_GEMM"); v == "go" {
		g := NewGo(threads)
		log.Printf("egg: gemm: %s (EGG_GEMM=go), %s", g.Name(), per)
		return g
	}
	ob, err := NewOpenBLAS(threads)
	if err == nil {
		log.Printf("egg: gemm: openblas (%s), %s; set EGG_GEMM=go for the pure-Go GEMM", ob.(*openBLAS).describe(), per)
		return ob
	}
	g := NewGo(threads)
	log.Printf("egg: gemm: %s (openblas unavailable: %v), %s", g.Name(), err, per)
	return g
}

func normThreads(threads int) int {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	if threads < 1 {
		threads = 1
	}
	return threads
}

// smallFMAs is the size (m*n*k) below which a product is computed by the
// pure-Go serial code even when OpenBLAS is in use: the foreign call costs
// more than the arithmetic.
const smallFMAs = 48 * 48 * 48

// checkArgs panics when the arguments do not describe valid matrices.
func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMat("A", a, ar, ac, lda)
	checkMat("B", b, br, bc, ldb)
	checkMat("C", c, m, n, ldc)
}

func checkMat(name string, x []float32, rows, cols, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("gemm: ld%s=%d < max(1, %d)", name, ld, cols))
	}
	if rows > 0 && cols > 0 {
		if need := (rows-1)*ld + cols; len(x) < need {
			panic(fmt.Sprintf("gemm: len(%s)=%d < %d for %dx%d matrix with stride %d", name, len(x), need, rows, cols, ld))
		}
	}
}

// scaleC computes C = beta*C for an m x n matrix; beta == 0 stores zeros.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
