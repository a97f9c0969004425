package tensor

import (
	"fmt"
	"sort"
	"sync"
)

// AttentionPool is the attention readout's pooling (one head), fused: for queries q
// [N, E], keys and values k, v [B, E, S] and features f [N, E],
//
//	weights[b, n, s] = softmax over s of  sum_e q[n, e] k[b, e, s]
//	out[b, n]        = sum_e f[n, e] sum_s weights[b, n, s] v[b, e, s]
//
// giving out [B, N] and the attention weights [B, N, S] (a constant without history,
// which the backward pass reads: do not modify it). Any logit scale or temperature belongs in q. The softmax subtracts each
// row's maximum and exponentiates in float32 as PyTorch does, and sums in float64.
// Gradients flow to q, k, v and f; the backward pass skips neurons whose output
// gradient is zero for an image (their contribution is exactly zero), so the
// gradient of a few neurons costs a few rows. It panics on mismatched shapes.
func AttentionPool(q, k, v, f *Tensor) (out, weights *Tensor) {
	if len(q.shape) != 2 || len(k.shape) != 3 || !sameShape(k.shape, v.shape) || !sameShape(q.shape, f.shape) || q.shape[1] != k.shape[1] {
		panic(fmt.Sprintf("tensor: AttentionPool: q %v, k %v, v %v, f %v (want [N, E], [B, E, S], [B, E, S], [N, E])",
			q.shape, k.shape, v.shape, f.shape))
	}
	nb, e, s := k.shape[0], k.shape[1], k.shape[2]
	n := q.shape[0]
	d := k.dev
	if d.kern != nil {
		return attentionPoolDev(q, k, v, f)
	}
	att := empty(d, nb, n, s)
	y := empty(d, nb, n, e) // pooled values, kept for the backward pass
	out = empty(d, nb, n)
	d.perItem(nb, func(b int, serial bool) {
		a := att.h()[b*n*s : (b+1)*n*s]
		kb, vb := k.h()[b*e*s:(b+1)*e*s], v.h()[b*e*s:(b+1)*e*s]
		yb := y.h()[b*n*e : (b+1)*n*e]
		// logits [N, S] = q [N, E] k_b [E, S]; softmax rows in place.
		d.gemmInto(serial, false, false, n, s, e, 1, q.h(), kb, 0, a)
		d.rows(serial, n, max(1, 16384/max(s, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				softmaxRowFast(a[r*s : (r+1)*s])
			}
		})
		// y_b [N, E] = weights [N, S] v_b^T; out[b, n] = f[n] . y_b[n].
		d.gemmInto(serial, false, true, n, e, s, 1, a, vb, 0, yb)
		for r := 0; r < n; r++ {
			out.h()[b*n+r] = dot32(f.h()[r*e:(r+1)*e], yb[r*e:(r+1)*e])
		}
	})
	weights = att
	// With A = weights[b], Y = y_b and g = the output gradient of image b:
	//   dY[n, e] = g[n] f[n, e],           df[n, e] = sum_b g[b, n] Y[n, e],
	//   dV = dY^T A,                        dA = dY V,
	//   dL[n, s] = A[n, s] (dA[n, s] - sum_s' A[n, s'] dA[n, s'])
	//            = A[n, s] (dA[n, s] - dY[n] . Y[n]),
	//   dK = q^T dL,                        dq = sum_b dL K^T.
	// Rows with g[n] = 0 have dY = dA = dL = 0 and are left out.
	out = record(out, "AttentionPool", []*Tensor{q, k, v, f}, func(g *Tensor) []*Tensor {
		var gq, gk, gv, gf *Tensor
		needQ, needK, needV := needs(q), needs(k), needs(v)
		if needK {
			gk = New(d, k.shape...)
		}
		if needV {
			gv = New(d, v.shape...)
		}
		var mu sync.Mutex
		partQ := map[int][]float32{} // per first image of a worker's chunk
		if needQ || needK || needV {
			d.perItemChunks(nb, func(lo, hi int, serial bool) {
				var dq []float32
				if needQ {
					dq = make([]float32, n*e)
				}
				for b := lo; b < hi; b++ {
					gb := g.h()[b*n : (b+1)*n]
					var idx []int
					for r, gr := range gb {
						if gr != 0 {
							idx = append(idx, r)
						}
					}
					m := len(idx)
					if m == 0 {
						continue
					}
					a := att.h()[b*n*s : (b+1)*n*s]
					kb, vb := k.h()[b*e*s:(b+1)*e*s], v.h()[b*e*s:(b+1)*e*s]
					yb := y.h()[b*n*e : (b+1)*n*e]
					// Gather the rows that matter (all of them when m == n).
					am, qm := a, q.h()
					if m < n {
						am, qm = make([]float32, m*s), make([]float32, m*e)
						for i, r := range idx {
							copy(am[i*s:(i+1)*s], a[r*s:(r+1)*s])
							copy(qm[i*e:(i+1)*e], q.h()[r*e:(r+1)*e])
						}
					}
					dy := make([]float32, m*e)
					rowdot := make([]float64, m)
					for i, r := range idx {
						fr, yr := f.h()[r*e:(r+1)*e], yb[r*e:(r+1)*e]
						var acc float64
						for j := range fr {
							dy[i*e+j] = gb[r] * fr[j]
							acc += float64(dy[i*e+j]) * float64(yr[j])
						}
						rowdot[i] = acc
					}
					if needV {
						d.gemmInto(serial, true, false, e, s, m, 1, dy, am, 0, gv.h()[b*e*s:(b+1)*e*s])
					}
					if !needK && !needQ {
						continue
					}
					dl := d.scratch(m * s)
					d.gemmInto(serial, false, false, m, s, e, 1, dy, vb, 0, dl[:m*s])
					d.rows(serial, m, max(1, 16384/max(s, 1)), func(rlo, rhi int) {
						for i := rlo; i < rhi; i++ {
							ar, dr := am[i*s:(i+1)*s], dl[i*s:(i+1)*s]
							c := float32(rowdot[i])
							for j := range dr {
								dr[j] = ar[j] * (dr[j] - c)
							}
						}
					})
					if needK {
						d.gemmInto(serial, true, false, e, s, m, 1, qm, dl[:m*s], 0, gk.h()[b*e*s:(b+1)*e*s])
					}
					if needQ {
						dqm := make([]float32, m*e)
						d.gemmInto(serial, false, true, m, e, s, 1, dl[:m*s], kb, 0, dqm)
						for i, r := range idx {
							addInto(dq[r*e:(r+1)*e], dqm[i*e:(i+1)*e])
						}
					}
					d.release(dl)
				}
				if needQ {
					mu.Lock()
					partQ[lo] = dq
					mu.Unlock()
				}
			})
		}
		if needQ {
			gq = New(d, q.shape...)
			los := make([]int, 0, len(partQ))
			for lo := range partQ {
				los = append(los, lo)
			}
			sort.Ints(los) // a fixed order of summation
			for _, lo := range los {
				addInto(gq.h(), partQ[lo])
			}
		}
		if needs(f) {
			gf = New(d, f.shape...)
			for r := 0; r < n; r++ {
				dst := gf.h()[r*e : (r+1)*e]
				acc := make([]float64, e)
				for b := 0; b < nb; b++ {
					gr := float64(g.h()[b*n+r])
					if gr == 0 {
						continue
					}
					yr := y.h()[(b*n+r)*e : (b*n+r+1)*e]
					for j, yv := range yr {
						acc[j] += gr * float64(yv)
					}
				}
				for j := range dst {
					dst[j] = float32(acc[j])
				}
			}
		}
		return []*Tensor{gq, gk, gv, gf}
	})
	return out, weights
}

