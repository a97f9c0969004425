package cuda

import (
	"errors"
	"fmt"

	"egg/tensor"
)

// This file implements tensor.Kernels: each method checks its arguments, works out
// the launch shape and queues the kernel of kernels.cu of the same name. Argument
// errors (the caller's bugs) panic with a message; device failures with a
// *tensor.DeviceError.

var _ tensor.Kernels = (*Device)(nil)

// maxRank is the most axes Binary and Strided take (struct Dims in kernels.cu).
const maxRank = 6

// limit32 bounds what the 32-bit index variants of the kernels address.
const limit32 = 1<<31 - 1

// force64 makes Binary, Strided and Scatter use their 64-bit index kernels always
// (for the tests, which cannot afford 2^31-element tensors everywhere).
var force64 = false

// mapReads says which of x and y MapGrad reads for op (f' from x, or from y = f(x)).
func mapReads(op tensor.MapOp) (x, y bool) {
	switch op {
	case tensor.MapScale, tensor.MapAddScalar:
		return false, false
	case tensor.MapExp, tensor.MapSqrt, tensor.MapSigmoid, tensor.MapTanh:
		return false, true
	}
	return true, false
}

func checkMapOp(method string, op tensor.MapOp) {
	if op < tensor.MapScale || op > tensor.MapSoftplus {
		panic(fmt.Sprintf("cuda: %s: unknown op %d", method, op))
	}
}

// needBuffers panics when one of the named buffers is zero.
func needBuffers(method string, names string, bufs ...tensor.Buffer) {
	for _, b := range bufs {
		if b == 0 {
			panic(fmt.Sprintf("cuda: %s: a zero buffer among %s", method, names))
		}
	}
}

// Map writes y[i] = f(x[i]) for i < n.
func (d *Device) Map(op tensor.MapOp, y, x tensor.Buffer, n int, p0, p1 float32) {
	checkMapOp("Map", op)
	if n <= 0 {
		return
	}
	needBuffers("Map", "y, x", y, x)
	d.enter("Map")
	defer d.leave()
	g, b := grid1(n)
	d.launch("egg_map", g, b, 0, int32(op), y, x, int64(n), p0, p1)
}

// MapGrad writes gx[i] = g[i] * f'(x[i]) with y = f(x). Of x and y only those the
// op's derivative reads are needed (the others may be zero): x for Log, Pow, Abs,
// Clamp, SiLU, ReLU, ELU and Softplus, y for Exp, Sqrt, Sigmoid and Tanh, neither
// for Scale and AddScalar.
func (d *Device) MapGrad(op tensor.MapOp, gx, g, x, y tensor.Buffer, n int, p0, p1 float32) {
	checkMapOp("MapGrad", op)
	if n <= 0 {
		return
	}
	needBuffers("MapGrad", "gx, g", gx, g)
	readX, readY := mapReads(op)
	if readX {
		needBuffers("MapGrad", "x", x)
	} else {
		x = 0
	}
	if readY {
		needBuffers("MapGrad", "y", y)
	} else {
		y = 0
	}
	d.enter("MapGrad")
	defer d.leave()
	gr, b := grid1(n)
	d.launch("egg_map_grad", gr, b, 0, int32(op), gx, g, x, y, int64(n), p0, p1)
}

// collapseDims drops the axes of size 1 and merges each axis into the one before it
// where every operand walks the two contiguously (the output is contiguous, so it
// always does), so that the kernels decompose indices over as few axes as possible.
// It returns at least one axis.
func collapseDims(shape []int, strides ...[]int) ([]int, [][]int) {
	var sizes []int
	st := make([][]int, len(strides))
	for i, n := range shape {
		if n == 1 {
			continue
		}
		if last := len(sizes) - 1; last >= 0 {
			ok := true
			for k := range strides {
				if st[k][last] != strides[k][i]*n {
					ok = false
					break
				}
			}
			if ok {
				sizes[last] *= n
				for k := range strides {
					st[k][last] = strides[k][i]
				}
				continue
			}
		}
		sizes = append(sizes, n)
		for k := range strides {
			st[k] = append(st[k], strides[k][i])
		}
	}
	if len(sizes) == 0 {
		sizes = []int{1}
		for k := range st {
			st[k] = []int{0}
		}
	}
	return sizes, st
}

