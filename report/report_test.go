package report

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"egg/mei"
	"egg/stats"
)

// fakeMethod writes records (and PNGs, unless noImage says otherwise) of method for
// neurons into run/<method>, with activations from act.
func fakeMethod(t *testing.T, run, method string, neurons []int, act func(n int) map[string]float32, seconds float64, noImage map[int]bool) {
	t.Helper()
	dir := filepath.Join(run, method)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range neurons {
		base := fmt.Sprintf("neuron_%05d", n)
		rec := mei.Record{
			Neuron: n, Method: method, Seed: uint64(n % 3),
			SeedTrain:   map[string]float32{"0": 1, "1": 2, "2": 3},
			Activations: act(n), Seconds: 3 * seconds,
			Settings: mei.Settings{Method: method, Seeds: []uint64{0, 1, 2}, BatchSize: 8, InputH: 4, InputW: 4, Norm: 25},
			Models: map[string][]mei.FileHash{
				"train": {{Path: "models/a1.safetensors", SHA256: "aa11"}},
				"cross": {{Path: "models/b1.safetensors", SHA256: "bb11"}},
			},
			Image: base + ".png", Input: base + ".npy",
			Finished: time.Date(2026, 1, 2, 3, 4, n, 0, time.UTC),
		}
		if method == EGG {
			rec.Settings.Scale, rec.Settings.Steps = 5, 4
			rec.Energy = []float32{-1, -2, -2.5, -float32(n)}
		}
		b, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, base+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if noImage[n] {
			continue
		}
		img := image.NewGray(image.Rect(0, 0, 4, 4))
		for i := range img.Pix {
			img.Pix[i] = uint8(16*i + n)
		}
		img.Set(0, 0, color.Gray{Y: uint8(len(method))})
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, base+".png"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// eggAct and gaAct are activations where EGG beats GA across architectures.
func eggAct(n int) map[string]float32 {
	x := float32(n + 1)
	return map[string]float32{"train": 2 * x, "within": 1.8 * x, "cross": 1.5*x + 0.1*float32(n%2)}
}

func gaAct(n int) map[string]float32 {
	x := float32(n + 1)
	return map[string]float32{"train": 2.2 * x, "within": 1.7 * x, "cross": 1.0 * x}
}

// fakeRun writes a run with EGG neurons 0-5 and GA neurons 1-6; GA's neuron 6 has no
// PNG.
func fakeRun(t *testing.T) string {
	run := t.TempDir()
	fakeMethod(t, run, EGG, []int{0, 1, 2, 3, 4, 5}, eggAct, 2, nil)
	fakeMethod(t, run, GA, []int{1, 2, 3, 4, 5, 6}, gaAct, 10, map[int]bool{6: true})
	return run
}

func TestCompare(t *testing.T) {
	run := fakeRun(t)
	r, err := ReadRun(run)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compare(r)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Neurons, []int{1, 2, 3, 4, 5}) || !slices.Equal(c.OnlyEGG, []int{0}) || !slices.Equal(c.OnlyGA, []int{6}) {
		t.Errorf("neurons %v, only egg %v, only ga %v", c.Neurons, c.OnlyEGG, c.OnlyGA)
	}
	if c.EGGSecondsPerMEI != 2 || c.GASecondsPerMEI != 10 || c.TimeRatio != 5 {
		t.Errorf("seconds per MEI %v and %v, ratio %v; want 2, 10, 5", c.EGGSecondsPerMEI, c.GASecondsPerMEI, c.TimeRatio)
	}
	var got []string
	for _, rc := range c.Roles {
		got = append(got, rc.Role)
	}
	if !slices.Equal(got, []string{"train", "within", "cross"}) {
		t.Fatalf("roles %v", got)
	}
	for _, rc := range c.Roles {
		var e, g []float64
		for _, n := range c.Neurons {
			e = append(e, float64(eggAct(n)[rc.Role]))
			g = append(g, float64(gaAct(n)[rc.Role]))
		}
		w, _, _ := stats.HuberSlope(g, e)
		s, p := stats.WilcoxonSignedRank(e, g)
		if float64(rc.Slope) != w || float64(rc.Statistic) != s || float64(rc.PValue) != p || rc.Neurons != 5 {
			t.Errorf("%s: slope %v T %v p %v n %d; want %v %v %v 5", rc.Role, rc.Slope, rc.Statistic, rc.PValue, rc.Neurons, w, s, p)
		}
	}
	// Train: GA is 10% higher on every neuron: the slope is 1/1.1 and EGG never wins.
	if tr := c.Roles[0]; math.Abs(float64(tr.Slope)-1/1.1) > 1e-6 || tr.EGGHigher != 0 || tr.Statistic != 0 || tr.PValue != 0.0625 {
		t.Errorf("train: slope %v, EGG higher %d, T %v, p %v", tr.Slope, tr.EGGHigher, tr.Statistic, tr.PValue)
	}
}

func TestCompareErrors(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, run string)
		want string
	}{
		{"no ga", func(t *testing.T, run string) { fakeMethod(t, run, EGG, []int{0}, eggAct, 1, nil) }, "no ga records"},
		{"no egg", func(t *testing.T, run string) { fakeMethod(t, run, GA, []int{0}, gaAct, 1, nil) }, "no egg records"},
		{"disjoint", func(t *testing.T, run string) {
			fakeMethod(t, run, EGG, []int{0, 1}, eggAct, 1, nil)
			fakeMethod(t, run, GA, []int{2, 3}, gaAct, 1, nil)
		}, "share no neuron"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := t.TempDir()
			c.make(t, run)
			r, err := ReadRun(run)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Compare(r); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one about %q", err, c.want)
			}
		})
	}
}

