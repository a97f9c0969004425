// Package report reads an MEI run folder (the layout of package mei), compares its
// methods as the EGG paper does, and writes a self-contained HTML page about it.
//
// A run folder holds one subfolder per method ("egg", "ga") with a record
// neuron_<id>.json per neuron and the files it names (the MEI's PNG, its .npy input).
// Records are read only through their JSON files, as mei.Record values. A subfolder
// named "natural" (NaturalDir) is not a method: it holds the most exciting natural
// images of the neurons (mei.WriteNatural's records), shown beside the MEIs.
//
// The comparison (Compare) is the one of Pierzchlewicz et al., NeurIPS 2023
// (egg-method.md section 7): per evaluation role (train, within, cross, truth), over the neurons both methods
// have, the slope c of a Huber regression through the origin of the EGG activations
// on the GA activations (r_egg = c·r_ga; stats.HuberSlope) and a two-sided Wilcoxon
// signed-rank test of the paired activations (stats.WilcoxonSignedRank), plus the
// compute time per MEI of each method.
//
// The HTML page (Write, Render) needs nothing but itself: images are inline base64 PNG
// data URIs, plots inline SVG, styles inline CSS; it has no scripts and no links to
// other files.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"egg/mei"
)

// The method folders the comparison reads.
const (
	EGG = "egg" // energy-guided diffusion
	GA  = "ga"  // gradient ascent
)

// roleOrder lists the evaluation roles of package mei in report order.
var roleOrder = []string{"train", "within", "cross", "truth"}

// NaturalDir is the subfolder of a run folder that holds the neurons' most exciting
// natural images (mei.WriteNatural's records), when the run has them.
const NaturalDir = "natural"

// Run is a run folder's records.
type Run struct {
	Dir     string
	Methods []Method // egg first, then ga, then any other method folder by name
	// Natural holds the natural-image records of the NaturalDir subfolder, in
	// ascending neuron order; nil when the run has none.
	Natural *Natural
}

// Natural is the most exciting natural images of a run's neurons.
type Natural struct {
	Dir     string
	Records []mei.NaturalRecord
}

// Method is the records of one method in a run, in ascending neuron order.
type Method struct {
	Name    string // the folder name: "egg", "ga"
	Dir     string
	Records []mei.Record
}

// ReadRun reads the records of every method folder of the run folder dir: every
// subfolder that holds neuron_*.json files. It returns an error when dir cannot be read,
// a record is not valid JSON, or no folder holds a record.
func ReadRun(dir string) (*Run, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("report: cannot read the run folder: %w", err)
	}
	run := &Run{Dir: dir}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if e.Name() == NaturalDir {
			nat, err := readNatural(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			if len(nat.Records) > 0 {
				run.Natural = nat
			}
			continue
		}
		m, err := readMethod(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if len(m.Records) > 0 {
			run.Methods = append(run.Methods, m)
		}
	}
	if len(run.Methods) == 0 {
		return nil, fmt.Errorf("report: no MEI records in %s (want %s/egg/neuron_*.json or %s/ga/neuron_*.json: make them with `egg mei --out %s`)", dir, dir, dir, dir)
	}
	rank := func(name string) int {
		switch name {
		case EGG:
			return 0
		case GA:
			return 1
		}
		return 2
	}
	sort.SliceStable(run.Methods, func(i, j int) bool {
		a, b := run.Methods[i].Name, run.Methods[j].Name
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		return a < b
	})
	return run, nil
}

// Method returns the records of the method name, or nil when the run has none.
func (r *Run) Method(name string) *Method {
	for i := range r.Methods {
		if r.Methods[i].Name == name {
			return &r.Methods[i]
		}
	}
	return nil
}

// readMethod reads the records in dir; a folder without records gives none.
func readMethod(dir string) (Method, error) {
	m := Method{Name: filepath.Base(dir), Dir: dir}
	files, err := filepath.Glob(filepath.Join(dir, "neuron_*.json"))
	if err != nil {
		return m, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return m, fmt.Errorf("report: %w", err)
		}
		var rec mei.Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return m, fmt.Errorf("report: %s is not an MEI record: %w (delete it to recompute that neuron)", f, err)
		}
		m.Records = append(m.Records, rec)
	}
	slices.SortStableFunc(m.Records, func(a, b mei.Record) int { return a.Neuron - b.Neuron })
	for i := 1; i < len(m.Records); i++ {
		if m.Records[i].Neuron == m.Records[i-1].Neuron {
			return m, fmt.Errorf("report: two records of neuron %d in %s", m.Records[i].Neuron, dir)
		}
	}
	return m, nil
}

// readNatural reads the natural-image records in dir.
func readNatural(dir string) (*Natural, error) {
	nat := &Natural{Dir: dir}
	files, err := filepath.Glob(filepath.Join(dir, "neuron_*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		var rec mei.NaturalRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("report: %s is not a natural-image record: %w (delete it to recompute that neuron)", f, err)
		}
		nat.Records = append(nat.Records, rec)
	}
	slices.SortStableFunc(nat.Records, func(a, b mei.NaturalRecord) int { return a.Neuron - b.Neuron })
	for i := 1; i < len(nat.Records); i++ {
		if nat.Records[i].Neuron == nat.Records[i-1].Neuron {
			return nil, fmt.Errorf("report: two natural-image records of neuron %d in %s", nat.Records[i].Neuron, dir)
		}
	}
	return nat, nil
}

// imagePath returns the path of a natural record's PNG (the row of its images).
func (n *Natural) imagePath(r mei.NaturalRecord) string {
	name := r.Image
	if name == "" || strings.ContainsAny(name, `/\`) {
		name = fmt.Sprintf("neuron_%05d.png", r.Neuron)
	}
	return filepath.Join(n.Dir, name)
}

// roles returns the roles that any record of ms has an activation for: mei's roles in
// their order, then any others by name.
func roles(ms ...*Method) []string {
	seen := map[string]bool{}
	for _, m := range ms {
		if m == nil {
			continue
		}
		for _, r := range m.Records {
			for role := range r.Activations {
				seen[role] = true
			}
		}
	}
	var out []string
	for _, role := range roleOrder {
		if seen[role] {
			out = append(out, role)
			delete(seen, role)
		}
	}
	var rest []string
	for role := range seen {
		rest = append(rest, role)
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// perMEI is a record's compute time per MEI: its seconds over its seeds.
func perMEI(r mei.Record) float64 {
	return r.Seconds / float64(max(1, len(r.SeedTrain)))
}

// imagePath returns the path of a record's PNG.
func (m *Method) imagePath(r mei.Record) string {
	name := r.Image
	if name == "" || strings.ContainsAny(name, `/\`) {
		name = fmt.Sprintf("neuron_%05d.png", r.Neuron)
	}
	return filepath.Join(m.Dir, name)
}
