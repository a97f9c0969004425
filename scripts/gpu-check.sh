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
#
# Usage: gpu-check.sh [STAGE...]   stages: correct (1-3), speed (4), mei (5);
# default all. A device call is limited to 10 minutes: run "correct" and
# "speed mei" as two calls if one does not fit.
#
# EGG_GPU_REHEARSAL=1 rehearses the whole script on a CPU machine, so that its
# plumbing is right before GPU time is spent: the tests run on the host reference
# accelerator (EGG_TEST_DEVICE=hostkernels), the binaries and PyTorch on the CPU,
# and the 256x256 UNet runs on 32x32 images for a step or two.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
work=$(mktemp -d)
summary=$out/gpu-summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

rehearse=${EGG_GPU_REHEARSAL:-0}
py=${PYTHON:-python3}
if [[ $rehearse == 1 ]]; then
  testdev=hostkernels dev=cpu big=(--image-size 32) steps=1 long=2 torchreps=(--reps 1 --warmup 0)
  bt=1x b1=/^B1$ # one call of the smallest case of each benchmark
  echo "gpu-check: REHEARSAL on the CPU: nothing here measures a GPU" | tee -a "$summary"
else
  testdev=cuda dev=cuda big=() steps=3 long=100 torchreps=()
  bt=20x b1=
fi
if [[ $rehearse != 1 ]] && { ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; }; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none): run this on the GPU machine" >&2
  exit 1
fi
if [[ ! -d $here/bin ]]; then
  echo "gpu-check: $here/bin is missing: run scripts/gpu-prepare.sh first and carry .gpu" >&2
  exit 1