func TestReadRunErrors(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, run string)
		want string
	}{
		{"empty", func(t *testing.T, run string) {}, "no MEI records"},
		{"missing", func(t *testing.T, run string) { os.Remove(run) }, "cannot read"},
		{"bad record", func(t *testing.T, run string) {
			os.MkdirAll(filepath.Join(run, EGG), 0o755)
			os.WriteFile(filepath.Join(run, EGG, "neuron_00001.json"), []byte("{"), 0o644)
		}, "not an MEI record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := t.TempDir()
			c.make(t, run)
			if _, err := ReadRun(run); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one about %q", err, c.want)
			}
		})
	}
}

func TestFloatJSON(t *testing.T) {
	cases := []struct {
		v    Float
		json string
	}{
		{1.5, "1.5"}, {0, "0"}, {-2e-9, "-2e-09"},
		{Float(math.NaN()), "null"}, {Float(math.Inf(1)), "null"},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.json {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.v, b, err, c.json)
		}
		var back Float
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back != c.v && !(math.IsNaN(float64(back)) && (math.IsNaN(float64(c.v)) || math.IsInf(float64(c.v), 0))) {
			t.Errorf("round trip of %v gave %v", c.v, back)
		}
	}
}

// walk calls f on every element of the tree under n.
func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func TestReport(t *testing.T) {
	cases := []struct {
		name       string
		methods    []string
		images     int // inline MEIs
		comparison bool
		svgs       int // scatter plots + energy plots
	}{
		{"egg and ga", []string{EGG, GA}, 6 + 5, true, 3 + 6},
		{"egg only", []string{EGG}, 6, false, 6},
		{"ga only", []string{GA}, 5, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := t.TempDir()
			for _, m := range c.methods {
				if m == EGG {
					fakeMethod(t, run, EGG, []int{0, 1, 2, 3, 4, 5}, eggAct, 2, nil)
				} else {
					fakeMethod(t, run, GA, []int{1, 2, 3, 4, 5, 6}, gaAct, 10, map[int]bool{6: true})
				}
			}
			out, err := Write(run, "")
			if err != nil {
				t.Fatal(err)
			}
			if out != filepath.Join(run, "report.html") {
				t.Errorf("wrote %s", out)
			}
			page, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			checkPage(t, run, string(page), c.images, c.svgs)
			for _, want := range []string{"Population summary", "aa11", "models/b1.safetensors", `id="neuron-5"`} {
				if !strings.Contains(string(page), want) {
					t.Errorf("the page lacks %q", want)
				}
			}
			if got := strings.Contains(string(page), "EGG against gradient ascent"); got != c.comparison {
				t.Errorf("comparison section shown: %v, want %v", got, c.comparison)
			}
			if c.comparison && !strings.Contains(string(page), "missing neuron_00006.png") {
				t.Error("the missing GA image of neuron 6 is not noted")
			}
		})
	}
}

