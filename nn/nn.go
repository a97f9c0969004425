// Package nn holds layers built on the tensor engine and the state_dict machinery
// that loads their weights under the reference implementations' PyTorch names.
//
// A Module lists its tensors by visiting them with their state_dict names; models are
// trees of modules whose Visit methods call Sub for each child. Load and Save use that
// list, so every checkpoint of the reference code loads without conversion.
// Conventions: images are [N, C, H, W] float32; layer constructors take a seeded
// random source for PyTorch's default initialisation, or nil for zeros.
package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"egg/checkpoint"
	"egg/tensor"
)

// Entry is one named tensor of a module's state_dict.
type Entry struct {
	Name   string
	T      *tensor.Tensor
	Buffer bool // a buffer (running statistics, fixed encodings) rather than a trainable parameter
}

// Visitor collects the tensors of a module tree under dotted names.
type Visitor struct {
	prefix  string
	entries *[]Entry
	ignored *[]string
}

// Sub returns a visitor for the child module called name.
func (v Visitor) Sub(name string) Visitor {
	return Visitor{prefix: v.prefix + name + ".", entries: v.entries, ignored: v.ignored}
}

// Param records a trainable parameter.
func (v Visitor) Param(name string, t *tensor.Tensor) {
	if t != nil {
		*v.entries = append(*v.entries, Entry{Name: v.prefix + name, T: t})
	}
}

// Buffer records a non-trainable tensor that is part of the state_dict.
func (v Visitor) Buffer(name string, t *tensor.Tensor) {
	if t != nil {
		*v.entries = append(*v.entries, Entry{Name: v.prefix + name, T: t, Buffer: true})
	}
}

// Ignore records a state_dict name the module accepts in checkpoints but does not use
// (such as BatchNorm's num_batches_tracked).
func (v Visitor) Ignore(name string) { *v.ignored = append(*v.ignored, v.prefix+name) }

// Module is anything with named tensors.
type Module interface {
	Visit(v Visitor)
}

// StateDict lists a module's tensors in visiting order.
func StateDict(m Module) []Entry {
	e, _ := collect(m)
	return e
}

func collect(m Module) ([]Entry, []string) {
	var e []Entry
	var ign []string
	m.Visit(Visitor{entries: &e, ignored: &ign})
	return e, ign
}

// Params returns the trainable parameters of m.
func Params(m Module) []*tensor.Tensor {
	var ps []*tensor.Tensor
	for _, e := range StateDict(m) {
		if !e.Buffer {
			ps = append(ps, e.T)
		}
	}
	return ps
}

// SetRequiresGrad marks every trainable parameter of m as requiring a gradient or not.
func SetRequiresGrad(m Module, v bool) {
	for _, p := range Params(m) {
		p.SetRequiresGrad(v)
	}
}

// LoadOptions adapt a checkpoint's names to a module's.
type LoadOptions struct {
	// Prefix is prepended to the module's names to find them in the checkpoint
	// (e.g. "core." to load a core out of a full model's file).
	Prefix string
	// Rename maps a module name (after Prefix) to the checkpoint's name; nil keeps it.
	Rename func(string) string
	// AllowUnexpected accepts checkpoint tensors the module does not use (a file that
	// holds more than this module); by default they are an error, unless they lie
	// outside Prefix.
	AllowUnexpected bool
}

// Load fills m's tensors from r, strictly: every tensor of m must be present with
// its shape, and (unless opts allow it) r must hold nothing else under the prefix.
// Errors name the tensor and both shapes.
func Load(m Module, r checkpoint.Reader, opts LoadOptions) error {
	entries, ignored := collect(m)
	used := map[string]bool{}
	for _, name := range ignored {
		used[opts.Prefix+name] = true
	}
	for _, e := range entries {
		name := opts.Prefix + e.Name
		if opts.Rename != nil {
			name = opts.Rename(name)
		}
		used[name] = true
		info, ok := r.Info(name)
		if !ok {
			return fmt.Errorf("nn: checkpoint has no tensor %q (shape %v); is it the right model or architecture?", name, e.T.Shape())
		}
		if !compatible(info.Shape, e.T.Shape()) {
			return fmt.Errorf("nn: tensor %q has shape %v in the checkpoint, the model expects %v; check the architecture flags", name, info.Shape, e.T.Shape())
		}
		v, err := r.Float32(name)
		if err != nil {
			return fmt.Errorf("nn: %w", err)
		}
		if len(v) != e.T.Len() {
			return fmt.Errorf("nn: tensor %q has %d values in the checkpoint, the model expects %d", name, len(v), e.T.Len())
		}
		e.T.SetValues(v)
	}
	if !opts.AllowUnexpected {
		var extra []string
		for _, n := range r.Names() {
			if !used[n] && strings.HasPrefix(n, opts.Prefix) {
				extra = append(extra, n)
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			more := ""
			if len(extra) > 3 {
				more = fmt.Sprintf(" and %d more", len(extra)-3)
				extra = extra[:3]
			}
			return fmt.Errorf("nn: checkpoint has tensors the model does not use: %s%s; check the architecture flags", strings.Join(extra, ", "), more)
		}
	}
	return nil
}

// compatible accepts equal shapes, and shapes that differ only by trailing 1s
// (a Conv1d weight [O, I, 1] loads into a [O, I, 1, 1] kernel).
func compatible(a, b []int) bool {
	for len(a) > 0 && len(b) > len(a) && b[len(b)-1] == 1 {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && len(a) > len(b) && a[len(a)-1] == 1 {
		a = a[:len(a)-1]
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Save writes m's state_dict to a safetensors file (atomically) with metadata.
func Save(path string, m Module, metadata map[string]string) error {
	var ts []checkpoint.Tensor
	for _, e := range StateDict(m) {
		ts = append(ts, checkpoint.Tensor{Name: e.Name, DType: "F32", Shape: e.T.Shape(), F32: e.T.Values()})
	}
	return checkpoint.WriteSafetensors(path, ts, metadata)
}

// uniform fills t with U(-bound, bound) from rng (PyTorch's default layer init uses
// bound = 1/sqrt(fan_in)); nil rng leaves zeros.
func uniform(t *tensor.Tensor, rng *rand.Rand, bound float64) *tensor.Tensor {
	if rng == nil || t == nil {
		return t
	}
	v := make([]float32, t.Len())
	for i := range v {
		v[i] = float32((2*rng.Float64() - 1) * bound)
	}
	t.SetValues(v)
	return t
}

func fanInBound(fanIn int) float64 { return 1 / math.Sqrt(float64(max(fanIn, 1))) }
