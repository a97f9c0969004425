package naturalness

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"egg/adm"
	"egg/diffusion"
	"egg/tensor"
)

var testDev = tensor.CPU(2)

// tinyUNet returns a small randomly initialised UNet on size x size gray images with
// outChannels outputs (2: learned variance, 1: fixed).
func tinyUNet(t *testing.T, size, outChannels int) *adm.UNet {
	t.Helper()
	cfg := adm.Config{ImageSize: size, InChannels: 1, OutChannels: outChannels, ModelChannels: 32, ChannelMult: []int{1, 1},
		NumResBlocks: 1, AttentionResolutions: []int{2}, NumHeads: 1, NumHeadChannels: -1, NumHeadsUpsample: -1}
	u, err := adm.New(testDev, cfg, rand.New(rand.NewPCG(3, 7)))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// schedule returns a process of steps respaced steps of the 1000-step linear one.
func schedule(t *testing.T, steps string, v diffusion.VarType) *diffusion.Schedule {
	t.Helper()
	s, err := diffusion.New(diffusion.Config{TimestepRespacing: steps, VarType: v, RescaleTimesteps: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randomImages returns n quantised random gray images [n, 1, size, size].
func randomImages(n, size int, seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 0))
	px := make([]uint8, n*size*size)
	for i := range px {
		px[i] = uint8(rng.IntN(256))
	}
	x, err := FromUint8(testDev, px, n, size, 1)
	if err != nil {
		panic(err)
	}
	return x
}

func TestStratified(t *testing.T) {
	for _, c := range []struct {
		name    string
		T, K    int
		p       float64
		seed    uint64
		wantLen int
		exact   int // the first strata of a single step: timesteps 1 .. exact are evaluated
	}{
		{"1000 in 50, default power", 1000, 50, 0, 0, 50, 3},
		{"1000 in 50, equal strata", 1000, 50, 1, 0, 50, 0},
		{"1000 in 7, equal uneven strata", 1000, 7, 1, 3, 7, 0},
		{"1000 in 7, power 3", 1000, 7, 3, 3, 7, 0},
		{"power below 1", 100, 30, 0.3, 1, 30, 0},
		{"two", 10, 2, 0, 1, 2, 0},
		{"crowded", 12, 11, 2, 2, 11, 9},
		{"all", 12, 12, 0, 0, 12, 11},
		{"more than all", 12, 40, 0, 5, 12, 11},
	} {
		t.Run(c.name, func(t *testing.T) {
			steps, w, err := Stratified(c.T, c.K, c.p, c.seed)
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != c.wantLen || len(w) != c.wantLen {
				t.Fatalf("%d steps, %d weights; want %d", len(steps), len(w), c.wantLen)
			}
			if steps[0] != 0 || w[0] != 1 {
				t.Errorf("first step %d weight %v; want 0 with weight 1", steps[0], w[0])
			}
			sum := 0.0
			for j := range steps {
				sum += w[j]
				if j > 0 && steps[j] <= steps[j-1] {
					t.Errorf("steps not ascending: %v", steps)
				}
				if steps[j] < 0 || steps[j] >= c.T {
					t.Errorf("step %d out of [0, %d)", steps[j], c.T)
				}
			}
			if sum != float64(c.T) {
				t.Errorf("weights sum to %v; want T = %d", sum, c.T)
			}
			for k := 1; k <= c.exact; k++ {
				if steps[k] != k || w[k] != 1 {
					t.Errorf("step %d is %d with weight %v; want %d with weight 1", k, steps[k], w[k], k)
				}
			}
			// Each stratum holds its step and its weight is its size, so every
			// timestep has inclusion probability x weight = 1.
			if c.K < c.T {
				p := c.p
				if p == 0 {
					p = 2
				}
				b := strataBounds(c.T, c.K, p)
				if b[0] != 1 || b[len(b)-1] != c.T {
					t.Errorf("bounds %v do not cover 1 .. %d", b, c.T-1)
				}
				for j := range c.K - 1 {
					lo, hi := b[j], b[j+1]
					if p == 1 && (lo != 1+j*(c.T-1)/(c.K-1) || hi != 1+(j+1)*(c.T-1)/(c.K-1)) {
						t.Errorf("equal stratum %d is [%d, %d)", j, lo, hi)
					}
					if s := steps[j+1]; hi <= lo || s < lo || s >= hi || w[j+1] != float64(hi-lo) {
						t.Errorf("stratum %d [%d, %d): step %d weight %v", j, lo, hi, s, w[j+1])
					}
				}
			}
			again, _, _ := Stratified(c.T, c.K, c.p, c.seed)
			for j := range steps {
				if again[j] != steps[j] {
					t.Fatalf("not deterministic: %v then %v", steps, again)
				}
			}
		})
	}
	// The draw within a stratum is uniform: over many seeds every timestep of a
	// stratum of 9 comes up about equally often.
	counts := make([]int, 10)
	const seeds = 4500
	for sd := range uint64(seeds) {
		steps, _, _ := Stratified(10, 2, 0, sd)
		counts[steps[1]]++
	}
	for tt := 1; tt < 10; tt++ {
		if c := counts[tt]; c < seeds/9-150 || c > seeds/9+150 {
			t.Errorf("timestep %d drawn %d times in %d; want about %d", tt, c, seeds, seeds/9)
		}
	}
	for _, c := range []struct {
		T, K int
		p    float64
		want string
	}{
		{1000, 1, 0, "at least 2"}, {1000, 0, 0, "at least 2"}, {1, 5, 0, "at least 2"},
		{1000, 50, -1, "strata power -1"}, {1000, 50, math.NaN(), "strata power NaN"},
	} {
		if _, _, err := Stratified(c.T, c.K, c.p, 0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Stratified(%d, %d, %v): error %v; want %q", c.T, c.K, c.p, err, c.want)
		}
	}
}

// exactBound is the full bound by a plain loop: every timestep, one image at a time,
// with the estimator's noise, and the prior term in float64 by its formula.
func exactBound(t *testing.T, m Denoiser, s *diffusion.Schedule, x *tensor.Tensor, seed uint64, clip bool) (bound, priorTerm []float64) {
	t.Helper()
	n, per := x.Dim(0), x.Len()/x.Dim(0)
	out, priors := make([]float64, n), make([]float64, n)
	abar := s.AlphasCumprod[s.NumTimesteps-1]
	for i := range n {
		img := tensor.FromSlice(testDev, append([]float32(nil), x.Data()[i*per:(i+1)*per]...), append([]int{1}, x.Shape()[1:]...)...)
		total := 0.0
		for tt := range s.NumTimesteps {
			noise := tensor.FromSlice(testDev, Noise(seed, tt, per), img.Shape()...)
			xt := diffusion.QSample(s, img, []int{tt}, noise)
			o := m.Forward(xt, []float32{s.ModelTimestep(tt)}, nil)
			total += float64(diffusion.VBTerms(s, img, xt, o, []int{tt}, clip).Data()[0])
		}
		prior := 0.0
		for _, v := range img.Data() {
			mu := math.Sqrt(abar) * float64(v)
			prior += 0.5 * (-1 - math.Log(1-abar) + (1 - abar) + mu*mu)
		}
		priors[i] = prior / float64(per) / math.Ln2
		out[i] = total + priors[i]
	}
	return out, priors
}

func TestExactSum(t *testing.T) {
	x := randomImages(3, 8, 1)
	for _, c := range []struct {
		name      string
		out       int
		v         diffusion.VarType
		k         int
		batch     int
		unclipped bool
	}{
		{"learned range, K = T", 2, diffusion.VarLearnedRange, 12, 5, false},
		{"learned range, K > T, unclipped", 2, diffusion.VarLearnedRange, 100, 7, true},
		{"fixed small, K = T", 1, diffusion.VarFixedSmall, 12, 4, false},
		{"fixed large, K = T, unclipped", 1, diffusion.VarFixedLarge, 12, 36, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := tinyUNet(t, 8, c.out)
			s := schedule(t, "12", c.v)
			e, err := New(u, s, Config{Steps: c.k, Seed: 4, BatchSize: c.batch, Unclipped: c.unclipped})
			if err != nil {
				t.Fatal(err)
			}
			if len(e.Timesteps()) != 12 {
				t.Fatalf("timesteps %v; want all 12", e.Timesteps())
			}
			var p countProgress
			scores, err := e.Score(context.Background(), x, &p)
			if err != nil {
				t.Fatal(err)
			}
			if p.n != 3*12 {
				t.Errorf("progress counted %d; want %d", p.n, 3*12)
			}
			want, prior := exactBound(t, u, s, x, 4, !c.unclipped)
			other, _ := exactBound(t, u, s, x, 4, c.unclipped)
			for i, sc := range scores {
				if d := math.Abs(sc.Prior - prior[i]); !(d <= 1e-3*prior[i]) {
					t.Errorf("image %d: prior term %v; by hand %v", i, sc.Prior, prior[i])
				}
				if d := math.Abs(sc.BitsPerDim - want[i]); !(d <= 1e-4*math.Max(1, math.Abs(want[i]))) {
					t.Errorf("image %d: estimate %v, full sum %v", i, sc.BitsPerDim, want[i])
				}
				// The random UNet's x0 predictions leave [-1, 1], so clipping them
				// changes the bound.
				if d := math.Abs(sc.BitsPerDim - other[i]); !(d > 1e-3*math.Abs(want[i])) {
					t.Errorf("image %d: %v with clipping %v, %v without", i, sc.BitsPerDim, !c.unclipped, other[i])
				}
				if !(sc.BitsPerDim > 0) || !(sc.Prior > 0) || len(sc.Terms) != 12 {
					t.Errorf("image %d: score %+v", i, sc)
				}
			}
		})
	}
}

type countProgress struct{ n int }

func (p *countProgress) Add(n int) error { p.n += n; return nil }

func TestDeterministic(t *testing.T) {
	u := tinyUNet(t, 8, 2)
	s := schedule(t, "100", diffusion.VarLearnedRange)
	x := randomImages(4, 8, 2)
	score := func(seed uint64, batch int, x *tensor.Tensor) []float64 {
		e, err := New(u, s, Config{Steps: 5, Seed: seed, BatchSize: batch})
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.BitsPerDim(context.Background(), x, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ref := score(1, 3, x)
	last := tensor.FromSlice(testDev, append([]float32(nil), x.Data()[3*64:]...), 1, 1, 8, 8)
	for _, c := range []struct {
		name string
		got  []float64
		same bool
	}{
		{"again", score(1, 3, x), true},
		{"batch of one pair", score(1, 1, x), true},
		{"whole batch", score(1, 20, x), true},
		{"image alone", append(make([]float64, 3), score(1, 3, last)...), true},
		{"another seed", score(2, 3, x), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			differ := false
			for i, v := range c.got {
				if c.name == "image alone" && i < 3 {
					continue
				}
				d := math.Abs(v - ref[i])
				if c.same && d > 1e-5*math.Abs(ref[i]) {
					t.Errorf("image %d: %v, first %v", i, v, ref[i])
				}
				differ = differ || d > 1e-3*math.Abs(ref[i])
			}
			if !c.same && !differ {
				t.Errorf("another seed gave the same estimate %v", c.got)
			}
		})
	}
}

// oracle is the ideal denoiser of a data set of one image x*: its epsilon is exact,
// eps = (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t), so its x0 prediction is x* at every
// step.
type oracle struct {
	s     *diffusion.Schedule
	star  []float32
	index map[float32]int
}

func newOracle(s *diffusion.Schedule, star []float32) *oracle {
	o := &oracle{s: s, star: star, index: map[float32]int{}}
	for i := range s.NumTimesteps {
		o.index[s.ModelTimestep(i)] = i
	}
	return o
}

func (o *oracle) Forward(x *tensor.Tensor, t []float32, _ []int) *tensor.Tensor {
	per := len(o.star)
	out := make([]float32, x.Len())
	for k, tv := range t {
		i := o.index[tv]
		a, b := math.Sqrt(o.s.AlphasCumprod[i]), math.Sqrt(1-o.s.AlphasCumprod[i])
		for j := range per {
			out[k*per+j] = float32((float64(x.Data()[k*per+j]) - a*float64(o.star[j])) / b)
		}
	}
	return tensor.FromSlice(x.Device(), out, x.Shape()...)
}

// approxCDF is guided-diffusion's tanh approximation of the standard normal CDF.
func approxCDF(x float64) float64 {
	return 0.5 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// oracleBound is the bound of image y under the oracle of x* with the fixed-small
// variance, in float64: the model's mean is the posterior mean of x*, so
// L_t = c1_t^2 mean((y - x*)^2) / (2 beta~_t) / ln 2 whatever the noise, and L_0 is
// the discretized Gaussian around x* with variance beta~_1.
func oracleBound(s *diffusion.Schedule, y, star []float32) float64 {
	d2 := 0.0
	for j := range y {
		d := float64(y[j]) - float64(star[j])
		d2 += d * d
	}
	d2 /= float64(len(y))
	total := 0.0
	for tt := 1; tt < s.NumTimesteps; tt++ {
		c1 := s.PosteriorMeanCoef1[tt]
		total += c1 * c1 * d2 / (2 * s.PosteriorVariance[tt]) / math.Ln2
	}
	sd := math.Sqrt(s.PosteriorVariance[1])
	nll := 0.0
	for j := range y {
		v, c := float64(y[j]), float64(y[j])-float64(star[j])
		var p float64
		switch {
		case v < -0.999:
			p = approxCDF((c + 1.0/255) / sd)
		case v > 0.999:
			p = 1 - approxCDF((c-1.0/255)/sd)
		default:
			p = approxCDF((c+1.0/255)/sd) - approxCDF((c-1.0/255)/sd)
		}
		nll -= math.Log(math.Max(p, 1e-12))
	}
	total += nll / float64(len(y)) / math.Ln2
	abar := s.AlphasCumprod[s.NumTimesteps-1]
	prior := 0.0
	for _, v := range y {
		mu := math.Sqrt(abar) * float64(v)
		prior += 0.5 * (-1 - math.Log(1-abar) + (1 - abar) + mu*mu)
	}
	return total + prior/float64(len(y))/math.Ln2
}

// TestOracle scores images under a prior that knows one image x*: x* needs almost no
// bits beyond the decoder's bin, images further from x* need more, and every value
// matches the bound worked out by hand.
func TestOracle(t *testing.T) {
	const size = 8
	s := schedule(t, "50", diffusion.VarFixedSmall)
	star := randomImages(1, size, 9)
	o := newOracle(s, star.Data())
	// Images at growing distances from x*: x* itself, then more and more pixels
	// replaced by random ones.
	rng := rand.New(rand.NewPCG(5, 5))
	fractions := []float64{0, 0.05, 0.25, 1}
	var data []float32
	for _, f := range fractions {
		for _, v := range star.Data() {
			if rng.Float64() < f {
				v = float32(rng.IntN(256))/127.5 - 1
			}
			data = append(data, v)
		}
	}
	x := tensor.FromSlice(testDev, data, len(fractions), 1, size, size)
	e, err := New(o, s, Config{Steps: 50, Seed: 0, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	scores, err := e.Score(context.Background(), x, nil)
	if err != nil {
		t.Fatal(err)
	}
	per := size * size
	for i, sc := range scores {
		want := oracleBound(s, data[i*per:(i+1)*per], star.Data())
		if d := math.Abs(sc.BitsPerDim - want); d > 1e-3*math.Max(1, want) {
			t.Errorf("image %d (%.0f%% replaced): %v bits/dim, by hand %v", i, 100*fractions[i], sc.BitsPerDim, want)
		}
		if i > 0 && !(sc.BitsPerDim > scores[i-1].BitsPerDim+0.1) {
			t.Errorf("image %d (%.0f%% replaced) scores %v, not clearly above %v of the image closer to x*",
				i, 100*fractions[i], sc.BitsPerDim, scores[i-1].BitsPerDim)
		}
	}
	for j, v := range scores[0].Terms[1:] {
		if math.Abs(v) > 1e-4 {
			t.Errorf("x*: KL term at timestep %d is %v; want 0", e.Timesteps()[j+1], v)
		}
	}
	// Stratified estimates of the same bound are close to it, and closer with the
	// default strata (narrow at small t, where the KL terms of a perturbed image are
	// largest) than with equal ones.
	relErr := func(power float64) float64 {
		sum := 0.0
		for seed := range uint64(20) {
			e, err := New(o, s, Config{Steps: 10, Power: power, Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			est, err := e.BitsPerDim(context.Background(), x, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(est); i++ {
				sum += math.Abs(est[i]/scores[i].BitsPerDim - 1)
			}
		}
		return sum / 20 / float64(len(fractions)-1)
	}
	def, equal := relErr(0), relErr(1)
	if !(def < 0.2) || !(def < equal) {
		t.Errorf("mean relative error of K = 10 of 50: %.3g with the default strata, %.3g with equal strata; want < 0.2 and smaller", def, equal)
	}
	t.Logf("mean relative error of K = 10 of 50: %.3g with the default strata, %.3g with equal strata", def, equal)
}

func TestScoreErrors(t *testing.T) {
	u := tinyUNet(t, 8, 2)
	s := schedule(t, "10", diffusion.VarLearnedRange)
	e, err := New(u, s, Config{Steps: 4})
	if err != nil {
		t.Fatal(err)
	}
	nan := randomImages(1, 8, 1)
	nan.Data()[5] = float32(math.NaN())
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		x    *tensor.Tensor
		want string
	}{
		{"nil images", context.Background(), nil, "want [N, C, H, W]"},
		{"rank 3", context.Background(), tensor.New(testDev, 1, 8, 8), "want [N, C, H, W]"},
		{"NaN pixel", context.Background(), nan, "pixel 5"},
		{"wrong channels for the UNet", context.Background(), tensor.New(testDev, 1, 2, 8, 8), "naturalness: scoring images of shape [1 2 8 8]"},
		{"cancelled", cancelled, randomImages(2, 8, 1), "context canceled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Score(c.ctx, c.x, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want %q", err, c.want)
			}
			if c.name == "cancelled" && !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not wrap context.Canceled", err)
			}
		})
	}
	for _, c := range []struct {
		name string
		m    Denoiser
		s    *diffusion.Schedule
		cfg  Config
		want string
	}{
		{"no model", nil, s, Config{Steps: 4}, "no model"},
		{"no schedule", u, nil, Config{Steps: 4}, "no diffusion schedule"},
		{"one step", u, s, Config{Steps: 1}, "at least 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.m, c.s, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want %q", err, c.want)
			}
		})
	}
}

