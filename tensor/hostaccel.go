package tensor

import (
	"fmt"
	"math"
	"sort"
	"sync"
)

// NewHostAccelerator returns an Accelerator whose memory is host memory: a
// reference for the device seam. Its buffers are kept apart at distinct
// addresses; fresh and freed buffers are filled with NaN, so that a read of
// memory nobody wrote shows. With kernels, it also implements Kernels with plain
// Go loops written from the Kernels contract (float64 accumulation), so that
// every device path of the engine can be checked without a GPU, and a GPU's
// kernels can be checked against it.
func NewHostAccelerator(kernels bool) Accelerator {
	a := &hostAccel{next: 1 << 20, bufs: map[Buffer][]float32{}}
	if kernels {
		return &hostKernels{a}
	}
	return a
}

type hostAccel struct {
	mu    sync.Mutex
	held  uint64 // bytes allocated
	next  Buffer
	bufs  map[Buffer][]float32
	bases []Buffer // sorted
}

func (a *hostAccel) Name() string { return "hostaccel" }

func (a *hostAccel) Alloc(n int) (Buffer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.next
	a.next += Buffer(4*n + 4096)
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	a.bufs[b] = s
	a.held += uint64(4 * n)
	a.bases = append(a.bases, b) // addresses only grow: still sorted
	return b, nil
}

// mem returns the n elements at address b, which may lie inside a buffer.
func (a *hostAccel) mem(b Buffer, n int) []float32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := sort.Search(len(a.bases), func(i int) bool { return a.bases[i] > b }) - 1
	if i >= 0 {
		base := a.bases[i]
		if s, ok := a.bufs[base]; ok {
			off := int(b-base) / 4
			if (b-base)%4 == 0 && off+n <= len(s) {
				return s[off : off+n]
			}
		}
	}
	panic(fmt.Sprintf("tensor: hostaccel: %d elements at %#x are not in an allocated buffer", n, uint64(b)))
}

