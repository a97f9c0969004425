package tensor

// The device paths of ops whose host kernels live elsewhere: each runs when the
// tensors are on an accelerator with Kernels, and computes what the host path
// computes (same products, same layouts).

// maxKernelRank is the most axes Kernels.Binary and Kernels.Strided take.
const maxKernelRank = 6

// stridedDev writes out (contiguous) with out[idx] = x[off + idx . st] on the
// device, collapsing axes first; it panics if more than maxKernelRank remain.
func stridedDev(k Kernels, out, x *Tensor, st []int, off int) {
	if out.Len() == 0 {
		return
	}
	sizes, sts := collapse(out.shape, st, contiguousStrides(out.shape))
	if len(sizes) > maxKernelRank {
		panic("tensor: strided copy of more than 6 axes on an accelerator")
	}
	k.Strided(out.st.out(), x.st.in().At(off), sizes, sts[0])
}

// scatterDev writes x (contiguous) into dst at dst[off + idx . st] on the
// device; dst's other elements are left as they are.
func scatterDev(k Kernels, dst Buffer, st []int, off int, x *Tensor) {
	if x.Len() == 0 {
		return
	}
	sizes, sts := collapse(x.shape, st, contiguousStrides(x.shape))
	if len(sizes) > maxKernelRank {
		panic("tensor: strided copy of more than 6 axes on an accelerator")
	}
	k.Scatter(dst.At(off), sts[0], x.st.in(), sizes)
}

// ld returns the row strides of op(A) [m, k] stored row-major.
func ld(trans bool, rows, cols int) int {
	if trans {
		return rows
	}
	return cols
}

// matMulDev is MatMulT on the device: out = op(a) op(b), batched.
func matMulDev(a, b, out *Tensor, ta, tb bool, m, n, k, batch, bs int, shared bool) *Tensor {
	kern := a.dev.kern
	if out.Len() == 0 {
		return out
	}
	if k == 0 {
		out.st.fill(0)
	} else {
		kern.GEMM(ta, tb, m, n, k, 1, a.st.in(), ld(ta, m, k), m*k, b.st.in(), ld(tb, k, n), bs, 0, out.st.out(), n, m*n, batch)
	}
	d := a.dev
	return record(out, "MatMul", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if needs(a) {
			ga = empty(d, a.shape...)
			if !ta {
				// dA [m, k] = dC op(B)^T
				kern.GEMM(false, !tb, m, k, n, 1, g.st.in(), n, m*n, b.st.in(), ld(tb, k, n), bs, 0, ga.st.out(), k, m*k, batch)
			} else {
				// A is stored [k, m]: dA = op(B) dC^T
				kern.GEMM(tb, true, k, m, n, 1, b.st.in(), ld(tb, k, n), bs, g.st.in(), n, m*n, 0, ga.st.out(), m, m*k, batch)
			}
		}
		if needs(b) {
			gb = New(d, b.shape...)
			if shared {
				// Sum the per-item gradients of the shared matrix.
				gbuf := gb.st.inout()
				for i := 0; i < batch; i++ {
					gradBDev(kern, ta, tb, m, n, k, a.st.in().At(i*m*k), 0, g.st.in().At(i*m*n), 0, 1, gbuf, 0, 1)
				}
			} else {
				gradBDev(kern, ta, tb, m, n, k, a.st.in(), m*k, g.st.in(), m*n, 0, gb.st.out(), k*n, batch)
			}
		}
		return []*Tensor{ga, gb}
	})
}

// gradBDev writes (beta 0) or adds (beta 1) the gradient of op(B) of batch
// products: dB = op(A)^T dC, or dC^T op(A) when B is stored transposed.
func gradBDev(kern Kernels, ta, tb bool, m, n, k int, a Buffer, sa int, g Buffer, sg int, beta float32, gb Buffer, sb, batch int) {
	if !tb {
		kern.GEMM(!ta, false, k, n, m, 1, a, ld(ta, m, k), sa, g, n, sg, beta, gb, n, sb, batch)
	} else {
		kern.GEMM(true, ta, n, k, m, 1, g, n, sg, a, ld(ta, m, k), sa, beta, gb, k, sb, batch)
	}
}