// softmaxRowFast replaces the row x by its softmax as PyTorch computes it: x - max
// in float32, the exponentials with expSlice (SLEEF's expf on AVX2), their sum in
// float64. NaNs and infinities propagate as in PyTorch.
func softmaxRowFast(x []float32) {
	m := x[0]
	for _, v := range x[1:] {
		if v > m || v != v {
			m = v
		}
	}
	for i := range x {
		x[i] -= m
	}
	expSlice(x, x)
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(x); i += 2 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
	}
	if i < len(x) {
		s0 += float64(x[i])
	}
	inv := float32(1 / (s0 + s1))
	for j := range x {
		x[j] *= inv
	}
}

// dot32 returns sum a[i]*b[i], accumulated in float64.
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(a); i += 2 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
	}
	if i < len(a) {
		s0 += float64(a[i]) * float64(b[i])
	}
	return float32(s0 + s1)
}

// perItem runs f for items [0, count): in parallel with serial = true (each call
// must then use the serial GEMM and no further parallelism) when there are enough
// items to keep every thread busy, else one after the other with serial = false.
func (d *Device) perItem(count int, f func(i int, serial bool)) {
	d.perItemChunks(count, func(lo, hi int, serial bool) {
		for i := lo; i < hi; i++ {
			f(i, serial)
		}
	})
}

// perItemChunks is perItem handing each worker its contiguous chunk [lo, hi).
func (d *Device) perItemChunks(count int, f func(lo, hi int, serial bool)) {
	if count >= d.threads && d.threads > 1 {
		d.parallel(count, 1, func(lo, hi int) { f(lo, hi, true) })
		return
	}
	f(0, count, false)
}

// rows runs f over [0, n) in chunks of at least grain, on the calling goroutine when
// serial, else split over the device's threads.
func (d *Device) rows(serial bool, n, grain int, f func(lo, hi int)) {
	if serial {
		f(0, n)
		return
	}
	d.parallel(n, grain, f)
}
