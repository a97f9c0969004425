"""Compares egg mei's outputs from two devices (used by scripts/gpu-check.sh):
each neuron's kept seed must agree and its activations within 1e-3 relative."""
import glob, json, os, sys

cpu, gpu = sys.argv[1], sys.argv[2]
worst, n = 0.0, 0
files = sorted(glob.glob(os.path.join(cpu, "neuron_*.json")))
for f in files:
    a = json.load(open(f))
    b = json.load(open(os.path.join(gpu, os.path.basename(f))))
    assert a["seed"] == b["seed"], f"{f}: kept seed {a['seed']} on the CPU, {b['seed']} on the GPU"
    for role, v in a["activations"].items():
        d = abs(v - b["activations"][role]) / max(1.0, abs(v))
        print(f"{os.path.basename(f)} {role}: cpu {v:.6g} gpu {b['activations'][role]:.6g} rel {d:.2e}")
        worst = max(worst, d)
        n += 1
print(f"{n} activations compared over {len(files)} neurons, worst relative difference {worst:.2e}")
sys.exit(0 if n > 0 and worst < 1e-3 else 1)
