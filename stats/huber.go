package stats

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// HuberEpsilon and HuberAlpha are the settings of the paper's Huber regression:
// scikit-learn's HuberRegressor defaults (epsilon 1.35, alpha 0.0001).
const (
	HuberEpsilon = 1.35
	HuberAlpha   = 1e-4
)

// sigmaMin is the lower bound scikit-learn puts on the scale (10 machine epsilons).
const sigmaMin = 10 * 2.220446049250313e-16

// HuberSlope fits y = slope·x by Huber regression through the origin, as the paper did
// with scikit-learn's HuberRegressor(fit_intercept=False): it minimises, jointly over the
// slope w and the scale sigma > 0,
//
//	L(w, sigma) = sum_i [sigma + sigma·H(|y_i - x_i·w| / sigma)] + alpha·w²,
//	H(z) = z² for z <= epsilon, 2·epsilon·z - epsilon² otherwise,
//
// with epsilon = HuberEpsilon and alpha = HuberAlpha, and returns the slope and the
// scale. Residuals beyond epsilon·scale are the outliers, which count linearly.
//
// L is jointly convex (sigma·H(r/sigma) is the perspective of a convex function), so the
// minimum is global: HuberSlope finds the optimal sigma for a given w in closed form
// (L is piecewise a·sigma + b/sigma + c between the points where a residual crosses
// epsilon·sigma) and then the root of the derivative of the profile min_sigma L(w, sigma),
// which is monotone in w, by bisection to machine precision. scikit-learn stops its
// L-BFGS-B at a gradient tolerance of 1e-5, so its slope agrees with this one to about
// that tolerance, not to the last digit.
//
// It returns an error when x is empty or holds a value that is not finite, and panics
// when x and y differ in length.
func HuberSlope(x, y []float64) (slope, scale float64, err error) {
	return huber(x, y, HuberEpsilon, HuberAlpha)
}

// huber is HuberSlope with the given epsilon and alpha.
func huber(x, y []float64, eps, alpha float64) (slope, scale float64, err error) {
	checkPaired("HuberSlope", x, y)
	if len(x) == 0 {
		return 0, 0, errors.New("stats: HuberSlope: no data")
	}
	for i := range x {
		if !isFinite(x[i]) || !isFinite(y[i]) {
			return 0, 0, fmt.Errorf("stats: HuberSlope: value %d is not finite (x %v, y %v)", i, x[i], y[i])
		}
	}
	p := huberProblem{x: x, y: y, eps: eps, alpha: alpha, a: make([]float64, len(x))}
	// Bracket the root of the profile's derivative, then bisect.
	var lo, hi float64
	switch d := p.deriv(0); {
	case d == 0:
		return 0, p.sigma(0), nil
	case d < 0:
		lo, hi = 0, 1
		for p.deriv(hi) < 0 {
			lo, hi = hi, 2*hi
			if math.IsInf(hi, 0) {
				return 0, 0, errors.New("stats: HuberSlope: the slope diverges")
			}
		}
	default:
		lo, hi = -1, 0
		for p.deriv(lo) > 0 {
			lo, hi = 2*lo, lo
			if math.IsInf(lo, 0) {
				return 0, 0, errors.New("stats: HuberSlope: the slope diverges")
			}
		}
	}
	for range 5000 {
		mid := lo + (hi-lo)/2
		if mid <= lo || mid >= hi {
			break
		}
		switch d := p.deriv(mid); {
		case d < 0:
			lo = mid
		case d > 0:
			hi = mid
		default:
			lo, hi = mid, mid
		}
	}
	w := lo + (hi-lo)/2
	return w, p.sigma(w), nil
}

// huberProblem is the data and settings of one fit; a is scratch space.
type huberProblem struct {
	x, y       []float64
	eps, alpha float64
	a          []float64
}

// sigma returns the scale that minimises L(w, ·). Between consecutive breakpoints
// |r|_(k)/eps the k smallest residuals are inliers and
//
//	L = (n - (n-k)·eps²)·sigma + Q_k/sigma + const,  Q_k = sum of the k smallest r²,
//
// whose derivative n - (n-k)·eps² - Q_k/sigma² is continuous and nondecreasing in sigma;
// the minimiser is its root sqrt(Q_k / (n - (n-k)·eps²)) in the first segment whose
// right end has a nonnegative derivative.
func (p *huberProblem) sigma(w float64) float64 {
	n := len(p.x)
	for i := range p.x {
		p.a[i] = math.Abs(p.y[i] - p.x[i]*w)
	}
	slices.Sort(p.a)
	eps2 := p.eps * p.eps
	q, left := 0.0, 0.0
	for k := 0; k <= n; k++ {
		c := float64(n) - float64(n-k)*eps2
		right := math.Inf(1)
		if k < n {
			right = p.a[k] / p.eps
		}
		if k == n || (c > 0 && c*right*right >= q) {
			s := 0.0
			if c > 0 {
				s = math.Sqrt(q / c)
			}
			return math.Max(sigmaMin, math.Min(right, math.Max(left, s)))
		}
		q += p.a[k] * p.a[k]
		left = right
	}
	panic("unreachable")
}

// deriv returns d/dw of min_sigma L(w, sigma): by the envelope theorem, the partial
// derivative of L in w at the optimal sigma,
//
//	-2/sigma·sum_inliers r_i·x_i - 2·eps·sum_outliers sign(r_i)·x_i + 2·alpha·w.
func (p *huberProblem) deriv(w float64) float64 {
	s := p.sigma(w)
	d := 2 * p.alpha * w
	for i := range p.x {
		r := p.y[i] - p.x[i]*w
		if math.Abs(r) <= p.eps*s {
			d -= 2 / s * r * p.x[i]
		} else {
			d -= 2 * p.eps * math.Copysign(1, r) * p.x[i]
		}
	}
	return d
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
