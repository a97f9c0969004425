package optim

import (
	"fmt"
	"math"
)

// PlateauMode says whether ReduceLROnPlateau watches a metric that should go down
// (a loss) or up (a correlation).
type PlateauMode int

const (
	// Minimize reduces the learning rate when the metric stops decreasing.
	Minimize PlateauMode = iota
	// Maximize reduces the learning rate when the metric stops increasing.
	Maximize
)

// PlateauConfig holds the settings of ReduceLROnPlateau, under PyTorch's names.
// DefaultPlateau returns PyTorch's defaults.
type PlateauConfig struct {
	Mode      PlateauMode
	Factor    float64 // new LR = LR * Factor, in [0, 1)
	Patience  int     // bad epochs tolerated before reducing
	Threshold float64 // minimal improvement that counts
	// AbsThreshold measures improvement as best -/+ Threshold; otherwise (PyTorch's
	// default "rel") as best * (1 -/+ Threshold).
	AbsThreshold bool
	Cooldown     int     // epochs after a reduction during which bad epochs are not counted
	MinLR        float64 // lower bound on every group's LR
	Eps          float64 // reductions smaller than this are skipped
}

// DefaultPlateau returns PyTorch's defaults: minimise, factor 0.1, patience 10,
// relative threshold 1e-4, no cooldown, no minimal LR, eps 1e-8.
func DefaultPlateau() PlateauConfig {
	return PlateauConfig{Mode: Minimize, Factor: 0.1, Patience: 10, Threshold: 1e-4, Eps: 1e-8}
}

// ReduceLROnPlateau lowers the learning rate of every group of an optimiser by a
// factor when a metric has not improved for Patience epochs, as
// torch.optim.lr_scheduler.ReduceLROnPlateau.
type ReduceLROnPlateau struct {
	opt Optimizer
	cfg PlateauConfig
	st  PlateauState
}

// PlateauState is the resumable state of a ReduceLROnPlateau, under PyTorch's names.
type PlateauState struct {
	Best            float64 // best metric so far (+Inf or -Inf before the first)
	NumBadEpochs    int
	CooldownCounter int
	LastEpoch       int
}

// NewReduceLROnPlateau returns the schedule for opt. It panics when Factor is not in
// [0, 1) or the mode is unknown.
func NewReduceLROnPlateau(opt Optimizer, cfg PlateauConfig) *ReduceLROnPlateau {
	if !(cfg.Factor >= 0 && cfg.Factor < 1) || (cfg.Mode != Minimize && cfg.Mode != Maximize) {
		panic(fmt.Sprintf("optim: invalid ReduceLROnPlateau settings %+v (factor must be in [0, 1))", cfg))
	}
	r := &ReduceLROnPlateau{opt: opt, cfg: cfg}
	r.st.Best = r.worst()
	return r
}

// worst is the initial best value of the mode.
func (r *ReduceLROnPlateau) worst() float64 {
	if r.cfg.Mode == Minimize {
		return math.Inf(1)
	}
	return math.Inf(-1)
}

// better reports whether a improves on best by more than the threshold.
func (r *ReduceLROnPlateau) better(a, best float64) bool {
	t := r.cfg.Threshold
	switch {
	case r.cfg.Mode == Minimize && !r.cfg.AbsThreshold:
		return a < best*(1-t)
	case r.cfg.Mode == Minimize:
		return a < best-t
	case !r.cfg.AbsThreshold:
		return a > best*(t+1)
	}
	return a > best+t
}

// Step records the metric of one epoch and reduces the learning rates when it has
// not improved for more than Patience epochs (outside a cooldown). It reports
// whether some group's learning rate was reduced. A NaN metric is a bad epoch.
func (r *ReduceLROnPlateau) Step(metric float64) (reduced bool) {
	s := &r.st
	s.LastEpoch++
	if r.better(metric, s.Best) {
		s.Best = metric
		s.NumBadEpochs = 0
	} else {
		s.NumBadEpochs++
	}
	if s.CooldownCounter > 0 {
		s.CooldownCounter--
		s.NumBadEpochs = 0 // bad epochs in cooldown do not count
	}
	if s.NumBadEpochs > r.cfg.Patience {
		for _, g := range r.opt.ParamGroups() {
			old := g.LR
			lr := math.Max(old*r.cfg.Factor, r.cfg.MinLR)
			if old-lr > r.cfg.Eps {
				g.LR = lr
				reduced = true
			}
		}
		s.CooldownCounter = r.cfg.Cooldown
		s.NumBadEpochs = 0
	}
	return reduced
}

// LR returns the current learning rate of every group.
func (r *ReduceLROnPlateau) LR() []float64 {
	var lrs []float64
	for _, g := range r.opt.ParamGroups() {
		lrs = append(lrs, g.LR)
	}
	return lrs
}

// State returns the schedule's counters (the learning rates live in the optimiser's
// state).
func (r *ReduceLROnPlateau) State() PlateauState { return r.st }

// LoadState restores counters saved by State.
func (r *ReduceLROnPlateau) LoadState(s PlateauState) { r.st = s }
