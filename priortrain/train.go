package priortrain

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"egg/adm"
	"egg/diffusion"
	"egg/nn"
	"egg/optim"
	"egg/tensor"
)

// Options configure Run. Defaults returns guided-diffusion's image_train.py values.
type Options struct {
	Steps         int     // train until this many optimiser steps in all (resumed ones included)
	BatchSize     int     // images per step
	LR            float64 // AdamW learning rate
	LRAnnealSteps int     // 0: constant learning rate; else LR (1 - step/LRAnnealSteps)
	WeightDecay   float64 // AdamW's decoupled weight decay
	EMA           float64 // rate of the exponential moving average of the weights, in [0, 1)
	// EMAWarmup caps the EMA rate of step k (0-based) at (1 + k) / (10 + k), so
	// that the initial weights fade from the average within the first thousands of
	// steps, as in TensorFlow's ExponentialMovingAverage with num_updates. Without it
	// (guided-diffusion's rule) the average still holds 0.999^k of the random initial
	// weights after k steps: a third after 1000 steps at rate 0.999. Like Steps, it
	// may differ when resuming, so a run started without it can turn it on.
	EMAWarmup bool
	Seed      uint64 // initial weights, image order, flips, timesteps and noise
	Flip      bool   // flip each image left-right with probability 1/2

	// Checkpoint is the file written (atomically) every CheckpointEvery steps (0:
	// only at the end), at the end, at the time limit and on interruption; "" writes
	// none.
	Checkpoint      string
	CheckpointEvery int
	// Resume continues from Checkpoint when that file exists. It must come from a run
	// with the same model, process, pool and options; Steps, CheckpointEvery,
	// TimeLimit and Validation may differ (a larger Steps extends a finished run).
	Resume bool
	// TimeLimit, when positive, ends the run cleanly (checkpoint included) after the
	// first step that ends this long after Run began.
	TimeLimit time.Duration
	// Validation is the number of validation-tier images whose loss the EMA weights
	// are scored on at every checkpoint (0: none).
	Validation int

	Logf     func(format string, args ...any) // one line per checkpoint; nil: quiet
	Progress func(p Progress)                 // after every step, and once before the first; may be nil
}

// Defaults returns guided-diffusion's training settings: batches of 16 (its
// per-GPU default is 1; 16 suits small priors on a CPU), learning rate 1e-4, no
// weight decay, EMA rate 0.9999, seed 0, flips on, a checkpoint every 1000 steps, 64
// validation images; Steps is 0 and must be set.
func Defaults() Options {
	return Options{BatchSize: 16, LR: 1e-4, EMA: 0.9999, Flip: true, CheckpointEvery: 1000, Validation: 64}
}

func (o Options) validate() error {
	switch {
	case o.Steps < 1 || o.BatchSize < 1:
		return fmt.Errorf("priortrain: steps %d and batch size %d must be positive", o.Steps, o.BatchSize)
	case !(o.LR > 0) || !(o.WeightDecay >= 0) || o.LRAnnealSteps < 0:
		return fmt.Errorf("priortrain: learning rate %v must be positive, weight decay %v and lr anneal steps %d not negative",
			o.LR, o.WeightDecay, o.LRAnnealSteps)
	case !(o.EMA >= 0 && o.EMA < 1):
		return fmt.Errorf("priortrain: EMA rate %v must be in [0, 1) (guided-diffusion uses 0.9999)", o.EMA)
	case o.CheckpointEvery < 0 || o.Validation < 0:
		return fmt.Errorf("priortrain: checkpoint interval %d and validation images %d must not be negative", o.CheckpointEvery, o.Validation)
	}
	return nil
}

// Window summarises the training losses over a run of steps: means over the steps'
// images, and the hybrid loss of the images whose timestep fell into each quarter of
// the process (guided-diffusion's loss_q0 ... loss_q3; NaN when none did).
type Window struct {
	Steps     int        // steps summarised
	Loss      float64    // hybrid loss
	MSE       float64    // its L_simple part
	VB        float64    // its weighted L_vlb part
	Quartiles [4]float64 // hybrid loss by quarter of the timesteps
}

