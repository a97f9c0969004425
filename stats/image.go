package stats

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Image statistics of natural-image patches, by which a diffusion prior's samples are
// compared with held-out patches: the slope of the radially averaged power spectrum
// (natural images have power falling as about 1/f^2, a slope near -2 on log-log axes;
// van der Schaaf & van Hateren 1996) and the distance between pixel histograms.

// RadialPowerSpectrum returns the power spectrum of n square images of side s
// (pixels holds them one after another, row by row), averaged over the images and
// over rings of integer radial frequency: power[f] for f = 0 .. s/2 cycles per image.
// Each image's mean is removed and a Hann window applied before the transform, so
// the image border adds no spurious high-frequency power.
func RadialPowerSpectrum(pixels []float64, n, s int) ([]float64, error) {
	if n <= 0 || s < 4 || len(pixels) != n*s*s {
		return nil, fmt.Errorf("stats: power spectrum of %d values as %d images of %dx%d", len(pixels), n, s, s)
	}
	fft := fourier.NewCmplxFFT(s)
	win := make([]float64, s)
	for i := range win {
		win[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(s))
	}
	half := s / 2
	power := make([]float64, half+1)
	count := make([]float64, half+1)
	grid := make([]complex128, s*s)
	col := make([]complex128, s)
	for k := 0; k < n; k++ {
		img := pixels[k*s*s : (k+1)*s*s]
		mean := Mean(img)
		for y := 0; y < s; y++ {
			row := grid[y*s : (y+1)*s]
			for x := 0; x < s; x++ {
				row[x] = complex((img[y*s+x]-mean)*win[y]*win[x], 0)
			}
			fft.Coefficients(row, row)
		}
		for x := 0; x < s; x++ {
			for y := 0; y < s; y++ {
				col[y] = grid[y*s+x]
			}
			fft.Coefficients(col, col)
			for y := 0; y < s; y++ {
				fy, fx := freq(y, s), freq(x, s)
				r := int(math.Round(math.Hypot(float64(fy), float64(fx))))
				if r > half {
					continue
				}
				c := col[y]
				power[r] += real(c)*real(c) + imag(c)*imag(c)
				count[r]++
			}
		}
	}
	for f := range power {
		power[f] /= count[f]
	}
	return power, nil
}

// freq maps a DFT index to its signed frequency.
func freq(i, s int) int {
	if i > s/2 {
		return i - s
	}
	return i
}

// SpectrumSlope returns the least-squares slope of log power against log frequency
// over the frequencies lo .. hi (cycles per image) of a radial power spectrum.
func SpectrumSlope(power []float64, lo, hi int) (float64, error) {
	if lo < 1 || hi >= len(power) || hi-lo < 2 {
		return math.NaN(), fmt.Errorf("stats: spectrum slope over frequencies %d..%d of a spectrum with %d", lo, hi, len(power))
	}
	var xs, ys []float64
	for f := lo; f <= hi; f++ {
		if power[f] <= 0 {
			return math.NaN(), fmt.Errorf("stats: spectrum slope: no power at frequency %d", f)
		}
		xs = append(xs, math.Log(float64(f)))
		ys = append(ys, math.Log(power[f]))
	}
	mx, my := Mean(xs), Mean(ys)
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	return sxy / sxx, nil
}

// KolmogorovSmirnov returns the two-sample Kolmogorov-Smirnov statistic of a and b:
// the largest difference between their empirical distribution functions, from 0 (the
// same distribution) to 1 (disjoint supports).
func KolmogorovSmirnov(a, b []float64) float64 {
	if len(a) == 0 || len(b) == 0 {
		return math.NaN()
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	var i, j int
	var d float64
	for i < len(x) && j < len(y) {
		v := math.Min(x[i], y[j])
		for i < len(x) && x[i] <= v {
			i++
		}
		for j < len(y) && y[j] <= v {
			j++
		}
		d = math.Max(d, math.Abs(float64(i)/float64(len(x))-float64(j)/float64(len(y))))
	}
	return d
}

// HistogramIntersection returns the overlap of the histograms of a and b over bins
// equal bins of [lo, hi] (values outside are counted in the end bins), each
// normalised to sum 1: 1 for identical histograms, 0 for disjoint ones.
func HistogramIntersection(a, b []float64, bins int, lo, hi float64) float64 {
	ha, hb := histogram(a, bins, lo, hi), histogram(b, bins, lo, hi)
	var s float64
	for i := range ha {
		s += math.Min(ha[i], hb[i])
	}
	return s
}

func histogram(v []float64, bins int, lo, hi float64) []float64 {
	h := make([]float64, bins)
	for _, x := range v {
		k := int(float64(bins) * (x - lo) / (hi - lo))
		k = max(0, min(bins-1, k))
		h[k]++
	}
	for i := range h {
		h[i] /= float64(len(v))
	}
	return h
}
