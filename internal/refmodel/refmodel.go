// Package refmodel builds the encoding models of the reference-vector cases
// (kinds full_model_data_driven and full_model_task_driven) for the tests of the
// packages that use them (gradient ascent, MEI runs).
package refmodel

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"egg/encoder"
	"egg/internal/refvec"
	"egg/tensor"
)

var (
	modelFnRE  = regexp.MustCompile(`(\w+)\(data_info`)
	weightsRef = regexp.MustCompile(`(\.\./[\w./-]+\.safetensors)`)
)

// Load builds and loads the encoding model of a full_model_* case: the architecture
// from its nnvision model_config and data_info, the weights from weights.safetensors
// (and, when that file holds only the readout, the core from the file its
// core_weights names, under torchvision's names).
func Load(t testing.TB, dev *tensor.Device, c refvec.Case) encoder.Model {
	t.Helper()
	var module string
	c.Get(t, "module", &module)
	fn := modelFnRE.FindStringSubmatch(module)
	if fn == nil {
		t.Fatalf("%s: module %q names no model function", c.Name, module)
	}
	cfg, err := encoder.NNVisionConfig(fn[1], c.Config["model_config"], c.Config["data_info"])
	if err != nil {
		t.Fatal(err)
	}
	m, err := encoder.New(dev, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := c.Open(t, "weights.safetensors")
	whole := false
	for _, n := range w.Names() {
		whole = whole || strings.HasPrefix(n, "core.")
	}
	parts := []encoder.Part{{Path: filepath.Join(c.Dir, "weights.safetensors")}}
	if !whole {
		var ref string
		c.Get(t, "core_weights", &ref)
		p := weightsRef.FindStringSubmatch(ref)
		if p == nil {
			t.Fatalf("%s: core_weights %q names no file", c.Name, ref)
		}
		parts = []encoder.Part{
			{Path: filepath.Join(c.Dir, "weights.safetensors"), Module: "readout", Prefix: "readout."},
			{Path: filepath.Join(c.Dir, p[1]), Module: "core", Torchvision: true},
		}
	}
	if err := encoder.LoadParts(m.(*encoder.Encoder), parts...); err != nil {
		t.Fatal(err)
	}
	return m
}

// Find returns the case whose folder is named by ref (e.g. "../full_data_driven
// (weights and architecture; unit 2 of its outputs)").
func Find(t testing.TB, ref string) refvec.Case {
	t.Helper()
	name := filepath.Base(strings.Fields(ref)[0])
	cases, err := refvec.Cases()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("reference case %q not found", name)
	return refvec.Case{}
}
