package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
)

// expKernel is one exp-family kernel in both implementations, with its float64
// reference. Unary kernels ignore g.
type expKernel struct {
	name           string
	fast, portable func(dst, x, g []float32)
	lo, hi         float32                                   // where the sweep concentrates
	ref            func(x, g float64) (exact, scale float64) // scale: the magnitude errors are measured against
	bound, goBound float64                                   // max error in ulps of the scale (fast, portable)
	floor          float64                                   // absolute errors up to floor*max(1, |g|) pass (underflow)
}

const eluTestAlpha = 1.7

func expKernels() []expKernel {
	un := func(k func(dst, src []float32)) func(dst, x, g []float32) {
		return func(dst, x, _ []float32) { k(dst, x) }
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	same := func(f func(float64) float64) func(x, g float64) (float64, float64) {
		return func(x, _ float64) (float64, float64) { v := f(x); return v, math.Abs(v) }
	}
	eluS := func(d, x, _ []float32) { eluSlice(d, x, eluTestAlpha) }
	eluG := func(d, x, _ []float32) { eluSliceGo(d, x, eluTestAlpha) }
	eluGradS := func(d, x, g []float32) { eluGradSlice(d, x, g, eluTestAlpha) }
	eluGradG := func(d, x, g []float32) { eluGradSliceGo(d, x, g, eluTestAlpha) }
	return []expKernel{
		{name: "exp", fast: un(expSlice), portable: un(expSliceGo), lo: -104, hi: 89,
			ref: same(math.Exp), bound: 1, goBound: 2},
		{name: "sigmoid", fast: un(sigmoidSlice), portable: un(sigmoidSliceGo), lo: -90, hi: 20,
			ref: same(sig), bound: 3, goBound: 3, floor: 3e-39},
		{name: "mulSigmoid", fast: mulSigmoidSlice, portable: mulSigmoidSliceGo, lo: -90, hi: 20,
			ref:   func(x, g float64) (float64, float64) { v := g * sig(x); return v, math.Abs(v) },
			bound: 3.5, goBound: 3.5, floor: 3e-39},
		{name: "silu", fast: un(siluSlice), portable: un(siluSliceGo), lo: -90, hi: 20,
			ref: same(func(x float64) float64 { return x * sig(x) }), bound: 3, goBound: 3, floor: 3e-37},
		{name: "siluGrad", fast: siluGradSlice, portable: siluGradSliceGo, lo: -90, hi: 20,
			ref: func(x, g float64) (float64, float64) {
				s := sig(x)
				// 1 + x(1-s) cancels near x = -1.28: measure against the terms' size.
				return g * s * (1 + x*(1-s)), math.Abs(g*s) * (1 + math.Abs(x*(1-s)))
			}, bound: 5, goBound: 5, floor: 3e-37},
		{name: "elu", fast: eluS, portable: eluG, lo: -20, hi: 2,
			ref: same(func(x float64) float64 {
				if x > 0 {
					return x
				}
				return eluTestAlpha * math.Expm1(x)
			}), bound: 2.5, goBound: 2},
		{name: "eluGrad", fast: eluGradS, portable: eluGradG, lo: -105, hi: 2,
			ref: func(x, g float64) (float64, float64) {
				v := g * eluTestAlpha * math.Exp(x) // NaN for NaN x
				if x > 0 {
					v = g
				}
				return v, math.Abs(v)
			}, bound: 3, goBound: 3, floor: 1e-44},
		{name: "tanh", fast: un(tanhSlice), portable: un(tanhSliceGo), lo: -10, hi: 10,
			ref: same(math.Tanh), bound: 3, goBound: 1},
		{name: "softplus", fast: un(softplusSlice), portable: un(softplusSliceGo), lo: -105, hi: 25,
			ref: same(func(x float64) float64 {
				if x > 20 {
					return x
				}
				return math.Log1p(math.Exp(x))
			}), bound: 3, goBound: 1, floor: 3e-45},
	}
}

// ulp32 returns the spacing of float32 values at |v| (subnormal spacing below the
// normal range, the top binade's spacing beyond MaxFloat32).
func ulp32(v float64) float64 {
	v = math.Abs(v)
	switch {
	case v < 0x1p-126:
		return 0x1p-149
	case v >= 0x1p127:
		return 0x1p104
	}
	_, e := math.Frexp(v)
	return math.Ldexp(1, e-24)
}

// errUlps returns |got - exact| in ulps of max(|exact|, scale) and as an absolute
// value: 0 when both are NaN, +Inf when only one is. Magnitudes from 2^128 on,
// infinities included, count as 2^128 (float32 rounding overflows there).
func errUlps(got float32, exact, scale float64) (ulps, abs float64) {
	g := float64(got)
	if math.IsNaN(g) || math.IsNaN(exact) {
		if math.IsNaN(g) && math.IsNaN(exact) {
			return 0, 0
		}
		return math.Inf(1), math.Inf(1)
	}
	if math.IsInf(g, 0) && g == exact {
		return 0, 0
	}
	// Past 2^128 every value rounds to infinity, which counts as 2^128.
	g = math.Copysign(math.Min(math.Abs(g), 0x1p128), g)
	exact = math.Copysign(math.Min(math.Abs(exact), 0x1p128), exact)
	abs = math.Abs(g - exact)
	return abs / ulp32(math.Max(math.Abs(exact), scale)), abs
}

// edgeInputs are special values for every kernel.
var edgeInputs = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 1e-8, -1e-8, 1e-30, -1e-30,
	0x1p-149, -0x1p-149, 0x1p-127, -0x1p-127, 0x1p-126, -0x1p-126,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -float32(math.NaN()),
	math.Float32frombits(0x7fa00001), math.Float32frombits(0xffc12345), // signalling, payload
	math.MaxFloat32, -math.MaxFloat32,
	88.72283, 88.722839, 88.72284, 88.7229, 89, -87.33654, -87.3366, -88.72283, -88.7229,
	-100, 100, -103.27893, -103.9720, -103.97208, -103.97209, -104, -104.00001, -105, 150, -150,
	17, 17.1, 19.99, 20, 20.01, 25, -17, -20, 44, -44, 9, -9, 9.1, -9.1,
	0.34657359, -0.34657359, 0.3466, -0.3466, 0.6931472, -0.6931472, 1.2784645, -1.2784645,
}

