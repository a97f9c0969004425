#!/usr/bin/env bash
# The GPU check of egg's CUDA backend, run on the GPU machine from what
# scripts/gpu-prepare.sh put in .gpu/ (no Go, no network needed there):
#   1. the CUDA kernels against the host reference (cuda.test);
#   2. every op on the GPU against the CPU, forward and gradient (cuda.test), and
#      the engine's test suite on the GPU;
#   3. every reference-vector case on the GPU at the CPU tolerances (fp32), and
#      again with TF32 to report its error;
#   4. speed: egg's benchmarks on the GPU beside PyTorch's on the same GPU;
#   5. one 256x256 EGG MEI step loop at batch 8, and egg mei on the built-in
#      defaults on the GPU against the CPU.
# Everything is logged under $OUT (or ./gpu-out); the summary is gpu-summary.txt.
# Without a GPU it stops at once with status 1, saying so.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
work=$(mktemp -d)
summary=$out/gpu-summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none): run this on the GPU machine" >&2
  exit 1
fi
if [[ ! -d $here/bin ]]; then
  echo "gpu-check: $here/bin is missing: run scripts/gpu-prepare.sh first and carry .gpu" >&2
  exit 1
fi
nvidia-smi -L | tee -a "$summary"
python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1 | tee -a "$summary"
mkdir -p "$work/bin"
for f in "$here"/bin/*.xz; do xz -dc "$f" > "$work/bin/$(basename "${f%.xz}")"; chmod +x "$work/bin/$(basename "${f%.xz}")"; done
if [[ -f $here/refvectors.tar.xz ]]; then
  tar -C "$work" -xJf "$here/refvectors.tar.xz"
  export EGG_REFVECTORS=$work/refvectors
fi
# PyTorch's pip environment keeps cuBLAS under site-packages/nvidia: egg finds it there.
export EGG_TEST_DEVICE=cuda
status=0
run() { # name, command...: logs to $out/name.log, one summary line
  local name=$1; shift
  local t0=$SECONDS
  if "$@" > "$out/$name.log" 2>&1; then
    say "PASS $name ($((SECONDS-t0)) s)"
  else
    say "FAIL $name ($((SECONDS-t0)) s): see $name.log"; status=1
    grep -E -- '--- FAIL|panic:|Error|error' "$out/$name.log" | head -5 | sed 's/^/    /' | tee -a "$summary"
  fi
}
B=$work/bin
# 1-2. kernels and ops
run cuda-kernels-and-ops "$B/cuda.test" -test.v -test.count=1
# The engine's whole suite (finite-difference gradients of every op) on the GPU.
(cd "$work" && run tensor-suite-on-gpu "$B/tensor.test" -test.short -test.count=1)
# 3. reference vectors, fp32 then tf32
for p in tensor adm encoder guidance diffusion ascent; do
  (cd "$work" && run "parity-$p-fp32" "$B/$p.test" -test.run 'Parity' -test.v -test.count=1)
done
for p in adm encoder guidance; do
  (cd "$work" && EGG_TEST_PRECISION=tf32 run "parity-$p-tf32" "$B/$p.test" -test.run 'Parity' -test.v -test.count=1)
done
grep -h -E 'max.*(err|diff)|worst' "$out"/parity-*.log | head -60 > "$out/parity-errors.txt" || true
# 4. speed, egg then PyTorch on the same GPU
run bench-egg-tensor "$B/tensor.test" -test.run '^$' -test.bench 'ConvStack' -test.benchtime 20x
run bench-egg-adm "$B/adm.test" -test.run '^$' -test.bench 'AttentionBlock' -test.benchtime 20x
run bench-egg-encoder "$B/encoder.test" -test.run '^$' -test.bench 'V4Model' -test.benchtime 20x
run bench-egg-guidance "$B/guidance.test" -test.run '^$' -test.bench 'EGGStep' -test.benchtime 10x
gdargs=()
if [[ -f $here/guided-diffusion.tar.xz ]]; then
  tar -C "$work" -xJf "$here/guided-diffusion.tar.xz"; gdargs=(--guided-diffusion "$work")
fi
run bench-torch-fp32 python3 "$here/torch_bench.py" --device cuda --precision fp32 --json "${gdargs[@]}"
run bench-torch-fp16 python3 "$here/torch_bench.py" --device cuda --precision fp16 --json "${gdargs[@]}" --only egg_step
# 5. the 256x256 step loop and MEIs on the defaults
run egg256-b1 "$B/egg256" --device cuda --steps 3 --batch 1
run egg256-b8 "$B/egg256" --device cuda --steps 3 --batch 8
run mei-cuda "$B/egg" mei --device cuda --method egg --neurons 0-7 --out "$work/mei-cuda"
run mei-cpu "$B/egg" mei --device cpu --method egg --neurons 0-7 --out "$work/mei-cpu"
cp -r "$work/mei-cuda" "$work/mei-cpu" "$out/" 2>/dev/null || true
say "gpu-check: done, status $status; logs in $out"
exit $status
