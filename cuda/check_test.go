package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"egg/tensor"
)

// This file holds the check of every tensor.Kernels method against the tensor
// package's host reference (tensor.NewHostAccelerator(true)), run on the CPU
// emulator of the kernels (emu_test.go) and, where there is one, on a GPU
// (gpu_test.go).

// twin is a buffer of n elements on the device under test and on the reference.
type twin struct {
	d, h tensor.Buffer
	n    int
}

type harness struct {
	t    *testing.T
	d    *Device
	ref  tensor.Accelerator
	rk   tensor.Kernels
	rng  *rand.Rand
	bufs []twin
}

func newHarness(t *testing.T, d *Device) *harness {
	ref := tensor.NewHostAccelerator(true)
	h := &harness{t: t, d: d, ref: ref, rk: ref.(tensor.Kernels), rng: rand.New(rand.NewPCG(1, 2))}
	t.Cleanup(h.free)
	return h
}

func (h *harness) free() {
	for _, b := range h.bufs {
		h.d.Free(b.d, b.n)
		h.ref.Free(b.h, b.n)
	}
	h.bufs = nil
}

// input allocates data on both sides.
func (h *harness) input(data []float32) twin {
	h.t.Helper()
	b := h.output(len(data))
	h.d.Upload(b.d, data)
	h.ref.Upload(b.h, data)
	return b
}

// output allocates n elements on both sides, NaN-filled (so that an element the
// kernel does not write shows).
func (h *harness) output(n int) twin {
	h.t.Helper()
	db, err := h.d.Alloc(n)
	if err != nil {
		h.t.Fatal(err)
	}
	hb, err := h.ref.Alloc(n)
	if err != nil {
		h.t.Fatal(err)
	}
	h.d.Fill(db, n, float32(math.NaN()))
	h.ref.Fill(hb, n, float32(math.NaN()))
	b := twin{db, hb, n}
	h.bufs = append(h.bufs, b)
	return b
}

func (h *harness) randn(n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(h.rng.NormFloat64() * scale)
	}
	return s
}

func (h *harness) uniform(n int, lo, hi float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(lo + (hi-lo)*h.rng.Float64())
	}
	return s
}

// ulps is the distance of a and b in float32 steps.
func ulps(a, b float32) float64 {
	ord := func(f float32) int64 {
		i := int64(int32(math.Float32bits(f)))
		if i < 0 {
			i = math.MinInt32 - i
		}
		return i
	}
	return math.Abs(float64(ord(a) - ord(b)))
}

// tol is how close a result must be: within maxULP float32 steps, or within
// atol + rtol*|want|. NaN must be NaN, infinities equal.
type tol struct {
	maxULP     float64
	rtol, atol float64
}

var exact = tol{}

func (c tol) ok(got, want float32) bool {
	gn, wn := got != got, want != want
	if gn || wn {
		return gn && wn
	}
	if math.IsInf(float64(want), 0) || math.IsInf(float64(got), 0) {
		return got == want
	}
	if got == want || ulps(got, want) <= c.maxULP {
		return true
	}
	return math.Abs(float64(got)-float64(want)) <= c.atol+c.rtol*math.Abs(float64(want))
}

// check compares buffer b on both sides.
func (h *harness) check(name string, b twin, c tol) {
	h.t.Helper()
	h.checkN(name, b, b.n, c)
}

func (h *harness) checkN(name string, b twin, n int, c tol) {
	h.t.Helper()
	got, want := make([]float32, n), make([]float32, n)
	h.d.Download(got, b.d)
	h.ref.Download(want, b.h)
	nan := 0
	for _, v := range want {
		if v != v {
			nan++
		}
	}
	if n > 0 && nan > n/2 {
		h.t.Errorf("%s: the reference has %d NaN of %d: the check is vacuous", name, nan, n)
	}
	bad, first := 0, -1
	for i := range got {
		if !c.ok(got[i], want[i]) {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		h.t.Errorf("%s: %d of %d elements differ; first [%d]: got %v, want %v (%g ulp)", name, bad, n, first,
			got[first], want[first], ulps(got[first], want[first]))
	}
}

// both runs f on the device under test and on the reference.
func (h *harness) both(f func(k tensor.Kernels, side func(twin) tensor.Buffer)) {
	f(h.d, func(b twin) tensor.Buffer { return b.d })
	f(h.rk, func(b twin) tensor.Buffer { return b.h })
}

// specials are inputs every element-wise op is tried on.
var specials = []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 2.5, -2.5, 1e-30, -1e-30, 1e-40, -1e-40,
	9.02, -9.02, 16.8, -16.8, 20, 20.5, -20, 80, 88.7, 89, -87.5, -88.8, -89, -104, -110, 1e30, -1e30,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}

