package guidance

import (
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
	rng := rand.New(rand.NewPCG(4, 4))
	cfg := adm.Config{ImageSize: 8, InChannels: 1, OutChannels: 1, ModelChannels: 32, ChannelMult: []int{1},
		NumResBlocks: 1, NumHeads: 1, NumHeadChannels: -1, NumHeadsUpsample: -1}
	unet, err := adm.New(testDev, cfg, rng)
	if err != nil {
		t.Fatal(err)
	}
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
		_, err := Sample(unet, s, xT, energy, rngs, Options{Scale: 1})
		var ne *NonFiniteEnergyError
		if !errors.As(err, &ne) || ne.Sample != 1 || ne.Step != 1 {
			t.Errorf("energy %v: error %v, want a NonFiniteEnergyError of sample 1 at step 1", bad, err)
		}
	}
}
