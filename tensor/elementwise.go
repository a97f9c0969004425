package tensor

import (
	"fmt"
	"math"
)

// binaryHost are the host kernels of the BinaryOps.
var binaryHost = [...]func(o, a, b []float32, sa, sb int){
	BinaryAdd: addKernel, BinarySub: subKernel, BinaryMul: mulKernel, BinaryDiv: divKernel,
}

// binaryRaw applies a broadcasting element-wise op without recording a node; op
// names the calling op in panics.
func binaryRaw(op string, code BinaryOp, a, b *Tensor) *Tensor {
	shape := a.shape
	if !sameShape(a.shape, b.shape) {
		shape = broadcastShape(op, a.shape, b.shape)
	}
	out := empty(a.dev, shape...)
	if k := a.dev.kern; k != nil {
		if out.Len() == 0 {
			return out
		}
		sizes, st := collapse(shape, bcastStrides(a.shape, shape), bcastStrides(b.shape, shape))
		if len(sizes) <= maxKernelRank {
			k.Binary(code, out.st.out(), a.st.in(), b.st.in(), sizes, st[0], st[1])
			return out
		}
	}
	f := binaryHost[code]
	if sameShape(a.shape, b.shape) {
		a.dev.parallel(out.Len(), 32768, func(lo, hi int) {
			f(out.h()[lo:hi], a.h()[lo:hi], b.h()[lo:hi], 1, 1)
		})
		return out
	}
	binaryKernel(a.dev, shape, a.h(), b.h(), out.h(), bcastStrides(a.shape, shape), bcastStrides(b.shape, shape), f)
	return out
}

func addKernel(o, a, b []float32, sa, sb int) {
	switch {
	case sa == 1 && sb == 1:
		b = b[:len(o)]
		a = a[:len(o)]
		for i := range o {
			o[i] = a[i] + b[i]
		}
	case sa == 1 && sb == 0:
		v := b[0]
		for i := range o {
			o[i] = a[i] + v
		}
	default:
		for i := range o {
			o[i] = a[i*sa] + b[i*sb]
		}
	}
}

func subKernel(o, a, b []float32, sa, sb int) {
	for i := range o {
		o[i] = a[i*sa] - b[i*sb]
	}
}

func mulKernel(o, a, b []float32, sa, sb int) {
	switch {
	case sa == 1 && sb == 1:
		b = b[:len(o)]
		a = a[:len(o)]
		for i := range o {
			o[i] = a[i] * b[i]
		}
	case sa == 1 && sb == 0:
		v := b[0]
		for i := range o {
			o[i] = a[i] * v
		}
	default:
		for i := range o {
			o[i] = a[i*sa] * b[i*sb]
		}
	}
}

func divKernel(o, a, b []float32, sa, sb int) {
	for i := range o {
		o[i] = a[i*sa] / b[i*sb]
	}
}

// Add returns a + b with broadcasting.
func Add(a, b *Tensor) *Tensor {
	out := binaryRaw("Add", BinaryAdd, a, b)
	na, nb, sa, sb := needs(a), needs(b), a.shape, b.shape
	return record(out, "Add", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if na {
			ga = sumTo(g, sa)
		}
		if nb {
			gb = sumTo(g, sb)
		}
		return []*Tensor{ga, gb}
	})
}

// Sub returns a - b with broadcasting.
func Sub(a, b *Tensor) *Tensor {
	out := binaryRaw("Sub", BinarySub, a, b)
	na, nb, sa, sb := needs(a), needs(b), a.shape, b.shape
	return record(out, "Sub", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if na {
			ga = sumTo(g, sa)
		}
		if nb {
			gb = scaleRaw(sumTo(g, sb), -1)
		}
		return []*Tensor{ga, gb}
	})
}

