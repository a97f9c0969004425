package guidance

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"egg/adm"
	"egg/diffusion"
	"egg/tensor"
)

// TestNonFiniteEnergy: an energy that turns NaN or infinite ends Sample with a
// *NonFiniteEnergyError naming the sample and step, not a panic.
func TestNonFiniteEnergy(t *testing.T) {
	unet := tinyUNet(t, 4)
	s, err := diffusion.New(diffusion.Config{NumTimesteps: 100, TimestepRespacing: "4", RescaleTimesteps: true, VarType: diffusion.VarFixedLarge})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		calls := 0
		energy := EnergyFunc(func(x0 *tensor.Tensor) *tensor.Tensor {
			calls++
			e := tensor.Sum(x0, false, 1, 2, 3)
			if calls < 3 {
				return e
			}
			// Sample 1 goes bad at the third step (respaced index 1).
			mask := tensor.FromSlice(testDev, []float32{0, bad}, 2)
			return tensor.Add(e, mask)
		})
		rngs := []*rand.Rand{rand.New(rand.NewPCG(1, 0)), rand.New(rand.NewPCG(1, 1))}
		xT := Noise(testDev, rngs, 2, 1, 8, 8)
		_, err := Sample(context.Background(), unet, s, xT, energy, rngs, Options{Scale: 1})
		var ne *NonFiniteEnergyError
		if !errors.As(err, &ne) || ne.Sample != 1 || ne.Step != 1 {
			t.Errorf("energy %v: error %v, want a NonFiniteEnergyError of sample 1 at step 1", bad, err)
		}
	}
}

// TestClipX0: with ClipX0 a guided step's x0 is guided-diffusion's clip_denoised
// x0 (in [-1, 1]) and its DDPM sample is the one from that x0; without, the raw x0.
func TestClipX0(t *testing.T) {
	unet := tinyUNet(t, 5)
	// The cosine schedule's first step: x0 = 20000 x - 20000 eps, far outside [-1, 1].
	s, err := diffusion.New(diffusion.Config{BetaSchedule: "cosine", NumTimesteps: 1000, TimestepRespacing: "4", RescaleTimesteps: true, VarType: diffusion.VarFixedLarge})
	if err != nil {
		t.Fatal(err)
	}
	rngs := []*rand.Rand{rand.New(rand.NewPCG(1, 0))}
	x := Noise(testDev, rngs, 1, 1, 8, 8)
	noise := Noise(testDev, rngs, 1, 1, 8, 8)
	i := s.NumTimesteps - 1
	energy := EnergyFunc(func(x0 *tensor.Tensor) *tensor.Tensor { return tensor.Sum(x0, false, 1, 2, 3) })
	out := unet.Forward(x, []float32{s.ModelTimestep(i)}, nil)
	for _, clip := range []bool{false, true} {
		st, err := GuidedStep(unet, s, x, i, noise, energy, Options{Scale: 0, ClipX0: clip})
		if err != nil {
			t.Fatal(err)
		}
		wantPrime, wantX0 := diffusion.PSample(s, x, out, i, noise, clip)
		outside := 0
		for k, v := range st.X0.Values() {
			if w := wantX0.Values()[k]; v != w {
				t.Fatalf("clip %v: x0[%d] = %v, want %v", clip, k, v, w)
			}
			if v < -1 || v > 1 {
				outside++
			}
		}
		if clip != (outside == 0) {
			t.Errorf("clip %v: %d x0 values outside [-1, 1]", clip, outside)
		}
		for k, v := range st.XPrime.Values() {
			if w := wantPrime.Values()[k]; v != w {
				t.Fatalf("clip %v: sample[%d] = %v, want %v", clip, k, v, w)
			}
		}
	}
}

// tinyUNet is an 8x8 one-channel UNet with random weights.
func tinyUNet(t *testing.T, seed uint64) *adm.UNet {
	t.Helper()
	cfg := adm.Config{ImageSize: 8, InChannels: 1, OutChannels: 1, ModelChannels: 32, ChannelMult: []int{1},
		NumResBlocks: 1, NumHeads: 1, NumHeadChannels: -1, NumHeadsUpsample: -1}
	unet, err := adm.New(testDev, cfg, rand.New(rand.NewPCG(seed, seed)))
	if err != nil {
		t.Fatal(err)
	}
	return unet
}
