package tensor

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestTimestepEmbedding(t *testing.T) {
	// PyTorch 1.13 (CPU): guided-diffusion's timestep_embedding(th.tensor([0., 1.5, 999.]), 7).
	want := []float32{
		1, 1, 1, 0, 0, 0, 0,
		0.070737198, 0.99757725, 0.999994814, 0.997494996, 0.069567591, 0.00323164649, 0,
		0.999649823, -0.728670716, -0.549264669, -0.0264607519, 0.684864163, 0.835648477, 0,
	}
	e := TimestepEmbedding(testDev, []float32{0, 1.5, 999}, 7, 10000)
	if !sameShape(e.Shape(), []int{3, 7}) || e.RequiresGrad() {
		t.Fatalf("shape %v, requires grad %v", e.Shape(), e.RequiresGrad())
	}
	// cos and sin are correctly rounded here and within an ulp of PyTorch's SLEEF ones;
	// the arguments (t * freqs, at t = 999 up to 999) match bit for bit, else they
	// would differ by ~1e-4.
	for i, w := range want {
		if d := math.Abs(float64(e.Data()[i] - w)); d > 1.2e-7 {
			t.Errorf("element %d = %.9g, PyTorch %.9g", i, e.Data()[i], w)
		}
	}
	// Even dim: [cos | sin] halves, no padding.
	e = TimestepEmbedding(testDev, []float32{3}, 4, 10000)
	f1 := float64(sleefExpf(float32(-math.Log(10000)) / 2))
	wantEven := []float64{math.Cos(3), math.Cos(3 * f1), math.Sin(3), math.Sin(3 * f1)}
	for i, w := range wantEven {
		if math.Abs(float64(e.Data()[i])-w) > 1e-6 {
			t.Errorf("dim 4: element %d = %v, want %v", i, e.Data()[i], w)
		}
	}
}

func TestEmbedSleefExpf(t *testing.T) {
	// Bit patterns (input, torch.exp output) from PyTorch 1.13 on an AVX2 CPU, where its
	// result is not the correctly rounded e^x.
	cases := [][2]uint32{
		{0xbf72b2a4, 0x3ec66674}, // exp(-0.94803834) = 0.387500405
		{0x3f8664bf, 0x4036e164}, // exp(1.04994953) = 2.85750675
		{0x40566bd5, 0x41e418f4}, // exp(3.35033154) = 28.5121841
		{0x3f10a742, 0x3fe13898}, // exp(0.565052152) = 1.7595396
		{0xc0e87520, 0x3a378670}, // exp(-7.26429749) = 0.000700092874
		{0xc205bbd2, 0x2759a2d0}, // exp(-33.4334183) = 3.02030604e-15
		{0x3ec9e98b, 0x3fbde12e}, // exp(0.394359916) = 1.48343444
		{0x406f14b3, 0x4227a8ba}, // exp(3.73563838) = 41.914772
		{0xbf851173, 0x3eb50ac8}, // exp(-1.03959501) = 0.353597879
		{0xc01e0565, 0x3dad63ae}, // exp(-2.46907926) = 0.0846627802
		{0xbf637fea, 0x3ed28914}, // exp(-0.888670564) = 0.411202073
		{0x3fe3fcf7, 0x40bdf9a4}, // exp(1.78115737) = 5.93672371
	}
	for _, c := range cases {
		x := math.Float32frombits(c[0])
		if got := math.Float32bits(sleefExpf(x)); got != c[1] {
			t.Errorf("sleefExpf(%v) = %#x, PyTorch %#x", x, got, c[1])
		}
	}
	// The frequencies of a 128-dim embedding, torch.exp(-ln(1e4) * arange(64) / 64).
	freqBits := map[int]uint32{1: 0x3f5dafd6, 7: 0x3ebaf81a, 13: 0x3e1db040, 31: 0x3c3d330e, 50: 0x3a44948a, 63: 0x38f22cdd}
	for i, w := range freqBits {
		if got := math.Float32bits(sleefExpf(float32(i) * float32(-math.Log(10000)) / 64)); got != w {
			t.Errorf("freq %d = %#x, PyTorch %#x", i, got, w)
		}
	}
	// Everywhere: within 1 ulp of e^x; the limits as SLEEF has them.
	rng := rand.New(rand.NewPCG(51, 1))
	for range 100000 {
		x := float32(rng.Float64()*180 - 90)
		got, exact := float64(sleefExpf(x)), math.Exp(float64(x))
		ulp := float64(math.Nextafter32(float32(exact), float32(math.Inf(1))) - float32(exact))
		if math.Abs(got-exact) > ulp {
			t.Fatalf("sleefExpf(%v) = %v, e^x = %v", x, got, exact)
		}
	}
	if sleefExpf(-105) != 0 || !math.IsInf(float64(sleefExpf(101)), 1) || sleefExpf(0) != 1 {
		t.Errorf("limits: %v %v %v", sleefExpf(-105), sleefExpf(101), sleefExpf(0))
	}
	if v := sleefExpf(float32(math.NaN())); v == v {
		t.Errorf("exp(NaN) = %v", v)
	}
}

func TestEmbedFMA32(t *testing.T) {
	// Products on a float32 midpoint, nudged by a term the float64 sum loses: rounding
	// the float64 sum would give the tie's even neighbour, a fused multiply-add does not.
	for _, c := range []struct{ a, b, c, want float32 }{
		{4097, 4097, 0x1p-40, 16785410},
		{4097, 4097, 0, 16785408},
		{4097, 4099, -0x1p-40, 16793602},
		{4097, 4099, 0, 16793604},
		{1.5, 2, -3, 0},
	} {
		if got := fma32(c.a, c.b, c.c); got != c.want {
			t.Errorf("fma32(%v, %v, %v) = %v, want %v", c.a, c.b, c.c, got, c.want)
		}
	}
	// Random operands against exact big.Float arithmetic.
	rng := rand.New(rand.NewPCG(52, 1))
	r := func() float32 {
		return float32(rng.NormFloat64() * math.Ldexp(1, rng.IntN(40)-20))
	}
	for range 30000 {
		a, b := r(), r()
		c := r()
		if rng.IntN(2) == 0 {
			c = -a*b + float32(rng.NormFloat64())*1e-3*c // cancellation
		}
		exact := new(big.Float).SetPrec(256).SetFloat64(float64(a))
		exact.Mul(exact, new(big.Float).SetPrec(256).SetFloat64(float64(b)))
		exact.Add(exact, new(big.Float).SetPrec(256).SetFloat64(float64(c)))
		want, _ := exact.Float32()
		if got := fma32(a, b, c); got != want {
			t.Fatalf("fma32(%v, %v, %v) = %v, want %v", a, b, c, got, want)
		}
	}
}
