package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"reflect"
	"strings"

	"egg/checkpoint"
	"egg/dataset"
	"egg/encoder"
	"egg/internal/jsonfloat"
	"egg/optim"
	"egg/tensor"
)

// StateKey is the safetensors metadata key of a training checkpoint's state (JSON).
// The file's tensors are model.<name> (the weights after the last epoch),
// best.<name> (the best weights so far) and optim.<k>.{exp_avg,exp_avg_sq,
// max_exp_avg_sq} (AdamW's moments of the k-th trained parameter).
const StateKey = "egg.train"

// stateVersion changes when the checkpoint layout does.
const stateVersion = 1

// f64 is a float64 that survives JSON exactly (checkpoints restore bit for bit).
type f64 = jsonfloat.Exact

// epoch is Epoch as it travels in checkpoints.
type epoch struct {
	Epoch       int  `json:"epoch"`
	Loss        f64  `json:"loss"`
	Regularizer f64  `json:"regularizer"`
	Correlation f64  `json:"correlation"`
	LR          f64  `json:"lr"`
	Best        bool `json:"best"`
	Seconds     f64  `json:"seconds"`
}

func newEpoch(e Epoch) epoch {
	return epoch{e.Epoch, f64(e.Loss), f64(e.Regularizer), f64(e.Correlation), f64(e.LR), e.Best, f64(e.Seconds)}
}

func (e epoch) export() Epoch {
	return Epoch{e.Epoch, float64(e.Loss), float64(e.Regularizer), float64(e.Correlation), float64(e.LR), e.Best, float64(e.Seconds)}
}

// settings are the options a resumed run must share with the checkpoint's.
type settings struct {
	BatchSize    int    `json:"batch_size"`
	LR           f64    `json:"lr"`
	WeightDecay  f64    `json:"weight_decay"`
	Seed         uint64 `json:"seed"`
	Patience     int    `json:"patience"`
	LRDecaySteps int    `json:"lr_decay_steps"`
	Tolerance    f64    `json:"tolerance"`
	LRFactor     f64    `json:"lr_factor"`
	LRPatience   int    `json:"lr_patience"`
	MinLR        f64    `json:"min_lr"`
}

func settingsOf(o Options) settings {
	return settings{o.BatchSize, f64(o.LR), f64(o.WeightDecay), o.Seed, o.Patience, o.LRDecaySteps,
		f64(o.Tolerance), f64(o.LRFactor), o.LRPatience, f64(o.MinLR)}
}

// diff lists the settings that differ, as "name a (now b)".
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

// saved is the JSON state of a checkpoint.
type saved struct {
	Version  int             `json:"version"`
	Config   json.RawMessage `json:"config"`   // the model's encoder.Config
	Settings settings        `json:"settings"` // options that must match
	Data     string          `json:"data"`     // fingerprint of the data set
	Progress progress        `json:"progress"`
	LR       []f64           `json:"lr"`      // the optimiser's group learning rates
	Steps    []int           `json:"steps"`   // AdamW steps per trained parameter
	Plateau  plateau         `json:"plateau"` // ReduceLROnPlateau's counters
	Shuffle  []byte          `json:"shuffle"` // the PCG of the image order
	Noise    [][]byte        `json:"noise"`   // the PCGs of the readouts' training noise
}

type plateau struct {
	Best            f64 `json:"best"`
	NumBadEpochs    int `json:"num_bad_epochs"`
	CooldownCounter int `json:"cooldown_counter"`
	LastEpoch       int `json:"last_epoch"`
}

// fingerprint hashes what a data set holds (CRC-32C of its sizes, pixels,
// responses, tiers, image ids and mask), to recognise it when resuming.
func fingerprint(d *dataset.Dataset) string {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	buf := make([]byte, 0, 1<<16)
	flush := func(h hash.Hash32) {
		h.Write(buf)
		buf = buf[:0]
	}
	put := func(v uint64) {
		buf = binary.LittleEndian.AppendUint64(buf, v)
		if len(buf) >= cap(buf)-8 {
			flush(h)
		}
	}
	put32 := func(v float32) {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) >= cap(buf)-8 {
			flush(h)
		}
	}
	for _, v := range []int{d.N, d.C, d.H, d.W, d.Neurons} {
		put(uint64(v))
	}
	for _, v := range d.Images {
		put32(v)
	}
	for _, v := range d.Responses {
		put32(v)
	}
	for _, s := range d.Tiers {
		buf = append(buf, s...)
		put(0)
	}
	for _, v := range d.ImageIDs {
		put(uint64(v))
	}
	for _, v := range d.Mask {
		if v {
			put(1)
		} else {
			put(0)
		}
	}
	flush(h)
	return fmt.Sprintf("crc32c:%08x:%d", h.Sum32(), d.N)
}

