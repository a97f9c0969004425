package main

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/spf13/pflag"

	"egg/diffusion"
	"egg/tensor"
)

// TestLoadPriorClip: --clip-x0 auto clips the cosine prior's x0 predictions (its
// first step is ill-conditioned), not the linear one's; on and off override.
func TestLoadPriorClip(t *testing.T) {
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
			p, unet, err := o.loadPrior(tensor.CPU(1), true)
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
			if unet == nil || p.Schedule.NumTimesteps != 5 || p.Denoiser != unet {
				t.Fatalf("unet %v, %d steps", unet != nil, p.Schedule.NumTimesteps)
			}
			if p.ClipX0 != c.want {
				t.Errorf("clipped %v, want %v", p.ClipX0, c.want)
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
