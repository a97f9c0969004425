package tensor

import (
	"math"
	"testing"
)

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-104); x < 89; x += 0.000731 {
		got := float64(expf(x))
		want := math.Exp(float64(x))
		if want < 1.2e-38 { // subnormal range: absolute error
			if math.Abs(got-want) > 3e-45 {
				t.Fatalf("expf(%v) = %v, want %v", x, got, want)
			}
			continue
		}
		if want > math.MaxFloat32 {
			continue
		}
		rel := math.Abs(got-want) / want
		worst = math.Max(worst, rel)
	}
	if worst > 2.5e-7 {
		t.Fatalf("expf max relative error %.3g", worst)
	}
	if !math.IsInf(float64(expf(100)), 1) || expf(-200) != 0 || expf(0) != 1 {
		t.Fatal("expf edge cases")
	}
}

func BenchmarkExpf(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i)/512 - 4
	}
	b.Run("expf", func(b *testing.B) {
		for b.Loop() {
			for i := range x {
				x[i] = expf(x[i]) * 0.5
			}
		}
	})
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for i := range x {
				x[i] = float32(math.Exp(float64(x[i]))) * 0.5
			}
		}
	})
}
