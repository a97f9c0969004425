package report

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"egg/imageio"
	"egg/mei"
	"egg/stats"
)

// Write reads the run folder dir and writes its HTML report to out, or to
// dir/report.html when out is empty, atomically. It returns the path written.
func Write(dir, out string) (string, error) {
	r, err := ReadRun(dir)
	if err != nil {
		return "", err
	}
	if out == "" {
		out = filepath.Join(dir, "report.html")
	}
	var buf bytes.Buffer
	if err := Render(&buf, r); err != nil {
		return "", err
	}
	return out, imageio.WriteFileAtomic(out, buf.Bytes())
}

// Render writes the HTML report of r to w: the run's settings and model files, a
// summary table per method, the EGG-GA comparison when the run has both, and a row per
// neuron with its MEIs, its most exciting natural images when the run has them (with
// the activations of the best one), activations and EGG energy trace. It reads the
// PNG files from the run's subfolders; a missing image is noted in its place.
func Render(w io.Writer, r *Run) error {
	p := page{Dir: r.Dir, Title: "egg report: " + filepath.Base(filepath.Clean(r.Dir))}
	var all []*Method
	var last time.Time
	for i := range r.Methods {
		m := &r.Methods[i]
		all = append(all, m)
		p.MethodNames = append(p.MethodNames, m.Name)
		for _, rec := range m.Records {
			if rec.Finished.After(last) {
				last = rec.Finished
			}
		}
	}
	if !last.IsZero() {
		p.LastFinished = last.UTC().Format(time.RFC3339)
	}
	p.Roles = roles(all...)
	for _, m := range all {
		p.Methods = append(p.Methods, summarise(m, p.Roles))
	}
	if r.Method(EGG) != nil && r.Method(GA) != nil {
		c, err := Compare(r)
		if err != nil {
			p.CompareNote = err.Error()
		} else {
			cv := &compareView{Comparison: c}
			for _, rc := range c.Roles {
				title := fmt.Sprintf("%s activation: EGG against GA over %d neurons; Huber slope %s", rc.Role, rc.Neurons, num(float64(rc.Slope)))
				cv.Plots = append(cv.Plots, template.HTML(scatter(rc.neurons, rc.ga, rc.egg, float64(rc.Slope), title)))
			}
			p.Comparison = cv
		}
	}
	p.ActColumns = p.MethodNames
	if r.Natural != nil {
		p.Natural = summariseNatural(r.Natural, p.Roles)
		p.ActColumns = append(slices.Clone(p.MethodNames), "natural")
	}
	p.Neurons, p.EnergyMethods = neuronRows(all, r.Natural, p.Roles)
	if err := pageTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// page is what the template shows.
type page struct {
	Title, Dir   string
	LastFinished string
	MethodNames  []string
	Roles        []string
	Methods      []methodView
	Comparison   *compareView
	CompareNote  string
	Neurons      []neuronView
	// EnergyMethods names the methods with energy traces (EGG), one column each.
	EnergyMethods []string
	// Natural summarises the natural images; nil when the run has none.
	Natural *naturalSummary
	// ActColumns heads the columns of each neuron's activation table: the methods,
	// then "natural" when the run has natural images.
	ActColumns []string
}

// naturalSummary is the population summary of the best natural image per neuron.
type naturalSummary struct {
	Neurons      int
	Top          int      // images per neuron (the most any record holds)
	Norm         string   // L2 norm of their model inputs
	Median, Mean []string // per page role, of each neuron's best image
}

type methodView struct {
	Name          string
	Neurons       int
	Settings      string // indented JSON of the first record's settings
	SettingsNote  string // set when records disagree
	Models        []modelFile
	Median, Mean  []string // per page role
	SecondsPerMEI string
	TotalSeconds  string
}

type modelFile struct{ Role, Path, SHA256 string }

type compareView struct {
	*Comparison
	Plots []template.HTML // per role
}

type neuronView struct {
	Neuron int
	Images []imageView // per method
	// Natural is the row of the neuron's most exciting natural images, best first;
	// nil when the run has no natural images.
	Natural *imageView
	Acts    []actRow        // per role
	Energy  []template.HTML // per method, empty where it has no trace
}

type imageView struct {
	Method  string
	Src     template.URL // data URI, empty when missing
	Note    string       // why there is no image, or the seed
	Present bool         // the method has a record for the neuron
}

type actRow struct {
	Role   string
	Values []string // per method
}

// modelRoleOrder orders the model files of a run: the evaluation roles, then the
// diffusion prior.
var modelRoleOrder = []string{"train", "within", "cross", "truth", "prior"}

// summarise gives a method's summary row and provenance.
func summarise(m *Method, roles []string) methodView {
	v := methodView{Name: m.Name, Neurons: len(m.Records)}
	first, _ := json.MarshalIndent(m.Records[0].Settings, "", "  ")
	v.Settings = string(first)
	var differ []int
	for _, rec := range m.Records[1:] {
		if b, _ := json.MarshalIndent(rec.Settings, "", "  "); !bytes.Equal(b, first) {
			differ = append(differ, rec.Neuron)
		}
	}
	if len(differ) > 0 {
		v.SettingsNote = fmt.Sprintf("%d records have other settings (neurons %s); shown: neuron %d's", len(differ), list(differ, 20), m.Records[0].Neuron)
	}
	seen := map[modelFile]bool{}
	for _, rec := range m.Records {
		for role, fs := range rec.Models {
			for _, f := range fs {
				mf := modelFile{role, f.Path, f.SHA256}
				if !seen[mf] {
					seen[mf] = true
					v.Models = append(v.Models, mf)
				}
			}
		}
	}
	order := func(role string) int {
		if i := slices.Index(modelRoleOrder, role); i >= 0 {
			return i
		}
		return len(modelRoleOrder)
	}
	slices.SortFunc(v.Models, func(a, b modelFile) int {
		if d := order(a.Role) - order(b.Role); d != 0 {
			return d
		}
		return strings.Compare(a.Role+"\x00"+a.Path+"\x00"+a.SHA256, b.Role+"\x00"+b.Path+"\x00"+b.SHA256)
	})
	for _, role := range roles {
		var a []float64
		for _, rec := range m.Records {
			if x, ok := rec.Activations[role]; ok {
				a = append(a, float64(x))
			}
		}
		v.Median = append(v.Median, num(stats.Median(a)))
		v.Mean = append(v.Mean, num(stats.Mean(a)))
	}
	var secs []float64
	total := 0.0
	for _, rec := range m.Records {
		secs = append(secs, perMEI(rec))
		total += rec.Seconds
	}
	v.SecondsPerMEI, v.TotalSeconds = num(stats.Median(secs)), num(total)
	return v
}

// summariseNatural gives the medians and means over neurons of the activations of
// each neuron's best natural image (the first hit, best on the training models).
func summariseNatural(nat *Natural, roles []string) *naturalSummary {
	v := &naturalSummary{Neurons: len(nat.Records)}
	norms := map[float32]bool{}
	for _, rec := range nat.Records {
		v.Top = max(v.Top, len(rec.Hits))
		norms[rec.Norm] = true
	}
	var ns []string
	for n := range norms {
		ns = append(ns, num(float64(n)))
	}
	slices.Sort(ns)
	v.Norm = strings.Join(ns, ", ")
	for _, role := range roles {
		var a []float64
		for _, rec := range nat.Records {
			if len(rec.Hits) == 0 {
				continue
			}
			if x, ok := rec.Hits[0].Activations[role]; ok {
				a = append(a, float64(x))
			}
		}
		v.Median = append(v.Median, num(stats.Median(a)))
		v.Mean = append(v.Mean, num(stats.Mean(a)))
	}
	return v
}

// neuronRows gives one row per neuron that any method (or the natural images) has, in
// ascending order, and the names of the methods with energy traces.
func neuronRows(ms []*Method, nat *Natural, roles []string) ([]neuronView, []string) {
	var energy []int // indices of the methods with energy traces
	for i, m := range ms {
		for _, rec := range m.Records {
			if len(rec.Energy) > 0 {
				energy = append(energy, i)
				break
			}
		}
	}
	byMethod := make([]map[int]mei.Record, len(ms))
	var ids []int
	for i, m := range ms {
		byMethod[i] = map[int]mei.Record{}
		for _, rec := range m.Records {
			byMethod[i][rec.Neuron] = rec
			ids = append(ids, rec.Neuron)
		}
	}
	natByNeuron := map[int]mei.NaturalRecord{}
	if nat != nil {
		for _, rec := range nat.Records {
			natByNeuron[rec.Neuron] = rec
			ids = append(ids, rec.Neuron)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var rows []neuronView
	for _, id := range ids {
		row := neuronView{Neuron: id}
		if nat != nil {
			rec, ok := natByNeuron[id]
			iv := imageView{Method: "natural", Present: ok}
			if ok {
				iv.Src, iv.Note = embedPNG(nat.imagePath(rec))
				if iv.Note == "" && len(rec.Hits) > 0 {
					iv.Note = fmt.Sprintf("best first; best: %s", rec.Hits[0].Source)
					if rec.Hits[0].Source == "" {
						iv.Note = fmt.Sprintf("best first; best: pool patch %d", rec.Hits[0].Index)
					}
				}
			}
			row.Natural = &iv
		}
		for i, m := range ms {
			rec, ok := byMethod[i][id]
			iv := imageView{Method: m.Name, Present: ok}
			if ok {
				iv.Src, iv.Note = embedPNG(m.imagePath(rec))
				if iv.Note == "" {
					iv.Note = fmt.Sprintf("seed %d", rec.Seed)
				}
			}
			row.Images = append(row.Images, iv)
		}
		for _, i := range energy {
			var e template.HTML
			if rec, ok := byMethod[i][id]; ok && len(rec.Energy) > 0 {
				e = template.HTML(sparkline(rec.Energy, fmt.Sprintf("%s energy of neuron %d over %d diffusion steps", ms[i].Name, id, len(rec.Energy))))
			}
			row.Energy = append(row.Energy, e)
		}
		for _, role := range roles {
			ar := actRow{Role: role}
			for i := range ms {
				s := ""
				if rec, ok := byMethod[i][id]; ok {
					if x, ok := rec.Activations[role]; ok {
						s = num(float64(x))
					}
				}
				ar.Values = append(ar.Values, s)
			}
			if nat != nil {
				s := ""
				if rec, ok := natByNeuron[id]; ok && len(rec.Hits) > 0 {
					if x, ok := rec.Hits[0].Activations[role]; ok {
						s = num(float64(x))
					}
				}
				ar.Values = append(ar.Values, s)
			}
			row.Acts = append(row.Acts, ar)
		}
		rows = append(rows, row)
	}
	var names []string
	for _, i := range energy {
		names = append(names, ms[i].Name)
	}
	return rows, names
}

// pngMagic starts every PNG file.
const pngMagic = "\x89PNG\r\n\x1a\n"

// embedPNG returns the file at path as a data URI, or a note saying why it cannot.
func embedPNG(path string) (template.URL, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "missing " + filepath.Base(path)
	}
	if !bytes.HasPrefix(b, []byte(pngMagic)) {
		return "", filepath.Base(path) + " is not a PNG"
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(b)), ""
}

// list formats at most n ints, comma-separated.
func list(v []int, n int) string {
	var s []string
	for i, x := range v {
		if i == n {
			s = append(s, fmt.Sprintf("and %d more", len(v)-n))
			break
		}
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, ", ")
}

// fmtNum formats numbers for the template.
func fmtNum(v any) string {
	switch x := v.(type) {
	case Float:
		return num(float64(x))
	case float64:
		return num(x)
	case float32:
		return num(float64(x))
	case int:
		return fmt.Sprint(x)
	}
	return fmt.Sprint(v)
}

// fmtP formats a p-value.
func fmtP(v Float) string {
	if math.IsNaN(float64(v)) {
		return "–"
	}
	return fmt.Sprintf("%.3g", float64(v))
}

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"num": fmtNum, "p": fmtP, "ints": func(v []int) string { return list(v, 30) },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; vertical-align: middle; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
table.acts td, table.acts th { border: none; padding: 0 0.4em; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.5em; font-size: 0.85em; overflow-x: auto; }
code { font-size: 0.85em; }
img.mei { width: 120px; height: 120px; image-rendering: pixelated; display: block; }
img.natural { height: 96px; image-rendering: pixelated; display: block; }
.note { color: #666; font-size: 0.9em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.9em; text-align: center; }
.settings { display: flex; flex-wrap: wrap; gap: 1.5em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>Run folder <code>{{.Dir}}</code>; methods: {{range $i, $m := .MethodNames}}{{if $i}}, {{end}}{{$m}}{{end}}.{{with .LastFinished}} Last neuron finished {{.}}.{{end}}</p>

<h2 id="settings">Settings and models</h2>
<div class="settings">
{{range .Methods}}<div>
<h3>{{.Name}}</h3>
<pre>{{.Settings}}</pre>
{{with .SettingsNote}}<p class="note">{{.}}</p>{{end}}
{{if .Models}}<table>
<tr><th class="l">role</th><th class="l">model file</th><th class="l">SHA-256</th></tr>
{{range .Models}}<tr><td class="l">{{.Role}}</td><td class="l"><code>{{.Path}}</code></td><td class="l"><code>{{.SHA256}}</code></td></tr>
{{end}}</table>{{else}}<p class="note">No model files recorded.</p>{{end}}
</div>
{{end}}</div>

<h2 id="summary">Population summary</h2>
<table>
<tr><th class="l" rowspan="2">method</th><th rowspan="2">neurons</th>{{range .Roles}}<th colspan="2">{{.}}</th>{{end}}<th rowspan="2">seconds per MEI<br>(median)</th><th rowspan="2">seconds<br>in all</th></tr>
<tr>{{range .Roles}}<th>median</th><th>mean</th>{{end}}</tr>
{{range .Methods}}<tr><td class="l">{{.Name}}</td><td>{{.Neurons}}</td>{{$m := .}}{{range $i, $r := .Median}}<td>{{$r}}</td><td>{{index $m.Mean $i}}</td>{{end}}<td>{{.SecondsPerMEI}}</td><td>{{.TotalSeconds}}</td></tr>
{{end}}{{with .Natural}}<tr><td class="l">best natural image</td><td>{{.Neurons}}</td>{{$n := .}}{{range $i, $r := .Median}}<td>{{$r}}</td><td>{{index $n.Mean $i}}</td>{{end}}<td>–</td><td>–</td></tr>
{{end}}</table>
<p class="note">Activations are the responses of the neuron's model to its MEI: "train" is the ensemble the MEI was optimised on, "within" a held-out ensemble of the same architecture, "cross" one of another architecture, "truth" the ground truth.</p>
{{with .Natural}}<p class="note">Natural images: for each neuron, the {{.Top}} patches of the image pool that drive its training models most, as model inputs of L2 norm {{.Norm}}; the "best natural image" row and column score the first of them.</p>
{{end}}
{{if .Comparison}}{{with .Comparison}}
<h2 id="comparison">EGG against gradient ascent</h2>
<p>{{len .Neurons}} neurons have both an EGG and a GA MEI.{{with .OnlyEGG}} Only EGG: {{ints .}}.{{end}}{{with .OnlyGA}} Only GA: {{ints .}}.{{end}}</p>
<table>
<tr><th class="l">role</th><th>neurons</th><th>Huber slope c<br>(r<sub>EGG</sub> = c r<sub>GA</sub>)</th><th>Wilcoxon T</th><th>p</th><th>EGG higher</th><th>median EGG</th><th>median GA</th><th>mean EGG</th><th>mean GA</th><th>Pearson r</th></tr>
{{range .Roles}}<tr><td class="l">{{.Role}}</td><td>{{.Neurons}}</td><td>{{num .Slope}}</td><td>{{num .Statistic}}</td><td>{{p .PValue}}</td><td>{{.EGGHigher}}</td><td>{{num .MedianEGG}}</td><td>{{num .MedianGA}}</td><td>{{num .MeanEGG}}</td><td>{{num .MeanGA}}</td><td>{{num .Pearson}}</td></tr>
{{end}}</table>
<p>Time per MEI (median over these neurons): EGG {{num .EGGSecondsPerMEI}} s, GA {{num .GASecondsPerMEI}} s; GA/EGG time ratio {{num .TimeRatio}} (above 1: EGG is faster; the paper measured 4.7 on a GPU).</p>
<p class="note">Slope c &gt; 1: EGG's MEIs drive the neurons more than GA's. The test is the two-sided Wilcoxon signed-rank test of the paired activations; the slope is a Huber regression through the origin (epsilon 1.35, alpha 0.0001, as scikit-learn's HuberRegressor), as in the paper.</p>
<div class="plots">
{{$c := .}}{{range $i, $r := .Roles}}<figure>{{index $c.Plots $i}}<figcaption>{{$r.Role}}: c = {{num $r.Slope}}, p = {{p $r.PValue}}</figcaption></figure>
{{end}}</div>
<p class="note">Dashed: y = x. Red: the Huber fit y = c x.</p>
{{end}}{{else}}{{with .CompareNote}}
<h2 id="comparison">EGG against gradient ascent</h2>
<p class="note">{{.}}</p>
{{end}}{{end}}

<h2 id="neurons">Neurons</h2>
<table>
<tr><th>neuron</th>{{range .MethodNames}}<th>{{.}} MEI</th>{{end}}{{if .Natural}}<th>top natural images</th>{{end}}<th>activations</th>{{range .EnergyMethods}}<th>{{.}} energy over diffusion steps</th>{{end}}</tr>
{{range .Neurons}}<tr id="neuron-{{.Neuron}}"><td>{{.Neuron}}</td>{{$n := .Neuron}}{{range .Images}}<td>{{if .Src}}<img class="mei" src="{{.Src}}" alt="{{.Method}} MEI of neuron {{$n}}"><span class="note">{{.Note}}</span>{{else if .Present}}<span class="note">{{.Note}}</span>{{end}}</td>{{end}}
{{with .Natural}}<td class="l">{{if .Src}}<img class="natural" src="{{.Src}}" alt="natural images of neuron {{$n}}"><span class="note">{{.Note}}</span>{{else if .Present}}<span class="note">{{.Note}}</span>{{end}}</td>{{end}}
<td><table class="acts"><tr><th></th>{{range $.ActColumns}}<th>{{.}}</th>{{end}}</tr>{{range .Acts}}<tr><th class="l">{{.Role}}</th>{{range .Values}}<td>{{.}}</td>{{end}}</tr>{{end}}</table></td>
{{range .Energy}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
</body>
</html>
`
