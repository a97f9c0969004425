package priortrain

import (
	"fmt"

	"egg/adm"
	"egg/checkpoint"
	"egg/diffusion"
	"egg/nn"
	"egg/tensor"
)

// LoadModel reads a prior file written by WriteModel (egg train-prior): the UNet
// built from the file's metadata with its weights, and the diffusion process it was
// trained for. It fails when the file does not record both.
func LoadModel(dev *tensor.Device, path string) (*adm.UNet, Diffusion, error) {
	r, err := checkpoint.Open(path)
	if err != nil {
		return nil, Diffusion{}, err
	}
	defer r.Close()
	cfg, d, err := ReadMetadata(r.Metadata())
	if err != nil {
		return nil, Diffusion{}, fmt.Errorf("%s: %w", path, err)
	}
	if cfg == nil || d == nil {
		return nil, Diffusion{}, fmt.Errorf("%s: not an egg prior file (no %s and %s metadata): give its UNet flags with --preset or --config", path, ConfigKey, DiffusionKey)
	}
	unet, err := adm.New(dev, *cfg, nil)
	if err != nil {
		return nil, Diffusion{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := nn.Load(unet, r, nn.LoadOptions{}); err != nil {
		return nil, Diffusion{}, fmt.Errorf("loading %s: %w", path, err)
	}
	return unet, *d, nil
}

// Schedule returns the process of d respaced to the given timestep respacing ("100",
// "ddim50", "a,b,c"; "" keeps every step), with rescaled timesteps as trained.
func (d Diffusion) Schedule(respacing string) (*diffusion.Schedule, error) {
	c := d.Config()
	c.TimestepRespacing = respacing
	return diffusion.New(c)
}
