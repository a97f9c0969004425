package energy

import (
	"math"
	"math/rand/v2"
	"testing"

	"egg/tensor"
)

var dev = tensor.CPU(2)

// linearModel is r = W flatten(x): a model whose responses are known in closed form.
type linearModel struct{ w *tensor.Tensor }

func (m linearModel) Forward(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Linear(tensor.Reshape(x, x.Dim(0), -1), m.w, nil)
}

func setup() (linearModel, Transform, *tensor.Tensor) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := linearModel{tensor.Randn(dev, rng, 5, 8*8)}
	tr := Transform{Height: 8, Width: 8, Norm: 3}
	x0 := tensor.Randn(dev, rng, 3, 3, 16, 16)
	return m, tr, x0
}

func TestTransform(t *testing.T) {
	_, tr, x0 := setup()
	y := tr.Apply(x0)
	if s := y.Shape(); s[0] != 3 || s[1] != 1 || s[2] != 8 || s[3] != 8 {
		t.Fatalf("shape %v", s)
	}
	for k := 0; k < 3; k++ {
		var ss float64
		for _, v := range y.Data()[k*64 : (k+1)*64] {
			ss += float64(v) * float64(v)
		}
		if math.Abs(math.Sqrt(ss)-3) > 1e-4 {
			t.Fatalf("sample %d has norm %v, want 3", k, math.Sqrt(ss))
		}
	}
	tr.ClipLo, tr.ClipHi = -0.1, 0.1
	for _, v := range tr.Apply(x0).Data() {
		if v < -0.1 || v > 0.1 {
			t.Fatalf("clip left %v", v)
		}
	}
}

func TestEnergies(t *testing.T) {
	m, tr, x0 := setup()
	r := m.Forward(tr.Apply(x0)).Data() // [3, 5]
	target := tensor.FromSlice(dev, append([]float32(nil), r...), 3, 5)
	cases := []struct {
		name string
		e    interface {
			Energy(*tensor.Tensor) *tensor.Tensor
		}
		want []float64
	}{
		{"activation", Activation{Model: m, Transform: tr, Neurons: []int{4, 0, 2}}, []float64{-float64(r[4]), -float64(r[5]), -float64(r[12])}},
		{"population", Population{Model: m, Transform: tr, Weights: []float32{1, 0, 0, 0, 2}},
			[]float64{-float64(r[0] + 2*r[4]), -float64(r[5] + 2*r[9]), -float64(r[10] + 2*r[14])}},
		{"match at target", Match{Model: m, Transform: tr, Target: target}, []float64{0, 0, 0}},
		{"inpaint at target", Inpaint{Target: x0, Mask: tensor.Full(dev, 1, 1, 1, 16, 16)}, []float64{1e-6, 1e-6, 1e-6}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.e.Energy(x0).Data()
			for k, w := range c.want {
				if math.Abs(float64(got[k])-w) > 1e-4*math.Max(1, math.Abs(w)) {
					t.Fatalf("sample %d: %v, want %v", k, got[k], w)
				}
			}
		})
	}
}

// The gradient of one sample's energy must not reach other samples: a batch of
// neurons is a batch of independent runs.
func TestActivationIndependent(t *testing.T) {
	m, tr, x0 := setup()
	x := x0.Clone().SetRequiresGrad(true)
	e := Activation{Model: m, Transform: tr, Neurons: []int{1, 2, 3}}.Energy(x)
	seed := tensor.FromSlice(dev, []float32{1, 0, 0}, 3)
	g := tensor.Grad(e, seed, x)[0].Data()
	per := len(g) / 3
	for i, v := range g[per:] {
		if v != 0 {
			t.Fatalf("gradient leaked to another sample at %d", per+i)
		}
	}
}

func TestReceptiveFieldMask(t *testing.T) {
	// Responses depend on the top-left quarter only: the mask must cover it and not
	// the opposite corner.
	w := tensor.New(dev, 2, 64)
	for y := 0; y < 4; y++ {
		for x := 0; x < 4; x++ {
			w.Data()[y*8+x] = 1
			w.Data()[64+y*8+x] = 0.5
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	mask := ReceptiveFieldMask(linearModel{w}, tensor.Randn(dev, rng, 4, 1, 8, 8), 0, 0.25)
	if mask.Data()[0] != 1 || mask.Data()[63] != 0 {
		t.Fatalf("mask %v", mask.Data())
	}
}
