package tensor

import (
	"fmt"
	"math/rand/v2"
)

// Tensor is a dense, contiguous, row-major float32 array on a Device.
// The zero value is not usable; make tensors with New, FromSlice, Full and friends.
type Tensor struct {
	dev   *Device
	shape []int
	data  []float32 // the elements, on a host device
	st    *storage  // the elements, on an accelerator (data is then nil)

	ag *slot // autograd identity; nil when no gradient flows to this tensor
}

// New returns a zero-filled tensor of the given shape on dev.
func New(dev *Device, shape ...int) *Tensor {
	n := numel(shape)
	if dev.acc != nil {
		return &Tensor{dev: dev, shape: cloneInts(shape), st: newStorage(dev, n, nil, true)}
	}
	return &Tensor{dev: dev, shape: cloneInts(shape), data: make([]float32, n)}
}

// empty returns a tensor whose contents are unspecified (every element must be written).
func empty(dev *Device, shape ...int) *Tensor {
	n := numel(shape)
	if dev.acc != nil {
		return &Tensor{dev: dev, shape: cloneInts(shape), st: newStorage(dev, n, nil, false)}
	}
	return &Tensor{dev: dev, shape: cloneInts(shape), data: make([]float32, n)}
}

// FromSlice makes a tensor of the given shape from data. On a host device the
// tensor wraps data (not copied); on an accelerator data is its host copy until an
// op uploads it, so do not write to data after the call.
// It panics if len(data) does not match the shape.
func FromSlice(dev *Device, data []float32, shape ...int) *Tensor {
	if len(data) != numel(shape) {
		panic(fmt.Sprintf("tensor: FromSlice: %d values for shape %v", len(data), shape))
	}
	if dev.acc != nil {
		return &Tensor{dev: dev, shape: cloneInts(shape), st: newStorage(dev, len(data), data, false)}
	}
	return &Tensor{dev: dev, shape: cloneInts(shape), data: data}
}

// Full returns a tensor of the given shape filled with v.
func Full(dev *Device, v float32, shape ...int) *Tensor {
	t := empty(dev, shape...)
	if t.st != nil {
		t.st.fill(v)
		return t
	}
	for i := range t.data {
		t.data[i] = v
	}
	return t
}

// Scalar returns a 0-dimensional tensor holding v.
func Scalar(dev *Device, v float32) *Tensor { return Full(dev, v) }

// Randn returns a tensor of standard normal samples drawn from rng.
func Randn(dev *Device, rng *rand.Rand, shape ...int) *Tensor {
	v := make([]float32, numel(shape))
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return FromSlice(dev, v, shape...)
}

// Device returns the device the tensor lives on.
func (t *Tensor) Device() *Device { return t.dev }

// Shape returns the tensor's shape (do not modify it).
func (t *Tensor) Shape() []int { return t.shape }

// Dim returns the size of axis i; negative i counts from the end.
func (t *Tensor) Dim(i int) int { return t.shape[axis(i, len(t.shape), "Dim")] }

// Rank returns the number of axes.
func (t *Tensor) Rank() int { return len(t.shape) }

// Len returns the number of elements.
func (t *Tensor) Len() int {
	if t.st != nil {
		return t.st.n
	}
	return len(t.data)
}

// Strides returns the row-major strides of the tensor, in elements, as PyTorch reports them.
func (t *Tensor) Strides() []int {
	s := make([]int, len(t.shape))
	acc := 1
	for i := len(t.shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= t.shape[i]
	}
	return s
}

// Data returns the tensor's elements in row-major order, on the host. Writing to
// the slice changes the tensor (and invalidates recorded gradients). On a host
// device the slice is the tensor's storage. On an accelerator Data copies the
// elements to the host, and the slice stays the tensor's storage until an op next
// uses the tensor, which copies it back: keep it no longer than that. Values and
// SetValues copy instead.
func (t *Tensor) Data() []float32 { return t.h() }

// Values returns a host copy of the tensor's elements in row-major order.
func (t *Tensor) Values() []float32 {
	if t.st != nil {
		return t.st.values()
	}
	return append([]float32(nil), t.data...)
}

