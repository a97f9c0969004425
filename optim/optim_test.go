package optim

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"egg/internal/refvec"
	"egg/tensor"
)

var dev = tensor.CPU(1)

// param returns a leaf parameter holding a copy of v.
func param(v ...float32) *tensor.Tensor {
	return tensor.FromSlice(dev, append([]float32(nil), v...), len(v)).SetRequiresGrad(true)
}

// setGrad makes g the gradient of p (through sum(p * g), whose gradient is g exactly).
func setGrad(p *tensor.Tensor, g []float32) {
	p.ZeroGrad()
	c := tensor.FromSlice(dev, append([]float32(nil), g...), p.Shape()...)
	tensor.Sum(tensor.Mul(p, c), false).Backward()
}

func near(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*math.Max(1, math.Abs(want[i])) || math.IsNaN(d) {
			t.Errorf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestSGD(t *testing.T) {
	// Plain: p - lr * g.
	p := param(1, -2)
	o := NewSGD([]Group{{Params: []*tensor.Tensor{p}, LR: 0.1}}, SGDConfig{})
	setGrad(p, []float32{0.5, 0.25})
	o.Step()
	near(t, "plain", p.Data(), []float64{0.95, -2.025}, 1e-7)

	// Momentum 0.9 and weight decay 0.1, two steps by hand:
	// d1 = g + 0.1 p0 = (0.6, 0.05), buf = d1, p1 = p0 - 0.1 d1 = (0.94, -2.005);
	// d2 = g + 0.1 p1 = (0.594, 0.0495), buf = 0.9 buf + d2 = (1.134, 0.0945),
	// p2 = p1 - 0.1 buf = (0.8266, -2.01445).
	p = param(1, -2)
	o = NewSGD([]Group{{Params: []*tensor.Tensor{p}, LR: 0.1, WeightDecay: 0.1}}, SGDConfig{Momentum: 0.9})
	for range 2 {
		setGrad(p, []float32{0.5, 0.25})
		o.Step()
	}
	near(t, "momentum", p.Data(), []float64{0.8266, -2.01445}, 1e-6)

	// Nesterov: the step uses d + 0.9 buf: p1 = p0 - 0.1 * 1.9 d1 = (0.886, -2.0095).
	p = param(1, -2)
	o = NewSGD([]Group{{Params: []*tensor.Tensor{p}, LR: 0.1, WeightDecay: 0.1}}, SGDConfig{Momentum: 0.9, Nesterov: true})
	setGrad(p, []float32{0.5, 0.25})
	o.Step()
	near(t, "nesterov", p.Data(), []float64{0.886, -2.0095}, 1e-6)

	// Dampening scales the new gradient from the second step on:
	// buf2 = 0.5 * 0.5 + (1 - 0.3) * 0.5 = 0.6; p2 = 1 - 0.1 * 0.5 - 0.1 * 0.6 = 0.89.
	p = param(1)
	o = NewSGD([]Group{{Params: []*tensor.Tensor{p}, LR: 0.1}}, SGDConfig{Momentum: 0.5, Dampening: 0.3})
	for range 2 {
		setGrad(p, []float32{0.5})
		o.Step()
	}
	near(t, "dampening", p.Data(), []float64{0.89}, 1e-6)
}

// adamRef runs Adam(W) in float64 by the textbook formulas.
func adamRef(p0 []float64, grads [][]float64, lr, b1, b2, eps, wd float64, decoupled, ams bool) []float64 {
	p := append([]float64(nil), p0...)
	m := make([]float64, len(p))
	v := make([]float64, len(p))
	vm := make([]float64, len(p))
	for s, g := range grads {
		t := float64(s + 1)
		for i := range p {
			gi := g[i]
			if decoupled {
				p[i] *= 1 - lr*wd
			} else {
				gi += wd * p[i]
			}
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			vm[i] = math.Max(vm[i], v[i])
			den := v[i]
			if ams {
				den = vm[i]
			}
			p[i] -= lr / (1 - math.Pow(b1, t)) * m[i] / (math.Sqrt(den)/math.Sqrt(1-math.Pow(b2, t)) + eps)
		}
	}
	return p
}

func TestAdam(t *testing.T) {
	p0 := []float32{1, -2, 0.5, 3}
	grads := [][]float32{{0.5, 0.25, -1, 1e-3}, {-0.2, 0.3, -0.5, 2e-3}, {0.1, -0.4, 0.7, -1e-3}}
	p064 := []float64{1, -2, 0.5, 3}
	var g64 [][]float64
	for _, g := range grads {
		var r []float64
		for _, v := range g {
			r = append(r, float64(v))
		}
		g64 = append(g64, r)
	}
	for _, tc := range []struct {
		name      string
		decoupled bool
		ams       bool
		cfg       AdamConfig
		lr, wd    float64
	}{
		{"Adam", false, false, AdamConfig{}, 0.01, 0},
		{"AdamL2", false, false, AdamConfig{Beta1: 0.8, Beta2: 0.99, Eps: 1e-6}, 0.05, 0.1},
		{"AdamAMSGrad", false, true, AdamConfig{AMSGrad: true}, 0.01, 0.01},
		{"AdamW", true, false, AdamConfig{}, 0.1, 0.01},
		{"AdamWAMSGrad", true, true, AdamConfig{AMSGrad: true, Beta2: 0.9}, 0.1, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := param(p0...)
			groups := []Group{{Params: []*tensor.Tensor{p}, LR: tc.lr, WeightDecay: tc.wd}}
			var o *Adam
			if tc.decoupled {
				o = NewAdamW(groups, tc.cfg)
			} else {
				o = NewAdam(groups, tc.cfg)
			}
			c := tc.cfg.withDefaults()
			for i, g := range grads {
				setGrad(p, g)
				o.Step()
				want := adamRef(p064, g64[:i+1], tc.lr, c.Beta1, c.Beta2, c.Eps, tc.wd, tc.decoupled, tc.ams)
				near(t, fmt.Sprint("step ", i+1), p.Data(), want, 1e-6)
			}
			if st := o.State(); st.Params[0].Step != 3 || (st.Params[0].MaxExpAvgSq != nil) != tc.ams {
				t.Errorf("state %+v", st.Params[0])
			}
		})
	}
	// The first Adam step is lr * sign(g) (for |g| >> eps).
	p := param(0, 0)
	o := NewAdam([]Group{{Params: []*tensor.Tensor{p}, LR: 0.5}}, AdamConfig{})
	setGrad(p, []float32{3, -1e-3})
	o.Step()
	near(t, "first step", p.Data(), []float64{-0.5, 0.5}, 1e-5)
}

func bits(v []float32) []uint32 {
	b := make([]uint32, len(v))
	for i, x := range v {
		b[i] = math.Float32bits(x)
	}
	return b
}

func floats(b ...uint32) []float32 {
	v := make([]float32, len(b))
	for i, x := range b {
		v[i] = math.Float32frombits(x)
	}
	return v
}

// TestOptimTorchBitExact replays four updates recorded from PyTorch 1.13 (CPU, AVX2,
// single-tensor implementations) and asks for the same float32 bits.
func TestOptimTorchBitExact(t *testing.T) {
	p0 := floats(0xbf793b54, 0xbf9a940d, 0xbf8edf65, 0x3faae2df, 0xbeca272f, 0x4078ad21, 0xc0336af9, 0xbfc336f2)
	grads := [][]float32{
		floats(0x3f219734, 0xbf662db9, 0xbf0ecb8d, 0x3f30d2f2, 0x3e63cc2f, 0xbf2a8dbd, 0x3f2f44b6, 0x3f12f1c5),
		floats(0xbbbeffbe, 0x3bfba39b, 0x3a15aa3c, 0xbc42ddfc, 0xbbb96ddd, 0xbc086c07, 0x3c13b17f, 0x3b0aa7bf),
		floats(0x3fac011a, 0xbfe9c9ca, 0x3f3782bc, 0x3fb46fe9, 0xc0bb95a0, 0xbfd68db3, 0x3fa4ef1f, 0xc0d95fdb),
		floats(0xb6075def, 0x373321da, 0x3659db48, 0xb5377cf5, 0xb7271707, 0x3741fd99, 0xb685f145, 0x374be6ce),
	}
	for _, tc := range []struct {
		name string
		make func(g []Group) Optimizer
		lr   float64
		wd   float64
		want []uint32
	}{
		{"AdamW", func(g []Group) Optimizer { return NewAdamW(g, AdamConfig{}) }, 0.5, 0.05,
			[]uint32{0xc017d824, 0x3ecf4d70, 0xbeca1aa3, 0xbe91987a, 0xbf12f684, 0x40a021a5, 0xc081822e, 0xbfd098bf}},
		{"AdamAMSGradL2", func(g []Group) Optimizer {
			return NewAdam(g, AdamConfig{Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, AMSGrad: true})
		}, 0.01, 0.1,
			[]uint32{0xbf803234, 0xbf9663bf, 0xbf8cb029, 0x3fa6a005, 0xbecb1c36, 0x4079b15f, 0xc034be57, 0xbfc3569b}},
		{"SGDNesterov", func(g []Group) Optimizer { return NewSGD(g, SGDConfig{Momentum: 0.9, Nesterov: true}) }, 0.05, 0.01,
			[]uint32{0xbfa38677, 0xbf454ae9, 0xbf8bdc62, 0x3f7f3dd8, 0x3eb6b83b, 0x40873f58, 0xc0468b97, 0xbf36b0de}},
		{"SGDDampening", func(g []Group) Optimizer { return NewSGD(g, SGDConfig{Momentum: 0.5, Dampening: 0.3}) }, 0.1, 0,
			[]uint32{0xbf9dbbe9, 0xbf5924c7, 0xbf8b20ff, 0x3f878cb1, 0x3e37f9e8, 0x40860009, 0xc0445cff, 0xbf6b7410}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := param(p0...)
			o := tc.make([]Group{{Params: []*tensor.Tensor{p}, LR: tc.lr, WeightDecay: tc.wd}})
			for _, g := range grads {
				setGrad(p, g)
				o.Step()
			}
			got := bits(p.Data())
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("element %d: %#x (%v), PyTorch %#x (%v)", i, got[i], p.Data()[i], tc.want[i], math.Float32frombits(tc.want[i]))
				}
			}
		})
	}
}

