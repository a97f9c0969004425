//go:build !((linux || darwin || freebsd) && (amd64 || arm64))

package gemm

import "errors"

// NewOpenBLAS reports that OpenBLAS is not supported on this platform.
func NewOpenBLAS(threads int) (Impl, error) {
	return nil, errors.New("OpenBLAS loading is not supported on this platform")
}

type openBLAS struct{ path string }

func (o *openBLAS) Name() string     { return "openblas" }
func (o *openBLAS) describe() string { return o.path }
func (o *openBLAS) Serial() Impl     { return o }
func (o *openBLAS) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	panic("gemm: OpenBLAS is not supported on this platform")
}
