package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// powerLawImages synthesises n images of side s whose amplitude spectrum falls as
// 1/f^(slope/2) (power ~ f^slope), with random phases: a known spectrum slope.
func powerLawImages(rng *rand.Rand, n, s int, slope float64) []float64 {
	out := make([]float64, 0, n*s*s)
	for k := 0; k < n; k++ {
		img := make([]float64, s*s)
		for fy := -s / 2; fy < s/2; fy++ {
			for fx := 0; fx <= s/2; fx++ {
				f := math.Hypot(float64(fy), float64(fx))
				if f == 0 {
					continue
				}
				amp := math.Pow(f, slope/2) * rng.NormFloat64()
				ph := 2 * math.Pi * rng.Float64()
				for y := 0; y < s; y++ {
					for x := 0; x < s; x++ {
						img[y*s+x] += amp * math.Cos(2*math.Pi*(float64(fy*y+fx*x))/float64(s)+ph)
					}
				}
			}
		}
		out = append(out, img...)
	}
	return out
}

func TestSpectrumSlopeRecoversPowerLaw(t *testing.T) {
	for _, want := range []float64{-1, -2, -3} {
		rng := rand.New(rand.NewPCG(1, uint64(-want)))
		img := powerLawImages(rng, 16, 32, want)
		p, err := RadialPowerSpectrum(img, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		got, err := SpectrumSlope(p, 2, 12)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 0.25 {
			t.Errorf("slope of a 1/f^%g power spectrum: got %.3f", -want, got)
		}
	}
}

func TestRadialPowerSpectrumWhiteNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	img := make([]float64, 64*16*16)
	for i := range img {
		img[i] = rng.NormFloat64()
	}
	p, err := RadialPowerSpectrum(img, 64, 16)
	if err != nil {
		t.Fatal(err)
	}
	s, err := SpectrumSlope(p, 2, 7)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s) > 0.3 {
		t.Errorf("white noise spectrum slope %.3f, want about 0", s)
	}
	if _, err := RadialPowerSpectrum(img[:10], 1, 16); err == nil {
		t.Error("no error for a wrong pixel count")
	}
}

func TestKolmogorovSmirnov(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b []float64
		want float64
	}{
		{"same", []float64{1, 2, 3}, []float64{3, 2, 1}, 0},
		{"disjoint", []float64{1, 2}, []float64{5, 6, 7}, 1},
		{"half", []float64{1, 2, 3, 4}, []float64{3, 4, 5, 6}, 0.5},
		{"ties", []float64{1, 1, 2}, []float64{1, 2, 2}, 1.0 / 3},
	} {
		if got := KolmogorovSmirnov(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: got %g, want %g", c.name, got, c.want)
		}
	}
}

func TestHistogramIntersection(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b []float64
		want float64
	}{
		{"same", []float64{0.1, 0.5, 0.9}, []float64{0.9, 0.5, 0.1}, 1},
		{"disjoint", []float64{0.1, 0.2}, []float64{0.8, 0.9}, 0},
		{"clamped ends", []float64{-5, 5}, []float64{0.01, 0.99}, 1},
		{"half", []float64{0.1, 0.9}, []float64{0.1, 0.1}, 0.5},
	} {
		if got := HistogramIntersection(c.a, c.b, 10, 0, 1); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: got %g, want %g", c.name, got, c.want)
		}
	}
}
