package tensor

import (
	"fmt"
	"math"
)

// planes views x [..., H, W] as planes of H x W and returns their count, H and W.
// It panics when x has fewer than 2 axes.
func planes(op string, x *Tensor) (p, h, w int) {
	r := len(x.shape)
	if r < 2 {
		panic(fmt.Sprintf("tensor: %s: input %v needs at least 2 axes [..., H, W]", op, x.shape))
	}
	h, w = x.shape[r-2], x.shape[r-1]
	return numel(x.shape[:r-2]), h, w
}

// withHW returns shape with its last two axes replaced by h and w.
func withHW(shape []int, h, w int) []int {
	s := cloneInts(shape)
	s[len(s)-2], s[len(s)-1] = h, w
	return s
}

// poolGeom holds the sizes of a 2D pooling over planes.
type poolGeom struct {
	p, h, w, ho, wo int
	k, s, pad       int
}

func newPoolGeom(op string, x *Tensor, kernel, stride, padding int) poolGeom {
	p, h, w := planes(op, x)
	if stride <= 0 {
		stride = kernel
	}
	if kernel <= 0 || padding < 0 || 2*padding > kernel {
		panic(fmt.Sprintf("tensor: %s: kernel %d, stride %d, padding %d for input %v (padding must be at most half the kernel)",
			op, kernel, stride, padding, x.shape))
	}
	if h+2*padding < kernel || w+2*padding < kernel {
		panic(fmt.Sprintf("tensor: %s: input %v too small for kernel %d with padding %d", op, x.shape, kernel, padding))
	}
	g := poolGeom{p: p, h: h, w: w, k: kernel, s: stride, pad: padding}
	g.ho = (h+2*padding-kernel)/stride + 1
	g.wo = (w+2*padding-kernel)/stride + 1
	return g
}

// window returns the input rows (or columns) [lo, hi) that output position o reads,
// clipped to the input of size n.
func (g *poolGeom) window(o, n int) (lo, hi int) {
	lo = o*g.s - g.pad
	return max(lo, 0), min(lo+g.k, n)
}

// AvgPool2D averages x [..., H, W] over kernel x kernel windows moved by stride
// (<= 0: kernel), with zero padding counted in the average, as
// torch.nn.functional.avg_pool2d with count_include_pad=True and ceil_mode=False.
// It panics when the padding exceeds half the kernel or the input is too small.
func AvgPool2D(x *Tensor, kernel, stride, padding int) *Tensor {
	g := newPoolGeom("AvgPool2D", x, kernel, stride, padding)
	if x.dev.kern != nil && kernel == stride && padding == 0 && g.h%kernel == 0 && g.w%kernel == 0 {
		// Non-overlapping windows (the UNet's downsampling): sums over two axes of a
		// view, on the device.
		k := kernel
		s := Sum(Reshape(x, g.p*g.ho, k, g.wo, k), false, 1, 3)
		return Reshape(Scale(s, float32(1/float64(k*k))), withHW(x.shape, g.ho, g.wo)...)
	}
	out := empty(x.dev, withHW(x.shape, g.ho, g.wo)...)
	div := float64(g.k * g.k)
	x.dev.parallel(g.p, 1, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := x.h()[pl*g.h*g.w : (pl+1)*g.h*g.w]
			dst := out.h()[pl*g.ho*g.wo : (pl+1)*g.ho*g.wo]
			for oy := 0; oy < g.ho; oy++ {
				y0, y1 := g.window(oy, g.h)
				for ox := 0; ox < g.wo; ox++ {
					x0, x1 := g.window(ox, g.w)
					var s float64
					for iy := y0; iy < y1; iy++ {
						for _, v := range src[iy*g.w+x0 : iy*g.w+x1] {
							s += float64(v)
						}
					}
					dst[oy*g.wo+ox] = float32(s / div)
				}
			}
		}
	})
	// y = sum_window x / k^2, so each input gets g / k^2 from every window holding it.
	return record(out, "AvgPool2D", []*Tensor{x}, func(gr *Tensor) []*Tensor {
		gx := New(x.dev, x.shape...)
		x.dev.parallel(g.p, 1, func(lo, hi int) {
			for pl := lo; pl < hi; pl++ {
				dst := gx.h()[pl*g.h*g.w : (pl+1)*g.h*g.w]
				src := gr.h()[pl*g.ho*g.wo : (pl+1)*g.ho*g.wo]
				for oy := 0; oy < g.ho; oy++ {
					y0, y1 := g.window(oy, g.h)
					for ox := 0; ox < g.wo; ox++ {
						x0, x1 := g.window(ox, g.w)
						v := float32(float64(src[oy*g.wo+ox]) / div)
						for iy := y0; iy < y1; iy++ {
							row := dst[iy*g.w+x0 : iy*g.w+x1]
							for i := range row {
								row[i] += v
							}
						}
					}
				}
			}
		})
		return []*Tensor{gx}
	})
}