func (a *hostAccel) Free(b Buffer, n int) {
	s := a.mem(b, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	a.mu.Lock()
	delete(a.bufs, b)
	a.held -= uint64(4 * n)
	i := sort.Search(len(a.bases), func(i int) bool { return a.bases[i] >= b })
	a.bases = append(a.bases[:i], a.bases[i+1:]...)
	a.mu.Unlock()
}

// hostMemory is the memory the host accelerator reports having.
const hostMemory = 1 << 30

// MemInfo reports 1 GiB of memory, less what is allocated.
func (a *hostAccel) MemInfo() (free, total uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return hostMemory - min(a.held, hostMemory), hostMemory
}

func (a *hostAccel) Upload(dst Buffer, src []float32)   { copy(a.mem(dst, len(src)), src) }
func (a *hostAccel) Download(dst []float32, src Buffer) { copy(dst, a.mem(src, len(dst))) }
func (a *hostAccel) Copy(dst, src Buffer, n int)        { copy(a.mem(dst, n), a.mem(src, n)) }
func (a *hostAccel) Sync()                              {}
func (a *hostAccel) Fill(dst Buffer, n int, v float32) {
	s := a.mem(dst, n)
	for i := range s {
		s[i] = v
	}
}

// hostKernels is hostAccel with reference kernels.
type hostKernels struct{ *hostAccel }

var _ Kernels = hostKernels{}

func (k hostKernels) Map(op MapOp, y, x Buffer, n int, p0, p1 float32) {
	ys, xs := k.mem(y, n), k.mem(x, n)
	switch op {
	case MapExp:
		expSlice(ys, xs)
		return
	case MapSigmoid:
		sigmoidSlice(ys, xs)
		return
	case MapSiLU:
		siluSlice(ys, xs)
		return
	case MapELU:
		eluSlice(ys, xs, p0)
		return
	case MapTanh:
		tanhSlice(ys, xs)
		return
	case MapSoftplus:
		softplusSlice(ys, xs)
		return
	}
	for i, v := range xs {
		var r float32
		switch op {
		case MapScale:
			r = v * p0
		case MapAddScalar:
			r = v + p0
		case MapLog:
			r = float32(math.Log(float64(v)))
		case MapSqrt:
			r = float32(math.Sqrt(float64(v)))
		case MapPow:
			if p0 == 2 {
				r = v * v
			} else {
				r = float32(math.Pow(float64(v), float64(p0)))
			}
		case MapAbs:
			r = float32(math.Abs(float64(v)))
		case MapClamp:
			r = min(max(v, p0), p1)
		case MapReLU:
			r = max(v, 0)
		default:
			panic(fmt.Sprintf("tensor: hostaccel: Map op %d", op))
		}
		ys[i] = r
	}
}

func (k hostKernels) MapGrad(op MapOp, gx, g, x, y Buffer, n int, p0, p1 float32) {
	gxs, gs := k.mem(gx, n), k.mem(g, n)
	var xs, ys []float32
	if x != 0 {
		xs = k.mem(x, n)
	}
	if y != 0 {
		ys = k.mem(y, n)
	}
	switch op {
	case MapSigmoid:
		sigmoidGradSlice(gxs, ys, gs)
		return
	case MapSiLU:
		siluGradSlice(gxs, xs, gs)
		return
	case MapELU:
		eluGradSlice(gxs, xs, gs, p0)
		return
	case MapTanh:
		tanhGradSlice(gxs, ys, gs)
		return
	case MapSoftplus:
		mulSigmoidSlice(gxs, xs, gs)
		return
	}
	for i := range gxs {
		var d float32
		switch op {
		case MapScale:
			d = p0
		case MapAddScalar:
			d = 1
		case MapExp:
			d = ys[i]
		case MapLog:
			d = 1 / xs[i]
		case MapSqrt:
			d = 0.5 / ys[i]
		case MapPow:
			if p0 == 2 {
				d = 2 * xs[i]
			} else {
				d = p0 * float32(math.Pow(float64(xs[i]), float64(p0-1)))
			}
		case MapAbs:
			switch {
			case xs[i] > 0:
				d = 1
			case xs[i] < 0:
				d = -1
			}
		case MapClamp:
			if !(xs[i] < p0 || xs[i] > p1) { // NaN passes the gradient, as the host op
				d = 1
			}
		case MapReLU:
			if xs[i] > 0 {
				d = 1
			}
		default:
			panic(fmt.Sprintf("tensor: hostaccel: MapGrad op %d", op))
		}
		gxs[i] = gs[i] * d
	}
}

// offsets calls f with the flat offsets along strides of every index of shape,
// in row-major order.
func offsets(shape []int, f func(i int, offs [2]int), st0, st1 []int) {
	n := numel(shape)
	idx := make([]int, len(shape))
	for i := 0; i < n; i++ {
		var o [2]int
		for d := range shape {
			o[0] += idx[d] * st0[d]
			if st1 != nil {
				o[1] += idx[d] * st1[d]
			}
		}
		f(i, o)
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
}

// span returns how many elements a strided walk of shape reads.
func span(shape, st []int) int {
	s := 1
	for d := range shape {
		s += (shape[d] - 1) * st[d]
	}
	return s
}

func (k hostKernels) Binary(op BinaryOp, out, a, b Buffer, shape, sa, sb []int) {
	os := k.mem(out, numel(shape))
	as, bs := k.mem(a, span(shape, sa)), k.mem(b, span(shape, sb))
	offsets(shape, func(i int, o [2]int) {
		x, y := as[o[0]], bs[o[1]]
		switch op {
		case BinaryAdd:
			os[i] = x + y
		case BinarySub:
			os[i] = x - y
		case BinaryMul:
			os[i] = x * y
		case BinaryDiv:
			os[i] = x / y
		}
	}, sa, sb)
}

func (k hostKernels) Strided(dst, src Buffer, shape, st []int) {
	ds, ss := k.mem(dst, numel(shape)), k.mem(src, span(shape, st))
	offsets(shape, func(i int, o [2]int) { ds[i] = ss[o[0]] }, st, nil)
}

func (k hostKernels) Scatter(dst Buffer, dstSt []int, src Buffer, shape []int) {
	ds, ss := k.mem(dst, span(shape, dstSt)), k.mem(src, numel(shape))
	offsets(shape, func(i int, o [2]int) { ds[o[0]] = ss[i] }, dstSt, nil)
}

func (k hostKernels) SumAxis(out, x Buffer, outer, n, inner int) {
	os, xs := k.mem(out, outer*inner), k.mem(x, outer*n*inner)
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			var s float64
			for j := 0; j < n; j++ {
				s += float64(xs[(o*n+j)*inner+i])
			}
			os[o*inner+i] = float32(s)
		}
	}
}

