#!/usr/bin/python3
"""Side-by-side throughput: our Google Benchmark binaries vs the same work in PyTorch.

    /usr/bin/python3 benchmarks/compare_pytorch.py [build/benchmarks/bench_conv] [--rounds R] [--repeats N] [--filter REGEX]

Every workload is one entry in WORKLOADS: the Google Benchmark binary and name prefix
that time it on our side, its FLOP count per mode, and a function that builds the
equivalent PyTorch closure per mode. Other binaries (attention, whole training steps)
are looked up next to the given one, so adding a workload is adding an entry.

Both sides use 2 threads. Our numbers are the FLOPS counters (median of repetitions);
PyTorch's are FLOPs / time measured the same way (see time_torch) after a warm-up. The two sides are interleaved
per workload for several rounds and the medians over rounds are printed.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict

import torch
import torch.nn.functional as F

BATCH = 8
THREADS = 2


@dataclass
class Workload:
    name: str  # our benchmark is BM_<name>_<mode>
    binary: str  # Google Benchmark executable (file name)
    flops: Dict[str, float]  # mode -> FLOPs per iteration
    torch_setup: Callable[[str], Callable[[], object]]  # mode -> closure timed in PyTorch
    note: str = ""
    modes: tuple = field(default=("Fwd", "Bwd"))


def conv_workload(name, cin, cout, k, h, w, stride, pad, transposed=False, note=""):
    """pad = (left, right, top, bottom) as in F.pad; symmetric pads go to the conv itself."""
    symmetric = len(set(pad)) == 1
    if transposed:
        fwd_flops = 2.0 * BATCH * cin * cout * k * k * h * w
    else:
        oh = (h + pad[2] + pad[3] - k) // stride + 1
        ow = (w + pad[0] + pad[1] - k) // stride + 1
        fwd_flops = 2.0 * BATCH * cin * cout * k * k * oh * ow

    def setup(mode):
        x = torch.randn(BATCH, cin, h, w, requires_grad=True)
        if transposed:
            wt = (torch.randn(cin, cout, k, k) * 0.05).requires_grad_()
            fn = lambda: F.conv_transpose2d(x, wt, b, stride=stride, padding=pad[0])
        else:
            wt = (torch.randn(cout, cin, k, k) * 0.05).requires_grad_()
            if symmetric:
                fn = lambda: F.conv2d(x, wt, b, stride=stride, padding=pad[0])
            else:  # as the reference PixelSNAIL does it: explicit pad, then the convolution
                fn = lambda: F.conv2d(F.pad(x, pad), wt, b, stride=stride)
        b = torch.zeros(cout, requires_grad=True)
        if mode == "Fwd":
            def run():
                with torch.no_grad():
                    return fn()
            return run
        y = fn()
        dy = torch.randn_like(y)
        # Backward only (input, weight and bias gradients), like our Bwd benchmarks.
        return lambda: torch.autograd.grad(y, (x, wt, b), dy, retain_graph=True)

    return Workload(name, "bench_conv", {"Fwd": fwd_flops, "Bwd": 2 * fwd_flops}, setup, note)


CAUSAL = (2, 2, 4, 0)
WORKLOADS = [
    conv_workload("Conv2d_3x3_128to128_64x64", 128, 128, 3, 64, 64, 1, (1, 1, 1, 1)),
    conv_workload("Conv2d_3x3_128to32_64x64", 128, 32, 3, 64, 64, 1, (1, 1, 1, 1)),
    conv_workload("Conv2d_4x4s2_1to64_256x256", 1, 64, 4, 256, 256, 2, (1, 1, 1, 1)),
    conv_workload("Conv2d_4x4s2_64to128_128x128", 64, 128, 4, 128, 128, 2, (1, 1, 1, 1)),
    conv_workload("Conv2d_4x4s2_128to64_64x64", 128, 64, 4, 64, 64, 2, (1, 1, 1, 1)),
    conv_workload("Conv2d_5x5causal_256to256_32x32", 256, 256, 5, 32, 32, 1, CAUSAL, note="PyTorch: F.pad + conv2d"),
    conv_workload("ConvTranspose2d_4x4s2_128to64_64x64", 128, 64, 4, 64, 64, 2, (1, 1, 1, 1), transposed=True),
    conv_workload("ConvTranspose2d_4x4s2_64to1_128x128", 64, 1, 4, 128, 128, 2, (1, 1, 1, 1), transposed=True),
    conv_workload("ConvTranspose2d_4x4s2_64to64_32x32", 64, 64, 4, 32, 32, 2, (1, 1, 1, 1), transposed=True),
]


def time_torch(fn, repeats, min_seconds=0.5):
    """The statistic Google Benchmark reports with --benchmark_repetitions: per repetition the
    mean time of as many iterations as fit in min_seconds; the median over repetitions."""
    for _ in range(3):
        fn()
    means = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        means.append(elapsed / n)
    return statistics.median(means)


def run_ours(binary, names, repeats):
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    pattern = "^(" + "|".join(re.escape("BM_" + n) for n in names) + ")(/|$)"
    out = subprocess.run([str(binary), "--benchmark_format=json", "--benchmark_filter=" + pattern,
                          "--benchmark_repetitions=%d" % repeats, "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True, env=env).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name", "median") != "median" or "FLOPS" not in b:
            continue
        result[b["run_name"].split("/")[0][3:]] = b["FLOPS"]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", default="build/benchmarks/bench_conv")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over rounds are reported")
    ap.add_argument("--filter", default="", help="regular expression on workload names")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    bench_dir = Path(args.binary).resolve().parent
    binaries = {Path(args.binary).name: Path(args.binary).resolve()}

    selected = [w for w in WORKLOADS if re.search(args.filter, w.name)]
    # Rounds interleave the two sides workload by workload, so both see the same
    # machine load (other jobs on a shared machine); each side reports its median over rounds.
    samples = {}
    for _ in range(args.rounds):
        for w in selected:
            path = binaries.get(w.binary, bench_dir / w.binary)
            if not path.exists():
                sys.exit("compare_pytorch.py: benchmark binary %s does not exist; build it first." % path)
            ours = run_ours(path, [w.name + "_" + m for m in w.modes], args.repeats)
            for mode in w.modes:
                t = time_torch(w.torch_setup(mode), args.repeats)
                key = w.name + "_" + mode
                samples.setdefault(key, ([], []))
                samples[key][0].append(ours.get(key, float("nan")) / 1e9)
                samples[key][1].append(w.flops[mode] / t / 1e9)

    rows = []
    for w in selected:
        for mode in w.modes:
            mine, theirs = (statistics.median(v) for v in samples[w.name + "_" + mode])
            rows.append((w.name + "_" + mode, mine, theirs, mine / theirs, w.note))

    width = max(len(r[0]) for r in rows)
    print("%-*s %12s %14s %8s  %s" % (width, "workload", "ours GFLOP/s", "PyTorch GFLOP/s", "ratio", "note"))
    for name, mine, theirs, ratio, note in rows:
        print("%-*s %12.1f %14.1f %8.2f  %s" % (width, name, mine, theirs, ratio, note))
    print("(torch %s, %d threads, batch %d)" % (torch.__version__, THREADS, BATCH))


if __name__ == "__main__":
    main()