// shapeArgs checks a shape and its operands' strides and returns the element count,
// the collapsed axes as kernel arguments and whether 64-bit indexing is needed.
func shapeArgs(method string, shape []int, strides ...[]int) (n int, rank int32, dims dims6, st []dims6, wide bool) {
	if len(shape) > maxRank {
		panic(fmt.Sprintf("cuda: %s: rank %d > %d", method, len(shape), maxRank))
	}
	n = 1
	for _, s := range shape {
		if s < 0 {
			panic(fmt.Sprintf("cuda: %s: shape %v", method, shape))
		}
		n *= s
	}
	for _, s := range strides {
		if len(s) != len(shape) {
			panic(fmt.Sprintf("cuda: %s: strides %v for shape %v", method, s, shape))
		}
	}
	if n == 0 {
		return 0, 0, dims, nil, false
	}
	sizes, cst := collapseDims(shape, strides...)
	rank = int32(len(sizes))
	wide = force64 || n > limit32
	for i, s := range sizes {
		dims[i] = int64(s)
	}
	st = make([]dims6, len(cst))
	for k, c := range cst {
		span := 0
		for i, s := range c {
			st[k][i] = int64(s)
			span += (sizes[i] - 1) * max(s, -s)
		}
		if span > limit32 {
			wide = true
		}
	}
	return n, rank, dims, st, wide
}

// Binary writes the contiguous out of shape with out[idx] = a[idx . sa] op b[idx . sb].
func (d *Device) Binary(op tensor.BinaryOp, out, a, b tensor.Buffer, shape, sa, sb []int) {
	if op < tensor.BinaryAdd || op > tensor.BinaryDiv {
		panic(fmt.Sprintf("cuda: Binary: unknown op %d", op))
	}
	n, rank, dims, st, wide := shapeArgs("Binary", shape, sa, sb)
	if n == 0 {
		return
	}
	needBuffers("Binary", "out, a, b", out, a, b)
	d.enter("Binary")
	defer d.leave()
	name := "egg_binary32"
	if wide {
		name = "egg_binary64"
	}
	g, bl := grid1(n)
	d.launch(name, g, bl, 0, int32(op), out, a, b, int64(n), rank, dims, st[0], st[1])
}

// Strided writes the contiguous dst of shape with dst[idx] = src[idx . st].
func (d *Device) Strided(dst, src tensor.Buffer, shape, st []int) {
	n, rank, dims, sts, wide := shapeArgs("Strided", shape, st)
	if n == 0 {
		return
	}
	needBuffers("Strided", "dst, src", dst, src)
	d.enter("Strided")
	defer d.leave()
	name := "egg_strided32"
	if wide {
		name = "egg_strided64"
	}
	g, b := grid1(n)
	d.launch(name, g, b, 0, dst, src, int64(n), rank, dims, sts[0])
}

// Scatter writes dst[idx . dstSt] = src[idx] for the contiguous src of shape.
func (d *Device) Scatter(dst tensor.Buffer, dstSt []int, src tensor.Buffer, shape []int) {
	n, rank, dims, sts, wide := shapeArgs("Scatter", shape, dstSt)
	if n == 0 {
		return
	}
	needBuffers("Scatter", "dst, src", dst, src)
	d.enter("Scatter")
	defer d.leave()
	name := "egg_scatter32"
	if wide {
		name = "egg_scatter64"
	}
	g, b := grid1(n)
	d.launch(name, g, b, 0, dst, src, int64(n), rank, dims, sts[0])
}

