package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"

	"egg/encoder"
	"egg/nn"
	"egg/tensor"
)

// Constants of the model (see the package documentation).
const (
	Orientations = 8    // orientations of the Gabor filters, 180/8 degrees apart
	Levels       = 3    // pyramid levels
	Cell         = 4    // input pixels per grid cell
	Wavelength   = 5.0  // Gabor wavelength in pixels of a level
	Sigma        = 1.0  // semi-saturation constant of the divisive normalisation
	Eps          = 0.05 // added to subunits before their product
	SubunitSize  = 5    // subunit neighbourhood, cells

	DefaultWindow = 0.2 // counting window, seconds
	MinRate       = 5.0 // lowest mean rate, spikes/s
	MaxRate       = 20.0
)

// The kinds of neurons.
const (
	Angle   = "angle"
	Curve   = "curve"
	Texture = "texture"
)

// Config describes a population completely: the same Config gives the same model.
type Config struct {
	Size    int    `json:"size"`    // input side S in pixels (a multiple of 4, at least 32)
	Neurons int    `json:"neurons"` // number of neurons
	Seed    uint64 `json:"seed"`    // seeds every random choice
	// InputMean and InputStd record the pixel normalisation of the model's inputs:
	// (pixel - InputMean) / InputStd. A zero InputStd means 1.
	InputMean float32 `json:"input_mean"`
	InputStd  float32 `json:"input_std"`
	Window    float64 `json:"window"` // counting window in seconds; 0 means DefaultWindow
}

// Validate reports the first problem of c.
func (c Config) Validate() error {
	switch {
	case c.Size < 32 || c.Size%Cell != 0:
		return fmt.Errorf("simulate: image size %d: want a multiple of %d, at least 32 (make the pool with such a --size)", c.Size, Cell)
	case c.Neurons < 1:
		return fmt.Errorf("simulate: %d neurons: want at least 1", c.Neurons)
	case c.Window < 0 || math.IsNaN(c.Window):
		return fmt.Errorf("simulate: counting window %g s must be positive", c.Window)
	}
	return nil
}

func (c Config) window() float64 {
	if c.Window == 0 {
		return DefaultWindow
	}
	return c.Window
}

// Neuron describes one simulated neuron, for people: the model's tensors hold the
// same information.
type Neuron struct {
	Kind  string `json:"kind"`  // Angle, Curve or Texture
	Level int    `json:"level"` // preferred pyramid level: 0 (wavelength 5 px), 1 (10 px), 2 (20 px)
	// Orientations of the subunits' preferred edges, degrees in [0, 180); a texture
	// neuron's one subunit may prefer two.
	Orientations []float64 `json:"orientations"`
	// Offsets of the subunits from the receptive-field centre, pixels (x right, y
	// down).
	Offsets   [][2]float64 `json:"offsets"`
	Center    [2]float64   `json:"center"`    // receptive-field centre, pixels (x, y)
	Tolerance float64      `json:"tolerance"` // sigma of the window over positions, pixels
	Beta      float64      `json:"beta"`      // soft-max sharpness
	Threshold float64      `json:"threshold"` // tau, in standard deviations of u
	Gain      float64      `json:"gain"`      // gamma
	MeanRate  float64      `json:"mean_rate"` // target mean rate, spikes/s
}

// Model is a simulated population. It implements encoder.Model.
type Model struct {
	cfg        Config
	neurons    []Neuron
	calibrated bool

	Gabor     *tensor.Tensor // [2*Orientations, 1, k, k]: even and odd filter of each orientation
	Subunits  *tensor.Tensor // [K, Levels*Orientations, SubunitSize, SubunitSize]
	LogWindow *tensor.Tensor // [Neurons, G*G] log of the normalised window over cells
	Beta      *tensor.Tensor // [Neurons]
	First     *tensor.Tensor // [Neurons] index of the first subunit (stored as float)
	Second    *tensor.Tensor // [Neurons] index of the second subunit
	Scale     *tensor.Tensor // [Neurons] g
	Shift     *tensor.Tensor // [Neurons] b
	Amplitude *tensor.Tensor // [Neurons] A

	first, second []int
}

var _ encoder.Model = (*Model)(nil)

