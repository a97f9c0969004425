package tensor

import (
	"fmt"
	"math"
	"slices"
)

// splitAt views shape as [outer, n, inner] around axis ax.
func splitAt(shape []int, ax int) (outer, n, inner int) {
	outer, inner = 1, 1
	for i := 0; i < ax; i++ {
		outer *= shape[i]
	}
	for i := ax + 1; i < len(shape); i++ {
		inner *= shape[i]
	}
	return outer, shape[ax], inner
}

// sumAxisRaw sums over one axis, keeping it with size 1, without recording.
func sumAxisRaw(x *Tensor, ax int) *Tensor {
	outer, n, inner := splitAt(x.shape, ax)
	shape := cloneInts(x.shape)
	shape[ax] = 1
	out := empty(x.dev, shape...)
	if k := x.dev.kern; k != nil {
		switch {
		case out.Len() == 0:
		case n == 0:
			out.st.fill(0) // an empty sum
		default:
			k.SumAxis(out.st.out(), x.st.in(), outer, n, inner)
		}
		return out
	}
	x.dev.parallel(outer*inner, max(1, 8192/max(n, 1)), func(lo, hi int) {
		if inner == 1 {
			for o := lo; o < hi; o++ {
				var s float64
				for _, v := range x.h()[o*n : (o+1)*n] {
					s += float64(v)
				}
				out.h()[o] = float32(s)
			}
			return
		}
		acc := make([]float64, inner)
		for o := lo; o < hi; {
			// Process a run of out elements with the same outer index.
			oo, in0 := o/inner, o%inner
			in1 := min(inner, in0+(hi-o))
			clear(acc[in0:in1])
			for r := 0; r < n; r++ {
				row := x.h()[(oo*n+r)*inner:]
				for i := in0; i < in1; i++ {
					acc[i] += float64(row[i])
				}
			}
			for i := in0; i < in1; i++ {
				out.h()[oo*inner+i] = float32(acc[i])
			}
			o += in1 - in0
		}
	})
	return out
}

// sumAxes sums over the given axes (kept with size 1), without recording.
func sumAxes(x *Tensor, axes []int) *Tensor {
	if len(axes) == 0 {
		return x
	}
	out := x
	for _, ax := range axes {
		out = sumAxisRaw(out, ax)
	}
	return out
}

// normAxes sorts and de-duplicates axes, resolving negative ones; no axes means all.
func normAxes(op string, rank int, axes []int) []int {
	if len(axes) == 0 {
		all := make([]int, rank)
		for i := range all {
			all[i] = i
		}
		return all
	}
	res := make([]int, len(axes))
	for i, a := range axes {
		res[i] = axis(a, rank, op)
	}
	slices.Sort(res)
	return slices.Compact(res)
}

func reducedShape(shape, axes []int, keepdim bool) []int {
	var out []int
	for i, s := range shape {
		if slices.Contains(axes, i) {
			if keepdim {
				out = append(out, 1)
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// expandRaw broadcasts g (shape with reduced axes of size 1) to shape.
func expandRaw(g *Tensor, shape []int) *Tensor {
	if sameShape(g.shape, shape) {
		return g
	}
	out := empty(g.dev, shape...)
	if k := g.dev.kern; k != nil {
		stridedDev(k, out, g, bcastStrides(g.shape, shape), 0)
		return out
	}
	zero := []float32{0}
	binaryKernel(g.dev, shape, g.h(), zero, out.h(), bcastStrides(g.shape, shape), make([]int, len(shape)),
		func(o, a, _ []float32, sa, _ int) {
			if sa == 0 {
				v := a[0]
				for i := range o {
					o[i] = v
				}
				return
			}
			for i := range o {
				o[i] = a[i*sa]
			}
		})
	return out
}

// Sum returns the sum over axes (all axes when none are given); keepdim keeps the
// reduced axes with size 1.
func Sum(x *Tensor, keepdim bool, axes ...int) *Tensor {
	ax := normAxes("Sum", len(x.shape), axes)
	s := sumAxes(x, ax)
	keptShape := s.shape
	out := s.view(reducedShape(x.shape, ax, keepdim))
	xs := x.shape
	return record(out, "Sum", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gk := g.view(keptShape)
		return []*Tensor{expandRaw(gk, xs)}
	})
}

// Mean returns the mean over axes (all axes when none are given).
func Mean(x *Tensor, keepdim bool, axes ...int) *Tensor {
	ax := normAxes("Mean", len(x.shape), axes)
	n := 1
	for _, a := range ax {
		n *= x.shape[a]
	}
	return Scale(Sum(x, keepdim, ax...), 1/float32(n))
}

// Max returns the maximum over one axis. The gradient goes to the first maximal
// element, as PyTorch's max(dim) does.
func Max(x *Tensor, ax int, keepdim bool) *Tensor {
	ax = axis(ax, len(x.shape), "Max")
	outer, n, inner := splitAt(x.shape, ax)
	if n == 0 {
		panic(fmt.Sprintf("tensor: Max over an empty axis of shape %v", x.shape))
	}
	shape := cloneInts(x.shape)
	shape[ax] = 1
	out := empty(x.dev, shape...)
	arg := make([]int32, outer*inner)
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			best, bi := float32(math.Inf(-1)), 0
			for r := 0; r < n; r++ {
				v := x.h()[(o*n+r)*inner+i]
				if v > best || (r == 0) || v != v {
					best, bi = v, r
					if v != v {
						break
					}
				}
			}
			out.h()[o*inner+i] = best
			arg[o*inner+i] = int32(bi)
		}
	}
	out.shape = reducedShape(x.shape, []int{ax}, keepdim)
	return record(out, "Max", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := New(x.dev, x.shape...)
		for o := 0; o < outer; o++ {
			for i := 0; i < inner; i++ {
				gx.h()[(o*n+int(arg[o*inner+i]))*inner+i] = g.h()[o*inner+i]
			}
		}
		return []*Tensor{gx}
	})
}

// L2Norm returns the Euclidean norm over axes (all when none are given).
func L2Norm(x *Tensor, keepdim bool, axes ...int) *Tensor {
	return Sqrt(Sum(Pow(x, 2), keepdim, axes...))
}
