// egg's CUDA kernels: everything in tensor.Kernels except GEMM (which is cuBLAS).
//
// gen.sh compiles this file ahead of time to PTX with Debian's clang-14 and no CUDA
// install (-nocudainc -nocudalib), so nothing here may use CUDA's headers or
// libdevice: the few attributes and special registers are defined below, and the
// transcendental functions are written out (SLEEF's expf as the host's AVX2 kernels
// use it, and double-precision exp, expm1, log, log1p, tanh and pow for the ops the
// host computes in float64). The result is checked in as kernels.ptx and embedded in
// the Go package; the driver JIT-compiles it for the GPU at hand.
//
// The same file also compiles as plain C++ with -DEGG_EMU against testdata/emu.h, a
// small CPU model of CUDA's threads and barriers that the tests use to run these
// kernels without a GPU.
//
// Conventions: buffers are float32; sizes are 64-bit (im2col of a large batch passes
// 2^31 elements); every kernel walks its index space with grid-stride loops, so any
// grid size is correct. Kernels that reduce within a block need blockDim.x to be a
// power of two no larger than MAXB. Every kernel
// declares the most threads a block it takes (BOUNDS): 256, or 512 for GroupNorm. Reductions accumulate in double, as the host's do.

#ifdef EGG_EMU
#include "testdata/emu.h"
#else
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define tid_x() ((unsigned)__nvvm_read_ptx_sreg_tid_x())
#define tid_y() ((unsigned)__nvvm_read_ptx_sreg_tid_y())
#define ntid_x() ((unsigned)__nvvm_read_ptx_sreg_ntid_x())
#define ntid_y() ((unsigned)__nvvm_read_ptx_sreg_ntid_y())
#define ctaid_x() ((unsigned)__nvvm_read_ptx_sreg_ctaid_x())
#define ctaid_y() ((unsigned)__nvvm_read_ptx_sreg_ctaid_y())
#define nctaid_x() ((unsigned)__nvvm_read_ptx_sreg_nctaid_x())
#define nctaid_y() ((unsigned)__nvvm_read_ptx_sreg_nctaid_y())
#define SYNC() __syncthreads()
// BOUNDS(n) promises launches of at most n threads a block (PTX .maxntid), so that
// the JIT keeps each kernel's registers within what such a block may use.
#define BOUNDS(n) __attribute__((launch_bounds(n)))
#endif

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

#define DEV static __device__ inline

// MAXB is the largest block of the reduction kernels (their BOUNDS); MAXCG the most
// channels per group whose affine coefficients GroupNorm keeps in shared memory.
#define MAXB 512
#define MAXCG 1024

// The op codes of tensor.MapOp and tensor.BinaryOp (a Go test checks they agree).
enum {
	MAP_SCALE = 0,
	MAP_ADD_SCALAR = 1,
	MAP_EXP = 2,
	MAP_LOG = 3,
	MAP_SQRT = 4,
	MAP_POW = 5,
	MAP_ABS = 6,
	MAP_CLAMP = 7,
	MAP_SIGMOID = 8,
	MAP_SILU = 9,
	MAP_RELU = 10,
	MAP_ELU = 11,
	MAP_TANH = 12,
	MAP_SOFTPLUS = 13,
};

enum {
	BINARY_ADD = 0,
	BINARY_SUB = 1,
	BINARY_MUL = 2,
	BINARY_DIV = 3,
};

// Global index and stride of a 1-D grid-stride loop.
#define GID_X() ((i64)ctaid_x() * ntid_x() + tid_x())
#define GSTRIDE_X() ((i64)nctaid_x() * ntid_x())
// The same along x and y of a 2-D grid (rows along y, columns along x).
#define GID2_X() ((i64)ctaid_x() * ntid_x() + tid_x())
#define GID2_Y() ((i64)ctaid_y() * ntid_y() + tid_y())
#define GSTRIDE2_X() ((i64)nctaid_x() * ntid_x())
#define GSTRIDE2_Y() ((i64)nctaid_y() * ntid_y())

// ---------------------------------------------------------------------------
// Math without libdevice.

#define F_INF __builtin_huge_valf()
#define D_INF __builtin_huge_val()
#define D_NAN __builtin_nan("")
#define F_MAX 3.40282346638528859811704183484516925e+38f

DEV float f_from_bits(u32 b) { return __builtin_bit_cast(float, b); }
DEV double d_from_bits(u64 b) { return __builtin_bit_cast(double, b); }
DEV u64 d_bits(double d) { return __builtin_bit_cast(u64, d); }

// pow2f returns 2^e for e in [-126, 127]; pow2d 2^e for e in [-1022, 1023].
DEV float pow2f(int e) { return f_from_bits((u32)(e + 127) << 23); }
DEV double pow2d(int e) { return d_from_bits((u64)(e + 1023) << 52); }

// egg_expf is e^d in float32 by SLEEF's Sleef_expf8_u10 (the host's AVX2 kernels and
// tensor.sleefExpf): within 1 ulp, +Inf above 100 (it overflows from 88.72), 0 below
// -104, subnormal results rounded once.
DEV float egg_expf(float d) {
	if (d != d) return d;
	if (d < -104.0f) return 0.0f;
	if (d > 100.0f) return F_INF;
	float qf = __builtin_rintf(d * 1.442695040888963407359924681001892137426645954f);
	int q = (int)qf;
	float s = __builtin_fmaf(qf, -0.693145751953125f, d);
	s = __builtin_fmaf(qf, -1.428606765330187045e-06f, s);
	float u = 0.000198527617612853646278381f;
	u = __builtin_fmaf(u, s, 0.00139304355252534151077271f);
	u = __builtin_fmaf(u, s, 0.00833336077630519866943359f);
	u = __builtin_fmaf(u, s, 0.0416664853692054748535156f);
	u = __builtin_fmaf(u, s, 0.166666671633720397949219f);
	u = __builtin_fmaf(u, s, 0.5f);
	u = 1.0f + __builtin_fmaf(s * s, u, s);
	// Scale by 2^q in two exact halves, then round once (subnormal results too).
	int h = q >> 1;
	return u * pow2f(h) * pow2f(q - h);
}

#define LN2_HI 6.93147180559945286227e-01 // ln 2 rounded to double
#define LN2_LO 2.31904681384629955842e-17 // ln 2 - LN2_HI
#define LOG2E 1.44269504088896338700e+00
#define SQRT2 1.41421356237309514547e+00