func TestOptimGroups(t *testing.T) {
	a, b, c := param(1, 1), param(2), param(3)
	o := NewSGD([]Group{{Params: []*tensor.Tensor{a, b}, LR: 0.5}, {Params: []*tensor.Tensor{c}, LR: 0.1, WeightDecay: 1}}, SGDConfig{})
	setGrad(a, []float32{1, 2})
	setGrad(c, []float32{1})
	o.Step() // b has no gradient: untouched
	near(t, "a", a.Data(), []float64{0.5, 0}, 1e-7)
	near(t, "b", b.Data(), []float64{2}, 0)
	near(t, "c", c.Data(), []float64{3 - 0.1*(1+3)}, 1e-7)
	o.ZeroGrad()
	if a.Grad() != nil || c.Grad() != nil {
		t.Errorf("ZeroGrad left gradients")
	}
	o.Step() // nothing to do
	near(t, "a after", a.Data(), []float64{0.5, 0}, 1e-7)

	// Adam counts steps per parameter.
	x, y := param(1), param(1)
	ad := NewAdamW([]Group{{Params: []*tensor.Tensor{x, y}, LR: 0.1}}, AdamConfig{})
	setGrad(x, []float32{1})
	ad.Step()
	setGrad(y, []float32{1})
	ad.Step()
	if st := ad.State(); st.Params[0].Step != 2 || st.Params[1].Step != 1 {
		t.Errorf("steps %d %d, want 2 1", st.Params[0].Step, st.Params[1].Step)
	}
	if gs := ad.ParamGroups(); len(gs) != 1 || len(gs[0].Params) != 2 {
		t.Errorf("groups %v", gs)
	}
}

