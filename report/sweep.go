package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"egg/imageio"
	"egg/stats"
)

// SweepPoint is one image of an energy-scale sweep (egg meni): the neuron it was made
// for, how natural it is (bits per dimension under the diffusion prior; lower is more
// natural) and its activation under each model role.
type SweepPoint struct {
	Neuron      int
	BitsPerDim  float64
	Activations map[string]float64 // by role: train, within, cross, truth
}

// SweepSeries is one colour of the sweep plots: the EGG images of one energy scale,
// or the natural images.
type SweepSeries struct {
	Name    string // legend label, such as "EGG scale 2"
	Natural bool   // natural images: gray squares instead of coloured dots
	Points  []SweepPoint
}

// Sweep is the content of the sweep page: activation against naturalness, one plot
// per role, one point per image.
type Sweep struct {
	Title  string
	Notes  []string // lines under the title (settings, provenance)
	Roles  []string // the roles plotted, one plot each, in this order
	Series []SweepSeries
}

// sweepColours are the colours of the EGG series, in order (the natural images are
// gray).
var sweepColours = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

const sweepNaturalColour = "#555555"

func sweepColour(s []SweepSeries, k int) string {
	if s[k].Natural {
		return sweepNaturalColour
	}
	c := 0
	for _, o := range s[:k] {
		if !o.Natural {
			c++
		}
	}
	return sweepColours[c%len(sweepColours)]
}

// WriteSweep renders s (RenderSweep) into the file path, atomically.
func WriteSweep(path string, s Sweep) error {
	var buf bytes.Buffer
	if err := RenderSweep(&buf, s); err != nil {
		return err
	}
	if err := imageio.WriteFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("report: writing %s: %w", path, err)
	}
	return nil
}

