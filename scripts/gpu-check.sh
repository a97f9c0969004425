#!/usr/bin/env bash
# The GPU check of egg's CUDA backend, run on the GPU machine from what
# scripts/gpu-prepare.sh put in .gpu/ (no Go, no network needed there). In order
# of what matters most, each step capped in time, all of it inside one deadline:
#   kernels   the CUDA kernels against the host reference, every op on the GPU
#             against the CPU, forward and gradient (cuda.test);
#   parity    every reference-vector case on the GPU at the CPU tolerances (fp32);
#   step256   the 256x256 guided step at batch 1 and 8 (egg256), fp32 and fp16;
#   speed     egg's benchmarks on the GPU beside PyTorch's on the same GPU;
#   mei       a 100-step 256x256 MEI batch, and egg mei on the built-in defaults on
#             the GPU against the CPU's (made by gpu-prepare.sh, carried in .gpu);
#   reduced   the reference vectors again in tf32, fp16 and bf16 (errors reported);
#   suite     the engine's test suite (finite-difference gradients) on the GPU;
#   profile   Nsight Compute's speed-of-light section over one 256x256 step.
# The logs are packed into $OUT/gpu-logs.tar.xz (a device call brings back at
# most 8 files); the summary is $OUT/gpu-summary.txt, also printed last.
# Without a GPU it stops at once with status 1, saying so.
#
# Usage: gpu-check.sh [STEP...]   default: all, in the order above.
# EGG_GPU_DEADLINE (seconds, default 500) bounds the whole run: a step that
# would start with under 15 s left is skipped and said so.
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
logs=$work/logs
mkdir -p "$logs"
summary=$out/gpu-summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
deadline=$((SECONDS + ${EGG_GPU_DEADLINE:-500}))
pack() {
  cp "$summary" "$logs/" 2>/dev/null
  [[ -f $logs/speed-table.md ]] && cp "$logs/speed-table.md" "$out/"
  [[ -f $logs/parity-errors.txt ]] && cp "$logs/parity-errors.txt" "$out/"
  tar -C "$work" -cJf "$out/gpu-logs.tar.xz" logs 2>/dev/null
  echo "=== summary ==="; cat "$summary"
}
trap pack EXIT

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
[[ $rehearse == 1 ]] || { nvidia-smi -L; nvidia-smi --query-gpu=driver_version,clocks.sm,clocks.mem,memory.used --format=csv,noheader; } 2>&1 | tee -a "$summary"
"$py" -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1 | tee -a "$summary"
mkdir -p "$work/bin"
for f in "$here"/bin/*.xz; do xz -dc "$f" > "$work/bin/$(basename "${f%.xz}")"; chmod +x "$work/bin/$(basename "${f%.xz}")"; done
if [[ -f $here/refvectors.tar.xz ]]; then
  tar -C "$work" -xJf "$here/refvectors.tar.xz"
  export EGG_REFVECTORS=$work/refvectors
fi
gdargs=()
if [[ -f $here/guided-diffusion.tar.xz ]]; then
  tar -C "$work" -xJf "$here/guided-diffusion.tar.xz"; gdargs=(--guided-diffusion "$work")
fi
# PyTorch's pip environment keeps cuBLAS under site-packages/nvidia: egg finds it there.
export EGG_TEST_DEVICE=$testdev
status=0
left() { echo $((deadline - SECONDS)); }
run() { # name, cap seconds, command...: logs to $logs/name.log, one summary line
  local name=$1 cap=$2; shift 2
  local l; l=$(left)
  if ((l < 15)); then say "SKIP $name: the deadline is near"; status=1; return 1; fi
  ((cap > l - 5)) && cap=$((l - 5))
  local t0=$SECONDS
  if (cd "$work" && timeout -k 5 "$cap" "$@") > "$logs/$name.log" 2>&1; then
    say "PASS $name ($((SECONDS-t0)) s)"
  else
    local rc=$?
    ((rc == 124 || rc == 137)) && say "TIMEOUT $name after $cap s: see $name.log" || say "FAIL $name (status $rc, $((SECONDS-t0)) s): see $name.log"
    status=1
    grep -E -- '--- FAIL|panic:|Error|error|FAIL' "$logs/$name.log" | head -6 | sed 's/^/    /' | tee -a "$summary"
    return 1
  fi
}
report() { # name, cap, command...: reduced precisions, errors reported, not judged
  local name=$1 cap=$2; shift 2
  local l; l=$(left)
  if ((l < 15)); then say "SKIP $name: the deadline is near"; return; fi
  ((cap > l - 5)) && cap=$((l - 5))
  if (cd "$work" && timeout -k 5 "$cap" "$@") > "$logs/$name.log" 2>&1; then
    say "REPORT $name: within the fp32 tolerances"
  else
    say "REPORT $name: outside the fp32 tolerances (or failed):"
    grep -E 'max|diff|err|panic' "$logs/$name.log" | head -6 | sed 's/^/    /' | tee -a "$summary"
  fi
}
B=$work/bin
steps_wanted=" ${*:-kernels parity step256 speed mei reduced suite profile} "
want() { [[ $steps_wanted == *" $1 "* ]]; }

if want kernels; then
  { ls -d /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib; ls /usr/local/nvidia/lib64 | grep -E 'libcuda|libnvidia-ptx'; } > "$logs/libs.txt" 2>&1
  run cuda-kernels-and-ops 120 "$B/cuda.test" -test.v -test.count=1
  if tail -1 "$summary" | grep -q '^TIMEOUT'; then say "gpu-check: the kernel tests hung: stopping"; exit 1; fi
  grep -E 'worst|max' "$logs/cuda-kernels-and-ops.log" | head -20 > "$logs/ops-errors.txt"
fi
if want parity; then
  for p in tensor adm encoder guidance diffusion ascent; do
    run "parity-$p-fp32" 90 "$B/$p.test" -test.run 'Parity' -test.v -test.count=1
  done
fi
if want step256; then
  run egg256-b1 90 "$B/egg256" --device $dev "${big[@]}" --steps $steps --batch 1
  run egg256-b8 90 "$B/egg256" --device $dev "${big[@]}" --steps $steps --batch 8
  for prec in tf32 fp16 bf16; do
    run "egg256-b8-$prec" 90 "$B/egg256" --device $dev --precision $prec "${big[@]}" --steps $steps --batch 8
  done
  for f in "$logs"/egg256-b*.log; do # the last step and the peak memory of each
    echo "    $(basename "$f" .log): $(grep 'guided step' "$f" | tail -1 | sed 's/.*: //') per step, $(grep -o 'peak.*' "$f")"
  done | tee -a "$summary"
fi
if want speed; then
  run bench-egg-tensor 60 "$B/tensor.test" -test.run '^$' -test.bench "ConvStack$b1" -test.benchtime $bt
  run bench-egg-adm 60 "$B/adm.test" -test.run '^$' -test.bench "AttentionBlock$b1" -test.benchtime $bt
  run bench-egg-encoder 90 "$B/encoder.test" -test.run '^$' -test.bench "V4Model$b1" -test.benchtime 5x
  run bench-egg-guidance 60 "$B/guidance.test" -test.run '^$' -test.bench "EGGStep$b1" -test.benchtime $bt
  torchjson=$logs/torch-fp32.json
  run bench-torch-fp32 150 bash -c '"$@" > '"$torchjson" _ "$py" "$here/torch_bench.py" --device $dev --precision fp32 --json "${gdargs[@]}" "${torchreps[@]}" --only conv_stack,attention_block,egg_step,v4_model
  cat "$logs"/bench-egg-tensor.log "$logs"/bench-egg-adm.log "$logs"/bench-egg-encoder.log "$logs"/bench-egg-guidance.log > "$work/go.txt"
  "$py" "$here/report.py" --purego "$work/go.txt" --torch "$torchjson" > "$logs/speed-table.md" 2>&1 &&
    { say "speed table (egg/PyTorch; the pure-Go column is egg on this device, fp32):"; sed 's/^/    /' "$logs/speed-table.md" >> "$summary"; }
  if ((${#gdargs[@]})) && [[ $rehearse != 1 ]]; then
    run bench-torch-256 120 "$py" "$here/torch_bench.py" --device $dev --precision fp32 --json "${gdargs[@]}" --big --only egg_step_256 --batch 1,8
    run bench-torch-256-fp16 90 "$py" "$here/torch_bench.py" --device $dev --precision fp16 --json "${gdargs[@]}" --big --only egg_step_256 --batch 8
    grep -h -o '"egg_step_256[^}]*' "$logs"/bench-torch-256*.log | sed 's/^/    torch /' | tee -a "$summary"
  fi
fi
if want mei; then
  # One whole 100-step MEI batch of 8 (the time per MEI is its time / 8), in the
  # precision whose step was fastest in step256 (MEI_PRECISION overrides).
  mp=${MEI_PRECISION:-}
  if [[ -z $mp ]]; then
    mp=$(for p in fp32 tf32 fp16 bf16; do
      f=$logs/egg256-b8-$p.log; [[ $p == fp32 ]] && f=$logs/egg256-b8.log
      [[ -f $f ]] && awk -v p=$p '/guided step/ {t=$NF} END {if (t != "") {sub("s$", "", t); print t, p}}' "$f"
    done | sort -g | head -1 | cut -d' ' -f2)
  fi
  mp=${mp:-fp16}
  run egg256-b8-$mp-100steps 150 "$B/egg256" --device $dev --precision $mp "${big[@]}" --steps $long --batch 8
  tail -3 "$logs/egg256-b8-$mp-100steps.log" | sed 's/^/    /' | tee -a "$summary"
  run mei-cuda 120 "$B/egg" mei --device $dev --method egg --neurons 0-7 --out "$logs/mei-cuda"
  cpu=$here/mei-cpu
  if [[ ! -d $cpu ]]; then run mei-cpu 120 "$B/egg" mei --device cpu --method egg --neurons 0-7 --out "$logs/mei-cpu"; cpu=$logs/mei-cpu; fi
  # The GPU's MEIs beside the CPU's, and beside the CPU's own spread between its two
  # GEMMs (mei-cpu-openblas, made by gpu-prepare.sh): the free-running sampler
  # amplifies float32 summation order (see mei_same.py).
  report mei-same 30 "$py" "$here/mei_same.py" "$cpu/egg" "$logs/mei-cuda/egg" "$here/mei-cpu-openblas/egg"
  tail -3 "$logs/mei-same.log" | sed "s/^/    /" | tee -a "$summary"
fi
if want reduced; then
  for prec in tf32 bf16 fp16; do
    for p in adm encoder guidance; do
      EGG_TEST_PRECISION=$prec report "parity-$p-$prec" 40 "$B/$p.test" -test.run 'Parity' -test.v -test.count=1
    done
  done
  grep -h -E 'max.*(err|diff)|worst' "$logs"/parity-*.log | head -80 > "$logs/parity-errors.txt" || true
fi
if want suite; then
  run tensor-suite-on-gpu 120 "$B/tensor.test" -test.short -test.count=1
fi
if want profile && [[ $rehearse != 1 ]]; then
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [[ -n $ncu ]]; then
    # Replaying a kernel over 553 M parameters is slow: a few kernels of each kind,
    # written out as each finishes (no --csv: that prints only at the end).
    run ncu-step256 150 "$ncu" --clock-control none --section SpeedOfLight --launch-skip 0 --launch-count 40 \
      "$B/egg256" --device cuda --steps 1 --batch 8 --image-size 128
  else
    say "SKIP profile: no ncu here"
  fi
fi
say "gpu-check: done, status $status, $((SECONDS)) s"
exit $status