// checkKernels runs every Kernels method on small random inputs on d and on the host
// reference and compares the results.
func checkKernels(t *testing.T, d *Device) {
	t.Run("Memory", func(t *testing.T) { checkMemory(t, d) })
	t.Run("Map", func(t *testing.T) { checkMap(t, d) })
	t.Run("Binary", func(t *testing.T) { checkBinary(t, d) })
	t.Run("SumAxis", func(t *testing.T) { checkSumAxis(t, d) })
	t.Run("GEMM", func(t *testing.T) { checkGEMM(t, d) })
	t.Run("Conv", func(t *testing.T) { checkConv2(t, d) })
	t.Run("GroupNorm", func(t *testing.T) { checkGroupNorm(t, d) })
	t.Run("Softmax", func(t *testing.T) { checkSoftmax(t, d) })
	t.Run("Upsample", func(t *testing.T) { checkUpsample(t, d) })
	t.Run("Concurrent", func(t *testing.T) { checkConcurrent(t, d) })
}

func checkMemory(t *testing.T, d *Device) {
	h := newHarness(t, d)
	x := h.input(h.randn(5000, 1))
	y := h.output(5000)
	h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
		a := k.(tensor.Accelerator)
		a.Copy(s(y).At(100), s(x).At(7), 4000)
		a.Fill(s(y), 100, -3.25)
		a.Fill(s(y).At(4100), 900, float32(math.Inf(-1)))
		a.Sync()
	})
	h.check("Copy/Fill", y, exact)
	part := make([]float32, 10)
	d.Download(part, y.d.At(4095))
	if math.IsNaN(float64(part[4])) || part[5] != float32(math.Inf(-1)) {
		t.Errorf("download of a sub-buffer: %v", part)
	}
}

func checkMap(t *testing.T, d *Device) {
	h := newHarness(t, d)
	type opCase struct {
		op     tensor.MapOp
		p0, p1 float32
		lo, hi float64
	}
	cases := []opCase{
		{tensor.MapScale, -1.5, 0, -10, 10},
		{tensor.MapAddScalar, 0.25, 0, -10, 10},
		{tensor.MapExp, 0, 0, -90, 90},
		{tensor.MapLog, 0, 0, -1, 100},
		{tensor.MapSqrt, 0, 0, -1, 100},
		{tensor.MapPow, 2, 0, -10, 10},
		{tensor.MapPow, 0.5, 0, -1, 10},
		{tensor.MapPow, 1.7, 0, -1, 10},
		{tensor.MapPow, 3, 0, -5, 5},
		{tensor.MapPow, -2, 0, -5, 5},
		{tensor.MapAbs, 0, 0, -10, 10},
		{tensor.MapClamp, -1, 2, -5, 5},
		{tensor.MapSigmoid, 0, 0, -30, 30},
		{tensor.MapSiLU, 0, 0, -30, 30},
		{tensor.MapReLU, 0, 0, -10, 10},
		{tensor.MapELU, 1.3, 0, -10, 10},
		{tensor.MapTanh, 0, 0, -10, 10},
		{tensor.MapSoftplus, 0, 0, -30, 30},
	}
	const n = 3000
	for _, c := range cases {
		name := fmt.Sprintf("op %d (%g, %g)", c.op, c.p0, c.p1)
		xs := append(h.uniform(n-len(specials), c.lo, c.hi), specials...)
		gs := h.randn(n, 1)
		x, g := h.input(xs), h.input(gs)
		y, gx := h.output(n), h.output(n)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) { k.Map(c.op, s(y), s(x), n, c.p0, c.p1) })
		// Tanh on the host's AVX2 path is within 3 ulp; the kernels' within 1.
		h.check("Map "+name, y, tol{maxULP: 4})
		if c.op == tensor.MapClamp {
			// The reference passes no gradient at NaN; elementwise.go (and the
			// kernel) pass it. Compare without the NaN.
			xs[n-1] = 0
			h.d.Upload(x.d, xs)
			h.ref.Upload(x.h, xs)
		}
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.Map(c.op, s(y), s(x), n, c.p0, c.p1)
			k.MapGrad(c.op, s(gx), s(g), s(x), s(y), n, c.p0, c.p1)
		})
		h.check("MapGrad "+name, gx, tol{maxULP: 4, rtol: 1e-6, atol: 1e-6})
	}
	// In place.
	xs := h.randn(1000, 3)
	x := h.input(xs)
	h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) { k.Map(tensor.MapSiLU, s(x), s(x), 1000, 0, 0) })
	h.check("Map in place", x, tol{maxULP: 4})
}

