package train

import (
	"fmt"
	"math"
	"slices"

	"egg/dataset"
	"egg/encoder"
	"egg/nn"
	"egg/tensor"
)

// device returns the device m's tensors live on.
func device(m encoder.Model) *tensor.Device {
	for _, e := range nn.StateDict(m) {
		return e.T.Device()
	}
	return tensor.CPU(0)
}

// CheckData reports why m cannot predict the responses of d: a different number of
// neurons, different neuron ids, or a different image size.
func CheckData(m encoder.Model, d *dataset.Dataset) error {
	cfg := m.Config()
	if m.Neurons() != d.Neurons {
		return fmt.Errorf("train: the model predicts %d neurons but %s has %d; use the data set the model was trained on", m.Neurons(), d.Source, d.Neurons)
	}
	if cfg.NeuronIDs != nil && d.NeuronIDs != nil && !slices.Equal(cfg.NeuronIDs, d.NeuronIDs) {
		return fmt.Errorf("train: the model's neuron ids differ from those of %s; use the data set the model was trained on", d.Source)
	}
	if want := []int{d.C, d.H, d.W}; !slices.Equal(cfg.InputShape, want) {
		return fmt.Errorf("train: the model takes %v images but %s has %v; resize the images or train a model for them", cfg.InputShape, d.Source, want)
	}
	return nil
}

// Predict returns m's predictions [len(idx), neurons] for the images of trials idx
// of d, standardised with m's pixel normalisation and run batch images at a time in
// m's current mode (evaluation unless the caller changed it).
func Predict(m encoder.Model, d *dataset.Dataset, idx []int, batch int) []float32 {
	dev := device(m)
	cfg := m.Config()
	il, n := d.ImageLen(), m.Neurons()
	out := make([]float32, 0, len(idx)*n)
	for lo := 0; lo < len(idx); lo += batch {
		hi := min(lo+batch, len(idx))
		xs := make([]float32, (hi-lo)*il)
		for k, i := range idx[lo:hi] {
			copy(xs[k*il:], d.Image(i))
		}
		x := tensor.FromSlice(dev, xs, hi-lo, d.C, d.H, d.W)
		out = append(out, m.Forward(cfg.Standardize(x)).Data()...) // a fresh result, read once
	}
	return out
}

// Evaluation holds the scores of a model on one tier of a data set.
type Evaluation struct {
	Tier      string  // the tier scored
	Trials    int     // trials in it
	Images    int     // distinct images in it
	NeuronIDs []int64 // the data set's neuron ids (nil when it has none)
	PerNeuron Scores  // per neuron
	// Means over neurons (NaN where no neuron has a value; Oracle is NaN without
	// repeated images).
	SingleTrial, Average, Oracle float64
}

// Evaluate scores m's predictions on the trials of tier of d.
func Evaluate(m encoder.Model, d *dataset.Dataset, tier string, batch int) (*Evaluation, error) {
	if err := CheckData(m, d); err != nil {
		return nil, err
	}
	idx := d.Indices(tier)
	if len(idx) == 0 {
		return nil, fmt.Errorf("train: %s has no %s trials (it has %d train, %d validation and %d test trials); choose another tier", d.Source, tier,
			len(d.Indices(dataset.Train)), len(d.Indices(dataset.Validation)), len(d.Indices(dataset.Test)))
	}
	if batch < 1 {
		batch = 64
	}
	pred := Predict(m, d, idx, batch)
	resp, mask, ids := rows(d, idx)
	e := &Evaluation{Tier: tier, Trials: len(idx), NeuronIDs: d.NeuronIDs, PerNeuron: Score(pred, resp, d.Neurons, ids, mask)}
	e.Images = len(groups(len(idx), ids))
	p := e.PerNeuron
	e.SingleTrial, e.Average, e.Oracle = Mean(p.SingleTrial), Mean(p.Average), math.NaN()
	if p.Oracle != nil {
		e.Oracle = Mean(p.Oracle)
	}
	return e, nil
}

// rows returns the responses, mask and image ids of trials idx (mask and ids nil
// when d has none).
func rows(d *dataset.Dataset, idx []int) (resp []float32, mask []bool, ids []int64) {
	n := d.Neurons
	for _, i := range idx {
		resp = append(resp, d.Responses[i*n:(i+1)*n]...)
		if d.Mask != nil {
			mask = append(mask, d.Mask[i*n:(i+1)*n]...)
		}
		if d.ImageIDs != nil {
			ids = append(ids, d.ImageIDs[i])
		}
	}
	return resp, mask, ids
}
