package tensor

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// testDev is the device the engine's tests run on: the CPU, or with
// EGG_TEST_DEVICE=hostaccel an accelerated device whose memory is host memory and
// which has no kernels, so that every op runs through the accelerator's storage
// (uploads, downloads, stale copies, collection) and the host fallback; or with
// EGG_TEST_DEVICE=hostkernels the same with the reference kernels, so that every
// device path of the ops runs.
var testDev = func() *Device {
	switch v := os.Getenv("EGG_TEST_DEVICE"); v {
	case "", "cpu":
		return CPU(2)
	case "hostaccel":
		return NewAccelerated(NewHostAccelerator(false), CPU(2))
	case "hostkernels":
		return NewAccelerated(NewHostAccelerator(true), CPU(2))
	}
	if strings.HasPrefix(os.Getenv("EGG_TEST_DEVICE"), "cuda") {
		return nil // set by device_test.go's init, which can import package cuda
	}
	switch v := os.Getenv("EGG_TEST_DEVICE"); v {
	default:
		panic("tensor tests: EGG_TEST_DEVICE=" + v + ": want cpu, hostaccel or hostkernels")
	}
}()

// randT returns a tensor of uniform values in [lo, hi) requiring a gradient.
func randT(rng *rand.Rand, lo, hi float32, shape ...int) *Tensor {
	t := New(testDev, shape...)
	for i := range t.h() {
		t.h()[i] = lo + (hi-lo)*rng.Float32()
	}
	return t.SetRequiresGrad(true)
}

// checkGrad compares the analytic gradients of L = sum(f(xs) * r), for a fixed random
// r, with central finite differences, for every x that requires a gradient. The sum is
// accumulated in float64; the step is 1e-2 (float32 data), and the comparison is
// max|analytic - numeric| <= 2e-2 * max(1e-2, max|numeric|) per input.
func checkGrad(t *testing.T, f func(xs []*Tensor) *Tensor, xs ...*Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	out := f(xs)
	r := New(out.dev, out.shape...)
	for i := range r.h() {
		r.h()[i] = float32(rng.NormFloat64())
	}
	loss := func() float64 {
		o := f(xs)
		var s float64
		for i, v := range o.h() {
			s += float64(v) * float64(r.h()[i])
		}
		return s
	}
	var wrt []*Tensor
	for _, x := range xs {
		if x.RequiresGrad() {
			wrt = append(wrt, x)
		}
	}
	grads := Grad(out, r, wrt...)
	const h = 1e-2
	for k, x := range wrt {
		g := grads[k]
		if !sameShape(g.shape, x.shape) {
			t.Fatalf("input %d: gradient shape %v, want %v", k, g.shape, x.shape)
		}
		maxNum, maxErr := 0.0, 0.0
		worst := -1
		for i := range x.h() {
			old := x.h()[i]
			x.h()[i] = old + h
			lp := loss()
			x.h()[i] = old - h
			lm := loss()
			x.h()[i] = old
			num := (lp - lm) / (2 * h)
			maxNum = math.Max(maxNum, math.Abs(num))
			if e := math.Abs(num - float64(g.h()[i])); e > maxErr || math.IsNaN(e) {
				maxErr, worst = e, i
				if math.IsNaN(e) {
					maxErr = math.Inf(1)
				}
			}
		}
		if maxErr > 2e-2*math.Max(1e-2, maxNum) {
			t.Errorf("input %d %v: max |analytic - numeric| = %.3g at element %d (analytic %v), max |numeric| %.3g",
				k, x.shape, maxErr, worst, g.h()[worst], maxNum)
		}
	}
}