// bcast returns the strides of shape s broadcast to out (0 along broadcast axes).
func bcast(s, out []int) []int {
	st := make([]int, len(out))
	acc := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := i - (len(out) - len(s))
		if j < 0 {
			continue
		}
		if s[j] != 1 {
			st[i] = acc
		}
		acc *= s[j]
	}
	return st
}

func numel(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}

func checkBinary(t *testing.T, d *Device) {
	h := newHarness(t, d)
	type bcase struct{ a, b, out []int }
	cases := []bcase{
		{[]int{1000}, []int{1000}, []int{1000}},
		{[]int{4, 1, 5}, []int{1, 3, 5}, []int{4, 3, 5}},
		{[]int{2, 3, 1, 7}, []int{7}, []int{2, 3, 4, 7}},
		{[]int{1}, []int{6, 1, 2, 1, 3, 2}, []int{6, 2, 2, 2, 3, 2}},
		{[]int{3, 1, 1, 2, 1, 5}, []int{1, 4, 2, 1, 3, 1}, []int{3, 4, 2, 2, 3, 5}},
	}
	for _, wide := range []bool{false, true} {
		force64 = wide
		for ci, c := range cases {
			a, b := h.input(h.randn(numel(c.a), 2)), h.input(h.uniform(numel(c.b), 0.5, 2))
			out := h.output(numel(c.out))
			for op := tensor.BinaryAdd; op <= tensor.BinaryDiv; op++ {
				h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
					k.Binary(op, s(out), s(a), s(b), c.out, bcast(c.a, c.out), bcast(c.b, c.out))
				})
				h.check(fmt.Sprintf("Binary %d case %d (64-bit %v)", op, ci, wide), out, exact)
			}
		}
		// Strided: a permutation and a slice with an offset.
		x := h.input(h.randn(2*3*4*5, 1))
		y := h.output(2 * 3 * 4 * 5)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.Strided(s(y), s(x), []int{5, 2, 4, 3}, []int{1, 60, 5, 20})
		})
		h.check(fmt.Sprintf("Strided permute (64-bit %v)", wide), y, exact)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.Strided(s(y), s(x).At(7), []int{2, 3, 3}, []int{60, 20, 2})
		})
		h.checkN(fmt.Sprintf("Strided slice (64-bit %v)", wide), y, 18, exact)
		// Scatter: the middle of a concatenation along axis 1 of [2, 7, 5].
		dst := h.input(h.randn(2*7*5, 1))
		src := h.input(h.randn(2*3*5, 1))
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.Scatter(s(dst).At(2*5), []int{35, 5, 1}, s(src), []int{2, 3, 5})
		})
		h.check(fmt.Sprintf("Scatter (64-bit %v)", wide), dst, exact)
		force64 = false
	}
}

func checkSumAxis(t *testing.T, d *Device) {
	h := newHarness(t, d)
	for _, c := range [][3]int{{3, 1000, 1}, {2, 5, 7}, {1, 2000, 3}, {7, 1, 9}, {4, 0, 3}, {1, 70, 1}, {50, 3, 1}, {2, 33, 600}} {
		outer, n, inner := c[0], c[1], c[2]
		x := h.input(h.randn(max(outer*n*inner, 1), 1))
		out := h.output(outer * inner)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) { k.SumAxis(s(out), s(x), outer, n, inner) })
		h.check(fmt.Sprintf("SumAxis %v", c), out, tol{maxULP: 1, atol: 1e-6})
	}
}

func checkGEMM(t *testing.T, d *Device) {
	h := newHarness(t, d)
	for _, c := range []struct{ m, n, k, batch int }{{5, 7, 9, 3}, {64, 33, 17, 2}, {1, 1, 300, 1}, {130, 70, 1, 1}} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for _, beta := range []float32{0, 0.5} {
					m, n, k := c.m, c.n, c.k
					lda, ldb, ldc := k+1, n+2, n+3
					rowsA, rowsB := m, k
					if ta {
						lda, rowsA = m+1, k
					}
					if tb {
						ldb, rowsB = k+2, n
					}
					sa, sb, sc := rowsA*lda+3, 0, m*ldc+1 // B shared by the batch
					a := h.input(h.randn(sa*c.batch, 1))
					b := h.input(h.randn(rowsB*ldb, 1))
					cc := h.input(h.randn(sc*c.batch, 1))
					h.both(func(kk tensor.Kernels, s func(twin) tensor.Buffer) {
						kk.GEMM(ta, tb, m, n, k, 1.25, s(a), lda, sa, s(b), ldb, sb, beta, s(cc), ldc, sc, c.batch)
					})
					h.check(fmt.Sprintf("GEMM %v ta %v tb %v beta %v", c, ta, tb, beta), cc, tol{rtol: 1e-5, atol: 1e-5 * math.Sqrt(float64(k))})
				}
			}
		}
	}
}

