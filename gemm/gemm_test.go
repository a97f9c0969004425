package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

type namedImpl struct {
	name string
	impl Impl
}

// testImpls returns every implementation available on this machine, with
// several thread counts.
func testImpls(t testing.TB) []namedImpl {
	var out []namedImpl
	out = append(out,
		namedImpl{"go-generic-t1", newGoGeneric(1)},
		namedImpl{"go-generic-t3", newGoGeneric(3)},
	)
	if haveAVX2FMA {
		out = append(out,
			namedImpl{"go-avx2-t1", NewGo(1)},
			namedImpl{"go-avx2-t2", NewGo(2)},
			namedImpl{"go-avx2-t5", NewGo(5)},
			namedImpl{"go-avx2-serial", NewGo(4).Serial()},
		)
	} else {
		t.Logf("CPU lacks AVX2/FMA: testing only the generic Go kernel")
	}
	ob, err := NewOpenBLAS(2)
	if err != nil {
		t.Logf("skipping OpenBLAS: %v", err)
	} else {
		out = append(out, namedImpl{"openblas", ob}, namedImpl{"openblas-serial", ob.Serial()})
	}
	return out
}

// matrix returns a rows x cols matrix with row stride ld and exactly
// (rows-1)*ld+cols elements (the minimum), filled with random values; the
// padding holds NaN so that reading it is detected.
func matrix(rng *rand.Rand, rows, cols, ld int) []float32 {
	if rows == 0 || cols == 0 {
		return nil
	}
	x := make([]float32, (rows-1)*ld+cols)
	for i := range x {
		if i%ld < cols {
			x[i] = float32(rng.IntN(17)-8) / 4 * float32(1+rng.Float64())
		} else {
			x[i] = float32(math.NaN())
		}
	}
	return x
}

// reference computes alpha*op(A)*op(B) + beta*C in float64, and the bound
// |alpha|*|op(A)|*|op(B)| + |beta*C| used for the error tolerance.
func reference(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, mag []float64) {
	want = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
				sa += math.Abs(float64(av) * float64(bv))
			}
			v := float64(alpha) * s
			mg := math.Abs(float64(alpha)) * sa
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
				mg += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j] = v
			mag[i*n+j] = mg
		}
	}
	return want, mag
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int // extra stride
	padC           int
}

func (tc gemmCase) String() string {
	tr := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s%s_m%d_n%d_k%d_a%g_b%g_pad%d.%d.%d", tr(tc.transA), tr(tc.transB), tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.padA, tc.padB, tc.padC)
}

// instance holds the inputs of one case and the expected result.
type instance struct {
	gemmCase
	a, b, c       []float32
	lda, ldb, ldc int
	want, mag     []float64
}

// instantiate builds random inputs for the case (C holds NaN where beta == 0
// says it must not be read) and computes the reference result.
func (tc gemmCase) instantiate(rng *rand.Rand) *instance {
	ar, ac := tc.m, tc.k
	if tc.transA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.transB {
		br, bc = tc.n, tc.k
	}
	in := &instance{gemmCase: tc, lda: max(1, ac) + tc.padA, ldb: max(1, bc) + tc.padB, ldc: max(1, tc.n) + tc.padC}
	in.a = matrix(rng, ar, ac, in.lda)
	in.b = matrix(rng, br, bc, in.ldb)
	in.c = matrix(rng, tc.m, tc.n, in.ldc)
	if tc.beta == 0 {
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				in.c[i*in.ldc+j] = float32(math.NaN())
			}
		}
	}
	in.want, in.mag = reference(tc.transA, tc.transB, tc.m, tc.n, tc.k, tc.alpha, in.a, in.lda, in.b, in.ldb, tc.beta, in.c, in.ldc)
	return in
}

