package gemm

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Micro-tile and cache-block sizes of the pure-Go implementation.
const (
	mr = 6    // rows of the micro-tile (A micro-panel height)
	nr = 16   // columns of the micro-tile (B micro-panel width, 2 YMM)
	kc = 256  // depth of a packed block: a B micro-panel (kc*nr*4 = 16 KiB) stays in L1
	mc = 144  // rows of a packed A block (mc*kc*4 = 144 KiB) kept in L2
	nc = 1024 // columns of a packed B block (kc*nc*4 = 1 MiB), in L2/L3
	// parMinFMAs is the size (m*n*k) under which a call runs on one goroutine.
	parMinFMAs = 48 * 48 * 48
	// chunksPerThread is how many chunks per goroutine a parallel call aims for.
	chunksPerThread = 4
)

// goImpl is the pure-Go SGEMM.
type goImpl struct {
	threads int
	avx2    bool
}

// NewGo returns the pure-Go implementation using up to threads goroutines
// per call (<= 0 means runtime.NumCPU()). Its name is "go-avx2" when the
// CPU has AVX2 and FMA, "go-generic" otherwise.
func NewGo(threads int) Impl {
	return &goImpl{threads: normThreads(threads), avx2: haveAVX2FMA}
}

// newGoGeneric returns the portable implementation (for tests and benchmarks).
func newGoGeneric(threads int) Impl {
	return &goImpl{threads: normThreads(threads)}
}

// Name implements Impl.
func (g *goImpl) Name() string {
	if g.avx2 {
		return "go-avx2"
	}
	return "go-generic"
}

// Serial implements Impl.
func (g *goImpl) Serial() Impl {
	if g.threads == 1 {
		return g
	}
	return &goImpl{threads: 1, avx2: g.avx2}
}

