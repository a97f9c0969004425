package tensor

import "fmt"

// ConvOpts are the settings of a 2D convolution. Zero values mean stride 1, no
// padding, dilation 1 and one group; every setting applies to both spatial axes.
type ConvOpts struct {
	Stride, Padding, Dilation, Groups int
}

func (o ConvOpts) norm() ConvOpts {
	if o.Stride == 0 {
		o.Stride = 1
	}
	if o.Dilation == 0 {
		o.Dilation = 1
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	return o
}

// convGeom holds the sizes of one convolution.
type convGeom struct {
	n, cin, h, w         int
	cout, kh, kw         int
	ho, wo               int
	s, p, d, g           int
	cinG, coutG, kdim    int // channels per group, rows of the column matrix per group
	hw, howo             int
	pointwise, depthwise bool
	oy0                  int // first output row, for a geometry restricted to a band of rows
}

func newConvGeom(x, w *Tensor, o ConvOpts) convGeom {
	if len(x.shape) != 4 || len(w.shape) != 4 {
		panic(fmt.Sprintf("tensor: Conv2D: input %v and weight %v must be 4-D", x.shape, w.shape))
	}
	c := convGeom{n: x.shape[0], cin: x.shape[1], h: x.shape[2], w: x.shape[3],
		cout: w.shape[0], kh: w.shape[2], kw: w.shape[3], s: o.Stride, p: o.Padding, d: o.Dilation, g: o.Groups}
	if c.cin%c.g != 0 || c.cout%c.g != 0 || w.shape[1] != c.cin/c.g {
		panic(fmt.Sprintf("tensor: Conv2D: input %v, weight %v and %d groups do not match", x.shape, w.shape, c.g))
	}
	c.ho = (c.h+2*c.p-c.d*(c.kh-1)-1)/c.s + 1
	c.wo = (c.w+2*c.p-c.d*(c.kw-1)-1)/c.s + 1
	if c.ho <= 0 || c.wo <= 0 {
		panic(fmt.Sprintf("tensor: Conv2D: input %v too small for kernel %v with %+v", x.shape, w.shape, o))
	}
	c.cinG, c.coutG = c.cin/c.g, c.cout/c.g
	c.kdim = c.cinG * c.kh * c.kw
	c.hw, c.howo = c.h*c.w, c.ho*c.wo
	c.pointwise = c.kh == 1 && c.kw == 1 && c.s == 1 && c.p == 0
	c.depthwise = c.g == c.cin && c.cinG == 1 && c.coutG == 1 && c.g > 1
	return c
}

// im2col writes the column matrix of channels [c0, c0+cinG) of one image x [cin, h, w]
// into cols [kdim, howo].
func (c *convGeom) im2col(x []float32, c0 int, cols []float32) {
	for ci := 0; ci < c.cinG; ci++ {
		src := x[(c0+ci)*c.hw : (c0+ci+1)*c.hw]
		for ky := 0; ky < c.kh; ky++ {
			for kx := 0; kx < c.kw; kx++ {
				row := cols[((ci*c.kh+ky)*c.kw+kx)*c.howo:][:c.howo]
				c.gatherRow(src, ky, kx, row)
			}
		}
	}
}

// gatherRow fills one row of the column matrix: the input seen by tap (ky, kx) at
// every output position.
func (c *convGeom) gatherRow(src []float32, ky, kx int, row []float32) {
	for oy := 0; oy < c.ho; oy++ {
		iy := (oy+c.oy0)*c.s - c.p + ky*c.d
		dst := row[oy*c.wo : (oy+1)*c.wo]
		if iy < 0 || iy >= c.h {
			clear(dst)
			continue
		}
		line := src[iy*c.w : (iy+1)*c.w]
		x0 := -c.p + kx*c.d
		if c.s == 1 {
			// Output ox reads input ox + x0: copy the valid run, zero the rest.
			lo := max(0, -x0)
			hi := min(c.wo, c.w-x0)
			if hi <= lo {
				clear(dst)
				continue
			}
			clear(dst[:lo])
			copy(dst[lo:hi], line[lo+x0:hi+x0])
			clear(dst[hi:])
			continue
		}
		for ox := range dst {
			ix := ox*c.s + x0
			if ix < 0 || ix >= c.w {
				dst[ox] = 0
			} else {
				dst[ox] = line[ix]
			}
		}
	}
}

// col2im adds the column-matrix gradient cols [kdim, howo] back into the image
// gradient gx [cin, h, w] for channels [c0, c0+cinG).
func (c *convGeom) col2im(cols []float32, c0 int, gx []float32) {
	for ci := 0; ci < c.cinG; ci++ {
		dstImg := gx[(c0+ci)*c.hw : (c0+ci+1)*c.hw]
		for ky := 0; ky < c.kh; ky++ {
			for kx := 0; kx < c.kw; kx++ {
				row := cols[((ci*c.kh+ky)*c.kw+kx)*c.howo:][:c.howo]
				for oy := 0; oy < c.ho; oy++ {
					iy := (oy+c.oy0)*c.s - c.p + ky*c.d
					if iy < 0 || iy >= c.h {
						continue
					}
					line := dstImg[iy*c.w : (iy+1)*c.w]
					src := row[oy*c.wo : (oy+1)*c.wo]
					x0 := -c.p + kx*c.d
					if c.s == 1 {
						lo := max(0, -x0)
						hi := min(c.wo, c.w-x0)
						if hi > lo {
							l := line[lo+x0 : hi+x0]
							s := src[lo:hi]
							for i := range l {
								l[i] += s[i]
							}
						}
						continue
					}
					for ox, v := range src {
						ix := ox*c.s + x0
						if ix >= 0 && ix < c.w {
							line[ix] += v
						}
					}
				}
			}
		}
	}
}

// Conv2D convolves x [N, Cin, H, W] with w [Cout, Cin/groups, kH, kW] and adds bias
// [Cout] (nil for none), as torch.nn.functional.conv2d.
func Conv2D(x, w, bias *Tensor, o ConvOpts) *Tensor {
	o = o.norm()
	c := newConvGeom(x, w, o)
	if bias != nil && (len(bias.shape) != 1 || bias.shape[0] != c.cout) {
		panic(fmt.Sprintf("tensor: Conv2D: bias %v for %d output channels", bias.shape, c.cout))
	}
	d := x.dev
	if d.kern != nil {
		return conv2DDev(x, w, bias, c)
	}
	out := empty(d, c.n, c.cout, c.ho, c.wo)
	if c.depthwise {
		c.depthwiseForward(d, x.h(), w.h(), out.h())
	} else {
		c.forward(d, x.h(), w.h(), out.h())
	}
	if bias != nil {
		d.parallel(c.n*c.cout, 8, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				b := bias.h()[i%c.cout]
				row := out.h()[i*c.howo : (i+1)*c.howo]
				for j := range row {
					row[j] += b
				}
			}
		})
	}
	// Keep the input only when the weight gradient needs it (EGG differentiates
	// w.r.t. the input through frozen weights: then the input can be freed).
	nx, nw, nb, xs, ws := needs(x), needs(w), needs(bias), x.shape, w.shape
	var keepX, keepW *Tensor
	if nw {
		keepX = x
	}
	if nx {
		keepW = w
	}
	return record(out, "Conv2D", []*Tensor{x, w, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		x, w := keepX, keepW
		if nx {
			gx = New(d, xs...)
			if c.depthwise {
				c.depthwiseInputGrad(d, g.h(), w.h(), gx.h())
			} else {
				c.inputGrad(d, g.h(), w.h(), gx.h())
			}
		}
		if nw {
			gw = New(d, ws...)
			if c.depthwise {
				c.depthwiseWeightGrad(d, x.h(), g.h(), gw.h())
			} else {
				c.weightGrad(d, x.h(), g.h(), gw.h())
			}
		}
		if nb {
			gb = New(d, c.cout)
			for n := 0; n < c.n; n++ {
				for co := 0; co < c.cout; co++ {
					var s float64
					for _, v := range g.h()[(n*c.cout+co)*c.howo : (n*c.cout+co+1)*c.howo] {
						s += float64(v)
					}
					gb.h()[co] += float32(s)
				}
			}
		}
		return []*Tensor{gx, gw, gb}
	})
}

