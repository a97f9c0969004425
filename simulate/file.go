package simulate

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"egg/checkpoint"
	"egg/nn"
	"egg/tensor"
)

// MetadataKey is the safetensors metadata key under which Save stores the model's
// Config and neuron descriptions (JSON).
const MetadataKey = "egg.simulate"

// fileInfo is the JSON under MetadataKey.
type fileInfo struct {
	Config     Config   `json:"config"`
	Calibrated bool     `json:"calibrated"`
	Neurons    []Neuron `json:"neurons"`
}

// Save writes m to path as a safetensors file (atomically): its tensors, and under
// MetadataKey its Config and the description of its neurons, plus the entries of
// meta (which must not use MetadataKey).
func Save(path string, m *Model, meta map[string]string) error {
	if _, ok := meta[MetadataKey]; ok {
		return fmt.Errorf("simulate: Save: metadata key %q is reserved for the model", MetadataKey)
	}
	b, err := json.Marshal(fileInfo{Config: m.cfg, Calibrated: m.calibrated, Neurons: m.neurons})
	if err != nil {
		return fmt.Errorf("simulate: Save: %w", err)
	}
	md := maps.Clone(meta)
	if md == nil {
		md = map[string]string{}
	}
	md[MetadataKey] = string(b)
	return nn.Save(path, m, md)
}

// IsModelFile reports whether path is a model file written by Save (a safetensors
// file with MetadataKey in its metadata).
func IsModelFile(path string) bool {
	r, err := checkpoint.Open(path)
	if err != nil {
		return false
	}
	defer r.Close()
	_, ok := r.Metadata()[MetadataKey]
	return ok
}

var defaultDevice = sync.OnceValue(func() *tensor.Device { return tensor.CPU(0) })

// Load reads a model written by Save, on the CPU with all cores.
func Load(path string) (*Model, error) { return LoadOn(defaultDevice(), path) }

// LoadOn reads a model written by Save onto dev. The tensors of the file are the
// model: they are read as stored, not rebuilt from the seed.
func LoadOn(dev *tensor.Device, path string) (*Model, error) {
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	js, ok := r.Metadata()[MetadataKey]
	if !ok {
		return nil, fmt.Errorf("simulate: %s has no %q metadata, so it is not a simulated population (egg simulate writes them)", path, MetadataKey)
	}
	var fi fileInfo
	if err := json.Unmarshal([]byte(js), &fi); err != nil {
		return nil, fmt.Errorf("simulate: %s: metadata: %w", path, err)
	}
	if err := fi.Config.Validate(); err != nil {
		return nil, fmt.Errorf("simulate: %s: %w", path, err)
	}
	m := &Model{cfg: fi.Config, neurons: fi.Neurons, calibrated: fi.Calibrated}
	for _, t := range []struct {
		name string
		dst  **tensor.Tensor
	}{{"gabor", &m.Gabor}, {"subunits", &m.Subunits}, {"log_window", &m.LogWindow}, {"beta", &m.Beta}, {"first", &m.First},
		{"second", &m.Second}, {"scale", &m.Scale}, {"shift", &m.Shift}, {"amplitude", &m.Amplitude}} {
		info, ok := r.Info(t.name)
		if !ok {
			return nil, fmt.Errorf("simulate: %s has no tensor %q; it is not a complete simulated population", path, t.name)
		}
		*t.dst = tensor.New(dev, info.Shape...)
	}
	if err := nn.Load(m, r, nn.LoadOptions{}); err != nil {
		return nil, fmt.Errorf("simulate: %s: %w", path, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("simulate: %s: %w", path, err)
	}
	return m, nil
}

// check verifies that the tensors fit together and fills the subunit indices.
func (m *Model) check() error {
	n, g, k := m.cfg.Neurons, m.cfg.Size/Cell, m.Subunits.Dim(0)
	ok := m.Gabor.Rank() == 4 && m.Gabor.Dim(0) == 2*Orientations && m.Gabor.Dim(1) == 1 &&
		m.Subunits.Rank() == 4 && m.Subunits.Dim(1) == Levels*Orientations && m.Subunits.Dim(2) == SubunitSize &&
		m.LogWindow.Rank() == 2 && m.LogWindow.Dim(0) == n && m.LogWindow.Dim(1) == g*g && len(m.neurons) == n
	for _, t := range []*tensor.Tensor{m.Beta, m.First, m.Second, m.Scale, m.Shift, m.Amplitude} {
		ok = ok && t.Rank() == 1 && t.Dim(0) == n
	}
	if !ok {
		return fmt.Errorf("its tensors do not fit a population of %d neurons on %dx%d images; it was written by another version of egg", n, m.cfg.Size, m.cfg.Size)
	}
	m.first, m.second = make([]int, n), make([]int, n)
	first, second := m.First.Values(), m.Second.Values()
	for i := 0; i < n; i++ {
		a, b := int(first[i]), int(second[i])
		if a < 0 || a >= k || b < 0 || b >= k {
			return fmt.Errorf("neuron %d uses subunits %d and %d of %d", i, a, b, k)
		}
		m.first[i], m.second[i] = a, b
	}
	return nil
}
