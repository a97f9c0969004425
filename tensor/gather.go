package tensor

import "fmt"

// Embedding returns the rows ids of the table w [V, D] as a [len(ids), D] tensor,
// as torch.nn.functional.embedding. The gradient scatter-adds into the used rows.
func Embedding(w *Tensor, ids []int) *Tensor {
	if len(w.shape) != 2 {
		panic(fmt.Sprintf("tensor: Embedding: table of shape %v", w.shape))
	}
	v, dim := w.shape[0], w.shape[1]
	out := empty(w.dev, len(ids), dim)
	for i, id := range ids {
		if id < 0 || id >= v {
			panic(fmt.Sprintf("tensor: Embedding: index %d out of range for %d rows", id, v))
		}
		copy(out.h()[i*dim:(i+1)*dim], w.h()[id*dim:(id+1)*dim])
	}
	return record(out, "Embedding", []*Tensor{w}, func(g *Tensor) []*Tensor {
		gw := New(w.dev, w.shape...)
		for i, id := range ids {
			addInto(gw.h()[id*dim:(id+1)*dim], g.h()[i*dim:(i+1)*dim])
		}
		return []*Tensor{gw}
	})
}

// Select returns x[..., idx, ...] along axis ax for the listed indices (index_select).
func Select(x *Tensor, ax int, idx []int) *Tensor {
	ax = axis(ax, len(x.shape), "Select")
	outer, n, inner := splitAt(x.shape, ax)
	shape := cloneInts(x.shape)
	shape[ax] = len(idx)
	out := empty(x.dev, shape...)
	m := len(idx)
	for o := 0; o < outer; o++ {
		for r, id := range idx {
			if id < 0 || id >= n {
				panic(fmt.Sprintf("tensor: Select: index %d out of range for axis %d of %v", id, ax, x.shape))
			}
			copy(out.h()[(o*m+r)*inner:(o*m+r+1)*inner], x.h()[(o*n+id)*inner:(o*n+id+1)*inner])
		}
	}
	return record(out, "Select", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := New(x.dev, x.shape...)
		for o := 0; o < outer; o++ {
			for r, id := range idx {
				addInto(gx.h()[(o*n+id)*inner:(o*n+id+1)*inner], g.h()[(o*m+r)*inner:(o*m+r+1)*inner])
			}
		}
		return []*Tensor{gx}
	})
}