// RenderSweep writes the sweep page to w: one self-contained HTML page (inline SVG, no
// scripts, no links) with, per role of s.Roles, a scatter plot of activation against
// bits per dimension (one point per image, one colour per series, each series' median
// as a larger outlined marker, the EGG medians joined in series order) and a table of
// the medians. Points whose naturalness or activation is not finite are left out and
// counted in the table.
func RenderSweep(w io.Writer, s Sweep) error {
	if len(s.Series) == 0 {
		return errors.New("report: the sweep has no series to plot")
	}
	if len(s.Roles) == 0 {
		return errors.New("report: the sweep has no role to plot")
	}
	title := s.Title
	if title == "" {
		title = "egg meni: activation against naturalness"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n", esc(title))
	b.WriteString(`<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; }
</style>
</head>
<body>
`)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", esc(title))
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "<p>%s</p>\n", esc(n))
	}
	b.WriteString("<p>Each point is one image: its naturalness, the diffusion prior's negative log-likelihood bound in bits per dimension (left is more natural), against the activation it drives (up is more exciting). Outlined markers are each series' medians; the line joins the EGG medians.</p>\n")
	b.WriteString(`<div class="plots">` + "\n")
	for _, role := range s.Roles {
		b.WriteString(sweepPlot(s.Series, role))
		b.WriteString("\n")
	}
	b.WriteString("</div>\n")
	b.WriteString(sweepTable(s))
	b.WriteString("</body>\n</html>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// sweepXY returns the finite (bits/dim, activation) pairs of a series for role.
func sweepXY(sr SweepSeries, role string) (x, y []float64, neurons []int, dropped int) {
	for _, p := range sr.Points {
		a, ok := p.Activations[role]
		if !ok {
			continue
		}
		if !finite(p.BitsPerDim) || !finite(a) {
			dropped++
			continue
		}
		x, y, neurons = append(x, p.BitsPerDim), append(y, a), append(neurons, p.Neuron)
	}
	return x, y, neurons, dropped
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// sweepPlot draws activation (y) against bits per dimension (x) for role.
func sweepPlot(series []SweepSeries, role string) string {
	const pw, ph, left, bottom, pad, legendW = 320.0, 260.0, 52.0, 38.0, 10.0, 150.0
	w, h := left+pw+pad+legendW, pad+ph+bottom
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ylo, yhi := 0.0, math.Inf(-1)
	points := 0
	for _, sr := range series {
		x, y, _, _ := sweepXY(sr, role)
		points += len(x)
		for i := range x {
			xlo, xhi = math.Min(xlo, x[i]), math.Max(xhi, x[i])
			ylo, yhi = math.Min(ylo, y[i]), math.Max(yhi, y[i])
		}
	}
	title := fmt.Sprintf("%s activation against naturalness (bits/dim), %d images", role, points)
	if points == 0 {
		xlo, xhi, yhi = 0, 1, 1
	}
	if !(xhi > xlo) {
		xlo, xhi = xlo-0.5, xhi+0.5
	}
	if !(yhi > ylo) {
		yhi = ylo + 1
	}
	xt, yt := niceTicks(xlo, xhi, 5), niceTicks(ylo, yhi, 5)
	xlo, xhi = math.Min(xlo, xt[0]), math.Max(xhi, xt[len(xt)-1])
	ylo, yhi = math.Min(ylo, yt[0]), math.Max(yhi, yt[len(yt)-1])
	px := func(v float64) float64 { return left + (v-xlo)/(xhi-xlo)*pw }
	py := func(v float64) float64 { return pad + ph - (v-ylo)/(yhi-ylo)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="%s" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" role="img" aria-label="%s">`, svgNS, w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(title))
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>`, left, pad, pw, ph)
	for _, t := range xt {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999"/>`, px(t), pad+ph, px(t), pad+ph+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="10" text-anchor="middle">%s</text>`, px(t), pad+ph+15, num(t))
	}
	for _, t := range yt {
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#999"/>`, left-4, py(t), left, py(t))
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" font-size="10" text-anchor="end">%s</text>`, left-6, py(t)+3, num(t))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="middle">bits/dim under the prior (lower: more natural)</text>`, left+pw/2, h-4)
	fmt.Fprintf(&b, `<text x="12" y="%g" font-size="11" text-anchor="middle" transform="rotate(-90 12 %g)">%s activation</text>`, pad+ph/2, pad+ph/2, esc(role))
	type med struct{ x, y float64 }
	var eggMedians []med
	for k, sr := range series {
		col := sweepColour(series, k)
		x, y, neurons, _ := sweepXY(sr, role)
		for i := range x {
			tip := fmt.Sprintf("neuron %d, %s: %s bits/dim, %s activation %s", neurons[i], sr.Name, num(x[i]), role, num(y[i]))
			if sr.Natural {
				fmt.Fprintf(&b, `<rect class="pt" x="%.1f" y="%.1f" width="5" height="5" fill="%s" fill-opacity="0.6"><title>%s</title></rect>`,
					px(x[i])-2.5, py(y[i])-2.5, col, esc(tip))
			} else {
				fmt.Fprintf(&b, `<circle class="pt" cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.7"><title>%s</title></circle>`,
					px(x[i]), py(y[i]), col, esc(tip))
			}
		}
		if len(x) > 0 && !sr.Natural {
			eggMedians = append(eggMedians, med{stats.Median(x), stats.Median(y)})
		}
	}
	if len(eggMedians) > 1 {
		b.WriteString(`<polyline fill="none" stroke="#333" stroke-width="1.2" points="`)
		for _, m := range eggMedians {
			fmt.Fprintf(&b, "%.1f,%.1f ", px(m.x), py(m.y))
		}
		b.WriteString(`"/>`)
	}
	for k, sr := range series {
		x, y, _, _ := sweepXY(sr, role)
		if len(x) == 0 {
			continue
		}
		mx, my := stats.Median(x), stats.Median(y)
		tip := fmt.Sprintf("%s, median of %d: %s bits/dim, %s activation %s", sr.Name, len(x), num(mx), role, num(my))
		col := sweepColour(series, k)
		if sr.Natural {
			fmt.Fprintf(&b, `<rect class="median" x="%.1f" y="%.1f" width="11" height="11" fill="%s" stroke="#000" stroke-width="1.5"><title>%s</title></rect>`,
				px(mx)-5.5, py(my)-5.5, col, esc(tip))
		} else {
			fmt.Fprintf(&b, `<circle class="median" cx="%.1f" cy="%.1f" r="6" fill="%s" stroke="#000" stroke-width="1.5"><title>%s</title></circle>`,
				px(mx), py(my), col, esc(tip))
		}
	}
	// The legend, right of the plot.
	lx := left + pw + pad + 8
	for k, sr := range series {
		ly := pad + 8 + float64(k)*16
		col := sweepColour(series, k)
		if sr.Natural {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="8" height="8" fill="%s"/>`, lx, ly-4, col)
		} else {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, lx+4, ly, col)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`, lx+14, ly+4, esc(sr.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// sweepTable is the table of each series' medians: images, bits/dim and the activation
// of each role.
func sweepTable(s Sweep) string {
	var b strings.Builder
	b.WriteString("<table>\n<caption>Medians over images</caption>\n<tr><th>series</th><th>images</th><th>bits/dim</th>")
	for _, r := range s.Roles {
		fmt.Fprintf(&b, "<th>%s activation</th>", esc(r))
	}
	b.WriteString("<th>left out (not finite)</th></tr>\n")
	for k, sr := range s.Series {
		var bpd []float64
		dropped := 0
		for _, p := range sr.Points {
			ok := finite(p.BitsPerDim)
			for _, r := range s.Roles {
				if a, has := p.Activations[r]; has && !finite(a) {
					ok = false
				}
			}
			if !ok {
				dropped++
			}
			if finite(p.BitsPerDim) {
				bpd = append(bpd, p.BitsPerDim)
			}
		}
		fmt.Fprintf(&b, `<tr><td><span class="swatch" style="background:%s"></span>%s</td><td>%d</td><td>%s</td>`,
			sweepColour(s.Series, k), esc(sr.Name), len(sr.Points), num(stats.Median(bpd)))
		for _, r := range s.Roles {
			_, y, _, _ := sweepXY(sr, r)
			fmt.Fprintf(&b, "<td>%s</td>", num(stats.Median(y)))
		}
		fmt.Fprintf(&b, "<td>%d</td></tr>\n", dropped)
	}
	b.WriteString("</table>\n")
	return b.String()
}