// checkPage parses page as HTML and checks that it is self-contained: every image an
// inline PNG equal to its file, no scripts, stylesheets or links, and no URL but the
// SVG namespace.
func checkPage(t *testing.T, run, page string, images, svgs int) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	nImg, nSVG, nTables := 0, 0, 0
	walk(doc, func(n *html.Node) {
		switch n.Data {
		case "script", "link", "iframe", "object", "embed":
			t.Errorf("the page has a <%s> element", n.Data)
		case "svg":
			nSVG++
		case "table":
			nTables++
		case "img":
			nImg++
			src, _ := attr(n, "src")
			const prefix = "data:image/png;base64,"
			if !strings.HasPrefix(src, prefix) {
				t.Errorf("image source %.40q is not an inline PNG", src)
				return
			}
			b, err := base64.StdEncoding.DecodeString(src[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			alt, _ := attr(n, "alt") // "<method> MEI of neuron <n>" or "natural images of neuron <n>"
			var method string
			var neuron int
			if _, err := fmt.Sscanf(alt, "natural images of neuron %d", &neuron); err == nil {
				method = NaturalDir
			} else if _, err := fmt.Sscanf(alt, "%s MEI of neuron %d", &method, &neuron); err != nil {
				t.Fatalf("alt %q: %v", alt, err)
			}
			want, err := os.ReadFile(filepath.Join(run, method, fmt.Sprintf("neuron_%05d.png", neuron)))
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("the image of %s neuron %d differs from its file (%v)", method, neuron, err)
			}
		}
		for _, a := range n.Attr {
			if (a.Key == "href" || a.Key == "src" || strings.HasSuffix(a.Key, ":href")) && !strings.HasPrefix(a.Val, "data:") {
				t.Errorf("<%s %s=%q> refers outside the page", n.Data, a.Key, a.Val)
			}
		}
	})
	if nImg != images || nSVG != svgs {
		t.Errorf("%d images and %d SVG plots, want %d and %d", nImg, nSVG, images, svgs)
	}
	if nTables < 2 {
		t.Errorf("%d tables", nTables)
	}
	rest := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
	if i := strings.Index(strings.ToLower(rest), "http"); i >= 0 {
		t.Errorf("the page refers to a URL: %q", rest[max(0, i-40):min(len(rest), i+40)])
	}
	if strings.Contains(page, "url(") {
		t.Error("the page's CSS refers to a URL")
	}
}

