package dataset

import (
	"fmt"
	"os"
	"path/filepath"

	"egg/npy"
)

// arrays returns the data set's arrays under their .npz names: images [N, C, H, W]
// as uint8 when every pixel is a whole number in [0, 255] (float32 otherwise), and
// the optional arrays that are set.
func (d *Dataset) arrays() map[string]*npy.Array {
	m := map[string]*npy.Array{
		"images":    pixels(d.Images, d.N, d.C, d.H, d.W),
		"responses": npy.Float32s(d.Responses, d.N, d.Neurons),
	}
	if d.Tiers != nil && !d.TiersSplit {
		m["tiers"] = &npy.Array{Shape: []int{d.N}, Str: d.Tiers}
	}
	if d.ImageIDs != nil {
		m["image_ids"] = &npy.Array{Shape: []int{d.N}, I64: d.ImageIDs}
	}
	if d.Mask != nil {
		m["mask"] = &npy.Array{Shape: []int{d.N, d.Neurons}, Bool: d.Mask}
	}
	if d.NeuronIDs != nil {
		m["neuron_ids"] = &npy.Array{Shape: []int{d.Neurons}, I64: d.NeuronIDs}
	}
	return m
}

// pixels encodes images as uint8 when that loses nothing.
func pixels(v []float32, shape ...int) *npy.Array {
	ints := make([]int64, len(v))
	for i, x := range v {
		if x != float32(int(x)) || x < 0 || x > 255 {
			return npy.Float32s(v, shape...)
		}
		ints[i] = int64(x)
	}
	return &npy.Array{DType: "|u1", Shape: shape, I64: ints}
}

// WriteNPZ writes d to path as an .npz archive that ReadNPZ reads back. Tiers made
// by Split are not written.
func WriteNPZ(path string, d *Dataset) error {
	b, err := npy.EncodeNPZ(d.arrays())
	if err != nil {
		return fmt.Errorf("dataset: %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	return nil
}

// WriteStatic writes d as a static folder under dir (data/images/<i>.npy [C, H, W],
// data/responses/<i>.npy, meta/trials/tiers.npy, meta/trials/frame_image_id.npy,
// meta/neurons/unit_ids.npy) that ReadStatic reads back. The mask has no place in
// the layout and is not written.
func WriteStatic(dir string, d *Dataset) error {
	write := func(a *npy.Array, parts ...string) error {
		p := filepath.Join(append([]string{dir}, parts...)...)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("dataset: %w", err)
		}
		b, err := npy.EncodeBytes(a)
		if err != nil {
			return fmt.Errorf("dataset: %s: %w", p, err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("dataset: %w", err)
		}
		return nil
	}
	for i := 0; i < d.N; i++ {
		name := fmt.Sprintf("%d.npy", i)
		if err := write(pixels(d.Image(i), d.C, d.H, d.W), "data", "images", name); err != nil {
			return err
		}
		if err := write(npy.Float32s(d.Responses[i*d.Neurons:(i+1)*d.Neurons], d.Neurons), "data", "responses", name); err != nil {
			return err
		}
	}
	m := d.arrays()
	for key, parts := range map[string][]string{
		"tiers":      {"meta", "trials", "tiers.npy"},
		"image_ids":  {"meta", "trials", "frame_image_id.npy"},
		"neuron_ids": {"meta", "neurons", "unit_ids.npy"},
	} {
		if a, ok := m[key]; ok {
			if err := write(a, parts...); err != nil {
				return err
			}
		}
	}
	return nil
}
