package encoder

import (
	"egg/internal/testdevice"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/internal/refvec"
	"egg/nn"
	"egg/tensor"
)

var testDev = testdevice.Get()

// ioCheck compares a model's numbers with one io.safetensors and makes sure that
// every key of the file is either used as an input or compared.
type ioCheck struct {
	t    *testing.T
	r    checkpoint.Reader
	tol  float64
	seen map[string]bool
}

func newIOCheck(t *testing.T, c refvec.Case) *ioCheck {
	return &ioCheck{t: t, r: c.Open(t, "io.safetensors"), tol: c.Tol(t, 0), seen: map[string]bool{}}
}

func (k *ioCheck) has(name string) bool { _, ok := k.r.Info(name); return ok }

// input returns the named tensor (an input of the computation).
func (k *ioCheck) input(name string) *tensor.Tensor {
	k.t.Helper()
	k.seen[name] = true
	d, s := refvec.F32(k.t, k.r, name)
	return tensor.FromSlice(testDev, d, s...)
}

// ints returns an integer tensor (an input).
func (k *ioCheck) ints(name string) []int64 {
	k.t.Helper()
	k.seen[name] = true
	v, err := k.r.Int64(name)
	if err != nil {
		k.t.Fatal(err)
	}
	return v
}

// compare checks got against the named tensor, which must have as many elements.
func (k *ioCheck) compare(name string, got *tensor.Tensor) {
	k.t.Helper()
	k.compareData(name, got.Data())
}

func (k *ioCheck) compareData(name string, got []float32) {
	k.t.Helper()
	k.seen[name] = true
	want, _ := refvec.F32(k.t, k.r, name)
	refvec.Close(k.t, name, got, want, k.tol)
}

// done fails the test for every key nothing looked at.
func (k *ioCheck) done() {
	k.t.Helper()
	for _, n := range k.r.Names() {
		if !k.seen[n] {
			k.t.Errorf("unchecked key %q in io.safetensors", n)
		}
	}
}

// inputGrad returns d sum(out * seed) / dx.
func inputGrad(out, seed, x *tensor.Tensor) *tensor.Tensor {
	return tensor.Grad(out, seed, x)[0]
}

// unitSeed returns a seed selecting out[0, unit].
func unitSeed(out *tensor.Tensor, unit int) *tensor.Tensor {
	s := tensor.New(testDev, out.Shape()...)
	s.Data()[unit] = 1
	return s
}

// loadInto loads file of the case into m (strict), failing the test on error.
func loadInto(t *testing.T, c refvec.Case, m nn.Module, file string, opts nn.LoadOptions) {
	t.Helper()
	if err := nn.Load(m, c.Open(t, file), opts); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// sameWeights fails unless a and b hold bit-identical tensors under the same names.
func sameWeights(t *testing.T, what string, a, b nn.Module) {
	t.Helper()
	ea, eb := nn.StateDict(a), nn.StateDict(b)
	if len(ea) != len(eb) {
		t.Fatalf("%s: %d tensors, want %d", what, len(eb), len(ea))
	}
	for i := range ea {
		if ea[i].Name != eb[i].Name {
			t.Fatalf("%s: tensor %d is %q, want %q", what, i, eb[i].Name, ea[i].Name)
		}
		for j, v := range ea[i].T.Data() {
			if w := eb[i].T.Data()[j]; w != v && !(v != v && w != w) {
				t.Fatalf("%s: %s[%d] = %v, want %v", what, ea[i].Name, j, w, v)
			}
		}
	}
	t.Logf("%s: %d tensors identical", what, len(ea))
}

func sameData(t *testing.T, what string, got, want *tensor.Tensor) {
	t.Helper()
	for i, v := range want.Data() {
		if got.Data()[i] != v {
			t.Fatalf("%s differs at %d: %v, want %v", what, i, got.Data()[i], v)
		}
	}
}

var (
	pyKwargRE  = regexp.MustCompile(`(\w+)=('[^']*'|True|False|None|-?[0-9][0-9.e+-]*)`)
	eluOffsRE  = regexp.MustCompile(`elu_offset\s*=\s*(-?[0-9.]+)`)
	weightsRef = regexp.MustCompile(`^\s*([^\s:]+\.(?:safetensors|pt|pth|tar))`)
)

// pyKwargs decodes the keyword arguments written in a config's "module" string
// (gauss_type='isotropic', bias=True, momentum=0.1, ...) into v through JSON.
func pyKwargs(t *testing.T, c refvec.Case, v any) {
	t.Helper()
	var module string
	c.Get(t, "module", &module)
	m := map[string]any{}
	for _, kv := range pyKwargRE.FindAllStringSubmatch(module, -1) {
		val := kv[2]
		switch {
		case val == "True", val == "False":
			m[kv[1]] = val == "True"
		case val == "None":
			m[kv[1]] = nil
		case strings.HasPrefix(val, "'"):
			m[kv[1]] = strings.Trim(val, "'")
		default:
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("module %q: %s=%s", module, kv[1], val)
			}
			m[kv[1]] = f
		}
	}
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("module %q: %v", module, err)
	}
}

