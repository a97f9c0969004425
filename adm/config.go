// Package adm is OpenAI's ablated diffusion model (ADM) UNet, the image prior of EGG,
// as guided-diffusion's UNetModel (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs
// on Image Synthesis", with the improvements of Nichol & Dhariwal 2021).
//
// Parameters carry guided-diffusion's state_dict names, so its checkpoints load
// as they are. Shapes are [N, C, H, W]; timesteps are floats (the original timestep
// when rescale_timesteps is on).
package adm

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Config holds the keyword arguments of guided-diffusion's UNetModel, under the same
// JSON names, so a reference config file loads directly.
type Config struct {
	ImageSize            int     `json:"image_size"`
	InChannels           int     `json:"in_channels"`
	ModelChannels        int     `json:"model_channels"`
	OutChannels          int     `json:"out_channels"`
	NumResBlocks         int     `json:"num_res_blocks"`
	AttentionResolutions []int   `json:"attention_resolutions"` // downsampling factors (ds) that get attention
	Dropout              float64 `json:"dropout"`
	ChannelMult          []int   `json:"channel_mult"`
	ConvResample         *bool   `json:"conv_resample,omitempty"` // default true
	Dims                 int     `json:"dims,omitempty"`          // only 2 is supported
	NumClasses           *int    `json:"num_classes"`
	UseCheckpoint        bool    `json:"use_checkpoint"`
	UseFP16              bool    `json:"use_fp16"`
	NumHeads             int     `json:"num_heads"`
	NumHeadChannels      int     `json:"num_head_channels"`
	NumHeadsUpsample     int     `json:"num_heads_upsample"`
	UseScaleShiftNorm    bool    `json:"use_scale_shift_norm"`
	ResblockUpdown       bool    `json:"resblock_updown"`
	UseNewAttentionOrder bool    `json:"use_new_attention_order"`
}

// Validate checks the configuration and fills defaults (conv_resample, dims,
// num_heads_upsample), returning a one-line error for impossible settings.
func (c *Config) Validate() error {
	if c.ConvResample == nil {
		t := true
		c.ConvResample = &t
	}
	if c.Dims == 0 {
		c.Dims = 2
	}
	if c.NumHeadsUpsample == -1 || c.NumHeadsUpsample == 0 {
		c.NumHeadsUpsample = c.NumHeads
	}
	switch {
	case c.Dims != 2:
		return fmt.Errorf("adm: dims %d: only 2D UNets are supported", c.Dims)
	case c.ImageSize <= 0 || c.InChannels <= 0 || c.OutChannels <= 0 || c.ModelChannels <= 0:
		return fmt.Errorf("adm: image_size, in_channels, out_channels and model_channels must be positive (got %d, %d, %d, %d)",
			c.ImageSize, c.InChannels, c.OutChannels, c.ModelChannels)
	case len(c.ChannelMult) == 0:
		return fmt.Errorf("adm: channel_mult is empty")
	case c.NumHeadChannels == -1 && c.NumHeads <= 0:
		return fmt.Errorf("adm: set num_heads or num_head_channels")
	case c.NumHeadChannels == 0 || c.NumHeadChannels < -1:
		return fmt.Errorf("adm: num_head_channels %d: want -1 (use num_heads) or a positive channel count per head", c.NumHeadChannels)
	}
	for _, m := range c.ChannelMult {
		if ch := m * c.ModelChannels; ch%32 != 0 {
			return fmt.Errorf("adm: channel count %d (model_channels %d x mult %d) is not a multiple of 32, which GroupNorm(32) needs",
				ch, c.ModelChannels, m)
		}
	}
	return nil
}

// LearnSigma reports whether the model predicts its variance (out = 2 x in channels).
func (c *Config) LearnSigma() bool { return c.OutChannels == 2*c.InChannels }

// LoadConfig reads a JSON object of UNetModel keyword arguments, or an object that
// holds them under "guided_diffusion_unet_kwargs" (as egg's reference-vector configs do).
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("adm: %w", err)
	}
	var wrapped struct {
		Kwargs json.RawMessage `json:"guided_diffusion_unet_kwargs"`
	}
	if json.Unmarshal(b, &wrapped) == nil && len(wrapped.Kwargs) > 0 {
		b = wrapped.Kwargs
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("adm: %s: %w", path, err)
	}
	if c.ImageSize == 0 {
		return Config{}, fmt.Errorf("adm: %s has no image_size: is it a JSON object of UNetModel keyword arguments?", path)
	}
	return c, c.Validate()
}

func intp(v int) *int { return &v }

// uncond256 is the unconditional ImageNet 256x256 model that EGG uses.
func uncond256() Config {
	return Config{ImageSize: 256, InChannels: 3, ModelChannels: 256, OutChannels: 6, NumResBlocks: 2,
		AttentionResolutions: []int{8, 16, 32}, ChannelMult: []int{1, 1, 2, 2, 4, 4}, NumHeads: 4,
		NumHeadChannels: 64, NumHeadsUpsample: -1, UseScaleShiftNorm: true, ResblockUpdown: true}
}

// presets are the released guided-diffusion checkpoints' flags (README of
// openai/guided-diffusion), by checkpoint name.
var presets = map[string]func() Config{
	"256x256_diffusion_uncond": uncond256,
	"256x256_diffusion": func() Config {
		c := uncond256()
		c.NumClasses = intp(1000)
		return c
	},
	"128x128_diffusion": func() Config {
		return Config{ImageSize: 128, InChannels: 3, ModelChannels: 256, OutChannels: 6, NumResBlocks: 2,
			AttentionResolutions: []int{4, 8, 16}, ChannelMult: []int{1, 1, 2, 3, 4}, NumClasses: intp(1000),
			NumHeads: 4, NumHeadChannels: 64, NumHeadsUpsample: -1, UseScaleShiftNorm: true, ResblockUpdown: true}
	},
	"64x64_diffusion": func() Config {
		return Config{ImageSize: 64, InChannels: 3, ModelChannels: 192, OutChannels: 6, NumResBlocks: 3,
			AttentionResolutions: []int{2, 4, 8}, ChannelMult: []int{1, 2, 3, 4}, NumClasses: intp(1000),
			NumHeads: 4, NumHeadChannels: 64, NumHeadsUpsample: -1, UseScaleShiftNorm: true, ResblockUpdown: true,
			UseNewAttentionOrder: true}
	},
}

// Preset returns the flags of a released guided-diffusion checkpoint by name
// (see PresetNames).
func Preset(name string) (Config, error) {
	p, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("adm: unknown preset %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	c := p()
	return c, c.Validate()
}

// PresetNames lists the known presets.
func PresetNames() []string {
	var n []string
	for k := range presets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