func TestNiceTicks(t *testing.T) {
	cases := []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 10, []float64{0, 2.5, 5, 7.5, 10}},
		{0, 9.3, []float64{0, 2.5, 5, 7.5, 10}},
		{0, 3, []float64{0, 1, 2, 3}},
		{-1, 1, []float64{-1, -0.5, 0, 0.5, 1}},
		{0, 0.013, []float64{0, 0.005, 0.01, 0.015}},
	}
	for _, c := range cases {
		got := niceTicks(c.lo, c.hi, 5)
		ok := len(got) == len(c.want)
		for i := range got {
			ok = ok && math.Abs(got[i]-c.want[i]) < 1e-12
		}
		if !ok {
			t.Errorf("niceTicks(%v, %v) = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
}

func TestReportNoSharedNeurons(t *testing.T) {
	run := t.TempDir()
	fakeMethod(t, run, EGG, []int{0, 1}, eggAct, 2, nil)
	fakeMethod(t, run, GA, []int{2, 3}, gaAct, 10, nil)
	r, err := ReadRun(run)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, r); err != nil {
		t.Fatal(err)
	}
	checkPage(t, run, buf.String(), 4, 2)
	if !strings.Contains(buf.String(), "share no neuron") {
		t.Error("the page does not say why there is no comparison")
	}
}

// fakeNatural writes natural-image records (with a PNG each) of neurons into
// run/natural, with 2 hits each whose best has the activations act(n) / 2.
func fakeNatural(t *testing.T, run string, neurons []int, act func(n int) map[string]float32) {
	t.Helper()
	dir := filepath.Join(run, NaturalDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range neurons {
		best := map[string]float32{}
		for r, v := range act(n) {
			best[r] = v / 2
		}
		base := fmt.Sprintf("neuron_%05d", n)
		rec := mei.NaturalRecord{Neuron: n, Norm: 8, InputH: 4, InputW: 4, Pool: "pool.npz", Image: base + ".png",
			Hits: []mei.NaturalHit{
				{Index: 10 + n, Source: fmt.Sprintf("img%d.png:0.5:0:0:0", n), Activation: best["train"], Activations: best},
				{Index: 20 + n, Activation: best["train"] / 2, Activations: map[string]float32{"train": best["train"] / 2}},
			}}
		b, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, base+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		img := image.NewGray(image.Rect(0, 0, 10, 4))
		for i := range img.Pix {
			img.Pix[i] = uint8(3*i + n)
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, base+".png"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReportNatural(t *testing.T) {
	cases := []struct {
		name    string
		natural []int
		images  int // inline MEIs and natural rows
		rows    int // neuron rows
	}{
		{"every neuron", []int{0, 1, 2, 3, 4, 5, 6}, 6 + 5 + 7, 7},
		{"some neurons", []int{1, 3}, 6 + 5 + 2, 7},
		{"a neuron without MEIs", []int{2, 9}, 6 + 5 + 2, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := fakeRun(t)
			fakeNatural(t, run, c.natural, eggAct)
			r, err := ReadRun(run)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Methods) != 2 || r.Natural == nil || len(r.Natural.Records) != len(c.natural) {
				t.Fatalf("read %d methods and natural %+v", len(r.Methods), r.Natural)
			}
			if r.Natural.Records[0].Neuron != c.natural[0] || r.Natural.Records[0].Hits[0].Activations["cross"] != eggAct(c.natural[0])["cross"]/2 {
				t.Errorf("first natural record %+v", r.Natural.Records[0])
			}
			out, err := Write(run, "")
			if err != nil {
				t.Fatal(err)
			}
			page, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			checkPage(t, run, string(page), c.images, 3+6)
			if got := strings.Count(string(page), `<tr id="neuron-`); got != c.rows {
				t.Errorf("%d neuron rows, want %d", got, c.rows)
			}
			n := c.natural[0]
			best := eggAct(n)["within"] / 2
			for _, want := range []string{"top natural images", "best natural image", fmt.Sprintf("img%d.png:0.5:0:0:0", n), "<th>natural</th>", num(float64(best))} {
				if !strings.Contains(string(page), want) {
					t.Errorf("the page lacks %q", want)
				}
			}
		})
	}
}

func TestReadRunNaturalErrors(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, run string)
		want string
	}{
		{"natural only", func(t *testing.T, run string) { fakeNatural(t, run, []int{0}, eggAct) }, "no MEI records"},
		{"bad natural record", func(t *testing.T, run string) {
			fakeMethod(t, run, EGG, []int{0}, eggAct, 1, nil)
			os.MkdirAll(filepath.Join(run, NaturalDir), 0o755)
			os.WriteFile(filepath.Join(run, NaturalDir, "neuron_00001.json"), []byte("["), 0o644)
		}, "not a natural-image record"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := t.TempDir()
			c.make(t, run)
			if _, err := ReadRun(run); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one about %q", err, c.want)
			}
		})
	}
}
