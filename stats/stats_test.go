package stats

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// close reports whether got is within tol of want, relative to max(1, |want|); NaN
// matches NaN.
func close(got, want, tol float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

func readCases[T any](t *testing.T, name string) []T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var cs []T
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestWilcoxonSignedRankScipy(t *testing.T) {
	type wcase struct {
		Name      string
		X, Y      []float64
		Statistic float64
		PValue    float64
	}
	for _, c := range readCases[wcase](t, "wilcoxon.json") {
		t.Run(c.Name, func(t *testing.T) {
			s, p := WilcoxonSignedRank(c.X, c.Y)
			if !close(s, c.Statistic, 1e-12) || !close(p, c.PValue, 1e-12) {
				t.Errorf("got (%v, %v), scipy (%v, %v)", s, p, c.Statistic, c.PValue)
			}
		})
	}
}

func TestWilcoxonSignedRankSmall(t *testing.T) {
	cases := []struct {
		name string
		x, y []float64
		stat float64
		p    float64
	}{
		// 2^-5 for each of the two extreme sign patterns of 5 ranks.
		{"all positive n 5", []float64{1, 2, 3, 4, 5}, []float64{0, 0, 0, 0, 0}, 0, 2.0 / 32},
		{"all negative n 5", []float64{0, 0, 0, 0, 0}, []float64{1, 2, 3, 4, 5}, 0, 2.0 / 32},
		// R+ = 1 of 1..3: P(R+ <= 1) = 2/8.
		{"one negative rank", []float64{-1, 2, 3}, []float64{0, 0, 0}, 1, 4.0 / 8},
		{"symmetric in x and y", []float64{3, 1, 4}, []float64{1, 5, 9}, 1, 4.0 / 8},
		{"empty", nil, nil, math.NaN(), math.NaN()},
		{"all zero", []float64{1, 2}, []float64{1, 2}, math.NaN(), math.NaN()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, p := WilcoxonSignedRank(c.x, c.y)
			if !close(s, c.stat, 1e-15) || !close(p, c.p, 1e-15) {
				t.Errorf("got (%v, %v), want (%v, %v)", s, p, c.stat, c.p)
			}
		})
	}
}

// huberLoss is scikit-learn's objective (_huber_loss_and_gradient) at (w, sigma).
func huberLoss(x, y []float64, w, sigma, eps, alpha float64) float64 {
	l := alpha * w * w
	for i := range x {
		a := math.Abs(y[i] - x[i]*w)
		if a > eps*sigma {
			l += sigma + 2*eps*a - sigma*eps*eps
		} else {
			l += sigma + a*a/sigma
		}
	}
	return l
}

func TestHuberSlopeSklearn(t *testing.T) {
	type hcase struct {
		Name         string
		X, Y         []float64
		Slope, Scale float64
	}
	for _, c := range readCases[hcase](t, "huber.json") {
		t.Run(c.Name, func(t *testing.T) {
			w, s, err := HuberSlope(c.X, c.Y)
			if err != nil {
				t.Fatal(err)
			}
			// scikit-learn stops L-BFGS-B at a projected gradient below 1e-5, so it
			// agrees to about that; HuberSlope's minimum must be at least as low.
			if !close(w, c.Slope, 2e-5) || !close(s, c.Scale, 2e-5) {
				t.Errorf("got slope %v scale %v, sklearn %v %v", w, s, c.Slope, c.Scale)
			}
			got := huberLoss(c.X, c.Y, w, s, HuberEpsilon, HuberAlpha)
			ref := huberLoss(c.X, c.Y, c.Slope, c.Scale, HuberEpsilon, HuberAlpha)
			if got > ref*(1+1e-15) {
				t.Errorf("objective %.17g at the slope found, sklearn's is lower: %.17g", got, ref)
			}
		})
	}
}