// window accumulates a Window.
type window struct {
	steps, images        int
	loss, mse, vb        float64
	qsum                 [4]float64
	qn                   [4]int
	start                time.Time
	startStep, lastSteps int
}

func (w *window) add(perLoss, perMSE, perVB []float32, t []int, numTimesteps int) {
	w.steps++
	for k := range perLoss {
		w.images++
		w.loss += float64(perLoss[k])
		w.mse += float64(perMSE[k])
		if perVB != nil {
			w.vb += float64(perVB[k])
		}
		q := min(4*t[k]/numTimesteps, 3)
		w.qsum[q] += float64(perLoss[k])
		w.qn[q]++
	}
}

func (w *window) summary() Window {
	s := Window{Steps: w.steps}
	n := float64(max(w.images, 1))
	s.Loss, s.MSE, s.VB = w.loss/n, w.mse/n, w.vb/n
	for q := range s.Quartiles {
		s.Quartiles[q] = math.NaN()
		if w.qn[q] > 0 {
			s.Quartiles[q] = w.qsum[q] / float64(w.qn[q])
		}
	}
	return s
}

// Progress reports the state of a run after a step.
type Progress struct {
	Step, Steps int     // steps done (resumed ones included) and the target
	Last        Window  // the step just taken (Steps 0 before the first step)
	Recent      Window  // the steps since the last checkpoint (or the start of this piece)
	StepsPerSec float64 // steps per second since the start of this piece
}

// Result reports how a run went.
type Result struct {
	Model       *adm.UNet // the EMA weights: the trained prior
	Raw         *adm.UNet // the raw weights of the last step
	Step        int       // steps done, resumed ones included
	ResumedFrom int       // the step of the checkpoint resumed from (0: a fresh start)
	Finished    bool      // Step reached Options.Steps (else the time limit ended the run)
	Stopped     string    // why the run ended
	Last        Window    // the losses of the steps since the last checkpoint
	Validation  *float64  // the EMA weights' validation loss at the end (nil: not scored)
	Seconds     float64   // training time, resumed pieces included
	TrainImages int       // images of the train tier
}

// Provenance returns the record of how r was trained, for WriteModel.
func (r *Result) Provenance(pool *Pool, o Options, threads int) *Provenance {
	return &Provenance{Command: "egg train-prior", Steps: r.Step, BatchSize: o.BatchSize, LR: o.LR, LRAnnealSteps: o.LRAnnealSteps,
		WeightDecay: o.WeightDecay, EMA: o.EMA, EMAWarmup: o.EMAWarmup, Seed: o.Seed, Flip: o.Flip, Pool: pool.Path, PoolSHA256: pool.SHA256,
		TrainImages: r.TrainImages, Loss: r.Last.Loss, MSE: r.Last.MSE, VB: r.Last.VB, ValidationLoss: r.Validation,
		Seconds: r.Seconds, Threads: threads}
}

// PCG streams of a run: stream kind<<56 | index under the run's seed.
const (
	streamInit  = 1 << 56 // initial weights
	streamOrder = 2 << 56 // image order of epoch e
	streamStep  = 3 << 56 // flips, timesteps and noise of step k
	streamValid = 4 << 56 // timesteps and noise of the validation images
)

// trainer holds a run's moving parts.
type trainer struct {
	o          Options
	dev        *tensor.Device
	cfg        adm.Config
	d          Diffusion
	s          *diffusion.Schedule
	pool       *Pool
	train, val []int
	model, ema *adm.UNet
	entries    []nn.Entry // model's state_dict
	emaEntries []nn.Entry // ema's state_dict, in the same order
	params     []*tensor.Tensor
	opt        *optim.Adam
	step       int
	seconds    float64 // training time of earlier pieces
	perm       []int   // image order of epoch permEpoch
	permEpoch  int
	last       Window // the last checkpoint's window, for provenance after a resume
}

