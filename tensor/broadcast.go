package tensor

import "fmt"

// broadcastShape returns the shape two operands broadcast to (NumPy rules), or panics.
func broadcastShape(op string, a, b []int) []int {
	r := max(len(a), len(b))
	out := make([]int, r)
	for i := 0; i < r; i++ {
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			panic(fmt.Sprintf("tensor: %s: shapes %v and %v do not broadcast", op, a, b))
		}
	}
	return out
}

// bcastStrides returns the element strides of a tensor of shape s viewed with the
// (broadcast) shape out: 0 along broadcast axes.
func bcastStrides(s, out []int) []int {
	st := make([]int, len(out))
	acc := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := i - (len(out) - len(s))
		if j < 0 {
			continue
		}
		if s[j] != 1 {
			st[i] = acc
		}
		acc *= s[j]
	}
	return st
}

// collapse merges adjacent axes of out that every operand walks contiguously, so
// that kernels iterate over as few axes as possible. strides is one stride list per
// operand; it returns the merged sizes and strides.
func collapse(out []int, strides ...[]int) ([]int, [][]int) {
	sizes := []int{}
	st := make([][]int, len(strides))
	for i := range out {
		if out[i] == 1 {
			continue
		}
		if len(sizes) > 0 {
			last := len(sizes) - 1
			ok := true
			for k := range strides {
				if st[k][last] != strides[k][i]*out[i] {
					ok = false
					break
				}
			}
			if ok {
				sizes[last] *= out[i]
				for k := range strides {
					st[k][last] = strides[k][i]
				}
				continue
			}
		}
		sizes = append(sizes, out[i])
		for k := range strides {
			st[k] = append(st[k], strides[k][i])
		}
	}
	if len(sizes) == 0 {
		sizes = []int{1}
		for k := range st {
			st[k] = []int{0}
		}
	}
	return sizes, st
}

// binaryKernel applies f element-wise over the broadcast of a and b into out.
// f receives whole runs of the innermost axis: out[i] = op(a[i*sa], b[i*sb]).
func binaryKernel(dev *Device, outShape []int, a, b, out []float32, sa0, sb0 []int,
	f func(o, a, b []float32, sa, sb int)) {
	sizes, st := collapse(outShape, sa0, sb0, contiguousStrides(outShape))
	sa, sb := st[0], st[1]
	r := len(sizes)
	inner := sizes[r-1]
	outer := len(out) / inner
	dev.parallel(outer, max(1, 16384/inner), func(lo, hi int) {
		idx := make([]int, r)
		for o := lo; o < hi; o++ {
			// Decompose o into the outer axes.
			rem := o
			offA, offB := 0, 0
			for k := r - 2; k >= 0; k-- {
				idx[k] = rem % sizes[k]
				rem /= sizes[k]
				offA += idx[k] * sa[k]
				offB += idx[k] * sb[k]
			}
			ia, ib := sa[r-1], sb[r-1]
			endA := offA + (inner-1)*ia + 1
			endB := offB + (inner-1)*ib + 1
			f(out[o*inner:(o+1)*inner], a[offA:endA], b[offB:endB], ia, ib)
		}
	})
}

func contiguousStrides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// sumTo reduces g (of a broadcast shape) back to shape by summing over the broadcast
// axes: the adjoint of broadcasting. It returns g itself when no reduction is needed.
func sumTo(g *Tensor, shape []int) *Tensor {
	if sameShape(g.shape, shape) {
		return g
	}
	var axes []int
	lead := len(g.shape) - len(shape)
	for i := range g.shape {
		j := i - lead
		if j < 0 || (shape[j] == 1 && g.shape[i] != 1) {
			axes = append(axes, i)
		}
	}
	s := sumAxes(g, axes)
	return s.view(cloneInts(shape))
}