// SetValues overwrites the tensor's elements with src (row-major, as many as the
// tensor has), copying them to the device where the tensor lives. It panics on a
// length mismatch.
func (t *Tensor) SetValues(src []float32) {
	if len(src) != t.Len() {
		panic(fmt.Sprintf("tensor: SetValues: %d values for shape %v", len(src), t.shape))
	}
	if t.st != nil {
		t.st.setValues(src)
		return
	}
	copy(t.data, src)
}

// Assign copies src's elements into t's storage in place (shared with t's views),
// recording no gradient: an in-place update of a parameter, as PyTorch's
// param.data.copy_(src). When both are on the same accelerator the copy stays on
// it. It panics when the element counts differ.
func (t *Tensor) Assign(src *Tensor) {
	if src.Len() != t.Len() {
		panic(fmt.Sprintf("tensor: Assign of %v into %v", src.shape, t.shape))
	}
	switch {
	case t.st != nil && src.st != nil && src.dev == t.dev:
		t.st.copyFrom(src.st)
	case t.st != nil:
		t.st.setValues(src.Values())
	default:
		copy(t.data, src.Values())
	}
}

// Item returns the only element of a one-element tensor.
func (t *Tensor) Item() float32 {
	if t.Len() != 1 {
		panic(fmt.Sprintf("tensor: Item of a tensor of shape %v", t.shape))
	}
	if t.st != nil {
		return t.st.values()[0]
	}
	return t.data[0]
}

// Clone returns a copy of t that does not require a gradient and has no history.
func (t *Tensor) Clone() *Tensor {
	c := empty(t.dev, t.shape...)
	if t.st != nil {
		c.st.copyFrom(t.st)
		return c
	}
	copy(c.data, t.data)
	return c
}

// Detach returns a tensor sharing t's data with no history and no gradient.
func (t *Tensor) Detach() *Tensor {
	return t.view(t.shape)
}

// RequiresGrad reports whether gradients flow to t.
func (t *Tensor) RequiresGrad() bool { return t.ag != nil }

// SetRequiresGrad marks a leaf tensor as requiring a gradient (or not) and returns it.
// It panics on a tensor made by an op.
func (t *Tensor) SetRequiresGrad(v bool) *Tensor {
	if t.ag != nil && t.ag.node != nil {
		panic("tensor: SetRequiresGrad on a non-leaf tensor; use Detach first")
	}
	switch {
	case v && t.ag == nil:
		t.ag = &slot{shape: t.shape}
	case !v:
		t.ag = nil
	}
	return t
}

// Grad returns the gradient accumulated into a leaf by Backward, or nil.
func (t *Tensor) Grad() *Tensor {
	if t.ag == nil {
		return nil
	}
	return t.ag.grad
}

// SetGrad replaces the accumulated gradient of a leaf (for optimisers fed a
// transformed gradient, such as a preconditioned one). It panics on a shape mismatch.
func (t *Tensor) SetGrad(g *Tensor) {
	if g != nil && !sameShape(g.shape, t.shape) {
		panic(fmt.Sprintf("tensor: SetGrad: gradient of shape %v for a tensor of shape %v", g.shape, t.shape))
	}
	if t.ag == nil {
		if g == nil {
			return
		}
		panic("tensor: SetGrad on a tensor that does not require a gradient")
	}
	t.ag.grad = g
}

// ZeroGrad drops the accumulated gradient.
func (t *Tensor) ZeroGrad() {
	if t.ag != nil {
		t.ag.grad = nil
	}
}

// String summarises the tensor for debugging.
func (t *Tensor) String() string {
	v := t.data
	if t.st != nil {
		v = t.st.values()
	}
	if len(v) <= 8 {
		return fmt.Sprintf("Tensor%v%v", t.shape, v)
	}
	return fmt.Sprintf("Tensor%v[%v %v %v ...]", t.shape, v[0], v[1], v[2])
}

func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		if s < 0 {
			panic(fmt.Sprintf("tensor: negative size in shape %v", shape))
		}
		n *= s
	}
	return n
}

func cloneInts(s []int) []int { return append([]int(nil), s...) }

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// axis normalises a possibly negative axis index for a tensor of the given rank.
func axis(i, rank int, op string) int {
	if i < 0 {
		i += rank
	}
	if i < 0 || i >= rank {
		panic(fmt.Sprintf("tensor: %s: axis %d out of range for rank %d", op, i, rank))
	}
	return i
}