fi
[[ $rehearse == 1 ]] || nvidia-smi -L | tee -a "$summary"
"$py" -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1 | tee -a "$summary"
mkdir -p "$work/bin"
for f in "$here"/bin/*.xz; do xz -dc "$f" > "$work/bin/$(basename "${f%.xz}")"; chmod +x "$work/bin/$(basename "${f%.xz}")"; done
if [[ -f $here/refvectors.tar.xz ]]; then
  tar -C "$work" -xJf "$here/refvectors.tar.xz"
  export EGG_REFVECTORS=$work/refvectors
fi
# PyTorch's pip environment keeps cuBLAS under site-packages/nvidia: egg finds it there.
export EGG_TEST_DEVICE=$testdev
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
stages=" ${*:-correct speed mei} "
if [[ $stages == *" correct "* ]]; then
# 1-2. kernels and ops
run cuda-kernels-and-ops "$B/cuda.test" -test.v -test.count=1
# The engine's whole suite (finite-difference gradients of every op) on the GPU.
(cd "$work" && run tensor-suite-on-gpu "$B/tensor.test" -test.short -test.count=1)
# 3. reference vectors, fp32 then tf32
for p in tensor adm encoder guidance diffusion ascent; do
  (cd "$work" && run "parity-$p-fp32" "$B/$p.test" -test.run 'Parity' -test.v -test.count=1)
done
# Reduced precisions: the fp32 tolerances are not expected to hold; the errors are
# reported (the failing lines carry them), not judged.
report() { # name, command...
  local name=$1; shift
  "$@" > "$out/$name.log" 2>&1 && say "REPORT $name: within the fp32 tolerances" ||
    { say "REPORT $name: outside the fp32 tolerances:"; grep -E 'max|diff|err' "$out/$name.log" | head -8 | sed 's/^/    /' | tee -a "$summary"; }
}
for prec in tf32 fp16 bf16; do
  for p in adm encoder guidance; do
    (cd "$work" && EGG_TEST_PRECISION=$prec report "parity-$p-$prec" "$B/$p.test" -test.run 'Parity' -test.v -test.count=1)
  done
done
grep -h -E 'max.*(err|diff)|worst' "$out"/parity-*.log | head -60 > "$out/parity-errors.txt" || true
fi
if [[ $stages == *" speed "* ]]; then
# 4. speed, egg then PyTorch on the same GPU
run bench-egg-tensor "$B/tensor.test" -test.run '^$' -test.bench "ConvStack$b1" -test.benchtime $bt
run bench-egg-adm "$B/adm.test" -test.run '^$' -test.bench "AttentionBlock$b1" -test.benchtime $bt
run bench-egg-encoder "$B/encoder.test" -test.run '^$' -test.bench "V4Model$b1" -test.benchtime $bt
run bench-egg-guidance "$B/guidance.test" -test.run '^$' -test.bench "EGGStep$b1" -test.benchtime $bt
EGG_TEST_PRECISION=fp16 run bench-egg-guidance-fp16 "$B/guidance.test" -test.run '^$' -test.bench "EGGStep$b1" -test.benchtime $bt
gdargs=()
if [[ -f $here/guided-diffusion.tar.xz ]]; then
  tar -C "$work" -xJf "$here/guided-diffusion.tar.xz"; gdargs=(--guided-diffusion "$work")
fi
torchjson=$out/torch-fp32.json
run bench-torch-fp32 bash -c '"$@" > '"$torchjson" _ "$py" "$here/torch_bench.py" --device $dev --precision fp32 --json "${gdargs[@]}" "${torchreps[@]}" --only conv_stack,attention_block,egg_step,v4_model
# The speed table: egg on the GPU against PyTorch on the same GPU, both fp32.
cat "$out"/bench-egg-tensor.log "$out"/bench-egg-adm.log "$out"/bench-egg-encoder.log "$out"/bench-egg-guidance.log > "$work/go.txt"
"$py" "$here/report.py" --purego "$work/go.txt" --torch "$torchjson" > "$out/speed-table.md" 2>&1 &&
  { say "speed table (egg/PyTorch, the pure-Go column is egg on this device):"; sed 's/^/    /' "$out/speed-table.md" | tee -a "$summary" >/dev/null; cat "$out/speed-table.md"; }
[[ $rehearse == 1 ]] || run bench-torch-fp16 "$py" "$here/torch_bench.py" --device $dev --precision fp16 --json "${gdargs[@]}" "${torchreps[@]}" --only egg_step
if ((${#gdargs[@]})) && [[ $rehearse != 1 ]]; then
  run bench-torch-256 "$py" "$here/torch_bench.py" --device $dev --precision fp32 --json "${gdargs[@]}" "${torchreps[@]}" --big --only egg_step_256 --batch 1,8
  run bench-torch-256-fp16 "$py" "$here/torch_bench.py" --device $dev --precision fp16 --json "${gdargs[@]}" "${torchreps[@]}" --big --only egg_step_256 --batch 8
fi
fi
if [[ $stages == *" mei "* ]]; then
# 5. the 256x256 step loop and MEIs on the defaults
run egg256-b1 "$B/egg256" --device $dev "${big[@]}" --steps $steps --batch 1
run egg256-b8 "$B/egg256" --device $dev "${big[@]}" --steps $steps --batch 8
# One whole 100-step MEI at batch 8 (the time per MEI is its time / 8), cut at 150 s.
run egg256-b8-fp16-100steps timeout 150 "$B/egg256" --device $dev --precision fp16 "${big[@]}" --steps $long --batch 8
run mei-cuda "$B/egg" mei --device $dev --method egg --neurons 0-7 --out "$work/mei-cuda"
run mei-cpu "$B/egg" mei --device cpu --method egg --neurons 0-7 --out "$work/mei-cpu"
cp -r "$work/mei-cuda" "$work/mei-cpu" "$out/" 2>/dev/null || true
# The same MEIs on the GPU as on the CPU: each neuron's kept seed and activations.
run mei-same "$py" - "$work/mei-cpu/egg" "$work/mei-cuda/egg" <<'PY'
import glob, json, os, sys
cpu, gpu = sys.argv[1], sys.argv[2]
worst, n = 0.0, 0
for f in sorted(glob.glob(os.path.join(cpu, "neuron_*.json"))):
    a = json.load(open(f)); b = json.load(open(os.path.join(gpu, os.path.basename(f))))
    assert a["seed"] == b["seed"], f"{f}: kept seed {a['seed']} on the CPU, {b['seed']} on the GPU"
    for role, v in a["activations"].items():
        d = abs(v - b["activations"][role]) / max(1.0, abs(v))
        worst = max(worst, d); n += 1
print(f"{n} activations compared, worst relative difference {worst:.2e}")
sys.exit(0 if n > 0 and worst < 1e-3 else 1)
PY
fi
say "gpu-check: done, status $status; logs in $out"
exit $status
