package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// naiveNorm normalises x (rows of the given index sets) in float64: for every set of
// flat indices, y = (x - mean) / sqrt(var + eps), then y*w[ch(i)] + b[ch(i)].
func naiveNorm(x []float32, sets [][]int, eps float64, scale func(i int) (w, b float64)) []float64 {
	y := make([]float64, len(x))
	for _, set := range sets {
		var m, v float64
		for _, i := range set {
			m += float64(x[i])
		}
		m /= float64(len(set))
		for _, i := range set {
			v += (float64(x[i]) - m) * (float64(x[i]) - m)
		}
		v /= float64(len(set))
		for _, i := range set {
			w, b := scale(i)
			y[i] = (float64(x[i])-m)/math.Sqrt(v+eps)*w + b
		}
	}
	return y
}

func maxDiff(got []float32, want []float64) float64 {
	var d float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-want[i]))
	}
	return d
}

func TestGroupNormForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	for _, tc := range []struct {
		shape  []int
		groups int
		affine bool
	}{
		{[]int{2, 6, 3, 4}, 3, true},
		{[]int{1, 8, 5}, 2, false},
		{[]int{3, 4}, 2, true},
		{[]int{2, 64, 6, 6}, 32, true},
	} {
		x := randT(rng, -3, 5, tc.shape...).SetRequiresGrad(false)
		c := tc.shape[1]
		hw := numel(tc.shape[2:])
		var w, b *Tensor
		if tc.affine {
			w = randT(rng, 0.5, 1.5, c).SetRequiresGrad(false)
			b = randT(rng, -1, 1, c).SetRequiresGrad(false)
		}
		cg := c / tc.groups
		var sets [][]int
		for n := 0; n < tc.shape[0]; n++ {
			for g := 0; g < tc.groups; g++ {
				var set []int
				for i := 0; i < cg*hw; i++ {
					set = append(set, (n*tc.groups+g)*cg*hw+i)
				}
				sets = append(sets, set)
			}
		}
		want := naiveNorm(x.h(), sets, 1e-5, func(i int) (float64, float64) {
			ch := i / hw % c
			return float64(at(w, ch, 1)), float64(at(b, ch, 0))
		})
		y := GroupNorm(x, tc.groups, w, b, 1e-5)
		if d := maxDiff(y.h(), want); d > 1e-5 {
			t.Errorf("GroupNorm %v/%d: max diff %g", tc.shape, tc.groups, d)
		}
		if y.RequiresGrad() {
			t.Errorf("GroupNorm of constants requires a gradient")
		}
	}
}

func TestGroupNormGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 1))
	for _, tc := range []struct {
		shape  []int
		groups int
		affine bool
		needX  bool
	}{
		{[]int{2, 4, 3, 3}, 2, true, true},
		{[]int{1, 6, 5}, 3, true, true},
		{[]int{3, 4}, 2, true, true},
		{[]int{2, 6, 2, 3}, 6, false, true},
		{[]int{2, 4, 3, 2}, 1, true, false},
	} {
		t.Run(fmt.Sprint(tc.shape, tc.groups), func(t *testing.T) {
			x := randT(rng, -2, 2, tc.shape...).SetRequiresGrad(tc.needX)
			xs := []*Tensor{x}
			if tc.affine {
				xs = append(xs, randT(rng, 0.5, 1.5, tc.shape[1]), randT(rng, -1, 1, tc.shape[1]))
			}
			checkGrad(t, func(xs []*Tensor) *Tensor {
				if len(xs) == 1 {
					return GroupNorm(xs[0], tc.groups, nil, nil, 1e-5)
				}
				return GroupNorm(xs[0], tc.groups, xs[1], xs[2], 1e-5)
			}, xs...)
		})
	}
}

