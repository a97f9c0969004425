package tensor

import (
	"fmt"
	"runtime"
)

// slot is a tensor's identity in the autograd graph. Graph nodes point to slots, not
// to tensors, so that a tensor's data can be freed as soon as nothing needs it: a
// backward closure keeps exactly the tensors its rule uses, as PyTorch's saved
// tensors do.
type slot struct {
	shape []int
	node  *node   // the op that made the tensor; nil for leaves
	grad  *Tensor // accumulated gradient of a leaf
}

// node records how a tensor was made: its inputs and the rule that maps the
// gradient of the output to gradients of the inputs.
type node struct {
	op     string
	inputs []*slot // nil where the input does not require a gradient
	// backward receives the gradient of the output and returns one gradient per input
	// (nil where the input does not require one). It must not modify g. It is
	// dropped after it has run, freeing what it kept.
	backward func(g *Tensor) []*Tensor
}

// record attaches a node to out when any input requires a gradient, and returns out.
func record(out *Tensor, op string, inputs []*Tensor, backward func(g *Tensor) []*Tensor) *Tensor {
	var slots []*slot
	for i, in := range inputs {
		if in != nil && in.ag != nil {
			if slots == nil {
				slots = make([]*slot, len(inputs))
			}
			slots[i] = in.ag
		}
	}
	if slots != nil {
		out.ag = &slot{shape: out.shape, node: &node{op: op, inputs: slots, backward: backward}}
	}
	return out
}

// needs reports whether an input of an op requires a gradient.
func needs(in *Tensor) bool { return in != nil && in.ag != nil }

// Backward computes the gradient of the scalar t with respect to every leaf that
// requires a gradient, and accumulates it into the leaves' Grad. t must hold one
// element (use BackwardWith for other seeds). The graph is consumed: a second
// backward pass through it panics (recompute the forward pass).
func (t *Tensor) Backward() {
	if t.Len() != 1 {
		panic(fmt.Sprintf("tensor: Backward of a non-scalar of shape %v; use BackwardWith", t.shape))
	}
	t.BackwardWith(Full(t.dev, 1, t.shape...))
}

// BackwardWith back-propagates seed (the gradient of some scalar w.r.t. t) and
// accumulates into the leaves' Grad.
func (t *Tensor) BackwardWith(seed *Tensor) {
	if t.ag == nil {
		panic("tensor: Backward of a tensor that does not require a gradient")
	}
	grads := backprop(t.ag, seed, nil)
	for i, s := range grads.ss {
		if s.node != nil || grads.gs[i] == nil {
			continue
		}
		if s.grad == nil {
			s.grad = grads.take(i)
		} else {
			accumulate(s.grad, grads.gs[i])
		}
	}
}

// Grad returns the gradients of out (seeded with seed, or ones when seed is nil and
// out is a scalar) with respect to each of wrt, without touching any leaf's Grad; like
// torch.autograd.grad. A tensor of wrt that out does not depend on gets zeros. The
// graph is consumed.
func Grad(out, seed *Tensor, wrt ...*Tensor) []*Tensor {
	if seed == nil {
		if out.Len() != 1 {
			panic(fmt.Sprintf("tensor: Grad of a non-scalar of shape %v needs a seed", out.shape))
		}
		seed = Full(out.dev, 1, out.shape...)
	}
	res := make([]*Tensor, len(wrt))
	if out.ag == nil {
		for i, w := range wrt {
			res[i] = New(w.dev, w.shape...)
		}
		return res
	}
	want := map[*slot]bool{}
	for _, w := range wrt {
		if w.ag != nil {
			want[w.ag] = true
		}
	}
	grads := backprop(out.ag, seed, want)
	for i, w := range wrt {
		if k, ok := grads.index[w.ag]; ok && grads.gs[k] != nil {
			res[i] = grads.take(k)
		} else {
			res[i] = New(w.dev, w.shape...)
		}
	}
	return res
}

