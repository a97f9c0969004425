package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"egg/dataset"
	"egg/encoder"
	"egg/nn"
	"egg/optim"
	"egg/tensor"
)

// Options configure Run. Defaults returns the paper's values (nnvision_trainer's
// defaults).
type Options struct {
	Epochs       int     // at most this many epochs (nnvision's max_iter)
	BatchSize    int     // training images per step
	LR           float64 // initial learning rate
	WeightDecay  float64 // AdamW's decoupled weight decay (0: Adam)
	Seed         uint64  // order of the training images and the readouts' training noise
	Patience     int     // epochs without improvement that end a round of early stopping
	LRDecaySteps int     // rounds of early stopping; the best weights are restored after each
	Tolerance    float64 // smallest improvement of the validation correlation that counts
	LRFactor     float64 // ReduceLROnPlateau's factor
	LRPatience   int     // ReduceLROnPlateau's patience
	MinLR        float64 // ReduceLROnPlateau's lower bound

	// Checkpoint is the file written (atomically) after every epoch; "" writes none.
	Checkpoint string
	// Resume continues from Checkpoint when that file exists (it must come from a run
	// with the same model, data and options, Epochs aside: a run that ended at its
	// epoch limit goes on to the new limit as if it had never stopped).
	Resume bool

	Logf       func(format string, args ...any) // receives one line per epoch; nil: quiet
	Progress   func(epoch, batch, batches int)  // called before an epoch's first step (batch 0) and after each; may be nil
	AfterEpoch func(e Epoch) error              // called after each epoch's checkpoint; an error stops Run and is returned
}

// Defaults returns the paper's training settings: at most 200 epochs of batches of
// 64, learning rate 0.005, no weight decay, seed 0, early stopping with patience 5
// and 3 rounds, tolerance 1e-4, ReduceLROnPlateau factor 0.3, patience 5, min lr 1e-4.
func Defaults() Options {
	return Options{Epochs: 200, BatchSize: 64, LR: 0.005, Patience: 5, LRDecaySteps: 3, Tolerance: 1e-4,
		LRFactor: 0.3, LRPatience: 5, MinLR: 1e-4}
}

func (o Options) validate() error {
	switch {
	case o.Epochs < 1 || o.BatchSize < 1:
		return fmt.Errorf("train: epochs %d and batch size %d must be positive", o.Epochs, o.BatchSize)
	case !(o.LR > 0) || o.WeightDecay < 0 || o.MinLR < 0:
		return fmt.Errorf("train: learning rate %v must be positive, weight decay %v and min lr %v not negative", o.LR, o.WeightDecay, o.MinLR)
	case o.Patience < 1 || o.LRDecaySteps < 1 || o.LRPatience < 0:
		return fmt.Errorf("train: patience %d and lr decay steps %d must be positive, lr patience %d not negative", o.Patience, o.LRDecaySteps, o.LRPatience)
	case !(o.LRFactor >= 0 && o.LRFactor < 1):
		return fmt.Errorf("train: lr factor %v must be in [0, 1)", o.LRFactor)
	case o.Tolerance < 0:
		return fmt.Errorf("train: tolerance %v must not be negative", o.Tolerance)
	}
	return nil
}

// Epoch summarises one epoch of training.
type Epoch struct {
	Epoch       int     // 1, 2, ...
	Loss        float64 // mean Poisson loss per training trial (unscaled, without regularisers)
	Regularizer float64 // mean regulariser value over the epoch's steps
	Correlation float64 // mean single-trial validation correlation after the epoch
	LR          float64 // learning rate of the epoch
	Best        bool    // the epoch improved the best validation correlation
	Seconds     float64 // wall-clock time of the epoch
}

// Result reports how training went.
type Result struct {
	Epochs          int     // epochs trained, resumed ones included
	BestEpoch       int     // the epoch whose weights the model holds (0: the initial ones)
	BestCorrelation float64 // the validation correlation of those weights
	Initial         float64 // the validation correlation before training
	History         []Epoch // every epoch
	Stopped         string  // why training ended
	ResumedFrom     int     // the epoch of the checkpoint resumed from (0: a fresh start)
}

// progress is the early-stopping state of a run; it travels in checkpoints.
type progress struct {
	Epoch     int     `json:"epoch"`      // epochs done
	Round     int     `json:"round"`      // early-stopping rounds done
	Counter   int     `json:"counter"`    // epochs without improvement in this round
	Best      f64     `json:"best"`       // best validation correlation
	BestEpoch int     `json:"best_epoch"` // its epoch
	Initial   f64     `json:"initial"`    // validation correlation before training
	Finished  bool    `json:"finished"`   // ended by early stopping or a non-finite loss
	Stopped   string  `json:"stopped"`
	History   []epoch `json:"history"`
}

// trainer holds a run's moving parts.
type trainer struct {
	m          encoder.Model
	d          *dataset.Dataset
	o          Options
	cfg        encoder.Config
	dev        *tensor.Device
	train, val []int
	params     []*tensor.Tensor
	entries    []nn.Entry
	best       [][]float32 // snapshot of entries' data at the best epoch
	opt        *optim.Adam
	sched      *optim.ReduceLROnPlateau
	shuffle    *rand.PCG
	rng        *rand.Rand
	noise      []*rand.PCG
	st         progress
	fp         string // the data set's fingerprint, once computed
}