func TestOptimState(t *testing.T) {
	grads := [][]float32{{0.5, -1, 2}, {0.1, 0.2, -0.3}, {1, 1, 1}, {-2, 0.5, 0.25}, {0.3, -0.1, 0}}
	for _, mk := range []func([]Group) Optimizer{
		func(g []Group) Optimizer { return NewAdamW(g, AdamConfig{AMSGrad: true}) },
		func(g []Group) Optimizer { return NewAdam(g, AdamConfig{}) },
		func(g []Group) Optimizer { return NewSGD(g, SGDConfig{Momentum: 0.9}) },
	} {
		// One optimiser runs five steps; another runs two, hands its state (and its
		// parameter values) to a fresh one, which runs the last three.
		p := param(1, 2, 3)
		full := mk([]Group{{Params: []*tensor.Tensor{p}, LR: 0.1, WeightDecay: 0.01}})
		q := param(1, 2, 3)
		first := mk([]Group{{Params: []*tensor.Tensor{q}, LR: 0.1, WeightDecay: 0.01}})
		for i, g := range grads {
			setGrad(p, g)
			full.Step()
			if i < 2 {
				setGrad(q, g)
				first.Step()
			}
		}
		st := first.State()
		st.LR[0] = 0.1 // as saved
		r := param(q.Data()...)
		second := mk([]Group{{Params: []*tensor.Tensor{r}, LR: 99, WeightDecay: 0.01}})
		if err := second.LoadState(st); err != nil {
			t.Fatal(err)
		}
		if second.ParamGroups()[0].LR != 0.1 {
			t.Errorf("LR not restored")
		}
		// The saved state is a copy: stepping the first optimiser again must not change it.
		setGrad(q, grads[0])
		first.Step()
		for _, g := range grads[2:] {
			setGrad(r, g)
			second.Step()
		}
		for i := range p.Data() {
			if p.Data()[i] != r.Data()[i] {
				t.Errorf("%s: resumed run gives %v, uninterrupted %v", st.Kind, r.Data(), p.Data())
				break
			}
		}
	}
	// Mismatches are errors.
	a := NewAdam([]Group{{Params: []*tensor.Tensor{param(1, 2)}, LR: 0.1}}, AdamConfig{})
	s := NewSGD([]Group{{Params: []*tensor.Tensor{param(1, 2)}, LR: 0.1}}, SGDConfig{})
	if err := a.LoadState(s.State()); err == nil {
		t.Errorf("loading SGD state into Adam succeeded")
	}
	bad := a.State()
	bad.Params[0].ExpAvg = []float32{1, 2, 3}
	if err := a.LoadState(bad); err == nil || !strings.Contains(err.Error(), "3 values") {
		t.Errorf("loading a state of the wrong size: %v", err)
	}
	bad = a.State()
	bad.LR = append(bad.LR, 1)
	if err := a.LoadState(bad); err == nil {
		t.Errorf("loading a state with an extra group succeeded")
	}
}

