package train

import "math"

// Correlation returns Pearson's correlation of x and y (accumulated in float64), or 0
// when there are fewer than two pairs or either series is constant. It panics when
// the lengths differ.
func Correlation(x, y []float64) float64 {
	if len(x) != len(y) {
		panic("train: Correlation of series of different lengths")
	}
	n := float64(len(x))
	if len(x) < 2 {
		return 0
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

// Mean returns the mean of the values of v that are not NaN, or NaN when there are
// none.
func Mean(v []float64) float64 {
	var s float64
	n := 0
	for _, x := range v {
		if !math.IsNaN(x) {
			s += x
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

// Scores are per-neuron metrics of predictions (see the package documentation).
type Scores struct {
	SingleTrial []float64 // correlation with the single-trial responses
	Average     []float64 // correlation with the responses averaged over an image's trials
	// Oracle is the leave-one-out oracle correlation: nil when no image was shown
	// twice, NaN for a neuron recorded in fewer than two trials of every image.
	Oracle []float64
}

// groups returns the trials of each distinct image, images in order of first
// appearance; ids nil makes every trial its own image.
func groups(trials int, ids []int64) [][]int {
	if ids == nil {
		g := make([][]int, trials)
		for i := range g {
			g[i] = []int{i}
		}
		return g
	}
	at := map[int64]int{}
	var g [][]int
	for i, id := range ids {
		k, ok := at[id]
		if !ok {
			k = len(g)
			at[id] = k
			g = append(g, nil)
		}
		g[k] = append(g[k], i)
	}
	return g
}

// Score computes the metrics of predictions pred against responses resp (both
// [trials, neurons]) for trials showing images ids (nil: all different), where mask
// ([trials, neurons], nil: all true) says which neurons were recorded.
func Score(pred, resp []float32, neurons int, ids []int64, mask []bool) Scores {
	trials := len(resp) / neurons
	rec := func(i, n int) bool { return mask == nil || mask[i*neurons+n] }
	gs := groups(trials, ids)
	s := Scores{SingleTrial: make([]float64, neurons), Average: make([]float64, neurons)}
	var x, y []float64
	for n := 0; n < neurons; n++ {
		x, y = x[:0], y[:0]
		for i := 0; i < trials; i++ {
			if rec(i, n) {
				x = append(x, float64(pred[i*neurons+n]))
				y = append(y, float64(resp[i*neurons+n]))
			}
		}
		s.SingleTrial[n] = Correlation(x, y)
		x, y = x[:0], y[:0]
		for _, g := range gs {
			var sp, sr float64
			k := 0
			for _, i := range g {
				if rec(i, n) {
					sp += float64(pred[i*neurons+n])
					sr += float64(resp[i*neurons+n])
					k++
				}
			}
			if k > 0 {
				x = append(x, sp/float64(k))
				y = append(y, sr/float64(k))
			}
		}
		s.Average[n] = Correlation(x, y)
	}
	s.Oracle = OracleCorrelation(resp, neurons, ids, mask)
	return s
}

// OracleCorrelation returns, per neuron, the correlation of each trial's response
// with the mean response of the other trials of the same image, over the images the
// neuron was recorded with at least twice (nil when no image was shown twice; NaN
// for a neuron without such an image). resp and mask are [trials, neurons].
func OracleCorrelation(resp []float32, neurons int, ids []int64, mask []bool) []float64 {
	trials := len(resp) / neurons
	var rep [][]int
	for _, g := range groups(trials, ids) {
		if len(g) > 1 {
			rep = append(rep, g)
		}
	}
	if len(rep) == 0 {
		return nil
	}
	out := make([]float64, neurons)
	var x, y, r []float64
	for n := 0; n < neurons; n++ {
		x, y = x[:0], y[:0]
		for _, g := range rep {
			r = r[:0]
			for _, i := range g {
				if mask == nil || mask[i*neurons+n] {
					r = append(r, float64(resp[i*neurons+n]))
				}
			}
			if len(r) < 2 {
				continue
			}
			var sum float64
			for _, v := range r {
				sum += v
			}
			for _, v := range r {
				x = append(x, v)
				y = append(y, (sum-v)/float64(len(r)-1))
			}
		}
		if len(x) == 0 {
			out[n] = math.NaN()
			continue
		}
		out[n] = Correlation(x, y)
	}
	return out
}