// expTestInputs returns the edge inputs, every stride-th float32 bit pattern, and
// dense uniform sweeps over [-110, 110] and [-1, 1]: 1.05M inputs, 98k with -short,
// 8.4M with EGG_EXHAUSTIVE set.
func expTestInputs(short bool) []float32 {
	stride, sweep := uint64(8191), 1<<18
	switch {
	case os.Getenv("EGG_EXHAUSTIVE") != "":
		stride, sweep = 1021, 1<<21
	case short:
		stride, sweep = 65521, 1<<14
	}
	xs := append([]float32(nil), edgeInputs...)
	for b := uint64(0); b < 1<<32; b += stride {
		xs = append(xs, math.Float32frombits(uint32(b)))
	}
	for i := range sweep {
		xs = append(xs, -110+220*float32(i)/float32(sweep))
		xs = append(xs, -1+2*float32(i)/float32(sweep))
	}
	return xs
}

// checkKernel compares f over xs and gs with the reference values exact (and their
// scales) and reports the worst error.
func checkKernel(t *testing.T, k expKernel, impl string, f func(dst, x, g []float32), bound float64, xs, gs []float32, exact, scale []float64) {
	t.Helper()
	dst := make([]float32, len(xs))
	f(dst, xs, gs)
	worst, worstX, worstG := 0.0, float32(0), float32(0)
	fails := 0
	for i, x := range xs {
		u, abs := errUlps(dst[i], exact[i], scale[i])
		if abs <= k.floor*math.Max(1, math.Abs(float64(gs[i]))) {
			continue
		}
		if u > worst {
			worst, worstX, worstG = u, x, gs[i]
		}
		if u > bound && fails < 5 {
			fails++
			t.Errorf("%s %s(%v, g %v) = %v, want %v (%.3g ulp)", impl, k.name, x, gs[i], dst[i], exact[i], u)
		}
	}
	t.Logf("%s %s: max error %.3f ulp (at x = %v, g = %v) over %d inputs", impl, k.name, worst, worstX, worstG, len(xs))
}