// expm1_reduced is e^r - 1 for |r| <= ln(2)/2 by its Taylor series to degree 13
// (truncation error below 1e-17).
DEV double expm1_reduced(double r) {
	double p = 1.0 / 6227020800.0; // 1/13!
	p = __builtin_fma(p, r, 1.0 / 479001600.0);
	p = __builtin_fma(p, r, 1.0 / 39916800.0);
	p = __builtin_fma(p, r, 1.0 / 3628800.0);
	p = __builtin_fma(p, r, 1.0 / 362880.0);
	p = __builtin_fma(p, r, 1.0 / 40320.0);
	p = __builtin_fma(p, r, 1.0 / 5040.0);
	p = __builtin_fma(p, r, 1.0 / 720.0);
	p = __builtin_fma(p, r, 1.0 / 120.0);
	p = __builtin_fma(p, r, 1.0 / 24.0);
	p = __builtin_fma(p, r, 1.0 / 6.0);
	p = __builtin_fma(p, r, 0.5);
	p = __builtin_fma(p, r, 1.0);
	return p * r;
}

// egg_exp is e^x in double, within a few ulp: x = k ln2 + r, e^r by expm1_reduced.
DEV double egg_exp(double x) {
	if (x != x) return x;
	if (x > 709.782712893384) return D_INF;
	if (x < -745.1332191019412) return 0.0;
	double k = __builtin_rint(x * LOG2E);
	double r = __builtin_fma(k, -LN2_HI, x);
	r = __builtin_fma(k, -LN2_LO, r);
	double e = 1.0 + expm1_reduced(r);
	int q = (int)k;
	int h = q >> 1;
	return e * pow2d(h) * pow2d(q - h);
}

// egg_expm1 is e^x - 1 in double, accurate near 0.
DEV double egg_expm1(double x) {
	if (__builtin_fabs(x) < 0.34657359027997264) return expm1_reduced(x);
	if (x < -40.0) return -1.0;
	return egg_exp(x) - 1.0;
}

// egg_log is ln x in double, within a few ulp: x = 2^e m with m in (sqrt(1/2), sqrt 2],
// ln m = 2 atanh((m-1)/(m+1)) by its series.
DEV double egg_log(double x) {
	if (!(x > 0.0)) return x == 0.0 ? -D_INF : D_NAN;
	if (x == D_INF) return x;
	int e = 0;
	if (x < 2.2250738585072014e-308) { // subnormal: scale into the normal range
		x *= 18014398509481984.0;         // 2^54
		e = -54;
	}
	u64 b = d_bits(x);
	e += (int)(b >> 52) - 1023;
	double m = d_from_bits((b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL);
	if (m > SQRT2) {
		m *= 0.5;
		e += 1;
	}
	double f = m - 1.0; // exact
	double s = f / (2.0 + f);
	double z = s * s;
	double t = 1.0 / 23.0;
	t = __builtin_fma(t, z, 1.0 / 21.0);
	t = __builtin_fma(t, z, 1.0 / 19.0);
	t = __builtin_fma(t, z, 1.0 / 17.0);
	t = __builtin_fma(t, z, 1.0 / 15.0);
	t = __builtin_fma(t, z, 1.0 / 13.0);
	t = __builtin_fma(t, z, 1.0 / 11.0);
	t = __builtin_fma(t, z, 1.0 / 9.0);
	t = __builtin_fma(t, z, 1.0 / 7.0);
	t = __builtin_fma(t, z, 1.0 / 5.0);
	t = __builtin_fma(t, z, 1.0 / 3.0);
	double l = 2.0 * s + 2.0 * s * (z * t);
	double de = (double)e;
	return de * LN2_HI + (de * LN2_LO + l);
}

// egg_log1p is ln(1+u) in double, accurate for tiny u.
DEV double egg_log1p(double u) {
	double w = 1.0 + u;
	if (w == 1.0) return u;
	if (w == D_INF) return w;
	return egg_log(w) * (u / (w - 1.0));
}

// egg_tanh is tanh x in double.
DEV double egg_tanh(double x) {
	double a = __builtin_fabs(x), t;
	if (a > 22.0) {
		t = 1.0;
	} else if (a < 0.5) {
		double e = egg_expm1(2.0 * a);
		t = e / (e + 2.0);
	} else {
		t = 1.0 - 2.0 / (egg_exp(2.0 * a) + 1.0);
	}
	return __builtin_copysign(t, x);
}

DEV bool is_int(double y) { return __builtin_trunc(y) == y; }

DEV bool is_odd_int(double y) {
	if (__builtin_fabs(y) >= 9007199254740992.0) return false; // 2^53: all even
	double h = y * 0.5;
	return is_int(y) && !is_int(h);
}

// egg_pow is x^y in double with the special cases of Go's math.Pow.
DEV double egg_pow(double x, double y) {
	if (y == 0.0 || x == 1.0) return 1.0;
	if (y == 1.0) return x;
	if (x != x || y != y) return D_NAN;
	if (x == 0.0) {
		bool neg = __builtin_signbit(x) && is_odd_int(y);
		if (y < 0.0) return neg ? -D_INF : D_INF;
		return neg ? x : 0.0;
	}
	if (__builtin_fabs(y) == D_INF) {
		if (x == -1.0) return 1.0;
		if ((__builtin_fabs(x) < 1.0) == (y > 0.0)) return 0.0;
		return D_INF;
	}
	if (__builtin_fabs(x) == D_INF) {
		if (x < 0.0) return egg_pow(1.0 / x, -y); // (-Inf)^y = (-0)^-y
		return y < 0.0 ? 0.0 : D_INF;
	}
	if (y == 0.5) return __builtin_sqrt(x);
	if (y == -0.5) return 1.0 / __builtin_sqrt(x);
	bool neg = false;
	if (x < 0.0) {
		if (!is_int(y)) return D_NAN;
		neg = is_odd_int(y);
		x = -x;
	}
	double r = egg_exp(y * egg_log(x));
	return neg ? -r : r;
}

// ---------------------------------------------------------------------------
// Block reductions (blockDim.x a power of two; every thread gets the result).

DEV double block_sum(double v, double* sh) {
	u32 t = tid_x(), n = ntid_x();
	sh[t] = v;
	SYNC();
	for (u32 s = n >> 1; s > 0; s >>= 1) {
		if (t < s) sh[t] += sh[t + s];
		SYNC();
	}
	double r = sh[0];
	SYNC();
	return r;
}

DEV void block_sum2(double* a, double* b, double* sha, double* shb) {
	u32 t = tid_x(), n = ntid_x();
	sha[t] = *a;
	shb[t] = *b;
	SYNC();
	for (u32 s = n >> 1; s > 0; s >>= 1) {
		if (t < s) {
			sha[t] += sha[t + s];
			shb[t] += shb[t + s];
		}
		SYNC();
	}
	*a = sha[0];
	*b = shb[0];
	SYNC();
}

// block_max is the maximum over the block, NaN if any value is NaN (as the host's
// `v > m || v != v`).
DEV float block_max(float v, float* sh) {
	u32 t = tid_x(), n = ntid_x();
	sh[t] = v;
	SYNC();
	for (u32 s = n >> 1; s > 0; s >>= 1) {
		if (t < s) {
			float o = sh[t + s];
			if (o > sh[t] || o != o) sh[t] = o;
		}
		SYNC();
	}
	float r = sh[0];
	SYNC();
	return r;
}

// ---------------------------------------------------------------------------
// Map and MapGrad (tensor/elementwise.go, tensor/simd_other.go).

DEV float sigmoidf(float v) { return 1.0f / (1.0f + egg_expf(-v)); }

DEV float map_f(int op, float v, float p0, float p1) {
	switch (op) {
	case MAP_SCALE:
		return v * p0;
	case MAP_ADD_SCALAR:
		return v + p0;
	case MAP_EXP:
		return egg_expf(v);
	case MAP_LOG:
		return (float)egg_log((double)v);
	case MAP_SQRT:
		return __builtin_sqrtf(v);
	case MAP_POW:
		return p0 == 2.0f ? v * v : (float)egg_pow((double)v, (double)p0);
	case MAP_ABS:
		return __builtin_fabsf(v);
	case MAP_CLAMP:
		return v < p0 ? p0 : (v > p1 ? p1 : v);
	case MAP_SIGMOID:
		return sigmoidf(v);
	case MAP_SILU:
		return v / (1.0f + egg_expf(-v));
	case MAP_RELU:
		return v != v ? v : (v > 0.0f ? v : 0.0f); // Go's max(v, 0): NaN stays, -0 -> 0
	case MAP_ELU:
		return v > 0.0f ? v : p0 * (float)egg_expm1((double)v);
	case MAP_TANH:
		return (float)egg_tanh((double)v);
	case MAP_SOFTPLUS:
		return v > 20.0f ? v : (float)egg_log1p(egg_exp((double)v));
	}
	return v;
}

// map_grad is g * f'(x) with y = f(x), written as the host writes each derivative.
DEV float map_grad(int op, float g, float x, float y, float p0, float p1) {
	switch (op) {
	case MAP_SCALE:
		return g * p0;
	case MAP_ADD_SCALAR:
		return g * 1.0f;
	case MAP_EXP:
		return g * y;
	case MAP_LOG:
		return g * (1.0f / x);
	case MAP_SQRT:
		return g * (0.5f / y);
	case MAP_POW:
		if (p0 == 2.0f) return g * (2.0f * x);
		return g * (p0 * (float)egg_pow((double)x, (double)(p0 - 1.0f)));
	case MAP_ABS:
		return g * (x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f));
	case MAP_CLAMP:
		return g * ((x < p0 || x > p1) ? 0.0f : 1.0f);
	case MAP_SIGMOID:
		return g * (1.0f - y) * y;
	case MAP_SILU: {
		float e = egg_expf(-x);
		float s = 1.0f / (1.0f + e);
		if (e > F_MAX) e = F_MAX; // 0, not NaN, where e overflows and s is 0
		return g * s * (1.0f + x * (e * s));
	}
	case MAP_RELU:
		return g * (x > 0.0f ? 1.0f : 0.0f);
	case MAP_ELU:
		return x > 0.0f ? g : g * p0 * egg_expf(x);
	case MAP_TANH:
		return g * (1.0f - y * y);
	case MAP_SOFTPLUS:
		return g * sigmoidf(x);
	}
	return g;
}

