package encoder

import (
	"math/rand/v2"
	"testing"

	"egg/internal/testdevice"
	"egg/tensor"
)

// TestModelsStayOnDevice: each preset's forward pass and input gradient (what
// gradient ascent and guidance run at every step) move nothing between host and
// device once the weights and the input are there. The presets are shrunk (fewer
// channels and neurons, smaller images) to keep the host reference kernels quick;
// the layers are the same.
func TestModelsStayOnDevice(t *testing.T) {
	for _, tc := range []struct {
		preset string
		shrink func(*Config)
	}{
		{"v4_data_driven", func(c *Config) { c.Core.SE2d.HiddenChannels = 16 }},
		{"v4_task_driven", func(c *Config) {}},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			dev, tr := testdevice.Counting()
			cfg, err := Preset(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Readout.Neurons = 10
			cfg.InputShape = []int{1, 32, 32}
			tc.shrink(&cfg)
			rng := rand.New(rand.NewPCG(7, 7))
			m, err := New(dev, cfg, rng)
			if err != nil {
				t.Fatal(err)
			}
			x := tensor.Randn(dev, rng, 2, 1, 32, 32)
			step := func() {
				xg := x.Detach().SetRequiresGrad(true)
				y := m.Forward(xg)
				tensor.Grad(tensor.Sum(tensor.Slice(y, 1, 7, 8, 1), false), nil, xg)
				dev.Sync()
			}
			step() // the first run uploads the weights and the input made on the host
			tr.Reset()
			step()
			if up, down := tr.Elements(); up != 0 || down != 0 {
				t.Errorf("%d elements uploaded and %d downloaded, want none", up, down)
			}
		})
	}
}
