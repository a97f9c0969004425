package report

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// sweepElements calls f on every element of the tree under n.
func sweepElements(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		sweepElements(c, f)
	}
}

func sweepAttr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func testSweep() Sweep {
	pt := func(n int, bpd, train, truth float64) SweepPoint {
		return SweepPoint{Neuron: n, BitsPerDim: bpd, Activations: map[string]float64{"train": train, "truth": truth}}
	}
	return Sweep{
		Title: "sweep <test>",
		Notes: []string{"prior p.safetensors & K = 50"},
		Roles: []string{"train", "truth"},
		Series: []SweepSeries{
			{Name: "EGG scale 1", Points: []SweepPoint{pt(0, 3.1, 1, 2), pt(1, 3.3, 2, 1), pt(2, math.NaN(), 1, 1)}},
			{Name: "EGG scale 10", Points: []SweepPoint{pt(0, 5.2, 4, 3), pt(1, 6.1, 5, 4)}},
			{Name: "natural (top 2)", Natural: true, Points: []SweepPoint{pt(0, 2.1, 0.5, 0.4), pt(0, 2.3, 0.4, 0.3),
				pt(1, 2.2, 0.9, math.Inf(1)), {Neuron: 1, BitsPerDim: 2.4, Activations: map[string]float64{"train": 0.8}}}},
		},
	}
}

func TestRenderSweep(t *testing.T) {
	for _, c := range []struct {
		name                string
		edit                func(s *Sweep)
		svgs, dots, squares int // points drawn over all plots
		medians             int
		want                []string
	}{
		{"two roles", func(*Sweep) {}, 2, 2 * 4, 4 + 2, 2 * 3,
			[]string{"sweep &lt;test&gt;", "prior p.safetensors &amp; K = 50", "EGG scale 10", "natural (top 2)", "truth activation"}},
		{"train only", func(s *Sweep) { s.Roles = []string{"train"} }, 1, 4, 4, 3, []string{"train activation"}},
		{"no natural images", func(s *Sweep) { s.Series = s.Series[:2] }, 2, 8, 0, 4, []string{"EGG scale 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := testSweep()
			c.edit(&s)
			var buf bytes.Buffer
			if err := RenderSweep(&buf, s); err != nil {
				t.Fatal(err)
			}
			page := buf.String()
			doc, err := html.Parse(strings.NewReader(page))
			if err != nil {
				t.Fatal(err)
			}
			var svgs, dots, squares, medians, polylines int
			sweepElements(doc, func(n *html.Node) {
				switch n.Data {
				case "script", "link", "iframe", "object", "embed", "img":
					t.Errorf("the page has a <%s> element", n.Data)
				case "svg":
					svgs++
				case "polyline":
					polylines++
				}
				switch cls := sweepAttr(n, "class"); {
				case cls == "pt" && n.Data == "circle":
					dots++
				case cls == "pt" && n.Data == "rect":
					squares++
				case cls == "median":
					medians++
				}
				for _, a := range n.Attr {
					if a.Key == "href" || a.Key == "src" || strings.HasSuffix(a.Key, ":href") {
						t.Errorf("<%s %s=%q> refers outside the page", n.Data, a.Key, a.Val)
					}
				}
			})
			if svgs != c.svgs || dots != c.dots || squares != c.squares || medians != c.medians {
				t.Errorf("%d plots, %d dots, %d squares, %d medians; want %d, %d, %d, %d",
					svgs, dots, squares, medians, c.svgs, c.dots, c.squares, c.medians)
			}
			if polylines != c.svgs {
				t.Errorf("%d median lines; want one per plot (%d)", polylines, c.svgs)
			}
			rest := strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
			if i := strings.Index(strings.ToLower(rest), "http"); i >= 0 {
				t.Errorf("the page refers to a URL: %q", rest[max(0, i-40):min(len(rest), i+40)])
			}
			if strings.Contains(page, "NaN") || strings.Contains(page, "Inf") {
				t.Error("the page shows a non-finite number")
			}
			for _, w := range c.want {
				if !strings.Contains(page, w) {
					t.Errorf("the page lacks %q", w)
				}
			}
		})
	}
}

// TestSweepMedians checks the medians table: per series, the median bits/dim over
// its finite points and the median activation per role.
func TestSweepMedians(t *testing.T) {
	s := testSweep()
	page := sweepTable(s)
	for _, want := range []string{
		"EGG scale 1</td><td>3</td><td>3.2</td><td>1.5</td><td>1.5</td><td>1</td>",
		"EGG scale 10</td><td>2</td><td>5.65</td><td>4.5</td><td>3.5</td><td>0</td>",
		"natural (top 2)</td><td>4</td><td>2.25</td><td>0.65</td><td>0.35</td><td>1</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the table lacks the row %q:\n%s", want, page)
		}
	}
}

func TestWriteSweep(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sweep.html")
	if err := WriteSweep(path, testSweep()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
	for _, c := range []struct {
		name string
		s    Sweep
		path string
		want string
	}{
		{"no series", Sweep{Roles: []string{"train"}}, path, "no series"},
		{"no roles", Sweep{Series: testSweep().Series}, path, "no role"},
		{"bad folder", testSweep(), filepath.Join(dir, "missing", "sweep.html"), "writing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := WriteSweep(c.path, c.s); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want %q", err, c.want)
			}
		})
	}
}
