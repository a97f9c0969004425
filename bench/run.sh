#!/usr/bin/env bash
# Runs egg's Go benchmarks (openblas GEMM, then pure-Go GEMM) and the PyTorch
# baselines of bench/torch_bench.py, then prints the egg/PyTorch table.
#
# Usage: bench/run.sh [options]
#   --benchtime T          go test -benchtime (default 5x: one warm-up call of
#                          b.N=1, then 5 timed iterations)
#   --count N              go test -count; report.py takes the median (default 1)
#   --guided-diffusion P   openai/guided-diffusion checkout for egg_step
#                          (default: $GUIDED_DIFFUSION)
#   --big                  also egg_step_256 (PyTorch, and bench/egg256 for egg)
#   --only LIST            PyTorch workloads to run (comma-separated, e.g.
#                          conv_stack,attention_block; default all)
#   --no-go / --no-torch   skip one side
#   --out DIR              where raw outputs go (default bench/out)
#   -h, --help
#
# Benchmark-only: nothing here is part of egg's build or tests. The machine
# should otherwise be idle; both sides use 2 threads.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
benchtime=5x
count=1
gd=${GUIDED_DIFFUSION:-}
big=0
only=
run_go=1
run_torch=1
out=$here/out
python=${PYTHON:-/usr/bin/python3}

while [[ $# -gt 0 ]]; do
  case $1 in
    --benchtime) benchtime=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --guided-diffusion) gd=$2; shift 2 ;;
    --big) big=1; shift ;;
    --only) only=$2; shift 2 ;;
    --no-go) run_go=0; shift ;;
    --no-torch) run_torch=0; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

mkdir -p "$out"
go_openblas=$out/go_openblas.txt
go_purego=$out/go_purego.txt
torch_out=$out/torch.tsv
rm -f "$go_openblas" "$go_purego" "$torch_out"

names='ConvStack|AttentionBlock|EGGStep|V4Model'
[[ $big == 1 ]] && names="$names|EGGStep256"
bench_re="^Benchmark($names)\$"

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN{exit !(l > 0.5)}'; then
  echo "# warning: load average is $load; timings will be noisy" >&2
fi

if [[ $run_go == 1 ]]; then
  cd "$root"
  # The benchmarks may live in different packages: run only those that have one.
  mapfile -t pkgs < <(grep -rlE --include='*_test.go' "func Benchmark($names)\(" . 2>/dev/null |
    xargs -r -n1 dirname | sort -u)
  if [[ ${#pkgs[@]} -eq 0 ]]; then
    echo "# no Go benchmark matching $bench_re found; egg columns will be n/a" >&2
  else
    echo "# go benchmarks in: ${pkgs[*]}" >&2
    gotest=(go test -run '^$' -bench "$bench_re" -benchtime "$benchtime" -count "$count"
      -timeout 0 "${pkgs[@]}")
    echo "# EGG_GEMM=openblas: ${gotest[*]}" >&2
    EGG_GEMM=openblas "${gotest[@]}" 2>&1 | tee "$go_openblas" >&2 ||
      echo "# go test (openblas) failed; continuing" >&2
    echo "# EGG_GEMM=go (pure Go)" >&2
    EGG_GEMM=go "${gotest[@]}" 2>&1 | tee "$go_purego" >&2 ||
      echo "# go test (pure Go) failed; continuing" >&2
  fi
  # egg_step_256: bench/egg256 times one 256x256 guided step; its "guided step
  # i: X s" lines become a BenchmarkEGGStep256/B1 line for report.py.
  if [[ $big == 1 && -d $here/egg256 ]]; then
    for mode in openblas purego; do
      log=$out/egg256_$mode.txt
      echo "# go run ./bench/egg256 ($mode)" >&2
      if [[ $mode == openblas ]]; then
        EGG_GEMM=openblas go run ./bench/egg256 2>&1 | tee "$log" >&2
      else
        EGG_GEMM=go go run ./bench/egg256 2>&1 | tee "$log" >&2
      fi
      awk '/^guided step [0-9]+: [0-9.]+s$/ { s = $4; sub(/s$/, "", s); print s }' "$log" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "BenchmarkEGGStep256/B1-2 \t1\t%.0f ns/op\n", v[int((NR + 1) / 2)] * 1e9 }' \
        >> "$out/go_$mode.txt"
    done
  fi
fi

if [[ $run_torch == 1 ]]; then
  targs=()
  [[ -n $gd ]] && targs+=(--guided-diffusion "$gd")
  [[ $big == 1 ]] && targs+=(--big)
  [[ -n $only ]] && targs+=(--only "$only")
  echo "# PyTorch: $python $here/torch_bench.py ${targs[*]}" >&2
  "$python" "$here/torch_bench.py" "${targs[@]}" | tee "$torch_out" >&2 ||
    echo "# torch_bench.py failed; continuing" >&2
fi

echo
if [[ $big == 1 ]]; then
  for mode in openblas purego; do
    [[ -f $out/egg256_$mode.txt ]] && sed -n "s/^peak RSS: /egg_step_256 egg ($mode) peak RSS: /p" "$out/egg256_$mode.txt"
  done
  [[ -f $torch_out ]] && sed -n 's/^egg_step_256.*peak_rss_kib=\([0-9]*\).*/\1/p' "$torch_out" |
    awk '{ printf "egg_step_256 PyTorch peak RSS: %.2f GiB\n", $1 / 1048576 }'
  echo
fi
"$python" "$here/report.py" --openblas "$go_openblas" --purego "$go_purego" --torch "$torch_out"
