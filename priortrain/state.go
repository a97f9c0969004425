package priortrain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"

	"egg/checkpoint"
	"egg/internal/jsonfloat"
	"egg/optim"
	"egg/tensor"
)

// StateKey is the safetensors metadata key of a training checkpoint's state (JSON).
// The file's tensors are model.<name> (the raw weights), ema.<name> (the EMA
// weights) and optim.<k>.{exp_avg,exp_avg_sq} (AdamW's moments of the k-th
// parameter, in state_dict order).
const StateKey = "egg.train-prior"

// stateVersion changes when the checkpoint layout does.
const stateVersion = 1

// f64 is a float64 that survives JSON exactly (checkpoints restore bit for bit).
type f64 = jsonfloat.Exact

// settings are the options a resumed run must share with its checkpoint.
type settings struct {
	BatchSize     int    `json:"batch_size"`
	LR            f64    `json:"lr"`
	LRAnnealSteps int    `json:"lr_anneal_steps"`
	WeightDecay   f64    `json:"weight_decay"`
	EMA           f64    `json:"ema"`
	Seed          uint64 `json:"seed"`
	Flip          bool   `json:"flip"`
}

func settingsOf(o Options) settings {
	return settings{o.BatchSize, f64(o.LR), o.LRAnnealSteps, f64(o.WeightDecay), f64(o.EMA), o.Seed, o.Flip}
}

// diff lists the settings that differ, as "--name a (now b)".
func (s settings) diff(now settings) []string {
	var out []string
	a, b := reflect.ValueOf(s), reflect.ValueOf(now)
	for i := 0; i < a.NumField(); i++ {
		if a.Field(i).Interface() != b.Field(i).Interface() {
			name := strings.ReplaceAll(a.Type().Field(i).Tag.Get("json"), "_", "-")
			out = append(out, fmt.Sprintf("--%s %v (now %v)", name, a.Field(i).Interface(), b.Field(i).Interface()))
		}
	}
	return out
}

// savedWindow is a Window as it travels in checkpoints.
type savedWindow struct {
	Steps     int    `json:"steps"`
	Loss      f64    `json:"loss"`
	MSE       f64    `json:"mse"`
	VB        f64    `json:"vb"`
	Quartiles [4]f64 `json:"quartiles"`
}

func newSavedWindow(w Window) savedWindow {
	s := savedWindow{Steps: w.Steps, Loss: f64(w.Loss), MSE: f64(w.MSE), VB: f64(w.VB)}
	for q, v := range w.Quartiles {
		s.Quartiles[q] = f64(v)
	}
	return s
}

func (s savedWindow) export() Window {
	w := Window{Steps: s.Steps, Loss: float64(s.Loss), MSE: float64(s.MSE), VB: float64(s.VB)}
	for q, v := range s.Quartiles {
		w.Quartiles[q] = float64(v)
	}
	return w
}

// saved is the JSON state of a checkpoint.
type saved struct {
	Version    int             `json:"version"`
	Step       int             `json:"step"`
	Config     json.RawMessage `json:"config"`    // the adm.Config
	Diffusion  Diffusion       `json:"diffusion"` // the process
	Settings   settings        `json:"settings"`
	PoolSHA256 string          `json:"pool_sha256"`
	LR         []f64           `json:"lr"`    // the optimiser's group learning rates
	Steps      []int           `json:"steps"` // AdamW steps per parameter
	Seconds    f64             `json:"seconds"`
	Last       savedWindow     `json:"last"` // losses of the steps before the checkpoint
}

// save writes the checkpoint atomically.
func (t *trainer) save(path string, seconds float64) error {
	cfg, err := json.Marshal(t.cfg)
	if err != nil {
		return fmt.Errorf("priortrain: %w", err)
	}
	ost := t.opt.State()
	s := saved{Version: stateVersion, Step: t.step, Config: cfg, Diffusion: t.d, Settings: settingsOf(t.o),
		PoolSHA256: t.pool.SHA256, Seconds: f64(seconds), Last: newSavedWindow(t.last)}
	for _, lr := range ost.LR {
		s.LR = append(s.LR, f64(lr))
	}
	var ts []checkpoint.Tensor
	for i, e := range t.entries {
		ts = append(ts,
			checkpoint.Tensor{Name: "model." + e.Name, DType: "F32", Shape: e.T.Shape(), F32: e.T.Values()},
			checkpoint.Tensor{Name: "ema." + e.Name, DType: "F32", Shape: e.T.Shape(), F32: t.emaEntries[i].T.Values()})
	}
	for k, p := range ost.Params {
		s.Steps = append(s.Steps, p.Step)
		for _, b := range []struct {
			name string
			v    []float32
		}{{"exp_avg", p.ExpAvg}, {"exp_avg_sq", p.ExpAvgSq}, {"max_exp_avg_sq", p.MaxExpAvgSq}} {
			if b.v != nil {
				ts = append(ts, checkpoint.Tensor{Name: fmt.Sprintf("optim.%d.%s", k, b.name), DType: "F32", Shape: []int{len(b.v)}, F32: b.v})
			}
		}
	}
	js, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("priortrain: %w", err)
	}
	if err := checkpoint.WriteSafetensors(path, ts, map[string]string{StateKey: string(js)}); err != nil {
		return fmt.Errorf("priortrain: cannot write the checkpoint: %w", err)
	}
	return nil
}

