// Package gemm multiplies float32 matrices: C = alpha*op(A)*op(B) + beta*C,
// row-major, with OpenBLAS (loaded at run time through purego, no cgo) or a
// pure-Go packed kernel with an AVX2/FMA assembly micro-kernel.
//
// # Conventions
//
// All matrices are row-major. lda, ldb and ldc are row strides in elements.
// C is m x n (ldc >= n). op(A) is m x k and op(B) is k x n:
//
//   - transA == false: A is stored m x k, element (i,p) at a[i*lda+p], lda >= k.
//   - transA == true:  A is stored k x m, element (i,p) of op(A) at a[p*lda+i], lda >= m.
//   - transB == false: B is stored k x n, element (p,j) at b[p*ldb+j], ldb >= n.
//   - transB == true:  B is stored n x k, element (p,j) of op(B) at b[j*ldb+p], ldb >= k.
//
// Slices only need to be long enough to hold the last element they address
// ((rows-1)*ld + cols). When beta == 0, C is overwritten and never read, so
// it may hold NaNs or garbage. When k == 0 or alpha == 0, A and B are not
// read and C is only scaled by beta. Invalid arguments (negative sizes, too
// small strides or slices) panic, like the reference BLAS xerbla.
//
// # Implementations
//
// New picks OpenBLAS when libopenblas can be dlopened (Debian package
// libopenblas0-pthread) and EGG_GEMM is not "go"; otherwise the pure-Go
// implementation, which uses a 6x16 AVX2/FMA assembly micro-kernel on amd64
// CPUs that have AVX2 and FMA ("go-avx2") and a portable Go micro-kernel
// elsewhere ("go-generic"). The pure-Go path follows the GotoBLAS/BLIS
// scheme: B is packed into KCxNC blocks of 16-column micro-panels, A into
// MCxKC blocks of 6-row micro-panels, and the packing buffers are recycled
// through a sync.Pool, so steady-state calls do not allocate large buffers.
// Very small products are always computed by the pure-Go code, where the
// foreign-call overhead of OpenBLAS would dominate.
//
// # Concurrency
//
// Every Impl is safe for concurrent use by multiple goroutines. An Impl uses
// up to its thread count of cores per call; Serial returns a view of the
// same implementation that computes each call on the calling goroutine only,
// for callers that already run independent products in parallel. OpenBLAS'
// thread count is process-global: it is set once with
// openblas_set_num_threads when the library is loaded (the last NewOpenBLAS
// call wins), and the Serial view of OpenBLAS routes calls to the pure-Go
// serial implementation only for small products; larger ones still go to
// OpenBLAS, whose pthread build is safe for concurrent calls.
package gemm