// New builds the population of cfg on dev. Its output nonlinearity is not yet
// calibrated (rate = softplus(u)); call Calibrate with natural images before use.
func New(dev *tensor.Device, cfg Config) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5e1ec7))
	m := &Model{cfg: cfg, Gabor: gaborBank(dev)}
	g := cfg.Size / Cell
	type sub struct {
		level   int
		orients []float64 // radians
		dx, dy  float64   // cells
		spread  float64   // cells
		kappa   float64
		levelW  float64 // weight of neighbouring levels
	}
	var subs []sub
	n := cfg.Neurons
	logWin := make([]float32, n*g*g)
	beta := make([]float32, n)
	m.first, m.second = make([]int, n), make([]int, n)
	deg := func(r float64) float64 { return math.Mod(r*180/math.Pi+360, 180) }
	for i := 0; i < n; i++ {
		var nr Neuron
		switch r := rng.Float64(); {
		case r < 0.35:
			nr.Kind = Angle
		case r < 0.7:
			nr.Kind = Curve
		default:
			nr.Kind = Texture
		}
		switch r := rng.Float64(); {
		case r < 0.4:
			nr.Level = 0
		case r < 0.8:
			nr.Level = 1
		default:
			nr.Level = 2
		}
		// Subunit offsets scale with the level: coarser features lie further apart.
		reach := []float64{0.9, 1.2, 1.6}[nr.Level] * (0.85 + 0.3*rng.Float64())
		switch nr.Kind {
		case Angle:
			phiA := 2 * math.Pi * rng.Float64()
			delta := (60 + 60*rng.Float64()) * math.Pi / 180
			if rng.IntN(2) == 0 {
				delta = -delta
			}
			for _, phi := range []float64{phiA, phiA + delta} {
				dx, dy := reach*math.Cos(phi), -reach*math.Sin(phi)
				subs = append(subs, sub{level: nr.Level, orients: []float64{phi}, dx: dx, dy: dy, spread: 0.6, kappa: 3, levelW: 0.25})
				nr.Orientations = append(nr.Orientations, deg(phi))
				nr.Offsets = append(nr.Offsets, [2]float64{dx * Cell, dy * Cell})
			}
		case Curve:
			phi := 2 * math.Pi * rng.Float64()
			delta := (25 + 25*rng.Float64()) * math.Pi / 180
			if rng.IntN(2) == 0 {
				delta = -delta
			}
			// Points at arc length -reach and +reach on a circle through the cell with
			// tangent phi, turning by delta between them.
			// With the bend towards n, the tangent turns towards n along u, which is
			// clockwise on the screen: its angle decreases.
			ux, uy := math.Cos(phi), -math.Sin(phi)
			nx, ny := math.Sin(phi), math.Cos(phi)
			bend := reach * delta / 4
			for _, s := range []float64{-1, 1} {
				dx, dy := s*reach*ux+bend*nx, s*reach*uy+bend*ny
				o := phi - s*delta/2
				subs = append(subs, sub{level: nr.Level, orients: []float64{o}, dx: dx, dy: dy, spread: 0.6, kappa: 3, levelW: 0.25})
				nr.Orientations = append(nr.Orientations, deg(o))
				nr.Offsets = append(nr.Offsets, [2]float64{dx * Cell, dy * Cell})
			}
		default:
			o := []float64{math.Pi * rng.Float64()}
			if rng.Float64() < 0.4 {
				o = append(o, o[0]+(45+90*rng.Float64())*math.Pi/180)
			}
			subs = append(subs, sub{level: nr.Level, orients: o, spread: 1.0, kappa: 1.5, levelW: 0.5})
			for _, v := range o {
				nr.Orientations = append(nr.Orientations, deg(v))
			}
			nr.Offsets = [][2]float64{{0, 0}}
		}
		k := len(subs)
		if nr.Kind == Texture {
			m.first[i], m.second[i] = k-1, k-1
		} else {
			m.first[i], m.second[i] = k-2, k-1
		}
		// Receptive field: centre near the middle of the image, window and soft-max.
		cx := float64(g)/2 - 0.5 + clamp(rng.NormFloat64()*float64(g)/10, -float64(g)/5, float64(g)/5)
		cy := float64(g)/2 - 0.5 + clamp(rng.NormFloat64()*float64(g)/10, -float64(g)/5, float64(g)/5)
		var tol float64
		if nr.Kind == Texture {
			tol = 2 + 1.5*rng.Float64()
			nr.Beta = 0.5 + 0.5*rng.Float64()
		} else {
			tol = 1 + rng.Float64()
			nr.Beta = 2 + 2*rng.Float64()
		}
		nr.Center = [2]float64{cx*Cell + (Cell-1)/2.0, cy*Cell + (Cell-1)/2.0}
		nr.Tolerance = tol * Cell
		win := logWin[i*g*g : (i+1)*g*g]
		var z float64
		for y := 0; y < g; y++ {
			for x := 0; x < g; x++ {
				z += math.Exp(-((float64(x)-cx)*(float64(x)-cx) + (float64(y)-cy)*(float64(y)-cy)) / (2 * tol * tol))
			}
		}
		for y := 0; y < g; y++ {
			for x := 0; x < g; x++ {
				win[y*g+x] = float32(-((float64(x)-cx)*(float64(x)-cx)+(float64(y)-cy)*(float64(y)-cy))/(2*tol*tol) - math.Log(z))
			}
		}
		beta[i] = float32(nr.Beta)
		nr.Gain = 0.8 + 0.6*rng.Float64()
		nr.Threshold = 0.25 + 0.75*rng.Float64()
		nr.MeanRate = math.Exp(math.Log(MinRate) + (math.Log(MaxRate)-math.Log(MinRate))*rng.Float64())
		m.neurons = append(m.neurons, nr)
	}
	// Subunit weights: level x orientation x space, normalised to sum 1.
	c, s := Levels*Orientations, SubunitSize
	w := make([]float32, len(subs)*c*s*s)
	for k, sb := range subs {
		ws := w[k*c*s*s : (k+1)*c*s*s]
		var sum float64
		for l := 0; l < Levels; l++ {
			lw := 0.0
			switch d := l - sb.level; {
			case d == 0:
				lw = 1
			case d == 1 || d == -1:
				lw = sb.levelW
			}
			for o := 0; o < Orientations; o++ {
				theta := float64(o) * math.Pi / Orientations
				var ow float64
				for _, pref := range sb.orients {
					ow += math.Exp(sb.kappa * (math.Cos(2*(theta-pref)) - 1))
				}
				for y := 0; y < s; y++ {
					for x := 0; x < s; x++ {
						ddx, ddy := float64(x-s/2)-sb.dx, float64(y-s/2)-sb.dy
						v := lw * ow * math.Exp(-(ddx*ddx+ddy*ddy)/(2*sb.spread*sb.spread))
						ws[((l*Orientations+o)*s+y)*s+x] = float32(v)
						sum += v
					}
				}
			}
		}
		for j := range ws {
			ws[j] = float32(float64(ws[j]) / sum)
		}
	}
	m.Subunits = tensor.FromSlice(dev, w, len(subs), c, s, s)
	m.LogWindow = tensor.FromSlice(dev, logWin, n, g*g)
	m.Beta = tensor.FromSlice(dev, beta, n)
	first, second := make([]float32, n), make([]float32, n)
	for i := 0; i < n; i++ {
		first[i], second[i] = float32(m.first[i]), float32(m.second[i])
	}
	m.First, m.Second = tensor.FromSlice(dev, first, n), tensor.FromSlice(dev, second, n)
	m.Scale, m.Shift, m.Amplitude = tensor.Full(dev, 1, n), tensor.Full(dev, 0, n), tensor.Full(dev, 1, n)
	return m, nil
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// gaborBank returns the quadrature pairs [2*Orientations, 1, k, k]: channel 2o is
// the even (cosine) filter of orientation o*180/Orientations degrees, 2o+1 the odd
// one; zero mean, unit L2 norm.
func gaborBank(dev *tensor.Device) *tensor.Tensor {
	sigma := 0.56 * Wavelength
	half := int(math.Ceil(2.5 * sigma))
	k := 2*half + 1
	w := make([]float32, 2*Orientations*k*k)
	env := make([]float64, k*k)
	var envSum float64
	for y := 0; y < k; y++ {
		for x := 0; x < k; x++ {
			dx, dy := float64(x-half), float64(y-half)
			env[y*k+x] = math.Exp(-(dx*dx + dy*dy) / (2 * sigma * sigma))
			envSum += env[y*k+x]
		}
	}
	for o := 0; o < Orientations; o++ {
		theta := float64(o) * math.Pi / Orientations
		// The edge runs along (cos theta, -sin theta) on the screen (y down); the
		// carrier varies along its normal (sin theta, cos theta).
		nx, ny := math.Sin(theta), math.Cos(theta)
		for phase := 0; phase < 2; phase++ {
			f := make([]float64, k*k)
			var mean float64
			for y := 0; y < k; y++ {
				for x := 0; x < k; x++ {
					arg := 2 * math.Pi / Wavelength * (nx*float64(x-half) + ny*float64(y-half))
					c := math.Cos(arg)
					if phase == 1 {
						c = math.Sin(arg)
					}
					f[y*k+x] = env[y*k+x] * c
					mean += f[y*k+x]
				}
			}
			// Remove the response to uniform light (the envelope's share).
			var norm float64
			for j := range f {
				f[j] -= mean / envSum * env[j]
				norm += f[j] * f[j]
			}
			norm = math.Sqrt(norm)
			dst := w[(2*o+phase)*k*k : (2*o+phase+1)*k*k]
			for j := range f {
				dst[j] = float32(f[j] / norm)
			}
		}
	}
	return tensor.FromSlice(dev, w, 2*Orientations, 1, k, k)
}