func (k hostKernels) GEMM(ta, tb bool, m, n, kk int, alpha float32, a Buffer, lda, strideA int,
	b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int, batch int) {
	for p := 0; p < batch; p++ {
		rowsA, colsA, rowsB, colsB := m, kk, kk, n // as stored
		if ta {
			rowsA, colsA = kk, m
		}
		if tb {
			rowsB, colsB = n, kk
		}
		as := k.mem(a.At(p*strideA), (rowsA-1)*lda+colsA)
		bs := k.mem(b.At(p*strideB), (rowsB-1)*ldb+colsB)
		cs := k.mem(c.At(p*strideC), (m-1)*ldc+n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for l := 0; l < kk; l++ {
					ia, ib := i*lda+l, l*ldb+j
					if ta {
						ia = l*lda + i
					}
					if tb {
						ib = j*ldb + l
					}
					av, bv := as[ia], bs[ib]
					s += float64(av) * float64(bv)
				}
				r := alpha * float32(s)
				if beta != 0 {
					r += beta * cs[i*ldc+j]
				}
				cs[i*ldc+j] = r
			}
		}
	}
}

// im2colIndex returns the input offset (within one image) that column row r,
// column q reads, or -1 for padding.
func (g ConvGeometry) im2colIndex(r, q int) int {
	c, t := r/(g.KH*g.KW), r%(g.KH*g.KW)
	ky, kx := t/g.KW, t%g.KW
	oy, ox := q/g.OW, q%g.OW
	iy, ix := oy*g.Stride-g.Pad+ky*g.Dil, ox*g.Stride-g.Pad+kx*g.Dil
	if iy < 0 || iy >= g.H || ix < 0 || ix >= g.W {
		return -1
	}
	return (c*g.H+iy)*g.W + ix
}

func (k hostKernels) Im2Col(cols, x Buffer, g ConvGeometry) {
	rows, q := g.C*g.KH*g.KW, g.OH*g.OW
	cs, xs := k.mem(cols, g.N*rows*q), k.mem(x, g.N*g.C*g.H*g.W)
	for n := 0; n < g.N; n++ {
		img := xs[n*g.C*g.H*g.W:]
		for r := 0; r < rows; r++ {
			for j := 0; j < q; j++ {
				v := float32(0)
				if i := g.im2colIndex(r, j); i >= 0 {
					v = img[i]
				}
				cs[(n*rows+r)*q+j] = v
			}
		}
	}
}

func (k hostKernels) Col2Im(gx, cols Buffer, g ConvGeometry) {
	rows, q, per := g.C*g.KH*g.KW, g.OH*g.OW, g.C*g.H*g.W
	cs, gs := k.mem(cols, g.N*rows*q), k.mem(gx, g.N*per)
	acc := make([]float64, per)
	for n := 0; n < g.N; n++ {
		clear(acc)
		for r := 0; r < rows; r++ {
			for j := 0; j < q; j++ {
				if i := g.im2colIndex(r, j); i >= 0 {
					acc[i] += float64(cs[(n*rows+r)*q+j])
				}
			}
		}
		for i, v := range acc {
			gs[n*per+i] = float32(v)
		}
	}
}

