package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestGaussianKernel1D(t *testing.T) {
	// halfsize = max(round(4 sigma), 1) with halves rounded to even, as Python's round.
	for _, c := range []struct {
		sigma float64
		taps  int
	}{
		{0.1, 3},   // round(0.4) = 0 -> at least 1
		{0.625, 5}, // round(2.5) = 2
		{0.875, 9}, // round(3.5) = 4
		{1, 9},
		{1.5, 13},
		{2, 17},
	} {
		k := gaussianKernel1D(c.sigma)
		if len(k) != c.taps {
			t.Errorf("sigma %v: %d taps, want %d", c.sigma, len(k), c.taps)
			continue
		}
		half := len(k) / 2
		for i, v := range k {
			tt := float64(i - half)
			want := float32(math.Exp(-tt * tt / (2 * c.sigma * c.sigma)))
			if v != want || v != k[len(k)-1-i] {
				t.Errorf("sigma %v: k[%d] = %v, want %v (symmetric)", c.sigma, i, v, want)
			}
		}
		if k[half] != 1 {
			t.Errorf("sigma %v: centre tap %v, want 1 (not normalised)", c.sigma, k[half])
		}
	}
}

// blurNaive pads x by reflection and correlates with the 2-D kernel k k^T in
// float64, dividing by (sum k)^2.
func blurNaive(x *Tensor, sigma float64) []float64 {
	k := gaussianKernel1D(sigma)
	half := len(k) / 2
	var s float64
	for _, v := range k {
		s += float64(v)
	}
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	refl := func(i, n int) int {
		for i < 0 || i >= n {
			if i < 0 {
				i = -i
			}
			if i >= n {
				i = 2*(n-1) - i
			}
		}
		return i
	}
	out := make([]float64, 0, x.Len())
	for p := 0; p < n*c; p++ {
		img := x.h()[p*h*w:]
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				var acc float64
				for a := range k {
					for b := range k {
						acc += float64(k[a]) * float64(k[b]) * float64(img[refl(i+a-half, h)*w+refl(j+b-half, w)])
					}
				}
				out = append(out, acc/(s*s))
			}
		}
	}
	return out
}

func TestGaussianBlurNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	for _, c := range []struct {
		shape []int
		sigma float64
	}{
		{[]int{1, 1, 40, 40}, 1},
		{[]int{2, 3, 9, 14}, 2},
		{[]int{1, 2, 5, 3}, 0.5},
		{[]int{2, 1, 12, 7}, 1.3},
	} {
		x := randT(rng, -2, 2, c.shape...)
		y := GaussianBlur(x, c.sigma)
		want := blurNaive(x, c.sigma)
		for i, v := range y.Data() {
			if math.Abs(float64(v)-want[i]) > 2e-6 {
				t.Errorf("%v sigma %v: y[%d] = %v, want %v", c.shape, c.sigma, i, v, want[i])
				break
			}
		}
	}
}

func TestGaussianBlurConstant(t *testing.T) {
	// The blur preserves constants (it divides by the kernel's total weight).
	x := Full(testDev, 3.5, 2, 2, 9, 11)
	for i, v := range GaussianBlur(x, 2).Data() {
		if math.Abs(float64(v)-3.5) > 1e-5 {
			t.Fatalf("y[%d] = %v, want 3.5", i, v)
		}
	}
}

func TestGaussianBlurGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(91, 92))
	for _, c := range []struct {
		shape []int
		sigma float64
	}{
		{[]int{2, 2, 5, 7}, 0.6}, // halfsize 2: reflections fold onto interior pixels
		{[]int{1, 1, 6, 9}, 1},   // halfsize 4, nearly the height
		{[]int{1, 3, 4, 4}, 0.3}, // halfsize 1
	} {
		t.Run(fmt.Sprintf("%v_sigma%v", c.shape, c.sigma), func(t *testing.T) {
			x := randT(rng, -2, 2, c.shape...)
			checkGrad(t, func(xs []*Tensor) *Tensor { return GaussianBlur(xs[0], c.sigma) }, x)
		})
	}
}

func TestChangeNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(101, 102))
	x := randT(rng, -2, 2, 3, 2, 4, 5)
	y := ChangeNorm(x, 25)
	per := 2 * 4 * 5
	for b := 0; b < 3; b++ {
		var s, sx float64
		for i := b * per; i < (b+1)*per; i++ {
			s += float64(y.h()[i]) * float64(y.h()[i])
			sx += float64(x.h()[i]) * float64(x.h()[i])
		}
		if math.Abs(math.Sqrt(s)-25) > 1e-4 {
			t.Errorf("sample %d: norm %v, want 25", b, math.Sqrt(s))
		}
		// Same direction: y = x * 25/||x||.
		for i := b * per; i < (b+1)*per; i++ {
			if want := float64(x.h()[i]) * 25 / math.Sqrt(sx); math.Abs(float64(y.h()[i])-want) > 1e-5 {
				t.Fatalf("y[%d] = %v, want %v", i, y.h()[i], want)
			}
		}
	}
}

func TestChangeNormGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(111, 112))
	for _, shape := range [][]int{{2, 1, 3, 4}, {3, 5}, {1, 2, 2, 2}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			x := randT(rng, 0.2, 1.5, shape...)
			for i := range x.h() {
				if rng.IntN(2) == 0 {
					x.h()[i] = -x.h()[i]
				}
			}
			checkGrad(t, func(xs []*Tensor) *Tensor { return ChangeNorm(xs[0], 3) }, x)
		})
	}
}

func TestBlurPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"too small":      func() { GaussianBlur(New(testDev, 1, 1, 4, 20), 1) }, // halfsize 4 needs H > 4
		"sigma 0":        func() { GaussianBlur(New(testDev, 1, 1, 9, 9), 0) },
		"3-D":            func() { GaussianBlur(New(testDev, 1, 9, 9), 1) },
		"ChangeNorm 0-D": func() { ChangeNorm(Scalar(testDev, 1), 1) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}
