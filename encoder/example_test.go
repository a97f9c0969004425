package encoder_test

import (
	"fmt"
	"math/rand/v2"

	"egg/encoder"
	"egg/tensor"
)

// Build the paper's data-driven model with random weights and take the gradient of
// one neuron's predicted rate with respect to the image, as EGG does at every step.
func Example() {
	dev := tensor.CPU(0)
	cfg, err := encoder.Preset("v4_data_driven")
	if err != nil {
		panic(err)
	}
	m, err := encoder.New(dev, cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	pixels := tensor.Full(dev, 128, 1, 1, 100, 100).SetRequiresGrad(true)
	rates := m.Forward(cfg.Standardize(pixels)) // [1, 1244]
	seed := tensor.New(dev, rates.Shape()...)
	seed.Data()[7] = 1 // d rates[0, 7] / d pixels
	grad := tensor.Grad(rates, seed, pixels)[0]
	fmt.Println(cfg.Arch(), rates.Shape(), grad.Shape())
	// Output: se2d+attention [1 1244] [1 1 100 100]
}
