package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// distinctT returns a tensor whose values are a random permutation of 0.1*i - c, so
// that every pair differs by far more than the finite-difference step.
func distinctT(rng *rand.Rand, shape ...int) *Tensor {
	t := New(testDev, shape...)
	perm := rng.Perm(t.Len())
	for i, p := range perm {
		t.h()[i] = 0.1*float32(p) - 0.05*float32(len(perm))
	}
	return t.SetRequiresGrad(true)
}

// naivePool computes avg (count_include_pad) or max pooling of a [P, H, W] view.
func naivePool(x *Tensor, k, s, p int, isMax bool) []float64 {
	r := len(x.shape)
	h, w := x.shape[r-2], x.shape[r-1]
	planes := x.Len() / (h * w)
	ho, wo := (h+2*p-k)/s+1, (w+2*p-k)/s+1
	var out []float64
	for pl := 0; pl < planes; pl++ {
		for oy := 0; oy < ho; oy++ {
			for ox := 0; ox < wo; ox++ {
				acc := 0.0
				if isMax {
					acc = math.Inf(-1)
				}
				for ky := 0; ky < k; ky++ {
					for kx := 0; kx < k; kx++ {
						iy, ix := oy*s-p+ky, ox*s-p+kx
						if iy < 0 || iy >= h || ix < 0 || ix >= w {
							continue // zero for avg, -inf for max
						}
						v := float64(x.h()[(pl*h+iy)*w+ix])
						if isMax {
							acc = math.Max(acc, v)
						} else {
							acc += v
						}
					}
				}
				if !isMax {
					acc /= float64(k * k)
				}
				out = append(out, acc)
			}
		}
	}
	return out
}

var poolCases = []struct {
	shape     []int
	k, s, pad int
}{
	{[]int{2, 3, 5, 6}, 2, 2, 0},
	{[]int{1, 2, 5, 5}, 3, 1, 1},
	{[]int{1, 2, 7, 6}, 3, 2, 1},
	{[]int{4, 4}, 2, 0, 1}, // stride 0 means the kernel
	{[]int{2, 1, 3, 3}, 3, 1, 0},
}

func TestAvgPool2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 1))
	for _, tc := range poolCases {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			x := randT(rng, -2, 2, tc.shape...)
			s := tc.s
			if s == 0 {
				s = tc.k
			}
			if d := maxDiff(AvgPool2D(x, tc.k, tc.s, tc.pad).h(), naivePool(x, tc.k, s, tc.pad, false)); d > 1e-6 {
				t.Errorf("forward: max diff %g", d)
			}
			checkGrad(t, func(xs []*Tensor) *Tensor { return AvgPool2D(xs[0], tc.k, tc.s, tc.pad) }, x)
		})
	}
	// PyTorch: F.avg_pool2d(x, 3, 2, 1) of the 3x4 image below.
	x := FromSlice(testDev, []float32{1, 3, 3, 2, 0, 3, 1, 1, 2, 2, 0, 5}, 1, 1, 3, 4)
	want := []float32{0.7777777910232544, 1.4444444179534912, 0.7777777910232544, 1.3333333730697632}
	for i, v := range AvgPool2D(x, 3, 2, 1).h() {
		if v != want[i] {
			t.Errorf("avg_pool2d[%d] = %v, PyTorch %v", i, v, want[i])
		}
	}
}

func TestMaxPool2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	for _, tc := range poolCases {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			x := distinctT(rng, tc.shape...)
			s := tc.s
			if s == 0 {
				s = tc.k
			}
			if d := maxDiff(MaxPool2D(x, tc.k, tc.s, tc.pad).h(), naivePool(x, tc.k, s, tc.pad, true)); d != 0 {
				t.Errorf("forward: max diff %g", d)
			}
			checkGrad(t, func(xs []*Tensor) *Tensor { return MaxPool2D(xs[0], tc.k, tc.s, tc.pad) }, x)
		})
	}
	// Ties: PyTorch sends the gradient to the first maximum in scan order
	// (F.max_pool2d(x, 2, 1) of the 3x4 image below, then sum().backward()).
	x := FromSlice(testDev, []float32{1, 3, 3, 2, 0, 3, 1, 1, 2, 2, 0, 5}, 1, 1, 3, 4).SetRequiresGrad(true)
	y := MaxPool2D(x, 2, 1, 0)
	wantY := []float32{3, 3, 3, 3, 3, 5}
	wantG := []float32{0, 2, 1, 0, 0, 2, 0, 0, 0, 0, 0, 1}
	g := Grad(y, Full(testDev, 1, y.shape...), x)[0]
	for i := range wantY {
		if y.h()[i] != wantY[i] {
			t.Errorf("y[%d] = %v, want %v", i, y.h()[i], wantY[i])
		}
	}
	for i := range wantG {
		if g.h()[i] != wantG[i] {
			t.Errorf("grad[%d] = %v, PyTorch %v", i, g.h()[i], wantG[i])
		}
	}
	// A NaN wins its window; an all -Inf window gives -Inf.
	inf := float32(math.Inf(-1))
	nan := float32(math.NaN())
	y = MaxPool2D(FromSlice(testDev, []float32{1, nan, inf, inf, 2, 0, inf, inf}, 2, 4), 2, 2, 0)
	if v := y.h()[0]; v == v {
		t.Errorf("window with NaN gave %v", v)
	}
	if y.h()[1] != inf {
		t.Errorf("window of -Inf gave %v", y.h()[1])
	}
}