// fingerprint returns the data set's fingerprint, computed once per run.
func (t *trainer) fingerprint() string {
	if t.fp == "" {
		t.fp = fingerprint(t.d)
	}
	return t.fp
}

// save writes the checkpoint atomically.
func (t *trainer) save(path string) error {
	cfg, err := json.Marshal(t.cfg)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	ost := t.opt.State()
	ps := t.sched.State()
	s := saved{Version: stateVersion, Config: cfg, Settings: settingsOf(t.o), Data: t.fingerprint(),
		Progress: t.st, Plateau: plateau{f64(ps.Best), ps.NumBadEpochs, ps.CooldownCounter, ps.LastEpoch}}
	for _, lr := range ost.LR {
		s.LR = append(s.LR, f64(lr))
	}
	var ts []checkpoint.Tensor
	for i, e := range t.entries {
		ts = append(ts,
			checkpoint.Tensor{Name: "model." + e.Name, DType: "F32", Shape: e.T.Shape(), F32: e.T.Values()},
			checkpoint.Tensor{Name: "best." + e.Name, DType: "F32", Shape: e.T.Shape(), F32: t.best[i]})
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
	if s.Shuffle, err = t.shuffle.MarshalBinary(); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	for _, p := range t.noise {
		b, err := p.MarshalBinary()
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		s.Noise = append(s.Noise, b)
	}
	js, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := checkpoint.WriteSafetensors(path, ts, map[string]string{StateKey: string(js)}); err != nil {
		return fmt.Errorf("train: cannot write the checkpoint: %w", err)
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
		return false, fmt.Errorf("train: %w", err)
	}
	defer r.Close()
	fail := func(format string, a ...any) (bool, error) {
		return false, fmt.Errorf("train: checkpoint %s: "+format, append([]any{path}, a...)...)
	}
	js, ok := r.Metadata()[StateKey]
	if !ok {
		return fail("has no training state; is it a model file? Give --checkpoint a file that egg train wrote, or start over without --resume")
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
		return false, fmt.Errorf("train: %w", err)
	}
	if d := s.Settings.diff(settingsOf(t.o)); len(d) > 0 {
		return fail("was written with %s; resume with the same flags, or start over without --resume", strings.Join(d, ", "))
	}
	if fp := t.fingerprint(); fp != s.Data {
		return fail("was written for other data (%s, now %s); resume with the same --data, or start over without --resume", s.Data, fp)
	}
	if string(cfg) != string(s.Config) {
		return fail("was written for another architecture or size (%s); resume with the same --arch and size flags, or start over without --resume", archOf(s.Config))
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
	t.best = make([][]float32, len(t.entries))
	for i, e := range t.entries {
		t.best[i] = make([]float32, e.T.Len())
		if err := readTensor("model."+e.Name, e.T); err != nil {
			return fail("%v", err)
		}
		if err := read("best."+e.Name, t.best[i]); err != nil {
			return fail("%v", err)
		}
	}
	if len(s.Steps) != len(t.params) {
		return fail("has optimiser state for %d parameters, the model trains %d", len(s.Steps), len(t.params))
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
	t.sched.LoadState(optim.PlateauState{Best: float64(s.Plateau.Best), NumBadEpochs: s.Plateau.NumBadEpochs,
		CooldownCounter: s.Plateau.CooldownCounter, LastEpoch: s.Plateau.LastEpoch})
	if err := t.shuffle.UnmarshalBinary(s.Shuffle); err != nil {
		return fail("shuffle state: %v", err)
	}
	if len(s.Noise) != len(t.noise) {
		return fail("has %d noise generators, the model has %d", len(s.Noise), len(t.noise))
	}
	for i, b := range s.Noise {
		if err := t.noise[i].UnmarshalBinary(b); err != nil {
			return fail("noise state: %v", err)
		}
	}
	t.st = s.Progress
	return true, nil
}

// archOf summarises a saved Config for messages.
func archOf(js []byte) string {
	var c encoder.Config
	if err := json.Unmarshal(js, &c); err != nil {
		return "unreadable config"
	}
	if c.Name != "" {
		return c.Name
	}
	return c.Arch()
}
