// Package tensor is egg's engine: dense float32 tensors with eager execution and
// reverse-mode automatic differentiation.
//
// # Conventions
//
// Tensors are row-major and contiguous, with shapes and strides as PyTorch has them
// (images are [N, C, H, W]). Every op is one function that checks shapes, runs its
// kernel and, when an input requires a gradient, records a node whose backward
// closure sits right below the forward code. Gradients flow only where something asks
// for them: an op records nothing when none of its inputs requires a gradient, and a
// backward closure computes the gradient of an input only when that input requires it.
// Gradients accumulate (+=) into leaves, as in PyTorch.
//
// Programmer errors (mismatched shapes, bad axes) panic with the op name and the
// shapes; the engine has no user-facing input errors.
//
// # Devices
//
// Tensors live on a Device, which owns their storage. The CPU device keeps the
// elements in Go slices, runs kernels on goroutines and multiplies matrices with
// the gemm package (a pure-Go AVX2 kernel or OpenBLAS).
//
// An accelerated device (NewAccelerated) keeps them in an Accelerator's memory (a
// GPU's, package cuda). When the Accelerator also implements Kernels, the ops that
// have a device kernel run there: Map for the element-wise functions and their
// derivatives, Binary for broadcast arithmetic, Strided and Scatter for Permute,
// Expand, Slice, Concat and their gradients, SumAxis for sums and the adjoint of
// broadcasting, GEMM for MatMul, Linear and convolutions (after Im2Col, before
// Col2Im), GroupNorm, Softmax, LogSoftmax and UpsampleNearest2D. Every other op
// runs on the host kernels on a host copy of its inputs, and its result goes back
// to the device when a device kernel next reads it: a model runs unchanged, and an
// op is moved to the device by giving it a kernel. Autodiff, shapes and
// broadcasting are the same on every device.
//
// Each storage holds a device copy and a host copy, each either current or stale:
// a device kernel reads the device copy (uploading the host copy first if only it
// is current) and makes the host copy stale when it writes; host access downloads
// when needed and makes the device copy stale. Host access from outside the
// package is explicit: Values (a copy), SetValues, FromSlice, and Data, which maps
// the elements into host memory until the next op uses the tensor. Device memory
// is given back when the Go collector finds a tensor dead; the device collects
// garbage itself after allocating a tenth of its memory and when an allocation
// fails, so that dead tensors do not hold device memory long, and keeps the last
// few storages handed to kernels reachable until their kernels are queued. A device failure (out of
// memory, a failed launch) panics with a *DeviceError; Catch turns it into an
// error at a command's top.
//
// NewHostAccelerator is an Accelerator in host memory with plain Go reference
// kernels: the tests run the whole suite on it (EGG_TEST_DEVICE=hostaccel or
// hostkernels), and a GPU's kernels are checked against it.
//
// Reductions accumulate in float64 unless said otherwise; element-wise arithmetic is
// float32 as in PyTorch.
package tensor
