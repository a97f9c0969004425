package stats

import (
	"math"
	"slices"
)

// exactMax is the largest sample for which WilcoxonSignedRank uses the exact null
// distribution, as scipy's method "auto" does.
const exactMax = 50

// WilcoxonSignedRank tests whether the paired differences d = x - y are symmetric about
// zero, as scipy.stats.wilcoxon(x, y) does with its defaults (zero_method "wilcox",
// correction False, alternative "two-sided", method "auto"). It returns the statistic
// T = min(R+, R-), the smaller of the sums of the ranks of |d| over the positive and the
// negative differences, and the two-sided p-value.
//
// Zero differences are dropped. When len(x) <= 50 and no difference is zero and no two
// |d| tie, the p-value comes from the exact null distribution of R+ (scipy: 2·min of the
// two tails, 1 at the centre). Otherwise it comes from the normal approximation of R+
// over the nonzero differences, with the tie correction of the variance and no
// continuity correction: z = (T - n(n+1)/4) / sqrt((n(n+1)(2n+1) - sum_t t(t²-1)/2) / 24),
// p = 2·(1 - Phi(|z|)). scipy 1.10 differs on one case: with ties and no zeros at
// n <= 50 it kept the exact distribution, truncating a half-integer R+; later scipy
// versions switch away from it there too.
//
// When every difference is zero (or x is empty) the test is undefined and both results
// are NaN (scipy returns NaN for empty input and raises an error for all zeros). It
// panics when x and y differ in length.
func WilcoxonSignedRank(x, y []float64) (statistic, pValue float64) {
	checkPaired("WilcoxonSignedRank", x, y)
	var d []float64
	zeros := 0
	for i := range x {
		if v := x[i] - y[i]; v != 0 {
			d = append(d, v)
		} else {
			zeros++
		}
	}
	n := len(d)
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	abs := make([]float64, n)
	for i, v := range d {
		abs[i] = math.Abs(v)
	}
	ranks, ties := rank(abs)
	var rPlus, rMinus float64
	for i, v := range d {
		if v > 0 {
			rPlus += ranks[i]
		} else {
			rMinus += ranks[i]
		}
	}
	t := math.Min(rPlus, rMinus)
	if len(x) <= exactMax && zeros == 0 && len(ties) == 0 {
		return t, exactP(n, int(rPlus))
	}
	nf := float64(n)
	mean := nf * (nf + 1) / 4
	v := nf * (nf + 1) * (2*nf + 1)
	for _, c := range ties {
		c := float64(c)
		v -= 0.5 * c * (c*c - 1)
	}
	z := (t - mean) / math.Sqrt(v/24)
	return t, math.Erfc(math.Abs(z) / math.Sqrt2)
}

// exactP returns the two-sided p-value of a rank sum rPlus of n untied nonzero
// differences under the null distribution (every sign equally likely), as scipy does:
// 1 when rPlus is the centre of the distribution, else twice the smaller tail
// probability (both tails include rPlus), capped at 1.
func exactP(n, rPlus int) float64 {
	maxSum := n * (n + 1) / 2
	// count[s] is the number of subsets of the ranks 1..n that sum to s; counts stay
	// below 2^50, so float64 holds them exactly.
	count := make([]float64, maxSum+1)
	count[0] = 1
	for r := 1; r <= n; r++ {
		for s := r * (r + 1) / 2; s >= r; s-- {
			count[s] += count[s-r]
		}
	}
	if rPlus == maxSum/2 {
		return 1
	}
	var less, greater float64
	for s, c := range count {
		if s <= rPlus {
			less += c
		}
		if s >= rPlus {
			greater += c
		}
	}
	p := 2 * math.Min(less, greater) / math.Ldexp(1, n)
	return math.Min(1, p)
}

// rank returns the ranks of v (1-based, ties get the mean of their ranks, as
// scipy.stats.rankdata's "average") and the sizes of the groups of tied values.
func rank(v []float64) (ranks []float64, ties []int) {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case v[a] < v[b]:
			return -1
		case v[a] > v[b]:
			return 1
		}
		return 0
	})
	ranks = make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && v[idx[j]] == v[idx[i]] {
			j++
		}
		r := float64(i+j+1) / 2 // mean of ranks i+1 .. j
		for k := i; k < j; k++ {
			ranks[idx[k]] = r
		}
		if j-i > 1 {
			ties = append(ties, j-i)
		}
		i = j
	}
	return ranks, ties
}
