package encoder

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/nn"
	"egg/tensor"
)

// smallDataDriven is a data-driven model small enough for finite differences.
func smallDataDriven() Config {
	stack := -1
	return Config{
		Name: "small_data_driven",
		Core: CoreConfig{SE2d: &SE2dConfig{
			InputChannels: 1, HiddenChannels: 8, InputKern: 5, HiddenKern: Kernels{3}, Layers: 3,
			DepthSeparable: true, FinalNonlinearity: true, Momentum: 0.1, GammaInput: 10, Stack: &stack,
		}},
		Readout: ReadoutConfig{Neurons: 5, Attention: &AttentionConfig{
			DropoutPos: 0.1, EmbedOutDim: 6, KeyEmbedding: true, ValueEmbedding: true, Scale: true,
			Temperature: Temperature{Fixed: true, Value: 0.7}, UsePosEnc: true, GammaFeatures: 1, GammaQuery: 1,
		}},
		InputShape: []int{1, 12, 12},
		InputMean:  120, InputStd: 50,
		NeuronIDs: []int64{11, 12, 13, 14, 15},
	}
}

// smallTaskDriven is a task-driven model with a ResNet cut after layer1.0.
func smallTaskDriven() Config {
	return Config{
		Name: "small_task_driven",
		Core: CoreConfig{ResNet: &ResNetConfig{
			ModelName: "resnet50", LayerName: "layer1.0", InputChannels: 1,
			FinalBatchNorm: true, FinalNonlinearity: true, Momentum: 0.1,
		}},
		Readout: ReadoutConfig{Neurons: 3, Session: "s1", Gaussian: &GaussianConfig{
			GaussType: "isotropic", InitMuRange: 0.4, InitSigma: 0.6, Bias: true, GammaReadout: 3,
		}},
		EluOffset:  -1,
		InputShape: []int{1, 32, 32},
		InputStd:   1,
	}
}

