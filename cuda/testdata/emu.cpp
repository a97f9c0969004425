// emu.cpp runs kernels.cu on the CPU for the tests, behind functions with the
// signatures of the CUDA driver calls (and cublasSgemmStridedBatched) that the Go
// package binds, so that the package's own code drives it as it drives a GPU:
//
//   clang++ -std=c++17 -O1 -shared -fPIC -DEGG_EMU -I.. -o libeggemu.so emu.cpp
//
// Device memory is host memory, each allocation ending at a guard page so that a
// kernel reading or writing past a buffer's end faults. A launch checks the limits a
// GPU has (1024 threads a block, 65535 blocks along y and z) and runs its blocks one
// after another, each block's threads as fibers that switch at every barrier; a
// barrier that not every thread of the block reaches is reported as an error.
#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "emu.h"
#include "../kernels.cu"

emu_dim3 emu_tid, emu_ntid, emu_ctaid, emu_nctaid;

namespace {

template <typename... A, size_t... I>
void call_impl(void (*f)(A...), void** p, std::index_sequence<I...>) {
	f(*static_cast<A*>(p[I])...);
}

template <typename... A>
void call(void (*f)(A...), void** p) {
	call_impl(f, p, std::index_sequence_for<A...>{});
}

struct Entry {
	const char* name;
	void (*tramp)(void**);
};

#define KERNEL(name) {#name, [](void** p) { call(name, p); }}

const Entry kernels[] = {
    KERNEL(egg_map),
    KERNEL(egg_map_grad),
    KERNEL(egg_binary32),
    KERNEL(egg_binary64),
    KERNEL(egg_strided32),
    KERNEL(egg_strided64),
    KERNEL(egg_scatter32),
    KERNEL(egg_scatter64),
    KERNEL(egg_sum_axis_thread),
    KERNEL(egg_sum_axis_block),
    KERNEL(egg_im2col),
    KERNEL(egg_col2im),
    KERNEL(egg_group_norm),
    KERNEL(egg_gn_grad_stats),
    KERNEL(egg_gn_grad_x),
    KERNEL(egg_gn_grad_wb),
    KERNEL(egg_softmax_rows),
    KERNEL(egg_softmax_cols),
    KERNEL(egg_softmax_grad_rows),
    KERNEL(egg_softmax_grad_cols),
    KERNEL(egg_upsample),
    KERNEL(egg_upsample_grad),
    KERNEL(egg_to_half),
    KERNEL(egg_maxpool),
    KERNEL(egg_maxpool_grad),
    KERNEL(egg_grid_sample),
    KERNEL(egg_grid_sample_grad_x),
    KERNEL(egg_grid_sample_grad_grid),
};
const size_t nkernels = sizeof(kernels) / sizeof(kernels[0]);

const size_t stack_size = 64 << 10;

struct Fiber {
	ucontext_t ctx;
	char* stack;
	bool done;
	emu_dim3 tid;
};

std::vector<Fiber> fibers;
ucontext_t sched_ctx;
size_t cur;
void (*cur_tramp)(void**);
void** cur_params;

void fiber_entry() {
	cur_tramp(cur_params);
	fibers[cur].done = true;
	// returning resumes uc_link, the scheduler
}

// run_block runs one block to completion; false on a divergent barrier.
bool run_block() {
	size_t n = (size_t)emu_ntid.x * emu_ntid.y * emu_ntid.z;
	if (fibers.size() < n) {
		size_t old = fibers.size();
		fibers.resize(n);
		for (size_t i = old; i < n; i++) fibers[i].stack = (char*)malloc(stack_size);
	}
	for (size_t i = 0; i < n; i++) {
		Fiber& f = fibers[i];
		f.done = false;
		f.tid.x = (unsigned)(i % emu_ntid.x);
		f.tid.y = (unsigned)((i / emu_ntid.x) % emu_ntid.y);
		f.tid.z = (unsigned)(i / ((size_t)emu_ntid.x * emu_ntid.y));
		getcontext(&f.ctx);
		f.ctx.uc_stack.ss_sp = f.stack;
		f.ctx.uc_stack.ss_size = stack_size;
		f.ctx.uc_link = &sched_ctx;
		makecontext(&f.ctx, fiber_entry, 0);
	}
	for (;;) {
		size_t done = 0, waiting = 0;
		for (size_t i = 0; i < n; i++) {
			if (fibers[i].done) {
				done++;
				continue;
			}
			cur = i;
			emu_tid = fibers[i].tid;
			swapcontext(&sched_ctx, &fibers[i].ctx);
			if (fibers[i].done)
				done++;
			else
				waiting++;
		}
		if (done == n) return true;
		if (done > 0 && waiting > 0) {
			fprintf(stderr, "emu: barrier reached by %zu of %zu threads\n", waiting, n);
			return false;
		}
	}
}

struct Mapping {
	void* base;
	size_t len;
};
std::map<uint64_t, Mapping> mappings;

} // namespace

