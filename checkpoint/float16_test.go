package checkpoint

import (
	"math"
	"math/rand"
	"sort"
	"testing"
)

// f16Value computes the value of a binary16 bit pattern from the definition (for finite patterns).
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	man := float64(h & 0x3ff)
	if exp == 0 {
		return sign * math.Ldexp(man, -24)
	}
	return sign * math.Ldexp(1024+man, exp-25)
}

func TestFloat16ToFloat32(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := Float16ToFloat32(h)
		exp := (h >> 10) & 0x1f
		switch {
		case exp == 0x1f && h&0x3ff == 0:
			if !math.IsInf(float64(got), 1-2*int(h>>15)) {
				t.Fatalf("%#04x -> %v, want inf", h, got)
			}
		case exp == 0x1f:
			if !math.IsNaN(float64(got)) {
				t.Fatalf("%#04x -> %v, want NaN", h, got)
			}
			if math.Float32bits(got)>>31 != uint32(h>>15) || math.Float32bits(got)>>13&0x3ff != uint32(h&0x3ff) {
				t.Fatalf("%#04x -> %#08x: NaN sign or payload lost", h, math.Float32bits(got))
			}
		default:
			if float64(got) != f16Value(h) || math.Signbit(float64(got)) != (h&0x8000 != 0) {
				t.Fatalf("%#04x -> %v, want %v", h, got, f16Value(h))
			}
		}
		// Every binary16 value survives the round trip (NaNs stay NaNs with the same payload, made quiet).
		back := Float32ToFloat16(got)
		if exp == 0x1f && h&0x3ff != 0 {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x -> %#04x", h, back)
			}
		} else if back != h {
			t.Fatalf("round trip %#04x -> %v -> %#04x", h, got, back)
		}
	}
}

// refFloat32ToFloat16 rounds x to binary16 by searching the sorted finite binary16 values.
func refFloat32ToFloat16(x float32, pos []uint16) uint16 {
	v := float64(x)
	var sign uint16
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if math.IsNaN(v) {
		return 0x7e00
	}
	if v >= 65520 { // halfway between 65504 and 65536 (the next binade) rounds to even = inf
		return sign | 0x7c00
	}
	i := sort.Search(len(pos), func(i int) bool { return f16Value(pos[i]) >= v })
	if i == len(pos) { // between 65504 and 65520
		return sign | 0x7bff
	}
	if f16Value(pos[i]) == v {
		return sign | pos[i]
	}
	lo, hi := pos[i-1], pos[i]
	dl, dh := v-f16Value(lo), f16Value(hi)-v
	switch {
	case dl < dh:
		return sign | lo
	case dh < dl:
		return sign | hi
	case lo&1 == 0:
		return sign | lo
	}
	return sign | hi
}

func TestFloat32ToFloat16(t *testing.T) {
	pos := make([]uint16, 0, 0x7c00)
	for h := uint16(0); h < 0x7c00; h++ {
		pos = append(pos, h)
	}
	check := func(x float32) {
		t.Helper()
		got, want := Float32ToFloat16(x), refFloat32ToFloat16(x, pos)
		if math.IsNaN(float64(x)) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#08x -> %#04x", math.Float32bits(x), got)
			}
			return
		}
		if got != want {
			t.Fatalf("Float32ToFloat16(%v [%#08x]) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
	// Every midpoint between neighbouring binary16 values and its float32 neighbours: the tie cases.
	for _, h := range pos[:len(pos)-1] {
		mid := float32((f16Value(h) + f16Value(h+1)) / 2)
		for _, x := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9), -mid} {
			check(x)
		}
	}
	specials := []float32{0, float32(math.Copysign(0, -1)), 65504, 65519.99, 65520, 65536, 1e10, -1e10,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-8, 2.9802322e-08, 2.9802326e-08,
		5.9604645e-08, 1e-45, math.MaxFloat32, math.SmallestNonzeroFloat32, 6.097555e-05, 6.1035156e-05}
	for _, x := range specials {
		check(x)
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 300000; i++ {
		check(math.Float32frombits(rng.Uint32()))
		check(float32(rng.NormFloat64() * math.Pow(2, float64(rng.Intn(50)-30))))
	}
}

func TestBFloat16(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BFloat16ToFloat32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BFloat16ToFloat32(%#04x) bits %#08x", h, math.Float32bits(f))
		}
		back := Float32ToBFloat16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BFloat16ToFloat32(back))) {
				t.Fatalf("NaN %#04x -> %#04x", h, back)
			}
		} else if back != h {
			t.Fatalf("round trip %#04x -> %#04x", h, back)
		}
	}
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 300000; i++ {
		b := rng.Uint32()
		x := math.Float32frombits(b)
		got := Float32ToBFloat16(x)
		if math.IsNaN(float64(x)) {
			if !math.IsNaN(float64(BFloat16ToFloat32(got))) {
				t.Fatalf("NaN %#08x -> %#04x", b, got)
			}
			continue
		}
		// Reference: the nearer of the two truncations, ties to even.
		lo := uint16(b >> 16)
		want := lo
		rem := b & 0xffff
		if rem > 0x8000 || (rem == 0x8000 && lo&1 == 1) {
			want = lo + 1
		}
		if got != want {
			t.Fatalf("Float32ToBFloat16(%#08x) = %#04x, want %#04x", b, got, want)
		}
	}
	if got := Float32ToBFloat16(math.MaxFloat32); got != 0x7f80 {
		t.Fatalf("MaxFloat32 -> %#04x, want inf 0x7f80", got)
	}
}
