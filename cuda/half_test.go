//go:build linux && (amd64 || arm64)

package cuda

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// halfFormat is a 16-bit float format, for the tests' reference rounding: the
// values of its non-negative bit patterns up to infinity, in order.
type halfFormat struct {
	name   string
	ht     int32
	values []float64 // values[b] for b = 0 .. inf's bits; inf counts as the next power of two
	nanBit func(uint16) bool
}

func newHalfFormat(name string, ht int32) halfFormat {
	f := halfFormat{name: name, ht: ht}
	switch ht {
	case cudaR16F:
		for b := 0; b <= 0x7c00; b++ {
			e, m := b>>10, b&0x3ff
			v := math.Ldexp(float64(m), -24)
			if e > 0 {
				v = math.Ldexp(float64(m|0x400), e-25)
			}
			f.values = append(f.values, v) // 0x7c00 decodes as 2^16
		}
		f.nanBit = func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
	case cudaR16BF:
		for b := 0; b <= 0x7f80; b++ {
			f.values = append(f.values, float64(math.Float32frombits(uint32(b)<<16)))
		}
		f.values[0x7f80] = math.Ldexp(1, 128)
		f.nanBit = func(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }
	}
	return f
}

// round returns x's bits in the format, to nearest with ties to the even
// pattern, found by searching the format's values (not by bit arithmetic, as the
// kernel does).
func (f halfFormat) round(x float32) uint16 {
	if x != x {
		return 0xffff // any NaN
	}
	sign := uint16(0)
	if math.Signbit(float64(x)) {
		sign = 0x8000
	}
	a := math.Abs(float64(x))
	top := len(f.values) - 1
	i := sort.SearchFloat64s(f.values, a) // first value >= a
	var b int
	switch {
	case i > top:
		b = top
	case f.values[i] == a || i == 0:
		b = i
	default:
		lo, hi := a-f.values[i-1], f.values[i]-a
		b = i
		if lo < hi || (lo == hi && (i-1)%2 == 0) {
			b = i - 1
		}
	}
	return sign | uint16(b)
}

// value decodes bits of the format.
func (f halfFormat) value(h uint16) float64 {
	v := f.values[h&0x7fff]
	if int(h&0x7fff) == len(f.values)-1 {
		v = math.Inf(1)
	}
	if h&0x8000 != 0 {
		return -v
	}
	return v
}

var halfFormats = []halfFormat{newHalfFormat("fp16", cudaR16F), newHalfFormat("bf16", cudaR16BF)}