func newModel(t *testing.T, cfg Config, seed uint64) Model {
	t.Helper()
	m, err := New(testDev, cfg, rand.New(rand.NewPCG(seed, seed)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randImages(seed uint64, shape ...int) *tensor.Tensor {
	return tensor.Randn(testDev, rand.New(rand.NewPCG(seed, 1)), shape...)
}

func names(m nn.Module) []string {
	var ns []string
	for _, e := range nn.StateDict(m) {
		ns = append(ns, e.Name)
	}
	return ns
}

func TestConfigs(t *testing.T) {
	v4dd, _ := Preset("v4_data_driven")
	v4td, _ := Preset("v4_task_driven")
	for _, tc := range []struct {
		name     string
		cfg      Config
		arch     string
		neurons  int
		outShape []int // the core's [C, H, W]
		has      []string
	}{
		{"v4_data_driven", v4dd, "se2d+attention", 1244, []int{96, 92, 92},
			[]string{"core.features.layer4.ds_conv.spatial_conv.weight", "readout.position_embedding.twod_pe", "readout.all_sessions.neuron_query"}},
		{"v4_task_driven", v4td, "resnet+gaussian", 1244, []int{1024, 7, 7},
			[]string{"core.features.TaskDriven.layer2.3.conv3.weight", "core.features.TaskDriven.0.downsample.1.running_var", "core.features.OutBatchNorm.bias", "readout.all_sessions._mu"}},
		{"small_data_driven", smallDataDriven(), "se2d+attention", 5, []int{8, 8, 8},
			[]string{"core.features.layer0.norm.running_mean", "readout.to_kv.weight"}},
		{"small_task_driven", smallTaskDriven(), "resnet+gaussian", 3, []int{256, 8, 8},
			[]string{"core.features.TaskDriven.0.conv3.weight", "readout.s1._features"}},
		{"ensemble", Config{Members: []Config{smallDataDriven(), smallDataDriven()}}, "ensemble", 5, nil,
			[]string{"members.1.core.features.layer2.norm.weight"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var back Config
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tc.cfg) {
				t.Fatalf("config does not round-trip through JSON:\n%s", b)
			}
			if got := tc.cfg.Arch(); got != tc.arch {
				t.Errorf("Arch() = %q, want %q", got, tc.arch)
			}
			m := newModel(t, tc.cfg, 1)
			if m.Neurons() != tc.neurons {
				t.Errorf("Neurons() = %d, want %d", m.Neurons(), tc.neurons)
			}
			if e, ok := m.(*Encoder); ok {
				c, h, w := e.Core.OutShape(tc.cfg.InputShape[1], tc.cfg.InputShape[2])
				if got := []int{c, h, w}; !slices.Equal(got, tc.outShape) {
					t.Errorf("core output %v, want %v", got, tc.outShape)
				}
			}
			ns := names(m)
			for _, n := range tc.has {
				if !slices.Contains(ns, n) {
					t.Errorf("no tensor %q among %d", n, len(ns))
				}
			}
		})
	}
}

func TestValidateErrors(t *testing.T) {
	mod := func(f func(c *Config)) Config {
		c := smallDataDriven()
		se, at := *c.Core.SE2d, *c.Readout.Attention
		c.Core.SE2d, c.Readout.Attention = &se, &at
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no core", mod(func(c *Config) { c.Core.SE2d = nil }), "exactly one core"},
		{"two readouts", mod(func(c *Config) { c.Readout.Gaussian = &GaussianConfig{GaussType: "isotropic"} }), "exactly one readout"},
		{"bad input shape", mod(func(c *Config) { c.InputShape = []int{1, 12} }), "input_shape"},
		{"neuron ids", mod(func(c *Config) { c.NeuronIDs = []int64{1} }), "neuron ids"},
		{"channels", mod(func(c *Config) { c.InputShape[0] = 3 }), "input channels"},
		{"se blocks", mod(func(c *Config) { c.Core.SE2d.NSEBlocks = 1 }), "squeeze-excitation"},
		{"stack", mod(func(c *Config) { s := 0; c.Core.SE2d.Stack = &s }), "stack"},
		{"heads", mod(func(c *Config) { c.Readout.Attention.Heads = 2 }), "one head"},
		{"learned temperature", mod(func(c *Config) { c.Readout.Attention.Temperature.Fixed = false }), "learned temperature"},
		{"too small", mod(func(c *Config) { c.InputShape = []int{1, 4, 4} }), "too small"},
		{"pos enc channels", mod(func(c *Config) { c.Core.SE2d.HiddenChannels = 6 }), "divisible by 4"},
		{"gauss type", Config{Core: smallTaskDriven().Core, Readout: ReadoutConfig{Neurons: 2, Gaussian: &GaussianConfig{GaussType: "full"}}, InputShape: []int{1, 32, 32}}, "isotropic"},
		{"resnet layer", Config{Core: CoreConfig{ResNet: &ResNetConfig{ModelName: "resnet50", LayerName: "layer3.6", InputChannels: 1}}, Readout: smallTaskDriven().Readout, InputShape: []int{1, 32, 32}}, "blocks 0-5"},
		{"resnet arch", Config{Core: CoreConfig{ResNet: &ResNetConfig{ModelName: "resnet18", LayerName: "layer1", InputChannels: 1}}, Readout: smallTaskDriven().Readout, InputShape: []int{1, 32, 32}}, "ResNet-50"},
		{"ensemble", Config{Members: []Config{smallDataDriven(), smallTaskDriven()}}, "predicts 3 neurons"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(testDev, tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Preset("nope"); err == nil {
		t.Error("unknown preset accepted")
	}
}

func TestJSONTypes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Kernels
	}{{"5", Kernels{5}}, {"[3, 5, 7]", Kernels{3, 5, 7}}} {
		var k Kernels
		if err := json.Unmarshal([]byte(tc.in), &k); err != nil || !slices.Equal(k, tc.want) {
			t.Errorf("Kernels %s: %v, %v", tc.in, k, err)
		}
	}
	var k Kernels
	if err := json.Unmarshal([]byte(`"x"`), &k); err == nil {
		t.Error("Kernels accepted a string")
	}
	var tt Temperature
	if err := json.Unmarshal([]byte(`[true, 0.7]`), &tt); err != nil || tt != (Temperature{true, 0.7}) {
		t.Errorf("Temperature: %v, %v", tt, err)
	}
	if err := json.Unmarshal([]byte(`[true]`), &tt); err == nil {
		t.Error("Temperature accepted a single item")
	}
}

func TestSaveLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"data driven", smallDataDriven()},
		{"task driven", smallTaskDriven()},
		{"ensemble", Config{Members: []Config{smallDataDriven(), smallDataDriven()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(t, tc.cfg, 3)
			in := m.Config().InputShape // an ensemble's is its first member's
			x := randImages(4, 2, in[0], in[1], in[2])
			path := filepath.Join(t.TempDir(), "m.safetensors")
			if err := Save(path, m, map[string]string{"note": "hello"}); err != nil {
				t.Fatal(err)
			}
			back, err := LoadOn(testDev, path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Config(), m.Config()) {
				t.Errorf("config after Load differs:\n%+v\n%+v", back.Config(), m.Config())
			}
			sameWeights(t, "Save/Load", m, back)
			sameData(t, "output after Save/Load", back.Forward(x), m.Forward(x))
			r, err := checkpoint.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Metadata()["note"] != "hello" {
				t.Errorf("metadata %v lacks the caller's entry", r.Metadata())
			}
			if err := Save(path, m, map[string]string{MetadataKey: "x"}); err == nil {
				t.Error("Save accepted a reserved metadata key")
			}
		})
	}
	// A state_dict without the config is not an egg model file.
	path := filepath.Join(t.TempDir(), "plain.safetensors")
	if err := nn.Save(path, newModel(t, smallDataDriven(), 1), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOn(testDev, path); err == nil || !strings.Contains(err.Error(), "Import") {
		t.Errorf("Load of a plain state_dict: %v, want advice to use Import", err)
	}
	if m, err := ImportOn(testDev, path, smallDataDriven()); err != nil || m.Neurons() != 5 {
		t.Errorf("Import of a plain state_dict: %v", err)
	}
	if _, err := ImportOn(testDev, path, smallTaskDriven()); err == nil {
		t.Error("Import into the wrong architecture succeeded")
	}
}

func TestEnsembleMean(t *testing.T) {
	a, b := newModel(t, smallDataDriven(), 1), newModel(t, smallDataDriven(), 2)
	e, err := NewEnsemble(a, b)
	if err != nil {
		t.Fatal(err)
	}
	x := randImages(5, 3, 1, 12, 12)
	got := e.Forward(x)
	ya, yb := a.Forward(x), b.Forward(x)
	for i, v := range got.Data() {
		if want := (ya.Data()[i] + yb.Data()[i]) * 0.5; math.Abs(float64(v-want)) > 1e-6 {
			t.Fatalf("ensemble output %d = %v, want %v", i, v, want)
		}
	}
	if _, err := NewEnsemble(a, newModel(t, smallTaskDriven(), 1)); err == nil {
		t.Error("ensemble of models with different neurons accepted")
	}
	if _, err := NewEnsemble(); err == nil {
		t.Error("empty ensemble accepted")
	}
}

func TestLoadParts(t *testing.T) {
	cfg := smallTaskDriven()
	src := newModel(t, cfg, 9).(*Encoder)
	dir := t.TempDir()
	// The core in torchvision's names (as a ResNet checkpoint has it, with an extra
	// tensor of the uncut network) and the readout in a full model's file.
	core := src.Core.(*ResNetCore)
	var ts []checkpoint.Tensor
	for _, e := range nn.StateDict(core) {
		ts = append(ts, checkpoint.Tensor{Name: "module.model." + core.TorchvisionName(e.Name), DType: "F32", Shape: e.T.Shape(), F32: e.T.Data()})
	}
	ts = append(ts, checkpoint.Tensor{Name: "module.model.fc.weight", DType: "F32", Shape: []int{2}, F32: []float32{1, 2}})
	corePath, fullPath := filepath.Join(dir, "core.safetensors"), filepath.Join(dir, "full.safetensors")
	if err := checkpoint.WriteSafetensors(corePath, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := nn.Save(fullPath, src, nil); err != nil {
		t.Fatal(err)
	}
	// The readout's own tensors plus one it does not have.
	extraPath := filepath.Join(dir, "extra.safetensors")
	ts = nil
	for _, e := range nn.StateDict(src.Readout) {
		ts = append(ts, checkpoint.Tensor{Name: e.Name, DType: "F32", Shape: e.T.Shape(), F32: e.T.Data()})
	}
	ts = append(ts, checkpoint.Tensor{Name: "s1.extra", DType: "F32", Shape: []int{1}, F32: []float32{1}})
	if err := checkpoint.WriteSafetensors(extraPath, ts, nil); err != nil {
		t.Fatal(err)
	}
	dst := newModel(t, cfg, 10).(*Encoder)
	err := LoadParts(dst,
		Part{Path: fullPath, Module: "readout", Prefix: "readout."},
		Part{Path: corePath, Module: "core", Prefix: "module.model.", Torchvision: true})
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, "LoadParts", src, dst)
	for _, tc := range []struct {
		name string
		part Part
		want string
	}{
		{"module", Part{Path: fullPath, Module: "head"}, "module"},
		{"torchvision readout", Part{Path: corePath, Module: "readout", Torchvision: true}, "ResNet core only"},
		{"missing tensors", Part{Path: corePath, Module: "core"}, "no tensor"},
		{"extra tensors", Part{Path: extraPath, Module: "readout"}, "does not use"},
	} {
		if err := LoadParts(dst, tc.part); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestTrainable(t *testing.T) {
	td := newModel(t, smallTaskDriven(), 1).(*Encoder)
	got := Trainable(td)
	want := append(nn.Params(td.Core.(*ResNetCore).OutBN), nn.Params(td.Readout)...)
	if !slices.Equal(got, want) {
		t.Errorf("task-driven: %d trainable tensors, want the OutBatchNorm's and the readout's (%d)", len(got), len(want))
	}
	ft := smallTaskDriven()
	rc := *ft.Core.ResNet
	rc.FineTune = true
	ft.Core.ResNet = &rc
	if m := newModel(t, ft, 1); len(Trainable(m)) != len(nn.Params(m)) {
		t.Error("fine_tune does not make the whole core trainable")
	}
	dd := newModel(t, smallDataDriven(), 1)
	if len(Trainable(dd)) != len(nn.Params(dd)) {
		t.Error("data-driven model: not every parameter is trainable")
	}
}

// TestTraining checks the training-mode behaviour: sampled readout positions and
// dropout follow their seeded sources, and batch statistics update the running ones.
func TestTraining(t *testing.T) {
	x := randImages(3, 4, 1, 12, 12)
	t.Run("dropout", func(t *testing.T) {
		m := newModel(t, smallDataDriven(), 1).(*Encoder)
		ro := m.Readout.(*AttentionReadout)
		feat := m.Core.Forward(x)
		eval := ro.Forward(feat)
		ro.SetTraining(true)
		ro.Noise = rand.New(rand.NewPCG(1, 1))
		a := ro.Forward(feat)
		ro.Noise = rand.New(rand.NewPCG(1, 1))
		b := ro.Forward(feat)
		sameData(t, "same seed", a, b)
		if slices.Equal(a.Data(), eval.Data()) {
			t.Error("dropout changed nothing")
		}
		ro.Cfg.DropoutPos = 0
		sameData(t, "no dropout", ro.Forward(feat), eval)
		maps := ro.AttentionMaps(feat)
		if got, want := maps.Shape(), []int{4, 5, 8, 8}; !slices.Equal(got, want) {
			t.Fatalf("AttentionMaps shape %v, want %v", got, want)
		}
		var sum float64
		for _, v := range maps.Data()[:64] {
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("an attention map sums to %v", sum)
		}
	})
	t.Run("gaussian positions", func(t *testing.T) {
		m := newModel(t, smallTaskDriven(), 1).(*Encoder)
		ro := m.Readout.(*GaussianReadout)
		feat := m.Core.Forward(randImages(3, 4, 1, 32, 32))
		eval := ro.Forward(feat)
		ro.SetTraining(true)
		ro.Noise = rand.New(rand.NewPCG(2, 2))
		a := ro.Forward(feat)
		ro.Noise = rand.New(rand.NewPCG(2, 2))
		sameData(t, "same seed", ro.Forward(feat), a)
		if slices.Equal(a.Data(), eval.Data()) {
			t.Error("sampling positions changed nothing")
		}
		fill(ro.Sigma, 0)
		sameData(t, "sigma 0", ro.Forward(feat), eval)
		// One position for the whole batch: identical images read identically.
		fill(ro.Sigma, 0.5)
		f := false
		ro.Cfg.BatchSample = &f
		same := tensor.Concat(0, tensor.Slice(feat, 0, 0, 1, 1), tensor.Slice(feat, 0, 0, 1, 1))
		y := ro.Forward(same).Data()
		if !slices.Equal(y[:3], y[3:]) {
			t.Errorf("batch_sample false: %v", y)
		}
	})
	t.Run("clamp mu", func(t *testing.T) {
		m := newModel(t, smallTaskDriven(), 1).(*Encoder)
		ro := m.Readout.(*GaussianReadout)
		ro.Mu.Data()[0] = 1.5
		m.Forward(randImages(3, 1, 1, 32, 32))
		if ro.Mu.Data()[0] != 1 {
			t.Errorf("mu %v was not clamped in place", ro.Mu.Data()[0])
		}
	})
	t.Run("batch norm", func(t *testing.T) {
		m := newModel(t, smallDataDriven(), 1).(*Encoder)
		core := m.Core.(*SE2dCore)
		before := slices.Clone(core.Layers[1].Norm.RunningMean.Data())
		eval := m.Forward(x)
		m.SetTraining(true)
		train := m.Forward(x)
		m.SetTraining(false)
		if slices.Equal(before, core.Layers[1].Norm.RunningMean.Data()) {
			t.Error("training did not update the running mean")
		}
		if slices.Equal(eval.Data(), train.Data()) {
			t.Error("training mode gave the evaluation output")
		}
	})
}

func TestLaplacePenalty(t *testing.T) {
	m := newModel(t, smallDataDriven(), 4).(*Encoder)
	core := m.Core.(*SE2dCore)
	w := core.Layers[0].Conv.Weight
	s := w.Shape()
	// Direct sum over filters of the zero-padded 3x3 Laplacian.
	lap := [3][3]float64{{0, -1, 0}, {-1, 4, -1}, {0, -1, 0}}
	var num, den float64
	k := s[2]
	for f := 0; f < s[0]*s[1]; f++ {
		wf := w.Data()[f*k*k : (f+1)*k*k]
		for y := 0; y < k; y++ {
			for x := 0; x < k; x++ {
				var acc float64
				for dy := -1; dy <= 1; dy++ {
					for dx := -1; dx <= 1; dx++ {
						if yy, xx := y+dy, x+dx; yy >= 0 && yy < k && xx >= 0 && xx < k {
							acc += lap[dy+1][dx+1] * float64(wf[yy*k+xx])
						}
					}
				}
				num += acc * acc
				den += float64(wf[y*k+x]) * float64(wf[y*k+x])
			}
		}
	}
	got := float64(core.LaplacePenalty().Item())
	if math.Abs(got-num/den) > 1e-5*num/den {
		t.Errorf("LaplacePenalty %v, want %v", got, num/den)
	}
	reg := m.Regularizer()
	want := 10*num/den + float64(sumAbs(m.Readout.(*AttentionReadout).Features)+sumAbs(m.Readout.(*AttentionReadout).Query))
	if math.Abs(float64(reg.Item())-want) > 1e-4*want {
		t.Errorf("Regularizer %v, want %v", reg.Item(), want)
	}
	w.SetRequiresGrad(true)
	defer w.SetRequiresGrad(false)
	checkParamGrad(t, "laplace", func() *tensor.Tensor { return core.LaplacePenalty() }, w, 1e-2)
}

func sumAbs(t *tensor.Tensor) float32 {
	var s float32
	for _, v := range t.Data() {
		s += float32(math.Abs(float64(v)))
	}
	return s
}

// checkParamGrad compares the gradient of sum(f() * r) with respect to p with
// central differences (float64 sums, step h, tolerance 3e-2 relative to the largest
// numeric derivative) on up to 40 elements of p.
func checkParamGrad(t *testing.T, what string, f func() *tensor.Tensor, p *tensor.Tensor, h float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	out := f()
	r := tensor.Randn(testDev, rng, out.Shape()...)
	g := tensor.Grad(out, r, p)[0]
	loss := func() float64 {
		o := f()
		var s float64
		for i, v := range o.Data() {
			s += float64(v) * float64(r.Data()[i])
		}
		return s
	}
	maxNum, maxErr := 0.0, 0.0
	step := max(1, p.Len()/40)
	for i := 0; i < p.Len(); i += step {
		old := p.Data()[i]
		p.Data()[i] = old + float32(h)
		lp := loss()
		p.Data()[i] = old - float32(h)
		lm := loss()
		p.Data()[i] = old
		num := (lp - lm) / (2 * h)
		maxNum = math.Max(maxNum, math.Abs(num))
		maxErr = math.Max(maxErr, math.Abs(num-float64(g.Data()[i])))
	}
	if maxErr > 3e-2*math.Max(maxNum, 1e-2) {
		t.Errorf("%s %v: max |analytic - numeric| %.3g, max |numeric| %.3g", what, p.Shape(), maxErr, maxNum)
	}
}

// TestParamGradients checks the gradient of every trainable tensor of small models
// by finite differences (evaluation mode, so the functions are deterministic). The
// task-driven model's ReLUs and bilinear sampling have kinks, so its step is smaller.
func TestParamGradients(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		h   float64
	}{{smallDataDriven(), 1e-2}, {smallTaskDriven(), 1e-3}} {
		cfg := tc.cfg
		t.Run(cfg.Name, func(t *testing.T) {
			m := newModel(t, cfg, 6)
			if e, ok := m.(*Encoder); ok {
				if rc, ok := e.Core.(*ResNetCore); ok {
					// Fresh statistics put the exact zeros of the ResNet's last ReLU
					// on the kink of the final one; move them off it.
					rng := rand.New(rand.NewPCG(8, 8))
					for i := range rc.OutBN.Bias.Data() {
						rc.OutBN.Bias.Data()[i] = float32(rng.NormFloat64())
						rc.OutBN.RunningMean.Data()[i] = float32(rng.NormFloat64())
					}
				}
			}
			x := randImages(7, 2, 1, cfg.InputShape[1], cfg.InputShape[2])
			for _, e := range nn.StateDict(m) {
				if e.Buffer || !slices.Contains(Trainable(m), e.T) {
					continue
				}
				e.T.SetRequiresGrad(true)
				checkParamGrad(t, e.Name, func() *tensor.Tensor { return m.Forward(x) }, e.T, tc.h)
				e.T.SetRequiresGrad(false)
			}
		})
	}
}

func TestNNVisionConfig(t *testing.T) {
	const di = `{"s": {"input_channels": 1, "input_dimensions": [64, 1, 40, 40], "output_dimension": 4}}`
	const dd = `{"hidden_channels": 8, "input_kern": 9, "hidden_kern": 5, "layers": 3, "depth_separable": true,
		"final_nonlinearity": true, "embed_out_dim": 12, "key_embedding": true, "value_embedding": true,
		"scale": true, "temperature": [true, 1], "use_pos_enc": true, "stack": -1}`
	const td = `{"model_name": "resnet50_l2_eps0_1", "layer_name": "layer3.0", "final_batchnorm": true,
		"final_nonlinearity": true, "gauss_type": "isotropic", "readout_bias": true, "elu_offset": -1}`
	for _, tc := range []struct {
		name, fn, mc, di string
		want             string // error substring, or "" for success
		check            func(t *testing.T, c Config)
	}{
		{name: "data driven", fn: NNVisionDataDriven, mc: dd, di: di, check: func(t *testing.T, c Config) {
			if c.Core.SE2d.Momentum != 0.9 || c.Core.SE2d.InputChannels != 1 || c.EluOffset != 0 ||
				c.Readout.Session != "s" || c.Readout.Neurons != 4 || !slices.Equal(c.InputShape, []int{1, 40, 40}) {
				t.Errorf("config %+v, core %+v", c, *c.Core.SE2d)
			}
			m, err := New(testDev, c, nil)
			if err != nil || m.(*Encoder).Readout.(*AttentionReadout).Bias == nil {
				t.Errorf("model %v without readout bias", err)
			}
		}},
		{name: "task driven", fn: NNVisionTaskDriven, mc: td, di: di, check: func(t *testing.T, c Config) {
			if c.Core.ResNet.InputChannels != 1 || c.Core.ResNet.Momentum != 0.1 || c.EluOffset != -1 || !c.Readout.Gaussian.Bias {
				t.Errorf("config %+v, core %+v", c, *c.Core.ResNet)
			}
		}},
		{name: "unknown function", fn: "nope", mc: dd, di: di, want: "not implemented"},
		{name: "two sessions", fn: NNVisionDataDriven, mc: dd, di: `{"a": {"input_dimensions": [1, 1, 9, 9]}, "b": {"input_dimensions": [1, 1, 9, 9]}}`, want: "2 sessions"},
		{name: "bad dimensions", fn: NNVisionDataDriven, mc: dd, di: `{"a": {"input_dimensions": [1, 9, 9], "output_dimension": 2}}`, want: "input_dimensions"},
		{name: "bad json", fn: NNVisionDataDriven, mc: `{`, di: di, want: "model_config"},
		{name: "unsupported flag", fn: NNVisionDataDriven, mc: `{"hidden_channels": 8, "input_kern": 9, "hidden_kern": 5, "layers": 3, "heads": 2}`, di: di, want: "one head"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NNVisionConfig(tc.fn, []byte(tc.mc), []byte(tc.di))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestStandardize(t *testing.T) {
	for _, tc := range []struct {
		mean, std float32
		in, want  float32
	}{{0, 0, 5, 5}, {0, 1, 5, 5}, {100, 50, 200, 2}, {1, 0, 3, 2}} {
		c := Config{InputMean: tc.mean, InputStd: tc.std}
		x := tensor.Full(testDev, tc.in, 2).SetRequiresGrad(true)
		y := c.Standardize(x)
		if y.Data()[0] != tc.want {
			t.Errorf("mean %v std %v: %v -> %v, want %v", tc.mean, tc.std, tc.in, y.Data()[0], tc.want)
		}
		std := tc.std
		if std == 0 {
			std = 1
		}
		if tc.mean != 0 || tc.std > 1 {
			if g := tensor.Grad(y, tensor.Full(testDev, 1, 2), x)[0]; g.Data()[0] != 1/std {
				t.Errorf("mean %v std %v: gradient %v, want %v", tc.mean, tc.std, g.Data()[0], 1/std)
			}
		}
	}
}