func (k hostKernels) GroupNorm(y, mean, rstd, x, w, b Buffer, n, c, hw, groups int, eps float32) {
	ys, xs := k.mem(y, n*c*hw), k.mem(x, n*c*hw)
	ms, rs := k.mem(mean, n*groups), k.mem(rstd, n*groups)
	ws, bs := k.affine(w, c), k.affine(b, c)
	cg := c / groups
	d := cg * hw
	for i := 0; i < n*groups; i++ {
		var s1 float64
		for _, v := range xs[i*d : (i+1)*d] {
			s1 += float64(v)
		}
		m := s1 / float64(d)
		var s2 float64
		for _, v := range xs[i*d : (i+1)*d] {
			s2 += (float64(v) - m) * (float64(v) - m)
		}
		r := 1 / math.Sqrt(s2/float64(d)+float64(eps))
		ms[i], rs[i] = float32(m), float32(r)
		for j := 0; j < d; j++ {
			ch := (i%groups)*cg + j/hw
			ys[i*d+j] = float32((float64(xs[i*d+j])-m)*r*float64(at1(ws, ch, 1)) + float64(at1(bs, ch, 0)))
		}
	}
}

// affine returns the c elements at b, or nil for no buffer.
func (k hostKernels) affine(b Buffer, c int) []float32 {
	if b == 0 {
		return nil
	}
	return k.mem(b, c)
}

func at1(s []float32, i int, def float32) float32 {
	if s == nil {
		return def
	}
	return s[i]
}

func (k hostKernels) GroupNormGrad(gx, gw, gb, g, x, mean, rstd, w Buffer, n, c, hw, groups int) {
	xs, gs := k.mem(x, n*c*hw), k.mem(g, n*c*hw)
	ms, rs := k.mem(mean, n*groups), k.mem(rstd, n*groups)
	ws := k.affine(w, c)
	cg := c / groups
	d := cg * hw
	dw, db := make([]float64, c), make([]float64, c)
	var gxs []float32
	if gx != 0 {
		gxs = k.mem(gx, n*c*hw)
	}
	for i := 0; i < n*groups; i++ {
		m, r := float64(ms[i]), float64(rs[i])
		// With xh = (x-m) r: dx = r (w g - mean(w g) - xh mean(w g xh)).
		var a, bsum float64
		for j := 0; j < d; j++ {
			ch := (i%groups)*cg + j/hw
			xh := (float64(xs[i*d+j]) - m) * r
			wg := float64(at1(ws, ch, 1)) * float64(gs[i*d+j])
			a += wg
			bsum += wg * xh
			dw[ch] += float64(gs[i*d+j]) * xh
			db[ch] += float64(gs[i*d+j])
		}
		if gxs == nil {
			continue
		}
		for j := 0; j < d; j++ {
			ch := (i%groups)*cg + j/hw
			xh := (float64(xs[i*d+j]) - m) * r
			wg := float64(at1(ws, ch, 1)) * float64(gs[i*d+j])
			gxs[i*d+j] = float32(r * (wg - a/float64(d) - xh*bsum/float64(d)))
		}
	}
	for ch := 0; ch < c; ch++ {
		if gw != 0 {
			k.mem(gw, c)[ch] = float32(dw[ch])
		}
		if gb != 0 {
			k.mem(gb, c)[ch] = float32(db[ch])
		}
	}
}

func (k hostKernels) Softmax(y, x Buffer, outer, n, inner int, log bool) {
	ys, xs := k.mem(y, outer*n*inner), k.mem(x, outer*n*inner)
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			at := func(j int) int { return (o*n+j)*inner + i }
			m := xs[at(0)]
			for j := 1; j < n; j++ {
				if v := xs[at(j)]; v > m || v != v {
					m = v
				}
			}
			var s float64
			for j := 0; j < n; j++ {
				s += math.Exp(float64(xs[at(j)] - m))
			}
			for j := 0; j < n; j++ {
				if log {
					ys[at(j)] = (xs[at(j)] - m) - float32(math.Log(s))
				} else {
					ys[at(j)] = float32(math.Exp(float64(xs[at(j)]-m)) / s)
				}
			}
		}
	}
}