func kernelInputs(k expKernel, short bool) (xs, gs []float32) {
	xs = expTestInputs(short)
	n := 1 << 17
	if short {
		n = 1 << 12
	}
	rng := rand.New(rand.NewPCG(17, 29))
	for range n {
		xs = append(xs, k.lo+(k.hi-k.lo)*rng.Float32())
	}
	gs = make([]float32, len(xs))
	for i := range gs {
		gs[i] = float32(rng.NormFloat64())
	}
	gs[0], gs[1] = 1, -1
	return xs, gs
}

func TestExpKernelsAccuracy(t *testing.T) {
	t.Logf("kernels: %s", simdKernels)
	for _, k := range expKernels() {
		t.Run(k.name, func(t *testing.T) {
			xs, gs := kernelInputs(k, testing.Short())
			exact, scale := make([]float64, len(xs)), make([]float64, len(xs))
			for i, x := range xs {
				exact[i], scale[i] = k.ref(float64(x), float64(gs[i]))
			}
			if simdKernels == "go" {
				checkKernel(t, k, "go", k.fast, k.goBound, xs, gs, exact, scale)
			} else {
				checkKernel(t, k, simdKernels, k.fast, k.bound, xs, gs, exact, scale)
				checkKernel(t, k, "go", k.portable, k.goBound, xs, gs, exact, scale)
			}
		})
	}
}