// perImage runs f for each image of the batch: in parallel with the serial GEMM when
// the batch can keep every thread busy, else one image at a time with the threaded
// GEMM. f gets a scratch buffer of size scratch.
func (c *convGeom) perImage(d *Device, scratch int, f func(n int, serial bool, buf []float32)) {
	if c.n >= d.threads && d.threads > 1 {
		d.parallel(c.n, 1, func(lo, hi int) {
			buf := d.scratch(scratch)
			defer d.release(buf)
			for n := lo; n < hi; n++ {
				f(n, true, buf)
			}
		})
		return
	}
	buf := d.scratch(scratch)
	defer d.release(buf)
	for n := 0; n < c.n; n++ {
		f(n, false, buf)
	}
}

// colLimit bounds the column matrix (in floats, 32 MiB): larger convolutions run
// in bands of output rows, so a 256-channel 256x256 layer does not need a 600 MB
// buffer.
const colLimit = 8 << 20

// bands splits the output rows into geometries whose column matrices fit colLimit.
func (c *convGeom) bands() []convGeom {
	rows := max(1, colLimit/max(1, c.kdim*c.wo))
	if rows >= c.ho {
		return []convGeom{*c}
	}
	var out []convGeom
	for oy := 0; oy < c.ho; oy += rows {
		b := *c
		b.oy0 = oy
		b.ho = min(rows, c.ho-oy)
		b.howo = b.ho * c.wo
		out = append(out, b)
	}
	return out
}