func (k hostKernels) SoftmaxGrad(gx, g, y Buffer, outer, n, inner int, log bool) {
	gxs, gs, ys := k.mem(gx, outer*n*inner), k.mem(g, outer*n*inner), k.mem(y, outer*n*inner)
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			at := func(j int) int { return (o*n+j)*inner + i }
			var s float64
			for j := 0; j < n; j++ {
				if log {
					s += float64(gs[at(j)])
				} else {
					s += float64(gs[at(j)]) * float64(ys[at(j)])
				}
			}
			for j := 0; j < n; j++ {
				if log {
					gxs[at(j)] = float32(float64(gs[at(j)]) - math.Exp(float64(ys[at(j)]))*s)
				} else {
					gxs[at(j)] = float32(float64(ys[at(j)]) * (float64(gs[at(j)]) - s))
				}
			}
		}
	}
}

func (k hostKernels) Upsample(out, x Buffer, p, h, w, s int) {
	os, xs := k.mem(out, p*h*s*w*s), k.mem(x, p*h*w)
	for pl := 0; pl < p; pl++ {
		for oy := 0; oy < h*s; oy++ {
			for ox := 0; ox < w*s; ox++ {
				os[(pl*h*s+oy)*w*s+ox] = xs[(pl*h+oy/s)*w+ox/s]
			}
		}
	}
}

func (k hostKernels) MaxPool(out, arg, x Buffer, g PoolGeometry) {
	os, as, xs := k.mem(out, g.P*g.OH*g.OW), k.mem(arg, g.P*g.OH*g.OW), k.mem(x, g.P*g.H*g.W)
	for pl := 0; pl < g.P; pl++ {
		for oy := 0; oy < g.OH; oy++ {
			y0, y1 := max(oy*g.S-g.Pad, 0), min(oy*g.S-g.Pad+g.K, g.H)
			for ox := 0; ox < g.OW; ox++ {
				x0, x1 := max(ox*g.S-g.Pad, 0), min(ox*g.S-g.Pad+g.K, g.W)
				best, bi := float32(math.Inf(-1)), y0*g.W+x0
				for iy := y0; iy < y1; iy++ {
					for ix := x0; ix < x1; ix++ {
						if v := xs[pl*g.H*g.W+iy*g.W+ix]; v > best || v != v {
							best, bi = v, iy*g.W+ix
						}
					}
				}
				o := (pl*g.OH+oy)*g.OW + ox
				os[o], as[o] = best, math.Float32frombits(uint32(int32(bi)))
			}
		}
	}
}

func (k hostKernels) MaxPoolGrad(gx, g, arg Buffer, pg PoolGeometry) {
	gxs, gs, as := k.mem(gx, pg.P*pg.H*pg.W), k.mem(g, pg.P*pg.OH*pg.OW), k.mem(arg, pg.P*pg.OH*pg.OW)
	for pl := 0; pl < pg.P; pl++ {
		for iy := 0; iy < pg.H; iy++ {
			for ix := 0; ix < pg.W; ix++ {
				var sum float32
				for oy := 0; oy < pg.OH; oy++ {
					if y0 := oy*pg.S - pg.Pad; iy < y0 || iy >= y0+pg.K {
						continue
					}
					for ox := 0; ox < pg.OW; ox++ {
						if x0 := ox*pg.S - pg.Pad; ix < x0 || ix >= x0+pg.K {
							continue
						}
						o := (pl*pg.OH+oy)*pg.OW + ox
						if int(int32(math.Float32bits(as[o]))) == iy*pg.W+ix {
							sum += gs[o]
						}
					}
				}
				gxs[(pl*pg.H+iy)*pg.W+ix] = sum
			}
		}
	}
}

func (k hostKernels) UpsampleGrad(gx, g Buffer, p, h, w, s int) {
	gxs, gs := k.mem(gx, p*h*w), k.mem(g, p*h*s*w*s)
	for pl := 0; pl < p; pl++ {
		for iy := 0; iy < h; iy++ {
			for ix := 0; ix < w; ix++ {
				var sum float64
				for dy := 0; dy < s; dy++ {
					for dx := 0; dx < s; dx++ {
						sum += float64(gs[(pl*h*s+iy*s+dy)*w*s+ix*s+dx])
					}
				}
				gxs[(pl*h+iy)*w+ix] = float32(sum)
			}
		}
	}
}

