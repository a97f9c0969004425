#!/bin/sh
# gen.sh regenerates kernels.ptx from kernels.cu with Debian's clang-14, which needs
# no CUDA install: the kernels are embedded in the Go package as sm_80 PTX, which the
# driver JIT-compiles for the GPU at hand (sm_80 and newer). Run it (or go generate)
# after editing kernels.cu and commit both files; TestPTXUpToDate fails when they
# disagree. apt-get install clang-14 provides the compiler.
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-14}
if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "gen.sh: $CLANG not found (apt-get install clang-14)" >&2
	exit 1
fi
"$CLANG" -x cuda --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch=sm_80 -O3 -S -o kernels.ptx kernels.cu
if grep -q '\.extern \.func' kernels.ptx; then
	echo "gen.sh: kernels.ptx calls external functions (libdevice?):" >&2
	grep '\.extern \.func' kernels.ptx >&2
	exit 1
fi