// Mul returns a * b element-wise with broadcasting.
func Mul(a, b *Tensor) *Tensor {
	out := binaryRaw("Mul", BinaryMul, a, b)
	na, nb, sa, sb := needs(a), needs(b), a.shape, b.shape
	// Keep only the operands the gradient rule uses: d(ab)/da = b, d(ab)/db = a.
	var keepA, keepB *Tensor
	if na {
		keepB = b
	}
	if nb {
		keepA = a
	}
	return record(out, "Mul", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if na {
			ga = sumTo(binaryRaw("Mul", BinaryMul, g, keepB), sa)
		}
		if nb {
			gb = sumTo(binaryRaw("Mul", BinaryMul, g, keepA), sb)
		}
		return []*Tensor{ga, gb}
	})
}

// Div returns a / b element-wise with broadcasting.
func Div(a, b *Tensor) *Tensor {
	out := binaryRaw("Div", BinaryDiv, a, b)
	return record(out, "Div", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		gOverB := binaryRaw("Div", BinaryDiv, g, b)
		if needs(a) {
			ga = sumTo(gOverB, a.shape)
		}
		if needs(b) {
			// d(a/b)/db = -a/b^2 = -(a/b)/b
			t := binaryRaw("Mul", BinaryMul, gOverB, out)
			gb = scaleRaw(sumTo(t, b.shape), -1)
		}
		return []*Tensor{ga, gb}
	})
}

// mapRaw applies f to every element without recording.
func mapRaw(x *Tensor, f func(float32) float32) *Tensor {
	out := empty(x.dev, x.shape...)
	x.dev.parallel(x.Len(), 16384, func(lo, hi int) {
		o, in := out.h()[lo:hi], x.h()[lo:hi]
		for i := range o {
			o[i] = f(in[i])
		}
	})
	return out
}

func scaleRaw(x *Tensor, s float32) *Tensor {
	if y := mapDev(MapScale, x, s, 0); y != nil {
		return y
	}
	return mapRaw(x, func(v float32) float32 { return v * s })
}

// mapDev runs the device kernel of code on x and returns the result, or nil when x
// is not on an accelerator with kernels.
func mapDev(code MapOp, x *Tensor, p0, p1 float32) *Tensor {
	k := x.dev.kern
	if k == nil {
		return nil
	}
	out := empty(x.dev, x.shape...)
	if n := x.Len(); n > 0 {
		k.Map(code, out.st.out(), x.st.in(), n, p0, p1)
	}
	return out
}

// mapGradDev runs the device kernel of code's derivative, gx = g * f'(x) (x or y =
// f(x) may be nil where the derivative does not use it), or returns nil when g is
// not on an accelerator with kernels.
func mapGradDev(code MapOp, g, x, y *Tensor, p0, p1 float32) *Tensor {
	k := g.dev.kern
	if k == nil {
		return nil
	}
	gx := empty(g.dev, g.shape...)
	if n := g.Len(); n > 0 {
		var xb, yb Buffer
		if x != nil {
			xb = x.st.in()
		}
		if y != nil {
			yb = y.st.in()
		}
		k.MapGrad(code, gx.st.out(), g.st.in(), xb, yb, n, p0, p1)
	}
	return gx
}

// unary applies f element-wise (code on an accelerator, with parameters p0, p1);
// df(x, y) is the derivative at x where y = f(x).
func unary(op string, code MapOp, p0, p1 float32, x *Tensor, f func(float32) float32, df func(x, y float32) float32) *Tensor {
	out := mapDev(code, x, p0, p1)
	if out == nil {
		out = mapRaw(x, f)
	}
	return record(out, op, []*Tensor{x}, func(g *Tensor) []*Tensor {
		if gx := mapGradDev(code, g, x, out, p0, p1); gx != nil {
			return []*Tensor{gx}
		}
		gx := empty(x.dev, x.shape...)
		gd, xd, od, gs := gx.h(), x.h(), out.h(), g.h()
		x.dev.parallel(gx.Len(), 16384, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				gd[i] = gs[i] * df(xd[i], od[i])
			}
		})
		return []*Tensor{gx}
	})
}

