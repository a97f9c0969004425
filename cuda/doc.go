// Package cuda is egg's CUDA backend: a *Device is an NVIDIA GPU that implements
// tensor.Accelerator (its memory) and tensor.Kernels (the ops that run on it).
//
// # No cgo
//
// The package is plain Go and builds with CGO_ENABLED=0 on any platform. It loads the
// CUDA driver (libcuda.so.1) and cuBLAS at run time with purego, only when Open is
// called, so a program that never opens a GPU runs on machines without CUDA; there,
// Open returns an error. Loading works on linux/amd64 and linux/arm64.
//
// # Finding the libraries
//
// Open looks for libcuda.so.1 and for libcublas.so.13, .12 or .11 (with the
// libcublasLt of the same directory) in, in order: the directories of EGG_CUDA_LIBS
// (a colon-separated list), those of LD_LIBRARY_PATH, the system directories
// (/usr/lib/x86_64-linux-gnu, /usr/local/cuda/lib64, /usr/local/nvidia/lib64,
// /usr/lib64, WSL's /usr/lib/wsl/lib and a few more), then the NVIDIA pip wheels of
// Python environments, site-packages/nvidia/*/lib under $VIRTUAL_ENV, $CONDA_PREFIX,
// /opt/*/.venv, /opt/* (such as /opt/conda), ~/.local, /usr/local and /usr (where
// PyTorch's installs put cuBLAS), and last the dynamic loader's own search. Set
// EGG_CUDA_LIBS to choose the libraries.
//
// # Kernels
//
// The kernels (kernels.cu) are compiled ahead of time to PTX for sm_80 with clang-14
// (gen.sh; no CUDA toolkit is needed) and the PTX is embedded in the package. Open
// JIT-compiles it with the driver for the GPU at hand (Ampere and newer), so running
// needs only the driver and cuBLAS, not NVRTC or a toolkit. The tests regenerate the
// PTX when clang-14 is installed and fail if it differs from the embedded one, so a
// kernel that does not compile, or a kernels.ptx left stale, cannot land. The same
// kernels also run on the CPU in the tests under a small model of CUDA's threads
// (testdata/emu.cpp), so their results are checked against Go references on machines
// without a GPU too.
//
// Kernels follow the host's kernels of the tensor package: the same formulas,
// reductions accumulated in float64, and the transcendental functions written out
// without libdevice (SLEEF's expf, as the host's AVX2 kernels use, and float64 exp,
// log, tanh and pow rounded to float32, as the host's float64 math).
//
// # Precision
//
// GEMMs run in cuBLAS. With Options.Precision "fp32" (the default) they use full
// float32 arithmetic (CUBLAS_DEFAULT_MATH, no TF32), within float32 rounding of the
// host's; "tf32" lets cuBLAS use TF32 tensor cores (CUBLAS_TF32_TENSOR_OP_MATH),
// faster and about 1e-3 relative (NVIDIA_TF32_OVERRIDE=0 in the environment turns
// TF32 off whatever the option says); "fp16" and "bf16" call
// cublasGemmStridedBatchedEx with float32 operands and the compute types
// CUBLAS_COMPUTE_32F_FAST_16F / _16BF: cuBLAS rounds the operands to the reduced
// type for the tensor cores and sums in float32, as PyTorch's autocast does for
// matrix products and convolutions (EGG's reference runs its UNet in fp16). Every
// other op, the norms, the softmax and the sampler stay float32.
//
// # Memory
//
// Alloc serves requests from a caching allocator: sizes are rounded up to a multiple
// of 512 bytes up to 1 MiB and of 2 MiB above, freed blocks wait in a free list per
// size and serve later requests of that size, so a loop over the same shapes stops
// allocating from the driver after its first iteration (Stats counts). When the
// driver runs out of memory the allocator gives its free blocks back and tries once
// more before Alloc returns an error (the tensor package then collects garbage and
// retries). Upload and Download wait for their copy; every other call is queued on
// the device's one stream.
package cuda
