package tensor

import (
	"fmt"
	"math"
)

// gaussianKernel1D returns the taps of the one-dimensional Gaussian of GaussianBlur:
// halfsize = max(round(4*sigma), 1) with Python's round (halves to even), and
//
//	k[i] = exp(-t^2 / (2 sigma^2)),  t = i - halfsize,  i = 0..2*halfsize,
//
// computed in float64 as scipy.signal.gaussian(2*halfsize+1, std=sigma) does and
// rounded to float32; not normalised. It panics unless sigma is positive and finite.
func gaussianKernel1D(sigma float64) []float32 {
	if !(sigma > 0) || math.IsInf(sigma, 0) {
		panic(fmt.Sprintf("tensor: GaussianBlur: sigma %v must be positive", sigma))
	}
	half := max(int(math.RoundToEven(sigma*4)), 1)
	m := 2*half + 1
	sig2 := 2 * sigma * sigma
	k := make([]float32, m)
	for i := range k {
		t := float64(i) - float64(m-1)/2
		k[i] = float32(math.Exp(-(t * t) / sig2))
	}
	return k
}

// blurTaps lists, for every output index o of an axis of size n, the input index
// read by tap t: idx[o*len(k)+t] = reflectIndex(o + t - half, n).
func blurTaps(n, half int) []int {
	m := 2*half + 1
	idx := make([]int, n*m)
	for o := 0; o < n; o++ {
		for t := 0; t < m; t++ {
			idx[o*m+t] = reflectIndex(o+t-half, n)
		}
	}
	return idx
}

// GaussianBlur blurs every channel of x [N, C, H, W] with a Gaussian of standard
// deviation sigma (in pixels), as mei.legacy.ops.GaussianBlur(sigma) (truncate 4,
// pad_mode 'reflect', no decay): x is reflect-padded by halfsize on every side,
// correlated with the kernel k of gaussianKernel1D along H, then along W, and the
// result is divided by Z = float32(sum k) * float32(sum k):
//
//	y[h, w] = (sum_j k[j] (sum_i k[i] x[r(h+i-half), r(w+j-half)])) / Z
//
// with r the reflection. Sums are float32 in tap order; sum k is accumulated in
// float64 and rounded once (PyTorch's vectorised sum may differ from it in the last
// bit). It panics unless x is 4-D with H and W larger than halfsize (PyTorch's limit
// for reflect padding) and sigma is positive.
func GaussianBlur(x *Tensor, sigma float64) *Tensor {
	k := gaussianKernel1D(sigma)
	m := len(k)
	half := m / 2
	if len(x.shape) != 4 || x.shape[2] <= half || x.shape[3] <= half {
		panic(fmt.Sprintf("tensor: GaussianBlur: input %v for sigma %v (want [N, C, H, W] with H, W > %d)", x.shape, sigma, half))
	}
	var s float64
	for _, v := range k {
		s += float64(v)
	}
	z := float32(s) * float32(s)
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	hw := h * w
	ih, iw := blurTaps(h, half), blurTaps(w, half)
	d := x.dev

	out := empty(d, x.shape...)
	d.parallel(n*c, 1, func(lo, hi int) {
		tmp := d.scratch(hw)
		defer d.release(tmp)
		for p := lo; p < hi; p++ {
			src := x.h()[p*hw : (p+1)*hw]
			dst := out.h()[p*hw : (p+1)*hw]
			// Along H: tmp[o, :] = sum_t k[t] src[ih(o, t), :].
			for o := 0; o < h; o++ {
				row := tmp[o*w : (o+1)*w]
				clear(row)
				for t, kv := range k {
					in := src[ih[o*m+t]*w:][:w]
					for j := range row {
						row[j] += kv * in[j]
					}
				}
			}
			// Along W, then divide by Z.
			for r := 0; r < h; r++ {
				in := tmp[r*w : (r+1)*w]
				row := dst[r*w : (r+1)*w]
				for o := range row {
					taps := iw[o*m : (o+1)*m]
					var acc float32
					for t, kv := range k {
						acc += kv * in[taps[t]]
					}
					row[o] = acc / z
				}
			}
		}
	})

	return record(out, "GaussianBlur", []*Tensor{x}, func(g *Tensor) []*Tensor {
		// The blur is linear, y = (1/Z) B_W B_H R x with R the reflect padding and
		// B the correlations, so dL/dx = (1/Z) R^T B_H^T B_W^T g: each pass
		// scatters g back along its taps, gin[r(o+t-half)] += k[t] g[o], which
		// also folds the reflected border back onto the pixels it copied.
		gx := New(d, x.shape...)
		d.parallel(n*c, 1, func(lo, hi int) {
			tmp := d.scratch(hw)
			defer d.release(tmp)
			for p := lo; p < hi; p++ {
				gp := g.h()[p*hw : (p+1)*hw]
				gi := gx.h()[p*hw : (p+1)*hw]
				clear(tmp)
				// Adjoint of the W pass (with the 1/Z).
				for r := 0; r < h; r++ {
					grow := gp[r*w : (r+1)*w]
					trow := tmp[r*w : (r+1)*w]
					for o, gv := range grow {
						gv /= z
						taps := iw[o*m : (o+1)*m]
						for t, kv := range k {
							trow[taps[t]] += kv * gv
						}
					}
				}
				// Adjoint of the H pass.
				for o := 0; o < h; o++ {
					trow := tmp[o*w : (o+1)*w]
					for t, kv := range k {
						dst := gi[ih[o*m+t]*w:][:w]
						for j := range dst {
							dst[j] += kv * trow[j]
						}
					}
				}
			}
		})
		return []*Tensor{gx}
	})
}