// Visit implements nn.Module: the model's tensors are buffers (nothing is trained).
func (m *Model) Visit(v nn.Visitor) {
	v.Buffer("gabor", m.Gabor)
	v.Buffer("subunits", m.Subunits)
	v.Buffer("log_window", m.LogWindow)
	v.Buffer("beta", m.Beta)
	v.Buffer("first", m.First)
	v.Buffer("second", m.Second)
	v.Buffer("scale", m.Scale)
	v.Buffer("shift", m.Shift)
	v.Buffer("amplitude", m.Amplitude)
}

// Neurons implements encoder.Model.
func (m *Model) Neurons() int { return m.cfg.Neurons }

// SetTraining implements encoder.Model; the model behaves the same in both modes.
func (m *Model) SetTraining(bool) {}

// Config implements encoder.Model: an encoder.Config that records the input shape,
// the pixel normalisation and the number of neurons, under the name "simulated-v4".
// It has no core or readout, so encoder.New cannot build it: load model files with
// Load.
func (m *Model) Config() encoder.Config {
	return encoder.Config{
		Name:       "simulated-v4",
		InputShape: []int{1, m.cfg.Size, m.cfg.Size},
		InputMean:  m.cfg.InputMean,
		InputStd:   m.cfg.InputStd,
		Readout:    encoder.ReadoutConfig{Neurons: m.cfg.Neurons},
	}
}

