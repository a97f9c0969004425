// Package imageio turns image tensors into files: PNG images and grids, written
// atomically (a temporary file in the same folder, then a rename), so that an
// interrupted run never leaves a half-written image.
//
// Tensors are [N, C, H, W] float32 with C = 1 (grayscale) or 3 (RGB); values map
// to pixels linearly from a given range, clamped, as guided-diffusion does for
// [-1, 1]: round((v + 1) * 127.5) in [0, 255].
package imageio

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"

	"egg/atomicfile"
)

// Range maps tensor values to pixel intensities: Lo becomes 0 and Hi 255.
type Range struct{ Lo, Hi float32 }

// Diffusion is the range of diffusion-model images.
var Diffusion = Range{-1, 1}

func (r Range) pixel(v float32) uint8 {
	f := (float64(v) - float64(r.Lo)) / (float64(r.Hi) - float64(r.Lo)) * 255
	if math.IsNaN(f) {
		return 0
	}
	return uint8(math.Max(0, math.Min(255, math.Round(f))))
}

// Image converts one image [C, H, W] (C = 1 or 3) stored in data to an image.Image.
func Image(data []float32, c, h, w int, r Range) (image.Image, error) {
	if len(data) != c*h*w {
		return nil, fmt.Errorf("imageio: %d values for a %dx%dx%d image", len(data), c, h, w)
	}
	switch c {
	case 1:
		img := image.NewGray(image.Rect(0, 0, w, h))
		for i, v := range data {
			img.Pix[i] = r.pixel(v)
		}
		return img, nil
	case 3:
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				o := img.PixOffset(x, y)
				for ch := 0; ch < 3; ch++ {
					img.Pix[o+ch] = r.pixel(data[(ch*h+y)*w+x])
				}
				img.Pix[o+3] = 255
			}
		}
		return img, nil
	}
	return nil, fmt.Errorf("imageio: %d channels; want 1 (grayscale) or 3 (RGB)", c)
}

// Grid lays out n images [n, C, H, W] in rows of cols images with pad pixels of
// gray between them.
func Grid(data []float32, n, c, h, w, cols, pad int, r Range) (image.Image, error) {
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(n))))
	}
	rows := (n + cols - 1) / cols
	W, H := cols*w+(cols+1)*pad, rows*h+(rows+1)*pad
	grid := image.NewNRGBA(image.Rect(0, 0, W, H))
	for i := range grid.Pix {
		grid.Pix[i] = 128
	}
	size := c * h * w
	for k := 0; k < n; k++ {
		img, err := Image(data[k*size:(k+1)*size], c, h, w, r)
		if err != nil {
			return nil, err
		}
		x0, y0 := pad+(k%cols)*(w+pad), pad+(k/cols)*(h+pad)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				grid.Set(x0+x, y0+y, color.NRGBAModel.Convert(img.At(x, y)))
			}
		}
	}
	return grid, nil
}

// EncodePNG returns the PNG encoding of img.
func EncodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("imageio: %w", err)
	}
	return buf.Bytes(), nil
}

// WritePNG encodes img and writes it to path atomically.
func WritePNG(path string, img image.Image) error {
	b, err := EncodePNG(img)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b)
}

// WriteFileAtomic writes data to path through a temporary file in the same folder,
// synced and renamed into place, so readers never see a partial file
// (atomicfile.WriteBytes). Errors say which path failed and why (a missing or
// unwritable folder, a full disk).
func WriteFileAtomic(path string, data []byte) error { return atomicfile.WriteBytes(path, data) }
