package mei

// Most exciting natural images (egg-method.md sections 4 and 7): the patches of a
// pool that drive each neuron most, found by scoring every patch with the training
// models, to be compared with EGG images made at low energy scales.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"egg/energy"
	"egg/imageio"
	"egg/pool"
	"egg/tensor"
)

// NaturalHit is one of a neuron's most exciting natural images.
type NaturalHit struct {
	Index      int     `json:"index"`            // the patch's index in the pool
	Source     string  `json:"source,omitempty"` // where the patch came from ("file:scale:x:y:flip")
	Tier       string  `json:"tier,omitempty"`   // the pool tier of the patch
	Activation float32 `json:"activation"`       // the training models' response
	// Activations holds the response of every role (train, within, cross, truth);
	// EvaluateNatural fills it.
	Activations map[string]float32 `json:"activations,omitempty"`
}

// NaturalRecord is what is kept for one neuron's natural images.
type NaturalRecord struct {
	Neuron int          `json:"neuron"`
	Norm   float32      `json:"norm"`
	InputH int          `json:"input_h"`
	InputW int          `json:"input_w"`
	Pool   string       `json:"pool,omitempty"`
	Hits   []NaturalHit `json:"hits"` // best first
	Image  string       `json:"image"`
}

// NaturalInputs maps n uint8 patches [n, 1, size, size] (flat, pixels in 0..255) to
// model inputs [n, 1, h, w]: pixels become v/127.5 - 1 in [-1, 1], like the images of
// the diffusion prior, and then go through energy.Transform{h, w, norm} (bilinear
// resize, channel mean, fixed L2 norm), as EGG's images do.
func NaturalInputs(dev *tensor.Device, pixels []uint8, n, size, h, w int, norm float32) *tensor.Tensor {
	v := make([]float32, n*size*size)
	for i, p := range pixels[:n*size*size] {
		v[i] = float32(p)/127.5 - 1
	}
	x := tensor.FromSlice(dev, v, n, 1, size, size)
	return energy.Transform{Height: h, Width: w, Norm: norm}.Apply(x).Detach()
}

// TopNatural scores every patch of pixels (flat [N, 1, size, size] uint8) with the
// model m, in batches of batch patches, after NaturalInputs, and returns for each
// neuron of neurons its k patches of highest response, best first (ties: the lower
// index first). Source and Tier of the hits are left empty.
func TopNatural(dev *tensor.Device, m Model, pixels []uint8, size, h, w int, norm float32, neurons []int, k, batch int) ([][]NaturalHit, error) {
	if m == nil {
		return nil, errors.New("mei: TopNatural needs a model")
	}
	if size < 1 || len(pixels)%(size*size) != 0 {
		return nil, fmt.Errorf("mei: %d pixels are not whole %dx%d patches", len(pixels), size, size)
	}
	if k < 1 {
		return nil, fmt.Errorf("mei: top %d natural images: want at least 1", k)
	}
	if batch < 1 {
		batch = 64
	}
	n := len(pixels) / (size * size)
	if n == 0 {
		return nil, errors.New("mei: the pool has no patches")
	}
	top := make([][]NaturalHit, len(neurons))
	per := size * size
	for start := 0; start < n; start += batch {
		b := min(batch, n-start)
		x := NaturalInputs(dev, pixels[start*per:(start+b)*per], b, size, h, w, norm)
		r := m.Forward(x)
		nn := r.Dim(1)
		data := r.Values()
		for j, neuron := range neurons {
			if neuron < 0 || neuron >= nn {
				return nil, fmt.Errorf("mei: neuron %d out of range for a model of %d neurons", neuron, nn)
			}
			for i := 0; i < b; i++ {
				top[j] = insertTop(top[j], NaturalHit{Index: start + i, Activation: data[i*nn+neuron]}, k)
			}
		}
	}
	return top, nil
}

// insertTop inserts h into the list l (sorted by decreasing activation, at most k
// long), keeping the earlier entry first on ties.
func insertTop(l []NaturalHit, h NaturalHit, k int) []NaturalHit {
	if len(l) == k && !(h.Activation > l[k-1].Activation) {
		return l
	}
	pos := len(l)
	for pos > 0 && h.Activation > l[pos-1].Activation {
		pos--
	}
	if len(l) < k {
		l = append(l, NaturalHit{})
	}
	copy(l[pos+1:], l[pos:len(l)-1])
	l[pos] = h
	return l
}

