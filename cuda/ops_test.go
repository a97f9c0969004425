//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"egg/tensor"
)

// opCase is one op of the engine run through the tensor API: f maps the inputs
// (each of the given shape, uniform in [lo, hi)) to an output.
type opCase struct {
	name   string
	shapes [][]int
	lo, hi float32
	f      func(x []*tensor.Tensor) *tensor.Tensor
}

func opCases() []opCase {
	u := func(name string, f func(x *tensor.Tensor) *tensor.Tensor, lo, hi float32) opCase {
		return opCase{name, [][]int{{3, 5, 7}}, lo, hi, func(x []*tensor.Tensor) *tensor.Tensor { return f(x[0]) }}
	}
	b := func(name string, a, c []int, f func(x, y *tensor.Tensor) *tensor.Tensor) opCase {
		return opCase{name, [][]int{a, c}, -2, 2, func(x []*tensor.Tensor) *tensor.Tensor { return f(x[0], x[1]) }}
	}
	conv := func(name string, x, w []int, o tensor.ConvOpts) opCase {
		return opCase{name, [][]int{x, w, {w[0]}}, -1, 1, func(t []*tensor.Tensor) *tensor.Tensor { return tensor.Conv2D(t[0], t[1], t[2], o) }}
	}
	return []opCase{
		u("Scale", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Scale(x, -1.5) }, -3, 3),
		u("AddScalar", func(x *tensor.Tensor) *tensor.Tensor { return tensor.AddScalar(x, 0.25) }, -3, 3),
		u("Exp", tensor.Exp, -5, 5),
		u("Log", tensor.Log, 0.1, 5),
		u("Sqrt", tensor.Sqrt, 0.1, 5),
		u("Pow2", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Pow(x, 2) }, -3, 3),
		u("Pow1.5", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Pow(x, 1.5) }, 0.1, 3),
		u("Abs", tensor.Abs, -3, 3),
		u("Clamp", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Clamp(x, -1, 0.5) }, -3, 3),
		u("Sigmoid", tensor.Sigmoid, -8, 8),
		u("SiLU", tensor.SiLU, -8, 8),
		u("ReLU", tensor.ReLU, -3, 3),
		u("ELU", func(x *tensor.Tensor) *tensor.Tensor { return tensor.ELU(x, 1) }, -4, 4),
		u("Tanh", tensor.Tanh, -4, 4),
		u("Softplus", tensor.Softplus, -25, 25),
		u("Sum", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Sum(x, false, 0, 2) }, -2, 2),
		u("Mean", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Mean(x, true, 1) }, -2, 2),
		u("SoftmaxLast", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Softmax(x, -1) }, -4, 4),
		u("SoftmaxMiddle", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Softmax(x, 1) }, -4, 4),
		u("LogSoftmax", func(x *tensor.Tensor) *tensor.Tensor { return tensor.LogSoftmax(x, -1) }, -4, 4),
		u("Permute", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Permute(x, 2, 0, 1) }, -2, 2),
		{"GridSample", [][]int{{2, 3, 5, 6}, {2, 4, 3, 2}}, -1.2, 1.2, func(x []*tensor.Tensor) *tensor.Tensor { return tensor.GridSample(x[0], x[1], false) }},
		{"GridSampleAlign", [][]int{{2, 3, 5, 6}, {2, 13, 1, 2}}, -1.2, 1.2, func(x []*tensor.Tensor) *tensor.Tensor { return tensor.GridSample(x[0], x[1], true) }},
		{"MaxPool2x2", [][]int{{2, 3, 9, 8}}, -2, 2, func(x []*tensor.Tensor) *tensor.Tensor { return tensor.MaxPool2D(x[0], 2, 2, 0) }},
		{"MaxPool3x3Overlapping", [][]int{{2, 3, 9, 8}}, -2, 2, func(x []*tensor.Tensor) *tensor.Tensor { return tensor.MaxPool2D(x[0], 3, 1, 1) }},
		{"MaxPool3x3Stride2", [][]int{{1, 2, 11, 10}}, -2, 2, func(x []*tensor.Tensor) *tensor.Tensor { return tensor.MaxPool2D(x[0], 3, 2, 1) }},
		u("Expand", func(x *tensor.Tensor) *tensor.Tensor {
			return tensor.Expand(tensor.Slice(x, 1, 0, 1, 1), 2, 3, 4, 7)
		}, -2, 2),
		u("SliceStep", func(x *tensor.Tensor) *tensor.Tensor { return tensor.Slice(x, 2, 1, 7, 2) }, -2, 2),
		b("Add", []int{3, 5, 7}, []int{5, 1}, tensor.Add),
		b("Sub", []int{3, 1, 7}, []int{5, 7}, tensor.Sub),
		b("Mul", []int{3, 5, 7}, []int{3, 5, 7}, tensor.Mul),
		b("Div", []int{3, 5, 7}, []int{1, 5, 1}, func(x, y *tensor.Tensor) *tensor.Tensor {
			return tensor.Div(x, tensor.AddScalar(tensor.Abs(y), 0.5))
		}),
		b("Concat", []int{2, 3, 4}, []int{2, 5, 4}, func(x, y *tensor.Tensor) *tensor.Tensor { return tensor.Concat(1, x, y) }),
		b("MatMul", []int{4, 3, 5}, []int{4, 5, 6}, tensor.MatMul),
		b("MatMulShared", []int{4, 3, 5}, []int{5, 6}, tensor.MatMul),
		b("MatMulTT", []int{2, 5, 3}, []int{2, 6, 5}, func(x, y *tensor.Tensor) *tensor.Tensor { return tensor.MatMulT(x, y, true, true) }),
		b("MatMulTSharedB", []int{2, 5, 3}, []int{5, 6}, func(x, y *tensor.Tensor) *tensor.Tensor { return tensor.MatMulT(x, y, true, false) }),
		{"Linear", [][]int{{2, 3, 8}, {5, 8}, {5}}, -1, 1, func(t []*tensor.Tensor) *tensor.Tensor { return tensor.Linear(t[0], t[1], t[2]) }},
		conv("Conv3x3", []int{2, 3, 9, 8}, []int{4, 3, 3, 3}, tensor.ConvOpts{Padding: 1}),
		conv("Conv3x3Stride2", []int{2, 3, 9, 8}, []int{4, 3, 3, 3}, tensor.ConvOpts{Stride: 2, Padding: 1}),
		conv("Conv1x1", []int{2, 6, 5, 5}, []int{4, 6, 1, 1}, tensor.ConvOpts{}),
		conv("Conv3x3Dil2", []int{1, 2, 9, 9}, []int{3, 2, 3, 3}, tensor.ConvOpts{Padding: 2, Dilation: 2}),
		conv("Conv5x5", []int{1, 2, 12, 10}, []int{3, 2, 5, 5}, tensor.ConvOpts{}),
		conv("Conv3x3Groups2", []int{2, 4, 7, 6}, []int{6, 2, 3, 3}, tensor.ConvOpts{Groups: 2, Padding: 1}),
		conv("Depthwise5x5", []int{2, 4, 9, 9}, []int{4, 1, 5, 5}, tensor.ConvOpts{Groups: 4, Padding: 2}),
		conv("Conv1x1Groups3", []int{2, 6, 4, 5}, []int{9, 2, 1, 1}, tensor.ConvOpts{Groups: 3}),
		{"GroupNorm", [][]int{{2, 8, 4, 3}, {8}, {8}}, -2, 3, func(t []*tensor.Tensor) *tensor.Tensor {
			return tensor.GroupNorm(t[0], 4, t[1], t[2], 1e-5)
		}},
		{"GroupNormPlain", [][]int{{2, 6, 5}}, -2, 3, func(t []*tensor.Tensor) *tensor.Tensor {
			return tensor.GroupNorm(t[0], 3, nil, nil, 1e-5)
		}},
		{"BatchNormEval", [][]int{{2, 4, 3, 3}, {4}, {4}, {4}, {4}}, -1, 1, func(t []*tensor.Tensor) *tensor.Tensor {
			v := tensor.AddScalar(tensor.Abs(t[4].Detach()), 0.5)
			return tensor.BatchNorm2D(t[0], t[1].Detach(), t[2].Detach(), t[3].Detach(), v, false, 0.1, 1e-5)
		}},
		{"AttentionPool", [][]int{{5, 4}, {2, 4, 6}, {2, 4, 6}, {5, 4}}, -1, 1, func(t []*tensor.Tensor) *tensor.Tensor {
			out, w := tensor.AttentionPool(t[0], t[1], t[2], t[3])
			return tensor.Add(out, tensor.Sum(w, false, 2)) // the weights too (rows sum to 1)
		}},
		u("AvgPool2", func(x *tensor.Tensor) *tensor.Tensor { return tensor.AvgPool2D(tensor.Reshape(x, 3, 1, 5, 7), 1, 1, 0) }, -2, 2),
		{"AvgPool2x2", [][]int{{2, 3, 6, 8}}, -2, 2, func(t []*tensor.Tensor) *tensor.Tensor { return tensor.AvgPool2D(t[0], 2, 2, 0) }},
		u("Upsample", func(x *tensor.Tensor) *tensor.Tensor { return tensor.UpsampleNearest2D(x, 2) }, -2, 2),
		{"ResBlockLike", [][]int{{2, 8, 6, 6}, {8, 8, 3, 3}, {8}, {8}}, -1, 1, func(t []*tensor.Tensor) *tensor.Tensor {
			h := tensor.SiLU(tensor.GroupNorm(t[0], 4, t[3], nil, 1e-5))
			h = tensor.Conv2D(h, t[1], t[2], tensor.ConvOpts{Padding: 1})
			return tensor.Add(t[0], h)
		}},
	}
}