func TestOptimInvalid(t *testing.T) {
	ps := []*tensor.Tensor{param(1)}
	for name, f := range map[string]func(){
		"NegativeLR":       func() { NewSGD([]Group{{Params: ps, LR: -1}}, SGDConfig{}) },
		"NegativeDecay":    func() { NewAdamW([]Group{{Params: ps, LR: 1, WeightDecay: -1}}, AdamConfig{}) },
		"NesterovNoMom":    func() { NewSGD([]Group{{Params: ps, LR: 1}}, SGDConfig{Nesterov: true}) },
		"NesterovDampened": func() { NewSGD([]Group{{Params: ps, LR: 1}}, SGDConfig{Nesterov: true, Momentum: 0.9, Dampening: 0.1}) },
		"Beta1":            func() { NewAdam([]Group{{Params: ps, LR: 1}}, AdamConfig{Beta1: 1}) },
		"Beta2":            func() { NewAdam([]Group{{Params: ps, LR: 1}}, AdamConfig{Beta2: -0.5}) },
		"NilParam":         func() { NewAdam([]Group{{Params: []*tensor.Tensor{nil}, LR: 1}}, AdamConfig{}) },
		"PlateauFactor": func() {
			NewReduceLROnPlateau(NewSGD([]Group{{Params: ps, LR: 1}}, SGDConfig{}), PlateauConfig{Factor: 1})
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			f()
		})
	}
}

func TestOptimReduceLROnPlateau(t *testing.T) {
	metrics := []float64{1.0, 0.9, 0.95, 0.9, 0.89995, 0.91, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45}
	// Learning rates after each step, from torch.optim.lr_scheduler.ReduceLROnPlateau
	// (PyTorch 1.13) with the settings of each case and SGD at lr 1.
	for _, tc := range []struct {
		name string
		cfg  func(c *PlateauConfig)
		want []float64
	}{
		{"MinRel", func(c *PlateauConfig) { c.Factor, c.Patience = 0.5, 2 },
			[]float64{1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125}},
		{"MaxAbsCooldown", func(c *PlateauConfig) {
			c.Mode, c.Factor, c.Patience, c.Threshold, c.AbsThreshold, c.Cooldown, c.MinLR = Maximize, 0.1, 1, 0.05, true, 2, 1e-3
		}, []float64{1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002,
			0.010000000000000002, 0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002,
			0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002}},
		{"MinLR", func(c *PlateauConfig) { c.Patience, c.Cooldown, c.Factor, c.MinLR = 0, 1, 0.2, 0.05 },
			[]float64{1.0, 1.0, 0.2, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewSGD([]Group{{Params: []*tensor.Tensor{param(0)}, LR: 1}}, SGDConfig{})
			cfg := DefaultPlateau()
			tc.cfg(&cfg)
			s := NewReduceLROnPlateau(o, cfg)
			var resumed *ReduceLROnPlateau
			for i, m := range metrics {
				reduced := s.Step(m)
				lr := s.LR()[0]
				if lr != tc.want[i] {
					t.Fatalf("after metric %d (%v): lr %v, PyTorch %v", i, m, lr, tc.want[i])
				}
				if reduced != (i > 0 && tc.want[i] != tc.want[i-1]) {
					t.Errorf("step %d: reduced = %v", i, reduced)
				}
				if i == 7 {
					// A copy resumed from the saved counters behaves the same.
					resumed = NewReduceLROnPlateau(o, cfg)
					resumed.LoadState(s.State())
				}
			}
			if resumed.State().LastEpoch != 8 {
				t.Errorf("resumed LastEpoch %d", resumed.State().LastEpoch)
			}
		})
	}
}