extern "C" __global__ BOUNDS(256) void egg_map(int op, float* y, const float* x, i64 n, float p0, float p1) {
	for (i64 i = GID_X(); i < n; i += GSTRIDE_X()) y[i] = map_f(op, x[i], p0, p1);
}

// x or y may be null for the ops that do not read them.
extern "C" __global__ BOUNDS(256) void egg_map_grad(int op, float* gx, const float* g, const float* x, const float* y, i64 n,
                                        float p0, float p1) {
	for (i64 i = GID_X(); i < n; i += GSTRIDE_X()) {
		float xv = x ? x[i] : 0.0f;
		float yv = y ? y[i] : 0.0f;
		gx[i] = map_grad(op, g[i], xv, yv, p0, p1);
	}
}

// ---------------------------------------------------------------------------
// Binary and Strided: up to 6 axes, outermost first; the host drops axes of size 1
// and merges contiguous ones first. U is the unsigned index type (32-bit when every
// index and offset fits), S the signed offset type.

struct Dims {
	i64 v[6];
};

template <typename U, typename S>
DEV void binary_impl(int op, float* out, const float* a, const float* b, i64 n, int rank, const Dims& shape,
                     const Dims& sa, const Dims& sb) {
	U total = (U)n;
	U stride = (U)GSTRIDE_X();
	for (U i = (U)GID_X(); i < total; i += stride) {
		S oa, ob;
		if (rank == 1) {
			oa = (S)i * (S)sa.v[0];
			ob = (S)i * (S)sb.v[0];
		} else {
			U rem = i;
			oa = 0;
			ob = 0;
			for (int k = rank - 1; k >= 0; --k) {
				U s = (U)shape.v[k];
				U q = rem / s;
				S c = (S)(rem - q * s);
				rem = q;
				oa += c * (S)sa.v[k];
				ob += c * (S)sb.v[k];
			}
		}
		float av = a[oa], bv = b[ob], r;
		switch (op) {
		case BINARY_ADD:
			r = av + bv;
			break;
		case BINARY_SUB:
			r = av - bv;
			break;
		case BINARY_MUL:
			r = av * bv;
			break;
		default:
			r = av / bv;
			break;
		}
		out[i] = r;
	}
}