// bandScratch is the largest column matrix of c's bands.
func (c *convGeom) bandScratch() int {
	if c.pointwise {
		return 1
	}
	return c.kdim * c.bands()[0].howo
}

func (c *convGeom) forward(d *Device, x, w, out []float32) {
	bands := c.bands()
	c.perImage(d, c.bandScratch(), func(n int, serial bool, buf []float32) {
		img := x[n*c.cin*c.hw : (n+1)*c.cin*c.hw]
		for g := 0; g < c.g; g++ {
			wg := w[g*c.coutG*c.kdim : (g+1)*c.coutG*c.kdim]
			o := out[(n*c.cout+g*c.coutG)*c.howo : (n*c.cout+(g+1)*c.coutG)*c.howo]
			if c.pointwise {
				cols := img[g*c.cinG*c.hw : (g+1)*c.cinG*c.hw]
				d.gemmInto(serial, false, false, c.coutG, c.howo, c.kdim, 1, wg, cols, 0, o)
				continue
			}
			for _, b := range bands {
				cols := buf[:c.kdim*b.howo]
				b.im2colPar(d, serial, img, g*c.cinG, cols)
				d.gemmLd(serial, false, false, c.coutG, b.howo, c.kdim, 1, wg, c.kdim, cols, b.howo, 0, o[b.oy0*c.wo:], c.howo)
			}
		}
	})
}

// im2colPar builds the column matrix, split over threads unless serial.
func (c *convGeom) im2colPar(d *Device, serial bool, img []float32, c0 int, cols []float32) {
	if serial || c.cinG == 1 {
		c.im2col(img, c0, cols)
		return
	}
	d.parallel(c.cinG, 1, func(lo, hi int) {
		sub := *c
		sub.cinG = hi - lo
		sub.im2col(img, c0+lo, cols[lo*c.kh*c.kw*c.howo:])
	})
}

func (c *convGeom) inputGrad(d *Device, gout, w, gx []float32) {
	bands := c.bands()
	c.perImage(d, c.bandScratch(), func(n int, serial bool, buf []float32) {
		gimg := gx[n*c.cin*c.hw : (n+1)*c.cin*c.hw]
		for g := 0; g < c.g; g++ {
			wg := w[g*c.coutG*c.kdim : (g+1)*c.coutG*c.kdim]
			go_ := gout[(n*c.cout+g*c.coutG)*c.howo : (n*c.cout+(g+1)*c.coutG)*c.howo]
			if c.pointwise {
				// The column matrix is the image itself.
				dst := gimg[g*c.cinG*c.hw : (g+1)*c.cinG*c.hw]
				d.gemmInto(serial, true, false, c.kdim, c.howo, c.coutG, 1, wg, go_, 0, dst)
				continue
			}
			for _, b := range bands {
				cols := buf[:c.kdim*b.howo]
				d.gemmLd(serial, true, false, c.kdim, b.howo, c.coutG, 1, wg, c.kdim, go_[b.oy0*c.wo:], c.howo, 0, cols, b.howo)
				if serial || c.cinG == 1 {
					b.col2im(cols, g*c.cinG, gimg)
					continue
				}
				d.parallel(c.cinG, 1, func(lo, hi int) {
					sub := b
					sub.cinG = hi - lo
					sub.col2im(cols[lo*c.kh*c.kw*b.howo:], g*c.cinG+lo, gimg)
				})
			}
		}
	})
}

func (c *convGeom) weightGrad(d *Device, x, gout, gw []float32) {
	// Sequential over images (accumulating with beta = 1) and threaded GEMM.
	scratch := c.bandScratch()
	buf := d.scratch(scratch)
	defer d.release(buf)
	bands := c.bands()
	for n := 0; n < c.n; n++ {
		img := x[n*c.cin*c.hw : (n+1)*c.cin*c.hw]
		for g := 0; g < c.g; g++ {
			go_ := gout[(n*c.cout+g*c.coutG)*c.howo : (n*c.cout+(g+1)*c.coutG)*c.howo]
			wg := gw[g*c.coutG*c.kdim : (g+1)*c.coutG*c.kdim]
			if c.pointwise {
				cols := img[g*c.cinG*c.hw : (g+1)*c.cinG*c.hw]
				d.gemmInto(false, false, true, c.coutG, c.kdim, c.howo, 1, go_, cols, 1, wg)
				continue
			}
			for _, b := range bands {
				cols := buf[:c.kdim*b.howo]
				b.im2colPar(d, false, img, g*c.cinG, cols)
				d.gemmLd(false, false, true, c.coutG, c.kdim, b.howo, 1, go_[b.oy0*c.wo:], c.howo, cols, b.howo, 1, wg, c.kdim)
			}
		}
	}
}

