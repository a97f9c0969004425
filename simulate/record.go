package simulate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"egg/dataset"
	"egg/pool"
	"egg/tensor"
)

// Calibrate sets the output nonlinearity from the drive u of the images x ([N, S,
// S] z-scored pixels, row-major, N >= 2): with z = (log u - mean) / std over the
// images, rate = A softplus(gamma (z - tau)), where A makes the neuron's mean rate
// over the images its target (Neuron.MeanRate spikes/s times the counting window).
// batch images go through the model at a time (<= 0: 64). It returns an error when
// the images leave a neuron's drive constant.
func (m *Model) Calibrate(x []float32, batch int) error {
	u, err := m.run(context.Background(), x, batch, nil, m.drive)
	if err != nil {
		return err
	}
	return m.calibrate(u)
}

// calibrate is Calibrate from the drives u [N, Neurons].
func (m *Model) calibrate(u []float32) error {
	n, ni := m.cfg.Neurons, len(u)/m.cfg.Neurons
	if ni < 2 {
		return fmt.Errorf("simulate: calibration needs at least 2 images, got %d", ni)
	}
	logu := make([]float64, ni)
	scale, shift, amp := make([]float32, n), make([]float32, n), make([]float32, n)
	for j := 0; j < n; j++ {
		var s, ss float64
		for i := range logu {
			logu[i] = math.Log(float64(u[i*n+j]))
			s += logu[i]
		}
		mean := s / float64(ni)
		for _, v := range logu {
			ss += (v - mean) * (v - mean)
		}
		std := math.Sqrt(ss / float64(ni))
		if !(std > 1e-6) {
			return fmt.Errorf("simulate: the %d calibration images all drive neuron %d alike; calibrate on varied natural images", ni, j)
		}
		nr := m.neurons[j]
		var out float64
		for _, v := range logu {
			out += softplus(nr.Gain * ((v-mean)/std - nr.Threshold))
		}
		out /= float64(ni)
		scale[j] = float32(nr.Gain / std)
		shift[j] = float32(-nr.Gain * (mean/std + nr.Threshold))
		amp[j] = float32(nr.MeanRate * m.cfg.window() / out)
	}
	m.Scale.SetValues(scale)
	m.Shift.SetValues(shift)
	m.Amplitude.SetValues(amp)
	m.calibrated = true
	return nil
}

// rates applies the output nonlinearity to the drives u [N, Neurons], as Forward
// does (in float64).
func (m *Model) rates(u []float32) []float64 {
	n := m.cfg.Neurons
	amp, scale, shift := m.Amplitude.Values(), m.Scale.Values(), m.Shift.Values()
	out := make([]float64, len(u))
	for k, v := range u {
		j := k % n
		out[k] = float64(amp[j]) * softplus(float64(scale[j])*math.Log(float64(v))+float64(shift[j]))
	}
	return out
}

func softplus(x float64) float64 {
	if x > 20 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// Rates returns the rates [N, Neurons] for the z-scored images x ([N, S, S]
// row-major), batch images at a time (<= 0: 64); progress, when not nil, is called
// with the number of images done after each batch.
func (m *Model) Rates(x []float32, batch int, progress func(done int)) ([]float32, error) {
	return m.run(context.Background(), x, batch, progress, m.Forward)
}

// run applies f to the z-scored images x, batch images at a time, and returns the
// concatenated outputs; it stops with ctx's error when ctx is done.
func (m *Model) run(ctx context.Context, x []float32, batch int, progress func(int), f func(*tensor.Tensor) *tensor.Tensor) ([]float32, error) {
	il := m.cfg.Size * m.cfg.Size
	if len(x)%il != 0 {
		return nil, fmt.Errorf("simulate: %d pixels are not whole %dx%d images", len(x), m.cfg.Size, m.cfg.Size)
	}
	if batch <= 0 {
		batch = 64
	}
	ni := len(x) / il
	dev := m.Gabor.Device()
	out := make([]float32, 0, ni*m.cfg.Neurons)
	for lo := 0; lo < ni; lo += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+batch, ni)
		t := tensor.FromSlice(dev, x[lo*il:hi*il], hi-lo, 1, m.cfg.Size, m.cfg.Size)
		out = append(out, f(t).Data()...) // a fresh result, read once
		if progress != nil {
			progress(hi)
		}
	}
	return out, nil
}

// Poisson draws a Poisson count with mean lambda >= 0 (Knuth's multiplication
// method on pieces of mean at most 30, whose counts add up).
func Poisson(rng *rand.Rand, lambda float64) int {
	k := 0
	for lambda > 0 {
		l := math.Min(lambda, 30)
		lambda -= l
		limit, p := math.Exp(-l), rng.Float64()
		for p > limit {
			k++
			p *= rng.Float64()
		}
	}
	return k
}

// RecordOptions say how Record builds a data set.
type RecordOptions struct {
	Test        int     // test images, drawn from the pool's validation patches
	Repeats     int     // presentations of each test image (independent draws)
	ValFraction float64 // share of the pool's train patches in the validation tier
	Max         int     // most train and validation images (0: all of the pool's train patches)
	Seed        uint64  // seeds the choice of images and the spike counts
	Batch       int     // images per forward pass (<= 0: 64)
	// Progress, when not nil, is called as the images are shown, with the images
	// done and the total.
	Progress func(done, total int)
}