// TestToHalfEmulated checks egg_to_half against the search-based rounding on
// special values (ties, the overflow threshold, subnormals, NaN, infinities,
// negative zero) and random bit patterns.
func TestToHalfEmulated(t *testing.T) {
	d := emuDevice(t)
	rng := rand.New(rand.NewPCG(5, 6))
	xs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65519.99, 65520, 65536, 1e10, -1e10,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1.0 / 3, 2049, 2051, 4097, 4099,
		float32(math.Ldexp(1, -24)), float32(math.Ldexp(1, -25)), float32(math.Ldexp(1.5, -25)), float32(math.Ldexp(3, -26)),
		float32(math.Ldexp(1, -14)), float32(math.Ldexp(1023.5, -24)), math.MaxFloat32, math.SmallestNonzeroFloat32,
		1 + 1.0/256, 1 + 3.0/512, 1 + 1.0/512, 3.3895314e38}
	for range 20000 {
		xs = append(xs, math.Float32frombits(rng.Uint32()))
	}
	for range 5000 { // magnitudes around half's range, where most of its cases lie
		xs = append(xs, float32(math.Ldexp(rng.Float64()*2-1, rng.IntN(50)-30)))
	}
	src, _ := d.Alloc(len(xs))
	d.Upload(src, xs)
	for _, f := range halfFormats {
		dst, _ := d.Alloc((len(xs) + 1) / 2)
		d.enter("test")
		d.launch("egg_to_half", [3]uint32{4, 1, 1}, [3]uint32{64, 1, 1}, 0, dst, src, int64(len(xs)), int32(btoi(f.ht == cudaR16BF)))
		d.leave()
		words := make([]float32, (len(xs)+1)/2)
		d.Download(words, dst)
		bad := 0
		for i, x := range xs {
			w := math.Float32bits(words[i/2])
			got := uint16(w >> (16 * (i % 2)))
			want := f.round(x)
			if want == 0xffff {
				if !f.nanBit(got) {
					t.Errorf("%s: %v: got %#04x, want a NaN", f.name, x, got)
					bad++
				}
			} else if got != want {
				t.Errorf("%s: %v (%#08x): got %#04x, want %#04x", f.name, x, math.Float32bits(x), got, want)
				bad++
			}
			if bad > 10 {
				t.FailNow()
			}
		}
		d.Free(dst, (len(xs)+1)/2)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestReducedPrecisionGEMMEmulated runs GEMMs in fp16 and bf16 on the emulator
// (whose cublasGemmStridedBatchedEx takes only 16-bit operands of one type, float32
// output and float32 compute) and checks them against the products of the
// operands rounded to that format, summed in float64.
func TestReducedPrecisionGEMMEmulated(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, f := range halfFormats {
		for _, c := range []struct {
			ta, tb         bool
			m, n, k, batch int
			strideA        bool // A batched (else shared)
		}{
			{false, false, 5, 7, 9, 1, true},
			{true, false, 4, 6, 3, 3, true},
			{false, true, 6, 5, 8, 2, false},
			{true, true, 3, 4, 17, 2, true},
		} {
			d := emuDevice(t)
			d.precision = f.name
			ar, ac := c.m, c.k
			if c.ta {
				ar, ac = c.k, c.m
			}
			br, bc := c.k, c.n
			if c.tb {
				br, bc = c.n, c.k
			}
			lda, ldb, ldc := ac+1, bc+2, c.n+1 // padded rows
			sa := 0
			if c.strideA {
				sa = ar*lda + 3
			}
			sb, sc := br*ldb+1, c.m*ldc+2
			na, nb, nc := (c.batch-1)*sa+ar*lda, (c.batch-1)*sb+br*ldb, (c.batch-1)*sc+c.m*ldc
			ah, bh := make([]float32, na), make([]float32, nb)
			for i := range ah {
				ah[i] = float32(rng.NormFloat64() * 3)
			}
			for i := range bh {
				bh[i] = float32(rng.NormFloat64() * 3)
			}
			a, _ := d.Alloc(na)
			b, _ := d.Alloc(nb)
			out, _ := d.Alloc(nc)
			d.Upload(a, ah)
			d.Upload(b, bh)
			d.Fill(out, nc, float32(math.NaN()))
			d.GEMM(c.ta, c.tb, c.m, c.n, c.k, 1.5, a, lda, sa, b, ldb, sb, 0, out, ldc, sc, c.batch)
			got := make([]float32, nc)
			d.Download(got, out)
			worst := 0.0
			for bi := 0; bi < c.batch; bi++ {
				for i := 0; i < c.m; i++ {
					for j := 0; j < c.n; j++ {
						var s, mag float64
						for l := 0; l < c.k; l++ {
							ia := bi*sa + i*lda + l
							if c.ta {
								ia = bi*sa + l*lda + i
							}
							ib := bi*sb + l*ldb + j
							if c.tb {
								ib = bi*sb + j*ldb + l
							}
							p := f.value(f.round(ah[ia])) * f.value(f.round(bh[ib]))
							s += p
							mag += math.Abs(p)
						}
						want := 1.5 * s
						g := float64(got[bi*sc+i*ldc+j])
						if e := math.Abs(g-want) / max(1.5*mag, 1e-30); !(e <= worst) {
							worst = e
						}
					}
				}
			}
			if !(worst < 1e-6) {
				t.Errorf("%s %+v: worst error %.3g relative to the sum of |products|", f.name, c, worst)
			}
		}
	}
}
