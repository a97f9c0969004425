package adm

import (
	"egg/internal/testdevice"
	"encoding/json"
	"testing"

	"egg/internal/refvec"
	"egg/nn"
	"egg/tensor"
)

var testDev = testdevice.Get()

// loadCase builds the UNet of an adm_unet case and loads file (weights.safetensors or
// weights.pt) into it.
func loadCase(t *testing.T, c refvec.Case, file string) *UNet {
	t.Helper()
	var cfg Config
	c.Get(t, "guided_diffusion_unet_kwargs", &cfg)
	u, err := New(testDev, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(u, c.Open(t, file), nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return u
}

// checkUNetCase checks the forward pass and input gradient of one adm_unet case.
func checkUNetCase(t *testing.T, c refvec.Case) {
	u := loadCase(t, c, "weights.safetensors")
	io := c.Open(t, "io.safetensors")
	xd, xs := refvec.F32(t, io, "x")
	x := tensor.FromSlice(testDev, xd, xs...).SetRequiresGrad(true)
	ts, _ := refvec.F32(t, io, "t")
	var y []int
	if _, ok := io.Info("y"); ok {
		ys, err := io.Int64("y")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range ys {
			y = append(y, int(v))
		}
	}
	tol := c.Tol(t, 0)
	out := u.Forward(x, ts, y)
	want, _ := refvec.F32(t, io, "out")
	refvec.Close(t, "out", out.Data(), want, tol)
	rd, rs := refvec.F32(t, io, "r")
	g := tensor.Grad(out, tensor.FromSlice(testDev, rd, rs...), x)[0]
	wantG, _ := refvec.F32(t, io, "grad_x")
	refvec.Close(t, "grad_x", g.Data(), wantG, tol)

	if c.Exists("weights.pt") {
		// The PyTorch checkpoint must load to the same numbers.
		up := loadCase(t, c, "weights.pt")
		a, b := nn.StateDict(u), nn.StateDict(up)
		for i := range a {
			for j, v := range a[i].T.Data() {
				if b[i].T.Data()[j] != v {
					t.Fatalf("weights.pt differs from weights.safetensors at %s[%d]", a[i].Name, j)
				}
			}
		}
		outPt := up.Forward(x.Detach(), ts, y)
		refvec.Close(t, "out (weights.pt)", outPt.Data(), want, tol)
	}
}

func TestParity(t *testing.T) {
	refvec.Run(t, map[string]func(*testing.T, refvec.Case){"adm_unet": checkUNetCase})
}

func TestPresets(t *testing.T) {
	for _, name := range PresetNames() {
		cfg, err := Preset(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := json.Marshal(cfg)
		var back Config
		if err := json.Unmarshal(b, &back); err != nil || back.Validate() != nil {
			t.Fatalf("%s: config does not round-trip: %v", name, err)
		}
	}
	if _, err := Preset("nope"); err == nil {
		t.Fatal("unknown preset accepted")
	}
}