func TestFromUint8(t *testing.T) {
	px := []uint8{0, 255, 128, 127, 1, 254, 64, 191} // two 2x2 patches
	for _, c := range []struct {
		name     string
		channels int
	}{{"gray", 1}, {"three channels", 3}} {
		t.Run(c.name, func(t *testing.T) {
			x, err := FromUint8(testDev, px, 2, 2, c.channels)
			if err != nil {
				t.Fatal(err)
			}
			if want := []int{2, c.channels, 2, 2}; !equal(x.Shape(), want) {
				t.Fatalf("shape %v; want %v", x.Shape(), want)
			}
			for i := range 2 {
				for ch := range c.channels {
					for k := range 4 {
						got := x.Data()[(i*c.channels+ch)*4+k]
						want := float32(px[i*4+k])/127.5 - 1
						if got != want {
							t.Errorf("patch %d channel %d pixel %d: %v; want %v", i, ch, k, got, want)
						}
					}
				}
			}
			if x.Data()[0] != -1 || x.Data()[1] != 1 {
				t.Errorf("0 and 255 map to %v and %v; want -1 and 1", x.Data()[0], x.Data()[1])
			}
			// Values on the 8-bit grid are unchanged by Quantize.
			q := Quantize(x)
			for k, v := range q.Data() {
				if v != x.Data()[k] {
					t.Errorf("Quantize moved grid value %v to %v", x.Data()[k], v)
				}
			}
		})
	}
	for _, c := range []struct {
		name           string
		px             []uint8
		n, size, chans int
		want           string
	}{
		{"short", px[:7], 2, 2, 1, "7 pixels for 2 patches"},
		{"no patches", nil, 0, 2, 1, "want positive counts"},
		{"no channels", px, 2, 2, 0, "want positive counts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := FromUint8(testDev, c.px, c.n, c.size, c.chans); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want %q", err, c.want)
			}
		})
	}
}

