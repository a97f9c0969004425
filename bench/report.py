#!/usr/bin/env python3
"""Join egg's Go benchmark output with the PyTorch baselines into one table.

Reads the raw output of `go test -bench` for each GEMM path (openblas, i.e.
EGG_GEMM=openblas, and pure Go, EGG_GEMM=go) and the TSV lines of
bench/torch_bench.py, and prints a Markdown table:

  workload | egg ms (openblas) | egg ms (pure-Go) | PyTorch ms | egg/PyTorch (openblas) | egg/PyTorch (pure-Go)

Go benchmark names map onto the PyTorch names as
BenchmarkConvStack/B1/forward-2 -> conv_stack/B1/forward (the -N GOMAXPROCS
suffix is dropped). With -count > 1 the median ns/op of the repeated lines is
used. Anything missing prints "n/a". Standard library only.

Example:
  python3 bench/report.py --openblas out/go_openblas.txt \\
      --purego out/go_purego.txt --torch out/torch.tsv
"""

import argparse
import json
import re
import statistics
import sys

GO_NAMES = {
    "ConvStack": "conv_stack",
    "AttentionBlock": "attention_block",
    "EGGStep": "egg_step",
    "EGGStep256": "egg_step_256",
    "V4Model": "v4_model",
}

# Rows in this order first; anything else found is appended after them.
ORDER = [
    "conv_stack/B1/forward", "conv_stack/B1/inputgrad",
    "conv_stack/B4/forward", "conv_stack/B4/inputgrad",
    "attention_block/B1/forward", "attention_block/B1/inputgrad",
    "attention_block/B4/forward", "attention_block/B4/inputgrad",
    "egg_step/B1", "egg_step/B4",
    "v4_model/B1/inputgrad", "v4_model/B16/train",
    "egg_step_256/B1",
]

# "BenchmarkConvStack/B1/forward-2   	      40	  28012345 ns/op ..."
FULL_LINE = re.compile(r"^(Benchmark\S+)\s+(\d+)\s+([0-9.e+]+) ns/op")
# A benchmark that logs prints its name and its result on separate lines.
NAME_ONLY = re.compile(r"^(Benchmark\S+)\s*$")
RESULT_ONLY = re.compile(r"^\s+(\d+)\s+([0-9.e+]+) ns/op")


def snake(camel):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", camel).lower()


def go_name(bench):
    """BenchmarkConvStack/B1/forward-2 -> conv_stack/B1/forward."""
    name = bench[len("Benchmark"):]
    name = re.sub(r"-\d+$", "", name)
    top, _, rest = name.partition("/")
    top = GO_NAMES.get(top, snake(top))
    return top + ("/" + rest if rest else "")


def parse_go(path):
    """{name: median ms} from `go test -bench` output (missing file -> {})."""
    samples = {}
    if not path:
        return {}
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return {}
    pending = None
    for line in lines:
        m = FULL_LINE.match(line)
        if m:
            samples.setdefault(go_name(m.group(1)), []).append(float(m.group(3)) / 1e6)
            pending = None
            continue
        m = NAME_ONLY.match(line)
        if m:
            pending = m.group(1)
            continue
        m = RESULT_ONLY.match(line)
        if m and pending:
            samples.setdefault(go_name(pending), []).append(float(m.group(2)) / 1e6)
            pending = None
    return {k: statistics.median(v) for k, v in samples.items()}


def parse_torch(path):
    """{name: ms} from torch_bench.py output (TSV lines or --json)."""
    if not path:
        return {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return {}
    if text.lstrip().startswith("{"):
        return {k: v["ms"] for k, v in json.loads(text)["results"].items()}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) >= 2:
            try:
                out[fields[0]] = float(fields[1])
            except ValueError:
                pass
    return out


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def table(openblas, purego, torch):
    names = [n for n in ORDER if n in openblas or n in purego or n in torch]
    names += sorted((set(openblas) | set(purego) | set(torch)) - set(names))
    rows = [["workload", "egg ms (openblas)", "egg ms (pure-Go)", "PyTorch ms",
             "egg/PyTorch (openblas)", "egg/PyTorch (pure-Go)"]]
    for n in names:
        o, p, t = openblas.get(n), purego.get(n), torch.get(n)
        rows.append([n, fmt_ms(o), fmt_ms(p), fmt_ms(t), fmt_ratio(o, t), fmt_ratio(p, t)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))]
        out.append("| " + " | ".join(cells) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 1) + (":" if j else "-")
                                      for j, w in enumerate(widths)) + "|")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--openblas", help="go test -bench output with EGG_GEMM=openblas")
    ap.add_argument("--purego", help="go test -bench output with EGG_GEMM=go")
    ap.add_argument("--torch", help="bench/torch_bench.py output (TSV or --json)")
    args = ap.parse_args()
    openblas, purego, torch = parse_go(args.openblas), parse_go(args.purego), parse_torch(args.torch)
    if not (openblas or purego or torch):
        print("no benchmark results found", file=sys.stderr)
        return 1
    print(table(openblas, purego, torch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
