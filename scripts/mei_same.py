"""Compares egg mei's outputs from two devices (used by scripts/gpu-check.sh).

Usage: mei_same.py CPU_DIR GPU_DIR [CPU2_DIR]

For every neuron: the kept seed and the activations by role, CPU against GPU.
Exit status 0 only if every kept seed agrees and every activation is within 1e-3
relative. The free-running sampler amplifies float32 rounding (a guided step
feeds its own output back, for tens of steps), so CPU2_DIR, the same run on the
CPU with its other GEMM (EGG_GEMM=openblas, another summation order), is shown
beside: the CPU's own spread, the scale to read the GPU's against."""
import glob
import json
import os
import sys


def compare(a_dir, b_dir):
    worst, n, seeds = 0.0, 0, 0
    rows = []
    for f in sorted(glob.glob(os.path.join(a_dir, "neuron_*.json"))):
        a = json.load(open(f))
        g = os.path.join(b_dir, os.path.basename(f))
        if not os.path.exists(g):
            rows.append(f"{os.path.basename(f)} missing in {b_dir}")
            seeds += 1
            continue
        b = json.load(open(g))
        seeds += a["seed"] != b["seed"]
        for role, v in sorted(a["activations"].items()):
            w = b["activations"][role]
            d = abs(v - w) / max(1.0, abs(v))
            worst = max(worst, d)
            n += 1
            rows.append(f"{os.path.basename(f)} {role:7s} seed {a['seed']}/{b['seed']}  {v:9.5g} {w:9.5g}  rel {d:.2e}")
    return worst, n, seeds, rows


worst, n, seeds, rows = compare(sys.argv[1], sys.argv[2])
print("\n".join(rows))
if len(sys.argv) > 3 and os.path.isdir(sys.argv[3]):
    w2, n2, s2, _ = compare(sys.argv[1], sys.argv[3])
    print(f"CPU against CPU with its other GEMM: {n2} activations, {s2} kept seeds differ, worst relative difference {w2:.2e}")
print(f"CPU against GPU: {n} activations, {seeds} kept seeds differ, worst relative difference {worst:.2e}")
sys.exit(0 if n > 0 and seeds == 0 and worst < 1e-3 else 1)