// Simulation returns the model's Config.
func (m *Model) Simulation() Config { return m.cfg }

// Describe returns the description of every neuron.
func (m *Model) Describe() []Neuron { return m.neurons }

// Calibrated reports whether Calibrate has set the output nonlinearity.
func (m *Model) Calibrated() bool { return m.calibrated }

// SetNormalization records the pixel normalisation of the model's inputs.
func (m *Model) SetNormalization(mean, std float32) { m.cfg.InputMean, m.cfg.InputStd = mean, std }

// Forward implements encoder.Model: the rates [N, Neurons] (expected spike counts in
// the counting window) for x [N, 1, S, S] of z-scored pixels. It panics when x has
// another shape.
func (m *Model) Forward(x *tensor.Tensor) *tensor.Tensor {
	u := tensor.Log(m.drive(x))
	n := m.cfg.Neurons
	y := tensor.Add(tensor.Mul(u, tensor.Reshape(m.Scale, 1, n)), tensor.Reshape(m.Shift, 1, n))
	return tensor.Mul(tensor.Softplus(y), tensor.Reshape(m.Amplitude, 1, n))
}

// energy returns the normalised oriented energy [N, Levels*Orientations, G, G] of x.
func (m *Model) energy(x *tensor.Tensor) *tensor.Tensor {
	s := m.cfg.Size
	if x.Rank() != 4 || x.Dim(1) != 1 || x.Dim(2) != s || x.Dim(3) != s {
		panic(fmt.Sprintf("simulate: Forward: input %v; the model takes [N, 1, %d, %d]", x.Shape(), s, s))
	}
	nb, g := x.Dim(0), s/Cell
	half := m.Gabor.Dim(2) / 2
	levels := make([]*tensor.Tensor, Levels)
	level := x
	for l := 0; l < Levels; l++ {
		if l > 0 {
			level = tensor.AvgPool2D(level, 2, 2, 0)
		}
		q := tensor.Conv2D(level, m.Gabor, nil, tensor.ConvOpts{Padding: half})
		h := level.Dim(2)
		e := tensor.Sum(tensor.Reshape(tensor.Mul(q, q), nb, Orientations, 2, h, h), false, 2)
		if k := h / g; k > 1 {
			e = tensor.AvgPool2D(e, k, k, 0)
		}
		levels[l] = e
	}
	p := tensor.Concat(1, levels...)
	d := tensor.AddScalar(tensor.GaussianBlur(tensor.Sum(p, true, 1), 1), Sigma)
	return tensor.Div(p, d)
}

// drive returns the pooled conjunctions u [N, Neurons], before the output
// nonlinearity.
func (m *Model) drive(x *tensor.Tensor) *tensor.Tensor {
	r := m.energy(x)
	nb, n, g := x.Dim(0), m.cfg.Neurons, m.cfg.Size/Cell
	sub := tensor.Conv2D(r, m.Subunits, nil, tensor.ConvOpts{Padding: SubunitSize / 2})
	a := tensor.AddScalar(tensor.Select(sub, 1, m.first), Eps)
	b := tensor.AddScalar(tensor.Select(sub, 1, m.second), Eps)
	c := tensor.Sqrt(tensor.Mul(a, b))
	beta := tensor.Reshape(m.Beta, 1, n, 1)
	logits := tensor.Add(tensor.Mul(tensor.Reshape(c, nb, n, g*g), beta), tensor.Reshape(m.LogWindow, 1, n, g*g))
	top := tensor.Max(logits, 2, true).Detach()
	lse := tensor.Add(tensor.Log(tensor.Sum(tensor.Exp(tensor.Sub(logits, top)), false, 2)), tensor.Reshape(top, nb, n))
	return tensor.Div(lse, tensor.Reshape(m.Beta, 1, n))
}
