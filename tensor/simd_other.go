package tensor

import "math"

// The element-wise kernels of the exp family (Exp, Sigmoid, SiLU, ELU, Tanh,
// Softplus and their gradients) run over float32 slices through these variables.
// Each starts as the portable Go loop of this file (which has no build constraint),
// and that is what runs on other architectures, in purego builds and on amd64 CPUs
// without AVX2 and FMA; simd_amd64.go points them at AVX2/FMA assembly otherwise.
// The ops call them on the chunks of Device.parallel. A kernel writes len(dst)
// results; its inputs must be at least that long, and dst may be one of them (in
// place) but must not otherwise overlap them. Either way an element's result does
// not depend on its position, so it does not change with the chunking.
//
// The two implementations agree to within a few ulp, not bit for bit: the Go loops
// use expf (Cephes) and float64 math, the assembly SLEEF's expf.
var (
	simdKernels     = "go"              // which implementation runs: "go" or "avx2"
	expSlice        = expSliceGo        // dst = e^src
	sigmoidSlice    = sigmoidSliceGo    // dst = 1 / (1 + e^-src)
	mulSigmoidSlice = mulSigmoidSliceGo // dst = g / (1 + e^-x)
	siluSlice       = siluSliceGo       // dst = src / (1 + e^-src)
	siluGradSlice   = siluGradSliceGo   // dst = g s (1 + x (1 - s)), s = sigmoid(x)
	eluSlice        = eluSliceGo        // dst = src > 0 ? src : alpha (e^src - 1)
	eluGradSlice    = eluGradSliceGo    // dst = x > 0 ? g : g alpha e^x
	tanhSlice       = tanhSliceGo       // dst = tanh src
	softplusSlice   = softplusSliceGo   // dst = log(1 + e^src)
)

func expSliceGo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = expf(v)
	}
}

func sigmoidSliceGo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = sigmoidf(v)
	}
}

func mulSigmoidSliceGo(dst, x, g []float32) {
	x, g = x[:len(dst)], g[:len(dst)]
	for i, v := range x {
		dst[i] = g[i] * sigmoidf(v)
	}
}

func siluSliceGo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = v / (1 + expf(-v))
	}
}

func siluGradSliceGo(dst, x, g []float32) {
	x, g = x[:len(dst)], g[:len(dst)]
	for i, v := range x {
		e := expf(-v)
		s := 1 / (1 + e)
		// 1 - s = e s, without the cancellation where s rounds to 1; e is capped so
		// that the product is 0, not NaN, where e overflows (and s is 0).
		if e > math.MaxFloat32 {
			e = math.MaxFloat32
		}
		dst[i] = g[i] * s * (1 + v*(e*s))
	}
}

func eluSliceGo(dst, src []float32, alpha float32) {
	src = src[:len(dst)]
	for i, v := range src {
		if v > 0 {
			dst[i] = v
		} else {
			dst[i] = alpha * float32(math.Expm1(float64(v)))
		}
	}
}

func eluGradSliceGo(dst, x, g []float32, alpha float32) {
	x, g = x[:len(dst)], g[:len(dst)]
	for i, v := range x {
		if v > 0 {
			dst[i] = g[i]
		} else {
			dst[i] = g[i] * alpha * expf(v)
		}
	}
}

func tanhSliceGo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = float32(math.Tanh(float64(v)))
	}
}

func softplusSliceGo(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		if v > 20 {
			dst[i] = v
		} else {
			dst[i] = float32(math.Log1p(math.Exp(float64(v))))
		}
	}
}

// mapSlices returns k(dst, x) computed over x's data in chunks on the device's
// goroutines, without recording a node.
func mapSlices(x *Tensor, k func(dst, src []float32)) *Tensor {
	out := empty(x.dev, x.shape...)
	x.dev.parallel(x.Len(), 16384, func(lo, hi int) {
		k(out.h()[lo:hi], x.h()[lo:hi])
	})
	return out
}

// zipSlices returns k(dst, a, b) computed over the data of a and b (of one shape) in
// chunks on the device's goroutines, without recording a node.
func zipSlices(a, b *Tensor, k func(dst, a, b []float32)) *Tensor {
	out := empty(a.dev, a.shape...)
	a.dev.parallel(a.Len(), 16384, func(lo, hi int) {
		k(out.h()[lo:hi], a.h()[lo:hi], b.h()[lo:hi])
	})
	return out
}

// sigmoidGradSlice sets dst = g (1 - y) y, the gradient of y = sigmoid(x).
func sigmoidGradSlice(dst, y, g []float32) {
	y, g = y[:len(dst)], g[:len(dst)]
	for i, v := range y {
		dst[i] = g[i] * (1 - v) * v
	}
}

// tanhGradSlice sets dst = g (1 - y^2), the gradient of y = tanh(x).
func tanhGradSlice(dst, y, g []float32) {
	y, g = y[:len(dst)], g[:len(dst)]
	for i, v := range y {
		dst[i] = g[i] * (1 - v*v)
	}
}
