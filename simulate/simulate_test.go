package simulate

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"egg/dataset"
	"egg/encoder"
	"egg/nn"
	"egg/pool"
	"egg/tensor"
	"egg/train"
)

var dev = tensor.CPU(2)

// deadLeaves returns n images of s x s pixels in [0, 255] from the dead-leaves model
// (opaque disks of random gray levels and 1/r^3 distributed radii, stacked): images
// with edges, corners and curves at all scales, like natural ones.
func deadLeaves(n, s int, seed uint64) [][]float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([][]float32, n)
	for k := range out {
		img := make([]float32, s*s)
		set := make([]bool, s*s)
		left := s * s
		for left > 0 {
			// radius r with density ~ r^-3 on [2, s/2]: inverse transform sampling.
			lo, hi := 2.0, float64(s)/2
			u := rng.Float64()
			r := 1 / math.Sqrt(1/(lo*lo)-u*(1/(lo*lo)-1/(hi*hi)))
			cx, cy := rng.Float64()*float64(s), rng.Float64()*float64(s)
			v := float32(20 + 215*rng.Float64())
			for y := max(0, int(cy-r)); y < min(s, int(cy+r)+1); y++ {
				for x := max(0, int(cx-r)); x < min(s, int(cx+r)+1); x++ {
					if i := y*s + x; !set[i] && (float64(x)-cx)*(float64(x)-cx)+(float64(y)-cy)*(float64(y)-cy) <= r*r {
						img[i], set[i] = v, true
						left--
					}
				}
			}
		}
		out[k] = img
	}
	return out
}

// zscore flattens images to z-scored pixels with their joint mean and std.
func zscore(imgs [][]float32) []float32 {
	var s, ss float64
	var n int
	for _, img := range imgs {
		for _, v := range img {
			s += float64(v)
			ss += float64(v) * float64(v)
			n++
		}
	}
	mean := s / float64(n)
	std := math.Sqrt(ss/float64(n) - mean*mean)
	out := make([]float32, 0, n)
	for _, img := range imgs {
		for _, v := range img {
			out = append(out, float32((float64(v)-mean)/std))
		}
	}
	return out
}

// grating returns an s x s grating of stripes along theta (degrees, counter-clockwise
// on the screen) with the given wavelength and phase, amplitude 1.
func grating(s int, theta, wavelength, phase float64) []float32 {
	t := theta * math.Pi / 180
	nx, ny := math.Sin(t), math.Cos(t)
	img := make([]float32, s*s)
	for y := 0; y < s; y++ {
		for x := 0; x < s; x++ {
			img[y*s+x] = float32(math.Cos(2*math.Pi/wavelength*(nx*float64(x)+ny*float64(y)) + phase))
		}
	}
	return img
}