// TestExpSliceSLEEF checks that expSlice equals sleefExpf (and so PyTorch's
// torch.exp) bit for bit when it runs the assembly. EGG_EXHAUSTIVE=1 checks all
// 2^32 inputs, and the 1-ulp bound against math.Exp with them (about 10 minutes on
// two cores; -timeout 30m).
func TestExpSliceSLEEF(t *testing.T) {
	if simdKernels == "go" {
		t.Skip("portable kernels: expSlice is Cephes expf, not SLEEF")
	}
	check := func(xs, dst []float32, maxUlp *float64) error {
		expSlice(dst, xs)
		for i, x := range xs {
			want := sleefExpf(x)
			if x != x {
				if dst[i] == dst[i] {
					return fmt.Errorf("exp(%v) = %v", x, dst[i])
				}
				continue
			}
			if math.Float32bits(dst[i]) != math.Float32bits(want) {
				return fmt.Errorf("exp(%v) = %v (%#x), sleefExpf %v (%#x)", x, dst[i], math.Float32bits(dst[i]), want, math.Float32bits(want))
			}
			if maxUlp != nil {
				if u, _ := errUlps(dst[i], math.Exp(float64(x)), 0); u > *maxUlp {
					*maxUlp = u
				}
			}
		}
		return nil
	}
	if os.Getenv("EGG_EXHAUSTIVE") == "" {
		xs := expTestInputs(testing.Short())
		if err := check(xs, make([]float32, len(xs)), nil); err != nil {
			t.Fatal(err)
		}
		return
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	worst := make([]float64, workers)
	const block = 1 << 20
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			xs, dst := make([]float32, block), make([]float32, block)
			for b := uint64(w) * block; b < 1<<32 && errs[w] == nil; b += uint64(workers) * block {
				for i := range xs {
					xs[i] = math.Float32frombits(uint32(b) + uint32(i))
				}
				errs[w] = check(xs, dst, &worst[w])
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		worst[0] = math.Max(worst[0], worst[w])
	}
	t.Logf("all 2^32 inputs equal sleefExpf; max error %.4f ulp", worst[0])
	if worst[0] > 1 {
		t.Errorf("max error %.4f ulp", worst[0])
	}
}

// TestExpKernelsTails checks that every element's result is independent of its
// position (the masked tail computes what the 8-wide loop does), that nothing past
// len(dst) is written, and that dst may be an input.
func TestExpKernelsTails(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	const n = 48
	x := make([]float32, n+8)
	g := make([]float32, n+8)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 8)
		g[i] = float32(rng.NormFloat64())
	}
	x[5], x[13], x[22] = float32(math.NaN()), -100, 100
	for _, k := range expKernels() {
		for _, impl := range []struct {
			name string
			f    func(dst, x, g []float32)
		}{{simdKernels, k.fast}, {"go", k.portable}} {
			single := make([]float32, len(x))
			for i := range x {
				k1 := make([]float32, 1)
				impl.f(k1, x[i:i+1], g[i:i+1])
				single[i] = k1[0]
			}
			for off := range 8 {
				for m := 0; off+m <= n; m++ {
					dst := make([]float32, m+9)
					for i := range dst {
						dst[i] = 12345
					}
					impl.f(dst[:m], x[off:off+m], g[off:off+m])
					for i := range m {
						if math.Float32bits(dst[i]) != math.Float32bits(single[off+i]) && !(dst[i] != dst[i] && single[off+i] != single[off+i]) {
							t.Fatalf("%s/%s: element %d of x[%d:%d] = %v, alone %v", k.name, impl.name, i, off, off+m, dst[i], single[off+i])
						}
					}
					for i := m; i < len(dst); i++ {
						if dst[i] != 12345 {
							t.Fatalf("%s/%s: x[%d:%d] wrote dst[%d]", k.name, impl.name, off, off+m, i)
						}
					}
				}
			}
			// In place, on the first input and on the second.
			in := append([]float32(nil), x...)
			impl.f(in, in, g)
			in2 := append([]float32(nil), g...)
			impl.f(in2, x, in2)
			for i := range x {
				same := func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b }
				if !same(in[i], single[i]) || !same(in2[i], single[i]) {
					t.Fatalf("%s/%s: in place element %d = %v, %v; want %v", k.name, impl.name, i, in[i], in2[i], single[i])
				}
			}
		}
	}
}

// withPortableKernels runs f with the portable Go kernels in place.
func withPortableKernels(f func()) {
	e, s, ms, si, sg, el, eg, th, sp, name := expSlice, sigmoidSlice, mulSigmoidSlice, siluSlice,
		siluGradSlice, eluSlice, eluGradSlice, tanhSlice, softplusSlice, simdKernels
	defer func() {
		expSlice, sigmoidSlice, mulSigmoidSlice, siluSlice, siluGradSlice = e, s, ms, si, sg
		eluSlice, eluGradSlice, tanhSlice, softplusSlice, simdKernels = el, eg, th, sp, name
	}()
	expSlice, sigmoidSlice, mulSigmoidSlice = expSliceGo, sigmoidSliceGo, mulSigmoidSliceGo
	siluSlice, siluGradSlice = siluSliceGo, siluGradSliceGo
	eluSlice, eluGradSlice = eluSliceGo, eluGradSliceGo
	tanhSlice, softplusSlice = tanhSliceGo, softplusSliceGo
	simdKernels = "go"
	f()
}

