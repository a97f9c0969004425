package train

import (
	"math"
	"strings"
	"testing"

	"egg/dataset"
	"egg/encoder"
	"egg/tensor"
)

func close(a, b float64) bool { return math.Abs(a-b) < 1e-12 || (math.IsNaN(a) && math.IsNaN(b)) }

func TestCorrelation(t *testing.T) {
	cases := []struct {
		x, y []float64
		want float64
	}{
		// means 2.5 and 5; sxy = 11, sxx = 5, syy = 26
		{[]float64{1, 2, 3, 4}, []float64{2, 4, 5, 9}, 11 / math.Sqrt(5*26)},
		{[]float64{1, 2, 3}, []float64{3, 2, 1}, -1},
		{[]float64{1, 2, 3}, []float64{2, 4, 6}, 1},
		{[]float64{1, 2, 3}, []float64{5, 5, 5}, 0}, // constant
		{[]float64{1}, []float64{2}, 0},             // too short
		{nil, nil, 0},
	}
	for _, c := range cases {
		if got := Correlation(c.x, c.y); !close(got, c.want) {
			t.Errorf("Correlation(%v, %v) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
}

func TestMean(t *testing.T) {
	if got := Mean([]float64{1, math.NaN(), 3}); got != 2 {
		t.Errorf("Mean skips NaN: got %v", got)
	}
	if got := Mean([]float64{math.NaN()}); !math.IsNaN(got) {
		t.Errorf("Mean of nothing: %v", got)
	}
}

func TestOracle(t *testing.T) {
	// One neuron; image A twice (1, 3), image B twice (5, 7), image C once (ignored).
	// Leave-one-out means: 3, 1, 7, 5; corr([1 3 5 7], [3 1 7 5]) = 12 / 20.
	resp := []float32{1, 5, 3, 100, 7}
	ids := []int64{0, 1, 0, 2, 1}
	got := OracleCorrelation(resp, 1, ids, nil)
	if len(got) != 1 || !close(got[0], 0.6) {
		t.Errorf("oracle %v, want [0.6]", got)
	}
	// Three repeats: A = (1, 2, 6), B = (4, 5, 9): LOO means 4, 3.5, 1.5, 7, 6.5, 4.5.
	resp = []float32{1, 2, 6, 4, 5, 9}
	ids = []int64{0, 0, 0, 1, 1, 1}
	want := Correlation([]float64{1, 2, 6, 4, 5, 9}, []float64{4, 3.5, 1.5, 7, 6.5, 4.5})
	if got := OracleCorrelation(resp, 1, ids, nil); !close(got[0], want) {
		t.Errorf("oracle %v, want %v", got, want)
	}
	// No repeats at all: nil. A neuron never recorded twice with one image: NaN.
	if got := OracleCorrelation(resp, 1, nil, nil); got != nil {
		t.Errorf("oracle without repeats %v, want nil", got)
	}
	resp2 := []float32{1, 10, 3, 30, 5, 50, 7, 70} // 2 neurons
	ids2 := []int64{0, 0, 1, 1}
	mask := []bool{true, true, true, false, true, true, true, false}
	got = OracleCorrelation(resp2, 2, ids2, mask)
	if !close(got[0], 0.6) || !math.IsNaN(got[1]) {
		t.Errorf("masked oracle %v, want [0.6 NaN]", got)
	}
}

func TestScore(t *testing.T) {
	// Two neurons, trials of images 0, 0, 1, 2, 2; neuron 1 not recorded in trial 4.
	pred := []float32{
		1, 2,
		1, 2,
		3, 1,
		2, 5,
		2, 5,
	}
	resp := []float32{
		0, 1,
		2, 3,
		4, 0,
		1, 8,
		3, 100,
	}
	ids := []int64{0, 0, 1, 2, 2}
	mask := []bool{true, true, true, true, true, true, true, true, true, false}
	s := Score(pred, resp, 2, ids, mask)
	want := Scores{
		SingleTrial: []float64{
			Correlation([]float64{1, 1, 3, 2, 2}, []float64{0, 2, 4, 1, 3}),
			Correlation([]float64{2, 2, 1, 5}, []float64{1, 3, 0, 8}),
		},
		Average: []float64{
			Correlation([]float64{1, 3, 2}, []float64{1, 4, 2}),
			Correlation([]float64{2, 1, 5}, []float64{2, 0, 8}),
		},
		Oracle: []float64{
			Correlation([]float64{0, 2, 1, 3}, []float64{2, 0, 3, 1}),
			Correlation([]float64{1, 3}, []float64{3, 1}),
		},
	}
	for n := 0; n < 2; n++ {
		if !close(s.SingleTrial[n], want.SingleTrial[n]) || !close(s.Average[n], want.Average[n]) || !close(s.Oracle[n], want.Oracle[n]) {
			t.Errorf("neuron %d: got %v %v %v, want %v %v %v", n, s.SingleTrial[n], s.Average[n], s.Oracle[n],
				want.SingleTrial[n], want.Average[n], want.Oracle[n])
		}
	}
	// By hand, neuron 1 over (pred, resp) = (2, 1), (2, 3), (1, 0), (5, 8): means 2.5
	// and 3, sxy = 1 + 0 + 4.5 + 12.5 = 18, sxx = 9, syy = 38.
	if !close(s.SingleTrial[1], 18/math.Sqrt(9*38)) {
		t.Errorf("neuron 1 single-trial correlation %v, want %v", s.SingleTrial[1], 18/math.Sqrt(9*38))
	}
	// Without image ids, the average correlation is the single-trial one.
	s = Score(pred, resp, 2, nil, nil)
	if s.Oracle != nil || !close(s.Average[0], s.SingleTrial[0]) {
		t.Errorf("without ids: %+v", s)
	}
}

func TestPoissonLoss(t *testing.T) {
	dev := tensor.CPU(1)
	pred := tensor.FromSlice(dev, []float32{1, 2}, 1, 2).SetRequiresGrad(true)
	target := tensor.FromSlice(dev, []float32{0, 3}, 1, 2)
	l := PoissonLoss(pred, target, nil)
	if want := 3 - 3*math.Log(2); math.Abs(float64(l.Item())-want) > 1e-6 {
		t.Errorf("loss %v, want %v", l.Item(), want)
	}
	l.Backward()
	if g := pred.Grad().Data(); math.Abs(float64(g[0])-1) > 1e-6 || math.Abs(float64(g[1])+0.5) > 1e-6 {
		t.Errorf("gradient %v, want [1 -0.5]", g) // 1 - t / y
	}
	mask := tensor.FromSlice(dev, []float32{1, 0}, 1, 2)
	if l := PoissonLoss(pred, target, mask); l.Item() != 1 {
		t.Errorf("masked loss %v, want 1", l.Item())
	}
}

func TestArchitectures(t *testing.T) {
	d := &dataset.Dataset{Source: "d", N: 4, C: 1, H: 40, W: 40, Neurons: 3, Images: make([]float32, 4*1600),
		Tiers: []string{"train", "train", "validation", "test"}, NeuronIDs: []int64{5, 6, 7}}
	for i := range d.Images {
		d.Images[i] = float32(i % 7)
	}
	for _, name := range ArchNames() {
		cfg, err := Architecture(name, DefaultArch())
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		cfg = ForData(cfg, d)
		mean, std := d.PixelStats([]int{0, 1})
		if cfg.Readout.Neurons != 3 || cfg.InputShape[1] != 40 || cfg.InputMean != float32(mean) || cfg.InputStd != float32(std) || cfg.NeuronIDs[2] != 7 {
			t.Errorf("%s: ForData gave %+v", name, cfg)
		}
		want := map[string]string{DataDrivenAttention: "se2d+attention", DataDrivenGaussian: "se2d+gaussian",
			TaskDrivenGaussian: "resnet+gaussian", TaskDrivenAttention: "resnet+attention"}[name]
		if cfg.Arch() != want {
			t.Errorf("%s is %s", name, cfg.Arch())
		}
	}
	cfg, _ := Architecture(DataDrivenAttention, DefaultArch())
	if se := cfg.Core.SE2d; se.HiddenChannels != 96 || se.Layers != 5 || se.InputKern != 9 || cfg.Readout.Attention.EmbedOutDim != 128 {
		t.Errorf("paper's data-driven model: %+v", se)
	}
	if _, err := Architecture("cnn", DefaultArch()); err == nil || !strings.Contains(err.Error(), "data-driven-attention") {
		t.Errorf("unknown architecture: %v", err)
	}
}

func TestEvaluateErrors(t *testing.T) {
	sim := simulate(4, 20, 4, 20, 5, 0, 1)
	d := sim.d
	cfg, _ := Architecture(DataDrivenGaussian, ArchOptions{Channels: 4, Layers: 1, InputKern: 9})
	m, err := encoder.New(testDev, ForData(cfg, d), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Evaluate(m, d, dataset.Test, 8); err == nil || !strings.Contains(err.Error(), "no test trials (it has 20 train, 5 validation") {
		t.Errorf("no test tier: %v", err)
	}
	ev, err := Evaluate(m, d, dataset.Validation, 8)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Trials != 5 || ev.Images != 5 || len(ev.PerNeuron.SingleTrial) != 4 || !math.IsNaN(ev.Oracle) {
		t.Errorf("validation evaluation %+v", ev)
	}
	small := *d
	small.H, small.W = 10, 40
	if _, err := Evaluate(m, &small, dataset.Validation, 8); err == nil || !strings.Contains(err.Error(), "takes [1 20 20] images") {
		t.Errorf("wrong image size: %v", err)
	}
}
