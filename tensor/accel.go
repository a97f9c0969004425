package tensor

import "fmt"

// Buffer is the address of float32 elements in an accelerator's memory: element i
// of a buffer b is at b + 4*i. Zero is no buffer.
type Buffer uint64

// At returns the address of element i of b.
func (b Buffer) At(i int) Buffer { return b + Buffer(4*i) }

// Accelerator is the memory of a device that keeps tensors off the host (a GPU).
// Every call is ordered after the calls made before it (one stream); Download
// returns once the data is on the host. Methods other than Alloc panic with a
// *DeviceError when the device fails.
//
// An accelerator that also implements Kernels runs the ops it has kernels for on
// the device; every other op runs on the host on a copy (see doc.go).
type Accelerator interface {
	// Name names the device for logs, e.g. "cuda:0 (NVIDIA H200)".
	Name() string
	// Alloc returns room for n float32 elements with unspecified contents, or an
	// error when the device has no room (the tensor package then collects garbage
	// and retries once).
	Alloc(n int) (Buffer, error)
	// Free gives back a buffer of n elements made by Alloc.
	Free(b Buffer, n int)
	// Upload copies src into dst.
	Upload(dst Buffer, src []float32)
	// Download copies len(dst) elements of src to the host.
	Download(dst []float32, src Buffer)
	// Fill sets n elements of dst to v.
	Fill(dst Buffer, n int, v float32)
	// Copy copies n elements from src to dst (the ranges do not overlap).
	Copy(dst, src Buffer, n int)
	// Sync waits until every call made so far has finished.
	Sync()
}

// DeviceError is the value the tensor package and accelerators panic with when a
// device fails (out of memory, a failed launch). Catch turns it into an error.
type DeviceError struct {
	Op  string // what was being done, e.g. "alloc 1.5 GiB"
	Err error
}

func (e *DeviceError) Error() string { return fmt.Sprintf("tensor: device: %s: %v", e.Op, e.Err) }

// Unwrap returns the underlying error.
func (e *DeviceError) Unwrap() error { return e.Err }

// Catch runs f and returns the *DeviceError it panicked with, if any; any other
// panic goes on. Commands wrap a run in it so that a device failure is an error.
func Catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			de, ok := r.(*DeviceError)
			if !ok {
				panic(r)
			}
			err = de
		}
	}()
	f()
	return nil
}

// MapOp names an element-wise function of one tensor for Kernels.Map. P0 and P1
// are its parameters where it has any.
type MapOp int32

// The element-wise functions (y = f(x); P0, P1 as noted).
const (
	MapScale     MapOp = iota // y = x*P0
	MapAddScalar              // y = x+P0
	MapExp                    // y = e^x
	MapLog                    // y = ln x
	MapSqrt                   // y = sqrt x
	MapPow                    // y = x^P0
	MapAbs                    // y = |x|
	MapClamp                  // y = min(max(x, P0), P1)
	MapSigmoid                // y = 1/(1+e^-x)
	MapSiLU                   // y = x*sigmoid(x)
	MapReLU                   // y = max(x, 0)
	MapELU                    // y = x > 0 ? x : P0*(e^x-1)
	MapTanh                   // y = tanh x
	MapSoftplus               // y = ln(1+e^x), PyTorch's threshold 20
)

// BinaryOp names an element-wise function of two tensors for Kernels.Binary.
type BinaryOp int32

// The element-wise functions of two tensors.
const (
	BinaryAdd BinaryOp = iota
	BinarySub
	BinaryMul
	BinaryDiv
)

// ConvGeometry is one 2D convolution (groups 1) as Kernels.Im2Col sees it.
type ConvGeometry struct {
	N, C, H, W       int // input [N, C, H, W]
	KH, KW           int // kernel taps
	OH, OW           int // output size
	Stride, Pad, Dil int // the same on both axes
}