// drive returns the model's drive u [len(imgs), Neurons] for images of z-scored
// pixels.
func drive(t *testing.T, m *Model, imgs ...[]float32) []float32 {
	t.Helper()
	u, err := m.run(context.Background(), slices.Concat(imgs...), 64, nil, m.drive)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestGratingSelectivity(t *testing.T) {
	const s = 64
	m, err := New(dev, Config{Size: s, Neurons: 60, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Preferred and orthogonal gratings at each texture neuron's scale, four phases.
	checked := 0
	for j, nr := range m.Describe() {
		if nr.Kind != Texture || len(nr.Orientations) != 1 {
			continue
		}
		lambda := Wavelength * math.Pow(2, float64(nr.Level))
		var imgs [][]float32
		for _, o := range []float64{nr.Orientations[0], nr.Orientations[0] + 90} {
			for ph := 0; ph < 4; ph++ {
				imgs = append(imgs, grating(s, o, lambda, float64(ph)*math.Pi/2))
			}
		}
		u := drive(t, m, imgs...)
		var pref, orth float64
		for k := 0; k < 4; k++ {
			pref += float64(u[k*m.Neurons()+j])
			orth += float64(u[(k+4)*m.Neurons()+j])
		}
		if pref < 3*orth {
			t.Errorf("texture neuron %d (orientation %.0f, level %d): drive %.3g at its orientation, %.3g orthogonal; want 3 times more", j, nr.Orientations[0], nr.Level, pref/4, orth/4)
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d single-orientation texture neurons among 60", checked)
	}
}

// bar draws onto img a bright bar of the given width from (x0, y0) along the screen
// direction phi (degrees, counter-clockwise) for length pixels, with soft edges.
func bar(img []float32, s int, x0, y0, phi, length, width float64) {
	t := phi * math.Pi / 180
	ux, uy := math.Cos(t), -math.Sin(t)
	for y := 0; y < s; y++ {
		for x := 0; x < s; x++ {
			dx, dy := float64(x)-x0, float64(y)-y0
			along, across := dx*ux+dy*uy, math.Abs(-dx*uy+dy*ux)
			if along < -width/2 || along > length {
				continue
			}
			v := float32(math.Max(0, math.Min(1, width/2+0.5-across)))
			img[y*s+x] = max(img[y*s+x], v)
		}
	}
}

func TestAngleConjunction(t *testing.T) {
	const s = 64
	m, err := New(dev, Config{Size: s, Neurons: 60, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	n, checked, and := m.Neurons(), 0, 0
	for j, nr := range m.Describe() {
		if nr.Kind != Angle {
			continue
		}
		// The arm directions point from the vertex to the subunits.
		phi := func(k int) float64 {
			return math.Atan2(-nr.Offsets[k][1], nr.Offsets[k][0]) * 180 / math.Pi
		}
		lambda := Wavelength * math.Pow(2, float64(nr.Level))
		length := max(2.5*math.Hypot(nr.Offsets[0][0], nr.Offsets[0][1]), 1.5*lambda)
		width := lambda / 2
		corner, armA, armB := make([]float32, s*s), make([]float32, s*s), make([]float32, s*s)
		cx, cy := nr.Center[0], nr.Center[1]
		bar(corner, s, cx, cy, phi(0), length, width)
		bar(corner, s, cx, cy, phi(1), length, width)
		bar(armA, s, cx, cy, phi(0), length, width)
		bar(armB, s, cx, cy, phi(1), length, width)
		u := drive(t, m, corner, armA, armB)
		c, a, b := u[j], u[n+j], u[2*n+j]
		checked++
		if c > 1.2*max(a, b) {
			and++
		} else {
			t.Errorf("angle neuron %d (arms %.0f and %.0f degrees, level %d): drive %.3g to the corner, %.3g and %.3g to its arms", j, phi(0), phi(1), nr.Level, c, a, b)
		}
	}
	if checked < 5 || and < checked {
		t.Errorf("%d of %d angle neurons respond more to their corner than to either arm alone; want all", and, checked)
	}
}

// arc draws onto img a bright curve of the given width through (x0, y0) with
// tangent phi (degrees, counter-clockwise on the screen), bending by kappa radians
// per pixel towards the normal (sin phi, cos phi) (away from it when kappa < 0), for
// half pixels on each side.
func arc(img []float32, s int, x0, y0, phi, kappa, half, width float64) {
	t := phi * math.Pi / 180
	for step := -half; step <= half; step += 0.25 {
		// Position on the arc: integrate the turning tangent.
		a := t - kappa*step
		var px, py float64
		if math.Abs(kappa) < 1e-9 {
			px, py = x0+step*math.Cos(t), y0-step*math.Sin(t)
		} else {
			px = x0 + (math.Sin(a)-math.Sin(t))/(-kappa)
			py = y0 + (math.Cos(a)-math.Cos(t))/(-kappa)
		}
		for y := max(0, int(py-width)); y < min(s, int(py+width)+2); y++ {
			for x := max(0, int(px-width)); x < min(s, int(px+width)+2); x++ {
				d := math.Hypot(float64(x)-px, float64(y)-py)
				v := float32(math.Max(0, math.Min(1, width/2+0.5-d)))
				img[y*s+x] = max(img[y*s+x], v)
			}
		}
	}
}

func TestCurveSign(t *testing.T) {
	const s = 64
	m, err := New(dev, Config{Size: s, Neurons: 60, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	n, checked, right := m.Neurons(), 0, 0
	for j, nr := range m.Describe() {
		if nr.Kind != Curve {
			continue
		}
		// The arc is found from the subunits' positions alone (their midpoint lies
		// on the side the arc bends to); the neuron should prefer it to its mirror
		// image because its subunits' orientations follow the arc.
		o1, o2 := nr.Orientations[0], nr.Orientations[1]
		dx, dy := nr.Offsets[1][0]-nr.Offsets[0][0], nr.Offsets[1][1]-nr.Offsets[0][1]
		mx, my := (nr.Offsets[0][0]+nr.Offsets[1][0])/2, (nr.Offsets[0][1]+nr.Offsets[1][1])/2
		phi := math.Atan2(-dy, dx) * 180 / math.Pi
		nx, ny := math.Sin(phi*math.Pi/180), math.Cos(phi*math.Pi/180)
		l := math.Hypot(dx, dy) / 2
		kappa := math.Copysign(2*math.Hypot(mx, my)/(l*l), mx*nx+my*ny)
		dist := 2 * l
		lambda := Wavelength * math.Pow(2, float64(nr.Level))
		half := max(1.25*dist, 0.75*lambda)
		own, mirrored := make([]float32, s*s), make([]float32, s*s)
		cx, cy := nr.Center[0], nr.Center[1]
		arc(own, s, cx, cy, phi, kappa, half, lambda/2)
		arc(mirrored, s, cx, cy, phi, -kappa, half, lambda/2)
		u := drive(t, m, own, mirrored)
		checked++
		if u[j] > u[n+j] {
			right++
		} else {
			t.Logf("curve neuron %d (orientations %.0f, %.0f; level %d): drive %.3g to its arc, %.3g to the mirrored one", j, o1, o2, nr.Level, u[j], u[n+j])
		}
	}
	if checked < 5 || right < checked*4/5 {
		t.Errorf("%d of %d curve neurons prefer the curvature of their subunits to the opposite one; want 80%%", right, checked)
	}
}

func TestRatesOnNaturalImages(t *testing.T) {
	const s, neurons = 32, 40
	m, err := New(dev, Config{Size: s, Neurons: neurons, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	imgs := deadLeaves(400, s, 1)
	x := zscore(imgs)
	if err := m.Calibrate(x[:200*s*s], 64); err != nil {
		t.Fatal(err)
	}
	r, err := m.Rates(x[200*s*s:], 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	varied := 0
	for j := 0; j < neurons; j++ {
		var sum, ss, top float64
		for i := 0; i < 200; i++ {
			v := float64(r[i*neurons+j])
			if v < 0 || math.IsNaN(v) {
				t.Fatalf("neuron %d: rate %v", j, v)
			}
			sum += v
			ss += v * v
			top = max(top, v)
		}
		mean := sum / 200
		sd := math.Sqrt(ss/200 - mean*mean)
		// Held-out images: the mean rate within the documented range, with slack.
		lo, hi := MinRate*DefaultWindow/2, MaxRate*DefaultWindow*2
		if mean < lo || mean > hi || top > 40*mean {
			t.Errorf("neuron %d: mean %.3g spikes per trial (want %.3g-%.3g), largest %.3g", j, mean, lo, hi, top)
		}
		if sd > 0.5*mean {
			varied++
		}
	}
	if varied < neurons*3/4 {
		t.Errorf("%d of %d neurons vary across images with a coefficient of variation above 0.5", varied, neurons)
	}
}

func TestGradient(t *testing.T) {
	const s = 32
	m, err := New(dev, Config{Size: s, Neurons: 6, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	x := zscore(deadLeaves(20, s, 2))
	if err := m.Calibrate(x, 64); err != nil {
		t.Fatal(err)
	}
	img := slices.Clone(x[:s*s])
	const j = 2 // the neuron whose rate is differentiated
	f := func(v []float32) float64 {
		return float64(m.Forward(tensor.FromSlice(dev, slices.Clone(v), 1, 1, s, s)).Data()[j])
	}
	xt := tensor.FromSlice(dev, slices.Clone(img), 1, 1, s, s).SetRequiresGrad(true)
	out := m.Forward(xt)
	seed := tensor.New(dev, 1, 6)
	seed.Data()[j] = 1
	out.BackwardWith(seed)
	g := xt.Grad().Data()
	// Compare with central differences at the pixels of largest gradient.
	order := make([]int, len(g))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(math.Copysign(1, math.Abs(float64(g[b]))-math.Abs(float64(g[a])))) })
	for _, p := range order[:5] {
		const h = 5e-2 // float32 rounding swamps smaller steps
		up, down := slices.Clone(img), slices.Clone(img)
		up[p] += h
		down[p] -= h
		num := (f(up) - f(down)) / (2 * h)
		if math.Abs(num-float64(g[p])) > 0.05*math.Abs(num)+1e-4 {
			t.Errorf("pixel %d: gradient %.5g, central difference %.5g", p, g[p], num)
		}
	}
}

// testPool returns a pool of dead-leaves patches: 80 train, 30 validation.
func testPool(s int) *pool.Pool {
	imgs := deadLeaves(110, s, 3)
	p := &pool.Pool{Size: s}
	for i, img := range imgs {
		for _, v := range img {
			p.Images = append(p.Images, uint8(v))
		}
		tier := pool.Train
		if i >= 80 {
			tier = pool.Validation
		}
		p.Tiers = append(p.Tiers, tier)
		p.Sources = append(p.Sources, "leaves")
	}
	return p
}

func TestRecord(t *testing.T) {
	const s = 32
	p := testPool(s)
	run := func(seed uint64, dev *tensor.Device) ([]byte, *Model) {
		m, err := New(dev, Config{Size: s, Neurons: 12, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var calls int
		d, err := Record(context.Background(), m, p, RecordOptions{Test: 10, Repeats: 4, ValFraction: 0.25, Seed: seed, Progress: func(done, total int) {
			calls++
			if total != 90 {
				t.Errorf("progress total %d, want 80 train and validation + 10 test images", total)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if calls == 0 {
			t.Error("no progress")
		}
		path := filepath.Join(t.TempDir(), "v4.npz")
		if err := dataset.WriteNPZ(path, d); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b, m
	}
	a, m := run(5, dev)
	if b, _ := run(5, tensor.CPU(1)); !bytes.Equal(a, b) {
		t.Error("the same seed gives different data sets (on 2 and 1 threads)")
	}
	if b, _ := run(6, dev); bytes.Equal(a, b) {
		t.Error("seeds 5 and 6 give the same data set")
	}

	path := filepath.Join(t.TempDir(), "v4.npz")
	if err := os.WriteFile(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, va, te := d.Indices(dataset.Train), d.Indices(dataset.Validation), d.Indices(dataset.Test)
	if d.N != 120 || len(tr) != 60 || len(va) != 20 || len(te) != 40 || d.Neurons != 12 || d.H != s || d.UniqueImages() != 90 {
		t.Fatalf("%d trials (%d train, %d validation, %d test), %d neurons, %d images", d.N, len(tr), len(va), len(te), d.Neurons, d.UniqueImages())
	}
	// Test images are the pool's validation patches, each shown 4 times with
	// independent draws; train and validation images are its train patches.
	reps := map[int64]int{}
	for _, i := range te {
		id := d.ImageIDs[i]
		reps[id]++
		if p.Tiers[id] != pool.Validation {
			t.Errorf("test trial %d shows pool patch %d of tier %s", i, id, p.Tiers[id])
		}
	}
	for id, r := range reps {
		if r != 4 {
			t.Errorf("test image %d shown %d times", id, r)
		}
	}
	for _, i := range slices.Concat(tr, va) {
		if p.Tiers[d.ImageIDs[i]] != pool.Train {
			t.Errorf("trial %d shows a validation patch", i)
		}
	}
	differ := false
	for k := 0; k+1 < len(te); k++ {
		i, j := te[k], te[k+1]
		if d.ImageIDs[i] == d.ImageIDs[j] && !slices.Equal(d.Responses[i*12:(i+1)*12], d.Responses[j*12:(j+1)*12]) {
			differ = true
		}
	}
	if !differ {
		t.Error("repeats of the test images have identical responses")
	}
	// The model is the data's ground truth: its normalisation is that of the train
	// images, it predicts the responses, and train's metrics accept it.
	mean, std := d.PixelStats(tr)
	if cfg := m.Config(); math.Abs(float64(cfg.InputMean)-mean) > 1e-3 || math.Abs(float64(cfg.InputStd)-std) > 1e-3 {
		t.Errorf("model normalisation %v, %v; train pixels %v, %v", cfg.InputMean, cfg.InputStd, mean, std)
	}
	ev, err := train.Evaluate(m, d, dataset.Test, 16)
	if err != nil {
		t.Fatal(err)
	}
	if !(ev.Average > 0.5) {
		t.Errorf("the ground truth's correlation with trial-averaged test responses is %.3f", ev.Average)
	}
}

func TestSaveLoad(t *testing.T) {
	const s = 32
	m, err := New(dev, Config{Size: s, Neurons: 9, Seed: 8, InputMean: 120, InputStd: 60})
	if err != nil {
		t.Fatal(err)
	}
	x := zscore(deadLeaves(16, s, 4))
	if err := m.Calibrate(x, 8); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "truth.safetensors")
	if err := Save(path, m, map[string]string{"egg.simulation": "{}"}); err != nil {
		t.Fatal(err)
	}
	if !IsModelFile(path) || IsModelFile(filepath.Join(t.TempDir(), "nope")) {
		t.Error("IsModelFile")
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Calibrated() || l.Simulation() != m.Simulation() || len(l.Describe()) != 9 || l.Describe()[3].Kind != m.Describe()[3].Kind {
		t.Errorf("loaded model: %+v", l.Simulation())
	}
	a, _ := m.Rates(x, 8, nil)
	b, _ := l.Rates(x, 8, nil)
	if !slices.Equal(a, b) {
		t.Error("the loaded model predicts differently")
	}
	// It is an encoder.Model: it joins ensembles.
	e, err := encoder.NewEnsemble(m, l)
	if err != nil {
		t.Fatal(err)
	}
	if y := e.Forward(tensor.FromSlice(dev, x[:s*s], 1, 1, s, s)); !slices.Equal(y.Data(), a[:9]) {
		t.Error("an ensemble of the model and its copy predicts differently")
	}
	if _, err := encoder.Load(path); err == nil {
		t.Error("encoder.Load read a simulated population")
	}
	// A model file is not a population.
	other := filepath.Join(t.TempDir(), "other.safetensors")
	if err := nn.Save(other, m, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(other); err == nil || !strings.Contains(err.Error(), MetadataKey) {
		t.Errorf("loading a file without metadata: %v", err)
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Size: 42, Neurons: 3}, "multiple of 4"},
		{Config{Size: 16, Neurons: 3}, "at least 32"},
		{Config{Size: 32}, "neurons"},
		{Config{Size: 32, Neurons: 1, Window: -1}, "window"},
	} {
		if _, err := New(dev, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v; want an error about %q", c.cfg, err, c.want)
		}
	}
	// The paper's 100x100 images work too.
	big, err := New(dev, Config{Size: 100, Neurons: 3})
	if err != nil {
		t.Fatal(err)
	}
	if y := big.Forward(tensor.Full(dev, 0.5, 2, 1, 100, 100)); !slices.Equal(y.Shape(), []int{2, 3}) {
		t.Errorf("100x100 images give %v", y.Shape())
	}
	m, err := New(dev, Config{Size: 32, Neurons: 2})
	if err != nil {
		t.Fatal(err)
	}
	p := testPool(32)
	for _, c := range []struct {
		o    RecordOptions
		want string
	}{
		{RecordOptions{Test: 31, Repeats: 2}, "validation patches"},
		{RecordOptions{Test: 2, Repeats: 0}, "repeats"},
		{RecordOptions{Test: 2, Repeats: 1, ValFraction: 1}, "validation fraction"},
	} {
		if _, err := Record(context.Background(), m, p, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Record(%+v): %v; want an error about %q", c.o, err, c.want)
		}
	}
	if _, err := Record(context.Background(), m, testPool(48), RecordOptions{Repeats: 1}); err == nil || !strings.Contains(err.Error(), "size") {
		t.Errorf("a pool of another size: %v", err)
	}
	flat := make([]float32, 4*32*32)
	if err := m.Calibrate(flat, 4); err == nil {
		t.Error("calibrating on blank images")
	}
}

func TestPoisson(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, lambda := range []float64{0, 0.5, 3, 45} {
		const n = 20000
		var s, ss float64
		for i := 0; i < n; i++ {
			k := float64(Poisson(rng, lambda))
			s += k
			ss += k * k
		}
		mean := s / n
		v := ss/n - mean*mean
		tol := 4 * math.Sqrt(lambda/n)
		if math.Abs(mean-lambda) > tol+1e-9 || math.Abs(v-lambda) > 0.1*lambda+1e-9 {
			t.Errorf("Poisson(%g): mean %.4g, variance %.4g", lambda, mean, v)
		}
	}
}
