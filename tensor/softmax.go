package tensor

import "math"

// softmaxBlock is how many positions of the inner axes a softmax kernel handles at
// once when the softmax axis is not the last one.
const softmaxBlock = 256

// softmaxRaw computes softmax (log == false) or log-softmax over axis ax of x
// without recording. x - max is computed in float32 as PyTorch does and the sum of
// exponentials accumulated in float64; the exponentials are float32 (SLEEF's expf)
// along the last axis and float64 otherwise.
func softmaxRaw(x *Tensor, ax int, log bool) *Tensor {
	outer, n, inner := splitAt(x.shape, ax)
	out := empty(x.dev, x.shape...)
	if n == 0 || x.Len() == 0 {
		return out
	}
	if inner == 1 {
		x.dev.parallel(outer, max(1, 4096/n), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				if log {
					softmaxRow(out.h()[o*n:(o+1)*n], x.h()[o*n:(o+1)*n], log)
					continue
				}
				// The vectorised exponentials (SLEEF's expf, as PyTorch's CPU kernel).
				copy(out.h()[o*n:(o+1)*n], x.h()[o*n:(o+1)*n])
				softmaxRowFast(out.h()[o*n : (o+1)*n])
			}
		})
		return out
	}
	blocks := (inner + softmaxBlock - 1) / softmaxBlock
	x.dev.parallel(outer*blocks, max(1, 4096/(n*min(inner, softmaxBlock))), func(lo, hi int) {
		mx := make([]float32, softmaxBlock)
		sum := make([]float64, softmaxBlock)
		for u := lo; u < hi; u++ {
			o, i0 := u/blocks, (u%blocks)*softmaxBlock
			i1 := min(inner, i0+softmaxBlock)
			w := i1 - i0
			m, s := mx[:w], sum[:w]
			base := o*n*inner + i0
			copy(m, x.h()[base:base+w])
			for r := 1; r < n; r++ {
				row := x.h()[base+r*inner : base+r*inner+w]
				for i, v := range row {
					if v > m[i] || v != v {
						m[i] = v
					}
				}
			}
			clear(s)
			for r := 0; r < n; r++ {
				row := x.h()[base+r*inner : base+r*inner+w]
				dst := out.h()[base+r*inner : base+r*inner+w]
				for i, v := range row {
					e := math.Exp(float64(v - m[i]))
					s[i] += e
					if !log {
						dst[i] = float32(e)
					}
				}
			}
			for r := 0; r < n; r++ {
				row := x.h()[base+r*inner : base+r*inner+w]
				dst := out.h()[base+r*inner : base+r*inner+w]
				for i := range dst {
					if log {
						dst[i] = (row[i] - m[i]) - float32(math.Log(s[i]))
					} else {
						dst[i] = float32(float64(dst[i]) / s[i])
					}
				}
			}
		}
	})
	return out
}

// softmaxRow writes the softmax (or log-softmax) of the contiguous row x into y.
func softmaxRow(y, x []float32, log bool) {
	m := x[0]
	for _, v := range x[1:] {
		if v > m || v != v {
			m = v
		}
	}
	var s float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		s += e
		if !log {
			y[i] = float32(e)
		}
	}
	if log {
		ls := float32(math.Log(s))
		for i, v := range x {
			y[i] = (v - m) - ls
		}
		return
	}
	inv := 1 / s
	for i, e := range y {
		y[i] = float32(float64(e) * inv)
	}
}

// rowDots returns, for every position of the non-axis axes of a and b (shape [outer,
// n, inner] around the axis), sum over the axis of a*b (b == nil: of a), in float64.
func rowDots(dev *Device, a, b []float32, outer, n, inner int) []float64 {
	res := make([]float64, outer*inner)
	dev.parallel(outer, max(1, 8192/max(n*inner, 1)), func(lo, hi int) {
		for o := lo; o < hi; o++ {
			acc := res[o*inner : (o+1)*inner]
			for r := 0; r < n; r++ {
				off := (o*n + r) * inner
				ra := a[off : off+inner]
				if b == nil {
					for i, v := range ra {
						acc[i] += float64(v)
					}
					continue
				}
				rb := b[off : off+inner]
				for i, v := range ra {
					acc[i] += float64(v) * float64(rb[i])
				}
			}
		}
	})
	return res
}

// Softmax returns exp(x) / sum(exp(x)) over axis ax (negative counts from the end),
// computed stably by subtracting the maximum first, as torch.softmax. It panics when
// ax is out of range.
func Softmax(x *Tensor, ax int) *Tensor {
	ax = axis(ax, len(x.shape), "Softmax")
	outer, n, inner := splitAt(x.shape, ax)
	if x.dev.kern != nil {
		return softmaxDev(x, outer, n, inner, false)
	}
	out := softmaxRaw(x, ax, false)
	dev, shape := x.dev, x.shape
	// y_i = e^x_i / sum_j e^x_j:  dy_i/dx_k = y_i (delta_ik - y_k), so
	//   dx_k = sum_i g_i y_i (delta_ik - y_k) = y_k (g_k - sum_i g_i y_i).
	return record(out, "Softmax", []*Tensor{x}, func(g *Tensor) []*Tensor {
		dots := rowDots(dev, g.h(), out.h(), outer, n, inner)
		gx := empty(dev, shape...)
		dev.parallel(outer, max(1, 8192/max(n*inner, 1)), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				d := dots[o*inner : (o+1)*inner]
				for r := 0; r < n; r++ {
					off := (o*n + r) * inner
					gs, ys, dst := g.h()[off:off+inner], out.h()[off:off+inner], gx.h()[off:off+inner]
					for i := range dst {
						dst[i] = float32(float64(ys[i]) * (float64(gs[i]) - d[i]))
					}
				}
			}
		})
		return []*Tensor{gx}
	})
}

// LogSoftmax returns x - log(sum(exp(x))) over axis ax (negative counts from the end),
// computed stably as (x - max) - log(sum(exp(x - max))), as torch.log_softmax. It
// panics when ax is out of range.
func LogSoftmax(x *Tensor, ax int) *Tensor {
	ax = axis(ax, len(x.shape), "LogSoftmax")
	outer, n, inner := splitAt(x.shape, ax)
	if x.dev.kern != nil {
		return softmaxDev(x, outer, n, inner, true)
	}
	out := softmaxRaw(x, ax, true)
	// y_i = x_i - log sum_j e^x_j:  dy_i/dx_k = delta_ik - softmax_k, so
	//   dx_k = g_k - e^y_k sum_i g_i.
	return record(out, "LogSoftmax", []*Tensor{x}, func(g *Tensor) []*Tensor {
		sums := rowDots(x.dev, g.h(), nil, outer, n, inner)
		gx := empty(x.dev, x.shape...)
		x.dev.parallel(outer, max(1, 8192/max(n*inner, 1)), func(lo, hi int) {
			for o := lo; o < hi; o++ {
				s := sums[o*inner : (o+1)*inner]
				for r := 0; r < n; r++ {
					off := (o*n + r) * inner
					gs, ys, dst := g.h()[off:off+inner], out.h()[off:off+inner], gx.h()[off:off+inner]
					for i := range dst {
						dst[i] = float32(float64(gs[i]) - math.Exp(float64(ys[i]))*s[i])
					}
				}
			}
		})
		return []*Tensor{gx}
	})
}