// SumAxis writes out[o*inner+i] = sum over j < n of x[(o*n+j)*inner+i], accumulated in
// float64: one block per output for long sums over few outputs, else one thread per
// output.
func (d *Device) SumAxis(out, x tensor.Buffer, outer, n, inner int) {
	if outer < 0 || n < 0 || inner < 0 {
		panic(fmt.Sprintf("cuda: SumAxis: [%d, %d, %d]", outer, n, inner))
	}
	total := outer * inner
	if total == 0 {
		return
	}
	needBuffers("SumAxis", "out, x", out, x)
	d.enter("SumAxis")
	defer d.leave()
	if (inner == 1 && n >= 64) || (total <= 1024 && n >= 1024) {
		g, b := gridRows(total, pow2Threads(n, blockThreads))
		d.launch("egg_sum_axis_block", g, b, 0, out, x, int64(outer), int64(n), int64(inner))
		return
	}
	g, b := grid1(total)
	d.launch("egg_sum_axis_thread", g, b, 0, out, x, int64(outer), int64(n), int64(inner))
}

// GEMM computes batch row-major products C_i = alpha op(A_i) op(B_i) + beta C_i with
// cuBLAS (see colMajorGEMM); TF32 only with Options.Precision "tf32".
func (d *Device) GEMM(ta, tb bool, m, n, k int, alpha float32, a tensor.Buffer, lda, strideA int,
	b tensor.Buffer, ldb, strideB int, beta float32, c tensor.Buffer, ldc, strideC int, batch int) {
	if m == 0 || n == 0 || batch == 0 {
		return
	}
	args, err := colMajorGEMM(ta, tb, m, n, k, alpha, uint64(a), lda, strideA, uint64(b), ldb, strideB,
		beta, uint64(c), ldc, strideC, batch)
	if err != nil {
		panic(err.Error())
	}
	needBuffers("GEMM", "a, b, c", a, b, c)
	d.enter("GEMM")
	defer d.leave()
	al, be := args.alpha, args.beta
	var s cublasStatus
	call := "cublasSgemmStridedBatched"
	if ht, reduced := halfTypes[d.precision]; reduced {
		call = "cublasGemmStridedBatchedEx"
		ah := d.toHalf(a, gemmSpan(ta, m, k, lda, strideA, batch), ht)
		bh := d.toHalf(b, gemmSpan(tb, k, n, ldb, strideB, batch), ht)
		// cuBLAS gets B first (colMajorGEMM), so args.a is bh and args.b is ah.
		s = d.blas.gemmStridedBatchedEx(d.handle, args.ta, args.tb, args.m, args.n, args.k, &al, bh, ht, args.lda, args.strideA,
			ah, ht, args.ldb, args.strideB, &be, args.c, cudaR32F, args.ldc, args.strideC, args.batch, cublasCompute32F, cublasGemmDefault)
		// The queue orders any later use of the blocks after this GEMM.
		fail("GEMM operands to 16 bits", errors.Join(d.mem.release(ah), d.mem.release(bh)))
	} else {
		s = d.blas.sgemmStridedBatched(d.handle, args.ta, args.tb, args.m, args.n, args.k, &al, args.a, args.lda, args.strideA,
			args.b, args.ldb, args.strideB, &be, args.c, args.ldc, args.strideC, args.batch)
	}
	if err := d.blas.err(call, s); err != nil {
		panic(&tensor.DeviceError{Op: fmt.Sprintf("GEMM %dx%dx%d batch %d", m, n, k, batch), Err: err})
	}
}

// gemmSpan is the number of elements from an operand's start to its last element:
// batch matrices strided by stride, each of rows x cols (cols x rows when
// transposed) with row stride ld.
func gemmSpan(trans bool, rows, cols, ld, stride, batch int) int {
	if trans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return 0
	}
	return (batch-1)*stride + (rows-1)*ld + cols
}

