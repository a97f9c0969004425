package tensor

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// goldenVals returns n deterministic float32 values in [-1, 1): ((i*a) mod b)/b*2 - 1,
// computed in float32 exactly as the Python that produced the golden values did.
func goldenVals(n, a, b int) []float32 {
	v := make([]float32, n)
	for i := range v {
		q := float32((i*a)%b) / float32(b)
		v[i] = q*2 - 1
	}
	return v
}

// fromBits turns IEEE-754 bit patterns into float32 values.
func fromBits(bits ...uint32) []float32 {
	v := make([]float32, len(bits))
	for i, b := range bits {
		v[i] = math.Float32frombits(b)
	}
	return v
}

// sameBits reports the first index where got and want differ in any bit, or -1.
func sameBits(got, want []float32) int {
	if len(got) != len(want) {
		return 0
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			return i
		}
	}
	return -1
}

// Golden values from torch 1.13.1 (Debian, CPU, AVX2): y = F.interpolate(x,
// size=(oh, ow), mode='bilinear', align_corners=ac) with x = goldenVals(numel, 37, 101)
// and gx = d(sum(y*r))/dx with r = goldenVals(numel(y), 53, 97). C == 1 exercises
// PyTorch's channels-last kernel, C > 1 its generic one.
var resizeGolden = []struct {
	shape   []int
	oh, ow  int
	ac      bool
	y, grad []uint32
}{
	{[]int{1, 2, 3, 4}, 5, 3, false,
		[]uint32{0xbf60bd41, 0x3dcac5be, 0xbf173bfe, 0xbf016fb1, 0x3d91fefe, 0xbeb4211e, 0x3d584a6b, 0x3cf35379, 0x3bd84abe, 0x3ed28b96, 0xbc42a96b, 0xbedeb62c, 0x3f267137, 0xbd2237be, 0xbf3ab832, 0xbdafbc66, 0xbddf0cb0, 0xbe072e72, 0x3e1ccf81, 0xbe0be9b2, 0x3e7607ce, 0x3f02f502, 0xbe367eb9, 0x3f4c7649, 0x3d8f4ace, 0xbe6113c9, 0x3e20ddb1, 0xbe65cf00, 0xbe7d7728, 0xbe8a8f9f},
		[]uint32{0xbf31b458, 0xbe8fec4c, 0xbe6d2c82, 0xbee4ba84, 0x3ae1331b, 0x3e3d5118, 0x3ddb9455, 0xbec5f029, 0x3f03143c, 0xbea1de8f, 0xbeeeeef1, 0xbe7652ba, 0xbe2ff1ed, 0x3e0c0d5c, 0x3e3eb971, 0x3d9ad4dc, 0xbd9e59b3, 0xbef4ea59, 0xbed86992, 0x3e4ddb10, 0x3d0cc172, 0xbdc947fb, 0xbd47dfbc, 0x3e904660}},
	{[]int{1, 1, 4, 3}, 2, 5, true,
		[]uint32{0xbf800000, 0xbf2237c3, 0xbe88df0c, 0x3dcac5b8, 0x3eee41e8, 0xbecfd772, 0xbd2237c8, 0x3ea74980, 0xbe9d2606, 0xbf70cac6},
		[]uint32{0xbf741fac, 0xbf20fd5d, 0xbefab8be, 0, 0, 0, 0, 0, 0, 0x3e78151a, 0x3e991278, 0x3f34c894}},
	{[]int{1, 2, 4, 5}, 7, 3, true,
		[]uint32{0xbf800000, 0x3eee41e8, 0xbd8df0c8, 0xbe2c5b40, 0x3e981448, 0xbe7353a4, 0x3f29d260, 0x3e03cd50, 0xbecfd772, 0x3efd7720, 0xbd2237c0, 0xbf130288, 0x3ea74980, 0xbe54e930, 0xbf3e1958, 0x3e2237c2, 0xbec0a238, 0x3db67ec0, 0xbc2237c0, 0xbf0b67ec, 0x3f6bb908, 0xbeb16cfe, 0xbf61958b, 0x3f158b68, 0xbf03cd4e, 0xbd4ac5b8, 0x3ed4e930, 0xbf2ee41e, 0x3f483cd4, 0x3e7d7720, 0x3e181448, 0x3f1d2605, 0x3da237c4, 0x3f7aee42, 0x3ee41e6c, 0xbdb67eb8, 0x3f4fd772, 0x3e8df0cc, 0xbe83cd4e, 0x3f24c0a2, 0x3ddf0cb0, 0xbed9faee},
		[]uint32{0xbf5c5f03, 0, 0xbe62f818, 0, 0xbf151d08, 0x3de83f50, 0, 0x3e991279, 0, 0xbf03f572, 0x3e683f54, 0, 0xbf166ed9, 0, 0xbecddb0f, 0x3ebb61a6, 0, 0x3ba8e800, 0, 0x3f24f2ce, 0xbee05474, 0, 0xbf4c893d, 0, 0xbe23a100, 0x3c28e820, 0, 0x3e4893c8, 0, 0x3ec34c89, 0xbf605474, 0, 0x3e9e59ba, 0, 0xbf0151d1, 0xbe586994, 0, 0x3edb0d32, 0, 0x3d893cb0}},
	{[]int{1, 1, 3, 3}, 5, 4, false,
		[]uint32{0xbf800000, 0xbf0ac5b4, 0x3bf353e0, 0x3eee41e8, 0xbf6bb907, 0xbeecfd76, 0x3db16d01, 0x3f0b67ec, 0xbf4d4e93, 0xbeb0288d, 0x3e526052, 0x3f29d260, 0xbf2ee41e, 0xbe66a747, 0x3ea60513, 0x3f483cd6, 0xbf1a9d26, 0xbe158b67, 0x3ece9303, 0x3f5c83ce},
		[]uint32{0xbf9e7b83, 0xbee2f817, 0x3e869910, 0xbe4d1061, 0x3eb76c32, 0xbf817c0a, 0x3e5ca28f, 0xbcfd5c7f, 0xbe91279b}},
}

