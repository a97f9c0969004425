package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// attentionPoolRef composes AttentionPool from primitive ops.
func attentionPoolRef(q, k, v, f *Tensor) (out, weights *Tensor) {
	logits := MatMul(q, k) // [B, N, S] with q shared: (k^T q^T)^T
	weights = Softmax(logits, 2)
	y := MatMulT(weights, v, false, true) // [B, N, E]
	return Sum(Mul(y, f), false, 2), weights
}

func TestAttentionPool(t *testing.T) {
	for _, tc := range []struct {
		name             string
		b, n, e, s       int
		threads          int
		zeroRows         []int // neurons whose output gradient is zero
		needQ, needK, nV bool
	}{
		{name: "one image", b: 1, n: 3, e: 2, s: 5, threads: 2, needQ: true, needK: true, nV: true},
		{name: "batch parallel", b: 4, n: 5, e: 3, s: 7, threads: 2, needQ: true, needK: true, nV: true},
		{name: "serial", b: 3, n: 4, e: 3, s: 6, threads: 1, needQ: true, needK: true, nV: true},
		{name: "input only", b: 2, n: 4, e: 3, s: 6, threads: 2, needK: true, nV: true},
		{name: "sparse seed", b: 2, n: 6, e: 3, s: 9, threads: 2, zeroRows: []int{0, 2, 3, 5}, needQ: true, needK: true, nV: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := CPU(tc.threads)
			rng := rand.New(rand.NewPCG(3, uint64(tc.b*100+tc.n)))
			mk := func(need bool, shape ...int) *Tensor {
				x := New(dev, shape...)
				for i := range x.h() {
					x.h()[i] = float32(rng.NormFloat64())
				}
				return x.SetRequiresGrad(need)
			}
			q, f := mk(tc.needQ, tc.n, tc.e), mk(true, tc.n, tc.e)
			k, v := mk(tc.needK, tc.b, tc.e, tc.s), mk(tc.nV, tc.b, tc.e, tc.s)
			out, w := AttentionPool(q, k, v, f)
			qs := Expand(q, tc.b, tc.n, tc.e) // the reference needs batched queries
			refOut, refW := attentionPoolRef(qs, k, v, f)
			poolClose(t, "out", out.h(), refOut.h(), 1e-5)
			poolClose(t, "weights", w.h(), refW.h(), 1e-6)
			seed := New(dev, out.shape...)
			for i := range seed.h() {
				if !poolHas(tc.zeroRows, i%tc.n) {
					seed.h()[i] = float32(rng.NormFloat64())
				}
			}
			wrt := []*Tensor{}
			for _, x := range []*Tensor{q, k, v, f} {
				if x.RequiresGrad() {
					wrt = append(wrt, x)
				}
			}
			got := Grad(out, seed, wrt...)
			want := Grad(refOut, seed, wrt...)
			for i := range got {
				poolClose(t, fmt.Sprintf("grad %d", i), got[i].h(), want[i].h(), 1e-5)
			}
			if tc.threads == 2 {
				checkGrad(t, func(xs []*Tensor) *Tensor { o, _ := AttentionPool(xs[0], xs[1], xs[2], xs[3]); return o }, q, k, v, f)
			}
		})
	}
}

func poolHas(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// poolClose fails when max|got - want| > tol * max(1, max|want|).
func poolClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	scale, worst := 1.0, 0.0
	for i := range want {
		scale = math.Max(scale, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(got[i])-float64(want[i])))
	}
	if worst > tol*scale || len(got) != len(want) {
		t.Errorf("%s: max abs difference %.3g (scale %.3g, %d vs %d values)", what, worst, scale, len(got), len(want))
	}
}

func TestAttentionPoolShapes(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("mismatched shapes did not panic")
		}
	}()
	AttentionPool(New(testDev, 3, 2), New(testDev, 1, 3, 5), New(testDev, 1, 3, 5), New(testDev, 3, 2))
}

func TestSoftmaxRowFastSpecial(t *testing.T) {
	for _, tc := range []struct {
		name string
		row  []float32
		nan  bool
	}{
		{"finite", []float32{1, 2, 3}, false},
		{"nan", []float32{1, float32(math.NaN()), 3}, true},
		{"inf", []float32{1, float32(math.Inf(1)), 3}, true},
	} {
		row := append([]float32(nil), tc.row...)
		softmaxRowFast(row)
		hasNaN := false
		for _, v := range row {
			hasNaN = hasNaN || v != v
		}
		if hasNaN != tc.nan {
			t.Errorf("%s: softmax %v, NaN expected %v", tc.name, row, tc.nan)
		}
	}
}
