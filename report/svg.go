package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// The plots are inline SVG written by hand: a few elements each, no fonts or scripts.

// svgNS is the SVG namespace, the only URL the page holds.
const svgNS = "http://www.w3.org/2000/svg"

// scatter draws EGG (y) against GA (x) activations with the line y = x (dashed) and
// the Huber line y = slope·x, on equal axes from min(0, data) to the data's maximum.
// Each point's tooltip names its neuron.
func scatter(neurons []int, ga, egg []float64, slope float64, title string) string {
	const size, left, bottom, pad = 240.0, 44.0, 36.0, 10.0
	w, h := left+size+pad, pad+size+bottom
	lo, hi := 0.0, math.Inf(-1)
	for i := range ga {
		lo = math.Min(lo, math.Min(ga[i], egg[i]))
		hi = math.Max(hi, math.Max(ga[i], egg[i]))
	}
	if !(hi > lo) {
		hi = lo + 1
	}
	ticks := niceTicks(lo, hi, 5)
	lo, hi = math.Min(lo, ticks[0]), math.Max(hi, ticks[len(ticks)-1])
	px := func(v float64) float64 { return left + (v-lo)/(hi-lo)*size }
	py := func(v float64) float64 { return pad + size - (v-lo)/(hi-lo)*size }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="%s" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" role="img" aria-label="%s">`, svgNS, w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(title))
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>`, left, pad, size, size)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999"/>`, px(t), pad+size, px(t), pad+size+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="10" text-anchor="middle">%s</text>`, px(t), pad+size+15, num(t))
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#999"/>`, left-4, py(t), left, py(t))
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" font-size="10" text-anchor="end">%s</text>`, left-6, py(t)+3, num(t))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="middle">GA activation</text>`, left+size/2, h-4)
	fmt.Fprintf(&b, `<text x="12" y="%g" font-size="11" text-anchor="middle" transform="rotate(-90 12 %g)">EGG activation</text>`, pad+size/2, pad+size/2)
	// Clip the lines to the plot box.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/>`, px(lo), py(lo), px(hi), py(hi))
	if !math.IsNaN(slope) && !math.IsInf(slope, 0) {
		x0, x1 := lineSpan(slope, lo, hi)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c0392b" stroke-width="1.5"><title>Huber fit y = %s x</title></line>`,
			px(x0), py(slope*x0), px(x1), py(slope*x1), num(slope))
	}
	for i := range ga {
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="#2471a3" fill-opacity="0.7"><title>neuron %d: GA %s, EGG %s</title></circle>`,
			px(ga[i]), py(egg[i]), neurons[i], num(ga[i]), num(egg[i]))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// lineSpan returns the x range over [lo, hi] where slope·x stays in [lo, hi] too.
func lineSpan(slope, lo, hi float64) (x0, x1 float64) {
	x0, x1 = lo, hi
	if slope != 0 {
		a, b := lo/slope, hi/slope
		if a > b {
			a, b = b, a
		}
		x0, x1 = math.Max(x0, a), math.Min(x1, b)
	}
	return x0, x1
}

// sparkline draws the energy trace of an EGG run, one point per diffusion step, with
// its first and last values.
func sparkline(v []float32, title string) string {
	const w, h, left, right, pad = 200.0, 64.0, 4.0, 52.0, 6.0
	if len(v) == 0 {
		return ""
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		if x := float64(x); !math.IsNaN(x) && !math.IsInf(x, 0) {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	if math.IsInf(lo, 0) {
		return ""
	}
	if !(hi > lo) {
		lo, hi = lo-1, hi+1
	}
	pw := w - left - right
	px := func(i int) float64 {
		if len(v) == 1 {
			return left + pw/2
		}
		return left + float64(i)/float64(len(v)-1)*pw
	}
	py := func(x float32) float64 { return pad + (hi-float64(x))/(hi-lo)*(h-2*pad) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="%s" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" role="img" aria-label="%s">`, svgNS, w, h, w, h, esc(title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(title))
	b.WriteString(`<polyline fill="none" stroke="#2471a3" stroke-width="1.2" points="`)
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			continue
		}
		fmt.Fprintf(&b, "%.1f,%.1f ", px(i), py(x))
	}
	b.WriteString(`"/>`)
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10">max %s</text>`, w-right+4, pad+8, num(hi))
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10">min %s</text>`, w-right+4, h-pad, num(lo))
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10">%d steps</text>`, w-right+4, h/2+3, len(v))
	b.WriteString(`</svg>`)
	return b.String()
}

// niceTicks returns about n round tick values (1, 2, 2.5 or 5 times a power of ten apart)
// that cover [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	raw := (hi - lo) / float64(max(1, n-1))
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * p
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*p >= raw {
			step = m * p
			break
		}
	}
	var t []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*1e-9; v += step {
		t = append(t, math.Round(v/step)*step)
		if len(t) > 4*n {
			break
		}
	}
	if t[len(t)-1] < hi {
		t = append(t, t[len(t)-1]+step)
	}
	return t
}

// num formats a value for a plot or a table: four significant digits.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func esc(s string) string { return html.EscapeString(s) }