// NewUNet returns a UNet for cfg with the initial weights of a run with the given
// seed: PyTorch's default initialisation drawn from the seed, then ZeroInit.
func NewUNet(dev *tensor.Device, cfg adm.Config, seed uint64) (*adm.UNet, error) {
	u, err := adm.New(dev, cfg, rand.New(rand.NewPCG(seed, streamInit)))
	if err != nil {
		return nil, err
	}
	ZeroInit(u)
	return u, nil
}

// ZeroInit sets to zero the weights guided-diffusion creates with zero_module: the
// last convolution of every residual block (out_layers.3), the output projection of
// every attention block (proj_out) and the UNet's output convolution (out.2). Every
// block then starts as the identity and the UNet's output as zero.
func ZeroInit(u *adm.UNet) {
	zero := func(ts ...*tensor.Tensor) {
		for _, t := range ts {
			if t != nil {
				t.SetValues(make([]float32, t.Len()))
			}
		}
	}
	blocks := append([]adm.Block(nil), u.MiddleBlock...)
	for _, bs := range u.InputBlocks {
		blocks = append(blocks, bs...)
	}
	for _, bs := range u.OutputBlocks {
		blocks = append(blocks, bs...)
	}
	for _, b := range blocks {
		switch b := b.(type) {
		case *adm.ResBlock:
			zero(b.OutConv.Weight, b.OutConv.Bias)
		case *adm.AttentionBlock:
			zero(b.ProjOut.Weight, b.ProjOut.Bias)
		}
	}
	zero(u.OutConv.Weight, u.OutConv.Bias)
}

// CheckConfig reports whether a UNet of cfg can be trained on pool for process d:
// unconditional, epsilon-predicting, of the pool's image size and channels, with
// learned sigma exactly when d says so.
func CheckConfig(cfg adm.Config, d Diffusion, pool *Pool) error {
	switch {
	case cfg.NumClasses != nil:
		return fmt.Errorf("priortrain: the UNet is class-conditional (num_classes %d); a prior trained on a pool is unconditional", *cfg.NumClasses)
	case cfg.ImageSize != pool.Size:
		return fmt.Errorf("priortrain: the UNet takes %dx%d images, the pool %s holds %dx%d; choose a UNet of the pool's size",
			cfg.ImageSize, cfg.ImageSize, pool.Path, pool.Size, pool.Size)
	case cfg.InChannels != pool.C:
		return fmt.Errorf("priortrain: the UNet takes %d channels, the pool %s has %d; choose a UNet with in_channels %d",
			cfg.InChannels, pool.Path, pool.C, pool.C)
	case d.LearnSigma && !cfg.LearnSigma():
		return fmt.Errorf("priortrain: learn_sigma needs out_channels %d (2 x in_channels), the UNet has %d", 2*cfg.InChannels, cfg.OutChannels)
	case !d.LearnSigma && cfg.OutChannels != cfg.InChannels:
		return fmt.Errorf("priortrain: out_channels %d: want %d (epsilon) or %d (epsilon and variance)", cfg.OutChannels, cfg.InChannels, 2*cfg.InChannels)
	case d.PredictXStart:
		return fmt.Errorf("priortrain: training x0-predicting models is not supported; train an epsilon-predicting one")
	case cfg.Dropout != 0:
		return fmt.Errorf("priortrain: dropout %v is not supported (the UNet has no dropout layers); use 0", cfg.Dropout)
	}
	return nil
}