extern "C" __global__ BOUNDS(256) void egg_binary32(int op, float* out, const float* a, const float* b, i64 n, int rank,
                                        Dims shape, Dims sa, Dims sb) {
	binary_impl<u32, int>(op, out, a, b, n, rank, shape, sa, sb);
}

extern "C" __global__ BOUNDS(256) void egg_binary64(int op, float* out, const float* a, const float* b, i64 n, int rank,
                                        Dims shape, Dims sa, Dims sb) {
	binary_impl<u64, i64>(op, out, a, b, n, rank, shape, sa, sb);
}

template <typename U, typename S>
DEV void strided_impl(float* dst, const float* src, i64 n, int rank, const Dims& shape, const Dims& st) {
	U total = (U)n;
	U stride = (U)GSTRIDE_X();
	for (U i = (U)GID_X(); i < total; i += stride) {
		S off;
		if (rank == 1) {
			off = (S)i * (S)st.v[0];
		} else {
			U rem = i;
			off = 0;
			for (int k = rank - 1; k >= 0; --k) {
				U s = (U)shape.v[k];
				U q = rem / s;
				off += (S)(rem - q * s) * (S)st.v[k];
				rem = q;
			}
		}
		dst[i] = src[off];
	}
}

extern "C" __global__ BOUNDS(256) void egg_strided32(float* dst, const float* src, i64 n, int rank, Dims shape, Dims st) {
	strided_impl<u32, int>(dst, src, n, rank, shape, st);
}

extern "C" __global__ BOUNDS(256) void egg_strided64(float* dst, const float* src, i64 n, int rank, Dims shape, Dims st) {
	strided_impl<u64, i64>(dst, src, n, rank, shape, st);
}

// Scatter is Strided's transpose: the contiguous src of shape is written to
// dst[idx . st] (each destination at most once).
template <typename U, typename S>
DEV void scatter_impl(float* dst, const float* src, i64 n, int rank, const Dims& shape, const Dims& st) {
	U total = (U)n;
	U stride = (U)GSTRIDE_X();
	for (U i = (U)GID_X(); i < total; i += stride) {
		S off;
		if (rank == 1) {
			off = (S)i * (S)st.v[0];
		} else {
			U rem = i;
			off = 0;
			for (int k = rank - 1; k >= 0; --k) {
				U s = (U)shape.v[k];
				U q = rem / s;
				off += (S)(rem - q * s) * (S)st.v[k];
				rem = q;
			}
		}
		dst[off] = src[i];
	}
}

extern "C" __global__ BOUNDS(256) void egg_scatter32(float* dst, const float* src, i64 n, int rank, Dims shape, Dims st) {
	scatter_impl<u32, int>(dst, src, n, rank, shape, st);
}

extern "C" __global__ BOUNDS(256) void egg_scatter64(float* dst, const float* src, i64 n, int rank, Dims shape, Dims st) {
	scatter_impl<u64, i64>(dst, src, n, rank, shape, st);
}

// ---------------------------------------------------------------------------
// SumAxis: out[o*inner+i] = sum_j x[(o*n+j)*inner+i], accumulated in double.

// One thread per output.
extern "C" __global__ BOUNDS(256) void egg_sum_axis_thread(float* out, const float* x, i64 outer, i64 n, i64 inner) {
	i64 total = outer * inner;
	for (i64 idx = GID_X(); idx < total; idx += GSTRIDE_X()) {
		i64 o = idx / inner, i = idx - o * inner;
		const float* p = x + o * n * inner + i;
		double s = 0.0;
		for (i64 j = 0; j < n; j++) s += (double)p[j * inner];
		out[idx] = (float)s;
	}
}

// One block per output: for long sums over few outputs (inner == 1 above all).
extern "C" __global__ BOUNDS(256) void egg_sum_axis_block(float* out, const float* x, i64 outer, i64 n, i64 inner) {
	__shared__ double sh[MAXB];
	i64 total = outer * inner;
	u32 t = tid_x(), nt = ntid_x();
	for (i64 idx = ctaid_x(); idx < total; idx += nctaid_x()) {
		i64 o = idx / inner, i = idx - o * inner;
		const float* p = x + o * n * inner + i;
		double s = 0.0;
		for (i64 j = t; j < n; j += nt) s += (double)p[j * inner];
		s = block_sum(s, sh);
		if (t == 0) out[idx] = (float)s;
	}
}

// ---------------------------------------------------------------------------
// Im2Col and Col2Im (tensor/conv.go): cols [N, C*KH*KW, OH*OW], row (ci*KH+ky)*KW+kx,
// column oy*OW+ox, reading x[iy, ix] with iy = oy*stride - pad + ky*dil (x the same).
// The host checks that one image's planes (H*W, OH*OW) and the taps fit in 32 bits.

// 2-D grid: rows (image, cols row) along y, columns along x.
extern "C" __global__ BOUNDS(256) void egg_im2col(float* cols, const float* x, i64 N, i64 C, i64 H, i64 W, i64 KH, i64 KW,
                                      i64 OH, i64 OW, i64 stride, i64 pad, i64 dil) {
	i64 K = C * KH * KW, L = OH * OW, rows = N * K;
	int h = (int)H, w = (int)W, ow = (int)OW, s = (int)stride;
	for (i64 r = GID2_Y(); r < rows; r += GSTRIDE2_Y()) {
		i64 img = r / K, rr = r - img * K;
		int kx = (int)(rr % KW);
		i64 t = rr / KW;
		int ky = (int)(t % KH);
		i64 ci = t / KH;
		const float* src = x + (img * C + ci) * H * W;
		float* dst = cols + r * L;
		int y0 = ky * (int)dil - (int)pad, x0 = kx * (int)dil - (int)pad;
		for (i64 col = GID2_X(); col < L; col += GSTRIDE2_X()) {
			int oy = (int)((u32)col / (u32)ow);
			int ox = (int)col - oy * ow;
			int iy = oy * s + y0, ix = ox * s + x0;
			float v = 0.0f;
			if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = src[(i64)iy * W + ix];
			dst[col] = v;
		}
	}
}

