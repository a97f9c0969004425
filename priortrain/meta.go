package priortrain

import (
	"encoding/json"
	"fmt"

	"egg/adm"
	"egg/diffusion"
	"egg/nn"
)

// Metadata keys of a prior model file (safetensors metadata, JSON values).
const (
	ConfigKey    = "egg.adm"       // the UNet: adm.Config
	DiffusionKey = "egg.diffusion" // the process it was trained for: Diffusion
	TrainingKey  = "egg.training"  // how it was trained: Provenance
)

// Diffusion describes the diffusion process a prior was trained for, under
// guided-diffusion's flag names.
type Diffusion struct {
	NoiseSchedule    string `json:"noise_schedule"`    // "linear" or "cosine"
	Steps            int    `json:"diffusion_steps"`   // steps of the process, T
	LearnSigma       bool   `json:"learn_sigma"`       // the model predicts its variance (learned range)
	PredictXStart    bool   `json:"predict_xstart"`    // the model predicts x0 (always false here: it predicts eps)
	RescaleTimesteps bool   `json:"rescale_timesteps"` // the model receives timesteps scaled to 0..1000
}

// Config returns the diffusion.Config of the full (not respaced) process.
func (d Diffusion) Config() diffusion.Config {
	c := diffusion.Config{BetaSchedule: d.NoiseSchedule, NumTimesteps: d.Steps, RescaleTimesteps: d.RescaleTimesteps,
		VarType: diffusion.VarFixedLarge}
	if d.LearnSigma {
		c.VarType = diffusion.VarLearnedRange
	}
	if d.PredictXStart {
		c.MeanType = diffusion.MeanStartX
	}
	return c
}

// Provenance records how a prior was trained.
type Provenance struct {
	Command        string   `json:"command"`          // "egg train-prior"
	Steps          int      `json:"steps"`            // optimiser steps
	BatchSize      int      `json:"batch_size"`       // images per step
	LR             float64  `json:"lr"`               // AdamW learning rate
	LRAnnealSteps  int      `json:"lr_anneal_steps"`  // 0: constant learning rate
	WeightDecay    float64  `json:"weight_decay"`     // AdamW's decoupled weight decay
	EMA            float64  `json:"ema"`              // EMA rate of the weights
	EMAWarmup      bool     `json:"ema_warmup"`       // the rate was capped at (1+k)/(10+k) at step k (in the last piece of a resumed run)
	Seed           uint64   `json:"seed"`             // random seed
	Flip           bool     `json:"flip"`             // random left-right flips
	Pool           string   `json:"pool"`             // the pool file's name as given
	PoolSHA256     string   `json:"pool_sha256"`      // hex SHA-256 of the pool file
	TrainImages    int      `json:"train_images"`     // images of the train tier
	Loss           float64  `json:"loss"`             // mean training loss over the last steps (hybrid)
	MSE            float64  `json:"mse"`              // its L_simple part
	VB             float64  `json:"vb"`               // its weighted L_vlb part
	ValidationLoss *float64 `json:"validation_loss"`  // loss of the EMA weights on the validation images, if any
	Seconds        float64  `json:"training_seconds"` // training wall-clock time, all resumed pieces included
	Threads        int      `json:"threads"`          // CPU threads of the last piece
}

// WriteModel writes the weights of unet to path (safetensors, atomically) with the
// metadata that makes the file a whole prior: ConfigKey, DiffusionKey and, when prov
// is not nil, TrainingKey.
func WriteModel(path string, unet *adm.UNet, d Diffusion, prov *Provenance) error {
	meta, err := Metadata(unet.Config, d, prov)
	if err != nil {
		return err
	}
	if err := nn.Save(path, unet, meta); err != nil {
		return fmt.Errorf("priortrain: %w", err)
	}
	return nil
}

// Metadata returns the metadata entries of a prior model file.
func Metadata(cfg adm.Config, d Diffusion, prov *Provenance) (map[string]string, error) {
	meta := map[string]string{}
	for key, v := range map[string]any{ConfigKey: cfg, DiffusionKey: d} {
		js, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("priortrain: %s: %w", key, err)
		}
		meta[key] = string(js)
	}
	if prov != nil {
		js, err := json.Marshal(prov)
		if err != nil {
			return nil, fmt.Errorf("priortrain: %s: %w", TrainingKey, err)
		}
		meta[TrainingKey] = string(js)
	}
	return meta, nil
}

// ReadMetadata returns the UNet configuration and the diffusion process recorded in
// a model file's metadata. cfg is nil when the file has no ConfigKey, d when it has
// no DiffusionKey; an entry that is present but unreadable is an error.
func ReadMetadata(meta map[string]string) (cfg *adm.Config, d *Diffusion, err error) {
	if js, ok := meta[ConfigKey]; ok {
		var c adm.Config
		if err := json.Unmarshal([]byte(js), &c); err != nil {
			return nil, nil, fmt.Errorf("priortrain: metadata %s: %w", ConfigKey, err)
		}
		if err := c.Validate(); err != nil {
			return nil, nil, fmt.Errorf("priortrain: metadata %s: %w", ConfigKey, err)
		}
		cfg = &c
	}
	if js, ok := meta[DiffusionKey]; ok {
		var v Diffusion
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return nil, nil, fmt.Errorf("priortrain: metadata %s: %w", DiffusionKey, err)
		}
		d = &v
	}
	return cfg, d, nil
}
