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

// New returns the GEMM egg uses, and logs one line saying which and why:
//
//   - EGG_GEMM=go forces the pure-Go implementation;
//   - EGG_GEMM=openblas forces OpenBLAS (falling back to pure Go, with the reason,
//     when the library does not load);
//   - otherwise the pure-Go implementation when the CPU has AVX2 and FMA (its
//     assembly kernel measured as fast as or up to 4x faster than Debian's
//     OpenBLAS 0.3.21 on the engine's shapes, single-threaded calls), else OpenBLAS when it loads, else the
//     portable pure-Go kernel.
//
// threads is the number of cores to use per call (<= 0 means runtime.NumCPU()).
func New(threads int) Impl {
	threads = normThreads(threads)
	per := fmt.Sprintf("%d threads per call", threads)
	if threads == 1 {
		per = "one thread per call"
	}
	goImpl := func(why string) Impl {
		g := NewGo(threads)
		log.Printf("egg: gemm: %s (%s), %s", g.Name(), why, per)
		return g
	}
	openblas := func(why string) (Impl, error) {
		ob, err := NewOpenBLAS(threads)
		if err == nil {
			log.Printf("egg: gemm: openblas (%s; %s), %s", ob.(*openBLAS).describe(), why, per)
		}
		return ob, err
	}
	switch os.Getenv("EGG_GEMM") {
	case "go":
		return goImpl("EGG_GEMM=go")
	case "openblas":
		ob, err := openblas("EGG_GEMM=openblas")
		if err == nil {
			return ob
		}
		return goImpl(fmt.Sprintf("EGG_GEMM=openblas, but openblas is unavailable: %v", err))
	}
	if haveAVX2FMA {
		return goImpl("AVX2/FMA kernel, faster than OpenBLAS here; EGG_GEMM=openblas selects OpenBLAS")
	}
	ob, err := openblas("no AVX2/FMA for the pure-Go kernel")
	if err == nil {
		return ob
	}
	return goImpl(fmt.Sprintf("openblas unavailable: %v", err))
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