// gradTable keeps gradients in the order slots were first reached, so that
// accumulation order (and so the floating-point result) is deterministic. A gradient
// returned by a backward rule may alias the seed or another input's gradient (the
// gradient of a sum is passed on as it is), so an entry is copied before it is
// accumulated into, unless the table made that buffer itself (own).
type gradTable struct {
	index map[*slot]int
	ss    []*slot
	gs    []*Tensor
	own   []bool
}

// take returns entry i's gradient for the caller to keep: the buffer itself when the
// table owns it (the entry gives it up), else a copy.
func (g *gradTable) take(i int) *Tensor {
	t := g.gs[i]
	if g.own[i] {
		g.own[i] = false
		return t.view(t.shape)
	}
	return t.Clone()
}

func (g *gradTable) of(s *slot) *Tensor {
	if i, ok := g.index[s]; ok {
		return g.gs[i]
	}
	return nil
}

func (g *gradTable) add(s *slot, grad *Tensor) {
	if !sameShape(s.shape, grad.shape) {
		op := "a leaf"
		if s.node != nil {
			op = s.node.op
		}
		panic(fmt.Sprintf("tensor: backward of %s produced a gradient of shape %v for a tensor of shape %v",
			op, grad.shape, s.shape))
	}
	if i, ok := g.index[s]; ok {
		if !g.own[i] {
			g.gs[i] = g.gs[i].Clone()
			g.own[i] = true
		}
		accumulate(g.gs[i], grad)
		return
	}
	g.index[s] = len(g.ss)
	g.ss = append(g.ss, s)
	g.gs = append(g.gs, grad)
	g.own = append(g.own, false)
}

// backprop runs the backward closures of every node reachable from out in reverse
// topological order. Slots in stop are not expanded further (their gradient is what
// the caller wants).
func backprop(out *slot, seed *Tensor, stop map[*slot]bool) *gradTable {
	if !sameShape(out.shape, seed.shape) {
		panic(fmt.Sprintf("tensor: backward seed of shape %v for a tensor of shape %v", seed.shape, out.shape))
	}
	// Topological order by iterative depth-first search.
	var order []*slot
	visited := map[*slot]bool{out: true}
	type frame struct {
		s    *slot
		next int
	}
	stack := []frame{{s: out}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		n := top.s.node
		if n != nil && !stop[top.s] && top.next < len(n.inputs) {
			in := n.inputs[top.next]
			top.next++
			if in != nil && !visited[in] {
				visited[in] = true
				stack = append(stack, frame{s: in})
			}
			continue
		}
		order = append(order, top.s)
		stack = stack[:len(stack)-1]
	}
	grads := &gradTable{index: map[*slot]int{}}
	grads.add(out, seed)
	for i := len(order) - 1; i >= 0; i-- {
		s := order[i]
		g := grads.of(s)
		if g == nil || s.node == nil || stop[s] {
			continue
		}
		if s.node.backward == nil {
			panic(fmt.Sprintf("tensor: backward through %s a second time; the graph is consumed by a backward pass, so recompute the forward pass", s.node.op))
		}
		ins := s.node.backward(g)
		s.node.backward = nil // free what the closure kept
		for j, in := range s.node.inputs {
			if in != nil && ins[j] != nil {
				grads.add(in, ins[j])
			}
		}
		// Free intermediate gradients as soon as they are consumed.
		if s != out {
			grads.gs[grads.index[s]] = nil
		}
	}
	return grads
}

// addInto adds src to dst element-wise.
// accumulate adds src into dst (same shape), on the device when they live on an
// accelerator with kernels.
func accumulate(dst, src *Tensor) {
	if k := dst.dev.kern; k != nil {
		if n := dst.Len(); n > 0 {
			k.Binary(BinaryAdd, dst.st.inout(), dst.st.in(), src.st.in(), []int{n}, []int{1}, []int{1})
			runtime.KeepAlive(src)
		}
		return
	}
	addInto(dst.h(), src.h())
}

func addInto(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}