func TestHuberSlopeHand(t *testing.T) {
	cases := []struct {
		name         string
		x, y         []float64
		eps, alpha   float64
		slope, scale float64 // scale < 0: not checked
	}{
		// A perfect fit: zero residuals, the scale at its lower bound.
		{"exact line", []float64{1, 2, 3, 4, 5}, []float64{2, 4, 6, 8, 10}, HuberEpsilon, HuberAlpha, 2, sigmaMin},
		// Three of four points on y = -2x: more than n(1 - 1/eps²) zero residuals, so
		// the optimal scale is 0 and the fourth point is an outlier (objective 1.3504;
		// scikit-learn's L-BFGS-B stops at w = -2.0025 with 1.3648).
		{"three of four on a line", []float64{-1, -2, 3, 0.5}, []float64{2, 4.5, -6, -1}, HuberEpsilon, HuberAlpha, -2, sigmaMin},
		// Without the penalty and with every point an inlier the fit is least squares
		// through the origin: w = sum xy / sum xx = 15/14, and then sigma² = RSS/n
		// (RSS = 35/196: the derivative n - RSS/sigma² vanishes).
		{"least squares", []float64{1, 2, 3}, []float64{1, 2.5, 3}, 100, 0, 15.0 / 14, math.Sqrt(35.0 / 196 / 3)},
		// x all zero: only the penalty depends on w.
		{"x zero", []float64{0, 0, 0}, []float64{1, -1, 2}, HuberEpsilon, HuberAlpha, 0, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, s, err := huber(c.x, c.y, c.eps, c.alpha)
			if err != nil {
				t.Fatal(err)
			}
			if !close(w, c.slope, 1e-12) {
				t.Errorf("slope %v, want %v", w, c.slope)
			}
			if c.scale >= 0 && !close(s, c.scale, 1e-12) {
				t.Errorf("scale %v, want %v", s, c.scale)
			}
		})
	}
}

func TestHuberSlopeErrors(t *testing.T) {
	cases := []struct {
		name string
		x, y []float64
	}{
		{"empty", nil, nil},
		{"NaN", []float64{1, math.NaN()}, []float64{1, 2}},
		{"Inf", []float64{1, 2}, []float64{math.Inf(1), 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := HuberSlope(c.x, c.y); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestMedianMeanPearson(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name                  string
		x, y                  []float64
		median, mean, pearson float64
	}{
		{"empty", nil, nil, nan, nan, nan},
		{"one", []float64{4}, []float64{1}, 4, 4, nan},
		{"odd", []float64{3, 1, 2}, []float64{6, 2, 4}, 2, 2, 1},
		{"even", []float64{4, 1, 3, 2}, []float64{-4, -1, -3, -2}, 2.5, 2.5, -1},
		{"constant y", []float64{1, 2, 3}, []float64{5, 5, 5}, 2, 2, nan},
		// scipy.stats.pearsonr([1, 2, 3, 4, 5], [10, 9, 2.5, 6, 4]): -0.7426106572325057
		{"scipy docs", []float64{1, 2, 3, 4, 5}, []float64{10, 9, 2.5, 6, 4}, 3, 3, -0.7426106572325057},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := append([]float64(nil), c.x...)
			if got := Median(c.x); !close(got, c.median, 1e-15) {
				t.Errorf("Median %v, want %v", got, c.median)
			}
			if got := Mean(c.x); !close(got, c.mean, 1e-15) {
				t.Errorf("Mean %v, want %v", got, c.mean)
			}
			if got := Pearson(c.x, c.y); !close(got, c.pearson, 1e-14) {
				t.Errorf("Pearson %v, want %v", got, c.pearson)
			}
			for i := range x {
				if x[i] != c.x[i] {
					t.Fatal("the input was changed")
				}
			}
		})
	}
}

func TestPairedLengthPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"Pearson":            func() { Pearson([]float64{1}, nil) },
		"WilcoxonSignedRank": func() { WilcoxonSignedRank([]float64{1}, nil) },
		"HuberSlope":         func() { HuberSlope([]float64{1}, nil) },
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