// toHalf returns a new device block holding the first n elements of src as 16-bit
// floats of type ht (cudaR16F or cudaR16BF), converted on the stream. The caller
// releases it.
func (d *Device) toHalf(src tensor.Buffer, n int, ht int32) uint64 {
	bytes := 2 * uint64(max(n, 1))
	p, err := d.alloc(bytes)
	if errors.Is(err, errOutOfMemory) {
		p, err = d.alloc(bytes) // the allocator gives its cache back on a second refusal
	}
	fail("GEMM operands to 16 bits", err)
	if n > 0 {
		bf16 := int32(0)
		if ht == cudaR16BF {
			bf16 = 1
		}
		gr, b := grid1(n)
		d.launch("egg_to_half", gr, b, 0, tensor.Buffer(p), src, int64(n), bf16)
	}
	return p
}

// checkConv panics on a geometry the kernels cannot take: each image's planes and
// the taps must fit in 32 bits.
func checkConv(method string, g tensor.ConvGeometry) (ok bool) {
	for _, v := range []int{g.N, g.C, g.H, g.W, g.KH, g.KW, g.OH, g.OW, g.Pad} {
		if v < 0 {
			panic(fmt.Sprintf("cuda: %s: geometry %+v", method, g))
		}
	}
	if g.Stride < 1 || g.Dil < 1 {
		panic(fmt.Sprintf("cuda: %s: geometry %+v", method, g))
	}
	if g.H*g.W > limit32 || g.OH*g.OW > limit32 || g.C*g.KH*g.KW > limit32 ||
		g.H+g.Pad+g.KH*g.Dil > limit32 || g.W+g.Pad+g.KW*g.Dil > limit32 || g.OH*g.Stride+g.KH*g.Dil > limit32 {
		panic(fmt.Sprintf("cuda: %s: geometry %+v exceeds 32-bit planes", method, g))
	}
	return g.N*g.C*g.KH*g.KW*g.OH*g.OW > 0 && g.H*g.W > 0
}

// Im2Col writes cols [N, C*KH*KW, OH*OW] from x [N, C, H, W] (zeros outside).
func (d *Device) Im2Col(cols, x tensor.Buffer, g tensor.ConvGeometry) {
	if !checkConv("Im2Col", g) {
		if n := g.N * g.C * g.KH * g.KW * g.OH * g.OW; n > 0 { // an empty image: all padding
			d.Fill(cols, n, 0)
		}
		return
	}
	needBuffers("Im2Col", "cols, x", cols, x)
	d.enter("Im2Col")
	defer d.leave()
	gr, b := grid2(g.N*g.C*g.KH*g.KW, g.OH*g.OW)
	d.launch("egg_im2col", gr, b, 0, cols, x, int64(g.N), int64(g.C), int64(g.H), int64(g.W), int64(g.KH), int64(g.KW),
		int64(g.OH), int64(g.OW), int64(g.Stride), int64(g.Pad), int64(g.Dil))
}

// Col2Im writes gx [N, C, H, W] as the sum over taps of cols [N, C*KH*KW, OH*OW]: a
// gather, each input element summing the taps that read it in the host's order.
func (d *Device) Col2Im(gx, cols tensor.Buffer, g tensor.ConvGeometry) {
	if !checkConv("Col2Im", g) {
		if n := g.N * g.C * g.H * g.W; n > 0 { // no taps: nothing reads the input
			d.Fill(gx, n, 0)
		}
		return
	}
	needBuffers("Col2Im", "gx, cols", gx, cols)
	d.enter("Col2Im")
	defer d.leave()
	gr, b := grid2(g.N*g.C, g.H*g.W)
	d.launch("egg_col2im", gr, b, 0, gx, cols, int64(g.N), int64(g.C), int64(g.H), int64(g.W), int64(g.KH), int64(g.KW),
		int64(g.OH), int64(g.OW), int64(g.Stride), int64(g.Pad), int64(g.Dil))
}

func checkGroups(method string, n, c, hw, groups int) {
	if n < 0 || c < 0 || hw < 0 || groups <= 0 || c%groups != 0 {
		panic(fmt.Sprintf("cuda: %s: n %d c %d hw %d groups %d", method, n, c, hw, groups))
	}
}