// load restores the run from the checkpoint at path; it reports false when there is
// no file.
func (t *trainer) load(path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	r, err := checkpoint.Open(path)
	if err != nil {
		return false, fmt.Errorf("priortrain: %w", err)
	}
	defer r.Close()
	fail := func(format string, a ...any) (bool, error) {
		return false, fmt.Errorf("priortrain: checkpoint %s: "+format, append([]any{path}, a...)...)
	}
	js, ok := r.Metadata()[StateKey]
	if !ok {
		return fail("has no training state; is it a model file? Give --checkpoint a file that egg train-prior wrote, or start over without --resume")
	}
	var s saved
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		return fail("state: %v", err)
	}
	if s.Version != stateVersion {
		return fail("has layout version %d, this egg reads %d; start over without --resume", s.Version, stateVersion)
	}
	cfg, err := json.Marshal(t.cfg)
	if err != nil {
		return false, fmt.Errorf("priortrain: %w", err)
	}
	if string(cfg) != string(s.Config) {
		return fail("was written for another UNet (%s); resume with the same UNet flags, or start over without --resume", s.Config)
	}
	if s.Diffusion != t.d {
		return fail("was written for another process (%+v, now %+v); resume with the same --noise-schedule and --diffusion-steps, or start over without --resume", s.Diffusion, t.d)
	}
	if d := s.Settings.diff(settingsOf(t.o)); len(d) > 0 {
		return fail("was written with %s; resume with the same flags, or start over without --resume", strings.Join(d, ", "))
	}
	if s.PoolSHA256 != t.pool.SHA256 {
		return fail("was written for another pool (SHA-256 %s, %s has %s); resume with the same --pool, or start over without --resume",
			s.PoolSHA256, t.pool.Path, t.pool.SHA256)
	}
	read := func(name string, dst []float32) error {
		v, err := r.Float32(name)
		if err != nil {
			return err
		}
		if len(v) != len(dst) {
			return fmt.Errorf("tensor %s has %d values, want %d", name, len(v), len(dst))
		}
		copy(dst, v)
		return nil
	}
	readTensor := func(name string, t *tensor.Tensor) error {
		v := make([]float32, t.Len())
		if err := read(name, v); err != nil {
			return err
		}
		t.SetValues(v)
		return nil
	}
	for i, e := range t.entries {
		if err := readTensor("model."+e.Name, e.T); err != nil {
			return fail("%v", err)
		}
		if err := readTensor("ema."+e.Name, t.emaEntries[i].T); err != nil {
			return fail("%v", err)
		}
	}
	if len(s.Steps) != len(t.params) {
		return fail("has optimiser state for %d parameters, the model has %d", len(s.Steps), len(t.params))
	}
	ost := &optim.State{Kind: "adamw"}
	for _, lr := range s.LR {
		ost.LR = append(ost.LR, float64(lr))
	}
	for k, p := range t.params {
		ps := optim.ParamState{Step: s.Steps[k]}
		for _, b := range []struct {
			name string
			dst  *[]float32
		}{{"exp_avg", &ps.ExpAvg}, {"exp_avg_sq", &ps.ExpAvgSq}, {"max_exp_avg_sq", &ps.MaxExpAvgSq}} {
			name := fmt.Sprintf("optim.%d.%s", k, b.name)
			if _, ok := r.Info(name); ok {
				*b.dst = make([]float32, p.Len())
				if err := read(name, *b.dst); err != nil {
					return fail("%v", err)
				}
			}
		}
		ost.Params = append(ost.Params, ps)
	}
	if err := t.opt.LoadState(ost); err != nil {
		return fail("%v", err)
	}
	t.step, t.seconds, t.last = s.Step, float64(s.Seconds), s.Last.export()
	return true, nil
}
