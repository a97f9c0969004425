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
// Tensors live on a Device. The CPU device runs kernels on goroutines and multiplies
// matrices with the gemm package (OpenBLAS when present, a pure-Go kernel otherwise).
// Kernels reach the hardware only through the Device, which is the seam where a GPU
// backend plugs in.
//
// Reductions accumulate in float64 unless said otherwise; element-wise arithmetic is
// float32 as in PyTorch.
package tensor