// outSize is a convolution's output size along one axis.
func outSize(in, k, stride, pad, dil int) int { return (in+2*pad-dil*(k-1)-1)/stride + 1 }

func checkConv2(t *testing.T, d *Device) {
	h := newHarness(t, d)
	for _, g := range []tensor.ConvGeometry{
		{N: 2, C: 3, H: 7, W: 6, KH: 3, KW: 3, Stride: 1, Pad: 1, Dil: 1},
		{N: 1, C: 4, H: 9, W: 8, KH: 3, KW: 3, Stride: 2, Pad: 0, Dil: 1},
		{N: 2, C: 2, H: 10, W: 11, KH: 3, KW: 2, Stride: 2, Pad: 2, Dil: 2},
		{N: 3, C: 5, H: 4, W: 4, KH: 1, KW: 1, Stride: 1, Pad: 0, Dil: 1},
		{N: 1, C: 1, H: 40, W: 37, KH: 4, KW: 4, Stride: 2, Pad: 1, Dil: 1},
	} {
		g.OH, g.OW = outSize(g.H, g.KH, g.Stride, g.Pad, g.Dil), outSize(g.W, g.KW, g.Stride, g.Pad, g.Dil)
		nx, nc := g.N*g.C*g.H*g.W, g.N*g.C*g.KH*g.KW*g.OH*g.OW
		x, cols := h.input(h.randn(nx, 1)), h.output(nc)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) { k.Im2Col(s(cols), s(x), g) })
		h.check(fmt.Sprintf("Im2Col %+v", g), cols, exact)
		gc, gx := h.input(h.randn(nc, 1)), h.output(nx)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) { k.Col2Im(s(gx), s(gc), g) })
		h.check(fmt.Sprintf("Col2Im %+v", g), gx, tol{maxULP: 1})
	}
}

func checkGroupNorm(t *testing.T, d *Device) {
	h := newHarness(t, d)
	for _, c := range []struct {
		n, c, hw, groups int
		affine           bool
	}{
		{2, 6, 50, 3, true}, {2, 6, 50, 3, false}, {1, 8, 4, 2, true}, {3, 4, 1024, 2, true},
		{2, 32, 9, 32, true}, {1, 3, 1, 1, false}, {2, 2048, 2, 1, true},
	} {
		name := fmt.Sprintf("%+v", c)
		nx := c.n * c.c * c.hw
		xs := h.randn(nx, 2)
		for i := range xs {
			xs[i] += 3 // a mean well off zero
		}
		x, gs := h.input(xs), h.input(h.randn(nx, 1))
		var w, b twin
		if c.affine {
			w, b = h.input(h.uniform(c.c, 0.5, 1.5)), h.input(h.randn(c.c, 1))
		}
		y, mean, rstd := h.output(nx), h.output(c.n*c.groups), h.output(c.n*c.groups)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.GroupNorm(s(y), s(mean), s(rstd), s(x), s(w), s(b), c.n, c.c, c.hw, c.groups, 1e-5)
		})
		h.check("GroupNorm y "+name, y, tol{rtol: 1e-5, atol: 1e-5})
		h.check("GroupNorm mean "+name, mean, tol{rtol: 1e-6, atol: 1e-6})
		h.check("GroupNorm rstd "+name, rstd, tol{rtol: 1e-5})
		// The gradient from the same statistics on both sides (the reference's).
		ms, rs := make([]float32, c.n*c.groups), make([]float32, c.n*c.groups)
		h.ref.Download(ms, mean.h)
		h.ref.Download(rs, rstd.h)
		h.d.Upload(mean.d, ms)
		h.d.Upload(rstd.d, rs)
		gx, gw, gb := h.output(nx), h.output(c.c), h.output(c.c)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.GroupNormGrad(s(gx), s(gw), s(gb), s(gs), s(x), s(mean), s(rstd), s(w), c.n, c.c, c.hw, c.groups)
		})
		h.check("GroupNormGrad gx "+name, gx, tol{rtol: 1e-4, atol: 1e-5})
		h.check("GroupNormGrad gw "+name, gw, tol{rtol: 1e-4, atol: 1e-4})
		h.check("GroupNormGrad gb "+name, gb, tol{rtol: 1e-5, atol: 1e-5})
		// Without gx, and without gw and gb.
		gx2, gb2 := h.output(nx), h.output(c.c)
		h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
			k.GroupNormGrad(0, 0, s(gb2), s(gs), s(x), s(mean), s(rstd), s(w), c.n, c.c, c.hw, c.groups)
			k.GroupNormGrad(s(gx2), 0, 0, s(gs), s(x), s(mean), s(rstd), s(w), c.n, c.c, c.hw, c.groups)
		})
		h.check("GroupNormGrad gb only "+name, gb2, tol{rtol: 1e-5, atol: 1e-5})
		h.check("GroupNormGrad gx only "+name, gx2, tol{rtol: 1e-4, atol: 1e-5})
	}
}

