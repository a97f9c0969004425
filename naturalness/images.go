package naturalness

import (
	"fmt"
	"math"

	"egg/tensor"
)

// FromUint8 maps n gray uint8 patches of size x size pixels (flat, [n, size, size],
// as egg pool stores them) to the diffusion's [-1, 1] space, v/127.5 - 1 (0 is -1,
// 255 is 1), repeated over channels: [n, channels, size, size]. These are exactly the
// 8-bit values the decoder term is a likelihood of.
func FromUint8(dev *tensor.Device, pixels []uint8, n, size, channels int) (*tensor.Tensor, error) {
	if n < 1 || size < 1 || channels < 1 {
		return nil, fmt.Errorf("naturalness: %d patches of %dx%d pixels in %d channels: want positive counts", n, size, size, channels)
	}
	per := size * size
	if len(pixels) != n*per {
		return nil, fmt.Errorf("naturalness: %d pixels for %d patches of %dx%d", len(pixels), n, size, size)
	}
	v := make([]float32, n*channels*per)
	for i := range n {
		src := pixels[i*per : (i+1)*per]
		for c := range channels {
			dst := v[(i*channels+c)*per : (i*channels+c+1)*per]
			for k, p := range src {
				dst[k] = float32(p)/127.5 - 1
			}
		}
	}
	return tensor.FromSlice(dev, v, n, channels, size, size), nil
}

// Fit returns the images x [N, C, H, W] in the prior's shape [N, channels, size,
// size]: resized bilinearly (align_corners false) when H or W differs from size, a
// gray image repeated over the prior's channels, a colour image averaged to gray for a
// gray prior. Other channel counts are an error. The result is not quantised (see
// Quantize).
func Fit(x *tensor.Tensor, channels, size int) (*tensor.Tensor, error) {
	if x == nil || x.Rank() != 4 {
		return nil, fmt.Errorf("naturalness: images of shape %v; want [N, C, H, W]", shapeOf(x))
	}
	if channels < 1 || size < 1 {
		return nil, fmt.Errorf("naturalness: a prior of %d channels and size %d", channels, size)
	}
	x = x.Detach()
	if x.Dim(2) != size || x.Dim(3) != size {
		x = tensor.ResizeBilinear(x, size, size, false)
	}
	switch c := x.Dim(1); {
	case c == channels:
	case c == 1:
		x = tensor.Expand(x, x.Dim(0), channels, size, size).Clone()
	case channels == 1:
		x = tensor.Mean(x, true, 1)
	default:
		return nil, fmt.Errorf("naturalness: images of %d channels for a prior of %d: want 1 or %d", c, channels, channels)
	}
	return x.Detach(), nil
}

// Quantize returns x clamped to [-1, 1] and rounded to the nearest of the 256 8-bit
// levels k/127.5 - 1, as saving the image as an 8-bit PNG would: the bound's decoder
// term is a likelihood of such values. Values already on the grid (FromUint8's) are
// unchanged.
func Quantize(x *tensor.Tensor) *tensor.Tensor {
	src := x.Values()
	v := make([]float32, len(src))
	for k, p := range src {
		q := math.Round((math.Max(-1, math.Min(1, float64(p))) + 1) * 127.5)
		v[k] = float32(q)/127.5 - 1
	}
	return tensor.FromSlice(x.Device(), v, x.Shape()...)
}

func shapeOf(x *tensor.Tensor) []int {
	if x == nil {
		return nil
	}
	return x.Shape()
}