func TestBatchNorm2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 1))
	shape := []int{3, 4, 2, 5}
	n, c, hw := 3, 4, 10
	x := randT(rng, -2, 3, shape...).SetRequiresGrad(false)
	w := randT(rng, 0.5, 1.5, c).SetRequiresGrad(false)
	b := randT(rng, -1, 1, c).SetRequiresGrad(false)
	rm := randT(rng, -1, 1, c).SetRequiresGrad(false)
	rv := randT(rng, 0.5, 2, c).SetRequiresGrad(false)
	rm0, rv0 := rm.Clone(), rv.Clone()
	var sets [][]int
	for ch := 0; ch < c; ch++ {
		var set []int
		for nn := 0; nn < n; nn++ {
			for i := 0; i < hw; i++ {
				set = append(set, (nn*c+ch)*hw+i)
			}
		}
		sets = append(sets, set)
	}
	chOf := func(i int) (float64, float64) { return float64(w.h()[i/hw%c]), float64(b.h()[i/hw%c]) }
	want := naiveNorm(x.h(), sets, 1e-5, chOf)
	y := BatchNorm2D(x, w, b, rm, rv, true, 0.1, 1e-5)
	if d := maxDiff(y.h(), want); d > 1e-5 {
		t.Errorf("training: max diff %g", d)
	}
	// Running statistics: (1 - 0.1) * old + 0.1 * batch stat, unbiased variance.
	for ch, set := range sets {
		var m, v float64
		for _, i := range set {
			m += float64(x.h()[i])
		}
		m /= float64(len(set))
		for _, i := range set {
			v += (float64(x.h()[i]) - m) * (float64(x.h()[i]) - m)
		}
		v /= float64(len(set) - 1)
		wm := 0.9*float64(rm0.h()[ch]) + 0.1*m
		wv := 0.9*float64(rv0.h()[ch]) + 0.1*v
		if math.Abs(float64(rm.h()[ch])-wm) > 1e-6 || math.Abs(float64(rv.h()[ch])-wv) > 1e-6 {
			t.Errorf("channel %d: running stats %v %v, want %v %v", ch, rm.h()[ch], rv.h()[ch], wm, wv)
		}
	}
	// Evaluation uses the running statistics and leaves them alone.
	rm1, rv1 := rm.Clone(), rv.Clone()
	y = BatchNorm2D(x, w, b, rm, rv, false, 0.1, 1e-5)
	for i := range y.h() {
		ch := i / hw % c
		want := (float64(x.h()[i])-float64(rm1.h()[ch]))/math.Sqrt(float64(rv1.h()[ch])+1e-5)*float64(w.h()[ch]) + float64(b.h()[ch])
		if math.Abs(float64(y.h()[i])-want) > 1e-5 {
			t.Fatalf("eval: element %d = %v, want %v", i, y.h()[i], want)
		}
	}
	if !sameShape(rm.shape, rm1.shape) || rm.h()[0] != rm1.h()[0] || rv.h()[3] != rv1.h()[3] {
		t.Errorf("eval changed the running statistics")
	}
}

func TestBatchNorm2DGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(24, 1))
	for _, training := range []bool{true, false} {
		for _, affine := range []bool{true, false} {
			t.Run(fmt.Sprint(training, affine), func(t *testing.T) {
				shape := []int{2, 3, 3, 2}
				rm := randT(rng, -1, 1, 3).SetRequiresGrad(false)
				rv := randT(rng, 0.5, 2, 3).SetRequiresGrad(false)
				xs := []*Tensor{randT(rng, -2, 2, shape...)}
				if affine {
					xs = append(xs, randT(rng, 0.5, 1.5, 3), randT(rng, -1, 1, 3))
				}
				checkGrad(t, func(xs []*Tensor) *Tensor {
					// The running stats are updated by every call; pass copies.
					m, v := rm.Clone(), rv.Clone()
					if len(xs) == 1 {
						return BatchNorm2D(xs[0], nil, nil, m, v, training, 0.1, 1e-5)
					}
					return BatchNorm2D(xs[0], xs[1], xs[2], m, v, training, 0.1, 1e-5)
				}, xs...)
			})
		}
	}
}

func TestLayerNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 1))
	for _, tc := range []struct {
		shape, norm []int
		affine      bool
	}{
		{[]int{3, 5}, []int{5}, true},
		{[]int{2, 3, 4}, []int{3, 4}, true},
		{[]int{2, 3, 4}, []int{4}, false},
		{[]int{6}, []int{6}, true},
	} {
		t.Run(fmt.Sprint(tc.shape, tc.norm), func(t *testing.T) {
			x := randT(rng, -2, 3, tc.shape...)
			d := numel(tc.norm)
			xs := []*Tensor{x}
			if tc.affine {
				xs = append(xs, randT(rng, 0.5, 1.5, tc.norm...), randT(rng, -1, 1, tc.norm...))
			}
			f := func(xs []*Tensor) *Tensor {
				if len(xs) == 1 {
					return LayerNorm(xs[0], tc.norm, nil, nil, 1e-5)
				}
				return LayerNorm(xs[0], tc.norm, xs[1], xs[2], 1e-5)
			}
			var sets [][]int
			for r := 0; r < x.Len()/d; r++ {
				var set []int
				for j := 0; j < d; j++ {
					set = append(set, r*d+j)
				}
				sets = append(sets, set)
			}
			want := naiveNorm(x.h(), sets, 1e-5, func(i int) (float64, float64) {
				if !tc.affine {
					return 1, 0
				}
				return float64(xs[1].h()[i%d]), float64(xs[2].h()[i%d])
			})
			if diff := maxDiff(f(xs).h(), want); diff > 1e-5 {
				t.Errorf("forward: max diff %g", diff)
			}
			checkGrad(t, f, xs...)
		})
	}
}

func TestBatchNormGroupNormLayerNormPanics(t *testing.T) {
	x := New(testDev, 2, 6, 3, 3)
	for name, f := range map[string]func(){
		"GroupNormGroups": func() { GroupNorm(x, 4, nil, nil, 1e-5) },
		"GroupNormWeight": func() { GroupNorm(x, 3, New(testDev, 5), nil, 1e-5) },
		"BatchNormRank":   func() { BatchNorm2D(New(testDev, 2, 3), nil, nil, nil, nil, true, 0.1, 1e-5) },
		"BatchNormEval":   func() { BatchNorm2D(x, nil, nil, nil, nil, false, 0.1, 1e-5) },
		"BatchNormOne":    func() { BatchNorm2D(New(testDev, 1, 2, 1, 1), nil, nil, nil, nil, true, 0.1, 1e-5) },
		"LayerNormShape":  func() { LayerNorm(x, []int{4}, nil, nil, 1e-5) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			f()
		})
	}
}