// check runs impl on a copy of C and returns an error describing the first
// mismatch.
func (in *instance) check(impl Impl) error {
	c := append([]float32(nil), in.c...)
	ldc := in.ldc
	impl.Sgemm(in.transA, in.transB, in.m, in.n, in.k, in.alpha, in.a, in.lda, in.b, in.ldb, in.beta, c, ldc)
	for i := 0; i < in.m; i++ {
		for j := 0; j < ldc && i*ldc+j < len(c); j++ {
			got := c[i*ldc+j]
			if j >= in.n {
				if !math.IsNaN(float64(got)) {
					return fmt.Errorf("padding C[%d,%d] was overwritten with %g", i, j, got)
				}
				continue
			}
			w := in.want[i*in.n+j]
			tol := 1e-6*float64(in.k+4)*in.mag[i*in.n+j] + 1e-30
			if d := math.Abs(float64(got) - w); !(d <= tol) {
				return fmt.Errorf("C[%d,%d] = %g, want %g (tolerance %g)", i, j, got, w, tol)
			}
		}
	}
	return nil
}

// run executes the case on impl with fresh random inputs.
func (tc gemmCase) run(impl Impl, rng *rand.Rand) error {
	return tc.instantiate(rng).check(impl)
}

func testCases() []gemmCase {
	var cases []gemmCase
	sizes := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 15, 16, 17, 23, 31, 32, 33, 37, 47, 48, 53, 64, 67, 70}
	type ab struct{ alpha, beta float32 }
	abs := []ab{{1, 0}, {1, 1}, {0.5, -1.5}, {-2, 0}, {0, 0}, {0, 2.5}}
	rng := rand.New(rand.NewPCG(1, 2))
	for tr := 0; tr < 4; tr++ {
		tA, tB := tr&1 != 0, tr&2 != 0
		// Every size along each dimension.
		for _, s := range sizes {
			cases = append(cases,
				gemmCase{transA: tA, transB: tB, m: s, n: 19, k: 13, alpha: 1, beta: 0},
				gemmCase{transA: tA, transB: tB, m: 14, n: s, k: 9, alpha: 1, beta: 1},
				gemmCase{transA: tA, transB: tB, m: 7, n: 21, k: s, alpha: 0.5, beta: -1.5, padA: 2, padB: 1, padC: 3},
			)
		}
		// Random odd sizes, alpha/beta and strides.
		for i := 0; i < 60; i++ {
			v := abs[rng.IntN(len(abs))]
			cases = append(cases, gemmCase{
				transA: tA, transB: tB,
				m: sizes[rng.IntN(len(sizes))], n: sizes[rng.IntN(len(sizes))], k: sizes[rng.IntN(len(sizes))],
				alpha: v.alpha, beta: v.beta,
				padA: rng.IntN(3) * rng.IntN(5), padB: rng.IntN(3) * rng.IntN(5), padC: rng.IntN(2) * rng.IntN(7),
			})
		}
		// k == 0, and sizes that cross the cache blocks and the thread split.
		cases = append(cases,
			gemmCase{transA: tA, transB: tB, m: 5, n: 7, k: 0, alpha: 1, beta: 0},
			gemmCase{transA: tA, transB: tB, m: 5, n: 7, k: 0, alpha: 1, beta: 3},
			gemmCase{transA: tA, transB: tB, m: 0, n: 7, k: 3, alpha: 1, beta: 3},
			gemmCase{transA: tA, transB: tB, m: 4, n: 0, k: 3, alpha: 1, beta: 3},
			gemmCase{transA: tA, transB: tB, m: 151, n: 1057, k: 263, alpha: 1, beta: 0, padA: 3, padB: 5, padC: 1},
			gemmCase{transA: tA, transB: tB, m: 301, n: 45, k: 517, alpha: -0.75, beta: 0.5},
			gemmCase{transA: tA, transB: tB, m: 64, n: 200, k: 96, alpha: 1, beta: 1},
			gemmCase{transA: tA, transB: tB, m: 197, n: 61, k: 70, alpha: 2, beta: 0},
		)
	}
	return cases
}

