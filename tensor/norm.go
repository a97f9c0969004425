package tensor

import (
	"fmt"
	"math"
	"strconv"
)

// moments returns the sum of (x - shift) and of (x - shift)^2 over xs, accumulated in
// float64. Summing around a shift close to the data (its first element) keeps the
// variance exact when the mean is large compared with the spread.
func moments(xs []float32, shift float32) (s1, s2 float64) {
	var a0, a1, a2, a3, b0, b1, b2, b3 float64
	sh := float64(shift)
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		v := xs[i : i+4 : i+4]
		d0, d1, d2, d3 := float64(v[0])-sh, float64(v[1])-sh, float64(v[2])-sh, float64(v[3])-sh
		a0 += d0
		a1 += d1
		a2 += d2
		a3 += d3
		b0 += d0 * d0
		b1 += d1 * d1
		b2 += d2 * d2
		b3 += d3 * d3
	}
	for ; i < len(xs); i++ {
		d := float64(xs[i]) - sh
		a0 += d
		b0 += d * d
	}
	return (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3)
}

// meanVar turns shifted sums over n values into the mean and the biased variance
// (clamped at 0).
func meanVar(s1, s2 float64, shift float32, n int) (mean, variance float64) {
	m := s1 / float64(n)
	return float64(shift) + m, max(s2/float64(n)-m*m, 0)
}

// affineInto writes y = x*a + b.
func affineInto(y, x []float32, a, b float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] = x[i]*a + b
	}
}

// dotSum returns sum(g*x) and sum(g), accumulated in float64.
func dotSum(g, x []float32) (gx, gs float64) {
	x = x[:len(g)]
	var a0, a1, b0, b1 float64
	i := 0
	for ; i+2 <= len(g); i += 2 {
		g2, x2 := g[i:i+2:i+2], x[i:i+2:i+2]
		a0 += float64(g2[0]) * float64(x2[0])
		a1 += float64(g2[1]) * float64(x2[1])
		b0 += float64(g2[0])
		b1 += float64(g2[1])
	}
	for ; i < len(g); i++ {
		a0 += float64(g[i]) * float64(x[i])
		b0 += float64(g[i])
	}
	return a0 + a1, b0 + b1
}

// normGradInto writes dx = a*g + b*x + c.
func normGradInto(dx, g, x []float32, a, b, c float32) {
	g = g[:len(dx)]
	x = x[:len(dx)]
	for i := range dx {
		dx[i] = a*g[i] + b*x[i] + c
	}
}

// checkAffine panics unless p is nil or a vector of n values.
func checkAffine(op, name string, p *Tensor, n int, xShape []int) {
	if p != nil && (len(p.shape) != 1 || p.shape[0] != n) {
		panic(fmt.Sprintf("tensor: %s: %s %v for input %v (want [%d])", op, name, p.shape, xShape, n))
	}
}

// at returns p[i], or def when p is nil.
func at(p *Tensor, i int, def float32) float32 {
	if p == nil {
		return def
	}
	return p.h()[i]
}