func TestResizeBilinearGolden(t *testing.T) {
	for _, c := range resizeGolden {
		t.Run(fmt.Sprintf("%v_to_%dx%d_ac%v", c.shape, c.oh, c.ow, c.ac), func(t *testing.T) {
			x := FromSlice(testDev, goldenVals(numel(c.shape), 37, 101), c.shape...).SetRequiresGrad(true)
			y := ResizeBilinear(x, c.oh, c.ow, c.ac)
			if want := []int{c.shape[0], c.shape[1], c.oh, c.ow}; !sameShape(y.Shape(), want) {
				t.Fatalf("shape %v, want %v", y.Shape(), want)
			}
			if i := sameBits(y.Data(), fromBits(c.y...)); i >= 0 {
				t.Errorf("y[%d] = %v, want %v (bit-exact)", i, y.Data()[i], fromBits(c.y...)[i])
			}
			r := FromSlice(testDev, goldenVals(y.Len(), 53, 97), y.Shape()...)
			g := Grad(y, r, x)[0]
			if i := sameBits(g.Data(), fromBits(c.grad...)); i >= 0 {
				t.Errorf("grad[%d] = %v, want %v (bit-exact)", i, g.Data()[i], fromBits(c.grad...)[i])
			}
		})
	}
}

// resizeNaive is the textbook bilinear resize in float64 with PyTorch's source
// index rule, to check the kernel's indexing.
func resizeNaive(x *Tensor, oh, ow int, ac bool) []float64 {
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	src := func(o, in, out int) (int, int, float64) {
		var s float64
		switch {
		case ac && out > 1:
			s = float64(o) * float64(in-1) / float64(out-1)
		case !ac:
			s = math.Max((float64(o)+0.5)*float64(in)/float64(out)-0.5, 0)
		}
		i0 := int(s)
		return i0, min(i0+1, in-1), s - float64(i0)
	}
	out := make([]float64, 0, n*c*oh*ow)
	for p := 0; p < n*c; p++ {
		img := x.h()[p*h*w:]
		for oy := 0; oy < oh; oy++ {
			y0, y1, ly := src(oy, h, oh)
			for ox := 0; ox < ow; ox++ {
				x0, x1, lx := src(ox, w, ow)
				v := (1-ly)*((1-lx)*float64(img[y0*w+x0])+lx*float64(img[y0*w+x1])) +
					ly*((1-lx)*float64(img[y1*w+x0])+lx*float64(img[y1*w+x1]))
				out = append(out, v)
			}
		}
	}
	return out
}

func TestResizeBilinearNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	cases := []struct {
		shape  []int
		oh, ow int
	}{
		{[]int{2, 3, 7, 5}, 13, 4},
		{[]int{1, 1, 16, 9}, 5, 31},
		{[]int{3, 2, 1, 6}, 4, 6},
		{[]int{1, 4, 6, 6}, 1, 1},
		{[]int{2, 1, 1, 1}, 3, 2},
		{[]int{1, 2, 32, 20}, 32, 7},
	}
	for _, c := range cases {
		for _, ac := range []bool{false, true} {
			x := randT(rng, -2, 2, c.shape...)
			y := ResizeBilinear(x, c.oh, c.ow, ac)
			want := resizeNaive(x, c.oh, c.ow, ac)
			for i, v := range y.Data() {
				if math.Abs(float64(v)-want[i]) > 2e-6 {
					t.Errorf("%v -> %dx%d ac=%v: y[%d] = %v, want %v", c.shape, c.oh, c.ow, ac, i, v, want[i])
					break
				}
			}
		}
	}
}