func TestOptimFMA32(t *testing.T) {
	for _, c := range []struct{ a, b, c, want float32 }{
		{4097, 4097, 0x1p-40, 16785410}, // product on a float32 midpoint, nudged up
		{4097, 4097, 0, 16785408},
		{4097, 4099, -0x1p-40, 16793602}, // nudged down
		{1e-30, 1e-10, 0, 1e-40},         // subnormal result
		{3, 1.0 / 3, -1, float32(3*float64(float32(1.0/3)) - 1)},
	} {
		if got := fma32(c.a, c.b, c.c); got != c.want {
			t.Errorf("fma32(%v, %v, %v) = %v, want %v", c.a, c.b, c.c, got, c.want)
		}
	}
	if powInt(0.999, 1000) != 0.36769542477096373 || powInt(0.9, 0) != 1 {
		t.Errorf("powInt: %v %v", powInt(0.999, 1000), powInt(0.9, 0))
	}
}

var floatRE = regexp.MustCompile(`[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?`)

// adamwSettings reads the AdamW settings from the case's description, e.g.
// "torch.optim.AdamW([p], lr=10) (betas 0.9/0.999, eps 1e-8, weight_decay 0.01)".
func adamwSettings(t *testing.T, what string) (lr, b1, b2, eps, wd float64) {
	t.Helper()
	num := func(key string) []float64 {
		i := strings.Index(what, key)
		if i < 0 {
			t.Fatalf("adamw description %q has no %q", what, key)
		}
		var res []float64
		for _, s := range floatRE.FindAllString(what[i+len(key):], 2) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			res = append(res, v)
		}
		return res
	}
	betas := num("betas")
	return num("lr=")[0], betas[0], betas[1], num("eps")[0], num("weight_decay")[0]
}

// TestParity replays the adamw vectors of the "ops" reference cases: p{i+1} is p{i}
// after one AdamW step with gradient grad{i}, all steps on one optimiser.
func TestParity(t *testing.T) {
	refvec.Run(t, map[string]func(t *testing.T, c refvec.Case){
		"ops": func(t *testing.T, c refvec.Case) {
			var what map[string]string
			c.Get(t, "what", &what)
			desc, ok := what["adamw"]
			if !ok {
				t.Skip("no adamw vectors in this case")
			}
			lr, b1, b2, eps, wd := adamwSettings(t, desc)
			tol := c.Tol(t, 0)
			r := c.Open(t, "vectors.safetensors")
			p0, shape := refvec.F32(t, r, "adamw.p0")
			p := tensor.FromSlice(dev, p0, shape...).SetRequiresGrad(true)
			o := NewAdamW([]Group{{Params: []*tensor.Tensor{p}, LR: lr, WeightDecay: wd}}, AdamConfig{Beta1: b1, Beta2: b2, Eps: eps})
			steps := 0
			for i := 0; ; i++ {
				if _, ok := r.Info(fmt.Sprintf("adamw.grad%d", i)); !ok {
					break
				}
				g, _ := refvec.F32(t, r, fmt.Sprintf("adamw.grad%d", i))
				want, _ := refvec.F32(t, r, fmt.Sprintf("adamw.p%d", i+1))
				setGrad(p, g)
				o.Step()
				refvec.Close(t, fmt.Sprintf("adamw.p%d", i+1), p.Data(), want, tol)
				d, _ := refvec.Diff(p.Data(), want)
				if d == 0 {
					t.Logf("adamw.p%d: bit-exact", i+1)
				}
				steps++
			}
			if steps == 0 {
				t.Fatalf("%s: no adamw.grad0", c.Name)
			}
		},
	})
}
