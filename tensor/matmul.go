package tensor

import "fmt"

// gemmInto computes c = alpha*op(a)*op(b) + beta*c for contiguous row-major
// matrices, where a is m x k (k x m when ta) and b is k x n (n x k when tb).
func (d *Device) gemmInto(serial, ta, tb bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) {
	lda, ldb := k, n
	if ta {
		lda = m
	}
	if tb {
		ldb = k
	}
	d.gemmLd(serial, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
}

// gemmLd is gemmInto with explicit row strides. Large products are split over the
// device's goroutines unless serial.
func (d *Device) gemmLd(serial, ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if serial || d.threads == 1 || m*n*k < parallelGemmFMAs {
		d.serial.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// Split the larger of m and n into blocks that the device's goroutines take in
	// turn, each computed by the single-threaded GEMM: no BLAS threads of its own
	// compete with the engine's goroutines.
	splitN := n >= m
	size, align := m, 6
	if splitN {
		size, align = n, 16
	}
	chunks := min(4*d.threads, (size+align-1)/align)
	per := (size + chunks - 1) / chunks
	per = (per + align - 1) / align * align
	chunks = (size + per - 1) / per
	d.parallelDynamic(chunks, func(j int) {
		lo := j * per
		hi := min(size, lo+per)
		if splitN {
			bo := lo // column lo of op(B)
			if tb {
				bo = lo * ldb
			}
			d.serial.Sgemm(ta, tb, m, hi-lo, k, alpha, a, lda, b[bo:], ldb, beta, c[lo:], ldc)
			return
		}
		ao := lo * lda // row lo of op(A)
		if ta {
			ao = lo
		}
		d.serial.Sgemm(ta, tb, hi-lo, n, k, alpha, a[ao:], lda, b, ldb, beta, c[lo*ldc:], ldc)
	})
}

// parallelGemmFMAs is the product size (m*n*k) above which one GEMM is split over
// the device's goroutines.
const parallelGemmFMAs = 64 * 64 * 64

// batchedGemm runs count independent products, in parallel over goroutines when
// there are several, each with the serial GEMM.
func (d *Device) batchedGemm(count int, ta, tb bool, m, n, k int, a func(i int) []float32, b func(i int) []float32, c func(i int) []float32, beta float32) {
	if count == 1 {
		d.gemmInto(false, ta, tb, m, n, k, 1, a(0), b(0), beta, c(0))
		return
	}
	d.parallel(count, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d.gemmInto(true, ta, tb, m, n, k, 1, a(i), b(i), beta, c(i))
		}
	})
}

// MatMul multiplies matrices: a [..., m, k] times b [..., k, n] gives [..., m, n].
// The batch axes must be equal, or b may be a plain matrix [k, n] shared by all.
func MatMul(a, b *Tensor) *Tensor { return MatMulT(a, b, false, false) }

