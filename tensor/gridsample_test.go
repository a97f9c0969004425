package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// Golden values from torch 1.13.1 (Debian, CPU, AVX2): y = F.grid_sample(x, grid,
// mode='bilinear', padding_mode='zeros', align_corners=ac) with
// x = goldenVals(24, 37, 101) as [1, 2, 3, 4], grid = goldenVals(12, 29, 31)*1.25
// as [1, 2, 3, 2] (some points outside the image), and the gradients of
// sum(y*r), r = goldenVals(12, 53, 97).
var gridSampleGolden = []struct {
	ac           bool
	y, gx, ggrid []uint32
}{
	{false,
		[]uint32{0x00000000, 0xbf042c2b, 0xbed177b8, 0xbed28c8e, 0x3dd52cb9, 0xbe6f7be3, 0x00000000, 0xbda6f46d, 0xbb5bc870, 0x3d2969bc, 0xbe2b96c3, 0x3e68c21b},
		[]uint32{0x3da8b0b7, 0x3e301aed, 0xbda355c5, 0x00000000, 0x3cb76584, 0xbe363c24, 0xbd4c9d38, 0xbe370750, 0x00000000, 0x00000000, 0xbde16a2a, 0xbea924b9, 0xbe320fde, 0xbf1bde5b, 0xbc15f26a, 0x00000000, 0xbd4195d3, 0xbe43dca6, 0x3f17e118, 0xbc8c36e0, 0x00000000, 0x00000000, 0x3dbc56fe, 0x3e7a75eb},
		[]uint32{0xbf04f80c, 0x00000000, 0x3ea011ee, 0x3e3611f5, 0x3f18aa5f, 0x3f8153a8, 0x3fb6f992, 0xbf809935, 0x3f50958a, 0xbd7d28a4, 0x3da7b07a, 0x3fc70d01}},
	{true,
		[]uint32{0x3efb30f8, 0xbf1a7c87, 0xbe8211f4, 0xbed35cec, 0x3dc47c62, 0x3e127001, 0xbe4a1ba1, 0x3cb29203, 0x3c4827a1, 0x3cad6d55, 0xbe3c974e, 0x3cd25fc6},
		[]uint32{0x3c30b924, 0x3e2534b6, 0xbd64400f, 0x00000000, 0x3c206907, 0xbd53d54c, 0xbe85a209, 0xbe2931e3, 0xbf11ce72, 0x3b290fa4, 0xbe337fa6, 0xbdab912c, 0xbcba8a8a, 0xbeff5ea8, 0xbbd18a8d, 0x00000000, 0xbca9526c, 0xbed7bf76, 0x3f15816f, 0x3d9d98c0, 0xbe81458d, 0x3bfd9778, 0x3da3337c, 0x3ecb312f},
		[]uint32{0xbf77ac4a, 0x3ee27c55, 0x3f1a3def, 0xbf4604b7, 0xbdc1bcdc, 0x3e3951d3, 0x3e3f098b, 0xbf0c6eda, 0x3f47899c, 0xbc99a77b, 0x3f54dc64, 0x3fb231c2}},
}

func TestGridSampleGolden(t *testing.T) {
	for _, c := range gridSampleGolden {
		t.Run(fmt.Sprintf("ac%v", c.ac), func(t *testing.T) {
			x := FromSlice(testDev, goldenVals(24, 37, 101), 1, 2, 3, 4).SetRequiresGrad(true)
			gv := goldenVals(12, 29, 31)
			for i := range gv {
				gv[i] *= 1.25
			}
			grid := FromSlice(testDev, gv, 1, 2, 3, 2).SetRequiresGrad(true)
			y := GridSample(x, grid, c.ac)
			if !sameShape(y.Shape(), []int{1, 2, 2, 3}) {
				t.Fatalf("shape %v", y.Shape())
			}
			if i := sameBits(y.Data(), fromBits(c.y...)); i >= 0 {
				t.Errorf("y[%d] = %v, want %v (bit-exact)", i, y.Data()[i], fromBits(c.y...)[i])
			}
			r := FromSlice(testDev, goldenVals(12, 53, 97), 1, 2, 2, 3)
			gs := Grad(y, r, x, grid)
			if i := sameBits(gs[0].Data(), fromBits(c.gx...)); i >= 0 {
				t.Errorf("grad x[%d] = %v, want %v (bit-exact)", i, gs[0].Data()[i], fromBits(c.gx...)[i])
			}
			if i := sameBits(gs[1].Data(), fromBits(c.ggrid...)); i >= 0 {
				t.Errorf("grad grid[%d] = %v, want %v (bit-exact)", i, gs[1].Data()[i], fromBits(c.ggrid...)[i])
			}
		})
	}
}

// normCoord maps a pixel coordinate back to the normalised grid coordinate.
func normCoord(px float64, size int, ac bool) float32 {
	if ac {
		return float32(px/float64(size-1)*2 - 1)
	}
	return float32((2*px+1)/float64(size) - 1)
}

