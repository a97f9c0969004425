package train

import (
	"math"
	"math/rand/v2"

	"egg/dataset"
)

// simulation is a data set of model neurons with known tuning.
type simulation struct {
	d    *dataset.Dataset
	rate []float32 // [N, neurons]: each trial's true firing rate
}

// simulate makes a data set of size x size images (smoothed noise, uint8 pixels
// around 128) shown to neurons, each a rectified Gabor filter at its own position,
// orientation and phase with Poisson spikes: rate = 0.3 + 2 * relu(g . z), z the
// z-scored image and g scaled so that g . z has standard deviation 1 over the
// images. train and validation images are shown once, the test images reps times
// each.
func simulate(seed uint64, size, neurons, train, val, test, reps int) simulation {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := train + val + test*reps
	d := &dataset.Dataset{Source: "simulation", N: n, C: 1, H: size, W: size, Neurons: neurons}
	unique := train + val + test
	imgs := make([][]float32, unique)
	for u := range imgs {
		imgs[u] = smoothNoise(rng, size)
	}
	// Gabor filters over the z-scored pixels.
	filters := make([][]float64, neurons)
	for k := range filters {
		theta := math.Pi * float64(k%4) / 4
		phase := math.Pi / 2 * float64(k/4%2)
		cx := float64(size)/2 - 3 + 6*rng.Float64()
		cy := float64(size)/2 - 3 + 6*rng.Float64()
		f := make([]float64, size*size)
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				dx, dy := float64(x)-cx, float64(y)-cy
				u := dx*math.Cos(theta) + dy*math.Sin(theta)
				f[y*size+x] = math.Exp(-(dx*dx+dy*dy)/(2*1.8*1.8)) * math.Cos(2*math.Pi*0.18*u+phase)
			}
		}
		filters[k] = f
	}
	drive := make([][]float64, unique) // [image][neuron]
	for u, img := range imgs {
		drive[u] = make([]float64, neurons)
		for k, f := range filters {
			var s float64
			for i, p := range img {
				s += f[i] * (float64(p) - 128) / 40
			}
			drive[u][k] = s
		}
	}
	for k := 0; k < neurons; k++ { // unit standard deviation over the images
		var s, ss float64
		for u := range drive {
			s += drive[u][k]
			ss += drive[u][k] * drive[u][k]
		}
		m := s / float64(unique)
		sd := math.Sqrt(ss/float64(unique) - m*m)
		for u := range drive {
			drive[u][k] /= sd
		}
	}
	sim := simulation{d: d}
	add := func(u int, tier string) {
		d.Images = append(d.Images, imgs[u]...)
		d.Tiers = append(d.Tiers, tier)
		d.ImageIDs = append(d.ImageIDs, int64(u))
		for k := 0; k < neurons; k++ {
			r := 0.3 + 2*math.Max(drive[u][k], 0)
			sim.rate = append(sim.rate, float32(r))
			d.Responses = append(d.Responses, float32(poisson(rng, r)))
		}
	}
	for u := 0; u < train; u++ {
		add(u, dataset.Train)
	}
	for u := train; u < train+val; u++ {
		add(u, dataset.Validation)
	}
	for r := 0; r < reps; r++ {
		for u := train + val; u < unique; u++ {
			add(u, dataset.Test)
		}
	}
	return sim
}

// smoothNoise returns white noise blurred by a 3x3 binomial kernel, scaled to
// about 128 +- 40 and rounded to whole pixel values in [0, 255].
func smoothNoise(rng *rand.Rand, size int) []float32 {
	w := make([]float64, size*size)
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	k := [3]float64{0.25, 0.5, 0.25}
	out := make([]float32, size*size)
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var s float64
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					yy, xx := min(max(y+dy, 0), size-1), min(max(x+dx, 0), size-1)
					s += k[dy+1] * k[dx+1] * w[yy*size+xx]
				}
			}
			out[y*size+x] = float32(math.Round(min(max(128+40*s/0.61, 0), 255)))
		}
	}
	return out
}

// poisson draws a Poisson count with mean lambda (Knuth's method).
func poisson(rng *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
