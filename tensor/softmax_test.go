package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveSoftmax computes (log-)softmax over axis ax in float64 without max subtraction
// tricks beyond what float64 needs.
func naiveSoftmax(x *Tensor, ax int, log bool) []float64 {
	outer, n, inner := splitAt(x.shape, ax)
	y := make([]float64, x.Len())
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			m := math.Inf(-1)
			for r := 0; r < n; r++ {
				m = math.Max(m, float64(x.h()[(o*n+r)*inner+i]))
			}
			var s float64
			for r := 0; r < n; r++ {
				s += math.Exp(float64(x.h()[(o*n+r)*inner+i]) - m)
			}
			for r := 0; r < n; r++ {
				k := (o*n+r)*inner + i
				if log {
					y[k] = float64(x.h()[k]) - m - math.Log(s)
				} else {
					y[k] = math.Exp(float64(x.h()[k])-m) / s
				}
			}
		}
	}
	return y
}

func TestSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 1))
	cases := []struct {
		shape []int
		ax    int
	}{
		{[]int{7}, 0},
		{[]int{3, 5}, -1},
		{[]int{3, 5}, 0},
		{[]int{2, 3, 4}, 1},
		{[]int{2, 3, 300}, 1}, // more than one block of inner positions
		{[]int{2, 4, 3, 3}, -1},
	}
	for _, log := range []bool{false, true} {
		f, name := Softmax, "Softmax"
		if log {
			f, name = LogSoftmax, "LogSoftmax"
		}
		for _, tc := range cases {
			t.Run(fmt.Sprint(name, tc.shape, tc.ax), func(t *testing.T) {
				x := randT(rng, -3, 3, tc.shape...)
				want := naiveSoftmax(x, axis(tc.ax, len(tc.shape), ""), log)
				if d := maxDiff(f(x, tc.ax).h(), want); d > 1e-6 {
					t.Errorf("forward: max diff %g", d)
				}
				if x.Len() <= 100 {
					checkGrad(t, func(xs []*Tensor) *Tensor { return f(xs[0], tc.ax) }, x)
				}
			})
		}
	}
}

func TestSoftmaxLarge(t *testing.T) {
	// Large logits must not overflow: the maximum is subtracted first.
	x := FromSlice(testDev, []float32{1000, 1001, 1002, -1000}, 1, 4)
	y := Softmax(x, 1).Data()
	ly := LogSoftmax(x, 1).Data()
	want := []float64{0.09003057317038046, 0.24472847105479764, 0.6652409557748219, 0}
	for i := range want {
		if math.Abs(float64(y[i])-want[i]) > 1e-7 {
			t.Errorf("softmax[%d] = %v, want %v", i, y[i], want[i])
		}
	}
	// log softmax_i = x_i - 1002 - log(sum_j e^(x_j - 1002)), within a float32 ulp at 2000.
	for i, xv := range []float64{1000, 1001, 1002, -1000} {
		w := xv - 1002 + math.Log(want[2])
		if math.Abs(float64(ly[i])-w) > 2e-4 {
			t.Errorf("log-softmax[%d] = %v, want %v", i, ly[i], w)
		}
	}
}

func TestSoftmaxGradLarge(t *testing.T) {
	// The backward rule of a big softmax: sum of every row's gradient is zero.
	rng := rand.New(rand.NewPCG(32, 1))
	x := randT(rng, -5, 5, 4, 64)
	y := Softmax(x, -1)
	g := Grad(y, randT(rng, -1, 1, 4, 64).Detach(), x)[0]
	for r := 0; r < 4; r++ {
		var s float64
		for _, v := range g.h()[r*64 : (r+1)*64] {
			s += float64(v)
		}
		if math.Abs(s) > 1e-6 {
			t.Errorf("row %d: gradient sums to %g", r, s)
		}
	}
}