// GroupNorm normalises x [N, C, *] over groups of C/groups consecutive channels, as
// torch.nn.functional.group_norm: per sample and group, the mean and biased variance
// over the group's channels and spatial positions (accumulated in float64), then
// y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]. weight and bias are [C] or
// nil (no affine transform). It panics when C is not a multiple of groups or the
// shapes do not match.
func GroupNorm(x *Tensor, groups int, weight, bias *Tensor, eps float32) *Tensor {
	if len(x.shape) < 2 || groups <= 0 || x.shape[1]%groups != 0 {
		panic(fmt.Sprintf("tensor: GroupNorm: input %v with %d groups", x.shape, groups))
	}
	checkAffine("GroupNorm", "weight", weight, x.shape[1], x.shape)
	checkAffine("GroupNorm", "bias", bias, x.shape[1], x.shape)
	n, c := x.shape[0], x.shape[1]
	hw := numel(x.shape[2:])
	cg := c / groups
	d := cg * hw // elements per (sample, group)
	dev := x.dev
	if dev.kern != nil {
		return groupNormDev(x, groups, weight, bias, eps, n, c, hw)
	}
	mean := make([]float64, n*groups)
	rstd := make([]float64, n*groups)
	out := empty(dev, x.shape...)
	dev.parallel(n*groups, max(1, 16384/max(d, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xs := x.h()[i*d : (i+1)*d]
			if d == 0 {
				continue
			}
			s1, s2 := moments(xs, xs[0])
			m, v := meanVar(s1, s2, xs[0], d)
			r := 1 / math.Sqrt(v+float64(eps))
			mean[i], rstd[i] = m, r
			for k := 0; k < cg; k++ {
				ch := (i%groups)*cg + k
				a := r * float64(at(weight, ch, 1))
				b := float64(at(bias, ch, 0)) - m*a
				off := i*d + k*hw
				affineInto(out.h()[off:off+hw], x.h()[off:off+hw], float32(a), float32(b))
			}
		}
	})
	// With x^ = (x - mean) * rstd and y = x^ * w_c + b_c over a group of D elements:
	//   db_c = sum_{n,hw} g,   dw_c = sum_{n,hw} g * x^,
	//   dx   = rstd * (w_c g - mean_group(w g) - x^ * mean_group(w g x^)).
	// With ds[n,c] = sum_hw g*x and db[n,c] = sum_hw g, and per group
	// A = sum_c w_c db[n,c], B = sum_c w_c ds[n,c]:
	//   dx = (rstd w_c) g + c2 x + c3,  c2 = -rstd^3 (B - mean A) / D,  c3 = -c2 mean - rstd A / D,
	//   dw_c = sum_n rstd (ds[n,c] - mean db[n,c]),  db_c = sum_n db[n,c].
	return record(out, "GroupNorm", []*Tensor{x, weight, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		ds := make([]float64, n*c)
		db := make([]float64, n*c)
		needX, needW := needs(x), needs(weight)
		if needX {
			gx = empty(dev, x.shape...)
		}
		dev.parallel(n*groups, max(1, 8192/max(d, 1)), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				c0 := (i % groups) * cg
				nn := i / groups
				var sa, sb float64
				for k := 0; k < cg; k++ {
					off := i*d + k*hw
					gs := g.h()[off : off+hw]
					if needX || needW {
						ds[nn*c+c0+k], db[nn*c+c0+k] = dotSum(gs, x.h()[off:off+hw])
					} else {
						db[nn*c+c0+k] = sumF64(gs)
					}
					w := float64(at(weight, c0+k, 1))
					sa += w * db[nn*c+c0+k]
					sb += w * ds[nn*c+c0+k]
				}
				if !needX {
					continue
				}
				m, r := mean[i], rstd[i]
				c2 := -r * r * r * (sb - m*sa) / float64(d)
				c3 := -c2*m - r*sa/float64(d)
				for k := 0; k < cg; k++ {
					off := i*d + k*hw
					a := r * float64(at(weight, c0+k, 1))
					normGradInto(gx.h()[off:off+hw], g.h()[off:off+hw], x.h()[off:off+hw], float32(a), float32(c2), float32(c3))
				}
			}
		})
		if needW {
			gw = empty(dev, c)
			for ch := 0; ch < c; ch++ {
				var s float64
				for nn := 0; nn < n; nn++ {
					i := nn*groups + ch/cg
					s += rstd[i] * (ds[nn*c+ch] - mean[i]*db[nn*c+ch])
				}
				gw.h()[ch] = float32(s)
			}
		}
		if needs(bias) {
			gb = empty(dev, c)
			for ch := 0; ch < c; ch++ {
				var s float64
				for nn := 0; nn < n; nn++ {
					s += db[nn*c+ch]
				}
				gb.h()[ch] = float32(s)
			}
		}
		return []*Tensor{gx, gw, gb}
	})
}

// sumF64 returns the sum of xs accumulated in float64.
func sumF64(xs []float32) float64 {
	var a0, a1 float64
	i := 0
	for ; i+2 <= len(xs); i += 2 {
		a0 += float64(xs[i])
		a1 += float64(xs[i+1])
	}
	if i < len(xs) {
		a0 += float64(xs[i])
	}
	return a0 + a1
}

// asDouble returns the float64 that v was most likely written as: the shortest decimal
// that rounds to v, read in float64 (0.1 for float32(0.1)). PyTorch keeps momentum as
// a Python float; this recovers it.
func asDouble(v float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return f
}