func checkSoftmax(t *testing.T, d *Device) {
	h := newHarness(t, d)
	for _, c := range [][3]int{{3, 100, 1}, {2, 10, 7}, {5, 1, 1}, {1, 1000, 1}, {4, 3, 300}, {2, 5000, 1}} {
		outer, n, inner := c[0], c[1], c[2]
		total := outer * n * inner
		xs := h.randn(total, 4)
		if total > 20 {
			xs[3] = float32(math.Inf(-1))
			xs[11] = 60
		}
		x, g := h.input(xs), h.input(h.randn(total, 1))
		for _, log := range []bool{false, true} {
			name := fmt.Sprintf("%v log %v", c, log)
			y, gx := h.output(total), h.output(total)
			h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) {
				k.Softmax(s(y), s(x), outer, n, inner, log)
				k.SoftmaxGrad(s(gx), s(g), s(y), outer, n, inner, log)
			})
			h.check("Softmax "+name, y, tol{maxULP: 4, rtol: 1e-6, atol: 1e-6})
			h.check("SoftmaxGrad "+name, gx, tol{maxULP: 4, rtol: 1e-5, atol: 1e-6})
			// In place.
			z := h.input(xs)
			h.both(func(k tensor.Kernels, s func(twin) tensor.Buffer) { k.Softmax(s(z), s(z), outer, n, inner, log) })
			h.check("Softmax in place "+name, z, tol{maxULP: 4, rtol: 1e-6, atol: 1e-6})
		}
	}
}

func checkUpsample(t *testing.T, d *Device) {
	h := newHarness(t, d)
	for _, c := range [][4]int{{3, 4, 5, 2}, {2, 3, 7, 3}, {1, 1, 1, 4}, {6, 16, 40, 1}, {2, 9, 70, 2}} {
		p, hh, w, s := c[0], c[1], c[2], c[3]
		x, out := h.input(h.randn(p*hh*w, 1)), h.output(p*hh*s*w*s)
		h.both(func(k tensor.Kernels, sd func(twin) tensor.Buffer) { k.Upsample(sd(out), sd(x), p, hh, w, s) })
		h.check(fmt.Sprintf("Upsample %v", c), out, exact)
		g, gx := h.input(h.randn(p*hh*s*w*s, 1)), h.output(p*hh*w)
		h.both(func(k tensor.Kernels, sd func(twin) tensor.Buffer) { k.UpsampleGrad(sd(gx), sd(g), p, hh, w, s) })
		h.check(fmt.Sprintf("UpsampleGrad %v", c), gx, tol{maxULP: 1})
	}
}

// checkConcurrent runs independent chains of calls from several goroutines (each
// call makes the context current on whatever OS thread it runs on).
func checkConcurrent(t *testing.T, d *Device) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := 1000 + w
			src := make([]float32, n)
			for i := range src {
				src[i] = float32(i + w)
			}
			for iter := 0; iter < 5; iter++ {
				x, err := d.Alloc(n)
				if err != nil {
					errs <- err
					return
				}
				d.Upload(x, src)
				d.Map(tensor.MapScale, x, x, n, 2, 0)
				got := make([]float32, n)
				d.Download(got, x)
				d.Free(x, n)
				for i, v := range got {
					if v != 2*src[i] {
						errs <- fmt.Errorf("worker %d: [%d] = %v, want %v", w, i, v, 2*src[i])
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