// EvaluateNatural fills the Activations of every hit with the response of its neuron
// on every role of models, and returns the hits' model inputs per neuron ([k, 1, h, w]).
func EvaluateNatural(dev *tensor.Device, models ModelSet, pixels []uint8, size, h, w int, norm float32, neurons []int, hits [][]NaturalHit) []*tensor.Tensor {
	per := size * size
	inputs := make([]*tensor.Tensor, len(neurons))
	for j, neuron := range neurons {
		hs := hits[j]
		px := make([]uint8, 0, len(hs)*per)
		for _, hit := range hs {
			px = append(px, pixels[hit.Index*per:(hit.Index+1)*per]...)
		}
		x := NaturalInputs(dev, px, len(hs), size, h, w, norm)
		inputs[j] = x
		ns := make([]int, len(hs))
		for i := range ns {
			ns[i] = neuron
		}
		for i := range hs {
			if hs[i].Activations == nil {
				hs[i].Activations = map[string]float32{}
			}
		}
		for _, role := range roles {
			m := models.byRole(role)
			if m == nil {
				continue
			}
			for i, a := range respond(m, x, ns) {
				hs[i].Activations[role] = a
			}
		}
	}
	return inputs
}

// WriteNatural writes a neuron's natural images into dir: neuron_<id>.png (a row of
// the model inputs x [k, 1, h, w], gray, symmetric around 0) and, last,
// neuron_<id>.json (rec, whose Image it sets).
func WriteNatural(dir string, rec NaturalRecord, x *tensor.Tensor) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := fmt.Sprintf("neuron_%05d", rec.Neuron)
	rec.Image = base + ".png"
	k, h, w := x.Dim(0), x.Dim(2), x.Dim(3)
	v := x.Values()
	img, err := imageio.Grid(v, k, 1, h, w, k, 2, inputRange(v))
	if err != nil {
		return err
	}
	if err := imageio.WritePNG(filepath.Join(dir, rec.Image), img); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return imageio.WriteFileAtomic(filepath.Join(dir, base+".json"), b)
}

// ReadNatural reads the record of a neuron written by WriteNatural.
func ReadNatural(dir string, neuron int) (NaturalRecord, error) {
	var r NaturalRecord
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("neuron_%05d.json", neuron)))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Neuron != neuron {
		return r, fmt.Errorf("mei: natural record of neuron %d holds neuron %d", neuron, r.Neuron)
	}
	return r, nil
}

// ErrTooFewPatches says that a pool holds fewer patches than the images asked for
// per neuron.
var ErrTooFewPatches = errors.New("mei: the pool has too few patches")

// NaturalSearch is the search FindNatural runs: the pool (a file, read by Load
// only when the search must run) and how its patches become model inputs.
type NaturalSearch struct {
	PoolPath       string                     // recorded in each NaturalRecord; a change redoes the search
	Load           func() (*pool.Pool, error) // reads the pool
	InputH, InputW int                        // the model input's size
	Norm           float32                    // the model input's L2 norm
	Top            int                        // images per neuron
	Batch          int                        // patches scored per batch
	Logf           func(format string, a ...any)
}

// FindNatural returns the Top natural images of each neuron: read from dir when an
// earlier search with the same pool, norm, size and Top left them for every neuron,
// else found by scoring every patch on models.Train, evaluated on every role and
// written into dir (WriteNatural).
func FindNatural(ctx context.Context, dev *tensor.Device, dir string, models ModelSet, neurons []int, s NaturalSearch) (map[int]NaturalRecord, error) {
	out := map[int]NaturalRecord{}
	for _, n := range neurons {
		r, err := ReadNatural(dir, n)
		if err != nil || r.Norm != s.Norm || r.InputH != s.InputH || r.InputW != s.InputW || len(r.Hits) != s.Top || r.Pool != s.PoolPath {
			out = nil
			break
		}
		out[n] = r
	}
	if out != nil {
		return out, nil
	}
	p, err := s.Load()
	if err != nil {
		return nil, err
	}
	if p.Len() < s.Top {
		return nil, fmt.Errorf("%w: %d images per neuron asked for, %d patches in %s", ErrTooFewPatches, s.Top, p.Len(), s.PoolPath)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mei: interrupted before the natural images; run again to resume")
	}
	if s.Logf != nil {
		s.Logf("scoring the %d natural patches of %s for %d neurons", p.Len(), s.PoolPath, len(neurons))
	}
	hits, err := TopNatural(dev, models.Train, p.Images, p.Size, s.InputH, s.InputW, s.Norm, neurons, s.Top, max(1, s.Batch))
	if err != nil {
		return nil, fmt.Errorf("mei: natural images: %w", err)
	}
	for j := range hits {
		for i := range hits[j] {
			hits[j][i].Source = p.Sources[hits[j][i].Index]
			hits[j][i].Tier = p.Tiers[hits[j][i].Index]
		}
	}
	inputs := EvaluateNatural(dev, models, p.Images, p.Size, s.InputH, s.InputW, s.Norm, neurons, hits)
	out = map[int]NaturalRecord{}
	for j, n := range neurons {
		rec := NaturalRecord{Neuron: n, Norm: s.Norm, InputH: s.InputH, InputW: s.InputW, Pool: s.PoolPath, Hits: hits[j]}
		if err := WriteNatural(dir, rec, inputs[j]); err != nil {
			return nil, fmt.Errorf("mei: writing the natural images of neuron %d: %w", n, err)
		}
		rec.Image = fmt.Sprintf("neuron_%05d.png", n)
		out[n] = rec
	}
	return out, nil
}