func TestQuantize(t *testing.T) {
	for _, c := range []struct {
		in, want float32
	}{
		{-3, -1}, {2, 1}, {0, 128/127.5 - 1}, // 0 is half-way: 127.5 rounds up to 128
		{-1, -1}, {1, 1}, {0.5, 191/127.5 - 1}, {-0.999, -1},
	} {
		got := Quantize(tensor.FromSlice(testDev, []float32{c.in}, 1)).Data()[0]
		if math.Abs(float64(got-c.want)) > 1e-6 {
			t.Errorf("Quantize(%v) = %v; want %v", c.in, got, c.want)
		}
	}
}

func TestFit(t *testing.T) {
	gray := randomImages(2, 4, 3)
	for _, c := range []struct {
		name           string
		x              *tensor.Tensor
		channels, size int
		want           []int
		err            string
	}{
		{"same", gray, 1, 4, []int{2, 1, 4, 4}, ""},
		{"to colour", gray, 3, 4, []int{2, 3, 4, 4}, ""},
		{"resize", gray, 1, 8, []int{2, 1, 8, 8}, ""},
		{"colour to gray", tensor.New(testDev, 2, 3, 4, 4), 1, 4, []int{2, 1, 4, 4}, ""},
		{"two channels to three", tensor.New(testDev, 2, 2, 4, 4), 3, 4, nil, "images of 2 channels for a prior of 3"},
		{"rank", tensor.New(testDev, 4, 4), 1, 4, nil, "want [N, C, H, W]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			y, err := Fit(c.x, c.channels, c.size)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v; want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equal(y.Shape(), c.want) {
				t.Fatalf("shape %v; want %v", y.Shape(), c.want)
			}
			if c.name == "to colour" {
				for i := range 2 {
					for ch := range 3 {
						for k := range 16 {
							if y.Data()[(i*3+ch)*16+k] != gray.Data()[i*16+k] {
								t.Fatalf("channel %d of image %d is not the gray image", ch, i)
							}
						}
					}
				}
			}
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