// GroupNorm normalises x [n, c, hw] over groups of c/groups channels and writes mean
// and rstd [n*groups]; w and b may be zero (no affine transform). One block per
// (sample, group), statistics in float64 as the host.
func (d *Device) GroupNorm(y, mean, rstd, x, w, b tensor.Buffer, n, c, hw, groups int, eps float32) {
	checkGroups("GroupNorm", n, c, hw, groups)
	rows, per := n*groups, c/groups*hw
	if rows == 0 || per == 0 {
		return
	}
	needBuffers("GroupNorm", "y, mean, rstd, x", y, mean, rstd, x)
	d.enter("GroupNorm")
	defer d.leave()
	g, bl := gridRows(rows, pow2Threads(per, 512))
	d.launch("egg_group_norm", g, bl, 0, y, mean, rstd, x, w, b, int64(n), int64(c), int64(hw), int64(groups), eps)
}

// GroupNormGrad writes gx (and gw, gb [c] when non-zero) from g, x, mean, rstd and w
// (zero: ones): per (sample, channel) sums of g*x and g into a float64 scratch
// buffer, then gx per (sample, group), then gw and gb per channel.
func (d *Device) GroupNormGrad(gx, gw, gb, g, x, mean, rstd, w tensor.Buffer, n, c, hw, groups int) {
	checkGroups("GroupNormGrad", n, c, hw, groups)
	if c == 0 {
		return
	}
	if n == 0 {
		for _, p := range []tensor.Buffer{gw, gb} {
			if p != 0 {
				d.Fill(p, c, 0)
			}
		}
		return
	}
	needBuffers("GroupNormGrad", "g, x, mean, rstd", g, x, mean, rstd)
	d.enter("GroupNormGrad")
	defer d.leave()
	nc := n * c
	scratch, err := d.alloc(uint64(16 * nc)) // ds, db: nc float64 each
	if err != nil {
		panic(&tensor.DeviceError{Op: "GroupNormGrad scratch", Err: err})
	}
	defer d.mem.release(scratch)
	ds, db := tensor.Buffer(scratch), tensor.Buffer(scratch+uint64(8*nc))
	gr, bl := gridRows(nc, pow2Threads(hw, blockThreads))
	d.launch("egg_gn_grad_stats", gr, bl, 0, ds, db, g, x, int64(nc), int64(hw))
	if gx != 0 && hw > 0 {
		gr, bl = gridRows(n*groups, pow2Threads(c/groups*hw, 512))
		d.launch("egg_gn_grad_x", gr, bl, 0, gx, g, x, mean, rstd, w, ds, db, int64(n), int64(c), int64(hw), int64(groups))
	}
	if gw != 0 || gb != 0 {
		gr, bl = grid1(c)
		d.launch("egg_gn_grad_wb", gr, bl, 0, gw, gb, mean, rstd, ds, db, int64(n), int64(c), int64(groups))
	}
}

func boolArg(v bool) int32 {
	if v {
		return 1
	}
	return 0
}

// Softmax writes y = softmax (log: log-softmax) of x [outer, n, inner] along n: one
// block per row when inner is 1, else one thread per (outer, inner) column.
func (d *Device) Softmax(y, x tensor.Buffer, outer, n, inner int, log bool) {
	if outer < 0 || n < 0 || inner < 0 {
		panic(fmt.Sprintf("cuda: Softmax: [%d, %d, %d]", outer, n, inner))
	}
	if outer*n*inner == 0 {
		return
	}
	needBuffers("Softmax", "y, x", y, x)
	d.enter("Softmax")
	defer d.leave()
	if inner == 1 {
		g, b := gridRows(outer, pow2Threads(n, blockThreads))
		d.launch("egg_softmax_rows", g, b, 0, y, x, int64(outer), int64(n), boolArg(log))
		return
	}
	g, b := grid1(outer * inner)
	d.launch("egg_softmax_cols", g, b, 0, y, x, int64(outer), int64(n), int64(inner), boolArg(log))
}