// Sgemm implements Impl.
func (g *goImpl) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	t := g.threads
	if t <= 1 || m*n*k < parMinFMAs {
		g.serial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	g.parallel(t, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// parallel splits C into chunks of whole micro-panels along n (or along m
// when m > n) and lets up to t goroutines, the caller included, take
// chunks in turn. Several chunks per goroutine keep all of them busy when
// some cores are slower or shared; each chunk packs the whole of the other
// operand, so chunks keep a minimum size that makes that cheap.
func (g *goImpl) parallel(t int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	splitN := n >= m
	size, unit, minUnits := m, mr, 16
	if splitN {
		size, unit, minUnits = n, nr, 8
	}
	units := (size + unit - 1) / unit
	per := max(minUnits, (units+chunksPerThread*t-1)/(chunksPerThread*t))
	chunk := per * unit
	chunks := (size + chunk - 1) / chunk
	t = min(t, chunks)
	var next atomic.Int32
	work := func() {
		for {
			x := int(next.Add(1)) - 1
			if x >= chunks {
				return
			}
			o := x * chunk
			l := min(chunk, size-o)
			if splitN {
				boff := o
				if transB {
					boff = o * ldb
				}
				g.serial(transA, transB, m, l, k, alpha, a, lda, b[boff:], ldb, beta, c[o:], ldc)
			} else {
				aoff := o * lda
				if transA {
					aoff = o
				}
				g.serial(transA, transB, l, n, k, alpha, a[aoff:], lda, b, ldb, beta, c[o*ldc:], ldc)
			}
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < t; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// workspace holds the packing buffers of one serial computation.
type workspace struct {
	abuf, bbuf []float32
	a, b       []float32 // 64-byte aligned views of abuf and bbuf
	tmp        [mr * nr]float32
}

var wsPool = sync.Pool{New: func() any { return new(workspace) }}

// alignedSlice returns a 64-byte aligned slice of length n, reusing buf if
// it is large enough.
func alignedSlice(buf *[]float32, n int) []float32 {
	const pad = 16 // 64 bytes
	if cap(*buf) < n+pad {
		*buf = make([]float32, n+pad)
	}
	s := (*buf)[:cap(*buf)]
	off := 0
	if r := uintptr(unsafe.Pointer(&s[0])) & 63; r != 0 {
		off = int(64-r) / 4
	}
	return s[off : off+n]
}

// serial computes the product on the calling goroutine. Arguments are valid,
// m, n, k > 0 and alpha != 0.
func (g *goImpl) serial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ws := wsPool.Get().(*workspace)
	defer wsPool.Put(ws)

	// Split k into equal blocks of at most kc (a multiple of 8, which suits
	// the packers) rather than leaving a short last block.
	nk := (k + kc - 1) / kc
	kstep := roundUp((k+nk-1)/nk, 8)
	kb := min(kstep, k)
	mb := min(mc, roundUp(m, mr))
	nb := min(nc, roundUp(n, nr))
	// The slack lets the assembly packers write a few elements past a panel.
	ap := alignedSlice(&ws.abuf, mb*kb+16)
	bp := alignedSlice(&ws.bbuf, nb*kb+16)
	avx := g.avx2

	for p0 := 0; p0 < k; p0 += kstep {
		kk := min(kstep, k-p0)
		bet := beta
		if p0 > 0 {
			bet = 1
		}
		aOnce := m <= mc
		if aOnce {
			packA(avx, ap, a[offA(transA, 0, p0, lda):], lda, transA, m, kk)
		}
		for j0 := 0; j0 < n; j0 += nc {
			nn := min(nc, n-j0)
			packB(avx, bp, b[offB(transB, p0, j0, ldb):], ldb, transB, kk, nn)
			for i0 := 0; i0 < m; i0 += mc {
				mm := min(mc, m-i0)
				if !aOnce {
					packA(avx, ap, a[offA(transA, i0, p0, lda):], lda, transA, mm, kk)
				}
				macroKernel(avx, ws, mm, nn, kk, alpha, ap, bp, bet, c[i0*ldc+j0:], ldc)
			}
		}
	}
}

func roundUp(x, r int) int { return (x + r - 1) / r * r }

// offA returns the index of element (i,p) of op(A).
func offA(trans bool, i, p, lda int) int {
	if trans {
		return p*lda + i
	}
	return i*lda + p
}

// offB returns the index of element (p,j) of op(B).
func offB(trans bool, p, j, ldb int) int {
	if trans {
		return j*ldb + p
	}
	return p*ldb + j
}

// macroKernel multiplies a packed mm x kk block of A by a packed kk x nn
// block of B into C (offset to the block's first element).
func macroKernel(avx bool, ws *workspace, mm, nn, kk int, alpha float32, ap, bp []float32, beta float32, c []float32, ldc int) {
	for j := 0; j < nn; j += nr {
		cols := min(nr, nn-j)
		bpan := bp[j*kk : j*kk+nr*kk]
		for i := 0; i < mm; i += mr {
			rows := min(mr, mm-i)
			apan := ap[i*kk : i*kk+mr*kk]
			off := i*ldc + j
			if rows == mr && cols == nr {
				cc := c[off : off+(mr-1)*ldc+nr]
				if avx {
					kernelAVX2(kk, &apan[0], &bpan[0], &cc[0], ldc, alpha, beta)
				} else {
					kernelGeneric(kk, apan, bpan, cc, ldc, alpha, beta)
				}
				continue
			}
			t := ws.tmp[:]
			if avx {
				kernelAVX2(kk, &apan[0], &bpan[0], &t[0], nr, 1, 0)
			} else {
				kernelGeneric(kk, apan, bpan, t, nr, 1, 0)
			}
			for r := 0; r < rows; r++ {
				crow := c[off+r*ldc : off+r*ldc+cols]
				trow := t[r*nr : r*nr+cols]
				if beta == 0 {
					for x, v := range trow {
						crow[x] = alpha * v
					}
				} else {
					for x, v := range trow {
						crow[x] = alpha*v + beta*crow[x]
					}
				}
			}
		}
	}
}

// kernelGeneric computes the 6x16 tile C = alpha*A*B + beta*C from packed
// micro-panels (a: kk x 6, b: kk x 16). When beta == 0, C is not read. It
// works on 3x4 sub-tiles so that the accumulators stay in registers.
func kernelGeneric(kk int, a, b, c []float32, ldc int, alpha, beta float32) {
	a = a[:kk*mr]
	b = b[:kk*nr]
	for i0 := 0; i0 < mr; i0 += 3 {
		for j0 := 0; j0 < nr; j0 += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23 float32
			for p := 0; p < kk; p++ {
				ap := (*[3]float32)(a[p*mr+i0:])
				bp := (*[4]float32)(b[p*nr+j0:])
				a0, a1, a2 := ap[0], ap[1], ap[2]
				b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				c20 += a2 * b0
				c21 += a2 * b1
				c22 += a2 * b2
				c23 += a2 * b3
			}
			rows := [3][4]float32{{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}}
			for r := range 3 {
				crow := (*[4]float32)(c[(i0+r)*ldc+j0:])
				if beta == 0 {
					for x := range 4 {
						crow[x] = alpha * rows[r][x]
					}
				} else {
					for x := range 4 {
						crow[x] = alpha*rows[r][x] + beta*crow[x]
					}
				}
			}
		}
	}
}

// packA packs the mm x kk block of op(A) whose first element is a[0] into
// 6-row micro-panels: panel q holds rows 6q..6q+5 as dst[q*6*kk + p*6 + r],
// zero-padded to 6 rows.
func packA(avx bool, dst, a []float32, lda int, trans bool, mm, kk int) {
	i0 := 0
	if trans && avx && mm >= mr {
		// Whole panels at once, reading A row by row (contiguous).
		np := mm / mr
		_ = a[(kk-1)*lda+np*mr-1]
		_ = dst[np*mr*kk-1]
		packAT6Block(&dst[0], &a[0], lda, kk, np)
		i0 = np * mr
	}
	for i := i0; i < mm; i += mr {
		rows := min(mr, mm-i)
		d := dst[i*kk : i*kk+mr*kk]
		if trans {
			src := a[i:]
			for p := 0; p < kk; p++ {
				s := src[p*lda : p*lda+rows]
				o := d[p*mr : p*mr+mr]
				copy(o, s)
				clear(o[rows:])
			}
			continue
		}
		src := a[i*lda:]
		if rows == mr {
			p := 0
			if avx && kk >= 8 {
				packAN6AVX(&d[0], &src[0], lda, kk/8)
				p = kk &^ 7
			}
			r0 := src[0*lda : 0*lda+kk]
			r1 := src[1*lda : 1*lda+kk]
			r2 := src[2*lda : 2*lda+kk]
			r3 := src[3*lda : 3*lda+kk]
			r4 := src[4*lda : 4*lda+kk]
			r5 := src[5*lda : 5*lda+kk]
			for ; p < kk; p++ {
				o := (*[mr]float32)(d[p*mr:])
				o[0], o[1], o[2], o[3], o[4], o[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
			continue
		}
		clear(d)
		for r := 0; r < rows; r++ {
			s := src[r*lda : r*lda+kk]
			for p, v := range s {
				d[p*mr+r] = v
			}
		}
	}
}

// packB packs the kk x nn block of op(B) whose first element is b[0] into
// 16-column micro-panels: panel q holds columns 16q..16q+15 as
// dst[q*16*kk + p*16 + j], zero-padded to 16 columns.
func packB(avx bool, dst, b []float32, ldb int, trans bool, kk, nn int) {
	for j := 0; j < nn; j += nr {
		cols := min(nr, nn-j)
		d := dst[j*kk : j*kk+nr*kk]
		if !trans {
			src := b[j:]
			if cols == nr {
				if avx {
					_ = src[(kk-1)*ldb+nr-1]
					packBN16AVX(&d[0], &src[0], ldb, kk)
					continue
				}
				for p := 0; p < kk; p++ {
					copy(d[p*nr:p*nr+nr], src[p*ldb:p*ldb+nr])
				}
				continue
			}
			for p := 0; p < kk; p++ {
				o := d[p*nr : p*nr+nr]
				copy(o, src[p*ldb:p*ldb+cols])
				clear(o[cols:])
			}
			continue
		}
		src := b[j*ldb:]
		p := 0
		if avx && cols == nr && kk >= 8 {
			_ = src[15*ldb+kk-1]
			packBT16AVX(&d[0], &src[0], ldb, kk/8)
			p = kk &^ 7
		}
		if cols < nr {
			clear(d)
		}
		for r := 0; r < cols; r++ {
			s := src[r*ldb+p : r*ldb+kk]
			for x, v := range s {
				d[(p+x)*nr+r] = v
			}
		}
	}
}
