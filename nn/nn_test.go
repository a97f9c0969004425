package nn

import (
	"path/filepath"
	"strings"
	"testing"

	"egg/checkpoint"
	"egg/tensor"
)

var dev = tensor.CPU(1)

type pair struct {
	A *Conv2d
	B *BatchNorm2d
}

func (p *pair) Visit(v Visitor) {
	p.A.Visit(v.Sub("a"))
	p.B.Visit(v.Sub("b"))
}

func newPair() *pair {
	return &pair{A: NewConv2d(dev, nil, 2, 3, 3, tensor.ConvOpts{}, true), B: NewBatchNorm2d(dev, 3, true, 0.1, 1e-5)}
}

func TestSaveLoad(t *testing.T) {
	p := newPair()
	for i := range p.A.Weight.Data() {
		p.A.Weight.Data()[i] = float32(i)
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := Save(path, p, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	q := newPair()
	r, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := Load(q, r, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if q.A.Weight.Data()[17] != 17 || r.Metadata()["k"] != "v" {
		t.Fatal("weights or metadata did not round-trip")
	}
	if len(Params(q)) != 4 || len(StateDict(q)) != 6 {
		t.Fatalf("%d params, %d state entries", len(Params(q)), len(StateDict(q)))
	}
}

func TestLoadErrors(t *testing.T) {
	write := func(ts ...checkpoint.Tensor) checkpoint.Reader {
		path := filepath.Join(t.TempDir(), "x.safetensors")
		if err := checkpoint.WriteSafetensors(path, ts, nil); err != nil {
			t.Fatal(err)
		}
		r, err := checkpoint.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	full := func() []checkpoint.Tensor {
		var ts []checkpoint.Tensor
		for _, e := range StateDict(newPair()) {
			ts = append(ts, checkpoint.Tensor{Name: e.Name, DType: "F32", Shape: e.T.Shape(), F32: e.T.Data()})
		}
		return ts
	}
	cases := []struct {
		name string
		ts   []checkpoint.Tensor
		want string
	}{
		{"missing", full()[1:], `no tensor "a.weight"`},
		{"shape", append(full()[1:], checkpoint.Tensor{Name: "a.weight", DType: "F32", Shape: []int{3, 2, 2, 2}, F32: make([]float32, 24)}), "shape [3 2 2 2] in the checkpoint, the model expects [3 2 3 3]"},
		{"unexpected", append(full(), checkpoint.Tensor{Name: "c.weight", DType: "F32", Shape: []int{1}, F32: []float32{1}}), "does not use: c.weight"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Load(newPair(), write(c.ts...), LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
	// num_batches_tracked is accepted and ignored.
	ts := append(full(), checkpoint.Tensor{Name: "b.num_batches_tracked", DType: "I64", Shape: []int{}, I64: []int64{3}})
	if err := Load(newPair(), write(ts...), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}