// MaxPool2D takes the maximum of x [..., H, W] over kernel x kernel windows moved by
// stride (<= 0: kernel), padding with -Inf, as torch.nn.functional.max_pool2d with
// ceil_mode=False. A NaN in a window wins. The gradient goes to the first maximal
// element of each window in row-major scan order, as PyTorch. It panics when the
// padding exceeds half the kernel or the input is too small.
func MaxPool2D(x *Tensor, kernel, stride, padding int) *Tensor {
	g := newPoolGeom("MaxPool2D", x, kernel, stride, padding)
	if x.dev.kern != nil {
		return maxPoolDev(x, g)
	}
	out := empty(x.dev, withHW(x.shape, g.ho, g.wo)...)
	arg := make([]int32, out.Len()) // index within the plane
	x.dev.parallel(g.p, 1, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := x.h()[pl*g.h*g.w : (pl+1)*g.h*g.w]
			o := pl * g.ho * g.wo
			for oy := 0; oy < g.ho; oy++ {
				y0, y1 := g.window(oy, g.h)
				for ox := 0; ox < g.wo; ox++ {
					x0, x1 := g.window(ox, g.w)
					best, bi := float32(math.Inf(-1)), y0*g.w+x0
					for iy := y0; iy < y1; iy++ {
						for ix := x0; ix < x1; ix++ {
							if v := src[iy*g.w+ix]; v > best || v != v {
								best, bi = v, iy*g.w+ix
							}
						}
					}
					out.h()[o+oy*g.wo+ox] = best
					arg[o+oy*g.wo+ox] = int32(bi)
				}
			}
		}
	})
	// y = x[argmax]: the gradient of each output goes to its argmax (summed where
	// windows overlap).
	return record(out, "MaxPool2D", []*Tensor{x}, func(gr *Tensor) []*Tensor {
		gx := New(x.dev, x.shape...)
		x.dev.parallel(g.p, 1, func(lo, hi int) {
			for pl := lo; pl < hi; pl++ {
				dst := gx.h()[pl*g.h*g.w : (pl+1)*g.h*g.w]
				o := pl * g.ho * g.wo
				for i, v := range gr.h()[o : o+g.ho*g.wo] {
					dst[arg[o+i]] += v
				}
			}
		})
		return []*Tensor{gx}
	})
}

// UpsampleNearest2D repeats every pixel of x [..., H, W] scale x scale times, giving
// [..., H*scale, W*scale], as torch.nn.functional.interpolate(x, scale_factor=scale,
// mode="nearest") for an integer scale. It panics when scale < 1.
func UpsampleNearest2D(x *Tensor, scale int) *Tensor {
	p, h, w := planes("UpsampleNearest2D", x)
	if scale < 1 {
		panic(fmt.Sprintf("tensor: UpsampleNearest2D: scale %d for input %v", scale, x.shape))
	}
	ho, wo := h*scale, w*scale
	out := empty(x.dev, withHW(x.shape, ho, wo)...)
	if k := x.dev.kern; k != nil {
		return upsampleDev(x, out, p, h, w, scale)
	}
	x.dev.parallel(p*h, max(1, 4096/max(wo*scale, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = plane*h + input row
			src := x.h()[r*w : (r+1)*w]
			first := out.h()[r*scale*wo : (r*scale+1)*wo]
			for ix, v := range src {
				seg := first[ix*scale : (ix+1)*scale]
				for i := range seg {
					seg[i] = v
				}
			}
			for k := 1; k < scale; k++ {
				copy(out.h()[(r*scale+k)*wo:(r*scale+k+1)*wo], first)
			}
		}
	})
	// y[oy, ox] = x[oy/s, ox/s]: dx[iy, ix] = sum of g over its s x s block.
	return record(out, "UpsampleNearest2D", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := empty(x.dev, x.shape...)
		x.dev.parallel(p*h, max(1, 4096/max(wo*scale, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				dst := gx.h()[r*w : (r+1)*w]
				for ix := range dst {
					var s float64
					for k := 0; k < scale; k++ {
						for _, v := range g.h()[(r*scale+k)*wo+ix*scale : (r*scale+k)*wo+(ix+1)*scale] {
							s += float64(v)
						}
					}
					dst[ix] = float32(s)
				}
			}
		})
		return []*Tensor{gx}
	})
}