// Col2Im as a gather: each thread one input pixel, summing in double the taps that read
// it (ky, then kx), so the result is deterministic, without atomics.
// 2-D grid: planes (image, channel) along y, pixels along x.
extern "C" __global__ BOUNDS(256) void egg_col2im(float* gx, const float* cols, i64 N, i64 C, i64 H, i64 W, i64 KH, i64 KW,
                                      i64 OH, i64 OW, i64 stride, i64 pad, i64 dil) {
	i64 L = OH * OW, HW = H * W, planes = N * C;
	int w = (int)W, kh = (int)KH, kw = (int)KW, oh = (int)OH, ow = (int)OW;
	int s = (int)stride, p = (int)pad, d = (int)dil;
	for (i64 pl = GID2_Y(); pl < planes; pl += GSTRIDE2_Y()) {
		// cols rows of image img, channel ci start at (img*C + ci)*KH*KW.
		const float* src = cols + pl * KH * KW * L;
		float* dst = gx + pl * HW;
		for (i64 q = GID2_X(); q < HW; q += GSTRIDE2_X()) {
			int iy = (int)((u32)q / (u32)w);
			int ix = (int)q - iy * w;
			double acc = 0.0;
			for (int ky = 0; ky < kh; ky++) {
				int ty = iy + p - ky * d;
				if (ty < 0) break;
				if (ty % s != 0) continue;
				int oy = ty / s;
				if (oy >= oh) continue;
				for (int kx = 0; kx < kw; kx++) {
					int tx = ix + p - kx * d;
					if (tx < 0) break;
					if (tx % s != 0) continue;
					int ox = tx / s;
					if (ox >= ow) continue;
					acc += (double)src[(i64)(ky * kw + kx) * L + (i64)oy * ow + ox];
				}
			}
			dst[q] = (float)acc;
		}
	}
}

// ---------------------------------------------------------------------------
// GroupNorm (tensor/norm.go): x [n, c, hw], groups of cg = c/groups channels, D = cg*hw
// elements per (sample, group). One block per (sample, group).

extern "C" __global__ BOUNDS(512) void egg_group_norm(float* y, float* mean, float* rstd, const float* x, const float* w,
                                          const float* b, i64 n, i64 c, i64 hw, i64 groups, float eps) {
	__shared__ double sh1[MAXB];
	__shared__ double sh2[MAXB];
	__shared__ float ca[MAXCG];
	__shared__ float cb[MAXCG];
	i64 cg = c / groups, D = cg * hw, rows = n * groups;
	u32 t = tid_x(), nt = ntid_x();
	if (D == 0) return;
	for (i64 i = ctaid_x(); i < rows; i += nctaid_x()) {
		const float* xs = x + i * D;
		float* ys = y + i * D;
		// Shifted sums in double around the group's first value, as the host.
		double shift = (double)xs[0];
		double s1 = 0.0, s2 = 0.0;
		for (i64 j = t; j < D; j += nt) {
			double dv = (double)xs[j] - shift;
			s1 += dv;
			s2 += dv * dv;
		}
		block_sum2(&s1, &s2, sh1, sh2);
		double m = s1 / (double)D;
		double mu = shift + m;
		double var = s2 / (double)D - m * m;
		if (var < 0.0) var = 0.0;
		double r = 1.0 / __builtin_sqrt(var + (double)eps);
		if (t == 0) {
			if (mean) mean[i] = (float)mu;
			if (rstd) rstd[i] = (float)r;
		}
		i64 c0 = (i % groups) * cg;
		if (hw >= (i64)nt || cg > MAXCG) {
			for (i64 k = 0; k < cg; k++) {
				double a = r * (w ? (double)w[c0 + k] : 1.0);
				float a32 = (float)a, b32 = (float)((b ? (double)b[c0 + k] : 0.0) - mu * a);
				const float* xk = xs + k * hw;
				float* yk = ys + k * hw;
				for (i64 j = t; j < hw; j += nt) yk[j] = xk[j] * a32 + b32;
			}
		} else {
			// Small planes: coefficients in shared memory, one pass over the group.
			for (i64 k = t; k < cg; k += nt) {
				double a = r * (w ? (double)w[c0 + k] : 1.0);
				ca[k] = (float)a;
				cb[k] = (float)((b ? (double)b[c0 + k] : 0.0) - mu * a);
			}
			SYNC();
			for (i64 j = t; j < D; j += nt) {
				i64 k = j / hw;
				ys[j] = xs[j] * ca[k] + cb[k];
			}
			SYNC();
		}
	}
}

// GroupNormGrad, step 1: per (sample, channel) row of hw values, ds = sum g*x and
// db = sum g in double. One block per row.
extern "C" __global__ BOUNDS(256) void egg_gn_grad_stats(double* ds, double* db, const float* g, const float* x, i64 rows,
                                             i64 hw) {
	__shared__ double sh1[MAXB];
	__shared__ double sh2[MAXB];
	u32 t = tid_x(), nt = ntid_x();
	for (i64 i = ctaid_x(); i < rows; i += nctaid_x()) {
		const float* gs = g + i * hw;
		const float* xs = x + i * hw;
		double a = 0.0, s = 0.0;
		for (i64 j = t; j < hw; j += nt) {
			double gv = (double)gs[j];
			a += gv * (double)xs[j];
			s += gv;
		}
		block_sum2(&a, &s, sh1, sh2);
		if (t == 0) {
			ds[i] = a;
			db[i] = s;
		}
	}
}

// GroupNormGrad, step 2: gx = (rstd w_c) g + c2 x + c3 per (sample, group), with
// A = sum_c w_c db, B = sum_c w_c ds over the group, c2 = -rstd^3 (B - mean A) / D and
// c3 = -c2 mean - rstd A / D. One block per (sample, group).
extern "C" __global__ BOUNDS(512) void egg_gn_grad_x(float* gx, const float* g, const float* x, const float* mean,
                                         const float* rstd, const float* w, const double* ds, const double* db,
                                         i64 n, i64 c, i64 hw, i64 groups) {
	__shared__ float ca[MAXCG];
	i64 cg = c / groups, D = cg * hw, rows = n * groups;
	u32 t = tid_x(), nt = ntid_x();
	if (D == 0) return;
	for (i64 i = ctaid_x(); i < rows; i += nctaid_x()) {
		i64 nn = i / groups, c0 = (i % groups) * cg;
		double A = 0.0, B = 0.0;
		for (i64 k = 0; k < cg; k++) {
			double wk = w ? (double)w[c0 + k] : 1.0;
			A += wk * db[nn * c + c0 + k];
			B += wk * ds[nn * c + c0 + k];
		}
		double m = (double)mean[i], r = (double)rstd[i];
		double c2 = -r * r * r * (B - m * A) / (double)D;
		double c3 = -c2 * m - r * A / (double)D;
		float c2f = (float)c2, c3f = (float)c3;
		const float* gs = g + i * D;
		const float* xs = x + i * D;
		float* out = gx + i * D;
		if (hw >= (i64)nt || cg > MAXCG) {
			for (i64 k = 0; k < cg; k++) {
				float a = (float)(r * (w ? (double)w[c0 + k] : 1.0));
				for (i64 j = t; j < hw; j += nt) {
					i64 e = k * hw + j;
					out[e] = a * gs[e] + c2f * xs[e] + c3f;
				}
			}
		} else {
			for (i64 k = t; k < cg; k += nt) ca[k] = (float)(r * (w ? (double)w[c0 + k] : 1.0));
			SYNC();
			for (i64 j = t; j < D; j += nt) out[j] = ca[j / hw] * gs[j] + c2f * xs[j] + c3f;
			SYNC();
		}
	}
}

