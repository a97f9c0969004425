package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"egg/adm"
	"egg/checkpoint"
	"egg/diffusion"
	"egg/nn"
	"egg/priortrain"
	"egg/tensor"
)

// priorOptions choose the diffusion model and its process.
type priorOptions struct {
	weights       string
	preset        string
	configFile    string
	steps         string
	noiseSchedule string
	diffSteps     int
	sigma         string
	predictX0     bool
}

func (o *priorOptions) addFlags(f *pflag.FlagSet, defaultSteps string) {
	f.StringVar(&o.weights, "weights", "", "diffusion checkpoint (.safetensors or PyTorch .pt state_dict)")
	f.StringVar(&o.preset, "preset", "", "UNet flags of a released guided-diffusion checkpoint: "+fmt.Sprint(adm.PresetNames()))
	f.StringVar(&o.configFile, "config", "", "JSON file of guided-diffusion UNetModel keyword arguments (instead of --preset)")
	f.StringVar(&o.steps, "steps", defaultSteps, `timestep respacing: "N", "ddimN" or "a,b,c"`)
	f.StringVar(&o.noiseSchedule, "noise-schedule", "linear", "beta schedule of the trained process: linear or cosine")
	f.IntVar(&o.diffSteps, "diffusion-steps", 1000, "steps of the trained diffusion process")
	f.StringVar(&o.sigma, "sigma", "", "variance: learned (default when out_channels = 2 x in_channels), fixed-small or fixed-large")
	f.BoolVar(&o.predictX0, "predict-xstart", false, "the model predicts x0 instead of epsilon")
}

// load builds the UNet and the respaced diffusion process. Without --preset and
// --config, the UNet comes from the weights file's metadata (egg.adm, written by egg
// train-prior), and so do the defaults of --noise-schedule, --diffusion-steps and
// --predict-xstart (egg.diffusion): a flag left at its default takes the file's value.
func (o *priorOptions) load(dev *tensor.Device, eggClamp bool) (*adm.UNet, *diffusion.Schedule, error) {
	if o.weights == "" {
		return nil, nil, usagef("--weights is required (a guided-diffusion checkpoint or an egg prior file)")
	}
	if o.preset != "" && o.configFile != "" {
		return nil, nil, usagef("give --preset or --config, not both")
	}
	r, err := checkpoint.Open(o.weights)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	po := *o // the options with the file's process defaults
	var cfg adm.Config
	switch {
	case o.preset != "":
		cfg, err = adm.Preset(o.preset)
	case o.configFile != "":
		cfg, err = adm.LoadConfig(o.configFile)
	default:
		mc, md, merr := priortrain.ReadMetadata(r.Metadata())
		if merr != nil {
			return nil, nil, fmt.Errorf("%s: %w", o.weights, merr)
		}
		if mc == nil {
			return nil, nil, usagef("give --preset NAME or --config FILE to describe the UNet of %s (its file does not record one)", o.weights)
		}
		cfg = *mc
		if md != nil {
			if po.noiseSchedule == "linear" && md.NoiseSchedule != "" {
				po.noiseSchedule = md.NoiseSchedule
			}
			if po.diffSteps == 1000 && md.Steps != 0 {
				po.diffSteps = md.Steps
			}
			po.predictX0 = po.predictX0 || md.PredictXStart
		}
	}
	if err != nil {
		return nil, nil, err
	}
	unet, err := adm.New(dev, cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := nn.Load(unet, r, nn.LoadOptions{}); err != nil {
		return nil, nil, fmt.Errorf("loading %s: %w", o.weights, err)
	}
	s, err := po.schedule(cfg, eggClamp)
	return unet, s, err
}

func (o *priorOptions) schedule(cfg adm.Config, eggClamp bool) (*diffusion.Schedule, error) {
	dc := diffusion.Config{
		BetaSchedule:      o.noiseSchedule,
		NumTimesteps:      o.diffSteps,
		TimestepRespacing: o.steps,
		RescaleTimesteps:  true,
	}
	if o.predictX0 {
		dc.MeanType = diffusion.MeanStartX
	}
	switch {
	case o.sigma == "" && cfg.LearnSigma(), o.sigma == "learned":
		if !cfg.LearnSigma() {
			return nil, usagef("--sigma learned needs out_channels = 2 x in_channels (the model has %d and %d)", cfg.OutChannels, cfg.InChannels)
		}
		dc.VarType = diffusion.VarLearnedRange
	case o.sigma == "" || o.sigma == "fixed-large":
		dc.VarType = diffusion.VarFixedLarge
	case o.sigma == "fixed-small":
		dc.VarType = diffusion.VarFixedSmall
	default:
		return nil, usagef("--sigma %q: want learned, fixed-small or fixed-large", o.sigma)
	}
	if cfg.LearnSigma() && dc.VarType != diffusion.VarLearnedRange {
		return nil, usagef("the model predicts its variance (out_channels = 2 x in_channels); use --sigma learned")
	}
	if eggClamp {
		c := diffusion.EGGLogVarianceClamp
		dc.LogVarianceClamp = &c
	}
	s, err := diffusion.New(dc)
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}