// PadMode says how Pad2D fills the border.
type PadMode int

const (
	// PadZeros fills the border with zeros.
	PadZeros PadMode = iota
	// PadReflect mirrors the input at its edges without repeating the edge pixel
	// (PyTorch's "reflect": 3 2 | 1 2 3 4 | 3 2).
	PadReflect
)

// String names the mode as PyTorch does.
func (m PadMode) String() string {
	switch m {
	case PadZeros:
		return "zeros"
	case PadReflect:
		return "reflect"
	}
	return fmt.Sprintf("PadMode(%d)", int(m))
}

// reflectIndex maps a padded coordinate i (may be negative or >= n) into [0, n) by
// mirroring without repeating the edge: -1 -> 1, n -> n-2.
func reflectIndex(i, n int) int {
	if i < 0 {
		return -i
	}
	if i >= n {
		return 2*(n-1) - i
	}
	return i
}

// Pad2D pads the last two axes of x [..., H, W] by top and bottom rows and left and
// right columns, as torch.nn.functional.pad(x, (left, right, top, bottom), mode).
// It panics on a negative padding, an unknown mode, or, with PadReflect, a padding
// not smaller than the size of its axis.
func Pad2D(x *Tensor, top, bottom, left, right int, mode PadMode) *Tensor {
	p, h, w := planes("Pad2D", x)
	if top < 0 || bottom < 0 || left < 0 || right < 0 || (mode != PadZeros && mode != PadReflect) ||
		(mode == PadReflect && (top >= h || bottom >= h || left >= w || right >= w)) {
		panic(fmt.Sprintf("tensor: Pad2D: padding (top %d, bottom %d, left %d, right %d) in mode %v for input %v",
			top, bottom, left, right, mode, x.shape))
	}
	ho, wo := h+top+bottom, w+left+right
	out := empty(x.dev, withHW(x.shape, ho, wo)...)
	x.dev.parallel(p*ho, max(1, 4096/max(wo, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = plane*ho + output row
			pl, oy := r/ho, r%ho
			dst := out.h()[r*wo : (r+1)*wo]
			iy := oy - top
			if mode == PadZeros {
				if iy < 0 || iy >= h {
					clear(dst)
					continue
				}
				clear(dst[:left])
				copy(dst[left:left+w], x.h()[(pl*h+iy)*w:(pl*h+iy+1)*w])
				clear(dst[left+w:])
				continue
			}
			src := x.h()[(pl*h+reflectIndex(iy, h))*w:][:w]
			copy(dst[left:left+w], src)
			for i := 0; i < left; i++ {
				dst[i] = src[left-i]
			}
			for i := 0; i < right; i++ {
				dst[left+w+i] = src[w-2-i]
			}
		}
	})
	// y = x[map(i)]: every input pixel gets the sum of g over the outputs that copy it
	// (for zero padding, just the interior).
	return record(out, "Pad2D", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := empty(x.dev, x.shape...)
		x.dev.parallel(p, 1, func(lo, hi int) {
			for pl := lo; pl < hi; pl++ {
				dst := gx.h()[pl*h*w : (pl+1)*h*w]
				src := g.h()[pl*ho*wo : (pl+1)*ho*wo]
				for iy := 0; iy < h; iy++ {
					copy(dst[iy*w:(iy+1)*w], src[(iy+top)*wo+left:])
				}
				if mode == PadZeros {
					continue
				}
				for oy := 0; oy < ho; oy++ {
					iy := reflectIndex(oy-top, h)
					row := src[oy*wo : (oy+1)*wo]
					d := dst[iy*w : (iy+1)*w]
					if oy >= top && oy < top+h {
						// Interior rows: only the left and right borders remain.
						for i := 0; i < left; i++ {
							d[left-i] += row[i]
						}
						for i := 0; i < right; i++ {
							d[w-2-i] += row[left+w+i]
						}
						continue
					}
					for ox := 0; ox < wo; ox++ {
						d[reflectIndex(ox-left, w)] += row[ox]
					}
				}
			}
		})
		return []*Tensor{gx}
	})
}
