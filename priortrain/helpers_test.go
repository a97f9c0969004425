package priortrain

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"egg/npy"
	"egg/tensor"
)

var testDev = tensor.CPU(2)

// synthImages returns n grayscale size x size images of smooth random structure
// (a few oriented gratings and blobs), uint8 [n, 1, size, size].
func synthImages(n, size int, seed uint64) []uint8 {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]uint8, n*size*size)
	for i := 0; i < n; i++ {
		type comp struct{ fx, fy, ph, amp, cx, cy, r float64 }
		cs := make([]comp, 3)
		for k := range cs {
			th := rng.Float64() * math.Pi
			f := (0.5 + 2*rng.Float64()) * 2 * math.Pi / float64(size)
			cs[k] = comp{f * math.Cos(th), f * math.Sin(th), rng.Float64() * 2 * math.Pi, 0.2 + 0.3*rng.Float64(),
				rng.Float64() * float64(size), rng.Float64() * float64(size), float64(size) * (0.15 + 0.3*rng.Float64())}
		}
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				v := 0.0
				for _, c := range cs {
					dx, dy := float64(x)-c.cx, float64(y)-c.cy
					v += c.amp * math.Cos(c.fx*float64(x)+c.fy*float64(y)+c.ph) * math.Exp(-(dx*dx+dy*dy)/(2*c.r*c.r))
				}
				out[i*size*size+y*size+x] = uint8(max(0, min(255, math.Round(127.5+127.5*v))))
			}
		}
	}
	return out
}

// writePool writes a synthetic pool of n images (the last nVal in the validation
// tier) to dir/pool.npz and returns its path.
func writePool(t testing.TB, dir string, n, nVal, size int) string {
	imgs := synthImages(n, size, 1)
	i64 := make([]int64, len(imgs))
	for k, v := range imgs {
		i64[k] = int64(v)
	}
	tiers := make([]string, n)
	for k := range tiers {
		tiers[k] = Train
		if k >= n-nVal {
			tiers[k] = Validation
		}
	}
	b, err := npy.EncodeNPZ(map[string]*npy.Array{
		"images": {DType: "|u1", Shape: []int{n, 1, size, size}, I64: i64},
		"tiers":  {Shape: []int{n}, Str: tiers},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pool.npz")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