func (k hostKernels) GridSample(out, x, grid Buffer, g GridGeometry) {
	hw := g.H * g.W
	os, xs := k.mem(out, g.N*g.C*g.P), k.mem(x, g.N*g.C*hw)
	pts, _, _ := gridPoints(k.mem(grid, g.N*g.P*2), g)
	for i, pt := range pts {
		b, q := i/g.P, i%g.P
		e, s := 1-pt.w, 1-pt.n
		nw, ne, sw, se := s*e, s*pt.w, pt.n*e, pt.n*pt.w
		for ch := 0; ch < g.C; ch++ {
			img := xs[(b*g.C+ch)*hw : (b*g.C+ch+1)*hw]
			v := fusedMulAdd32(gridAt(img, pt.x0+1, pt.y0, g.W, g.H), ne, gridAt(img, pt.x0, pt.y0, g.W, g.H)*nw)
			v = fusedMulAdd32(gridAt(img, pt.x0, pt.y0+1, g.W, g.H), sw, v)
			os[(b*g.C+ch)*g.P+q] = fusedMulAdd32(gridAt(img, pt.x0+1, pt.y0+1, g.W, g.H), se, v)
		}
	}
}

// GridSampleGradX gathers, for each pixel, the contributions the host's scatter
// adds to it, in the same order (blocks of gridBlock points, corner by corner).
func (k hostKernels) GridSampleGradX(gx, g, grid Buffer, gg GridGeometry) {
	hw := gg.H * gg.W
	gxs, gs := k.mem(gx, gg.N*gg.C*hw), k.mem(g, gg.N*gg.C*gg.P)
	pts, _, _ := gridPoints(k.mem(grid, gg.N*gg.P*2), gg)
	for pl := 0; pl < gg.N*gg.C; pl++ {
		b := pl / gg.C
		gp := gs[pl*gg.P : (pl+1)*gg.P]
		for iy := 0; iy < gg.H; iy++ {
			for ix := 0; ix < gg.W; ix++ {
				var sum float32
				for q0 := 0; q0 < gg.P; q0 += gridBlock {
					blk := pts[b*gg.P+q0 : b*gg.P+min(q0+gridBlock, gg.P)]
					for corner := 0; corner < 4; corner++ {
						dx, dy := corner%2, corner/2
						for kk, pt := range blk {
							if pt.x0+dx != ix || pt.y0+dy != iy {
								continue
							}
							wx, wy := 1-pt.w, 1-pt.n
							if dx == 1 {
								wx = pt.w
							}
							if dy == 1 {
								wy = pt.n
							}
							sum += float32(wy * wx * gp[q0+kk])
						}
					}
				}
				gxs[pl*hw+iy*gg.W+ix] = sum
			}
		}
	}
}

func (k hostKernels) GridSampleGradGrid(ggrid, g, x, grid Buffer, gg GridGeometry) {
	hw := gg.H * gg.W
	ggs, gs, xs := k.mem(ggrid, gg.N*gg.P*2), k.mem(g, gg.N*gg.C*gg.P), k.mem(x, gg.N*gg.C*hw)
	pts, multX, multY := gridPoints(k.mem(grid, gg.N*gg.P*2), gg)
	for i, pt := range pts {
		b, q := i/gg.P, i%gg.P
		e, s := 1-pt.w, 1-pt.n
		var dx, dy float32
		for ch := 0; ch < gg.C; ch++ {
			img := xs[(b*gg.C+ch)*hw : (b*gg.C+ch+1)*hw]
			gv := gs[(b*gg.C+ch)*gg.P+q]
			vnw, vne := gridAt(img, pt.x0, pt.y0, gg.W, gg.H), gridAt(img, pt.x0+1, pt.y0, gg.W, gg.H)
			vsw, vse := gridAt(img, pt.x0, pt.y0+1, gg.W, gg.H), gridAt(img, pt.x0+1, pt.y0+1, gg.W, gg.H)
			dx = fusedMulAdd32(fusedMulAdd32(vse-vsw, pt.n, (vne-vnw)*s), gv, dx)
			dy = fusedMulAdd32(fusedMulAdd32(vse-vne, pt.w, (vsw-vnw)*e), gv, dy)
		}
		ggs[2*i] = dx * multX
		ggs[2*i+1] = dy * multY
	}
}
