package tensor

import (
	"math/rand/v2"
	"testing"
)

func TestElementwiseGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bin := map[string]func(a, b *Tensor) *Tensor{"Add": Add, "Sub": Sub, "Mul": Mul, "Div": Div}
	shapes := []struct{ a, b []int }{
		{[]int{2, 3}, []int{2, 3}},
		{[]int{2, 3, 4}, []int{4}},
		{[]int{2, 3, 4}, []int{3, 1}},
		{[]int{1, 3, 1}, []int{2, 1, 4}},
		{[]int{2, 3, 4, 5}, []int{1, 3, 1, 1}},
		{[]int{5}, []int{}},
	}
	for name, f := range bin {
		for _, s := range shapes {
			t.Run(name, func(t *testing.T) {
				a := randT(rng, 0.5, 2, s.a...)
				b := randT(rng, 0.5, 2, s.b...)
				checkGrad(t, func(xs []*Tensor) *Tensor { return f(xs[0], xs[1]) }, a, b)
			})
		}
	}
}

func TestUnaryGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ops := []struct {
		name   string
		lo, hi float32
		f      func(*Tensor) *Tensor
	}{
		{"Exp", -2, 2, Exp},
		{"Log", 0.5, 3, Log},
		{"Sqrt", 0.5, 3, Sqrt},
		{"Pow3", 0.5, 2, func(x *Tensor) *Tensor { return Pow(x, 3) }},
		{"Pow2", -2, 2, func(x *Tensor) *Tensor { return Pow(x, 2) }},
		{"PowHalf", 0.5, 2, func(x *Tensor) *Tensor { return Pow(x, 0.5) }},
		{"Abs", 0.2, 2, Abs},
		{"AbsNeg", -2, -0.2, Abs},
		{"Clamp", -3, 3, func(x *Tensor) *Tensor { return Clamp(x, -1.05, 1.05) }},
		{"Sigmoid", -4, 4, Sigmoid},
		{"SiLU", -4, 4, SiLU},
		{"ReLU", 0.1, 2, ReLU},
		{"ReLUNeg", -2, -0.1, ReLU},
		{"ELU", -3, 3, func(x *Tensor) *Tensor { return ELU(x, 1) }},
		{"Tanh", -2, 2, Tanh},
		{"Softplus", -4, 4, Softplus},
		{"Scale", -2, 2, func(x *Tensor) *Tensor { return Scale(x, -2.5) }},
		{"AddScalar", -2, 2, func(x *Tensor) *Tensor { return AddScalar(x, 3) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			for _, shape := range [][]int{{7}, {2, 3, 5}} {
				x := randT(rng, op.lo, op.hi, shape...)
				// Keep Clamp's inputs away from its kinks.
				for i, v := range x.h() {
					if v > 1 && v < 1.1 || v < -1 && v > -1.1 {
						x.h()[i] = 0.5
					}
				}
				checkGrad(t, func(xs []*Tensor) *Tensor { return op.f(xs[0]) }, x)
			}
		})
	}
}

func TestReduceGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := randT(rng, -1, 1, 2, 3, 4, 5)
	cases := map[string]func(*Tensor) *Tensor{
		"SumAll":      func(x *Tensor) *Tensor { return Sum(x, false) },
		"Sum1":        func(x *Tensor) *Tensor { return Sum(x, false, 1) },
		"Sum02keep":   func(x *Tensor) *Tensor { return Sum(x, true, 0, 2) },
		"SumLast":     func(x *Tensor) *Tensor { return Sum(x, false, -1) },
		"Mean13":      func(x *Tensor) *Tensor { return Mean(x, false, 1, 3) },
		"Max2":        func(x *Tensor) *Tensor { return Max(x, 2, false) },
		"Max0keep":    func(x *Tensor) *Tensor { return Max(x, 0, true) },
		"L2Norm":      func(x *Tensor) *Tensor { return L2Norm(x, true, 1, 2, 3) },
		"Reshape":     func(x *Tensor) *Tensor { return Reshape(x, 6, -1) },
		"Permute":     func(x *Tensor) *Tensor { return Permute(x, 2, 0, 3, 1) },
		"Transpose":   func(x *Tensor) *Tensor { return Transpose(x, -1, -2) },
		"Slice":       func(x *Tensor) *Tensor { return Slice(x, 3, 1, 5, 2) },
		"SliceNeg":    func(x *Tensor) *Tensor { return Slice(x, 1, -2, 3, 1) },
		"Expand":      func(x *Tensor) *Tensor { return Expand(Slice(x, 1, 0, 1, 1), 2, 2, 3, 4, 5) },
		"ConcatSplit": func(x *Tensor) *Tensor { p := Split(x, 2, 1, 3); return Concat(2, p[1], p[0]) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			checkGrad(t, func(xs []*Tensor) *Tensor { return f(xs[0]) }, x)
		})
	}
}

func TestMatMulGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	cases := []struct{ a, b []int }{
		{[]int{3, 4}, []int{4, 5}},
		{[]int{2, 3, 4}, []int{2, 4, 5}},
		{[]int{2, 3, 4}, []int{4, 5}},
		{[]int{2, 2, 1, 7}, []int{2, 2, 7, 3}},
	}
	for _, c := range cases {
		a := randT(rng, -1, 1, c.a...)
		b := randT(rng, -1, 1, c.b...)
		checkGrad(t, func(xs []*Tensor) *Tensor { return MatMul(xs[0], xs[1]) }, a, b)
	}
	x := randT(rng, -1, 1, 2, 3, 6)
	w := randT(rng, -1, 1, 4, 6)
	b := randT(rng, -1, 1, 4)
	checkGrad(t, func(xs []*Tensor) *Tensor { return Linear(xs[0], xs[1], xs[2]) }, x, w, b)
	checkGrad(t, func(xs []*Tensor) *Tensor { return Linear(xs[0], xs[1], nil) }, x, w)
}

func TestConv2DGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	cases := []struct {
		name string
		x, w []int
		o    ConvOpts
		bias bool
	}{
		{"3x3pad1", []int{2, 3, 6, 5}, []int{4, 3, 3, 3}, ConvOpts{Padding: 1}, true},
		{"stride2", []int{1, 2, 7, 7}, []int{3, 2, 3, 3}, ConvOpts{Stride: 2, Padding: 1}, true},
		{"dilation2", []int{2, 2, 8, 8}, []int{2, 2, 3, 3}, ConvOpts{Dilation: 2, Padding: 2}, false},
		{"groups2", []int{2, 4, 5, 5}, []int{6, 2, 3, 3}, ConvOpts{Groups: 2, Padding: 1}, true},
		{"depthwise", []int{3, 4, 6, 6}, []int{4, 1, 5, 5}, ConvOpts{Groups: 4, Padding: 2}, false},
		{"depthwiseStride", []int{2, 3, 7, 6}, []int{3, 1, 3, 3}, ConvOpts{Groups: 3, Stride: 2}, true},
		{"pointwise", []int{2, 5, 4, 3}, []int{3, 5, 1, 1}, ConvOpts{}, true},
		{"pointwiseGroups2", []int{2, 4, 3, 3}, []int{6, 2, 1, 1}, ConvOpts{Groups: 2}, true},
		{"depthwiseMultiplier2", []int{2, 3, 5, 5}, []int{6, 1, 3, 3}, ConvOpts{Groups: 3, Padding: 1}, true},
		{"nopad9", []int{1, 1, 12, 12}, []int{2, 1, 9, 9}, ConvOpts{}, false},
		{"7x7s2p3", []int{1, 3, 11, 11}, []int{2, 3, 7, 7}, ConvOpts{Stride: 2, Padding: 3}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := randT(rng, -1, 1, c.x...)
			w := randT(rng, -1, 1, c.w...)
			var b *Tensor
			if c.bias {
				b = randT(rng, -1, 1, c.w[0])
			}
			checkGrad(t, func(xs []*Tensor) *Tensor {
				if c.bias {
					return Conv2D(xs[0], xs[1], xs[2], c.o)
				}
				return Conv2D(xs[0], xs[1], nil, c.o)
			}, append([]*Tensor{x, w}, b)[:2+btoi(c.bias)]...)
			// Against a naive convolution.
			got := Conv2D(x, w, b, c.o)
			want := naiveConv(x, w, b, c.o.norm())
			for i := range want {
				if d := got.h()[i] - want[i]; d > 1e-4 || d < -1e-4 {
					t.Fatalf("element %d: %v, naive %v", i, got.h()[i], want[i])
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func naiveConv(x, w, b *Tensor, o ConvOpts) []float32 {
	n, cin, h, wd := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	cout, cg, kh, kw := w.shape[0], w.shape[1], w.shape[2], w.shape[3]
	ho := (h+2*o.Padding-o.Dilation*(kh-1)-1)/o.Stride + 1
	wo := (wd+2*o.Padding-o.Dilation*(kw-1)-1)/o.Stride + 1
	out := make([]float32, n*cout*ho*wo)
	coutG := cout / o.Groups
	for in := 0; in < n; in++ {
		for co := 0; co < cout; co++ {
			g := co / coutG
			for oy := 0; oy < ho; oy++ {
				for ox := 0; ox < wo; ox++ {
					var s float64
					if b != nil {
						s = float64(b.h()[co])
					}
					for ci := 0; ci < cg; ci++ {
						for ky := 0; ky < kh; ky++ {
							for kx := 0; kx < kw; kx++ {
								iy := oy*o.Stride - o.Padding + ky*o.Dilation
								ix := ox*o.Stride - o.Padding + kx*o.Dilation
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								s += float64(x.h()[((in*cin+g*cg+ci)*h+iy)*wd+ix]) * float64(w.h()[((co*cg+ci)*kh+ky)*kw+kx])
							}
						}
					}
					out[((in*cout+co)*ho+oy)*wo+ox] = float32(s)
				}
			}
		}
	}
	return out
}

func TestBackwardAccumulates(t *testing.T) {
	x := FromSlice(testDev, []float32{1, 2, 3}, 3).SetRequiresGrad(true)
	w := FromSlice(testDev, []float32{4, 5, 6}, 3) // no gradient wanted
	y := Sum(Add(Mul(x, w), Mul(x, x)), false)
	y.Backward()
	y2 := Sum(Mul(x, w), false)
	y2.Backward()
	want := []float32{4 + 2 + 4, 5 + 4 + 5, 6 + 6 + 6}
	for i, v := range x.Grad().h() {
		if v != want[i] {
			t.Fatalf("grad %v, want %v", x.Grad().h(), want)
		}
	}
	if w.Grad() != nil || y.ag == nil {
		t.Fatal("gradient reached a tensor that does not require one")
	}
	if Mul(w, w).ag != nil {
		t.Fatal("an op on constants recorded a node")
	}
}

func TestMatMulTGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			as, bs := []int{2, 3, 4}, []int{2, 4, 5}
			if ta {
				as = []int{2, 4, 3}
			}
			if tb {
				bs = []int{2, 5, 4}
			}
			a, b := randT(rng, -1, 1, as...), randT(rng, -1, 1, bs...)
			checkGrad(t, func(xs []*Tensor) *Tensor { return MatMulT(xs[0], xs[1], ta, tb) }, a, b)
			b2 := randT(rng, -1, 1, bs[1:]...)
			checkGrad(t, func(xs []*Tensor) *Tensor { return MatMulT(xs[0], xs[1], ta, tb) }, a, b2)
		}
	}
	w := randT(rng, -1, 1, 5, 3)
	checkGrad(t, func(xs []*Tensor) *Tensor { return Embedding(xs[0], []int{4, 0, 4}) }, w)
	checkGrad(t, func(xs []*Tensor) *Tensor { return Select(xs[0], 1, []int{2, 0, 2}) }, randT(rng, -1, 1, 2, 3, 2))
}

func TestBackwardDoesNotAlias(t *testing.T) {
	a := FromSlice(testDev, []float32{1, 2}, 2).SetRequiresGrad(true)
	b := FromSlice(testDev, []float32{3, 4}, 2).SetRequiresGrad(true)
	seed := Full(testDev, 1, 2)
	Add(a, b).BackwardWith(seed)
	Add(a, b).BackwardWith(seed)
	for _, x := range []*Tensor{a, b} {
		if x.Grad().h()[0] != 2 || x.Grad().h()[1] != 2 {
			t.Fatalf("grad %v, want [2 2]", x.Grad().h())
		}
	}
	if seed.h()[0] != 1 {
		t.Fatal("backward changed its seed")
	}
}

// A gradient passed on unchanged to two inputs must not be accumulated in place for
// one of them (residual connections have this shape).
func TestGradientSharingSiblings(t *testing.T) {
	for _, swap := range []bool{false, true} {
		a := FromSlice(testDev, []float32{1, 2}, 2).SetRequiresGrad(true)
		b := FromSlice(testDev, []float32{3, 4}, 2).SetRequiresGrad(true)
		a2 := Scale(a, 1)
		tt := Add(a2, b)
		s := Add(tt, tt)
		var l *Tensor
		if swap {
			l = Sum(Add(s, Scale(a2, 1)), false)
		} else {
			l = Sum(Add(Scale(a2, 1), s), false)
		}
		g := Grad(l, nil, a, b)
		if g[0].h()[0] != 3 || g[1].h()[0] != 2 {
			t.Fatalf("swap %v: da %v (want 3), db %v (want 2)", swap, g[0].h(), g[1].h())
		}
	}
}

// Convolutions larger than the column-matrix limit run in bands of output rows; the
// banded result must equal the naive convolution, and its gradients the finite
// differences.
func TestConv2DBands(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	// kdim = 64*9 = 576 and width 15000/... : make wo large enough that a band holds
	// few rows: colLimit / (576 * wo) rows.
	x := randT(rng, -1, 1, 1, 64, 40, 1000)
	w := randT(rng, -0.1, 0.1, 3, 64, 3, 3)
	c := newConvGeom(x, w, ConvOpts{Padding: 1}.norm())
	if len(c.bands()) < 2 {
		t.Fatalf("test geometry makes %d band(s)", len(c.bands()))
	}
	got := Conv2D(x, w, nil, ConvOpts{Padding: 1})
	want := naiveConv(x, w, nil, ConvOpts{Padding: 1}.norm())
	for i := range want {
		if d := got.h()[i] - want[i]; d > 1e-3 || d < -1e-3 {
			t.Fatalf("element %d: %v, naive %v", i, got.h()[i], want[i])
		}
	}
	// Gradients against the naive adjoint: gx[ci,iy,ix] = sum r[co,oy,ox] w[co,ci,ky,kx]
	// and gw[co,ci,ky,kx] = sum r[co,oy,ox] x[ci,iy,ix], with iy = oy - 1 + ky.
	r := Randn(testDev, rng, got.shape...)
	g := Grad(Conv2D(x, w, nil, ConvOpts{Padding: 1}), r, x, w)
	H, W := 40, 1000
	wantGX := make([]float64, x.Len())
	wantGW := make([]float64, w.Len())
	for co := 0; co < 3; co++ {
		for ci := 0; ci < 64; ci++ {
			for ky := 0; ky < 3; ky++ {
				for kx := 0; kx < 3; kx++ {
					wi := ((co*64+ci)*3+ky)*3 + kx
					for oy := 0; oy < H; oy++ {
						iy := oy - 1 + ky
						if iy < 0 || iy >= H {
							continue
						}
						for ox := 0; ox < W; ox++ {
							ix := ox - 1 + kx
							if ix < 0 || ix >= W {
								continue
							}
							rv := float64(r.h()[(co*H+oy)*W+ox])
							wantGX[(ci*H+iy)*W+ix] += rv * float64(w.h()[wi])
							wantGW[wi] += rv * float64(x.h()[(ci*H+iy)*W+ix])
						}
					}
				}
			}
		}
	}
	for i, v := range wantGX {
		if d := float64(g[0].h()[i]) - v; d > 1e-3 || d < -1e-3 {
			t.Fatalf("grad x %d: %v, naive %v", i, g[0].h()[i], v)
		}
	}
	for i, v := range wantGW {
		if d := float64(g[1].h()[i]) - v; d > 1e-2*max(1, v, -v) || d < -1e-2*max(1, v, -v) {
			t.Fatalf("grad w %d: %v, naive %v", i, g[1].h()[i], v)
		}
	}
}
