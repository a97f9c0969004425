package encoder

import (
	"encoding/json"
	"fmt"
	"slices"
)

// NNVision model functions that NNVisionConfig knows.
const (
	// NNVisionDataDriven is nnvision.models.models.se_core_shared_multihead_attention:
	// SE2dCore + the shared attention readout, elu_offset 0 by default.
	NNVisionDataDriven = "se_core_shared_multihead_attention"
	// NNVisionTaskDriven is nnvision.models.ptrmodels.task_core_gauss_readout:
	// TaskDrivenCore3 + MultipleFullGaussian2d.
	NNVisionTaskDriven = "task_core_gauss_readout"
)

// NNVisionConfig returns the Config of the model that nnvision's model function fn
// (NNVisionDataDriven or NNVisionTaskDriven) builds from modelConfig (its keyword
// arguments, as JSON) and dataInfo (nnfabrik's data_info: {session: {input_channels,
// input_dimensions [B, C, H, W], output_dimension}}, one session). Arguments missing
// from modelConfig take the model function's defaults.
func NNVisionConfig(fn string, modelConfig, dataInfo []byte) (Config, error) {
	var di map[string]struct {
		InputChannels   int   `json:"input_channels"`
		InputDimensions []int `json:"input_dimensions"`
		OutputDimension int   `json:"output_dimension"`
	}
	if err := json.Unmarshal(dataInfo, &di); err != nil {
		return Config{}, fmt.Errorf("encoder: data_info: %w", err)
	}
	if len(di) != 1 {
		return Config{}, fmt.Errorf("encoder: data_info has %d sessions; models of one session are implemented", len(di))
	}
	var mc map[string]json.RawMessage
	if err := json.Unmarshal(modelConfig, &mc); err != nil {
		return Config{}, fmt.Errorf("encoder: model_config: %w", err)
	}
	var cfg Config
	for session, s := range di {
		if len(s.InputDimensions) != 4 {
			return Config{}, fmt.Errorf("encoder: data_info %q: input_dimensions %v is not [B, C, H, W]", session, s.InputDimensions)
		}
		cfg = Config{
			Name:       fn,
			InputShape: slices.Clone(s.InputDimensions[1:]),
			Readout:    ReadoutConfig{Neurons: s.OutputDimension, Session: session},
			InputStd:   1,
		}
		if s.InputChannels != 0 && s.InputChannels != s.InputDimensions[1] {
			return Config{}, fmt.Errorf("encoder: data_info %q: input_channels %d but input_dimensions %v", session, s.InputChannels, s.InputDimensions)
		}
	}
	decode := func(v any) error {
		if err := json.Unmarshal(modelConfig, v); err != nil {
			return fmt.Errorf("encoder: model_config for %s: %w", fn, err)
		}
		return nil
	}
	if raw, ok := mc["elu_offset"]; ok {
		if err := json.Unmarshal(raw, &cfg.EluOffset); err != nil {
			return Config{}, fmt.Errorf("encoder: model_config elu_offset: %w", err)
		}
	}
	switch fn {
	case NNVisionDataDriven:
		se := SE2dConfig{Momentum: 0.9, InputRegularizer: "LaplaceL2norm"}
		at := AttentionConfig{}
		if err := decode(&se); err != nil {
			return Config{}, err
		}
		if err := decode(&at); err != nil {
			return Config{}, err
		}
		se.InputChannels = cfg.InputShape[0]
		if raw, ok := mc["readout_bias"]; ok {
			var b bool
			if err := json.Unmarshal(raw, &b); err != nil {
				return Config{}, fmt.Errorf("encoder: model_config readout_bias: %w", err)
			}
			at.Bias = &b
		}
		cfg.Core.SE2d, cfg.Readout.Attention = &se, &at
	case NNVisionTaskDriven:
		rn := ResNetConfig{Momentum: 0.1}
		ga := GaussianConfig{}
		if err := decode(&rn); err != nil {
			return Config{}, err
		}
		if err := decode(&ga); err != nil {
			return Config{}, err
		}
		if rn.InputChannels == 0 {
			rn.InputChannels = cfg.InputShape[0]
		}
		cfg.Core.ResNet, cfg.Readout.Gaussian = &rn, &ga
	default:
		return Config{}, fmt.Errorf("encoder: nnvision model function %q is not implemented (have %s, %s)", fn, NNVisionDataDriven, NNVisionTaskDriven)
	}
	return cfg, cfg.Validate()
}