// eluOffset reads the output offset of a case: model_config's elu_offset, else the
// elu_offset written in its module or what text.
func eluOffset(t *testing.T, c refvec.Case) float32 {
	t.Helper()
	if c.Has("model_config") {
		var mc map[string]json.RawMessage
		c.Get(t, "model_config", &mc)
		if raw, ok := mc["elu_offset"]; ok {
			var v float32
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	for _, key := range []string{"module", "what"} {
		var s string
		c.Get(t, key, &s)
		if m := eluOffsRE.FindStringSubmatch(s); m != nil {
			v, err := strconv.ParseFloat(m[1], 32)
			if err != nil {
				t.Fatal(err)
			}
			return float32(v)
		}
	}
	t.Fatalf("%s: no elu_offset in model_config, module or what", c.Name)
	return 0
}

// sessionOf returns the readout's data key: the part of a weight name before
// ".<leaf>" (e.g. all_sessions for all_sessions._mu).
func sessionOf(t *testing.T, r checkpoint.Reader, prefix, leaf string) string {
	t.Helper()
	for _, n := range r.Names() {
		if s, ok := strings.CutSuffix(n, "."+leaf); ok && strings.HasPrefix(s, prefix) {
			return strings.TrimPrefix(s, prefix)
		}
	}
	t.Fatalf("no %s*.%s tensor in the weights", prefix, leaf)
	return ""
}

// shape reads config shapes[key].
func shape(t *testing.T, c refvec.Case, key string) []int {
	t.Helper()
	var shapes map[string]json.RawMessage
	c.Get(t, "shapes", &shapes)
	var s []int
	if err := json.Unmarshal(shapes[key], &s); err != nil {
		t.Fatalf("%s: shapes.%s: %v", c.Name, key, err)
	}
	return s
}

func shapeInt(t *testing.T, c refvec.Case, key string) int {
	t.Helper()
	var shapes map[string]json.RawMessage
	c.Get(t, "shapes", &shapes)
	var n int
	if err := json.Unmarshal(shapes[key], &n); err != nil {
		t.Fatalf("%s: shapes.%s: %v", c.Name, key, err)
	}
	return n
}

// checkReadoutOutputs compares out = forward(), y = ELU(out + offset) + 1 and the
// gradients grad_x_out and grad_x of a readout case (each gradient on a graph of
// its own, since a backward pass consumes the graph).
func checkReadoutOutputs(t *testing.T, k *ioCheck, x *tensor.Tensor, forward func() *tensor.Tensor, offset float32) {
	t.Helper()
	enc := &Encoder{Offset: offset}
	out := forward()
	y := enc.Output(forward())
	k.compare("out", out)
	k.compare("y", y)
	r := k.input("r")
	k.compare("grad_x_out", inputGrad(out, r, x))
	k.compare("grad_x", inputGrad(y, r, x))
}

func checkGaussianReadout(t *testing.T, c refvec.Case) {
	k := newIOCheck(t, c)
	w := c.Open(t, "weights.safetensors")
	var gc GaussianConfig
	pyKwargs(t, c, &gc)
	var kw struct {
		Bias bool `json:"bias"`
	}
	pyKwargs(t, c, &kw)
	gc.Bias = kw.Bias
	xs := shape(t, c, "x")
	build := func(file string) *GaussianReadout {
		r, err := NewGaussianReadout(testDev, gc, sessionOf(t, w, "", "_mu"), xs[1], shapeInt(t, c, "neurons"), nil)
		if err != nil {
			t.Fatal(err)
		}
		loadInto(t, c, r, file, nn.LoadOptions{})
		return r
	}
	ro := build("weights.safetensors")
	x := k.input("x").SetRequiresGrad(true)
	fwd := func() *tensor.Tensor { return ro.Forward(x) }
	k.compare("grid", ro.Grid())
	checkReadoutOutputs(t, k, x, fwd, eluOffset(t, c))
	if c.Exists("weights.pt") {
		rp := build("weights.pt")
		rp.Grid() // the forward pass clamps _mu in place; compare like with like
		sameWeights(t, "weights.pt", ro, rp)
		sameData(t, "out (weights.pt)", rp.Forward(x.Detach()), ro.Forward(x.Detach()))
	}
	k.done()
}

func checkAttentionReadout(t *testing.T, c refvec.Case) {
	k := newIOCheck(t, c)
	w := c.Open(t, "weights.safetensors")
	var ac AttentionConfig
	c.Get(t, "flags", &ac)
	xs := shape(t, c, "x")
	build := func(file string) *AttentionReadout {
		r, err := NewAttentionReadout(testDev, ac, sessionOf(t, w, "", "neuron_query"), xs[1], xs[2], xs[3], shapeInt(t, c, "neurons"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if file == "weights.safetensors" {
			// The positional encoding we generate must be the checkpoint's buffer.
			want, _ := refvec.F32(t, w, "position_embedding.twod_pe")
			refvec.Close(t, "generated twod_pe", r.PosEnc.Data(), want, 1e-6)
		}
		loadInto(t, c, r, file, nn.LoadOptions{})
		return r
	}
	ro := build("weights.safetensors")
	x := k.input("x").SetRequiresGrad(true)
	a := ro.attend(x)
	k.compare("key", a.key)
	k.compare("value", a.value)
	k.compare("attention_weights", tensor.Permute(a.weights, 0, 2, 1))
	if k.has("scale") {
		// Stored in float16: compare with the float16 rounding error allowed.
		k.seen["scale"] = true
		want, _ := refvec.F32(t, k.r, "scale")
		got := math.Pow(float64(xs[1]), -0.5)
		if !ac.Scale {
			got = 1
		}
		if d := math.Abs(got - float64(want[0])); d > 1e-3*math.Abs(got) {
			t.Errorf("scale %v, want %v", got, want[0])
		} else {
			t.Logf("scale: %v (stored %v)", got, want[0])
		}
	}
	checkReadoutOutputs(t, k, x, func() *tensor.Tensor { return ro.Forward(x) }, eluOffset(t, c))
	if c.Exists("weights.pt") {
		rp := build("weights.pt")
		sameWeights(t, "weights.pt", ro, rp)
		sameData(t, "out (weights.pt)", rp.Forward(x.Detach()), ro.Forward(x.Detach()))
	}
	k.done()
}

func checkSE2dCore(t *testing.T, c refvec.Case) {
	k := newIOCheck(t, c)
	var cfg SE2dConfig
	c.Get(t, "kwargs", &cfg)
	build := func(file string) *SE2dCore {
		core, err := NewSE2dCore(testDev, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		loadInto(t, c, core, file, nn.LoadOptions{})
		return core
	}
	core := build("weights.safetensors")
	x := k.input("x").SetRequiresGrad(true)
	if got, want := x.Shape(), shape(t, c, "x"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("x %v, config says %v", got, want)
	}
	outs := core.ForwardLayers(x)
	for i, o := range outs {
		if name := fmt.Sprintf("layer%d_out", i); k.has(name) {
			k.compare(name, o)
		}
	}
	out := outs[len(outs)-1]
	if ch, h, w := core.OutShape(x.Dim(2), x.Dim(3)); fmt.Sprint([]int{1, ch, h, w}[1:]) != fmt.Sprint(out.Shape()[1:]) {
		t.Errorf("OutShape %v, forward gives %v", []int{ch, h, w}, out.Shape())
	}
	k.compare("out", out)
	k.compare("grad_x", inputGrad(out, k.input("r"), x))
	if c.Exists("weights.pt") {
		cp := build("weights.pt")
		sameWeights(t, "weights.pt", core, cp)
		sameData(t, "out (weights.pt)", cp.Forward(x.Detach()), out)
	}
	k.done()
}

func checkResNetCore(t *testing.T, c refvec.Case) {
	k := newIOCheck(t, c)
	var cfg ResNetConfig
	pyKwargs(t, c, &cfg)
	core, err := NewResNetCore(testDev, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	loadInto(t, c, core, "weights.safetensors", nn.LoadOptions{})
	x := k.input("x").SetRequiresGrad(true)
	st := core.Stages(x)
	names := k.r.Names()
	sort.Strings(names)
	for _, n := range names {
		if stage, ok := strings.CutSuffix(n, "_out"); ok {
			got, ok := st[stage]
			if !ok {
				t.Errorf("io key %q: the core has no stage %q", n, stage)
				continue
			}
			k.compare(n, got)
		}
	}
	out := st["out"]
	if ch, h, w := core.OutShape(x.Dim(2), x.Dim(3)); fmt.Sprint([]int{ch, h, w}) != fmt.Sprint(out.Shape()[1:]) {
		t.Errorf("OutShape %v, forward gives %v", []int{ch, h, w}, out.Shape())
	}
	k.compare("out", out)
	k.compare("grad_x", inputGrad(out, k.input("r"), x))
	k.done()
}

var modelFnRE = regexp.MustCompile(`(\w+)\(data_info`)

// fullConfig builds the Config of a full-model case with NNVisionConfig from the
// model function named in its module string, model_config and data_info, and
// checks its output offset against the one the case's texts state.
func fullConfig(t *testing.T, c refvec.Case) Config {
	t.Helper()
	var module string
	c.Get(t, "module", &module)
	fn := modelFnRE.FindStringSubmatch(module)
	if fn == nil {
		t.Fatalf("%s: module %q names no model function", c.Name, module)
	}
	cfg, err := NNVisionConfig(fn[1], c.Config["model_config"], c.Config["data_info"])
	if err != nil {
		t.Fatal(err)
	}
	if want := eluOffset(t, c); cfg.EluOffset != want {
		t.Errorf("elu_offset %v, the case says %v", cfg.EluOffset, want)
	}
	return cfg
}

// checkFullModel checks core_out, readout_out, out, out2 and grad_x_unit of a full
// model, and that Save / Load round-trips it exactly.
func checkFullModel(t *testing.T, c refvec.Case, k *ioCheck, m *Encoder) {
	t.Helper()
	x := k.input("x").SetRequiresGrad(true)
	feat := m.Core.Forward(x)
	k.compare("core_out", feat)
	k.compare("readout_out", m.Readout.Forward(feat))
	out := m.Forward(x)
	k.compare("out", out)
	unit := k.ints("unit")
	k.compare("grad_x_unit", inputGrad(out, unitSeed(out, int(unit[0])), x))
	out2 := m.Forward(k.input("x2"))
	k.compare("out2", out2)

	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := Save(path, m, map[string]string{"case": c.Name}); err != nil {
		t.Fatal(err)
	}
	back, err := LoadOn(testDev, path)
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, "Save/Load", m, back)
	sameData(t, "out after Save/Load", back.Forward(x.Detach()), out)
}

func checkFullDataDriven(t *testing.T, c refvec.Case) {
	k := newIOCheck(t, c)
	cfg := fullConfig(t, c)
	mm, err := ImportOn(testDev, filepath.Join(c.Dir, "weights.safetensors"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*Encoder)
	checkFullModel(t, c, k, m)
	if c.Exists("weights.pt") {
		mp, err := ImportOn(testDev, filepath.Join(c.Dir, "weights.pt"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		sameWeights(t, "weights.pt", m, mp)
		x := k.input("x")
		sameData(t, "out (weights.pt)", mp.Forward(x), m.Forward(x))
	}
	k.done()
}

func checkFullTaskDriven(t *testing.T, c refvec.Case) {
	k := newIOCheck(t, c)
	cfg := fullConfig(t, c)
	mm, err := New(testDev, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*Encoder)
	w := c.Open(t, "weights.safetensors")
	wholeFile := false
	for _, n := range w.Names() {
		wholeFile = wholeFile || strings.HasPrefix(n, "core.")
	}
	parts := []Part{{Path: filepath.Join(c.Dir, "weights.safetensors")}}
	if !wholeFile {
		var ref string
		c.Get(t, "core_weights", &ref)
		p := weightsRef.FindStringSubmatch(ref)
		if p == nil {
			t.Fatalf("core_weights %q names no file", ref)
		}
		parts = []Part{
			{Path: filepath.Join(c.Dir, "weights.safetensors"), Module: "readout", Prefix: "readout."},
			{Path: filepath.Join(c.Dir, p[1]), Module: "core", Torchvision: true},
		}
	}
	if err := LoadParts(m, parts...); err != nil {
		t.Fatal(err)
	}
	if c.Has("core_name_map") {
		checkCoreNameMap(t, c, m)
	}
	checkFullModel(t, c, k, m)
	k.done()
}

// checkCoreNameMap checks the ResNet core's nnvision names and their torchvision
// mapping against the case's core_name_map (torchvision name -> full-model name).
func checkCoreNameMap(t *testing.T, c refvec.Case, m *Encoder) {
	t.Helper()
	var nameMap map[string]string
	c.Get(t, "core_name_map", &nameMap)
	rn := m.Core.(*ResNetCore)
	byFull := map[string]string{}
	for tv, full := range nameMap {
		byFull[full] = tv
		inner, ok := strings.CutPrefix(full, "core.")
		if !ok {
			t.Fatalf("core_name_map value %q lacks core.", full)
		}
		if got := rn.TorchvisionName(inner); got != tv {
			t.Errorf("TorchvisionName(%q) = %q, want %q", inner, got, tv)
		}
	}
	n := 0
	for _, e := range nn.StateDict(m) {
		if strings.HasPrefix(e.Name, "core.") {
			n++
			if _, ok := byFull[e.Name]; !ok {
				t.Errorf("core tensor %q is not in core_name_map", e.Name)
			}
		}
	}
	t.Logf("core_name_map: %d core tensors named as in nnvision", n)
}

func TestParity(t *testing.T) {
	refvec.Run(t, map[string]func(*testing.T, refvec.Case){
		"gaussian_readout":       checkGaussianReadout,
		"attention_readout":      checkAttentionReadout,
		"se2d_core":              checkSE2dCore,
		"resnet_core":            checkResNetCore,
		"full_model_data_driven": checkFullDataDriven,
		"full_model_task_driven": checkFullTaskDriven,
	})
}
