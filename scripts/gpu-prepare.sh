#!/usr/bin/env bash
# Prepares, on a CPU machine, everything scripts/gpu-check.sh needs on the GPU
# machine, in the ignored folder .gpu/ (carry it): a static egg binary, static
# test binaries of the packages with device paths, the reference vectors, the
# PyTorch benchmark script and guided-diffusion's source (for PyTorch's side of
# the speed table), all compressed to stay under the 64 MiB a device call carries.
#
# Usage: scripts/gpu-prepare.sh [--guided-diffusion PATH] [--refvectors PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
gd=${GUIDED_DIFFUSION:-}
ref=${EGG_REFVECTORS:-$(cd .. && pwd)/shared/refvectors}
while [[ $# -gt 0 ]]; do
  case $1 in
    --guided-diffusion) gd=$2; shift 2 ;;
    --refvectors) ref=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "gpu-prepare: unknown option $1" >&2; exit 2 ;;
  esac
done
rm -rf .gpu && mkdir -p .gpu/bin
export CGO_ENABLED=0
flags=(-trimpath -ldflags='-s -w')
go build "${flags[@]}" -o .gpu/bin/egg ./cmd/egg
cp .gpu/bin/egg .gpu/egg-host
go build "${flags[@]}" -o .gpu/bin/egg256 ./bench/egg256
for p in cuda tensor adm encoder guidance diffusion ascent; do
  go test -c "${flags[@]}" -o ".gpu/bin/$p.test" "./$p"
done
xz -T0 -6 .gpu/bin/*
if [[ -d $ref ]]; then
  tar -C "$(dirname "$ref")" -cJf .gpu/refvectors.tar.xz "$(basename "$ref")"
else
  echo "gpu-prepare: no reference vectors at $ref: the parity part of the check will fail" >&2
fi
cp bench/torch_bench.py bench/report.py scripts/gpu-check.sh scripts/mei_same.py .gpu/
# The CPU's MEIs on the built-in defaults, made here so that GPU time goes to the
# GPU: gpu-check.sh compares its GPU MEIs with these.
./.gpu/egg-host mei --device cpu --method egg --neurons 0-7 --out .gpu/mei-cpu > .gpu/mei-cpu.log 2>&1 ||
  { echo "gpu-prepare: egg mei on the CPU failed: see .gpu/mei-cpu.log" >&2; exit 1; }
# The same on the CPU's other GEMM (another summation order), where OpenBLAS is
# installed: the CPU's own spread, beside which the GPU's is read.
if ldconfig -p 2>/dev/null | grep libopenblas >/dev/null; then
  EGG_GEMM=openblas ./.gpu/egg-host mei --device cpu --method egg --neurons 0-7 --out .gpu/mei-cpu-openblas > .gpu/mei-cpu-openblas.log 2>&1 ||
    { echo "gpu-prepare: egg mei on the CPU with OpenBLAS failed: see .gpu/mei-cpu-openblas.log" >&2; exit 1; }
fi
rm -f .gpu/egg-host
if [[ -n $gd && -d $gd/guided_diffusion ]]; then
  tar -C "$gd" -cJf .gpu/guided-diffusion.tar.xz guided_diffusion
else
  echo "gpu-prepare: no guided-diffusion source (--guided-diffusion PATH): PyTorch's UNet cases will be skipped" >&2
fi
du -sh .gpu
echo "gpu-prepare: carry .gpu and run: bash .gpu/gpu-check.sh"