// ChangeNorm rescales every sample of x [N, ...] to the Euclidean norm norm, as
// mei.legacy.ops.ChangeNorm(norm): y[b] = x[b] * (norm / ||x[b]||_2), the norm taken
// over all non-batch axes (accumulated in float64, then float32 as in PyTorch). A
// sample of norm zero gives non-finite values, as in PyTorch. It panics on a 0-D x.
func ChangeNorm(x *Tensor, norm float32) *Tensor {
	if len(x.shape) == 0 {
		panic(fmt.Sprintf("tensor: ChangeNorm: input %v needs a batch axis", x.shape))
	}
	nb := x.shape[0]
	per := 0
	if nb > 0 {
		per = x.Len() / nb
	}
	d := x.dev
	l2 := make([]float32, nb)    // ||x[b]||
	scale := make([]float32, nb) // norm / ||x[b]||
	for b := range nb {
		var s float64
		for _, v := range x.h()[b*per : (b+1)*per] {
			s += float64(v) * float64(v)
		}
		l2[b] = float32(math.Sqrt(s))
		scale[b] = norm / l2[b]
	}
	out := empty(d, x.shape...)
	for b := range nb {
		sb := scale[b]
		o, in := out.h()[b*per:(b+1)*per], x.h()[b*per:(b+1)*per]
		for i, v := range in {
			o[i] = v * sb
		}
	}
	return record(out, "ChangeNorm", []*Tensor{x}, func(g *Tensor) []*Tensor {
		// y = s x with s = c / ||x||, and d||x||/dx = x / ||x||, so
		//   dL/dx = s g + x (d s/d x . g) = s (g - x <g, x> / ||x||^2),
		// per sample b.
		gx := empty(d, x.shape...)
		for b := range nb {
			in, gb, o := x.h()[b*per:(b+1)*per], g.h()[b*per:(b+1)*per], gx.h()[b*per:(b+1)*per]
			var dot float64
			for i, v := range in {
				dot += float64(gb[i]) * float64(v)
			}
			n := float64(l2[b])
			a := float32(dot / (n * n))
			sb := scale[b]
			for i, v := range in {
				o[i] = sb * (gb[i] - v*a)
			}
		}
		return []*Tensor{gx}
	})
}
