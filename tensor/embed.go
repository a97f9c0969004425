package tensor

import (
	"fmt"
	"math"
)

// TimestepEmbedding returns the sinusoidal embeddings [len(t), dim] of the diffusion
// timesteps t (which may be fractional), as guided-diffusion's timestep_embedding:
// with half = dim/2 and freqs[i] = exp(-ln(maxPeriod) * i / half) for i < half,
// row k is [cos(t[k]*freqs), sin(t[k]*freqs)], plus a zero column when dim is odd.
// The frequencies and arguments are computed in float32 in PyTorch's order, with
// PyTorch's CPU exponential (SLEEF's expf), so that they match it bit for bit; cos and
// sin are rounded from float64, within an ulp of PyTorch's. The result is a constant
// (it requires no gradient). It panics when dim < 1.
func TimestepEmbedding(dev *Device, t []float32, dim int, maxPeriod float64) *Tensor {
	if dim < 1 {
		panic(fmt.Sprintf("tensor: TimestepEmbedding: dim %d for %d timesteps", dim, len(t)))
	}
	half := dim / 2
	freqs := make([]float32, half)
	// torch: th.exp(-math.log(max_period) * th.arange(0, half, dtype=float32) / half):
	// a float32 product with the float32 scalar, then a float32 division.
	c := float32(-math.Log(maxPeriod))
	for i := range freqs {
		freqs[i] = sleefExpf(float32(i) * c / float32(half))
	}
	out := New(dev, len(t), dim)
	for k, tk := range t {
		row := out.h()[k*dim : (k+1)*dim]
		for i, f := range freqs {
			arg := float64(tk * f) // args = t[:, None].float() * freqs[None], float32
			row[i] = float32(math.Cos(arg))
			row[half+i] = float32(math.Sin(arg))
		}
	}
	return out
}

// fma32 returns a*b + c rounded once to float32, as the FMA instruction computes it.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24-bit times 24-bit significands
	s := p + float64(c)          // the exact sum rounded once to float64
	r := float32(s)
	if float64(r) == s {
		return r
	}
	// Rounding s to float32 is exact rounding of p + c unless s lies exactly halfway
	// between two float32 values; then the float64 rounding error e decides the side.
	other := float32(math.Nextafter(s, 2*s-float64(r))) // the neighbour on s's other side
	if mid := (float64(r) + float64(other)) / 2; s != mid {
		return r
	}
	bb := s - p
	e := (p - (s - bb)) + (float64(c) - bb) // TwoSum: p + c = s + e exactly
	switch {
	case e > 0:
		return float32(math.Nextafter(s, math.Inf(1)))
	case e < 0:
		return float32(math.Nextafter(s, math.Inf(-1)))
	}
	return r
}

// sleefExpf is e^d in float32 by the algorithm of SLEEF's Sleef_expf8_u10 (the
// AVX2/FMA build PyTorch's CPU torch.exp uses): round d/ln2 to q, reduce
// s = d - q*ln2 in two FMA steps, evaluate a degree-7 polynomial with FMAs, and
// scale by 2^q. Its results are within 1 ulp of e^d and equal PyTorch's bit for bit.
func sleefExpf(d float32) float32 {
	const (
		rln2 = float32(1.442695040888963407359924681001892137426645954152985934135449406931)
		l2u  = float32(0.693145751953125)
		l2l  = float32(1.428606765330187045e-06)
	)
	if d != d {
		return d
	}
	if d < -104 {
		return 0
	}
	if d > 100 {
		return float32(math.Inf(1))
	}
	q := int(math.RoundToEven(float64(d * rln2)))
	qf := float32(q)
	s := fma32(qf, -l2u, d)
	s = fma32(qf, -l2l, s)
	u := float32(0.000198527617612853646278381)
	u = fma32(u, s, 0.00139304355252534151077271)
	u = fma32(u, s, 0.00833336077630519866943359)
	u = fma32(u, s, 0.0416664853692054748535156)
	u = fma32(u, s, 0.166666671633720397949219)
	u = fma32(u, s, 0.5)
	u = 1 + fma32(s*s, u, s)
	// ldexp in two halves, as SLEEF's vldexp2, so that q near the limits stays finite.
	return float32(math.Ldexp(math.Ldexp(float64(u), q>>1), q-q>>1))
}
