package tensor

import (
	"fmt"
	"math"
)

// linearTaps holds, for every output index of one axis, the two input indices and
// weights of linear interpolation: out[o] = w0[o]*in[i0[o]] + w1[o]*in[i1[o]].
type linearTaps struct {
	i0, i1 []int
	w0, w1 []float32
}

// resizeTaps computes the taps of one axis of PyTorch 1.13's upsample_bilinear2d on
// CPU (area_pixel_compute_scale and compute_source_index_and_lambda), to the bit. The
// scale is float32 but the source index is computed in acc_type<float> = double:
//
//	scale = float32(in)/float32(out)                          (align_corners false)
//	scale = float32(in-1)/float32(out-1), 0 when out == 1     (align_corners true)
//	src   = float64(scale)*(o+0.5) - 0.5, clamped below at 0  (false, in float64)
//	src   = float64(scale)*o                                  (true, in float64)
//	i0 = floor(src), i1 = min(i0+1, in-1),
//	w1 = float32(src - i0), w0 = 1 - w1 (in float32).
//
// When in == out the taps are the identity, as in PyTorch.
func resizeTaps(in, out int, alignCorners bool) linearTaps {
	t := linearTaps{i0: make([]int, out), i1: make([]int, out), w0: make([]float32, out), w1: make([]float32, out)}
	var scale float32
	switch {
	case alignCorners && out > 1:
		scale = float32(in-1) / float32(out-1)
	case !alignCorners:
		scale = float32(in) / float32(out)
	}
	for o := 0; o < out; o++ {
		if in == out {
			t.i0[o], t.i1[o], t.w0[o], t.w1[o] = o, o, 1, 0
			continue
		}
		var src float64
		if alignCorners {
			src = float64(scale) * float64(o)
		} else {
			src = max(float64(scale)*(float64(o)+0.5)-0.5, 0)
		}
		i0 := int(src) // src >= 0: truncation is floor
		i1 := i0
		if i0 < in-1 {
			i1 = i0 + 1
		}
		w1 := float32(min(max(src-float64(i0), 0), 1))
		t.i0[o], t.i1[o], t.w1[o], t.w0[o] = i0, i1, w1, 1-w1
	}
	return t
}

// fusedMulAdd32 returns a*b + c rounded once to float32, as a float32 FMA
// instruction does (PyTorch's kernels are compiled with contraction into FMA).
// a*b is exact in float64, and the float64 sum s = a*b + c rounds correctly to
// float32 unless s lies exactly halfway between two float32 values while the sum
// was inexact; fusedMulAdd32Tie handles that rare case.
func fusedMulAdd32(a, b, c float32) float32 {
	s := float64(a)*float64(b) + float64(c)
	// A float32 midpoint has at most 25 significant bits: the low 28 bits of its
	// float64 significand are zero.
	if math.Float64bits(s)<<36 != 0 {
		return float32(s)
	}
	return fusedMulAdd32Tie(a, b, c)
}

// fusedMulAdd32Tie is fusedMulAdd32 when s = float64(a*b + c) may be a float32
// midpoint: if it is one and the sum was inexact, s is nudged one float64 step
// towards the exact sum (its error recovered with TwoSum) before rounding.
func fusedMulAdd32Tie(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	r := float32(s)
	if float64(r) == s {
		return r
	}
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if (float64(r)+float64(other))/2 != s {
		return r
	}
	z := s - p
	e := (p - (s - z)) + (float64(c) - z) // exact error of s (TwoSum)
	if e == 0 {
		return r
	}
	return float32(math.Nextafter(s, math.Copysign(math.Inf(1), e)))
}