// TestExpFamilyOps checks the ops on large arguments (no NaN, the limits PyTorch
// gives) and their gradients by finite differences, with both implementations.
func TestExpFamilyOps(t *testing.T) {
	run := func(t *testing.T) {
		big := FromSlice(testDev, []float32{-1000, -100, -89, -50, 50, 89, 100, 1000}, 8)
		check := func(name string, got *Tensor, want []float32, tol float32) {
			t.Helper()
			for i, w := range want {
				v := got.h()[i]
				if v != v || math.Abs(float64(v-w)) > float64(tol)*math.Max(1, math.Abs(float64(w))) {
					t.Errorf("%s(%v) = %v, want %v", name, big.h()[i], v, w)
				}
			}
		}
		check("SiLU", SiLU(big), []float32{0, 0, 0, -9.6e-21, 50, 89, 100, 1000}, 1e-6)
		check("Sigmoid", Sigmoid(big), []float32{0, 0, 0, 1.9e-22, 1, 1, 1, 1}, 1e-6)
		check("Exp", Exp(big), []float32{0, 0, 0, 1.9287498e-22, 5.1847055e+21, float32(math.Inf(1)), float32(math.Inf(1)), float32(math.Inf(1))}, 1e-6)
		check("Tanh", Tanh(big), []float32{-1, -1, -1, -1, 1, 1, 1, 1}, 0)
		check("Softplus", Softplus(big), []float32{0, 0, 0, 1.9287498e-22, 50, 89, 100, 1000}, 1e-6)
		check("ELU", ELU(big, 1), []float32{-1, -1, -1, -1, 50, 89, 100, 1000}, 0)
		if v := SiLU(FromSlice(testDev, []float32{-100}, 1)).h()[0]; v != 0 || !math.Signbit(float64(v)) {
			t.Errorf("SiLU(-100) = %v, want -0", v)
		}
		xg := big.Clone().SetRequiresGrad(true)
		for name, f := range map[string]func(*Tensor) *Tensor{"SiLU": SiLU, "Sigmoid": Sigmoid, "Tanh": Tanh, "Softplus": Softplus,
			"ELU": func(x *Tensor) *Tensor { return ELU(x, 1) }} {
			for i, v := range Grad(f(xg), Full(testDev, 1, 8), xg)[0].h() {
				if v != v {
					t.Errorf("d%s/dx(%v) = NaN", name, big.h()[i])
				}
			}
		}
		rng := rand.New(rand.NewPCG(8, 9))
		for _, op := range []struct {
			name string
			f    func(*Tensor) *Tensor
		}{{"Exp", Exp}, {"Sigmoid", Sigmoid}, {"SiLU", SiLU}, {"Tanh", Tanh}, {"Softplus", Softplus},
			{"ELU", func(x *Tensor) *Tensor { return ELU(x, 1.3) }}} {
			t.Run(op.name, func(t *testing.T) {
				x := randT(rng, -4, 3, 3, 11) // 33 elements: a masked tail
				checkGrad(t, func(xs []*Tensor) *Tensor { return op.f(xs[0]) }, x)
			})
		}
	}
	t.Run(simdKernels, run)
	if simdKernels != "go" {
		t.Run("go", func(t *testing.T) { withPortableKernels(func() { run(t) }) })
	}
}

// BenchmarkExpKernels reports ns per element of each kernel, portable Go ("go", the
// scalar loops the ops ran before) and assembly, on 4096 floats drawn from N(0, 3^2)
// (kept in L1).
func BenchmarkExpKernels(b *testing.B) {
	const n = 4096
	rng := rand.New(rand.NewPCG(1, 1))
	x, g, dst := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 3)
		g[i] = float32(rng.NormFloat64())
	}
	for _, k := range expKernels() {
		impls := []struct {
			name string
			f    func(dst, x, g []float32)
		}{{"go", k.portable}}
		if simdKernels != "go" {
			impls = append(impls, struct {
				name string
				f    func(dst, x, g []float32)
			}{simdKernels, k.fast})
		}
		for _, impl := range impls {
			b.Run(k.name+"/"+impl.name, func(b *testing.B) {
				for b.Loop() {
					impl.f(dst, x, g)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/elem")
			})
		}
	}
}