// Record shows the patches of p to the neurons of m and returns the data set of
// their responses (see the package documentation): the pool's train patches (a
// random subset of o.Max, in pool order) become train and validation trials
// (a random o.ValFraction of them validation), o.Test random validation patches
// become test images shown o.Repeats times each. Images are the pool's uint8 pixels;
// image_ids are the patches' indices in the pool; neuron_ids are 0..Neurons-1.
//
// Before the responses are drawn, m's pixel normalisation is set to the mean and
// standard deviation of the train trials' pixels (those `egg train` z-scores with)
// and m is calibrated on the train images, so m becomes the ground truth of the
// data set: its rates are the expected responses.
//
// Record stops with ctx's error when ctx is done.
func Record(ctx context.Context, m *Model, p *pool.Pool, o RecordOptions) (*dataset.Dataset, error) {
	cfg := m.cfg
	if p.Size != cfg.Size {
		return nil, fmt.Errorf("simulate: the pool has %dx%d patches but the model takes %dx%d images; build the model with the pool's size", p.Size, p.Size, cfg.Size, cfg.Size)
	}
	if o.Repeats < 1 || o.Test < 0 || o.Max < 0 || o.ValFraction < 0 || o.ValFraction >= 1 {
		return nil, fmt.Errorf("simulate: repeats %d (want >= 1), test images %d, most images %d (want >= 0), validation fraction %g (want [0, 1))", o.Repeats, o.Test, o.Max, o.ValFraction)
	}
	train, held := p.Indices(pool.Train), p.Indices(pool.Validation)
	if o.Test > len(held) {
		return nil, fmt.Errorf("simulate: %d test images asked for, but the pool has %d validation patches; ask for fewer or make the pool with a larger --val", o.Test, len(held))
	}
	pick := func(idx []int, k int, stream uint64) []int {
		if k >= len(idx) {
			return idx
		}
		perm := rand.New(rand.NewPCG(o.Seed, stream)).Perm(len(idx))[:k]
		out := make([]int, k)
		for i, j := range perm {
			out[i] = idx[j]
		}
		slices.Sort(out)
		return out
	}
	if o.Max > 0 {
		train = pick(train, o.Max, 1)
	}
	test := pick(held, o.Test, 2)
	nval := int(math.Round(o.ValFraction * float64(len(train))))
	if len(train)-nval < 2 {
		return nil, fmt.Errorf("simulate: %d train patches leave %d for training; use a larger pool", len(train), len(train)-nval)
	}
	isVal := map[int]bool{}
	for _, j := range rand.New(rand.NewPCG(o.Seed, 3)).Perm(len(train))[:nval] {
		isVal[train[j]] = true
	}

	il := cfg.Size * cfg.Size
	d := &dataset.Dataset{Source: "simulate", C: 1, H: cfg.Size, W: cfg.Size, Neurons: cfg.Neurons}
	add := func(i int, tier string) {
		d.N++
		for _, v := range p.Patch(i) {
			d.Images = append(d.Images, float32(v))
		}
		d.Tiers = append(d.Tiers, tier)
		d.ImageIDs = append(d.ImageIDs, int64(i))
	}
	for _, i := range train {
		tier := dataset.Train
		if isVal[i] {
			tier = dataset.Validation
		}
		add(i, tier)
	}
	for _, i := range test {
		for r := 0; r < o.Repeats; r++ {
			add(i, dataset.Test)
		}
	}
	for j := 0; j < cfg.Neurons; j++ {
		d.NeuronIDs = append(d.NeuronIDs, int64(j))
	}

	// z-score with the train trials' statistics; calibrate on the train images.
	mean, std := d.PixelStats(d.Indices(dataset.Train))
	m.SetNormalization(float32(mean), float32(std))
	zscore := func(rows []int) []float32 {
		out := make([]float32, 0, len(rows)*il)
		for _, i := range rows {
			for _, v := range d.Image(i) {
				out = append(out, float32((float64(v)-mean)/std))
			}
		}
		return out
	}
	// Drives of each distinct image (the first trial of every image), the
	// calibration on the train images, then rates and counts.
	var first []int
	row := map[int64]int{}
	for i, id := range d.ImageIDs {
		if _, ok := row[id]; !ok {
			row[id] = len(first)
			first = append(first, i)
		}
	}
	var progress func(int)
	if o.Progress != nil {
		progress = func(done int) { o.Progress(done, len(first)) }
	}
	u, err := m.run(ctx, zscore(first), o.Batch, progress, m.drive)
	if err != nil {
		return nil, err
	}
	n := cfg.Neurons
	var calib []float32
	for k, i := range first {
		if d.Tiers[i] == dataset.Train {
			calib = append(calib, u[k*n:(k+1)*n]...)
		}
	}
	if err := m.calibrate(calib); err != nil {
		return nil, err
	}
	rates := m.rates(u)
	rng := rand.New(rand.NewPCG(o.Seed, 4))
	d.Responses = make([]float32, 0, d.N*n)
	for i := 0; i < d.N; i++ {
		k := row[d.ImageIDs[i]]
		for _, r := range rates[k*n : (k+1)*n] {
			d.Responses = append(d.Responses, float32(Poisson(rng, r)))
		}
	}
	return d, nil
}
