package report

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"egg/mei"
	"egg/stats"
)

// Float is a float64 that encodes in JSON as null when it is NaN or infinite (a
// statistic that is undefined for the data, such as the correlation of a constant),
// and decodes null as NaN.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// Comparison is EGG against GA over the neurons both have (the paper's MEI comparison).
type Comparison struct {
	Run     string `json:"run"`
	Neurons []int  `json:"neurons"` // the shared neurons, ascending
	OnlyEGG []int  `json:"only_egg,omitempty"`
	OnlyGA  []int  `json:"only_ga,omitempty"`
	// Roles has one entry per evaluation role that both methods' records score.
	Roles []RoleComparison `json:"roles"`
	// EGGSecondsPerMEI and GASecondsPerMEI are medians over the shared neurons of each
	// record's seconds divided by its seeds.
	EGGSecondsPerMEI Float `json:"egg_seconds_per_mei"`
	GASecondsPerMEI  Float `json:"ga_seconds_per_mei"`
	// TimeRatio is GASecondsPerMEI / EGGSecondsPerMEI: how many times less time an EGG
	// MEI takes (the paper: 4.7 on a GPU).
	TimeRatio Float `json:"time_ratio"`
}

// RoleComparison compares the activations of one role (train, within, cross, truth).
type RoleComparison struct {
	Role    string `json:"role"`
	Neurons int    `json:"neurons"` // pairs: shared neurons that both records score
	// Slope is c in r_egg = c·r_ga, by Huber regression through the origin; Scale is
	// the regression's scale sigma.
	Slope Float `json:"huber_slope"`
	Scale Float `json:"huber_scale"`
	// Statistic and PValue are the two-sided Wilcoxon signed-rank test of the pairs.
	Statistic Float `json:"wilcoxon_statistic"`
	PValue    Float `json:"wilcoxon_p"`
	EGGHigher int   `json:"egg_higher"` // neurons that EGG's MEI drives more than GA's
	MedianEGG Float `json:"median_egg"`
	MedianGA  Float `json:"median_ga"`
	MeanEGG   Float `json:"mean_egg"`
	MeanGA    Float `json:"mean_ga"`
	Pearson   Float `json:"pearson"` // correlation of the pairs over neurons

	neurons []int     // the neurons of the pairs
	egg, ga []float64 // the pairs
}

// Compare compares the EGG and GA records of r. It returns an error when either method
// has no records or no neuron has both.
func Compare(r *Run) (*Comparison, error) {
	egg, ga := r.Method(EGG), r.Method(GA)
	for _, m := range []struct {
		name string
		m    *Method
	}{{EGG, egg}, {GA, ga}} {
		if m.m == nil {
			return nil, fmt.Errorf("report: no %s records in %s/%s (make them with `egg mei --method %s --out %s`)", m.name, r.Dir, m.name, m.name, r.Dir)
		}
	}
	byNeuron := map[int]mei.Record{}
	for _, rec := range ga.Records {
		byNeuron[rec.Neuron] = rec
	}
	c := &Comparison{Run: r.Dir}
	var pairs [][2]mei.Record
	inEGG := map[int]bool{}
	for _, e := range egg.Records {
		inEGG[e.Neuron] = true
		if g, ok := byNeuron[e.Neuron]; ok {
			pairs = append(pairs, [2]mei.Record{e, g})
			c.Neurons = append(c.Neurons, e.Neuron)
		} else {
			c.OnlyEGG = append(c.OnlyEGG, e.Neuron)
		}
	}
	for _, g := range ga.Records {
		if !inEGG[g.Neuron] {
			c.OnlyGA = append(c.OnlyGA, g.Neuron)
		}
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("report: the egg records (neurons %s) and the ga records (neurons %s) share no neuron; run both methods with the same --neurons", span(egg), span(ga))
	}
	for _, role := range roles(egg, ga) {
		rc := RoleComparison{Role: role}
		for _, p := range pairs {
			e, okE := p[0].Activations[role]
			g, okG := p[1].Activations[role]
			if okE && okG {
				rc.neurons = append(rc.neurons, p[0].Neuron)
				rc.egg = append(rc.egg, float64(e))
				rc.ga = append(rc.ga, float64(g))
				if e > g {
					rc.EGGHigher++
				}
			}
		}
		if len(rc.egg) == 0 {
			continue
		}
		rc.Neurons = len(rc.egg)
		rc.Slope, rc.Scale = Float(math.NaN()), Float(math.NaN())
		if w, s, err := stats.HuberSlope(rc.ga, rc.egg); err == nil {
			rc.Slope, rc.Scale = Float(w), Float(s)
		}
		t, p := stats.WilcoxonSignedRank(rc.egg, rc.ga)
		rc.Statistic, rc.PValue = Float(t), Float(p)
		rc.MedianEGG, rc.MedianGA = Float(stats.Median(rc.egg)), Float(stats.Median(rc.ga))
		rc.MeanEGG, rc.MeanGA = Float(stats.Mean(rc.egg)), Float(stats.Mean(rc.ga))
		rc.Pearson = Float(stats.Pearson(rc.ga, rc.egg))
		c.Roles = append(c.Roles, rc)
	}
	var se, sg []float64
	for _, p := range pairs {
		se = append(se, perMEI(p[0]))
		sg = append(sg, perMEI(p[1]))
	}
	c.EGGSecondsPerMEI, c.GASecondsPerMEI = Float(stats.Median(se)), Float(stats.Median(sg))
	c.TimeRatio = c.GASecondsPerMEI / c.EGGSecondsPerMEI
	return c, nil
}

// span describes the neurons of m's records briefly: "0-9, 10 in all".
func span(m *Method) string {
	n := len(m.Records)
	return fmt.Sprintf("%d-%d, %d in all", m.Records[0].Neuron, m.Records[n-1].Neuron, n)
}