// BatchNorm2D normalises x [N, C, H, W] per channel, as
// torch.nn.functional.batch_norm. In training, it normalises with the batch mean
// and biased variance over (N, H, W) and, when runningMean and runningVar are not
// nil, updates them in place: running = (1 - momentum) * running + momentum * stat,
// with the unbiased variance for runningVar. Otherwise it normalises with
// runningMean and runningVar. y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c];
// weight and bias are [C] or nil. Running statistics get no gradient. It panics on
// mismatched shapes, on missing running statistics in evaluation and on a training
// batch with one value per channel.
func BatchNorm2D(x, weight, bias, runningMean, runningVar *Tensor, training bool, momentum, eps float32) *Tensor {
	if len(x.shape) != 4 {
		panic(fmt.Sprintf("tensor: BatchNorm2D: input %v is not [N, C, H, W]", x.shape))
	}
	n, c, hw := x.shape[0], x.shape[1], x.shape[2]*x.shape[3]
	checkAffine("BatchNorm2D", "weight", weight, c, x.shape)
	checkAffine("BatchNorm2D", "bias", bias, c, x.shape)
	checkAffine("BatchNorm2D", "running mean", runningMean, c, x.shape)
	checkAffine("BatchNorm2D", "running variance", runningVar, c, x.shape)
	m := n * hw // values per channel
	if training && m <= 1 {
		panic(fmt.Sprintf("tensor: BatchNorm2D: expected more than 1 value per channel when training, got input %v", x.shape))
	}
	if !training && (runningMean == nil || runningVar == nil) {
		panic(fmt.Sprintf("tensor: BatchNorm2D: evaluation of input %v needs running statistics", x.shape))
	}
	dev := x.dev
	if dev.kern != nil && !training && !needs(weight) && !needs(bias) {
		return batchNormEvalDev(x, weight, bias, runningMean, runningVar, eps)
	}
	mean := make([]float64, c)
	rstd := make([]float64, c)
	mom := asDouble(momentum)
	out := empty(dev, x.shape...)
	dev.parallel(c, max(1, 16384/max(m, 1)), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var mu, v float64
			if training {
				var s1, s2 float64
				shift := x.h()[ch*hw]
				for nn := 0; nn < n; nn++ {
					off := (nn*c + ch) * hw
					a, b := moments(x.h()[off:off+hw], shift)
					s1 += a
					s2 += b
				}
				mu, v = meanVar(s1, s2, shift, m)
				if runningMean != nil {
					runningMean.h()[ch] = float32(mom*mu + (1-mom)*float64(runningMean.h()[ch]))
				}
				if runningVar != nil {
					unbiased := v * float64(m) / float64(m-1)
					runningVar.h()[ch] = float32(mom*unbiased + (1-mom)*float64(runningVar.h()[ch]))
				}
			} else {
				mu, v = float64(runningMean.h()[ch]), float64(runningVar.h()[ch])
			}
			r := 1 / math.Sqrt(v+float64(eps))
			mean[ch], rstd[ch] = mu, r
			a := r * float64(at(weight, ch, 1))
			b := float64(at(bias, ch, 0)) - mu*a
			for nn := 0; nn < n; nn++ {
				off := (nn*c + ch) * hw
				affineInto(out.h()[off:off+hw], x.h()[off:off+hw], float32(a), float32(b))
			}
		}
	})
	// With x^ = (x - mean) * rstd, y = x^ w_c + b_c and M = N*H*W values per channel:
	//   db_c = sum g,  dw_c = sum g x^ = rstd (sum g x - mean sum g).
	// In evaluation mean and rstd are constants: dx = rstd w_c g.
	// In training they depend on x:
	//   dx = rstd w_c (g - sum(g)/M - x^ sum(g x^)/M)
	//      = (rstd w_c) g + c2 x + c3,  c2 = -rstd^3 w_c (sum g x - mean sum g) / M,
	//                                   c3 = -c2 mean - rstd w_c sum(g) / M.
	return record(out, "BatchNorm2D", []*Tensor{x, weight, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		needX, needW, needB := needs(x), needs(weight), needs(bias)
		if needX {
			gx = empty(dev, x.shape...)
		}
		if needW {
			gw = empty(dev, c)
		}
		if needB {
			gb = empty(dev, c)
		}
		dev.parallel(c, max(1, 8192/max(m, 1)), func(lo, hi int) {
			for ch := lo; ch < hi; ch++ {
				var sgx, sg float64
				if needW || needB || (needX && training) {
					for nn := 0; nn < n; nn++ {
						off := (nn*c + ch) * hw
						a, b := dotSum(g.h()[off:off+hw], x.h()[off:off+hw])
						sgx += a
						sg += b
					}
				}
				mu, r := mean[ch], rstd[ch]
				w := float64(at(weight, ch, 1))
				if needW {
					gw.h()[ch] = float32(r * (sgx - mu*sg))
				}
				if needB {
					gb.h()[ch] = float32(sg)
				}
				if !needX {
					continue
				}
				a := r * w
				var c2, c3 float64
				if training {
					c2 = -r * r * r * w * (sgx - mu*sg) / float64(m)
					c3 = -c2*mu - r*w*sg/float64(m)
				}
				for nn := 0; nn < n; nn++ {
					off := (nn*c + ch) * hw
					normGradInto(gx.h()[off:off+hw], g.h()[off:off+hw], x.h()[off:off+hw], float32(a), float32(c2), float32(c3))
				}
			}
		})
		return []*Tensor{gx, gw, gb}
	})
}