func TestResizeBilinearValues(t *testing.T) {
	// A 1x2 row [0, 4] to 1x4: align_corners=False samples at 0, 0.25, 0.75, 1.25
	// (clamped at the last pixel); True at 0, 1/3, 2/3, 1.
	x := FromSlice(testDev, []float32{0, 4}, 1, 1, 1, 2)
	for _, c := range []struct {
		ac   bool
		want []float32
	}{
		{false, []float32{0, 1, 3, 4}},
		{true, []float32{0, 4.0 / 3, 8.0 / 3, 4}},
	} {
		y := ResizeBilinear(x, 1, 4, c.ac).Data()
		for i := range y {
			if math.Abs(float64(y[i]-c.want[i])) > 1e-6 {
				t.Errorf("ac=%v: got %v, want %v", c.ac, y, c.want)
				break
			}
		}
	}
	// The same size is the identity, to the bit.
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ac := range []bool{false, true} {
		x := randT(rng, -3, 3, 2, 3, 5, 4)
		if i := sameBits(ResizeBilinear(x, 5, 4, ac).Data(), x.Data()); i >= 0 {
			t.Errorf("ac=%v: same-size resize changed element %d", ac, i)
		}
	}
}

func TestResizeBilinearGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	cases := []struct {
		shape  []int
		oh, ow int
	}{
		{[]int{2, 3, 4, 6}, 7, 9},  // up, non-square
		{[]int{1, 2, 9, 7}, 4, 3},  // down
		{[]int{2, 1, 5, 8}, 11, 3}, // one channel (the channels-last kernel), mixed
		{[]int{1, 2, 3, 5}, 3, 1},  // same height, width to one column
	}
	for _, c := range cases {
		for _, ac := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v_to_%dx%d_ac%v", c.shape, c.oh, c.ow, ac), func(t *testing.T) {
				x := randT(rng, -2, 2, c.shape...)
				checkGrad(t, func(xs []*Tensor) *Tensor { return ResizeBilinear(xs[0], c.oh, c.ow, ac) }, x)
			})
		}
	}
}

func TestResizeBilinearNoGrad(t *testing.T) {
	x := New(testDev, 1, 1, 2, 2)
	if y := ResizeBilinear(x, 3, 3, false); y.RequiresGrad() || y.ag != nil {
		t.Error("ResizeBilinear recorded a node for an input without gradient")
	}
}

func TestResizeBilinearPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"3-D":      func() { ResizeBilinear(New(testDev, 1, 2, 2), 3, 3, false) },
		"zero out": func() { ResizeBilinear(New(testDev, 1, 1, 2, 2), 0, 3, false) },
		"empty in": func() { ResizeBilinear(New(testDev, 1, 1, 0, 2), 2, 3, true) },
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

func TestFusedMulAdd32(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	check := func(a, b, c float32) {
		t.Helper()
		if got, want := fusedMulAdd32(a, b, c), exactFMA32(a, b, c); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fusedMulAdd32(%v, %v, %v) = %v, want %v", a, b, c, got, want)
		}
	}
	for range 100000 {
		a := float32(rng.NormFloat64())
		b := float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(60)-30)))
		c := float32(rng.NormFloat64())
		check(a, b, c)
	}
	// Double rounding: a*b + c = 1 + 2^-23 + 2^-24 - 2^-60 lies just below a float32
	// midpoint; the float64 sum rounds onto the midpoint, which then ties to even,
	// away from the correct 1 + 2^-23.
	a := float32(math.Ldexp(1+math.Ldexp(1, -18), -12))
	b := float32(math.Ldexp(1-math.Ldexp(1, -18), -12))
	c := float32(1 + math.Ldexp(1, -23))
	if float32(float64(a)*float64(b)+float64(c)) == c {
		t.Fatal("the double-rounding case does not double-round")
	}
	if got, want := fusedMulAdd32(a, b, c), c; got != want {
		t.Errorf("double-rounding case: got %v, want %v", got, want)
	}
	check(a, b, c)
	check(-a, b, -c)
}

// exactFMA32 is a*b + c computed exactly with math/big and rounded once to float32.
func exactFMA32(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(400).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetFloat64(float64(c)))
	f, _ := x.Float32()
	return f
}
