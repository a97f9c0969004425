package gemm

import (
	"sync"
	"unsafe"
)

// Micro-tile and cache-block sizes of the pure-Go implementation.
const (
	mr = 6   // rows of the micro-tile (A micro-panel height)
	nr = 16  // columns of the micro-tile (B micro-panel width, 2 YMM)
	kc = 256 // depth of a packed block: a B micro-panel (kc*nr*4 = 16 KiB) stays in L1
	mc = 144 // rows of a packed A block (mc*kc*4 = 144 KiB) kept in L2
	nc = 1024
	// parMinFMAs is the size (m*n*k) under which a call runs on one goroutine.
	parMinFMAs = 48 * 48 * 48
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
	var wg sync.WaitGroup
	if n >= m {
		// Split the columns of C (and of op(B)) into t chunks of whole micro-panels.
		panels := (n + nr - 1) / nr
		chunk := (panels + t - 1) / t * nr
		for j0 := chunk; j0 < n; j0 += chunk {
			nn := min(chunk, n-j0)
			boff := j0
			if transB {
				boff = j0 * ldb
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.serial(transA, transB, m, nn, k, alpha, a, lda, b[boff:], ldb, beta, c[j0:], ldc)
			}()
		}
		g.serial(transA, transB, m, min(chunk, n), k, alpha, a, lda, b, ldb, beta, c, ldc)
	} else {
		// Split the rows of C (and of op(A)).
		panels := (m + mr - 1) / mr
		chunk := (panels + t - 1) / t * mr
		for i0 := chunk; i0 < m; i0 += chunk {
			mm := min(chunk, m-i0)
			aoff := i0 * lda
			if transA {
				aoff = i0
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.serial(transA, transB, mm, n, k, alpha, a[aoff:], lda, b, ldb, beta, c[i0*ldc:], ldc)
			}()
		}
		g.serial(transA, transB, min(chunk, m), n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
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

	kb := min(kc, k)
	mb := min(mc, roundUp(m, mr))
	nb := min(nc, roundUp(n, nr))
	// The slack lets the assembly packers write a few elements past a panel.
	ap := alignedSlice(&ws.abuf, mb*kb+16)
	bp := alignedSlice(&ws.bbuf, nb*kb+16)
	avx := g.avx2

	for p0 := 0; p0 < k; p0 += kc {
		kk := min(kc, k-p0)
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
// micro-panels (a: kk x 6, b: kk x 16). When beta == 0, C is not read.
func kernelGeneric(kk int, a, b, c []float32, ldc int, alpha, beta float32) {
	var acc [mr][nr]float32
	a = a[:kk*mr]
	b = b[:kk*nr]
	for p := 0; p < kk; p++ {
		bb := (*[nr]float32)(b[p*nr:])
		aa := (*[mr]float32)(a[p*mr:])
		for i := range mr {
			ai := aa[i]
			row := &acc[i]
			for j := range nr {
				row[j] += ai * bb[j]
			}
		}
	}
	for i := range mr {
		crow := (*[nr]float32)(c[i*ldc:])
		if beta == 0 {
			for j := range nr {
				crow[j] = alpha * acc[i][j]
			}
		} else {
			for j := range nr {
				crow[j] = alpha*acc[i][j] + beta*crow[j]
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