// LayerNorm normalises x over its trailing axes normalizedShape, as
// torch.nn.functional.layer_norm: per leading index, the mean and biased variance
// over the trailing axes (accumulated in float64), then
// y = (x - mean) / sqrt(var + eps) * weight + bias, where weight and bias have shape
// normalizedShape or are nil. It panics when the trailing axes of x are not
// normalizedShape or the shapes do not match.
func LayerNorm(x *Tensor, normalizedShape []int, weight, bias *Tensor, eps float32) *Tensor {
	k := len(normalizedShape)
	if k == 0 || k > len(x.shape) || !sameShape(x.shape[len(x.shape)-k:], normalizedShape) {
		panic(fmt.Sprintf("tensor: LayerNorm: input %v does not end with normalized shape %v", x.shape, normalizedShape))
	}
	for _, p := range []*Tensor{weight, bias} {
		if p != nil && !sameShape(p.shape, normalizedShape) {
			panic(fmt.Sprintf("tensor: LayerNorm: weight or bias %v for normalized shape %v", p.shape, normalizedShape))
		}
	}
	d := numel(normalizedShape)
	rows := 0
	if d > 0 {
		rows = x.Len() / d
	}
	dev := x.dev
	mean := make([]float64, rows)
	rstd := make([]float64, rows)
	out := empty(dev, x.shape...)
	dev.parallel(rows, max(1, 16384/max(d, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xs := x.h()[i*d : (i+1)*d]
			s1, s2 := moments(xs, xs[0])
			m, v := meanVar(s1, s2, xs[0], d)
			r := 1 / math.Sqrt(v+float64(eps))
			mean[i], rstd[i] = m, r
			ys := out.h()[i*d : (i+1)*d]
			if weight == nil && bias == nil {
				affineInto(ys, xs, float32(r), float32(-m*r))
				continue
			}
			for j := range ys {
				ys[j] = float32((float64(xs[j])-m)*r)*at(weight, j, 1) + at(bias, j, 0)
			}
		}
	})
	// With x^ = (x - mean) * rstd per row of D values and y = x^ w + b:
	//   dw = sum_rows g x^,  db = sum_rows g,
	//   dx = rstd (w g - mean(w g) - x^ mean(w g x^))   (means over the row).
	return record(out, "LayerNorm", []*Tensor{x, weight, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		if needs(x) {
			gx = empty(dev, x.shape...)
			dev.parallel(rows, max(1, 8192/max(d, 1)), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					xs, gs := x.h()[i*d:(i+1)*d], g.h()[i*d:(i+1)*d]
					m, r := mean[i], rstd[i]
					var swg, swgx float64 // sum w g, sum w g x^
					for j, gv := range gs {
						wg := float64(gv) * float64(at(weight, j, 1))
						swg += wg
						swgx += wg * (float64(xs[j]) - m) * r
					}
					swg /= float64(d)
					swgx /= float64(d)
					dst := gx.h()[i*d : (i+1)*d]
					for j, gv := range gs {
						xh := (float64(xs[j]) - m) * r
						dst[j] = float32(r * (float64(gv)*float64(at(weight, j, 1)) - swg - xh*swgx))
					}
				}
			})
		}
		needW, needB := needs(weight), needs(bias)
		if needW || needB {
			// Parallel over columns so that each sum runs over rows in a fixed order.
			if needW {
				gw = empty(dev, normalizedShape...)
			}
			if needB {
				gb = empty(dev, normalizedShape...)
			}
			dev.parallel(d, 256, func(lo, hi int) {
				sw := make([]float64, hi-lo)
				sb := make([]float64, hi-lo)
				for i := 0; i < rows; i++ {
					xs, gs := x.h()[i*d+lo:i*d+hi], g.h()[i*d+lo:i*d+hi]
					m, r := mean[i], rstd[i]
					for j, gv := range gs {
						sw[j] += float64(gv) * (float64(xs[j]) - m) * r
						sb[j] += float64(gv)
					}
				}
				for j := range sw {
					if needW {
						gw.h()[lo+j] = float32(sw[j])
					}
					if needB {
						gb.h()[lo+j] = float32(sb[j])
					}
				}
			})
		}
		return []*Tensor{gx, gw, gb}
	})
}