void emu_sync() { swapcontext(&fibers[cur].ctx, &sched_ctx); }

extern "C" {

int emu_module_get_function(uintptr_t* f, uintptr_t mod, const char* name) {
	(void)mod;
	for (size_t i = 0; i < nkernels; i++) {
		if (strcmp(kernels[i].name, name) == 0) {
			*f = i + 1;
			return 0;
		}
	}
	return 500; // CUDA_ERROR_NOT_FOUND
}

int emu_launch_kernel(uintptr_t f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                      unsigned shared, uintptr_t stream, void** params, void** extra) {
	(void)stream;
	if (f == 0 || f > nkernels || params == nullptr || extra != nullptr) return 400; // CUDA_ERROR_INVALID_HANDLE
	unsigned long long threads = (unsigned long long)bx * by * bz;
	if (bx == 0 || by == 0 || bz == 0 || bx > 1024 || by > 1024 || bz > 64 || threads > 1024) return 1;
	if (gx == 0 || gy == 0 || gz == 0 || gx > 0x7fffffffu || gy > 65535 || gz > 65535) return 1;
	if (shared > 48 * 1024) return 1;
	cur_tramp = kernels[f - 1].tramp;
	cur_params = params;
	emu_ntid = {bx, by, bz};
	emu_nctaid = {gx, gy, gz};
	for (unsigned z = 0; z < gz; z++)
		for (unsigned y = 0; y < gy; y++)
			for (unsigned x = 0; x < gx; x++) {
				emu_ctaid = {x, y, z};
				if (!run_block()) return 999; // CUDA_ERROR_UNKNOWN
			}
	return 0;
}

int emu_mem_alloc(uint64_t* p, size_t n) {
	if (n == 0) return 1;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (n + page - 1) / page * page;
	size_t len = body + page;
	void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) return 2; // CUDA_ERROR_OUT_OF_MEMORY
	mprotect((char*)base + body, page, PROT_NONE);
	// The buffer ends at the guard page (4-byte aligned; 16-byte aligned when n is a
	// multiple of 16, as the float64 scratch buffers are).
	uint64_t addr = (uint64_t)(uintptr_t)base + body - ((n + 3) / 4 * 4);
	memset((void*)(uintptr_t)addr, 0xff, n); // NaN-filled: uninitialised reads show
	mappings[addr] = {base, len};
	*p = addr;
	return 0;
}

int emu_mem_free(uint64_t p) {
	auto it = mappings.find(p);
	if (it == mappings.end()) return 1;
	munmap(it->second.base, it->second.len);
	mappings.erase(it);
	return 0;
}

int emu_memcpy_htod(uint64_t dst, const void* src, size_t n, uintptr_t stream) {
	(void)stream;
	memcpy((void*)(uintptr_t)dst, src, n);
	return 0;
}

int emu_memcpy_dtoh(void* dst, uint64_t src, size_t n, uintptr_t stream) {
	(void)stream;
	memcpy(dst, (const void*)(uintptr_t)src, n);
	return 0;
}

