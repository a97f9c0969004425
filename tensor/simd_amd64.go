//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// useAVX2 reports whether the AVX2/FMA kernels of simd_amd64.s run (the CPU has both
// extensions); when it is false the portable kernels of simd_other.go stay in place.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	if !useAVX2 {
		return
	}
	simdKernels = "avx2"
	expSlice = expSliceAVX2
	sigmoidSlice = sigmoidSliceAVX2
	mulSigmoidSlice = mulSigmoidSliceAVX2
	siluSlice = siluSliceAVX2
	siluGradSlice = siluGradSliceAVX2
	eluSlice = eluSliceAVX2
	eluGradSlice = eluGradSliceAVX2
	tanhSlice = tanhSliceAVX2
	softplusSlice = softplusSliceAVX2
}

// The assembly kernels process n >= 0 floats from their inputs into dst, 8 at a time
// and the last n%8 with masked loads and stores, so that an element's result does not
// depend on where it sits in the slice. dst may equal an input.
//
// Their exponential is SLEEF's Sleef_expf8_u10, the one PyTorch's CPU kernels call:
// within 1 ulp of e^x and bit for bit equal to sleefExpf (and so to torch.exp), with
// subnormal results rounded (not flushed), 0 below -104, +Inf above 100 (e^x overflows
// float32 above 88.72284) and NaN in, NaN out.

// expAVX2 sets dst[i] = e^src[i].
//
//go:noescape
func expAVX2(dst, src *float32, n int)

// sigmoidAVX2 sets dst[i] = 1 / (1 + e^-src[i]).
//
//go:noescape
func sigmoidAVX2(dst, src *float32, n int)

// mulSigmoidAVX2 sets dst[i] = grad[i] / (1 + e^-x[i]).
//
//go:noescape
func mulSigmoidAVX2(dst, x, grad *float32, n int)

// siluAVX2 sets dst[i] = src[i] / (1 + e^-src[i]).
//
//go:noescape
func siluAVX2(dst, src *float32, n int)

// siluGradAVX2 sets dst[i] = grad[i] * s * (1 + x[i] (1 - s)) with s = 1 / (1 + e^-x[i])
// and 1 - s computed as min(e^-x[i], MaxFloat32) s.
//
//go:noescape
func siluGradAVX2(dst, x, grad *float32, n int)

// eluAVX2 sets dst[i] = src[i] where it is > 0, else alpha * (e^src[i] - 1) computed
// as an expm1 (within 2 ulp, accurate near 0).
//
//go:noescape
func eluAVX2(dst, src *float32, n int, alpha float32)

// eluGradAVX2 sets dst[i] = grad[i] where x[i] > 0, else grad[i] * alpha * e^x[i].
//
//go:noescape
func eluGradAVX2(dst, x, grad *float32, n int, alpha float32)

// tanhAVX2 sets dst[i] = tanh src[i] from expm1(-2|src[i]|).
//
//go:noescape
func tanhAVX2(dst, src *float32, n int)

// softplusAVX2 sets dst[i] = log(1 + e^src[i]) = max(src[i], 0) + log1p(e^-|src[i]|).
//
//go:noescape
func softplusAVX2(dst, src *float32, n int)

func expSliceAVX2(dst, src []float32) {
	if len(dst) > 0 {
		expAVX2(&dst[0], &src[:len(dst)][0], len(dst))
	}
}

func sigmoidSliceAVX2(dst, src []float32) {
	if len(dst) > 0 {
		sigmoidAVX2(&dst[0], &src[:len(dst)][0], len(dst))
	}
}

func mulSigmoidSliceAVX2(dst, x, g []float32) {
	if len(dst) > 0 {
		mulSigmoidAVX2(&dst[0], &x[:len(dst)][0], &g[:len(dst)][0], len(dst))
	}
}

func siluSliceAVX2(dst, src []float32) {
	if len(dst) > 0 {
		siluAVX2(&dst[0], &src[:len(dst)][0], len(dst))
	}
}

func siluGradSliceAVX2(dst, x, g []float32) {
	if len(dst) > 0 {
		siluGradAVX2(&dst[0], &x[:len(dst)][0], &g[:len(dst)][0], len(dst))
	}
}

func eluSliceAVX2(dst, src []float32, alpha float32) {
	if len(dst) > 0 {
		eluAVX2(&dst[0], &src[:len(dst)][0], len(dst), alpha)
	}
}

func eluGradSliceAVX2(dst, x, g []float32, alpha float32) {
	if len(dst) > 0 {
		eluGradAVX2(&dst[0], &x[:len(dst)][0], &g[:len(dst)][0], len(dst), alpha)
	}
}

func tanhSliceAVX2(dst, src []float32) {
	if len(dst) > 0 {
		tanhAVX2(&dst[0], &src[:len(dst)][0], len(dst))
	}
}

func softplusSliceAVX2(dst, src []float32) {
	if len(dst) > 0 {
		softplusAVX2(&dst[0], &src[:len(dst)][0], len(dst))
	}
}