// ResizeBilinear resamples x [N, C, H, W] to [N, C, outH, outW] by bilinear
// interpolation, as torch.nn.functional.interpolate(x, size=(outH, outW),
// mode='bilinear', align_corners=alignCorners, antialias=False) in PyTorch 1.13 on
// CPU, to the bit in both passes. With the taps of resizeTaps (rows h0, h1 with
// weights lh0, lh1; columns w0, w1 with lw0, lw1), each output is
//
//	t0 = fma(x[h0,w0], lw0, x[h0,w1]*lw1)
//	t1 = fma(x[h1,w0], lw0, x[h1,w1]*lw1)
//	y  = fma(t0, lh0, t1*lh1)
//
// in float32 (PyTorch's generic kernel, compiled with FMA contraction), except when
// C == 1 or H == W == 1, where PyTorch's tensor is also channels-last contiguous and
// its channels-last kernel sums the four products x*float32(lh*lw) in float64 and
// rounds once. Downsampling does no antialiasing. It panics unless x is 4-D and
// non-empty and outH, outW are positive.
func ResizeBilinear(x *Tensor, outH, outW int, alignCorners bool) *Tensor {
	if len(x.shape) != 4 || outH <= 0 || outW <= 0 {
		panic(fmt.Sprintf("tensor: ResizeBilinear: input %v to %dx%d (want [N, C, H, W] and positive sizes)", x.shape, outH, outW))
	}
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	if h == 0 || w == 0 {
		panic(fmt.Sprintf("tensor: ResizeBilinear: empty input %v", x.shape))
	}
	th := resizeTaps(h, outH, alignCorners)
	tw := resizeTaps(w, outW, alignCorners)
	d := x.dev
	out := empty(d, n, c, outH, outW)
	hw, ohw := h*w, outH*outW
	channelsLast := c == 1 || (h == 1 && w == 1)
	d.parallel(n*c, max(1, 4096/max(ohw, 1)), func(lo, hi int) {
		for p := lo; p < hi; p++ {
			src := x.h()[p*hw : (p+1)*hw]
			dst := out.h()[p*ohw : (p+1)*ohw]
			for oy := 0; oy < outH; oy++ {
				r0 := src[th.i0[oy]*w : (th.i0[oy]+1)*w]
				r1 := src[th.i1[oy]*w : (th.i1[oy]+1)*w]
				lh0, lh1 := th.w0[oy], th.w1[oy]
				row := dst[oy*outW : (oy+1)*outW]
				if channelsLast {
					for ox := range row {
						a, b := tw.i0[ox], tw.i1[ox]
						lw0, lw1 := tw.w0[ox], tw.w1[ox]
						w00, w01 := float32(lh0*lw0), float32(lh0*lw1)
						w10, w11 := float32(lh1*lw0), float32(lh1*lw1)
						// Each product of two float32 values is exact in float64.
						row[ox] = float32(float64(r0[a])*float64(w00) + float64(r0[b])*float64(w01) +
							float64(r1[a])*float64(w10) + float64(r1[b])*float64(w11))
					}
					continue
				}
				for ox := range row {
					a, b := tw.i0[ox], tw.i1[ox]
					lw0, lw1 := tw.w0[ox], tw.w1[ox]
					t0 := fusedMulAdd32(r0[a], lw0, r0[b]*lw1)
					t1 := fusedMulAdd32(r1[a], lw0, r1[b]*lw1)
					row[ox] = fusedMulAdd32(t0, lh0, t1*lh1)
				}
			}
		}
	})
	return record(out, "ResizeBilinear", []*Tensor{x}, func(g *Tensor) []*Tensor {
		// The resize is linear, y = A x with A[o, i] the product of the two axes'
		// weights, so dL/dx = A^T g: every output's gradient is scattered back to
		// its four source pixels with the same weights,
		//   gx[h_a, w_b] += (lh_a * lw_b) * g[oy, ox],  a, b in {0, 1},
		// in output order within a plane, each update one float32 FMA, as
		// PyTorch's backward kernel does (for every memory format).
		gx := New(d, x.shape...)
		d.parallel(n*c, max(1, 4096/max(ohw, 1)), func(lo, hi int) {
			for p := lo; p < hi; p++ {
				gi := gx.h()[p*hw : (p+1)*hw]
				gy := g.h()[p*ohw : (p+1)*ohw]
				for oy := 0; oy < outH; oy++ {
					r0 := gi[th.i0[oy]*w : (th.i0[oy]+1)*w]
					r1 := gi[th.i1[oy]*w : (th.i1[oy]+1)*w]
					lh0, lh1 := th.w0[oy], th.w1[oy]
					for ox, v := range gy[oy*outW : (oy+1)*outW] {
						a, b := tw.i0[ox], tw.i1[ox]
						lw0, lw1 := tw.w0[ox], tw.w1[ox]
						r0[a] = fusedMulAdd32(float32(lh0*lw0), v, r0[a])
						r0[b] = fusedMulAdd32(float32(lh0*lw1), v, r0[b])
						r1[a] = fusedMulAdd32(float32(lh1*lw0), v, r1[a])
						r1[b] = fusedMulAdd32(float32(lh1*lw1), v, r1[b])
					}
				}
			}
		})
		return []*Tensor{gx}
	})
}
