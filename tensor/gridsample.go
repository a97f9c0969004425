package tensor

import (
	"fmt"
	"math"
)

// gridPoint is one sampling location of GridSample in pixel coordinates: the
// north-west corner (x0, y0) and the distances w = x - x0, n = y - y0 to it.
type gridPoint struct {
	x0, y0 int
	w, n   float32
}

// gridBlock is the number of points PyTorch's vectorised grid sampler handles at
// once (one AVX2 vector of float32); the gradient of x adds in that order.
const gridBlock = 8

// gridUnnormalize maps a normalised coordinate g in [-1, 1] to pixels on an axis of
// the given size, as PyTorch's CPU grid sampler does in float32:
//
//	align corners:  (g+1) * ((size-1)/2)   (-1 and 1 are the centres of the corner pixels)
//	otherwise:      (g+1) * (size/2) - 0.5 (-1 and 1 are the outer edges of the image)
//
// (the latter one fused multiply-add, as in PyTorch's FMA-contracted kernel).
// It returns the pixel coordinate and the factor d pixel / d g.
func gridUnnormalize(g float32, size int, alignCorners bool) (float32, float32) {
	if alignCorners {
		s := float32(size-1) / 2
		return (g + 1) * s, s
	}
	s := float32(size) / 2
	return fusedMulAdd32(g+1, s, -0.5), s
}

// locate computes the sampling point of pixel coordinates (x, y). Coordinates far
// outside the image (or NaN) are moved to a point whose four corners all lie
// outside, so that they sample zeros and get a zero gradient.
func locate(x, y float32, w, h int) gridPoint {
	xf, yf := float32(math.Floor(float64(x))), float32(math.Floor(float64(y)))
	if !(xf >= -2 && xf <= float32(w) && yf >= -2 && yf <= float32(h)) {
		return gridPoint{x0: -2, y0: -2}
	}
	return gridPoint{x0: int(xf), y0: int(yf), w: x - xf, n: y - yf}
}

// gridPoints computes the sampling points of grid (as GridSample does) and the
// factors d pixel / d grid.
func gridPoints(gs []float32, g GridGeometry) (pts []gridPoint, multX, multY float32) {
	_, multX = gridUnnormalize(0, g.W, g.AlignCorners)
	_, multY = gridUnnormalize(0, g.H, g.AlignCorners)
	pts = make([]gridPoint, g.N*g.P)
	for i := range pts {
		px, _ := gridUnnormalize(gs[2*i], g.W, g.AlignCorners)
		py, _ := gridUnnormalize(gs[2*i+1], g.H, g.AlignCorners)
		pts[i] = locate(px, py, g.W, g.H)
	}
	return pts, multX, multY
}

// gridAt returns pixel (xi, yi) of img (h x w), or 0 outside.
func gridAt(img []float32, xi, yi, w, h int) float32 {
	if xi < 0 || xi >= w || yi < 0 || yi >= h {
		return 0
	}
	return img[yi*w+xi]
}