func TestSgemm(t *testing.T) {
	impls := testImpls(t)
	rng := rand.New(rand.NewPCG(3, 4))
	fails := make([]int, len(impls))
	for _, tc := range testCases() {
		in := tc.instantiate(rng)
		for x, im := range impls {
			if fails[x] > 10 {
				continue
			}
			if err := in.check(im.impl); err != nil {
				t.Errorf("%s: %v: %v", im.name, tc, err)
				fails[x]++
			}
		}
	}
}

func TestConcurrent(t *testing.T) {
	for _, im := range testImpls(t) {
		t.Run(im.name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := 0; g < 16; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					for it := 0; it < 6; it++ {
						tc := gemmCase{
							transA: rng.IntN(2) == 0, transB: rng.IntN(2) == 0,
							m: 1 + rng.IntN(90), n: 1 + rng.IntN(130), k: 1 + rng.IntN(300),
							alpha: 1, beta: float32(rng.IntN(2)),
						}
						if err := tc.run(im.impl, rng); err != nil {
							errs <- fmt.Errorf("goroutine %d: %v: %v", g, tc, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestArgumentChecks(t *testing.T) {
	g := NewGo(1)
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	a := make([]float32, 6)
	mustPanic("negative m", func() { g.Sgemm(false, false, -1, 2, 3, 1, a, 3, a, 2, 0, a, 2) })
	mustPanic("small lda", func() { g.Sgemm(false, false, 2, 2, 3, 1, a, 2, a, 2, 0, a, 2) })
	mustPanic("short A", func() { g.Sgemm(false, false, 3, 2, 3, 1, a, 3, a, 2, 0, a, 2) })
	mustPanic("short C", func() { g.Sgemm(true, false, 2, 4, 3, 1, a, 2, a, 4, 0, a, 4) })
}

func TestNew(t *testing.T) {
	t.Setenv("EGG_GEMM", "go")
	if g := New(2); g.Name() != "go-avx2" && g.Name() != "go-generic" {
		t.Errorf("EGG_GEMM=go: got %s", g.Name())
	}
	_, obErr := NewOpenBLAS(0)
	t.Setenv("EGG_GEMM", "openblas")
	if g := New(1); obErr == nil && g.Name() != "openblas" {
		t.Errorf("EGG_GEMM=openblas and OpenBLAS loads, but New returned %s", g.Name())
	}
	t.Setenv("EGG_GEMM", "")
	g := New(1)
	switch {
	case haveAVX2FMA && g.Name() != "go-avx2":
		t.Errorf("AVX2/FMA present but New returned %s", g.Name())
	case !haveAVX2FMA && obErr == nil && g.Name() != "openblas":
		t.Errorf("no AVX2/FMA and OpenBLAS loads, but New returned %s", g.Name())
	}
	t.Logf("New(1) = %s", g.Name())
}

// TestManyGoroutines runs far more simultaneous calls than cores: OpenBLAS
// crashes when too many threads call it at once unless calls are bounded.
func TestManyGoroutines(t *testing.T) {
	for _, im := range testImpls(t) {
		t.Run(im.name, func(t *testing.T) {
			const s = 96
			a := make([]float32, s*s)
			for i := range a {
				a[i] = float32(i%7) - 3
			}
			want := make([]float32, s*s)
			im.impl.Sgemm(false, true, s, s, s, 1, a, s, a, s, 0, want, s)
			var wg sync.WaitGroup
			var bad sync.Once
			for g := 0; g < 200; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := make([]float32, s*s)
					for it := 0; it < 3; it++ {
						im.impl.Sgemm(false, true, s, s, s, 1, a, s, a, s, 0, c, s)
						for i := range c {
							if c[i] != want[i] {
								bad.Do(func() { t.Errorf("goroutine %d: C[%d] = %g, want %g", g, i, c[i], want[i]) })
								return
							}
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
