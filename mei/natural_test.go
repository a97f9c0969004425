package mei

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

func randomPatches(n, size int, seed uint64) []uint8 {
	rng := rand.New(rand.NewPCG(seed, 3))
	px := make([]uint8, n*size*size)
	for i := range px {
		px[i] = uint8(rng.IntN(256))
	}
	return px
}

// TopNatural keeps exactly the k highest responses of each neuron, whatever the batch.
func TestTopNaturalBruteForce(t *testing.T) {
	m := tinyModel(t, 1)
	const n, size, k = 23, 12, 5
	px := randomPatches(n, size, 1)
	neurons := []int{0, 2, 3}
	x := NaturalInputs(dev, px, n, size, 20, 20, 10)
	r := m.Forward(x)
	nn := r.Dim(1)
	for _, batch := range []int{4, 7, n} {
		top, err := TopNatural(dev, m, px, size, 20, 20, 10, neurons, k, batch)
		if err != nil {
			t.Fatal(err)
		}
		for j, neuron := range neurons {
			idx := make([]int, n)
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool { return r.Data()[idx[a]*nn+neuron] > r.Data()[idx[b]*nn+neuron] })
			if len(top[j]) != k {
				t.Fatalf("neuron %d: %d hits", neuron, len(top[j]))
			}
			for i, h := range top[j] {
				want := r.Data()[idx[i]*nn+neuron]
				if d := h.Activation - want; d > 1e-4 || d < -1e-4 {
					t.Fatalf("batch %d neuron %d rank %d: activation %v (patch %d), brute force %v (patch %d)", batch, neuron, i, h.Activation, h.Index, want, idx[i])
				}
				if got := r.Data()[h.Index*nn+neuron]; got-h.Activation > 1e-4 || h.Activation-got > 1e-4 {
					t.Fatalf("patch %d: recorded %v, its response %v", h.Index, h.Activation, got)
				}
			}
		}
	}
	if _, err := TopNatural(dev, m, px[:5], size, 20, 20, 10, neurons, k, 4); err == nil {
		t.Fatal("partial patch accepted")
	}
	if _, err := TopNatural(dev, m, px, size, 20, 20, 10, []int{99}, k, 4); err == nil {
		t.Fatal("neuron out of range accepted")
	}
}

func TestNaturalInputsNorm(t *testing.T) {
	px := randomPatches(3, 12, 2)
	x := NaturalInputs(dev, px, 3, 12, 20, 20, 7)
	if x.Dim(0) != 3 || x.Dim(1) != 1 || x.Dim(2) != 20 || x.Dim(3) != 20 {
		t.Fatalf("shape %v", x.Shape())
	}
	for k := 0; k < 3; k++ {
		var s float64
		for _, v := range x.Data()[k*400 : (k+1)*400] {
			s += float64(v) * float64(v)
		}
		if s < 48.9 || s > 49.1 {
			t.Fatalf("image %d: squared norm %v, want 49", k, s)
		}
	}
}

func TestEvaluateAndWriteNatural(t *testing.T) {
	models := ModelSet{Train: tinyModel(t, 1), Within: tinyModel(t, 2)}
	px := randomPatches(9, 12, 3)
	neurons := []int{1, 3}
	top, err := TopNatural(dev, models.Train, px, 12, 20, 20, 10, neurons, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	xs := EvaluateNatural(dev, models, px, 12, 20, 20, 10, neurons, top)
	dir := t.TempDir()
	for j, neuron := range neurons {
		for _, h := range top[j] {
			if d := h.Activations["train"] - h.Activation; d > 1e-4 || d < -1e-4 {
				t.Fatalf("train activation %v, scored %v", h.Activations["train"], h.Activation)
			}
			if _, ok := h.Activations["within"]; !ok {
				t.Fatal("no within activation")
			}
			if _, ok := h.Activations["cross"]; ok {
				t.Fatal("cross activation without a cross model")
			}
		}
		if err := WriteNatural(dir, NaturalRecord{Neuron: neuron, Norm: 10, InputH: 20, InputW: 20, Hits: top[j]}, xs[j]); err != nil {
			t.Fatal(err)
		}
		r, err := ReadNatural(dir, neuron)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Hits) != 3 || r.Hits[0].Index != top[j][0].Index {
			t.Fatalf("read back %+v", r)
		}
		if _, err := os.Stat(filepath.Join(dir, r.Image)); err != nil {
			t.Fatal(err)
		}
	}
}
