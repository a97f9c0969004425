package tensor

import "fmt"

// node records how a tensor was made: its inputs and the rule that maps the
// gradient of the output to gradients of the inputs.
type node struct {
	op     string
	inputs []*Tensor
	// backward receives the gradient of the output and returns one gradient per input
	// (nil where the input does not require one). It must not modify g.
	backward func(g *Tensor) []*Tensor
}

// record attaches a node to out when any input requires a gradient, and returns out.
func record(out *Tensor, op string, inputs []*Tensor, backward func(g *Tensor) []*Tensor) *Tensor {
	for _, in := range inputs {
		if in != nil && in.requiresGrad {
			out.requiresGrad = true
			out.node = &node{op: op, inputs: inputs, backward: backward}
			return out
		}
	}
	return out
}

// needs reports whether input i of a recorded op requires a gradient.
func needs(in *Tensor) bool { return in != nil && in.requiresGrad }

// Backward computes the gradient of the scalar out with respect to every leaf that
// requires a gradient, and accumulates it into the leaves' Grad. out must hold one
// element (use BackwardWith for other seeds).
func (t *Tensor) Backward() {
	if len(t.data) != 1 {
		panic(fmt.Sprintf("tensor: Backward of a non-scalar of shape %v; use BackwardWith", t.shape))
	}
	t.BackwardWith(Full(t.dev, 1, t.shape...))
}

// BackwardWith back-propagates seed (the gradient of some scalar w.r.t. t) and
// accumulates into the leaves' Grad.
func (t *Tensor) BackwardWith(seed *Tensor) {
	grads := backprop(t, seed, nil)
	for leaf, g := range grads.leaves() {
		if leaf.grad == nil {
			leaf.grad = g.Detach()
		} else {
			addInto(leaf.grad.data, g.data)
		}
	}
}

// Grad returns the gradients of out (seeded with seed, or ones when seed is nil and
// out is a scalar) with respect to each of wrt, without touching any leaf's Grad; like
// torch.autograd.grad. A tensor of wrt that out does not depend on gets zeros.
func Grad(out, seed *Tensor, wrt ...*Tensor) []*Tensor {
	if seed == nil {
		if len(out.data) != 1 {
			panic(fmt.Sprintf("tensor: Grad of a non-scalar of shape %v needs a seed", out.shape))
		}
		seed = Full(out.dev, 1, out.shape...)
	}
	want := map[*Tensor]bool{}
	for _, w := range wrt {
		want[w] = true
	}
	grads := backprop(out, seed, want)
	res := make([]*Tensor, len(wrt))
	for i, w := range wrt {
		if g := grads.of(w); g != nil {
			res[i] = g.Detach()
		} else {
			res[i] = New(w.dev, w.shape...)
		}
	}
	return res
}

// gradTable keeps gradients in the order tensors were first reached, so that
// accumulation order (and so the floating-point result) is deterministic.
type gradTable struct {
	index map[*Tensor]int
	ts    []*Tensor
	gs    []*Tensor
}

func (g *gradTable) of(t *Tensor) *Tensor {
	if i, ok := g.index[t]; ok {
		return g.gs[i]
	}
	return nil
}

func (g *gradTable) add(t, grad *Tensor) {
	if !sameShape(t.shape, grad.shape) {
		panic(fmt.Sprintf("tensor: backward of %s produced a gradient of shape %v for a tensor of shape %v",
			opName(t), grad.shape, t.shape))
	}
	if i, ok := g.index[t]; ok {
		if g.gs[i].owned {
			addInto(g.gs[i].data, grad.data)
		} else {
			s := g.gs[i].Clone()
			addInto(s.data, grad.data)
			s.owned = true
			g.gs[i] = s
		}
		return
	}
	g.index[t] = len(g.ts)
	g.ts = append(g.ts, t)
	g.gs = append(g.gs, grad)
}

func (g *gradTable) leaves() func(func(*Tensor, *Tensor) bool) {
	return func(yield func(*Tensor, *Tensor) bool) {
		for i, t := range g.ts {
			if t.node == nil && t.requiresGrad {
				if !yield(t, g.gs[i]) {
					return
				}
			}
		}
	}
}

func opName(t *Tensor) string {
	if t.node == nil {
		return "a leaf"
	}
	return t.node.op
}

// backprop runs the backward closures of every node reachable from out in reverse
// topological order. When stop is non-nil, tensors in it are not expanded further
// (their gradient is what the caller wants).
func backprop(out, seed *Tensor, stop map[*Tensor]bool) *gradTable {
	if !sameShape(out.shape, seed.shape) {
		panic(fmt.Sprintf("tensor: backward seed of shape %v for a tensor of shape %v", seed.shape, out.shape))
	}
	// Topological order by iterative depth-first search.
	var order []*Tensor
	visited := map[*Tensor]bool{}
	type frame struct {
		t    *Tensor
		next int
	}
	if out.requiresGrad {
		stack := []frame{{t: out}}
		visited[out] = true
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			n := top.t.node
			if n != nil && !stop[top.t] && top.next < len(n.inputs) {
				in := n.inputs[top.next]
				top.next++
				if in != nil && in.requiresGrad && !visited[in] {
					visited[in] = true
					stack = append(stack, frame{t: in})
				}
				continue
			}
			order = append(order, top.t)
			stack = stack[:len(stack)-1]
		}
	}
	grads := &gradTable{index: map[*Tensor]int{}}
	grads.add(out, seed)
	for i := len(order) - 1; i >= 0; i-- {
		t := order[i]
		g := grads.of(t)
		if g == nil || t.node == nil || stop[t] {
			continue
		}
		ins := t.node.backward(g)
		for j, in := range t.node.inputs {
			if ins[j] != nil && needs(in) {
				grads.add(in, ins[j])
			}
		}
		// Free intermediate gradients as soon as they are consumed.
		if k, ok := grads.index[t]; ok && t != out {
			grads.gs[k] = nil
		}
	}
	return grads
}

// addInto adds src to dst element-wise.
func addInto(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}