// SoftmaxGrad writes gx from g and y = Softmax(x) (log: y = LogSoftmax(x)).
func (d *Device) SoftmaxGrad(gx, g, y tensor.Buffer, outer, n, inner int, log bool) {
	if outer < 0 || n < 0 || inner < 0 {
		panic(fmt.Sprintf("cuda: SoftmaxGrad: [%d, %d, %d]", outer, n, inner))
	}
	if outer*n*inner == 0 {
		return
	}
	needBuffers("SoftmaxGrad", "gx, g, y", gx, g, y)
	d.enter("SoftmaxGrad")
	defer d.leave()
	if inner == 1 {
		gr, b := gridRows(outer, pow2Threads(n, blockThreads))
		d.launch("egg_softmax_grad_rows", gr, b, 0, gx, g, y, int64(outer), int64(n), boolArg(log))
		return
	}
	gr, b := grid1(outer * inner)
	d.launch("egg_softmax_grad_cols", gr, b, 0, gx, g, y, int64(outer), int64(n), int64(inner), boolArg(log))
}

// Upsample writes out [p, h*s, w*s] = nearest upsampling of x [p, h, w].
func (d *Device) Upsample(out, x tensor.Buffer, p, h, w, s int) {
	if p < 0 || h < 0 || w < 0 || s < 1 || w*s > limit32 {
		panic(fmt.Sprintf("cuda: Upsample: p %d h %d w %d scale %d", p, h, w, s))
	}
	if p*h*w == 0 {
		return
	}
	needBuffers("Upsample", "out, x", out, x)
	d.enter("Upsample")
	defer d.leave()
	g, b := grid2(p*h*s, w*s)
	d.launch("egg_upsample", g, b, 0, out, x, int64(p*h*s), int64(w), int64(s))
}

// UpsampleGrad writes gx [p, h, w] = sum of g [p, h*s, w*s] over each s x s block.
func (d *Device) UpsampleGrad(gx, g tensor.Buffer, p, h, w, s int) {
	if p < 0 || h < 0 || w < 0 || s < 1 {
		panic(fmt.Sprintf("cuda: UpsampleGrad: p %d h %d w %d scale %d", p, h, w, s))
	}
	if p*h*w == 0 {
		return
	}
	needBuffers("UpsampleGrad", "gx, g", gx, g)
	d.enter("UpsampleGrad")
	defer d.leave()
	gr, b := grid2(p*h, w)
	d.launch("egg_upsample_grad", gr, b, 0, gx, g, int64(p*h), int64(w), int64(s))
}

// checkPool panics on a pooling geometry the kernels cannot take and reports
// whether there is anything to do.
func checkPool(method string, g tensor.PoolGeometry) bool {
	for _, v := range []int{g.P, g.H, g.W, g.OH, g.OW, g.Pad} {
		if v < 0 {
			panic(fmt.Sprintf("cuda: %s: geometry %+v", method, g))
		}
	}
	if g.K < 1 || g.S < 1 {
		panic(fmt.Sprintf("cuda: %s: geometry %+v", method, g))
	}
	if g.H*g.W > limit32 {
		panic(fmt.Sprintf("cuda: %s: geometry %+v: a plane's index exceeds 32 bits", method, g))
	}
	return g.P*g.H*g.W > 0 && g.OH*g.OW > 0
}

// MaxPool writes out [P, OH, OW], the windows' maxima of x, and arg, their winners.
func (d *Device) MaxPool(out, arg, x tensor.Buffer, g tensor.PoolGeometry) {
	if !checkPool("MaxPool", g) {
		return
	}
	needBuffers("MaxPool", "out, arg, x", out, arg, x)
	d.enter("MaxPool")
	defer d.leave()
	gr, b := grid1(g.P * g.OH * g.OW)
	d.launch("egg_maxpool", gr, b, 0, out, arg, x, int64(g.P), int64(g.H), int64(g.W), int64(g.OH), int64(g.OW),
		int64(g.K), int64(g.S), int64(g.Pad))
}

