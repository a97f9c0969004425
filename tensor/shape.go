package tensor

import (
	"fmt"
	"slices"
)

// Reshape returns x with a new shape of the same number of elements; one size may be
// -1 and is inferred. The result shares x's data.
func Reshape(x *Tensor, shape ...int) *Tensor {
	shape = cloneInts(shape)
	infer, known := -1, 1
	for i, s := range shape {
		if s == -1 {
			if infer >= 0 {
				panic(fmt.Sprintf("tensor: Reshape: more than one -1 in %v", shape))
			}
			infer = i
			continue
		}
		known *= s
	}
	if infer >= 0 && known > 0 {
		shape[infer] = x.Len() / known
	}
	if numel(shape) != x.Len() {
		panic(fmt.Sprintf("tensor: Reshape: cannot view shape %v as %v", x.shape, shape))
	}
	out := x.view(shape)
	xs := x.shape
	return record(out, "Reshape", []*Tensor{x}, func(g *Tensor) []*Tensor {
		return []*Tensor{g.view(xs)}
	})
}

// Flatten merges axes from..to (inclusive) into one.
func Flatten(x *Tensor, from, to int) *Tensor {
	from = axis(from, len(x.shape), "Flatten")
	to = axis(to, len(x.shape), "Flatten")
	shape := cloneInts(x.shape[:from])
	shape = append(shape, numel(x.shape[from:to+1]))
	shape = append(shape, x.shape[to+1:]...)
	return Reshape(x, shape...)
}

// stridedCopy writes into dst (contiguous, shape) the elements of src read with
// the given strides.
func stridedCopy(dev *Device, shape []int, src []float32, srcStrides []int, dst []float32) {
	zero := []float32{0}
	binaryKernel(dev, shape, src, zero, dst, srcStrides, make([]int, len(shape)),
		func(o, a, _ []float32, sa, _ int) {
			if sa == 1 {
				copy(o, a)
				return
			}
			for i := range o {
				o[i] = a[i*sa]
			}
		})
}

func permuteRaw(x *Tensor, perm []int) *Tensor {
	st := x.Strides()
	shape := make([]int, len(perm))
	srcSt := make([]int, len(perm))
	for i, p := range perm {
		shape[i] = x.shape[p]
		srcSt[i] = st[p]
	}
	out := empty(x.dev, shape...)
	if k := x.dev.kern; k != nil {
		stridedDev(k, out, x, srcSt, 0)
		return out
	}
	if out.Len() > 0 {
		stridedCopy(x.dev, shape, x.h(), srcSt, out.h())
	}
	return out
}

// Permute reorders the axes of x: axis i of the result is axis perm[i] of x.
func Permute(x *Tensor, perm ...int) *Tensor {
	if len(perm) != len(x.shape) {
		panic(fmt.Sprintf("tensor: Permute: %v for shape %v", perm, x.shape))
	}
	perm = slices.Clone(perm)
	seen := make([]bool, len(perm))
	for i, p := range perm {
		p = axis(p, len(perm), "Permute")
		if seen[p] {
			panic(fmt.Sprintf("tensor: Permute: repeated axis in %v", perm))
		}
		seen[p] = true
		perm[i] = p
	}
	inv := make([]int, len(perm))
	for i, p := range perm {
		inv[p] = i
	}
	out := permuteRaw(x, perm)
	return record(out, "Permute", []*Tensor{x}, func(g *Tensor) []*Tensor {
		return []*Tensor{permuteRaw(g, inv)}
	})
}

// Transpose swaps axes a and b.
func Transpose(x *Tensor, a, b int) *Tensor {
	perm := make([]int, len(x.shape))
	for i := range perm {
		perm[i] = i
	}
	a, b = axis(a, len(perm), "Transpose"), axis(b, len(perm), "Transpose")
	perm[a], perm[b] = perm[b], perm[a]
	return Permute(x, perm...)
}

// Expand broadcasts x to shape (NumPy rules).
func Expand(x *Tensor, shape ...int) *Tensor {
	s := broadcastShape("Expand", x.shape, shape)
	if !sameShape(s, shape) {
		panic(fmt.Sprintf("tensor: Expand: %v cannot expand to %v", x.shape, shape))
	}
	xs := x.shape
	if len(xs) < len(shape) {
		xs = append(make([]int, len(shape)-len(xs)), xs...)
		for i := range len(shape) - len(x.shape) {
			xs[i] = 1
		}
	}
	out := expandRaw(x.view(xs), shape)
	out = out.view(cloneInts(shape))
	orig := x.shape
	return record(out, "Expand", []*Tensor{x}, func(g *Tensor) []*Tensor {
		return []*Tensor{sumTo(g, orig)}
	})
}