int emu_memcpy_dtod(uint64_t dst, uint64_t src, size_t n, uintptr_t stream) {
	(void)stream;
	memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n);
	return 0;
}

int emu_memset_d32(uint64_t dst, unsigned v, size_t n, uintptr_t stream) {
	(void)stream;
	unsigned* p = (unsigned*)(uintptr_t)dst;
	for (size_t i = 0; i < n; i++) p[i] = v;
	return 0;
}

// emu_sgemm_strided_batched is a column-major reference for cublasSgemmStridedBatched
// (CUBLAS_OP_N = 0, CUBLAS_OP_T = 1), with cuBLAS's argument checks.
int emu_sgemm_strided_batched(uintptr_t handle, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, long long sA, const float* B, int ldb, long long sB,
                              const float* beta, float* C, int ldc, long long sC, int batch) {
	(void)handle;
	if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0 || batch < 0) return 7;
	int rowsA = ta ? k : m, rowsB = tb ? n : k;
	if (lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) || ldc < (m > 1 ? m : 1)) return 7;
	for (int b = 0; b < batch; b++) {
		const float* a = A + b * sA;
		const float* bb = B + b * sB;
		float* c = C + b * sC;
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				double s = 0;
				for (int l = 0; l < k; l++) {
					float av = ta ? a[l + (long long)i * lda] : a[i + (long long)l * lda];
					float bv = tb ? bb[j + (long long)l * ldb] : bb[l + (long long)j * ldb];
					s += (double)av * bv;
				}
				float r = *alpha * (float)s;
				if (*beta != 0.0f) r += *beta * c[i + (long long)j * ldc];
				c[i + (long long)j * ldc] = r;
			}
	}
	return 0;
}

// emu_half_value decodes operand element i of type t (CUDA_R_32F 0, CUDA_R_16F 2,
// CUDA_R_16BF 14), independently of kernels.cu's encoders.
static double emu_half_value(const void* p, long long i, int t) {
	if (t == 0) return ((const float*)p)[i];
	unsigned short h = ((const unsigned short*)p)[i];
	if (t == 14) {
		unsigned int u = (unsigned int)h << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp((double)(m | 0x400), e - 25);
	return (h & 0x8000) ? -v : v;
}

// emu_gemm_strided_batched_ex is a column-major reference for
// cublasGemmStridedBatchedEx with A and B of one type (float32, half or bfloat16),
// float32 C, and compute type CUBLAS_COMPUTE_32F (68); anything else is
// CUBLAS_STATUS_NOT_SUPPORTED (15).
int emu_gemm_strided_batched_ex(uintptr_t handle, int ta, int tb, int m, int n, int k, const float* alpha,
                                const void* A, int atype, int lda, long long sA, const void* B, int btype, int ldb,
                                long long sB, const float* beta, float* C, int ctype, int ldc, long long sC, int batch,
                                int compute, int algo) {
	(void)handle;
	(void)algo;
	if (atype != btype || (atype != 0 && atype != 2 && atype != 14) || ctype != 0 || compute != 68) return 15;
	if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0 || batch < 0) return 7;
	int rowsA = ta ? k : m, rowsB = tb ? n : k;
	if (lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) || ldc < (m > 1 ? m : 1)) return 7;
	for (int b = 0; b < batch; b++) {
		float* c = C + b * sC;
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				double s = 0;
				for (int l = 0; l < k; l++) {
					long long ia = ta ? l + (long long)i * lda : i + (long long)l * lda;
					long long ib = tb ? j + (long long)l * ldb : l + (long long)j * ldb;
					s += emu_half_value(A, b * sA + ia, atype) * emu_half_value(B, b * sB + ib, btype);
				}
				float r = *alpha * (float)s;
				if (*beta != 0.0f) r += *beta * c[i + (long long)j * ldc];
				c[i + (long long)j * ldc] = r;
			}
	}
	return 0;
}

} // extern "C"
