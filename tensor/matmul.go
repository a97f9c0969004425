package tensor

import "fmt"

// gemmInto computes c = alpha*op(a)*op(b) + beta*c for row-major matrices, where a
// is m x k (k x m when ta) and b is k x n (n x k when tb), on the device's GEMM.
func (d *Device) gemmInto(serial, ta, tb bool, m, n, k int, alpha float32, a, b []float32, beta float32, c []float32) {
	lda, ldb := k, n
	if ta {
		lda = m
	}
	if tb {
		ldb = k
	}
	g := d.gemm
	if serial {
		g = d.serial
	}
	g.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, n)
}

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
func MatMul(a, b *Tensor) *Tensor {
	ra, rb := len(a.shape), len(b.shape)
	if ra < 2 || rb < 2 {
		panic(fmt.Sprintf("tensor: MatMul: shapes %v and %v need at least 2 axes", a.shape, b.shape))
	}
	m, k := a.shape[ra-2], a.shape[ra-1]
	k2, n := b.shape[rb-2], b.shape[rb-1]
	batch := numel(a.shape[:ra-2])
	shared := rb == 2
	if k != k2 || (!shared && !sameShape(a.shape[:ra-2], b.shape[:rb-2])) {
		panic(fmt.Sprintf("tensor: MatMul: shapes %v and %v do not match", a.shape, b.shape))
	}
	if shared {
		// One big product: [batch*m, k] x [k, n].
		m, batch = m*batch, 1
	}
	shape := append(cloneInts(a.shape[:ra-1]), n)
	out := empty(a.dev, shape...)
	d := a.dev
	sl := func(x []float32, size int) func(int) []float32 {
		return func(i int) []float32 { return x[i*size : (i+1)*size] }
	}
	d.batchedGemm(batch, false, false, m, n, k, sl(a.data, m*k), sl(b.data, k*n), sl(out.data, m*n), 0)
	return record(out, "MatMul", []*Tensor{a, b}, func(g *Tensor) []*Tensor {
		var ga, gb *Tensor
		if needs(a) {
			// dA = dC B^T
			ga = empty(d, a.shape...)
			d.batchedGemm(batch, false, true, m, k, n, sl(g.data, m*n), sl(b.data, k*n), sl(ga.data, m*k), 0)
		}
		if needs(b) {
			// dB = A^T dC (summed over the batch when b is shared)
			gb = empty(d, b.shape...)
			d.batchedGemm(batch, true, false, k, n, m, sl(a.data, m*k), sl(g.data, m*n), sl(gb.data, k*n), 0)
		}
		return []*Tensor{ga, gb}
	})
}

// Linear applies x [..., in] -> x W^T + bias with W [out, in] and bias [out] (may be nil).
func Linear(x, w, bias *Tensor) *Tensor {
	if len(w.shape) != 2 || x.shape[len(x.shape)-1] != w.shape[1] {
		panic(fmt.Sprintf("tensor: Linear: input %v, weight %v", x.shape, w.shape))
	}
	in, outF := w.shape[1], w.shape[0]
	rows := len(x.data) / max(in, 1)
	shape := append(cloneInts(x.shape[:len(x.shape)-1]), outF)
	out := empty(x.dev, shape...)
	d := x.dev
	if bias != nil {
		for r := 0; r < rows; r++ {
			copy(out.data[r*outF:(r+1)*outF], bias.data)
		}
	}
	beta := float32(0)
	if bias != nil {
		beta = 1
	}
	d.gemmInto(false, false, true, rows, outF, in, 1, x.data, w.data, beta, out.data)
	return record(out, "Linear", []*Tensor{x, w, bias}, func(g *Tensor) []*Tensor {
		var gx, gw, gb *Tensor
		if needs(x) {
			gx = empty(d, x.shape...)
			d.gemmInto(false, false, false, rows, in, outF, 1, g.data, w.data, 0, gx.data)
		}
		if needs(w) {
			gw = empty(d, w.shape...)
			d.gemmInto(false, true, false, outF, in, rows, 1, g.data, x.data, 0, gw.data)
		}
		if needs(bias) {
			gb = sumTo(&Tensor{dev: d, shape: []int{rows, outF}, data: g.data}, []int{outF})
		}
		return []*Tensor{gx, gw, gb}
	})
}
