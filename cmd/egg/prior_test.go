package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spf13/pflag"

	"egg/diffusion"
	"egg/tensor"
)

// fixedDenoiser returns a fixed output, whatever its input.
type fixedDenoiser struct{ out *tensor.Tensor }

func (f fixedDenoiser) Forward(x *tensor.Tensor, _ []float32, _ []int) *tensor.Tensor { return f.out }

func TestClippedDenoiser(t *testing.T) {
	dev := tensor.CPU(1)
	cases := []struct {
		name     string
		mean     diffusion.MeanType
		learned  bool // the output carries a variance half
		schedule string
		step     int // respaced step (of 10)
		scale    float64
	}{
		{"eps, first step of cosine", diffusion.MeanEpsilon, true, "cosine", 9, 1},
		{"eps, middle step", diffusion.MeanEpsilon, true, "cosine", 5, 1},
		{"eps, last step", diffusion.MeanEpsilon, false, "linear", 0, 3},
		{"x0 prediction", diffusion.MeanStartX, false, "linear", 4, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := diffusion.Config{BetaSchedule: c.schedule, NumTimesteps: 1000, TimestepRespacing: "10", RescaleTimesteps: true, MeanType: c.mean, VarType: diffusion.VarFixedLarge}
			if c.learned {
				cfg.VarType = diffusion.VarLearnedRange
			}
			s, err := diffusion.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			n, ch := 2, 1
			randn := func(k int, sd float64) []float32 {
				v := make([]float32, k)
				for i := range v {
					v[i] = float32(sd * rng.NormFloat64())
				}
				return v
			}
			x := tensor.FromSlice(dev, randn(n*ch*16, 1), n, ch, 4, 4)
			outCh := ch
			if c.learned {
				outCh = 2 * ch
			}
			out := tensor.FromSlice(dev, randn(n*outCh*16, c.scale), n, outCh, 4, 4)
			d, err := newClippedDenoiser(fixedDenoiser{out}, s, ch)
			if err != nil {
				t.Fatal(err)
			}
			ts := []float32{s.ModelTimestep(c.step), s.ModelTimestep(c.step)}
			got := d.Forward(x, ts, nil)
			_, _, lvRaw, x0Raw := diffusion.PMeanVariance(s, x, out, c.step, false)
			_, _, lvGot, x0Got := diffusion.PMeanVariance(s, x, got, c.step, false)
			_, _, _, x0Ref := diffusion.PMeanVariance(s, x, out, c.step, true) // guided-diffusion's clip_denoised
			clipped := 0
			for i, v := range x0Got.Data() {
				// float32 cancellation in sqrt(1/abar) x - sqrt(1/abar - 1) eps, where
				// sqrt(1/abar) is 20000 at the first cosine step: a few ulps of the raw x0.
				want := x0Ref.Data()[i]
				if math.Abs(float64(v-want)) > 1e-5+3e-7*math.Abs(float64(x0Raw.Data()[i])) {
					t.Fatalf("x0[%d] = %v, want the clipped %v (raw %v)", i, v, want, x0Raw.Data()[i])
				}
				if r := x0Raw.Data()[i]; r >= -1 && r <= 1 {
					if got.Data()[i%16+(i/16)*outCh*16] != out.Data()[i%16+(i/16)*outCh*16] {
						t.Fatalf("prediction %d changed where x0 %v is in range", i, r)
					}
				} else {
					clipped++
				}
			}
			if clipped == 0 {
				t.Error("nothing was clipped; the case tests nothing")
			}
			for i, v := range lvGot.Data() {
				if v != lvRaw.Data()[i] {
					t.Fatalf("the variance changed at %d: %v, want %v", i, v, lvRaw.Data()[i])
				}
			}
		})
	}
}

func TestLoadDenoiserClip(t *testing.T) {
	_, set := builtinGlobal(t)
	linear := meniPriorFile(t, t.TempDir()) // a linear-schedule prior
	cases := []struct {
		name, weights, clip string
		want                bool
		usage               bool
	}{
		{"auto, cosine prior", set.Prior, "auto", true, false},
		{"default, cosine prior", set.Prior, "", true, false},
		{"off", set.Prior, "off", false, false},
		{"auto, linear prior", linear, "auto", false, false},
		{"on, linear prior", linear, "on", true, false},
		{"bad", linear, "maybe", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := priorOptions{weights: c.weights, steps: "5", noiseSchedule: "linear", diffSteps: 1000, clipX0: c.clip}
			d, unet, s, err := o.loadDenoiser(tensor.CPU(1), true)
			var ue usageError
			if c.usage {
				if !errors.As(err, &ue) {
					t.Fatalf("error %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if unet == nil || s.NumTimesteps != 5 {
				t.Fatalf("unet %v, %d steps", unet != nil, s.NumTimesteps)
			}
			if _, ok := d.(*clippedDenoiser); ok != c.want {
				t.Errorf("clipped %v, want %v", ok, c.want)
			}
		})
	}
}

// TestGivenFlagsBeatThePriorFile: the built-in prior records the cosine schedule;
// without --noise-schedule the file's schedule is used, and an explicit
// --noise-schedule linear (the flag's default value) wins over it.
func TestGivenFlagsBeatThePriorFile(t *testing.T) {
	_, set := builtinGlobal(t)
	for _, c := range []struct {
		args       []string
		wantCosine bool
	}{
		{nil, true},
		{[]string{"--noise-schedule", "linear"}, false},
		{[]string{"--noise-schedule=cosine"}, true},
	} {
		t.Run(fmt.Sprint(c.args), func(t *testing.T) {
			var o priorOptions
			f := pflag.NewFlagSet("test", pflag.ContinueOnError)
			o.addFlags(f, "5")
			if err := f.Parse(append([]string{"--weights", set.Prior}, c.args...)); err != nil {
				t.Fatal(err)
			}
			_, s, err := o.load(tensor.CPU(1), true)
			if err != nil {
				t.Fatal(err)
			}
			lin, _ := diffusion.NamedBetaSchedule("linear", s.OriginalNumSteps)
			cos, _ := diffusion.NamedBetaSchedule("cosine", s.OriginalNumSteps)
			// The first respaced beta is the original first beta.
			isCos := math.Abs(s.Betas[0]-cos[0]) < math.Abs(s.Betas[0]-lin[0])
			if isCos != c.wantCosine {
				t.Errorf("first beta %g (linear %g, cosine %g): cosine %v, want %v", s.Betas[0], lin[0], cos[0], isCos, c.wantCosine)
			}
		})
	}
}
