package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"egg/adm"
	"egg/checkpoint"
	"egg/diffusion"
	"egg/mei"
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
	clipX0        string // "auto", "on" or "off" ("" is auto)
	// flags is the flag set addFlags filled (nil when the options are made in
	// code): it says which flags were given, so that a prior file's process fills
	// only the ones that were not.
	flags *pflag.FlagSet
}

// hash returns the provenance entry of the prior's weights file: its path and
// SHA-256 (an unreadable file is an error: a record must not lose its prior).
func (o *priorOptions) hash() ([]mei.FileHash, error) {
	h, err := checkpoint.FileSHA256(o.weights)
	if err != nil {
		return nil, fmt.Errorf("hashing the prior %s: %w", o.weights, err)
	}
	return []mei.FileHash{{Path: o.weights, SHA256: h}}, nil
}

// given reports whether the flag name was on the command line.
func (o *priorOptions) given(name string) bool { return o.flags != nil && o.flags.Changed(name) }

func (o *priorOptions) addFlags(f *pflag.FlagSet, defaultSteps string) {
	o.flags = f
	f.StringVar(&o.weights, "weights", "", "diffusion checkpoint (.safetensors or PyTorch .pt state_dict; default: egg's built-in prior)")
	f.StringVar(&o.preset, "preset", "", "UNet flags of a released guided-diffusion checkpoint: "+fmt.Sprint(adm.PresetNames()))
	f.StringVar(&o.configFile, "config", "", "JSON file of guided-diffusion UNetModel keyword arguments (instead of --preset)")
	f.StringVar(&o.steps, "steps", defaultSteps, `timestep respacing: "N", "ddimN" or "a,b,c"`)
	f.StringVar(&o.noiseSchedule, "noise-schedule", "linear", "beta schedule of the trained process: linear or cosine")
	f.IntVar(&o.diffSteps, "diffusion-steps", 1000, "steps of the trained diffusion process")
	f.StringVar(&o.sigma, "sigma", "", "variance: learned (default when out_channels = 2 x in_channels), fixed-small or fixed-large")
	f.BoolVar(&o.predictX0, "predict-xstart", false, "the model predicts x0 instead of epsilon")
	f.StringVar(&o.clipX0, "clip-x0", "auto", "clip the x0 prediction to [-1, 1] at every step: on, off, or auto (on when the first step is ill-conditioned, as with the cosine schedule)")
}

// illConditioned is the factor sqrt(1/abar - 1) at the first sampling step above
// which --clip-x0 auto clips: the cosine schedule's is about 20000 (abar = 2.4e-9 at
// the last of 1000 steps), the linear schedule's 158.
const illConditioned = 1000

// loadPrior is load, as the prior that sampling uses: the UNet, its process, and
// whether the x0 prediction is clipped to [-1, 1] at every step (guided-diffusion's
// clip_denoised, done by the sampler) as --clip-x0 says. The default, auto, clips
// when the process makes the first x0 prediction ill-conditioned (illConditioned),
// as the cosine schedule does: there the unclipped x0 prediction of the first step
// is the model's noise error times about 20000, and without clipping the chain
// diverges (the samples come out black and white). egg's own priors use the cosine
// schedule; the paper's 256x256 prior is linear, and EGG's reference does not clip,
// so auto leaves it alone.
func (o *priorOptions) loadPrior(dev *tensor.Device, eggClamp bool) (*mei.Prior, *adm.UNet, error) {
	switch o.clipX0 {
	case "", "auto", "on", "off":
	default:
		return nil, nil, usagef("--clip-x0 %q: want auto, on or off", o.clipX0)
	}
	unet, s, err := o.load(dev, eggClamp)
	if err != nil {
		return nil, nil, err
	}
	var clip bool
	switch o.clipX0 {
	case "on":
		clip = true
	case "", "auto":
		clip = s.SqrtRecipm1AlphasCumprod[s.NumTimesteps-1] > illConditioned
	}
	if clip && s.MeanType != diffusion.MeanEpsilon && s.MeanType != diffusion.MeanStartX {
		return nil, nil, usagef("--clip-x0 needs a model that predicts epsilon or x0 (this one predicts %v); use --clip-x0 off", s.MeanType)
	}
	p := &mei.Prior{Denoiser: unet, Schedule: s, Channels: unet.Config.InChannels, Size: unet.Config.ImageSize, Name: o.weights, ClipX0: clip}
	return p, unet, nil
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
		po.applyFileProcess(md)
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

// applyFileProcess gives the flags not given (--noise-schedule, --diffusion-steps,
// --predict-xstart) the values of the process a prior file records (egg.diffusion);
// md may be nil. A flag given wins, also when it names the default value.
func (o *priorOptions) applyFileProcess(md *priortrain.Diffusion) {
	if md == nil {
		return
	}
	if !o.given("noise-schedule") && md.NoiseSchedule != "" {
		o.noiseSchedule = md.NoiseSchedule
	}
	if !o.given("diffusion-steps") && md.Steps != 0 {
		o.diffSteps = md.Steps
	}
	if !o.given("predict-xstart") {
		o.predictX0 = o.predictX0 || md.PredictXStart
	}
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