// GridSample samples x [N, C, H, W] at the locations grid [N, Hg, Wg, 2] by bilinear
// interpolation with zero padding, giving [N, C, Hg, Wg], as
// torch.nn.functional.grid_sample(x, grid, mode='bilinear', padding_mode='zeros',
// align_corners=alignCorners). grid[n, i, j] = (gx, gy) holds normalised
// coordinates, gx along the width and gy along the height, -1..1 spanning the image
// (see gridUnnormalize). A corner outside the image contributes zero. Gradients flow
// to x and to grid. It panics on mismatched shapes.
func GridSample(x, grid *Tensor, alignCorners bool) *Tensor {
	if len(x.shape) != 4 || len(grid.shape) != 4 || grid.shape[3] != 2 || grid.shape[0] != x.shape[0] {
		panic(fmt.Sprintf("tensor: GridSample: input %v and grid %v (want [N, C, H, W] and [N, Hg, Wg, 2])", x.shape, grid.shape))
	}
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	hg, wg := grid.shape[1], grid.shape[2]
	p := hg * wg // points per image
	hw := h * w
	d := x.dev
	if d.kern != nil {
		return gridSampleDev(x, grid, GridGeometry{N: n, C: c, H: h, W: w, P: p, AlignCorners: alignCorners}, hg, wg)
	}

	// Sampling points, and d pixel / d grid per axis.
	pts, multX, multY := gridPoints(grid.h(), GridGeometry{N: n, C: c, H: h, W: w, P: p, AlignCorners: alignCorners})
	at := func(img []float32, xi, yi int) float32 { return gridAt(img, xi, yi, w, h) }

	out := empty(d, n, c, hg, wg)
	d.parallel(n*p, max(1, 2048/max(c, 1)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			b, q := i/p, i%p
			pt := pts[i]
			e, s := 1-pt.w, 1-pt.n
			nw, ne, sw, se := s*e, s*pt.w, pt.n*e, pt.n*pt.w
			for ch := 0; ch < c; ch++ {
				img := x.h()[(b*c+ch)*hw : (b*c+ch+1)*hw]
				// PyTorch's order of operations, with its fused multiply-adds.
				v := fusedMulAdd32(at(img, pt.x0+1, pt.y0), ne, at(img, pt.x0, pt.y0)*nw)
				v = fusedMulAdd32(at(img, pt.x0, pt.y0+1), sw, v)
				out.h()[(b*c+ch)*p+q] = fusedMulAdd32(at(img, pt.x0+1, pt.y0+1), se, v)
			}
		}
	})

	return record(out, "GridSample", []*Tensor{x, grid}, func(g *Tensor) []*Tensor {
		var gx, ggrid *Tensor
		if needs(x) {
			// The sample is linear in x with the corner weights, so its adjoint
			// scatters each output gradient back to the four corners:
			//   gx[y0+a, x0+b] += weight_ab * g   (corners inside the image only).
			gx = New(d, x.shape...)
			d.parallel(n*c, 1, func(lo, hi int) {
				for pl := lo; pl < hi; pl++ {
					b := pl / c
					img := gx.h()[pl*hw : (pl+1)*hw]
					gp := g.h()[pl*p : (pl+1)*p]
					add := func(xi, yi int, v float32) {
						if xi >= 0 && xi < w && yi >= 0 && yi < h {
							img[yi*w+xi] += v
						}
					}
					// PyTorch's vectorised kernel scatters blocks of gridBlock
					// points corner by corner; keep its order of additions. (The
					// float32 conversions keep each weight*g product rounded.)
					for q0 := 0; q0 < p; q0 += gridBlock {
						blk := pts[b*p+q0 : b*p+min(q0+gridBlock, p)]
						gb := gp[q0 : q0+len(blk)]
						for k, pt := range blk {
							add(pt.x0, pt.y0, float32((1-pt.n)*(1-pt.w)*gb[k]))
						}
						for k, pt := range blk {
							add(pt.x0+1, pt.y0, float32((1-pt.n)*pt.w*gb[k]))
						}
						for k, pt := range blk {
							add(pt.x0, pt.y0+1, float32(pt.n*(1-pt.w)*gb[k]))
						}
						for k, pt := range blk {
							add(pt.x0+1, pt.y0+1, float32(pt.n*pt.w*gb[k]))
						}
					}
				}
			})
		}
		if needs(grid) {
			// With w = px - x0 and n = py - y0 the distances to the north-west
			// corner (e = 1-w, s = 1-n), out = s e NW + s w NE + n e SW + n w SE, so
			//   d out / d px = s (NE - NW) + n (SE - SW),
			//   d out / d py = e (SW - NW) + w (SE - NE),
			// summed over channels with the output gradient, times d px / d gx and
			// d py / d gy from gridUnnormalize. Points outside get zero (locate).
			ggrid = New(d, grid.shape...)
			d.parallel(n*p, max(1, 2048/max(c, 1)), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					b, q := i/p, i%p
					pt := pts[i]
					e, s := 1-pt.w, 1-pt.n
					var dx, dy float32
					for ch := 0; ch < c; ch++ {
						img := x.h()[(b*c+ch)*hw : (b*c+ch+1)*hw]
						gv := g.h()[(b*c+ch)*p+q]
						vnw, vne := at(img, pt.x0, pt.y0), at(img, pt.x0+1, pt.y0)
						vsw, vse := at(img, pt.x0, pt.y0+1), at(img, pt.x0+1, pt.y0+1)
						dx = fusedMulAdd32(fusedMulAdd32(vse-vsw, pt.n, (vne-vnw)*s), gv, dx)
						dy = fusedMulAdd32(fusedMulAdd32(vse-vne, pt.w, (vsw-vnw)*e), gv, dy)
					}
					ggrid.h()[2*i] = dx * multX
					ggrid.h()[2*i+1] = dy * multY
				}
			})
		}
		return []*Tensor{gx, ggrid}
	})
}