// linearDev is Linear on the device: out = x W^T + bias.
func linearDev(x, w, bias, out *Tensor, rows, in, outF int) *Tensor {
	kern, d := x.dev.kern, x.dev
	beta := float32(0)
	if out.Len() > 0 {
		if bias != nil {
			// out[r, :] = bias, then += x W^T.
			stridedDev(kern, out.view([]int{rows, outF}), bias, []int{0, 1}, 0)
			beta = 1
		}
		if in > 0 {
			kern.GEMM(false, true, rows, outF, in, 1, x.st.in(), in, 0, w.st.in(), in, 0, beta, out.st.inout(), outF, 0, 1)
		} else if bias == nil {
			out.st.fill(0)
		}
	}
	nx, nw, nb, xs, ws := needs(x), needs(w), needs(bias), x.shape, w.shape
	var keepX, keepW *Tensor
	if nw {
		keepX = x
	}
	if nx {
		keepW = w
	}
	return record(out, "Linear", []*Tensor{x, w, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		if nx {
			gx = empty(d, xs...)
			kern.GEMM(false, false, rows, in, outF, 1, g.st.in(), outF, 0, keepW.st.in(), in, 0, 0, gx.st.out(), in, 0, 1)
		}
		if nw {
			gw = empty(d, ws...)
			kern.GEMM(true, false, outF, in, rows, 1, g.st.in(), outF, 0, keepX.st.in(), in, 0, 0, gw.st.out(), in, 0, 1)
		}
		if nb {
			gb = sumTo(g.view([]int{rows, outF}), []int{outF})
		}
		return []*Tensor{gx, gw, gb}
	})
}

// colsCap is the most float32 elements of column matrix a device convolution
// holds at once (1 GiB); images are processed in chunks below it.
const colsCap = 1 << 28

// conv2DDev is Conv2D with one group on the device: im2col and a batched GEMM per
// chunk of images (a 1x1 convolution with stride 1 and no padding multiplies x
// directly).
func conv2DDev(x, w, bias *Tensor, c convGeom) *Tensor {
	kern, d := x.dev.kern, x.dev
	out := empty(d, c.n, c.cout, c.ho, c.wo)
	if out.Len() == 0 {
		return out
	}
	geom := func(n int) ConvGeometry {
		return ConvGeometry{N: n, C: c.cin, H: c.h, W: c.w, KH: c.kh, KW: c.kw, OH: c.ho, OW: c.wo, Stride: c.s, Pad: c.p, Dil: c.d}
	}
	// The column matrix of one image is [g*kdim, howo]: group gi's rows are the
	// block [gi*kdim, (gi+1)*kdim), so a grouped convolution is one GEMM per group,
	// batched over the groups (strides kdim*howo in the columns, coutG*kdim in the
	// weights, coutG*howo in the output); with one group, batched over the images.
	gk := c.kdim * c.howo // column elements of one group of one image
	per := c.g * gk       // column elements of one image
	wg, og := c.coutG*c.kdim, c.coutG*c.howo
	chunk := max(1, min(c.n, colsCap/max(per, 1)))
	var cols *Tensor
	if !c.pointwise {
		cols = empty(d, chunk*per)
	}
	// columns returns the column matrices of images [n0, n0+nb) of x, written
	// into cols (x itself for a 1x1 convolution), and the stride between images.
	columns := func(cols, x *Tensor, n0, nb int) (Buffer, int) {
		if c.pointwise {
			return x.st.in().At(n0 * c.cin * c.hw), c.cin * c.hw
		}
		kern.Im2Col(cols.st.out(), x.st.in().At(n0*c.cin*c.hw), geom(nb))
		return cols.st.in(), per
	}
	ob := out.st.out()
	for n0 := 0; n0 < c.n; n0 += chunk {
		nb := min(chunk, c.n-n0)
		cb, cs := columns(cols, x, n0, nb)
		if c.g == 1 {
			kern.GEMM(false, false, c.cout, c.howo, c.kdim, 1, w.st.in(), c.kdim, 0, cb, c.howo, cs,
				0, ob.At(n0*c.cout*c.howo), c.howo, c.cout*c.howo, nb)
			continue
		}
		for i := 0; i < nb; i++ {
			kern.GEMM(false, false, c.coutG, c.howo, c.kdim, 1, w.st.in(), c.kdim, wg, cb.At(i*cs), c.howo, gk,
				0, ob.At((n0+i)*c.cout*c.howo), c.howo, og, c.g)
		}
	}
	if bias != nil {
		sizes, st := collapse([]int{c.n, c.cout, c.howo}, []int{c.cout * c.howo, c.howo, 1}, []int{0, 1, 0})
		kern.Binary(BinaryAdd, ob, ob, bias.st.in(), sizes, st[0], st[1])
	}
	nx, nw, nb, xs, ws := needs(x), needs(w), needs(bias), x.shape, w.shape
	var keepX, keepW *Tensor
	if nw {
		keepX = x
	}
	if nx {
		keepW = w
	}
	release(cols) // the backward pass makes its own columns
	return record(out, "Conv2D", []*Tensor{x, w, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		var cols *Tensor
		if !c.pointwise {
			cols = empty(d, chunk*per)
		}
		if nx {
			gx = empty(d, xs...)
			gxb := gx.st.out()
			for n0 := 0; n0 < c.n; n0 += chunk {
				nb := min(chunk, c.n-n0)
				// dcols = W^T dout, then the adjoint of im2col.
				dst, ds := gxb.At(n0*c.cin*c.hw), c.cin*c.hw
				if !c.pointwise {
					dst, ds = cols.st.out(), per
				}
				if c.g == 1 {
					kern.GEMM(true, false, c.kdim, c.howo, c.cout, 1, keepW.st.in(), c.kdim, 0,
						g.st.in().At(n0*c.cout*c.howo), c.howo, c.cout*c.howo, 0, dst, c.howo, ds, nb)
				} else {
					for i := 0; i < nb; i++ {
						kern.GEMM(true, false, c.kdim, c.howo, c.coutG, 1, keepW.st.in(), c.kdim, wg,
							g.st.in().At((n0+i)*c.cout*c.howo), c.howo, og, 0, dst.At(i*ds), c.howo, gk, c.g)
					}
				}
				if !c.pointwise {
					kern.Col2Im(gxb.At(n0*c.cin*c.hw), cols.st.in(), geom(nb))
				}
			}
		}
		if nw {
			gw = New(d, ws...)
			gwb := gw.st.inout()
			for n0 := 0; n0 < c.n; n0 += chunk {
				nb := min(chunk, c.n-n0)
				cb, cs := columns(cols, keepX, n0, nb)
				for i := 0; i < nb; i++ {
					// dW_g += dout_{i,g} cols_{i,g}^T, batched over the groups
					kern.GEMM(false, true, c.coutG, c.kdim, c.howo, 1, g.st.in().At((n0+i)*c.cout*c.howo), c.howo, og,
						cb.At(i*cs), c.howo, gk, 1, gwb, c.kdim, wg, c.g)
				}
			}
		}
		release(cols)
		if nb {
			gb = sumAxes(g, []int{0, 2, 3}).view([]int{c.cout})
		}
		return []*Tensor{gx, gw, gb}
	})
}