// Concat joins tensors along axis ax; all other axes must agree.
func Concat(ax int, xs ...*Tensor) *Tensor {
	if len(xs) == 0 {
		panic("tensor: Concat of nothing")
	}
	ax = axis(ax, len(xs[0].shape), "Concat")
	shape := cloneInts(xs[0].shape)
	shape[ax] = 0
	for _, x := range xs {
		if len(x.shape) != len(shape) {
			panic(fmt.Sprintf("tensor: Concat: ranks differ (%v and %v)", xs[0].shape, x.shape))
		}
		for i := range shape {
			if i != ax && x.shape[i] != xs[0].shape[i] {
				panic(fmt.Sprintf("tensor: Concat along %d: shapes %v and %v", ax, xs[0].shape, x.shape))
			}
		}
		shape[ax] += x.shape[ax]
	}
	outer, _, inner := splitAt(shape, ax)
	out := empty(xs[0].dev, shape...)
	total := shape[ax] * inner
	kern := out.dev.kern
	off := 0
	for _, x := range xs {
		w := x.shape[ax] * inner
		if kern != nil {
			scatterDev(kern, out.st.out(), []int{total, 1}, off, x.view([]int{outer, w}))
			off += w
			continue
		}
		for o := 0; o < outer; o++ {
			copy(out.h()[o*total+off:o*total+off+w], x.h()[o*w:(o+1)*w])
		}
		off += w
	}
	shapes := make([][]int, len(xs))
	need := make([]bool, len(xs))
	for k, x := range xs {
		shapes[k], need[k] = x.shape, needs(x)
	}
	return record(out, "Concat", xs, func(g *Tensor) []*Tensor {
		res := make([]*Tensor, len(shapes))
		off := 0
		for k, xshape := range shapes {
			w := xshape[ax] * inner
			if need[k] {
				gx := empty(g.dev, xshape...)
				if kern != nil {
					stridedDev(kern, gx.view([]int{outer, w}), g, []int{total, 1}, off)
					res[k] = gx
					off += w
					continue
				}
				for o := 0; o < outer; o++ {
					copy(gx.h()[o*w:(o+1)*w], g.h()[o*total+off:o*total+off+w])
				}
				res[k] = gx
			}
			off += w
		}
		return res
	})
}

// Slice returns elements start, start+step, ... (< end) of axis ax. Negative start
// and end count from the end of the axis, as in Python.
func Slice(x *Tensor, ax, start, end, step int) *Tensor {
	ax = axis(ax, len(x.shape), "Slice")
	n := x.shape[ax]
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	end = min(end, n)
	if step <= 0 || start < 0 || start > end {
		panic(fmt.Sprintf("tensor: Slice [%d:%d:%d] of axis %d of shape %v", start, end, step, ax, x.shape))
	}
	m := (end - start + step - 1) / step
	shape := cloneInts(x.shape)
	shape[ax] = m
	outer, _, inner := splitAt(x.shape, ax)
	out := empty(x.dev, shape...)
	if k := x.dev.kern; k != nil {
		// out [outer, m, inner] reads x at (o*n + start + r*step)*inner + i.
		stridedDev(k, out.view([]int{outer, m, inner}), x, []int{n * inner, step * inner, 1}, start*inner)
	} else {
		sliceHost(out, x, outer, m, n, inner, start, step)
	}
	xs := x.shape
	return record(out, "Slice", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := New(g.dev, xs...)
		if k := g.dev.kern; k != nil {
			scatterDev(k, gx.st.inout(), []int{n * inner, step * inner, 1}, start*inner, g.view([]int{outer, m, inner}))
			return []*Tensor{gx}
		}
		for o := 0; o < outer; o++ {
			for r := 0; r < m; r++ {
				dst := (o*n + start + r*step) * inner
				copy(gx.h()[dst:dst+inner], g.h()[(o*m+r)*inner:(o*m+r+1)*inner])
			}
		}
		return []*Tensor{gx}
	})
}

// sliceHost copies rows start, start+step, ... of x [outer, n, inner] into out
// [outer, m, inner].
func sliceHost(out, x *Tensor, outer, m, n, inner, start, step int) {
	for o := 0; o < outer; o++ {
		for r := 0; r < m; r++ {
			src := (o*n + start + r*step) * inner
			copy(out.h()[(o*m+r)*inner:(o*m+r+1)*inner], x.h()[src:src+inner])
		}
	}
}

// Split cuts x along axis ax into pieces of the given sizes.
func Split(x *Tensor, ax int, sizes ...int) []*Tensor {
	res := make([]*Tensor, len(sizes))
	off := 0
	for i, s := range sizes {
		res[i] = Slice(x, ax, off, off+s, 1)
		off += s
	}
	if off != x.shape[axis(ax, len(x.shape), "Split")] {
		panic(fmt.Sprintf("tensor: Split: sizes %v do not add up to axis %d of %v", sizes, ax, x.shape))
	}
	return res
}