// depthwiseForward computes a depthwise convolution directly (one filter per channel).
func (c *convGeom) depthwiseForward(d *Device, x, w, out []float32) {
	d.parallel(c.n*c.cin, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ch := i % c.cin
			src := x[i*c.hw : (i+1)*c.hw]
			dst := out[i*c.howo : (i+1)*c.howo]
			clear(dst)
			k := w[ch*c.kh*c.kw : (ch+1)*c.kh*c.kw]
			for ky := 0; ky < c.kh; ky++ {
				for kx := 0; kx < c.kw; kx++ {
					wv := k[ky*c.kw+kx]
					c.tapAccum(src, ky, kx, wv, dst)
				}
			}
		}
	})
}

// tapAccum adds wv times the input seen by tap (ky, kx) to every output position.
func (c *convGeom) tapAccum(src []float32, ky, kx int, wv float32, dst []float32) {
	x0 := -c.p + kx*c.d
	for oy := 0; oy < c.ho; oy++ {
		iy := oy*c.s - c.p + ky*c.d
		if iy < 0 || iy >= c.h {
			continue
		}
		line := src[iy*c.w : (iy+1)*c.w]
		row := dst[oy*c.wo : (oy+1)*c.wo]
		if c.s == 1 {
			lo, hi := max(0, -x0), min(c.wo, c.w-x0)
			if hi > lo {
				l := line[lo+x0 : hi+x0]
				r := row[lo:hi]
				for j := range r {
					r[j] += wv * l[j]
				}
			}
			continue
		}
		for ox := range row {
			if ix := ox*c.s + x0; ix >= 0 && ix < c.w {
				row[ox] += wv * line[ix]
			}
		}
	}
}

func (c *convGeom) depthwiseInputGrad(d *Device, gout, w, gx []float32) {
	d.parallel(c.n*c.cin, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ch := i % c.cin
			g := gout[i*c.howo : (i+1)*c.howo]
			dst := gx[i*c.hw : (i+1)*c.hw]
			k := w[ch*c.kh*c.kw : (ch+1)*c.kh*c.kw]
			for ky := 0; ky < c.kh; ky++ {
				for kx := 0; kx < c.kw; kx++ {
					c.tapScatter(g, ky, kx, k[ky*c.kw+kx], dst)
				}
			}
		}
	})
}

// tapScatter adds wv times the output gradient to the input positions that tap
// (ky, kx) read: the adjoint of tapAccum.
func (c *convGeom) tapScatter(g []float32, ky, kx int, wv float32, dst []float32) {
	x0 := -c.p + kx*c.d
	for oy := 0; oy < c.ho; oy++ {
		iy := oy*c.s - c.p + ky*c.d
		if iy < 0 || iy >= c.h {
			continue
		}
		line := dst[iy*c.w : (iy+1)*c.w]
		row := g[oy*c.wo : (oy+1)*c.wo]
		if c.s == 1 {
			lo, hi := max(0, -x0), min(c.wo, c.w-x0)
			if hi > lo {
				l := line[lo+x0 : hi+x0]
				r := row[lo:hi]
				for j := range r {
					l[j] += wv * r[j]
				}
			}
			continue
		}
		for ox, v := range row {
			if ix := ox*c.s + x0; ix >= 0 && ix < c.w {
				line[ix] += wv * v
			}
		}
	}
}

func (c *convGeom) depthwiseWeightGrad(d *Device, x, gout, gw []float32) {
	d.parallel(c.cin, 1, func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			for ky := 0; ky < c.kh; ky++ {
				for kx := 0; kx < c.kw; kx++ {
					var s float64
					x0 := -c.p + kx*c.d
					for n := 0; n < c.n; n++ {
						i := n*c.cin + ch
						src := x[i*c.hw : (i+1)*c.hw]
						g := gout[i*c.howo : (i+1)*c.howo]
						for oy := 0; oy < c.ho; oy++ {
							iy := oy*c.s - c.p + ky*c.d
							if iy < 0 || iy >= c.h {
								continue
							}
							line := src[iy*c.w : (iy+1)*c.w]
							row := g[oy*c.wo : (oy+1)*c.wo]
							var acc float32
							if c.s == 1 {
								lo, hi := max(0, -x0), min(c.wo, c.w-x0)
								if hi > lo {
									l := line[lo+x0 : hi+x0]
									r := row[lo:hi]
									for j := range r {
										acc += r[j] * l[j]
									}
								}
							} else {
								for ox, v := range row {
									if ix := ox*c.s + x0; ix >= 0 && ix < c.w {
										acc += v * line[ix]
									}
								}
							}
							s += float64(acc)
						}
					}
					gw[(ch*c.kh+ky)*c.kw+kx] += float32(s)
				}
			}
		}
	})
}
