// Package stats holds the statistics the EGG paper compares MEI methods with: a robust
// regression through the origin (scikit-learn's HuberRegressor with fit_intercept=False)
// and the Wilcoxon signed-rank test (scipy.stats.wilcoxon with its defaults), plus
// medians, means and Pearson correlations over neurons.
//
// Conventions: inputs are float64 slices, one value per neuron; paired functions take
// two slices of the same length and panic when the lengths differ (a programmer error).
// Functions leave their inputs unchanged. Results that are undefined (the mean of no
// values, the correlation of a constant) are NaN, as in numpy and scipy.
//
// References: Pierzchlewicz et al., "Energy Guided Diffusion for Generating Neurally
// Exciting Images", NeurIPS 2023, which compares EGG and gradient-ascent MEIs by a Huber
// regression through the origin and a Wilcoxon signed-rank test over neurons
// (egg-method.md section 7); Owen, "A robust hybrid of lasso and ridge regression"
// (2007), the objective scikit-learn's HuberRegressor minimises; Wilcoxon (1945).
package stats

import (
	"fmt"
	"math"
	"slices"
)

// Median returns the median of v: the middle value, or the mean of the two middle
// values when len(v) is even. It is NaN when v is empty.
func Median(v []float64) float64 {
	n := len(v)
	if n == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Mean returns the arithmetic mean of v, NaN when v is empty.
func Mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// Pearson returns the Pearson correlation coefficient of x and y (scipy.stats.pearsonr's
// statistic). It is NaN when fewer than two pairs are given or when x or y is constant.
// It panics when the lengths differ.
func Pearson(x, y []float64) float64 {
	checkPaired("Pearson", x, y)
	if len(x) < 2 {
		return math.NaN()
	}
	mx, my := Mean(x), Mean(y)
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	r := sxy / math.Sqrt(sxx*syy)
	return math.Max(-1, math.Min(1, r))
}

func checkPaired(op string, x, y []float64) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("stats: %s: %d x values and %d y values", op, len(x), len(y)))
	}
}
