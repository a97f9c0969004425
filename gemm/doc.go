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
// Small products (m*n*k < 48^3) are always computed by the pure-Go code,
// where the foreign-call overhead of OpenBLAS (about 2 µs and a few small
// allocations per call through purego) would dominate.
//
// # Concurrency
//
// Every Impl is safe for concurrent use by multiple goroutines. The pure-Go
// implementation splits one call over up to its thread count of goroutines
// (along n, or along m when m > n); products under about 48^3
// multiply-adds run on the calling goroutine. Serial returns a view of the
// same implementation that computes each call on the calling goroutine
// only, for callers that already run independent products in parallel.
//
// OpenBLAS' thread count is global to the process: NewOpenBLAS sets it with
// openblas_set_num_threads (the last call wins), and OpenBLAS cannot limit
// a single call, so the Serial view of OpenBLAS is the same implementation
// (still correct when called concurrently; for one-thread-per-call
// behaviour create it with NewOpenBLAS(1) or New(1)). Calls into OpenBLAS
// are bounded to min(32, max(4, 2*NumCPU)) at a time, because OpenBLAS
// crashes when too many threads call it at once; further callers wait.
package gemm