// cpuTime returns the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLoop runs f b.N times and also reports the CPU time per call (all threads),
// which a busy machine inflates less than the wall time.
func benchLoop(b *testing.B, f func()) {
	c0 := cpuTime()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkGroupNorm measures GroupNorm(32) on [4, 64, 64, 64], the shape of the
// engine benchmark, forward and backward (input, weight and bias gradients), next to
// the 3x3 64->64 convolution it follows.
func BenchmarkGroupNorm(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	dev := CPU(0)
	x := Randn(dev, rng, 4, 64, 64, 64).SetRequiresGrad(true)
	w := Randn(dev, rng, 64).SetRequiresGrad(true)
	bias := Randn(dev, rng, 64).SetRequiresGrad(true)
	b.Run("Forward", func(b *testing.B) {
		benchLoop(b, func() { GroupNorm(x, 32, w, bias, 1e-5) })
	})
	b.Run("Backward", func(b *testing.B) {
		y := GroupNorm(x, 32, w, bias, 1e-5)
		g := Randn(dev, rng, y.shape...)
		benchLoop(b, func() { y.ag.node.backward(g) })
	})
	b.Run("BackwardInputOnly", func(b *testing.B) {
		y := GroupNorm(x, 32, w.Detach(), bias.Detach(), 1e-5)
		g := Randn(dev, rng, y.shape...)
		benchLoop(b, func() { y.ag.node.backward(g) })
	})
	b.Run("Conv3x3", func(b *testing.B) {
		k := Randn(dev, rng, 64, 64, 3, 3)
		benchLoop(b, func() { Conv2D(x.Detach(), k, nil, ConvOpts{Padding: 1}) })
	})
}

// checkThreads runs f on a 1-thread and a 3-thread device with the same inputs and
// asks for bit-identical outputs and input gradients: the kernels split work without
// changing any sum's order.
func checkThreads(t *testing.T, name string, shape []int, f func(x *Tensor) *Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(99, uint64(len(name))))
	data := make([]float32, numel(shape))
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	var outs, grads [][]float32
	for _, dev := range []*Device{NewCPU(testDev.GEMM(), 1), NewCPU(testDev.GEMM(), 3)} {
		x := FromSlice(dev, append([]float32(nil), data...), shape...).SetRequiresGrad(true)
		y := f(x)
		seed := New(dev, y.shape...)
		for i := range seed.h() {
			seed.h()[i] = float32(i%7) - 3
		}
		outs = append(outs, y.h())
		grads = append(grads, Grad(y, seed, x)[0].h())
	}
	for i := range outs[0] {
		if outs[0][i] != outs[1][i] {
			t.Fatalf("%s: output %d differs between 1 and 3 threads: %v, %v", name, i, outs[0][i], outs[1][i])
		}
	}
	for i := range grads[0] {
		if grads[0][i] != grads[1][i] {
			t.Fatalf("%s: gradient %d differs between 1 and 3 threads: %v, %v", name, i, grads[0][i], grads[1][i])
		}
	}
}

func TestGroupNormBatchNormLayerNormThreads(t *testing.T) {
	w := func(x *Tensor, n int) *Tensor { return Full(x.dev, 1.5, n).SetRequiresGrad(true) }
	checkThreads(t, "GroupNorm", []int{2, 64, 32, 32}, func(x *Tensor) *Tensor { return GroupNorm(x, 32, w(x, 64), w(x, 64), 1e-5) })
	checkThreads(t, "BatchNorm2D", []int{4, 16, 32, 32}, func(x *Tensor) *Tensor {
		return BatchNorm2D(x, w(x, 16), w(x, 16), New(x.dev, 16), Full(x.dev, 1, 16), true, 0.1, 1e-5)
	})
	checkThreads(t, "LayerNorm", []int{300, 600}, func(x *Tensor) *Tensor {
		return LayerNorm(x, []int{600}, Full(x.dev, 1.5, 600).SetRequiresGrad(true), nil, 1e-5)
	})
	checkThreads(t, "Softmax", []int{40, 300}, func(x *Tensor) *Tensor { return Softmax(x, -1) })
	checkThreads(t, "LogSoftmax", []int{4, 30, 300}, func(x *Tensor) *Tensor { return LogSoftmax(x, 1) })
	checkThreads(t, "AvgPool2D", []int{4, 16, 20, 20}, func(x *Tensor) *Tensor { return AvgPool2D(x, 3, 2, 1) })
	checkThreads(t, "MaxPool2D", []int{4, 16, 20, 20}, func(x *Tensor) *Tensor { return MaxPool2D(x, 2, 2, 0) })
	checkThreads(t, "UpsampleNearest2D", []int{4, 16, 20, 20}, func(x *Tensor) *Tensor { return UpsampleNearest2D(x, 2) })
	checkThreads(t, "Pad2D", []int{4, 16, 20, 20}, func(x *Tensor) *Tensor { return Pad2D(x, 2, 1, 3, 2, PadReflect) })
}
