package pool

import (
	"fmt"
	"image"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"math"
	"os"
	"path/filepath"
	"strings"
)

// isImage reports whether name has the extension of a format Build reads.
func isImage(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// gray is a grayscale image, row-major float32 values in [0, 255].
type gray struct {
	w, h int
	pix  []float32
}

// decodeGray reads the image file path as gray (BT.601 luma of the stored values).
func decodeGray(path string) (*gray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return toGray(img), nil
}

// toGray converts img to gray: the Y channel of YCbCr images, the value of gray
// images, 0.299 R + 0.587 G + 0.114 B otherwise (alpha ignored).
func toGray(img image.Image) *gray {
	b := img.Bounds()
	g := &gray{w: b.Dx(), h: b.Dy(), pix: make([]float32, b.Dx()*b.Dy())}
	switch m := img.(type) {
	case *image.YCbCr:
		for y := 0; y < g.h; y++ {
			row := m.Y[m.YOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < g.w; x++ {
				g.pix[y*g.w+x] = float32(row[x])
			}
		}
	case *image.Gray:
		for y := 0; y < g.h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < g.w; x++ {
				g.pix[y*g.w+x] = float32(row[x])
			}
		}
	case *image.NRGBA:
		for y := 0; y < g.h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < g.w; x++ {
				g.pix[y*g.w+x] = luma(float64(row[4*x]), float64(row[4*x+1]), float64(row[4*x+2]))
			}
		}
	case *image.RGBA:
		for y := 0; y < g.h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < g.w; x++ {
				g.pix[y*g.w+x] = luma(float64(row[4*x]), float64(row[4*x+1]), float64(row[4*x+2]))
			}
		}
	default:
		for y := 0; y < g.h; y++ {
			for x := 0; x < g.w; x++ {
				r, gg, bb, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				g.pix[y*g.w+x] = luma(float64(r)/257, float64(gg)/257, float64(bb)/257)
			}
		}
	}
	return g
}

// luma is the BT.601 luma of 8-bit-scale values.
func luma(r, g, b float64) float32 { return float32(0.299*r + 0.587*g + 0.114*b) }

// resize returns g downsampled to w x h pixels (w <= g.w, h <= g.h) by area
// averaging: each output pixel is the mean of the input area it covers.
func (g *gray) resize(w, h int) *gray {
	if w == g.w && h == g.h {
		return g
	}
	xw := areaWeights(g.w, w)
	yw := areaWeights(g.h, h)
	tmp := make([]float32, g.h*w) // rows resized
	for y := 0; y < g.h; y++ {
		src := g.pix[y*g.w : (y+1)*g.w]
		dst := tmp[y*w : (y+1)*w]
		for x, ws := range xw {
			var s float64
			for _, t := range ws {
				s += t.w * float64(src[t.i])
			}
			dst[x] = float32(s)
		}
	}
	out := &gray{w: w, h: h, pix: make([]float32, w*h)}
	acc := make([]float64, w)
	for y, ws := range yw {
		clear(acc)
		for _, t := range ws {
			row := tmp[t.i*w : (t.i+1)*w]
			for x, v := range row {
				acc[x] += t.w * float64(v)
			}
		}
		dst := out.pix[y*w : (y+1)*w]
		for x, v := range acc {
			dst[x] = float32(v)
		}
	}
	return out
}

// tap is one input sample's weight in an output sample.
type tap struct {
	i int
	w float64
}

// areaWeights returns, for each of m output samples over n input samples (m <= n),
// the input samples it covers and their weights (overlap lengths, summing to 1).
func areaWeights(n, m int) [][]tap {
	out := make([][]tap, m)
	step := float64(n) / float64(m)
	for o := range out {
		lo, hi := float64(o)*step, float64(o+1)*step
		for i := int(math.Floor(lo)); i < n && float64(i) < hi; i++ {
			ov := math.Min(hi, float64(i+1)) - math.Max(lo, float64(i))
			if ov > 1e-12 {
				out[o] = append(out[o], tap{i, ov / step})
			}
		}
	}
	return out
}

// patch returns the s x s patch of g at (x, y) rounded to uint8.
func (g *gray) patch(x, y, s int) []uint8 {
	p := make([]uint8, s*s)
	for r := 0; r < s; r++ {
		row := g.pix[(y+r)*g.w+x : (y+r)*g.w+x+s]
		for c, v := range row {
			p[r*s+c] = uint8(math.Round(math.Min(math.Max(float64(v), 0), 255)))
		}
	}
	return p
}

// Contrast returns the RMS contrast of pixels: the standard deviation (ddof 0) of
// their values divided by 255.
func Contrast(pixels []uint8) float64 {
	if len(pixels) == 0 {
		return 0
	}
	var s, ss float64
	for _, v := range pixels {
		s += float64(v)
	}
	mean := s / float64(len(pixels))
	for _, v := range pixels {
		d := float64(v) - mean
		ss += d * d
	}
	return math.Sqrt(ss/float64(len(pixels))) / 255
}

// mirror returns the left-right mirror image of the s x s patch p.
func mirror(p []uint8, s int) []uint8 {
	q := make([]uint8, len(p))
	for r := 0; r < s; r++ {
		for c := 0; c < s; c++ {
			q[r*s+c] = p[r*s+s-1-c]
		}
	}
	return q
}
