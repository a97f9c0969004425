package cuda

import (
	"fmt"
	"path/filepath"
	"strings"
)

// cublasStatus is cuBLAS's cublasStatus_t; 0 is success.
type cublasStatus int32

// cuBLAS enumerations.
const (
	cublasOpN           = 0 // CUBLAS_OP_N
	cublasOpT           = 1 // CUBLAS_OP_T
	cublasDefaultMath   = 0 // CUBLAS_DEFAULT_MATH: full float32, no TF32
	cublasTF32TensorOps = 3 // CUBLAS_TF32_TENSOR_OP_MATH

	cudaR32F          = 0  // CUDA_R_32F: float32
	cudaR16F          = 2  // CUDA_R_16F: IEEE half
	cudaR16BF         = 14 // CUDA_R_16BF: bfloat16
	cublasCompute32F  = 68 // CUBLAS_COMPUTE_32F: float32 sums
	cublasGemmDefault = -1 // CUBLAS_GEMM_DEFAULT
)

// halfTypes are the operand types of the reduced precisions. Their GEMMs convert
// both operands to that type (egg_to_half) and hand them to
// cublasGemmStridedBatchedEx with float32 output and float32 sums, so that cuBLAS
// runs them on the tensor cores. (The compute types CUBLAS_COMPUTE_32F_FAST_16F
// and _16BF with float32 operands only allow cuBLAS to do so: on an H200 it kept
// the float32 speed.)
var halfTypes = map[string]int32{"fp16": cudaR16F, "bf16": cudaR16BF}

// cublasStatusNames names cublasStatus_t values, for libraries without
// cublasGetStatusName.
var cublasStatusNames = map[cublasStatus]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cublas holds the functions of libcublas that the package calls. Device addresses
// are uint64, handles and streams uintptr; alpha and beta are host pointers (the
// default pointer mode). The tests fill these fields with fakes.
type cublas struct {
	path string // the library loaded

	create              func(h *uintptr) cublasStatus
	destroy             func(h uintptr) cublasStatus
	setStream           func(h uintptr, stream uintptr) cublasStatus
	setMathMode         func(h uintptr, mode int32) cublasStatus
	getVersion          func(h uintptr, v *int32) cublasStatus // optional
	statusName          func(s cublasStatus) string            // optional
	sgemmStridedBatched func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, strideA int64,
		b uint64, ldb int32, strideB int64, beta *float32, c uint64, ldc int32, strideC int64, batch int32) cublasStatus
	// gemmStridedBatchedEx is cublasGemmStridedBatchedEx, for fp16 and bf16
	// (optional: those precisions fail to open without it).
	gemmStridedBatchedEx func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, atype int32, lda int32, strideA int64,
		b uint64, btype int32, ldb int32, strideB int64, beta *float32, c uint64, ctype int32, ldc int32, strideC int64,
		batch int32, compute int32, algo int32) cublasStatus
}

// bindAll binds cuBLAS's functions from library h.
func (c *cublas) bindAll(h uintptr) error {
	for _, s := range []struct {
		f     any
		names []string
	}{
		{&c.create, []string{"cublasCreate_v2"}},
		{&c.destroy, []string{"cublasDestroy_v2"}},
		{&c.setStream, []string{"cublasSetStream_v2"}},
		{&c.setMathMode, []string{"cublasSetMathMode"}},
		{&c.sgemmStridedBatched, []string{"cublasSgemmStridedBatched"}},
	} {
		if err := bind(h, s.f, s.names...); err != nil {
			return err
		}
	}
	if bind(h, &c.statusName, "cublasGetStatusName") != nil {
		c.statusName = nil
	}
	if bind(h, &c.getVersion, "cublasGetVersion_v2") != nil {
		c.getVersion = nil
	}
	if bind(h, &c.gemmStridedBatchedEx, "cublasGemmStridedBatchedEx") != nil {
		c.gemmStridedBatchedEx = nil
	}
	return nil
}

// loadCublas loads the first cuBLAS of dirs (libcublasLt from the same directory
// first), else the loader's.
func loadCublas(dirs []string) (*cublas, error) {
	var why string
	for _, p := range append(findLibs(dirs, cublasNames), cublasNames...) {
		if strings.ContainsRune(p, '/') {
			// libcublas.so.N needs libcublasLt.so.N: load the one beside it, so that
			// the loader does not go looking for another.
			lt := filepath.Join(filepath.Dir(p), strings.Replace(filepath.Base(p), "libcublas.", "libcublasLt.", 1))
			if _, err := dlopen(lt); err != nil && why == "" {
				why = err.Error()
			}
		}
		h, err := dlopen(p)
		if err != nil {
			if why == "" && strings.ContainsRune(p, '/') {
				why = err.Error()
			}
			continue
		}
		c := &cublas{path: p}
		if err := c.bindAll(h); err != nil {
			if why == "" {
				why = p + ": " + err.Error()
			}
			continue
		}
		return c, nil
	}
	if why != "" {
		why = " (" + oneLine(why) + ")"
	}
	return nil, fmt.Errorf("cuda: no cuBLAS (%s) found in %s%s; install CUDA's cuBLAS (as PyTorch's pip wheels do) "+
		"or set EGG_CUDA_LIBS to the directory that holds it", shortNames(cublasNames), searchedWhere, why)
}

// err turns a cuBLAS status of call into an error (nil for success).
func (c *cublas) err(call string, s cublasStatus) error {
	if s == 0 {
		return nil
	}
	name := cublasStatusNames[s]
	if c.statusName != nil {
		if n := c.statusName(s); n != "" {
			name = n
		}
	}
	if name == "" {
		name = fmt.Sprintf("cublasStatus %d", int32(s))
	}
	return fmt.Errorf("cuda: %s: %s", call, name)
}

// gemmArgs are the arguments of one cublasSgemmStridedBatched call.
type gemmArgs struct {
	ta, tb           int32
	m, n, k          int32
	lda, ldb, ldc    int32
	a, b, c          uint64
	strideA, strideB int64
	strideC          int64
	batch            int32
	alpha, beta      float32
}

// colMajorGEMM maps the row-major product of tensor.Kernels.GEMM onto column-major
// cuBLAS. A row-major X with row stride ld is the column-major X^T with leading
// dimension ld, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: cuBLAS gets
// B first with B's transposition, then A, and m and n swapped.
func colMajorGEMM(ta, tb bool, m, n, k int, alpha float32, a uint64, lda, strideA int,
	b uint64, ldb, strideB int, beta float32, c uint64, ldc, strideC int, batch int) (gemmArgs, error) {
	const max32 = 1<<31 - 1
	for _, v := range []int{m, n, k, lda, ldb, ldc, batch} {
		if v < 0 || v > max32 {
			return gemmArgs{}, fmt.Errorf("cuda: GEMM: size %d out of cuBLAS's int32 range (m %d n %d k %d lda %d ldb %d ldc %d batch %d)",
				v, m, n, k, lda, ldb, ldc, batch)
		}
	}
	op := func(t bool) int32 {
		if t {
			return cublasOpT
		}
		return cublasOpN
	}
	return gemmArgs{
		ta: op(tb), tb: op(ta),
		m: int32(n), n: int32(m), k: int32(k),
		a: b, lda: int32(ldb), strideA: int64(strideB),
		b: a, ldb: int32(lda), strideB: int64(strideA),
		c: c, ldc: int32(ldc), strideC: int64(strideC),
		batch: int32(batch), alpha: alpha, beta: beta,
	}, nil
}