// Scale returns x * s.
func Scale(x *Tensor, s float32) *Tensor {
	return unary("Scale", MapScale, s, 0, x, func(v float32) float32 { return v * s }, func(_, _ float32) float32 { return s })
}

// AddScalar returns x + s.
func AddScalar(x *Tensor, s float32) *Tensor {
	return unary("AddScalar", MapAddScalar, s, 0, x, func(v float32) float32 { return v + s }, func(_, _ float32) float32 { return 1 })
}

// Neg returns -x.
func Neg(x *Tensor) *Tensor { return Scale(x, -1) }

// Exp returns e^x, within 1 ulp (with AVX2 and FMA: SLEEF's expf, bit for bit
// PyTorch's torch.exp; elsewhere Cephes' expf): +Inf above 88.72284, subnormal
// (rounded, not flushed) below -87.3365 and 0 below -103.972.
func Exp(x *Tensor) *Tensor {
	out := mapOp(MapExp, 0, x, expSlice)
	return record(out, "Exp", []*Tensor{x}, func(g *Tensor) []*Tensor {
		return []*Tensor{binaryRaw("Exp", BinaryMul, g, out)} // d/dx e^x = e^x
	})
}

// Log returns the natural logarithm of x.
func Log(x *Tensor) *Tensor {
	return unary("Log", MapLog, 0, 0, x, func(v float32) float32 { return float32(math.Log(float64(v))) },
		func(x, _ float32) float32 { return 1 / x })
}

// Sqrt returns the square root of x.
func Sqrt(x *Tensor) *Tensor {
	return unary("Sqrt", MapSqrt, 0, 0, x, func(v float32) float32 { return float32(math.Sqrt(float64(v))) },
		func(_, y float32) float32 { return 0.5 / y })
}

// Pow returns x^p for a constant exponent p.
func Pow(x *Tensor, p float32) *Tensor {
	switch p {
	case 2:
		if x.dev.kern != nil {
			out := binaryRaw("Pow", BinaryMul, x, x)
			return record(out, "Pow", []*Tensor{x}, func(g *Tensor) []*Tensor {
				return []*Tensor{scaleRaw(binaryRaw("Pow", BinaryMul, g, x), 2)} // exactly g*(2x)
			})
		}
		return unary("Pow", MapPow, 2, 0, x, func(v float32) float32 { return v * v }, func(x, _ float32) float32 { return 2 * x })
	}
	return unary("Pow", MapPow, p, 0, x, func(v float32) float32 { return float32(math.Pow(float64(v), float64(p))) },
		func(x, _ float32) float32 { return p * float32(math.Pow(float64(x), float64(p-1))) })
}

// Abs returns |x|; its gradient at 0 is 0, as in PyTorch.
func Abs(x *Tensor) *Tensor {
	return unary("Abs", MapAbs, 0, 0, x, func(v float32) float32 { return float32(math.Abs(float64(v))) },
		func(x, _ float32) float32 {
			switch {
			case x > 0:
				return 1
			case x < 0:
				return -1
			}
			return 0
		})
}

// Clamp limits x to [lo, hi]; pass ±Inf to leave a side open. The gradient passes
// where lo <= x <= hi, as in PyTorch.
func Clamp(x *Tensor, lo, hi float32) *Tensor {
	if lo > hi {
		panic(fmt.Sprintf("tensor: Clamp: lo %v > hi %v", lo, hi))
	}
	return unary("Clamp", MapClamp, lo, hi, x, func(v float32) float32 {
		if v < lo {
			return lo
		}
		if v > hi {
			return hi
		}
		return v
	}, func(x, _ float32) float32 {
		if x < lo || x > hi {
			return 0
		}
		return 1
	})
}