// MatMulT multiplies op(a) by op(b), where op transposes the last two axes when the
// corresponding flag is set, without materialising the transposes: with ta, a is
// [..., k, m]; with tb, b is [..., n, k]. The batch axes must be equal, or b may be a
// plain matrix shared by every batch item.
func MatMulT(a, b *Tensor, ta, tb bool) *Tensor {
	ra, rb := len(a.shape), len(b.shape)
	if ra < 2 || rb < 2 {
		panic(fmt.Sprintf("tensor: MatMul: shapes %v and %v need at least 2 axes", a.shape, b.shape))
	}
	m, k := a.shape[ra-2], a.shape[ra-1]
	if ta {
		m, k = k, m
	}
	k2, n := b.shape[rb-2], b.shape[rb-1]
	if tb {
		k2, n = n, k2
	}
	batch := numel(a.shape[:ra-2])
	shared := rb == 2
	if k != k2 || (!shared && !sameShape(a.shape[:ra-2], b.shape[:rb-2])) {
		panic(fmt.Sprintf("tensor: MatMul: shapes %v and %v (transposed %v, %v) do not match", a.shape, b.shape, ta, tb))
	}
	bs := k * n
	if shared {
		bs = 0
		if !ta && batch > 1 {
			// One big product: [batch*m, k] x [k, n].
			m, batch = m*batch, 1
		}
	}
	shape := append(cloneInts(a.shape[:ra-2]), m, n)
	if shared && !ta {
		shape = append(cloneInts(a.shape[:ra-1]), n)
	}
	out := empty(a.dev, shape...)
	d := a.dev
	if d.kern != nil {
		return matMulDev(a, b, out, ta, tb, m, n, k, batch, bs, shared)
	}
	sl := func(x []float32, size int) func(int) []float32 {
		if size == 0 {
			return func(int) []float32 { return x }
		}
		return func(i int) []float32 { return x[i*size : (i+1)*size] }
	}
	d.batchedGemm(batch, ta, tb, m, n, k, sl(a.h(), m*k), sl(b.h(), bs), sl(out.h(), m*n), 0)
	return record(out, "MatMul", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if needs(a) {
			ga = empty(d, a.shape...)
			if !ta {
				// dA = dC op(B)^T
				d.batchedGemm(batch, false, !tb, m, k, n, sl(g.h(), m*n), sl(b.h(), bs), sl(ga.h(), m*k), 0)
			} else {
				// A is stored [k, m]: dA = op(B) dC^T
				d.batchedGemm(batch, tb, true, k, m, n, sl(b.h(), bs), sl(g.h(), m*n), sl(ga.h(), m*k), 0)
			}
		}
		if needs(b) {
			gb = New(d, b.shape...)
			if shared && batch > 1 {
				// Sum the per-item gradients of the shared matrix.
				for i := 0; i < batch; i++ {
					gradB(d, ta, tb, m, n, k, a.h()[i*m*k:(i+1)*m*k], g.h()[i*m*n:(i+1)*m*n], gb.h(), 1)
				}
			} else {
				d.parallel(batch, 1, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						gradBSerial(d, batch > 1, ta, tb, m, n, k, a.h()[i*m*k:(i+1)*m*k], g.h()[i*m*n:(i+1)*m*n], gb.h()[i*k*n:(i+1)*k*n])
					}
				})
			}
		}
		return []*Tensor{ga, gb}
	})
}

// gradB accumulates the gradient of op(B) for one product into gb (beta = 1 adds).
func gradB(d *Device, ta, tb bool, m, n, k int, a, g, gb []float32, beta float32) {
	if !tb {
		// dB [k, n] = op(A)^T dC
		d.gemmInto(false, !ta, false, k, n, m, 1, a, g, beta, gb)
	} else {
		// B is stored [n, k]: dB = dC^T op(A)
		d.gemmInto(false, true, ta, n, k, m, 1, g, a, beta, gb)
	}
}

func gradBSerial(d *Device, serial, ta, tb bool, m, n, k int, a, g, gb []float32) {
	if !tb {
		d.gemmInto(serial, !ta, false, k, n, m, 1, a, g, 0, gb)
	} else {
		d.gemmInto(serial, true, ta, n, k, m, 1, g, a, 0, gb)
	}
}

// Linear applies x [..., in] -> x W^T + bias with W [out, in] and bias [out] (may be nil).
func Linear(x, w, bias *Tensor) *Tensor {
	if len(w.shape) != 2 || x.shape[len(x.shape)-1] != w.shape[1] {
		panic(fmt.Sprintf("tensor: Linear: input %v, weight %v", x.shape, w.shape))
	}
	in, outF := w.shape[1], w.shape[0]
	rows := x.Len() / max(in, 1)
	shape := append(cloneInts(x.shape[:len(x.shape)-1]), outF)
	out := empty(x.dev, shape...)
	d := x.dev
	if d.kern != nil {
		return linearDev(x, w, bias, out, rows, in, outF)
	}
	if bias != nil {
		for r := 0; r < rows; r++ {
			copy(out.h()[r*outF:(r+1)*outF], bias.h())
		}
	}
	beta := float32(0)
	if bias != nil {
		beta = 1
	}
	d.gemmInto(false, false, true, rows, outF, in, 1, x.h(), w.h(), beta, out.h())
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
			d.gemmInto(false, false, false, rows, in, outF, 1, g.h(), keepW.h(), 0, gx.h())
		}
		if nw {
			gw = empty(d, ws...)
			d.gemmInto(false, true, false, outF, in, rows, 1, g.h(), keepX.h(), 0, gw.h())
		}
		if nb {
			gb = sumTo(g.view([]int{rows, outF}), []int{outF})
		}
		return []*Tensor{gx, gw, gb}
	})
}