func TestUpsampleNearest2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 1))
	x := FromSlice(testDev, []float32{1, 2, 3, 4, 5, 6}, 1, 2, 3)
	want := []float32{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6}
	y := UpsampleNearest2D(x, 2)
	if !sameShape(y.shape, []int{1, 4, 6}) {
		t.Fatalf("shape %v", y.shape)
	}
	for i := range want {
		if y.h()[i] != want[i] {
			t.Fatalf("y = %v, want %v", y.h(), want)
		}
	}
	for _, tc := range []struct {
		shape []int
		s     int
	}{{[]int{2, 3, 2, 3}, 2}, {[]int{1, 1, 3, 2}, 3}, {[]int{2, 2}, 1}} {
		x := randT(rng, -1, 1, tc.shape...)
		checkGrad(t, func(xs []*Tensor) *Tensor { return UpsampleNearest2D(xs[0], tc.s) }, x)
	}
}

func TestPad2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(44, 1))
	// PyTorch: F.pad(torch.arange(12.).reshape(1, 1, 3, 4), (2, 1, 2, 1), mode="reflect").
	want := []float32{
		10, 9, 8, 9, 10, 11, 10,
		6, 5, 4, 5, 6, 7, 6,
		2, 1, 0, 1, 2, 3, 2,
		6, 5, 4, 5, 6, 7, 6,
		10, 9, 8, 9, 10, 11, 10,
		6, 5, 4, 5, 6, 7, 6,
	}
	x := New(testDev, 1, 1, 3, 4)
	for i := range x.h() {
		x.h()[i] = float32(i)
	}
	y := Pad2D(x, 2, 1, 2, 1, PadReflect)
	if !sameShape(y.shape, []int{1, 1, 6, 7}) {
		t.Fatalf("shape %v", y.shape)
	}
	for i := range want {
		if y.h()[i] != want[i] {
			t.Fatalf("reflect pad = %v, want %v", y.h(), want)
		}
	}
	z := Pad2D(x, 1, 0, 0, 2, PadZeros)
	wantZ := []float32{0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 4, 5, 6, 7, 0, 0, 8, 9, 10, 11, 0, 0}
	for i := range wantZ {
		if z.h()[i] != wantZ[i] {
			t.Fatalf("zero pad = %v, want %v", z.h(), wantZ)
		}
	}
	for _, mode := range []PadMode{PadZeros, PadReflect} {
		for _, p := range [][4]int{{1, 2, 3, 1}, {0, 0, 2, 0}, {2, 2, 2, 2}, {0, 1, 0, 0}} {
			t.Run(fmt.Sprint(mode, p), func(t *testing.T) {
				x := randT(rng, -1, 1, 2, 3, 4)
				checkGrad(t, func(xs []*Tensor) *Tensor { return Pad2D(xs[0], p[0], p[1], p[2], p[3], mode) }, x)
			})
		}
	}
}

func TestPoolPanics(t *testing.T) {
	x := New(testDev, 1, 1, 3, 4)
	for name, f := range map[string]func(){
		"AvgPadTooBig":   func() { AvgPool2D(x, 2, 1, 2) },
		"MaxTooSmall":    func() { MaxPool2D(x, 5, 1, 0) },
		"MaxRank":        func() { MaxPool2D(New(testDev, 4), 2, 2, 0) },
		"UpsampleZero":   func() { UpsampleNearest2D(x, 0) },
		"ReflectTooBig":  func() { Pad2D(x, 3, 0, 0, 0, PadReflect) },
		"PadNegative":    func() { Pad2D(x, 0, -1, 0, 0, PadZeros) },
		"PadUnknownMode": func() { Pad2D(x, 1, 1, 1, 1, PadMode(7)) },
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