// in returns t's device buffer for reading, or 0 for a nil t.
func in(t *Tensor) Buffer {
	if t == nil {
		return 0
	}
	return t.st.in()
}

// groupNormDev is GroupNorm on the device.
func groupNormDev(x *Tensor, groups int, weight, bias *Tensor, eps float32, n, c, hw int) *Tensor {
	kern, dev := x.dev.kern, x.dev
	out := empty(dev, x.shape...)
	mean, rstd := empty(dev, n*groups), empty(dev, n*groups)
	if out.Len() > 0 {
		kern.GroupNorm(out.st.out(), mean.st.out(), rstd.st.out(), x.st.in(), in(weight), in(bias), n, c, hw, groups, eps)
	}
	return record(out, "GroupNorm", []*Tensor{x, weight, bias}, func(g *Tensor) []*Tensor {
		gx := empty(dev, x.shape...) // written even when only the affine gradients are wanted
		var gw, gb *Tensor
		var gwb, gbb Buffer
		if needs(weight) {
			gw = empty(dev, c)
			gwb = gw.st.out()
		}
		if needs(bias) {
			gb = empty(dev, c)
			gbb = gb.st.out()
		}
		if out.Len() > 0 {
			kern.GroupNormGrad(gx.st.out(), gwb, gbb, g.st.in(), x.st.in(), mean.st.in(), rstd.st.in(), in(weight), n, c, hw, groups)
		} else {
			for _, t := range []*Tensor{gw, gb} {
				if t != nil {
					t.st.fill(0)
				}
			}
		}
		if !needs(x) {
			gx = nil
		}
		return []*Tensor{gx, gw, gb}
	})
}

// softmaxDev is Softmax (log: LogSoftmax) over the middle axis of x viewed as
// [outer, n, inner], on the device.
func softmaxDev(x *Tensor, outer, n, inner int, log bool) *Tensor {
	kern, dev := x.dev.kern, x.dev
	out := empty(dev, x.shape...)
	if out.Len() > 0 {
		kern.Softmax(out.st.out(), x.st.in(), outer, n, inner, log)
	}
	op := "Softmax"
	if log {
		op = "LogSoftmax"
	}
	return record(out, op, []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := empty(dev, x.shape...)
		if gx.Len() > 0 {
			kern.SoftmaxGrad(gx.st.out(), g.st.in(), out.st.in(), outer, n, inner, log)
		}
		return []*Tensor{gx}
	})
}