// Run trains m on the train tier of d, stopping early on the validation tier, and
// leaves m holding the best weights, in evaluation mode. m's Config must come from
// ForData(…, d) (so that its inputs are d's pixels z-scored with the train tier's
// statistics). It returns when training ends, when ctx is cancelled (the error then
// wraps ctx.Err(); the last checkpoint holds the last finished epoch), or when
// AfterEpoch fails.
func Run(ctx context.Context, m encoder.Model, d *dataset.Dataset, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := CheckData(m, d); err != nil {
		return nil, err
	}
	t := &trainer{m: m, d: d, o: o, cfg: m.Config(), dev: device(m),
		train: d.Indices(dataset.Train), val: d.Indices(dataset.Validation)}
	if len(t.train) == 0 {
		return nil, fmt.Errorf("train: %s has no train trials; mark some with tier \"train\"", d.Source)
	}
	if len(t.val) == 0 {
		return nil, fmt.Errorf("train: %s has no validation trials, which early stopping needs; mark some with tier \"validation\" (or drop the tiers array to get a random split)", d.Source)
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	t.entries = nn.StateDict(m)
	t.params = encoder.Trainable(m)
	if len(t.params) == 0 {
		return nil, fmt.Errorf("train: the model has no trainable parameters")
	}
	t.opt = optim.NewAdamW([]optim.Group{{Params: t.params, LR: o.LR, WeightDecay: o.WeightDecay}}, optim.AdamConfig{})
	t.sched = optim.NewReduceLROnPlateau(t.opt, optim.PlateauConfig{Mode: optim.Maximize, Factor: o.LRFactor,
		Patience: o.LRPatience, Threshold: o.Tolerance, AbsThreshold: true, MinLR: o.MinLR, Eps: 1e-8})
	t.shuffle = rand.NewPCG(o.Seed, math.MaxUint64)
	t.rng = rand.New(t.shuffle)
	t.noise = encoder.ReseedNoise(m, o.Seed)
	m.SetTraining(false)
	defer t.setGrad(false)

	res := &Result{}
	resumed := false
	if o.Resume && o.Checkpoint != "" {
		ok, err := t.load(o.Checkpoint)
		if err != nil {
			return nil, err
		}
		if ok {
			resumed, res.ResumedFrom = true, t.st.Epoch
			logf("resuming from %s after epoch %d (best validation correlation %.4f at epoch %d)", o.Checkpoint, t.st.Epoch, float64(t.st.Best), t.st.BestEpoch)
		} else {
			logf("no checkpoint at %s: starting at epoch 1", o.Checkpoint)
		}
	}
	if !resumed {
		c := t.validate()
		t.st = progress{Best: f64(c), Initial: f64(c)}
		t.best = t.snapshot()
		logf("epoch 0: validation correlation %.4f (initial weights; %d train and %d validation trials, %d parameters trained)",
			c, len(t.train), len(t.val), count(t.params))
	}
	for !t.st.Finished {
		if t.st.Epoch >= o.Epochs {
			t.st.Stopped = fmt.Sprintf("reached the limit of %d epochs", o.Epochs)
			break
		}
		if err := t.step(ctx, logf); err != nil {
			return nil, err
		}
	}
	t.restore(t.best)
	m.SetTraining(false)
	st := t.st
	res.Epochs, res.BestEpoch, res.BestCorrelation, res.Initial, res.Stopped = st.Epoch, st.BestEpoch, float64(st.Best), float64(st.Initial), st.Stopped
	for _, e := range st.History {
		res.History = append(res.History, e.export())
	}
	return res, nil
}

func count(ps []*tensor.Tensor) int {
	n := 0
	for _, p := range ps {
		n += p.Len()
	}
	return n
}

// step trains one epoch, scores it, updates the schedules, logs and checkpoints.
func (t *trainer) step(ctx context.Context, logf func(string, ...any)) error {
	st := &t.st
	o := t.o
	n := st.Epoch + 1
	start := time.Now()
	e, err := t.epoch(ctx, n)
	if err != nil {
		where := "no checkpoint was written"
		if o.Checkpoint != "" && st.Epoch > 0 {
			where = fmt.Sprintf("%s holds epoch %d: rerun with --resume to continue", o.Checkpoint, st.Epoch)
		}
		return fmt.Errorf("train: interrupted in epoch %d (%w); %s", n, err, where)
	}
	e.Correlation = t.validate()
	t.sched.Step(e.Correlation)
	finite := !math.IsNaN(e.Loss) && !math.IsInf(e.Loss, 0) && !math.IsNaN(e.Correlation)
	if finite && e.Correlation > float64(st.Best)+o.Tolerance {
		st.Best, st.BestEpoch, st.Counter, e.Best = f64(e.Correlation), n, 0, true
		t.best = t.snapshot()
	} else {
		st.Counter++
	}
	st.Epoch = n
	e.Seconds = time.Since(start).Seconds()
	note := ""
	switch {
	case !finite:
		st.Finished, st.Stopped = true, fmt.Sprintf("the loss became %v in epoch %d; kept the weights of epoch %d (try a smaller --lr)", e.Loss, n, st.BestEpoch)
	case st.Counter >= o.Patience:
		st.Round++
		st.Counter = 0
		t.restore(t.best)
		note = fmt.Sprintf("; no improvement for %d epochs: restored epoch %d", o.Patience, st.BestEpoch)
		if st.Round >= o.LRDecaySteps {
			st.Finished, st.Stopped = true, fmt.Sprintf("early stopping after %d rounds of %d epochs without improvement", st.Round, o.Patience)
		}
	}
	st.History = append(st.History, newEpoch(e))
	mark := ""
	if e.Best {
		mark = " *"
	}
	logf("epoch %d/%d: loss %.4f, validation correlation %.4f%s (best %.4f at epoch %d), lr %.3g, %.1fs%s",
		n, o.Epochs, e.Loss, e.Correlation, mark, float64(st.Best), st.BestEpoch, e.LR, e.Seconds, note)
	if o.Checkpoint != "" {
		if err := t.save(o.Checkpoint); err != nil {
			return err
		}
	}
	if o.AfterEpoch != nil {
		if err := o.AfterEpoch(e); err != nil {
			return err
		}
	}
	return nil
}

// setGrad switches gradients of the trained parameters on or off.
func (t *trainer) setGrad(on bool) {
	for _, p := range t.params {
		p.SetRequiresGrad(on)
	}
}

// epoch runs the training steps of epoch n over the shuffled train tier.
func (t *trainer) epoch(ctx context.Context, n int) (Epoch, error) {
	o := t.o
	t.m.SetTraining(true)
	t.setGrad(true)
	defer func() {
		t.m.SetTraining(false)
		t.setGrad(false)
	}()
	total := len(t.train)
	order := t.rng.Perm(total)
	batches := (total + o.BatchSize - 1) / o.BatchSize
	e := Epoch{Epoch: n, LR: t.opt.ParamGroups()[0].LR}
	var lossSum, regSum float64
	if o.Progress != nil {
		o.Progress(n, 0, batches)
	}
	for b := 0; b < batches; b++ {
		if err := ctx.Err(); err != nil {
			return Epoch{}, err
		}
		lo, hi := b*o.BatchSize, min((b+1)*o.BatchSize, total)
		idx := make([]int, hi-lo)
		for k := range idx {
			idx[k] = t.train[order[lo+k]]
		}
		x, y, mask := t.batch(idx)
		t.opt.ZeroGrad()
		pl := PoissonLoss(t.m.Forward(t.cfg.Standardize(x)), y, mask)
		loss := tensor.Scale(pl, float32(math.Sqrt(float64(total)/float64(len(idx)))))
		if reg := encoder.Regularizer(t.m); reg != nil {
			regSum += float64(reg.Item())
			loss = tensor.Add(loss, reg)
		}
		lossSum += float64(pl.Item())
		loss.Backward()
		t.opt.Step()
		if o.Progress != nil {
			o.Progress(n, b+1, batches)
		}
	}
	e.Loss, e.Regularizer = lossSum/float64(total), regSum/float64(batches)
	return e, nil
}

// batch returns the pixels, responses and mask (nil when d has none) of trials idx.
func (t *trainer) batch(idx []int) (x, y, mask *tensor.Tensor) {
	d := t.d
	il, nr := d.ImageLen(), d.Neurons
	xs, ys := make([]float32, len(idx)*il), make([]float32, len(idx)*nr)
	for k, i := range idx {
		copy(xs[k*il:], d.Image(i))
		copy(ys[k*nr:], d.Responses[i*nr:(i+1)*nr])
	}
	x = tensor.FromSlice(t.dev, xs, len(idx), d.C, d.H, d.W)
	y = tensor.FromSlice(t.dev, ys, len(idx), nr)
	if d.Mask != nil {
		ms := make([]float32, len(idx)*nr)
		for k, i := range idx {
			for j, ok := range d.Mask[i*nr : (i+1)*nr] {
				if ok {
					ms[k*nr+j] = 1
				}
			}
		}
		mask = tensor.FromSlice(t.dev, ms, len(idx), nr)
	}
	return x, y, mask
}

// validate returns the mean single-trial correlation on the validation tier, in
// evaluation mode.
func (t *trainer) validate() float64 {
	pred := Predict(t.m, t.d, t.val, t.o.BatchSize)
	resp, mask, _ := rows(t.d, t.val)
	return Mean(Score(pred, resp, t.d.Neurons, nil, mask).SingleTrial)
}

// snapshot copies the data of every tensor of the model (buffers included).
func (t *trainer) snapshot() [][]float32 {
	s := make([][]float32, len(t.entries))
	for i, e := range t.entries {
		s[i] = e.T.Values()
	}
	return s
}

// restore copies a snapshot back into the model.
func (t *trainer) restore(s [][]float32) {
	for i, e := range t.entries {
		e.T.SetValues(s[i])
	}
}