// Run trains a UNet of cfg on the train tier of pool for process d and returns the
// EMA and raw weights. It returns when Options.Steps steps are done, at the time
// limit (Result.Finished false), or when ctx is cancelled: then, after writing a
// checkpoint of the last finished step, with an error that wraps ctx.Err().
func Run(ctx context.Context, dev *tensor.Device, cfg adm.Config, d Diffusion, pool *Pool, o Options) (*Result, error) {
	t, err := newTrainer(dev, cfg, d, pool, o)
	if err != nil {
		return nil, err
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := &Result{Model: t.ema, Raw: t.model, TrainImages: len(t.train)}
	if o.Resume && o.Checkpoint != "" {
		ok, err := t.load(o.Checkpoint)
		if err != nil {
			return nil, err
		}
		if ok {
			res.ResumedFrom = t.step
			logf("resuming from %s at step %d", o.Checkpoint, t.step)
		} else {
			logf("no checkpoint at %s: starting at step 0", o.Checkpoint)
		}
	}
	nn.SetRequiresGrad(t.model, true)
	defer nn.SetRequiresGrad(t.model, false)

	start := time.Now()
	firstStep := t.step
	var win window
	report := func(last Window) {
		if o.Progress != nil {
			elapsed := time.Since(start).Seconds()
			rate := 0.0
			if elapsed > 0 {
				rate = float64(t.step-firstStep) / elapsed
			}
			o.Progress(Progress{Step: t.step, Steps: o.Steps, Last: last, Recent: win.summary(), StepsPerSec: rate})
		}
	}
	// checkpoint logs the losses since the last checkpoint, scores the validation
	// images (unless interrupted) and writes the checkpoint.
	checkpoint := func(interrupted bool) error {
		if win.steps > 0 {
			t.last = win.summary()
		}
		res.Last = t.last
		res.Validation = nil
		note := ""
		if len(t.val) > 0 && !interrupted {
			v := t.validate()
			res.Validation = &v
			note = fmt.Sprintf(", validation loss (EMA) %.5f", v)
		}
		rate := float64(t.step-firstStep) / max(time.Since(start).Seconds(), 1e-9)
		if win.steps > 0 {
			q := t.last.Quartiles
			logf("step %d/%d: loss %.5f (mse %.5f, vb %.5f; by quarter of t: %.4f %.4f %.4f %.4f)%s, %.2f steps/s",
				t.step, o.Steps, t.last.Loss, t.last.MSE, t.last.VB, q[0], q[1], q[2], q[3], note, rate)
		}
		win = window{}
		if o.Checkpoint == "" {
			return nil
		}
		return t.save(o.Checkpoint, t.seconds+time.Since(start).Seconds())
	}
	report(Window{})
	for t.step < o.Steps {
		if err := ctx.Err(); err != nil {
			where := "no checkpoint was written"
			if o.Checkpoint != "" {
				if cerr := checkpoint(true); cerr != nil {
					where = fmt.Sprintf("the checkpoint could not be written (%v)", cerr)
				} else {
					where = fmt.Sprintf("%s holds step %d: rerun with --resume to continue", o.Checkpoint, t.step)
				}
			}
			return nil, fmt.Errorf("priortrain: interrupted at step %d (%w); %s", t.step, err, where)
		}
		last, err := t.trainStep(&win)
		if err != nil {
			return nil, err
		}
		report(last)
		if o.CheckpointEvery > 0 && t.step%o.CheckpointEvery == 0 && t.step < o.Steps {
			if err := checkpoint(false); err != nil {
				return nil, err
			}
		}
		if o.TimeLimit > 0 && time.Since(start) >= o.TimeLimit && t.step < o.Steps {
			res.Stopped = fmt.Sprintf("reached the time limit of %v at step %d of %d", o.TimeLimit, t.step, o.Steps)
			break
		}
	}
	if err := checkpoint(false); err != nil {
		return nil, err
	}
	res.Step = t.step
	res.Seconds = t.seconds + time.Since(start).Seconds()
	res.Finished = t.step >= o.Steps
	if res.Finished {
		res.Stopped = fmt.Sprintf("trained %d steps", t.step)
	}
	return res, nil
}

// newTrainer checks the settings and builds a run at step 0.
func newTrainer(dev *tensor.Device, cfg adm.Config, d Diffusion, pool *Pool, o Options) (*trainer, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := CheckConfig(cfg, d, pool); err != nil {
		return nil, err
	}
	s, err := diffusion.New(d.Config())
	if err != nil {
		return nil, fmt.Errorf("priortrain: %w", err)
	}
	t := &trainer{o: o, dev: dev, cfg: cfg, d: d, s: s, pool: pool, train: pool.Indices(Train), val: pool.Indices(Validation), permEpoch: -1}
	if len(t.train) < o.BatchSize {
		return nil, fmt.Errorf("priortrain: the pool %s has %d train images, fewer than a batch of %d; use a smaller --batch-size or a larger pool",
			pool.Path, len(t.train), o.BatchSize)
	}
	if n := len(t.val); n > o.Validation {
		// Every (n/Validation)-th image, so that the scored images span the tier.
		val := make([]int, o.Validation)
		for j := range val {
			val[j] = t.val[j*n/o.Validation]
		}
		t.val = val
	}
	if t.model, err = NewUNet(dev, cfg, o.Seed); err != nil {
		return nil, err
	}
	if t.ema, err = adm.New(dev, cfg, nil); err != nil {
		return nil, err
	}
	t.entries, t.emaEntries = nn.StateDict(t.model), nn.StateDict(t.ema)
	for i, e := range t.entries {
		t.emaEntries[i].T.SetValues(e.T.Values())
		if !e.Buffer {
			t.params = append(t.params, e.T)
		}
	}
	t.opt = optim.NewAdamW([]optim.Group{{Params: t.params, LR: o.LR, WeightDecay: o.WeightDecay}}, optim.AdamConfig{})
	return t, nil
}

// batchIndices returns the pool indices of the images of step k: batch k mod B of
// epoch k div B, B = floor(train images / batch size).
func (t *trainer) batchIndices(k int) []int {
	bs := t.o.BatchSize
	per := len(t.train) / bs
	epoch, pos := k/per, k%per
	if epoch != t.permEpoch {
		t.perm = rand.New(rand.NewPCG(t.o.Seed, streamOrder|uint64(epoch))).Perm(len(t.train))
		t.permEpoch = epoch
	}
	idx := make([]int, bs)
	for j := range idx {
		idx[j] = t.train[t.perm[pos*bs+j]]
	}
	return idx
}

// images returns pool images idx scaled to [-1, 1], [len(idx), C, S, S], flipping
// left-right those with flip[j] set (flip may be nil).
func (t *trainer) images(idx []int, flip []bool) *tensor.Tensor {
	p := t.pool
	n, s := p.ImageLen(), p.Size
	xd := make([]float32, len(idx)*n)
	for j, i := range idx {
		img, dst := p.Image(i), xd[j*n:(j+1)*n]
		for r := 0; r < n; r += s {
			for c := 0; c < s; c++ {
				src := c
				if flip != nil && flip[j] {
					src = s - 1 - c
				}
				dst[r+c] = float32(img[r+src])/127.5 - 1
			}
		}
	}
	return tensor.FromSlice(t.dev, xd, len(idx), p.C, s, s)
}

// losses runs the model on x_t = QSample(x0, ts, noise) and returns the per-image
// hybrid loss, its MSE and weighted VB parts (VB nil for fixed variances).
func (t *trainer) losses(m *adm.UNet, x0 *tensor.Tensor, ts []int, noise *tensor.Tensor) (loss, mse, vb *tensor.Tensor) {
	xt := diffusion.QSample(t.s, x0, ts, noise)
	mt := make([]float32, len(ts))
	for j, i := range ts {
		mt[j] = t.s.ModelTimestep(i)
	}
	out := m.Forward(xt, mt, nil)
	l := diffusion.TrainingLosses(t.s, x0, xt, noise, out, ts)
	if l.VB == nil {
		return l.MSE, l.MSE, nil
	}
	// L_simple + 0.001 L_vlb with L_vlb = T E_t[L_t] (improved-diffusion's RESCALED_MSE).
	vb = tensor.Scale(l.VB, float32(float64(t.d.Steps)/1000))
	return tensor.Add(l.MSE, vb), l.MSE, vb
}

// trainStep takes optimiser step t.step + 1 and adds its losses to w.
func (t *trainer) trainStep(w *window) (Window, error) {
	k := t.step
	idx := t.batchIndices(k)
	rng := rand.New(rand.NewPCG(t.o.Seed, streamStep|uint64(k)))
	var flip []bool
	if t.o.Flip {
		flip = make([]bool, len(idx))
		for j := range flip {
			flip[j] = rng.IntN(2) == 1
		}
	}
	ts := make([]int, len(idx))
	for j := range ts {
		ts[j] = rng.IntN(t.s.NumTimesteps)
	}
	x0 := t.images(idx, flip)
	noise := tensor.Randn(t.dev, rng, x0.Shape()...)
	t.opt.ZeroGrad()
	loss, mse, vb := t.losses(t.model, x0, ts, noise)
	total := tensor.Mean(loss, false)
	if v := float64(total.Item()); math.IsNaN(v) || math.IsInf(v, 0) {
		return Window{}, fmt.Errorf("priortrain: the loss became %v at step %d; try a smaller --lr (the checkpoint %s holds the last good state)",
			v, k+1, t.o.Checkpoint)
	}
	total.Backward()
	if t.o.LRAnnealSteps > 0 {
		t.opt.ParamGroups()[0].LR = t.o.LR * (1 - float64(k)/float64(t.o.LRAnnealSteps))
		if t.opt.ParamGroups()[0].LR < 0 {
			t.opt.ParamGroups()[0].LR = 0
		}
	}
	t.opt.Step()
	t.updateEMA()
	t.step++
	var vbs []float32
	if vb != nil {
		vbs = vb.Values()
	}
	ls, ms := loss.Values(), mse.Values()
	var one window
	one.add(ls, ms, vbs, ts, t.s.NumTimesteps)
	w.add(ls, ms, vbs, ts, t.s.NumTimesteps)
	return one.summary(), nil
}

// updateEMA sets ema = rate ema + (1 - rate) w for every parameter (guided-diffusion's
// update_ema), with the rate capped at (1 + k) / (10 + k) at step k under EMAWarmup.
func (t *trainer) updateEMA() {
	r := t.o.EMA
	if t.o.EMAWarmup {
		r = min(r, float64(1+t.step)/float64(10+t.step))
	}
	rate := float32(r)
	one := float32(1 - r)
	// In place on the host, with no op between taking the slices and the writes: no
	// copy on the CPU. (The optimiser has just updated the weights on the host too.)
	for i, e := range t.entries {
		dst, src := t.emaEntries[i].T.Data(), e.T.Data()
		for j, v := range src {
			dst[j] = dst[j]*rate + v*one
		}
	}
}

// validate returns the mean hybrid loss of the EMA weights on the validation
// images (scoreLoss).
func (t *trainer) validate() float64 { return t.scoreLoss(t.ema, t.val) }

// scoreLoss returns the mean hybrid loss of model m on pool images idx, unflipped,
// at timesteps spread evenly over the process and with noise fixed by the seed, so
// that scores of different weights compare.
func (t *trainer) scoreLoss(m *adm.UNet, idx []int) float64 {
	rng := rand.New(rand.NewPCG(t.o.Seed, streamValid))
	n := len(idx)
	ts := make([]int, n)
	for j := range ts {
		ts[j] = (2*j + 1) * t.s.NumTimesteps / (2 * n)
	}
	noise := tensor.Randn(t.dev, rng, n, t.pool.C, t.pool.Size, t.pool.Size).Values()
	per := t.pool.ImageLen()
	sum := 0.0
	bs := t.o.BatchSize
	for lo := 0; lo < n; lo += bs {
		hi := min(lo+bs, n)
		x0 := t.images(idx[lo:hi], nil)
		nz := tensor.FromSlice(t.dev, noise[lo*per:hi*per], x0.Shape()...)
		loss, _, _ := t.losses(m, x0, ts[lo:hi], nz)
		for _, v := range loss.Values() {
			sum += float64(v)
		}
	}
	return sum / float64(n)
}