// GroupNormGrad, step 3: gw_c = sum_n rstd (ds - mean db), gb_c = sum_n db. One
// thread per channel; gw or gb may be null.
extern "C" __global__ BOUNDS(256) void egg_gn_grad_wb(float* gw, float* gb, const float* mean, const float* rstd,
                                          const double* ds, const double* db, i64 n, i64 c, i64 groups) {
	i64 cg = c / groups;
	for (i64 ch = GID_X(); ch < c; ch += GSTRIDE_X()) {
		double sw = 0.0, sb = 0.0;
		for (i64 nn = 0; nn < n; nn++) {
			i64 i = nn * groups + ch / cg;
			double dsv = ds[nn * c + ch], dbv = db[nn * c + ch];
			sw += (double)rstd[i] * (dsv - (double)mean[i] * dbv);
			sb += dbv;
		}
		if (gw) gw[ch] = (float)sw;
		if (gb) gb[ch] = (float)sb;
	}
}

// ---------------------------------------------------------------------------
// Softmax and SoftmaxGrad over [outer, n, inner] along n (tensor/softmax.go).

// inner == 1: one block per row. Softmax as the host's softmaxRowFast (float32 e^x,
// sum in double, times the float32 reciprocal); log-softmax as softmaxRow.
extern "C" __global__ BOUNDS(256) void egg_softmax_rows(float* y, const float* x, i64 rows, i64 n, int log) {
	__shared__ float shm[MAXB];
	__shared__ double shs[MAXB];
	u32 t = tid_x(), nt = ntid_x();
	for (i64 r = ctaid_x(); r < rows; r += nctaid_x()) {
		const float* xs = x + r * n;
		float* ys = y + r * n;
		float m = -F_INF;
		for (i64 j = t; j < n; j += nt) {
			float v = xs[j];
			if (v > m || v != v) m = v;
		}
		m = block_max(m, shm);
		double s = 0.0;
		if (log) {
			for (i64 j = t; j < n; j += nt) s += egg_exp((double)(xs[j] - m));
			s = block_sum(s, shs);
			float ls = (float)egg_log(s);
			for (i64 j = t; j < n; j += nt) ys[j] = (xs[j] - m) - ls;
		} else {
			for (i64 j = t; j < n; j += nt) {
				float e = egg_expf(xs[j] - m);
				ys[j] = e;
				s += (double)e;
			}
			s = block_sum(s, shs);
			float inv = (float)(1.0 / s);
			for (i64 j = t; j < n; j += nt) ys[j] = ys[j] * inv;
		}
	}
}

// inner > 1: one thread per (outer, inner) column, as the host's blocked loop.
extern "C" __global__ BOUNDS(256) void egg_softmax_cols(float* y, const float* x, i64 outer, i64 n, i64 inner, int log) {
	i64 total = outer * inner;
	for (i64 idx = GID_X(); idx < total; idx += GSTRIDE_X()) {
		i64 o = idx / inner, i = idx - o * inner;
		const float* xs = x + o * n * inner + i;
		float* ys = y + o * n * inner + i;
		float m = xs[0];
		for (i64 r = 1; r < n; r++) {
			float v = xs[r * inner];
			if (v > m || v != v) m = v;
		}
		double s = 0.0;
		for (i64 r = 0; r < n; r++) {
			double e = egg_exp((double)(xs[r * inner] - m));
			s += e;
			if (!log) ys[r * inner] = (float)e;
		}
		if (log) {
			float ls = (float)egg_log(s);
			for (i64 r = 0; r < n; r++) ys[r * inner] = (xs[r * inner] - m) - ls;
		} else {
			for (i64 r = 0; r < n; r++) ys[r * inner] = (float)((double)ys[r * inner] / s);
		}
	}
}

// Softmax: gx = y (g - sum g y); log-softmax: gx = g - e^y sum g. inner == 1, one
// block per row.
extern "C" __global__ BOUNDS(256) void egg_softmax_grad_rows(float* gx, const float* g, const float* y, i64 rows, i64 n,
                                                 int log) {
	__shared__ double shs[MAXB];
	u32 t = tid_x(), nt = ntid_x();
	for (i64 r = ctaid_x(); r < rows; r += nctaid_x()) {
		const float* gs = g + r * n;
		const float* ys = y + r * n;
		float* out = gx + r * n;
		double s = 0.0;
		for (i64 j = t; j < n; j += nt) s += log ? (double)gs[j] : (double)gs[j] * (double)ys[j];
		s = block_sum(s, shs);
		for (i64 j = t; j < n; j += nt) {
			if (log)
				out[j] = (float)((double)gs[j] - egg_exp((double)ys[j]) * s);
			else
				out[j] = (float)((double)ys[j] * ((double)gs[j] - s));
		}
	}
}

// The same with inner > 1: one thread per (outer, inner) column.
extern "C" __global__ BOUNDS(256) void egg_softmax_grad_cols(float* gx, const float* g, const float* y, i64 outer, i64 n,
                                                 i64 inner, int log) {
	i64 total = outer * inner;
	for (i64 idx = GID_X(); idx < total; idx += GSTRIDE_X()) {
		i64 o = idx / inner, i = idx - o * inner;
		i64 base = o * n * inner + i;
		double s = 0.0;
		for (i64 r = 0; r < n; r++) {
			i64 e = base + r * inner;
			s += log ? (double)g[e] : (double)g[e] * (double)y[e];
		}
		for (i64 r = 0; r < n; r++) {
			i64 e = base + r * inner;
			if (log)
				gx[e] = (float)((double)g[e] - egg_exp((double)y[e]) * s);
			else
				gx[e] = (float)((double)y[e] * ((double)g[e] - s));
		}
	}
}