// Kernels are the device kernels an Accelerator may offer. Buffers hold float32
// elements; shapes and strides are in elements; every call is asynchronous and
// ordered on the accelerator's stream. Semantics are those of the host kernels of
// the op named in each comment (same formulas, float32, results within float32
// rounding of the host's).
type Kernels interface {
	// Map writes y[i] = f(x[i]) for i < n (Scale, Exp, SiLU, ...).
	Map(op MapOp, y, x Buffer, n int, p0, p1 float32)
	// MapGrad writes gx[i] = g[i] * f'(x[i]), where y = f(x) is given too. x is
	// read by Log, Pow, Abs, Clamp, SiLU, ReLU, ELU and Softplus, y by Exp, Sqrt,
	// Sigmoid and Tanh, neither by Scale and AddScalar; one not read may be zero.
	MapGrad(op MapOp, gx, g, x, y Buffer, n int, p0, p1 float32)
	// Binary writes the contiguous out of shape (rank <= 6) with
	// out[idx] = a[idx . sa] op b[idx . sb] (strides 0 along broadcast axes).
	Binary(op BinaryOp, out, a, b Buffer, shape, sa, sb []int)
	// Strided writes the contiguous dst of shape (rank <= 6) with dst[idx] =
	// src[idx . st] (Permute, Slice, Expand, Concat).
	Strided(dst, src Buffer, shape, st []int)
	// Scatter writes dst[idx . dstSt] = src[idx] for the contiguous src of shape
	// (rank <= 6): the strided destination of Concat and of Slice's gradient. Each
	// destination element is written at most once (no zero strides).
	Scatter(dst Buffer, dstSt []int, src Buffer, shape []int)
	// SumAxis writes out[o*inner+i] = sum over j < n of x[(o*n+j)*inner+i].
	SumAxis(out, x Buffer, outer, n, inner int)
	// GEMM computes, for each of batch products, row-major
	// C_i = alpha*op(A_i)*op(B_i) + beta*C_i with C_i [m, n] and op(A_i) [m, k],
	// where X_i starts at X + stride*i (stride 0 shares one matrix) and ld is the
	// row stride (at least the stored row length, and 1). m, n or batch 0 does
	// nothing; callers do not pass k 0. TF32 is used only when the accelerator was
	// asked for it.
	GEMM(ta, tb bool, m, n, k int, alpha float32, a Buffer, lda, strideA int,
		b Buffer, ldb, strideB int, beta float32, c Buffer, ldc, strideC int, batch int)
	// Im2Col writes cols [N, C*KH*KW, OH*OW] from x [N, C, H, W] (zeros outside).
	Im2Col(cols, x Buffer, g ConvGeometry)
	// Col2Im writes gx [N, C, H, W] as the sum over taps of cols [N, C*KH*KW, OH*OW]
	// (the adjoint of Im2Col; gx is overwritten).
	Col2Im(gx, cols Buffer, g ConvGeometry)
	// GroupNorm normalises x [n, c, hw] over groups of c/groups channels: y =
	// (x-mean)*rstd*w[ch] + b[ch] (w, b zero: none), and writes mean and rstd
	// [n*groups] for the gradient (float32, where the host keeps float64).
	GroupNorm(y, mean, rstd, x, w, b Buffer, n, c, hw, groups int, eps float32)
	// GroupNormGrad writes gx (and gw, gb [c] when non-zero) from g, x, mean, rstd
	// and w (zero: ones).
	GroupNormGrad(gx, gw, gb, g, x, mean, rstd, w Buffer, n, c, hw, groups int)
	// Softmax writes y = softmax (log: log-softmax) of x [outer, n, inner] along n.
	Softmax(y, x Buffer, outer, n, inner int, log bool)
	// SoftmaxGrad writes gx from g and y = Softmax(x) (log: y = LogSoftmax(x)).
	SoftmaxGrad(gx, g, y Buffer, outer, n, inner int, log bool)
	// Upsample writes out [p, h*s, w*s] = nearest upsampling of x [p, h, w].
	Upsample(out, x Buffer, p, h, w, s int)
	// UpsampleGrad writes gx [p, h, w] = sum of g [p, h*s, w*s] over each s x s block.
	UpsampleGrad(gx, g Buffer, p, h, w, s int)
	// MaxPool writes out [P, OH, OW] = the maximum of each window of x [P, H, W]
	// (padding -Inf; a NaN wins, the last of several), and arg, the window's
	// winner as an index within its plane, stored as int32 bits.
	MaxPool(out, arg, x Buffer, g PoolGeometry)
	// MaxPoolGrad writes gx [P, H, W] = the sum of g [P, OH, OW] over the outputs
	// whose winner (arg) is that pixel, in output order, in float32 (as the host
	// adds them).
	MaxPoolGrad(gx, g, arg Buffer, pg PoolGeometry)
	// GridSample writes out [N, C, P], bilinear samples of x at grid's points
	// (zero padding), as tensor's GridSample.
	GridSample(out, x, grid Buffer, g GridGeometry)
	// GridSampleGradX writes gx [N, C, H, W], the adjoint of GridSample applied to
	// g [N, C, P]: each pixel's sum of its corner weights times g.
	GridSampleGradX(gx, g, grid Buffer, gg GridGeometry)
	// GridSampleGradGrid writes ggrid [N, P, 2], the gradient of the samples with
	// respect to the grid, summed over channels with g.
	GridSampleGradGrid(ggrid, g, x, grid Buffer, gg GridGeometry)
}

// GridGeometry is one GridSample as Kernels see it: x [N, C, H, W] sampled at P
// points per image, grid [N, P, 2].
type GridGeometry struct {
	N, C, H, W, P int
	AlignCorners  bool
}

// PoolGeometry is one 2D pooling as Kernels.MaxPool sees it.
type PoolGeometry struct {
	P, H, W int // input planes [P, H, W]
	OH, OW  int // output size
	K, S    int // window and stride, the same on both axes
	Pad     int
}