// Sigmoid returns 1 / (1 + e^-x), as PyTorch computes it: 1 above 16.7, and 0 below
// -88.73 where e^-x overflows (the exact value is below 3e-39 there).
func Sigmoid(x *Tensor) *Tensor {
	out := mapOp(MapSigmoid, 0, x, sigmoidSlice)
	return record(out, "Sigmoid", []*Tensor{x}, func(g *Tensor) []*Tensor {
		if gx := mapGradDev(MapSigmoid, g, nil, out, 0, 0); gx != nil {
			return []*Tensor{gx}
		}
		return []*Tensor{zipSlices(out, g, sigmoidGradSlice)} // y (1 - y)
	})
}

// SiLU returns x * sigmoid(x), computed as x / (1 + e^-x) as PyTorch does: x itself
// above 16.7, -0 below -88.73 where e^-x overflows (the exact value is above -3e-37
// there), and NaN at -Inf like PyTorch.
func SiLU(x *Tensor) *Tensor {
	out := mapOp(MapSiLU, 0, x, siluSlice)
	return record(out, "SiLU", []*Tensor{x}, func(g *Tensor) []*Tensor {
		if gx := mapGradDev(MapSiLU, g, x, nil, 0, 0); gx != nil {
			return []*Tensor{gx}
		}
		// d/dx x s(x) = s(x) (1 + x (1 - s(x)))
		return []*Tensor{zipSlices(x, g, siluGradSlice)}
	})
}

// ReLU returns max(x, 0).
func ReLU(x *Tensor) *Tensor {
	return unary("ReLU", MapReLU, 0, 0, x, func(v float32) float32 { return max(v, 0) },
		func(x, _ float32) float32 {
			if x > 0 {
				return 1
			}
			return 0
		})
}

// ELU returns x for x > 0 and alpha*(e^x - 1) otherwise, with e^x - 1 computed as
// an expm1 (accurate near 0). Its gradient is 1 for x > 0 and alpha*e^x otherwise,
// from x as PyTorch's elu_backward.
func ELU(x *Tensor, alpha float32) *Tensor {
	out := mapOp(MapELU, alpha, x, func(dst, src []float32) { eluSlice(dst, src, alpha) })
	return record(out, "ELU", []*Tensor{x}, func(g *Tensor) []*Tensor {
		if gx := mapGradDev(MapELU, g, x, nil, alpha, 0); gx != nil {
			return []*Tensor{gx}
		}
		return []*Tensor{zipSlices(x, g, func(dst, x, g []float32) { eluGradSlice(dst, x, g, alpha) })}
	})
}

// Tanh returns the hyperbolic tangent of x: odd, within 3 ulp, ±1 beyond ±9.01.
func Tanh(x *Tensor) *Tensor {
	out := mapOp(MapTanh, 0, x, tanhSlice)
	return record(out, "Tanh", []*Tensor{x}, func(g *Tensor) []*Tensor {
		if gx := mapGradDev(MapTanh, g, nil, out, 0, 0); gx != nil {
			return []*Tensor{gx}
		}
		return []*Tensor{zipSlices(out, g, tanhGradSlice)} // 1 - y^2
	})
}

// Softplus returns log(1 + e^x) (PyTorch's beta 1, threshold 20: x itself above 20).
// Its gradient is sigmoid(x), which is 1 above 20 (in float32 from 16.7 on).
func Softplus(x *Tensor) *Tensor {
	out := mapOp(MapSoftplus, 0, x, softplusSlice)
	return record(out, "Softplus", []*Tensor{x}, func(g *Tensor) []*Tensor {
		if gx := mapGradDev(MapSoftplus, g, x, nil, 0, 0); gx != nil {
			return []*Tensor{gx}
		}
		return []*Tensor{zipSlices(x, g, mulSigmoidSlice)}
	})
}

// mapOp returns code(x) (parameter p0) by the device kernel on an accelerator with
// kernels, else by the host slice kernel k.
func mapOp(code MapOp, p0 float32, x *Tensor, k func(dst, src []float32)) *Tensor {
	if y := mapDev(code, x, p0, 0); y != nil {
		return y
	}
	return mapSlices(x, k)
}