// ---------------------------------------------------------------------------
// Upsample and UpsampleGrad (nearest, integer scale s; tensor/pool.go).

// out [p, h*s, w*s]; rows = p*h*s along y, columns w*s along x. Output row r reads
// input row r/s (of the flattened [p*h, w]).
extern "C" __global__ BOUNDS(256) void egg_upsample(float* out, const float* x, i64 rows, i64 w, i64 s) {
	i64 wo = w * s;
	u32 su = (u32)s;
	for (i64 r = GID2_Y(); r < rows; r += GSTRIDE2_Y()) {
		const float* src = x + (r / s) * w;
		float* dst = out + r * wo;
		for (i64 col = GID2_X(); col < wo; col += GSTRIDE2_X()) dst[col] = src[(u32)col / su];
	}
}

// gx [p, h, w] = the sum in double of g [p, h*s, w*s] over each s x s block, rows (k)
// then columns, as the host. rows = p*h along y, w along x.
extern "C" __global__ BOUNDS(256) void egg_upsample_grad(float* gx, const float* g, i64 rows, i64 w, i64 s) {
	i64 wo = w * s;
	for (i64 r = GID2_Y(); r < rows; r += GSTRIDE2_Y()) {
		for (i64 col = GID2_X(); col < w; col += GSTRIDE2_X()) {
			double acc = 0.0;
			for (i64 k = 0; k < s; k++) {
				const float* gr = g + (r * s + k) * wo + col * s;
				for (i64 j = 0; j < s; j++) acc += (double)gr[j];
			}
			gx[r * w + col] = (float)acc;
		}
	}
}

// ---------------------------------------------------------------------------
// ToHalf: the operands of a reduced-precision GEMM (cuda/kernels.go), float32 to
// IEEE half or bfloat16 bits, rounding to nearest even. A NaN stays a (quiet) NaN;
// a magnitude past the largest finite value rounds to infinity; half's subnormals
// are kept.

DEV unsigned short f32_to_f16(float f) {
	u32 x = __builtin_bit_cast(u32, f);
	u32 sign = (x >> 16) & 0x8000u;
	u32 ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); // NaN
	if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); // >= 65520: infinity
	if (ax < 0x38800000u) { // under 2^-14: a subnormal half, in units of 2^-24
		if (ax <= 0x33000000u) return (unsigned short)sign; // <= 2^-25 (a tie, to even): zero
		u32 e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
		u32 shift = 126u - e; // 14..24
		u32 q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
		if (rem > half || (rem == half && (q & 1u))) q++;
		return (unsigned short)(sign | q);
	}
	u32 r = ax - 0x38000000u; // rebias the exponent from 127 to 15
	u32 q = r >> 13, rem = r & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++; // a carry moves into the exponent
	return (unsigned short)(sign | q);
}

DEV unsigned short f32_to_bf16(float f) {
	u32 x = __builtin_bit_cast(u32, f);
	if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u); // NaN
	return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// dst[i] = src[i] as half (bf16 == 0) or bfloat16 (bf16 != 0) bits.
extern "C" __global__ BOUNDS(256) void egg_to_half(unsigned short* dst, const float* src, i64 n, int bf16) {
	for (i64 i = GID_X(); i < n; i += GSTRIDE_X()) dst[i] = bf16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
}

// ---------------------------------------------------------------------------
// MaxPool and MaxPoolGrad (tensor/pool.go's MaxPool2D). Geometry: planes p of
// h x w, outputs oh x ow, window k, stride s, padding pad. arg holds each output's
// winner, an index within its plane, as int32 bits.

// One thread per output: the window's maximum, a NaN winning (the last of several).
extern "C" __global__ BOUNDS(256) void egg_maxpool(float* out, int* arg, const float* x, i64 p, i64 h, i64 w, i64 oh,
                                                   i64 ow, i64 k, i64 s, i64 pad) {
	i64 n = p * oh * ow;
	for (i64 o = GID_X(); o < n; o += GSTRIDE_X()) {
		i64 ox = o % ow, oy = (o / ow) % oh, pl = o / (ow * oh);
		i64 y0 = oy * s - pad, x0 = ox * s - pad;
		i64 y1 = y0 + k < h ? y0 + k : h, x1 = x0 + k < w ? x0 + k : w;
		if (y0 < 0) y0 = 0;
		if (x0 < 0) x0 = 0;
		const float* src = x + pl * h * w;
		float best = -F_INF;
		i64 bi = y0 * w + x0;
		for (i64 iy = y0; iy < y1; iy++)
			for (i64 ix = x0; ix < x1; ix++) {
				float v = src[iy * w + ix];
				if (v > best || v != v) {
					best = v;
					bi = iy * w + ix;
				}
			}
		out[o] = best;
		arg[o] = (int)bi;
	}
}

// One thread per input pixel: the sum in float32, in output order, of the
// gradients of the outputs it won.
extern "C" __global__ BOUNDS(256) void egg_maxpool_grad(float* gx, const float* g, const int* arg, i64 p, i64 h, i64 w,
                                                        i64 oh, i64 ow, i64 k, i64 s, i64 pad) {
	i64 n = p * h * w;
	for (i64 i = GID_X(); i < n; i += GSTRIDE_X()) {
		i64 ix = i % w, iy = (i / w) % h, pl = i / (w * h);
		i64 self = iy * w + ix;
		// The outputs whose window holds (iy, ix): oy*s - pad <= iy < oy*s - pad + k.
		i64 oy0 = iy + pad - k + 1, ox0 = ix + pad - k + 1;
		oy0 = oy0 <= 0 ? 0 : (oy0 + s - 1) / s;
		ox0 = ox0 <= 0 ? 0 : (ox0 + s - 1) / s;
		i64 oy1 = (iy + pad) / s, ox1 = (ix + pad) / s;
		if (oy1 > oh - 1) oy1 = oh - 1;
		if (ox1 > ow - 1) ox1 = ow - 1;
		float sum = 0.0f;
		for (i64 oy = oy0; oy <= oy1; oy++)
			for (i64 ox = ox0; ox <= ox1; ox++) {
				i64 o = (pl * oh + oy) * ow + ox;
				if (arg[o] == self) sum += g[o];
			}
		gx[i] = sum;
	}
}