// checkOpsMatchCPU runs every op of opCases on acc and on the CPU from the same
// inputs and compares the outputs and the gradients of every input (of a random
// weighting of the output), each within 1e-4 of max(1, max |CPU value|).
func checkOpsMatchCPU(t *testing.T, acc tensor.Accelerator) {
	cpu := tensor.CPU(2)
	dev := tensor.NewAccelerated(acc, cpu)
	for _, c := range opCases() {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 5))
			var xc, xd []*tensor.Tensor
			for _, s := range c.shapes {
				v := make([]float32, numel(s))
				for i := range v {
					v[i] = c.lo + (c.hi-c.lo)*rng.Float32()
				}
				xc = append(xc, tensor.FromSlice(cpu, append([]float32(nil), v...), s...).SetRequiresGrad(true))
				xd = append(xd, tensor.FromSlice(dev, v, s...).SetRequiresGrad(true))
			}
			oc, od := c.f(xc), c.f(xd)
			compare(t, "output", od.Values(), oc.Values())
			r := make([]float32, oc.Len())
			for i := range r {
				r[i] = float32(rng.NormFloat64())
			}
			gc := tensor.Grad(oc, tensor.FromSlice(cpu, append([]float32(nil), r...), oc.Shape()...), xc...)
			gd := tensor.Grad(od, tensor.FromSlice(dev, r, od.Shape()...), xd...)
			for i := range gc {
				compare(t, fmt.Sprintf("gradient of input %d", i), gd[i].Values(), gc[i].Values())
			}
		})
	}
}

