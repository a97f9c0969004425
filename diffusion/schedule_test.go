package diffusion

import (
	"math"
	"strings"
	"testing"
)

func relDiff(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

func TestNamedBetaSchedule(t *testing.T) {
	tests := []struct {
		name        string
		n           int
		first, last float64
	}{
		{"linear", 1000, 1e-4, 0.02},
		{"linear", 4000, 0.25e-4, 0.005},
		{"linear", 100, 1e-3, 0.2},
		{"cosine", 1000, 0, 0.999}, // first checked below
	}
	for _, tc := range tests {
		b, err := NamedBetaSchedule(tc.name, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != tc.n {
			t.Fatalf("%s/%d: %d betas", tc.name, tc.n, len(b))
		}
		if tc.first != 0 && relDiff(b[0], tc.first) > 1e-15 {
			t.Errorf("%s/%d: beta[0] = %v, want %v", tc.name, tc.n, b[0], tc.first)
		}
		if b[tc.n-1] != tc.last && relDiff(b[tc.n-1], tc.last) > 1e-15 {
			t.Errorf("%s/%d: beta[last] = %v, want %v", tc.name, tc.n, b[tc.n-1], tc.last)
		}
		for i := 1; i < len(b); i++ {
			if !(b[i] >= b[i-1]) || b[i] <= 0 || b[i] > 0.999 {
				t.Fatalf("%s/%d: betas not increasing in (0, 0.999] at %d: %v, %v", tc.name, tc.n, i, b[i-1], b[i])
			}
		}
	}
	// Cosine: abar(t) = cos((t+s)/(1+s) pi/2)^2 / f(0) telescopes, so prod(1 - beta)
	// over the unclamped steps is f(T)/f(0).
	b, _ := NamedBetaSchedule("cosine", 1000)
	f := func(t float64) float64 { c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2); return c * c }
	p := 1.0
	for i := 0; i < 900; i++ {
		p *= 1 - b[i]
	}
	if d := relDiff(p, f(0.9)/f(0)); d > 1e-12 {
		t.Errorf("cosine: prod(1-beta)[:900] = %v, want %v (rel %g)", p, f(0.9)/f(0), d)
	}
	if _, err := NamedBetaSchedule("quadratic", 1000); err == nil || !strings.Contains(err.Error(), "quadratic") {
		t.Errorf("unknown schedule: err = %v", err)
	}
	if _, err := NamedBetaSchedule("linear", 0); err == nil {
		t.Error("0 steps: no error")
	}
}

func TestLinspace(t *testing.T) {
	got := linspace(0, 1, 5)
	want := []float64{0, 0.25, 0.5, 0.75, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("linspace(0, 1, 5) = %v", got)
		}
	}
	if g := linspace(3, 7, 1); len(g) != 1 || g[0] != 3 {
		t.Errorf("linspace(3, 7, 1) = %v", g)
	}
	if g := linspace(2, 2, 3); g[0] != 2 || g[1] != 2 || g[2] != 2 {
		t.Errorf("linspace(2, 2, 3) = %v", g)
	}
}