// upsampleDev is UpsampleNearest2D on the device.
func upsampleDev(x, out *Tensor, p, h, w, scale int) *Tensor {
	kern, dev := x.dev.kern, x.dev
	if out.Len() > 0 {
		kern.Upsample(out.st.out(), x.st.in(), p, h, w, scale)
	}
	return record(out, "UpsampleNearest2D", []*Tensor{x}, func(g *Tensor) []*Tensor {
		gx := empty(dev, x.shape...)
		if gx.Len() > 0 {
			kern.UpsampleGrad(gx.st.out(), g.st.in(), p, h, w, scale)
		}
		return []*Tensor{gx}
	})
}

// batchNormEvalDev is BatchNorm2D in evaluation with frozen affine parameters on
// the device: y = x a_c + b_c with a_c = w_c / sqrt(var_c + eps) and b_c = bias_c -
// mean_c a_c, computed per channel in float64 on the host as the host path does,
// then two broadcast ops (whose gradient, g a_c, autodiff gives).
func batchNormEvalDev(x, weight, bias, runningMean, runningVar *Tensor, eps float32) *Tensor {
	c := x.shape[1]
	// a = w / sqrt(var + eps), b = bias - mean a, per channel, on the device (no
	// download of the statistics, which would wait for the stream at every layer).
	a := Pow(AddScalar(runningVar, eps), -0.5)
	if weight != nil {
		a = Mul(a, weight)
	}
	b := Neg(Mul(runningMean, a))
	if bias != nil {
		b = Add(b, bias)
	}
	return Add(Mul(x, Reshape(a, 1, c, 1, 1)), Reshape(b, 1, c, 1, 1))
}

// attentionPoolDev is AttentionPool on the device, composed of device ops on the
// transposed problem (so that the batched products share q and f):
//
//	W^T [B, S, N] = softmax over S of k^T q^T,   Y^T [B, E, N] = v W^T,
//	out [B, N]    = sum over E of Y^T f^T,
//
// with the gradients of those ops.
func attentionPoolDev(q, k, v, f *Tensor) (out, weights *Tensor) {
	e, n := q.shape[1], q.shape[0]
	wT := Softmax(MatMulT(k, q, true, true), 1)
	yT := MatMul(v, wT)
	out = Sum(Mul(yT, Reshape(Transpose(f, 0, 1), 1, e, n)), false, 1)
	return out, Permute(wT, 0, 2, 1).Detach()
}

// maxPoolDev is MaxPool2D on the device: the winners' indices stay on the device
// for the backward pass, which gathers each input pixel's gradient.
func maxPoolDev(x *Tensor, g poolGeom) *Tensor {
	kern, d := x.dev.kern, x.dev
	out := empty(d, withHW(x.shape, g.ho, g.wo)...)
	arg := empty(d, out.Len())
	pg := PoolGeometry{P: g.p, H: g.h, W: g.w, OH: g.ho, OW: g.wo, K: g.k, S: g.s, Pad: g.pad}
	if out.Len() > 0 {
		kern.MaxPool(out.st.out(), arg.st.out(), x.st.in(), pg)
	}
	xs := x.shape
	return record(out, "MaxPool2D", []*Tensor{x}, func(gr *Tensor) []*Tensor {
		gx := empty(d, xs...)
		if gx.Len() > 0 {
			kern.MaxPoolGrad(gx.st.out(), gr.st.in(), arg.st.in(), pg)
		}
		return []*Tensor{gx}
	})
}

// gridSampleDev is GridSample on the device.
func gridSampleDev(x, grid *Tensor, g GridGeometry, hg, wg int) *Tensor {
	kern, d := x.dev.kern, x.dev
	out := empty(d, g.N, g.C, hg, wg)
	if out.Len() > 0 {
		kern.GridSample(out.st.out(), x.st.in(), grid.st.in(), g)
	}
	xs, gs := x.shape, grid.shape
	return record(out, "GridSample", []*Tensor{x, grid}, func(gr *Tensor) []*Tensor {
		var gx, ggrid *Tensor
		if needs(x) {
			gx = New(d, xs...)
			if out.Len() > 0 {
				kern.GridSampleGradX(gx.st.out(), gr.st.in(), grid.st.in(), g)
			}
		}
		if needs(grid) {
			ggrid = New(d, gs...)
			if out.Len() > 0 {
				kern.GridSampleGradGrid(ggrid.st.out(), gr.st.in(), x.st.in(), grid.st.in(), g)
			}
		}
		return []*Tensor{gx, ggrid}
	})
}