// ---------------------------------------------------------------------------
// GridSample and its gradients (tensor/gridsample.go): bilinear, zero padding.
// x [n, c, h, w], grid [n, p, 2] (x then y, normalised), out [n, c, p].

#define GRID_BLOCK 8 // tensor's gridBlock: the host adds x's gradient in blocks of 8 points

struct GridPt {
	i64 x0, y0;
	float w, n; // distances to the north-west corner
};

// grid_unnorm maps a normalised coordinate to pixels (tensor's gridUnnormalize).
DEV float grid_unnorm(float g, i64 size, int align) {
	if (align) return (g + 1.0f) * ((float)(size - 1) / 2.0f);
	return __builtin_fmaf(g + 1.0f, (float)size / 2.0f, -0.5f);
}

DEV float grid_mult(i64 size, int align) { return align ? (float)(size - 1) / 2.0f : (float)size / 2.0f; }

// grid_locate is tensor's locate: far outside (or NaN) samples nothing.
DEV GridPt grid_locate(const float* grid, i64 i, i64 w, i64 h, int align) {
	float px = grid_unnorm(grid[2 * i], w, align), py = grid_unnorm(grid[2 * i + 1], h, align);
	float xf = __builtin_floorf(px), yf = __builtin_floorf(py);
	GridPt p;
	if (!(xf >= -2.0f && xf <= (float)w && yf >= -2.0f && yf <= (float)h)) {
		p.x0 = -2;
		p.y0 = -2;
		p.w = 0.0f;
		p.n = 0.0f;
		return p;
	}
	p.x0 = (i64)xf;
	p.y0 = (i64)yf;
	p.w = px - xf;
	p.n = py - yf;
	return p;
}

DEV float grid_at(const float* img, i64 xi, i64 yi, i64 w, i64 h) {
	return (xi < 0 || xi >= w || yi < 0 || yi >= h) ? 0.0f : img[yi * w + xi];
}

// One thread per (point, channel) output.
extern "C" __global__ BOUNDS(256) void egg_grid_sample(float* out, const float* x, const float* grid, i64 n, i64 c, i64 h,
                                                       i64 w, i64 p, int align) {
	i64 total = n * c * p;
	for (i64 o = GID_X(); o < total; o += GSTRIDE_X()) {
		i64 q = o % p, ch = (o / p) % c, b = o / (p * c);
		GridPt pt = grid_locate(grid, b * p + q, w, h, align);
		float e = 1.0f - pt.w, s = 1.0f - pt.n;
		float nw = s * e, ne = s * pt.w, sw = pt.n * e, se = pt.n * pt.w;
		const float* img = x + (b * c + ch) * h * w;
		float v = __builtin_fmaf(grid_at(img, pt.x0 + 1, pt.y0, w, h), ne, grid_at(img, pt.x0, pt.y0, w, h) * nw);
		v = __builtin_fmaf(grid_at(img, pt.x0, pt.y0 + 1, w, h), sw, v);
		out[o] = __builtin_fmaf(grid_at(img, pt.x0 + 1, pt.y0 + 1, w, h), se, v);
	}
}

// One thread per pixel of gx: the contributions the host's scatter adds to it, in
// its order (blocks of GRID_BLOCK points, corner by corner).
extern "C" __global__ BOUNDS(256) void egg_grid_sample_grad_x(float* gx, const float* g, const float* grid, i64 n, i64 c,
                                                              i64 h, i64 w, i64 p, int align) {
	i64 total = n * c * h * w;
	for (i64 i = GID_X(); i < total; i += GSTRIDE_X()) {
		i64 ix = i % w, iy = (i / w) % h, pl = i / (w * h), b = pl / c;
		const float* gp = g + pl * p;
		float sum = 0.0f;
		for (i64 q0 = 0; q0 < p; q0 += GRID_BLOCK) {
			i64 q1 = q0 + GRID_BLOCK < p ? q0 + GRID_BLOCK : p;
			for (int corner = 0; corner < 4; corner++) {
				i64 dx = corner % 2, dy = corner / 2;
				for (i64 q = q0; q < q1; q++) {
					GridPt pt = grid_locate(grid, b * p + q, w, h, align);
					if (pt.x0 + dx != ix || pt.y0 + dy != iy) continue;
					float wx = dx ? pt.w : 1.0f - pt.w, wy = dy ? pt.n : 1.0f - pt.n;
					sum += wy * wx * gp[q];
				}
			}
		}
		gx[i] = sum;
	}
}

// One thread per point: the gradient of its samples w.r.t. its grid coordinates,
// summed over channels with g.
extern "C" __global__ BOUNDS(256) void egg_grid_sample_grad_grid(float* ggrid, const float* g, const float* x,
                                                                 const float* grid, i64 n, i64 c, i64 h, i64 w, i64 p,
                                                                 int align) {
	i64 total = n * p;
	for (i64 i = GID_X(); i < total; i += GSTRIDE_X()) {
		i64 q = i % p, b = i / p;
		GridPt pt = grid_locate(grid, i, w, h, align);
		float e = 1.0f - pt.w, s = 1.0f - pt.n;
		float dx = 0.0f, dy = 0.0f;
		for (i64 ch = 0; ch < c; ch++) {
			const float* img = x + (b * c + ch) * h * w;
			float gv = g[(b * c + ch) * p + q];
			float vnw = grid_at(img, pt.x0, pt.y0, w, h), vne = grid_at(img, pt.x0 + 1, pt.y0, w, h);
			float vsw = grid_at(img, pt.x0, pt.y0 + 1, w, h), vse = grid_at(img, pt.x0 + 1, pt.y0 + 1, w, h);
			dx = __builtin_fmaf(__builtin_fmaf(vse - vsw, pt.n, (vne - vnw) * s), gv, dx);
			dy = __builtin_fmaf(__builtin_fmaf(vse - vne, pt.w, (vsw - vnw) * e), gv, dy);
		}
		ggrid[2 * i] = dx * grid_mult(w, align);
		ggrid[2 * i + 1] = dy * grid_mult(h, align);
	}
}