func TestScheduleInvariants(t *testing.T) {
	specs := []struct {
		schedule, respacing string
		n                   int
	}{
		{"linear", "", 1000},
		{"linear", "50", 1000},
		{"linear", "ddim25", 1000},
		{"linear", "10,15,20", 1000},
		{"cosine", "100", 1000},
		{"cosine", "", 4000},
		{"linear", "2", 50},
	}
	for _, sp := range specs {
		t.Run(sp.schedule+"/"+sp.respacing, func(t *testing.T) {
			s, err := New(Config{BetaSchedule: sp.schedule, NumTimesteps: sp.n, TimestepRespacing: sp.respacing})
			if err != nil {
				t.Fatal(err)
			}
			base, _ := NamedBetaSchedule(sp.schedule, sp.n)
			keep, _ := SpaceTimesteps(sp.n, sp.respacing)
			baseBar := cumprod(base)
			S := s.NumTimesteps
			if S != len(keep) || len(s.TimestepMap) != S || s.OriginalNumSteps != sp.n {
				t.Fatalf("S = %d, map %d, original %d; want %d, %d", S, len(s.TimestepMap), s.OriginalNumSteps, len(keep), sp.n)
			}
			arrays := []struct {
				name string
				a    []float64
			}{
				{"Betas", s.Betas}, {"AlphasCumprod", s.AlphasCumprod}, {"AlphasCumprodPrev", s.AlphasCumprodPrev},
				{"AlphasCumprodNext", s.AlphasCumprodNext}, {"SqrtAlphasCumprod", s.SqrtAlphasCumprod},
				{"SqrtOneMinusAlphasCumprod", s.SqrtOneMinusAlphasCumprod},
				{"LogOneMinusAlphasCumprod", s.LogOneMinusAlphasCumprod},
				{"SqrtRecipAlphasCumprod", s.SqrtRecipAlphasCumprod}, {"SqrtRecipm1AlphasCumprod", s.SqrtRecipm1AlphasCumprod},
				{"PosteriorVariance", s.PosteriorVariance}, {"PosteriorLogVarianceClipped", s.PosteriorLogVarianceClipped},
				{"PosteriorMeanCoef1", s.PosteriorMeanCoef1}, {"PosteriorMeanCoef2", s.PosteriorMeanCoef2},
			}
			for _, a := range arrays {
				if len(a.a) != S {
					t.Fatalf("%s has %d values, want %d", a.name, len(a.a), S)
				}
			}
			if s.AlphasCumprodPrev[0] != 1 || s.AlphasCumprodNext[S-1] != 0 || s.PosteriorVariance[0] != 0 {
				t.Errorf("ends: abar_prev[0] %v, abar_next[last] %v, beta~[0] %v",
					s.AlphasCumprodPrev[0], s.AlphasCumprodNext[S-1], s.PosteriorVariance[0])
			}
			if s.PosteriorLogVarianceClipped[0] != math.Log(s.PosteriorVariance[1]) {
				t.Errorf("log beta~ clipped [0] = %v, want log beta~[1] = %v",
					s.PosteriorLogVarianceClipped[0], math.Log(s.PosteriorVariance[1]))
			}
			for i := range S {
				ab := s.AlphasCumprod[i]
				// Respacing keeps abar at the kept steps (up to the rounding of
				// recomputing it from the respaced betas).
				if d := relDiff(ab, baseBar[keep[i]]); d > 1e-10 {
					t.Fatalf("abar[%d] = %v, base abar[%d] = %v (rel %g)", i, ab, keep[i], baseBar[keep[i]], d)
				}
				if !(ab > 0 && ab < 1) || (i > 0 && !(ab < s.AlphasCumprod[i-1])) {
					t.Fatalf("abar not decreasing in (0, 1) at %d", i)
				}
				if i > 0 && s.AlphasCumprodPrev[i] != s.AlphasCumprod[i-1] {
					t.Fatalf("abar_prev[%d] != abar[%d]", i, i-1)
				}
				checks := []struct {
					name      string
					got, want float64
				}{
					{"sqrt abar^2", s.SqrtAlphasCumprod[i] * s.SqrtAlphasCumprod[i], ab},
					{"sqrt(1-abar)^2", s.SqrtOneMinusAlphasCumprod[i] * s.SqrtOneMinusAlphasCumprod[i], 1 - ab},
					{"exp log(1-abar)", math.Exp(s.LogOneMinusAlphasCumprod[i]), 1 - ab},
					{"sqrt(1/abar)^2 abar", s.SqrtRecipAlphasCumprod[i] * s.SqrtRecipAlphasCumprod[i] * ab, 1},
					{"sqrt(1/abar - 1)^2", s.SqrtRecipm1AlphasCumprod[i] * s.SqrtRecipm1AlphasCumprod[i], 1/ab - 1},
					// beta~ = beta (1 - abar_prev) / (1 - abar) and the posterior mean of
					// x_t = sqrt(abar) x_0 (no noise) is sqrt(abar_prev) x_0.
					{"beta~", s.PosteriorVariance[i], s.Betas[i] * (1 - s.AlphasCumprodPrev[i]) / (1 - ab)},
					{"coef1 + coef2 sqrt(abar)", s.PosteriorMeanCoef1[i] + s.PosteriorMeanCoef2[i]*math.Sqrt(ab),
						math.Sqrt(s.AlphasCumprodPrev[i])},
				}
				for _, c := range checks {
					if d := relDiff(c.got, c.want); d > 1e-9 {
						t.Errorf("step %d: %s = %v, want %v (rel %g)", i, c.name, c.got, c.want, d)
					}
				}
				if i > 0 && relDiff(math.Exp(s.PosteriorLogVarianceClipped[i]), s.PosteriorVariance[i]) > 1e-12 {
					t.Errorf("step %d: exp log beta~ != beta~", i)
				}
			}
		})
	}
}