func compare(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 1.0
	for _, v := range want {
		scale = max(scale, math.Abs(float64(v)))
	}
	worst, at := 0.0, 0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			d = math.Inf(1)
		}
		if d > worst {
			worst, at = d, i
		}
	}
	if worst > 1e-4*scale {
		t.Errorf("%s: max |device - cpu| = %.3g at %d (device %v, cpu %v), tolerance %.3g", what, worst, at, got[at], want[at], 1e-4*scale)
	} else {
		t.Logf("%s: max |device - cpu| / max(1, |cpu|) = %.2g", what, worst/scale)
	}
}

// TestOpsMatchCPUEmulated runs the ops through the tensor API on the kernel
// emulator (kernels.cu compiled for the CPU) against the CPU device.
func TestOpsMatchCPUEmulated(t *testing.T) { checkOpsMatchCPU(t, emuDevice(t)) }

// TestOpsMatchCPU runs the ops through the tensor API on the GPU against the CPU.
func TestOpsMatchCPU(t *testing.T) { checkOpsMatchCPU(t, gpuDevice(t)) }

// TestEmptySumOnDevice checks that a sum over an empty axis is zeros on the device
// as on the CPU.
func TestEmptySumOnDevice(t *testing.T) {
	dev := tensor.NewAccelerated(emuDevice(t), tensor.CPU(1))
	if got := tensor.Sum(tensor.New(dev, 3, 0), false, 1).Values(); fmt.Sprint(got) != "[0 0 0]" {
		t.Fatalf("sum over an empty axis: %v", got)
	}
}