// MaxPoolGrad writes gx [P, H, W], each pixel's sum of the gradients of the
// outputs it won.
func (d *Device) MaxPoolGrad(gx, g, arg tensor.Buffer, pg tensor.PoolGeometry) {
	if !checkPool("MaxPoolGrad", pg) {
		if n := pg.P * pg.H * pg.W; n > 0 {
			d.Fill(gx, n, 0)
		}
		return
	}
	needBuffers("MaxPoolGrad", "gx, g, arg", gx, g, arg)
	d.enter("MaxPoolGrad")
	defer d.leave()
	gr, b := grid1(pg.P * pg.H * pg.W)
	d.launch("egg_maxpool_grad", gr, b, 0, gx, g, arg, int64(pg.P), int64(pg.H), int64(pg.W), int64(pg.OH), int64(pg.OW),
		int64(pg.K), int64(pg.S), int64(pg.Pad))
}

// checkGrid panics on a GridSample geometry the kernels cannot take and reports
// whether there is anything to do.
func checkGrid(method string, g tensor.GridGeometry) bool {
	for _, v := range []int{g.N, g.C, g.H, g.W, g.P} {
		if v < 0 {
			panic(fmt.Sprintf("cuda: %s: geometry %+v", method, g))
		}
	}
	return g.N*g.C*g.P > 0
}

func gridArgs(g tensor.GridGeometry) []any {
	align := int32(0)
	if g.AlignCorners {
		align = 1
	}
	return []any{int64(g.N), int64(g.C), int64(g.H), int64(g.W), int64(g.P), align}
}

// GridSample writes out [N, C, P], x sampled bilinearly at grid's points.
func (d *Device) GridSample(out, x, grid tensor.Buffer, g tensor.GridGeometry) {
	if !checkGrid("GridSample", g) {
		return
	}
	needBuffers("GridSample", "out, x, grid", out, x, grid)
	d.enter("GridSample")
	defer d.leave()
	gr, b := grid1(g.N * g.C * g.P)
	d.launch("egg_grid_sample", gr, b, 0, append([]any{out, x, grid}, gridArgs(g)...)...)
}

// GridSampleGradX writes gx [N, C, H, W], GridSample's adjoint applied to g.
func (d *Device) GridSampleGradX(gx, g, grid tensor.Buffer, gg tensor.GridGeometry) {
	n := gg.N * gg.C * gg.H * gg.W
	if !checkGrid("GridSampleGradX", gg) {
		if n > 0 {
			d.Fill(gx, n, 0)
		}
		return
	}
	needBuffers("GridSampleGradX", "gx, g, grid", gx, g, grid)
	d.enter("GridSampleGradX")
	defer d.leave()
	gr, b := grid1(n)
	d.launch("egg_grid_sample_grad_x", gr, b, 0, append([]any{gx, g, grid}, gridArgs(gg)...)...)
}

// GridSampleGradGrid writes ggrid [N, P, 2], the samples' gradient w.r.t. the grid.
func (d *Device) GridSampleGradGrid(ggrid, g, x, grid tensor.Buffer, gg tensor.GridGeometry) {
	if !checkGrid("GridSampleGradGrid", gg) {
		if n := gg.N * gg.P * 2; n > 0 {
			d.Fill(ggrid, n, 0)
		}
		return
	}
	needBuffers("GridSampleGradGrid", "ggrid, g, x, grid", ggrid, g, x, grid)
	d.enter("GridSampleGradGrid")
	defer d.leave()
	gr, b := grid1(gg.N * gg.P)
	d.launch("egg_grid_sample_grad_grid", gr, b, 0, append([]any{ggrid, g, x, grid}, gridArgs(gg)...)...)
}