func TestScheduleFullSpacingKeepsBetas(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := NamedBetaSchedule("linear", 1000)
	for i := range base {
		// Respacing recomputes beta from abar, so only the rounding differs.
		if d := relDiff(s.Betas[i], base[i]); d > 1e-9 {
			t.Fatalf("beta[%d] = %v, want %v", i, s.Betas[i], base[i])
		}
	}
}

func TestModelTimestep(t *testing.T) {
	tests := []struct {
		cfg  Config
		i    int
		want float32
	}{
		{Config{TimestepRespacing: "50", RescaleTimesteps: true}, 17, 347},
		{Config{TimestepRespacing: "50", RescaleTimesteps: false}, 17, 347},
		{Config{TimestepRespacing: "10"}, 9, 999},
		{Config{NumTimesteps: 4000, TimestepRespacing: "ddim4", RescaleTimesteps: true}, 1, 250},
		{Config{NumTimesteps: 4000, TimestepRespacing: "ddim4", RescaleTimesteps: false}, 1, 1000},
		{Config{NumTimesteps: 500, RescaleTimesteps: true}, 7, 14},
	}
	for _, tc := range tests {
		s, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.ModelTimestep(tc.i); got != tc.want {
			t.Errorf("%+v: ModelTimestep(%d) = %v, want %v", tc.cfg, tc.i, got, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"unknown schedule", Config{BetaSchedule: "sigmoid"}, "sigmoid"},
		{"bad respacing", Config{TimestepRespacing: "ddim999"}, "ddim999"},
		{"one step", Config{TimestepRespacing: "1"}, "at least 2"},
		{"beta 0", Config{Betas: []float64{0, 0.1}}, "beta[0]"},
		{"beta > 1", Config{Betas: []float64{0.1, 1.5}}, "beta[1]"},
		{"no betas", Config{Betas: []float64{}}, "empty"},
		{"mean type", Config{MeanType: 7}, "MeanType(7)"},
		{"var type", Config{VarType: -1}, "VarType(-1)"},
	}
	for _, tc := range tests {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "diffusion: ") {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.msg)
		}
	}
}

func TestNewCopiesClamp(t *testing.T) {
	v := EGGLogVarianceClamp
	s, err := New(Config{LogVarianceClamp: &v})
	if err != nil {
		t.Fatal(err)
	}
	v = 1
	if *s.LogVarianceClamp != EGGLogVarianceClamp {
		t.Errorf("clamp %v follows the config's variable", *s.LogVarianceClamp)
	}
}

func TestParseTypes(t *testing.T) {
	for _, m := range []MeanType{MeanEpsilon, MeanStartX, MeanPreviousX} {
		if got, err := ParseMeanType(m.String()); err != nil || got != m {
			t.Errorf("ParseMeanType(%q) = %v, %v", m.String(), got, err)
		}
	}
	for _, v := range []VarType{VarLearnedRange, VarLearned, VarFixedSmall, VarFixedLarge} {
		if got, err := ParseVarType(v.String()); err != nil || got != v {
			t.Errorf("ParseVarType(%q) = %v, %v", v.String(), got, err)
		}
	}
	if _, err := ParseMeanType("eps"); err == nil {
		t.Error("ParseMeanType(eps): no error")
	}
	if _, err := ParseVarType("small"); err == nil {
		t.Error("ParseVarType(small): no error")
	}
}