func TestGridSampleIdentity(t *testing.T) {
	// A grid through the pixel centres reproduces the image.
	rng := rand.New(rand.NewPCG(51, 52))
	n, c, h, w := 2, 3, 5, 7
	for _, ac := range []bool{false, true} {
		x := randT(rng, -2, 2, n, c, h, w)
		grid := New(testDev, n, h, w, 2)
		for b := 0; b < n; b++ {
			for i := 0; i < h; i++ {
				for j := 0; j < w; j++ {
					k := ((b*h+i)*w + j) * 2
					grid.h()[k] = normCoord(float64(j), w, ac)
					grid.h()[k+1] = normCoord(float64(i), h, ac)
				}
			}
		}
		y := GridSample(x, grid, ac)
		for i, v := range y.Data() {
			if math.Abs(float64(v-x.h()[i])) > 1e-5 {
				t.Fatalf("ac=%v: y[%d] = %v, want %v", ac, i, v, x.h()[i])
			}
		}
	}
}

func TestGridSampleOutside(t *testing.T) {
	// Outside the image (beyond one pixel) the sample is 0, with zero gradients; half
	// a pixel beyond the corner centre (align_corners) is half the corner value.
	x := FromSlice(testDev, []float32{1, 2, 3, 4}, 1, 1, 2, 2).SetRequiresGrad(true)
	grid := FromSlice(testDev, []float32{-3.5, 0, 0, 5, math.MaxFloat32, 0, -2, -2}, 1, 1, 4, 2).SetRequiresGrad(true)
	y := GridSample(x, grid, true)
	for i, v := range y.Data() {
		want := float32(0)
		if i == 3 {
			want = 0.25 // (-0.5, -0.5) in pixels: a quarter of pixel (0, 0)
		}
		if math.Abs(float64(v-want)) > 1e-6 {
			t.Errorf("y[%d] = %v, want %v", i, v, want)
		}
	}
	gs := Grad(y, Full(testDev, 1, y.Shape()...), x, grid)
	for i, v := range gs[1].Data()[:6] {
		if v != 0 {
			t.Errorf("grid gradient %d = %v, want 0", i, v)
		}
	}
}

func TestGridSampleGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	n, c, h, w := 2, 3, 4, 6
	hg, wg := 3, 5
	for _, ac := range []bool{false, true} {
		t.Run(fmt.Sprintf("ac%v", ac), func(t *testing.T) {
			x := randT(rng, -2, 2, n, c, h, w)
			grid := New(testDev, n, hg, wg, 2).SetRequiresGrad(true)
			// Pixel coordinates from a pixel outside the image to one beyond it on
			// each axis, with fractional parts kept away from the kinks at integers
			// (the finite-difference step is 0.01 in grid units, < 0.04 pixels).
			coord := func(size int) float64 {
				return float64(rng.IntN(size+3)-2) + 0.2 + 0.6*rng.Float64()
			}
			for k := 0; k < n*hg*wg; k++ {
				grid.h()[2*k] = normCoord(coord(w), w, ac)
				grid.h()[2*k+1] = normCoord(coord(h), h, ac)
			}
			// A few fixed points: fully outside, and straddling each border.
			fixed := [][2]float64{{-1.5, 1.3}, {-0.5, 2.4}, {float64(w) - 0.6, 0.3}, {2.3, float64(h) - 0.7}, {float64(w) + 0.4, float64(h) + 0.5}}
			for k, p := range fixed {
				grid.h()[2*k] = normCoord(p[0], w, ac)
				grid.h()[2*k+1] = normCoord(p[1], h, ac)
			}
			checkGrad(t, func(xs []*Tensor) *Tensor { return GridSample(xs[0], xs[1], ac) }, x, grid)
		})
	}
}

func TestGridSampleGradOnlyOne(t *testing.T) {
	// Each gradient is computed alone when only its input requires one.
	rng := rand.New(rand.NewPCG(71, 72))
	x := randT(rng, -1, 1, 1, 2, 3, 3)
	grid := randT(rng, -0.9, 0.9, 1, 2, 2, 2)
	ref := Grad(GridSample(x, grid, false), Full(testDev, 1, 1, 2, 2, 2), x, grid)
	xd := x.Detach()
	gOnly := Grad(GridSample(xd, grid, false), Full(testDev, 1, 1, 2, 2, 2), grid)[0]
	if i := sameBits(gOnly.Data(), ref[1].Data()); i >= 0 {
		t.Errorf("grid gradient alone differs at %d", i)
	}
	gridD := grid.Detach()
	xOnly := Grad(GridSample(x, gridD, false), Full(testDev, 1, 1, 2, 2, 2), x)[0]
	if i := sameBits(xOnly.Data(), ref[0].Data()); i >= 0 {
		t.Errorf("x gradient alone differs at %d", i)
	}
}

func TestGridSamplePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"grid last axis": func() { GridSample(New(testDev, 1, 1, 2, 2), New(testDev, 1, 2, 2, 3), false) },
		"batch":          func() { GridSample(New(testDev, 2, 1, 2, 2), New(testDev, 1, 2, 2, 2), false) },
		"3-D input":      func() { GridSample(New(testDev, 1, 2, 2), New(testDev, 1, 2, 2, 2), true) },
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
