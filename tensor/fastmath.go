package tensor

import "math"

// expf returns e^x in float32 with the Cephes expf method: x = n ln2 + r with
// |r| <= ln2/2, e^r by a degree-6 polynomial, scaled by 2^n. Its error is within
// 2 ulp of math.Exp over the float32 range, at a fraction of the cost of float64 Exp.
func expf(x float32) float32 {
	switch {
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	case x != x:
		return x
	}
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	z := x*log2e + 0.5
	ni := int32(z)
	if z < float32(ni) {
		ni-- // floor for negative z
	}
	n := float32(ni)
	r := x - n*c1
	r -= n * c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	y := p*r*r + r + 1
	// Scale by 2^n in two steps so that subnormal results stay exact.
	if ni < -126 {
		y *= math.Float32frombits(uint32(ni+126+127) << 23)
		return y * math.Float32frombits(1<<23)
	}
	if ni > 127 {
		return y * math.Float32frombits(uint32(ni-1+127)<<23) * 2
	}
	return y * math.Float32frombits(uint32(ni+127)<<23)
}

// sigmoidf returns 1 / (1 + e^-x) in float32.
func sigmoidf(x float32) float32 { return 1 / (1 + expf(-x)) }
