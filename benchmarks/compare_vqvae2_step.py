#!/usr/bin/python3
"""The whole VQ-VAE-2 training step (default OASIS configuration, 256x256), ours vs
PyTorch side by side on this machine: images/s, peak RSS and the ratio, in fp32 and in
bf16 (our precision policy against PyTorch's autocast).

    ../shared/tools/torch-baseline python benchmarks/compare_vqvae2_step.py [build/benchmarks/bench_vqvae2]
        [--batches 8 32] [--precisions fp32 bf16] [--repeats 3]

Every (side, batch) runs in its own process so that its peak RSS is its own; both use
2 threads. PyTorch uses the system BLAS (install libopenblas0-pthread for the fair
baseline: its transposed convolutions go through BLAS)."""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ours(binary, batch, min_time, bf16):
    out = subprocess.run([binary, "--benchmark_filter=Oasis256>/batch:%d/size:256/bf16:%d/" % (batch, bf16),
                          "--benchmark_format=json", "--benchmark_min_time=%g" % min_time],
                         check=True, capture_output=True, text=True, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin"})
    b = json.loads(out.stdout)["benchmarks"][0]
    if bf16 and not b["bf16_native"]:
        print("note: this CPU has no AVX-512 BF16, so our bf16 row ran in fp32", file=sys.stderr)
    return b["img/s"], b["peak_rss_MB"]


def pytorch(batch, steps, bf16):
    out = subprocess.run([sys.executable, str(HERE / "pytorch_vqvae2_step.py"), "--batch", str(batch), "--steps",
                          str(steps), "--json"] + (["--autocast"] if bf16 else []),
                         check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["images_per_s"], r["peak_rss_mb"]


def torch_version():
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="build/benchmarks/bench_vqvae2")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--min-time", type=float, default=5.0)
    ap.add_argument("--torch-steps", type=int, default=5)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all cases; medians are reported")
    a = ap.parse_args()
    print("torch", torch_version(), "threads 2; bf16 = our precision policy vs torch.autocast(cpu, bfloat16)")
    print("%-26s %10s %10s %7s %12s %12s" % ("VQ-VAE-2 train step", "ours img/s", "torch", "ratio", "ours RSS MB",
                                          "torch RSS MB"))
    # Rounds: every (batch, precision, side) once per round, so a slow spell of a shared
    # machine hits all cases alike; medians over the rounds, and their ranges.
    runs = {}
    for r in range(a.repeats):
        for batch in a.batches:
            for prec in a.precisions:
                bf16 = prec == "bf16"
                o = ours(a.binary, batch, a.min_time, bf16)
                t = pytorch(batch, a.torch_steps, bf16)
                runs.setdefault((batch, prec), []).append((o, t))
                if a.repeats > 1:
                    print("  round %d: batch %d %s ours %.2f torch %.2f img/s" % (r + 1, batch, prec, o[0], t[0]),
                          flush=True)
    med = {}
    for (batch, prec), rs in runs.items():
        o_ips = statistics.median(o[0] for o, _ in rs)
        t_ips = statistics.median(t[0] for _, t in rs)
        o_rss = max(o[1] for o, _ in rs)
        t_rss = max(t[1] for _, t in rs)
        ratio = [o[0] / t[0] for o, t in rs]
        med[(batch, prec)] = o_ips
        spread = " (ratio %.2f-%.2f)" % (min(ratio), max(ratio)) if len(rs) > 1 else ""
        print("%-26s %10.2f %10.2f %7.2f %12.0f %12.0f%s" % ("256x256 batch %d %s" % (batch, prec), o_ips, t_ips,
                                                             statistics.median(ratio), o_rss, t_rss, spread))
    for batch in a.batches:
        if (batch, "fp32") in med and (batch, "bf16") in med:
            print("ours bf16 / ours fp32, batch %d: %.2fx" % (batch, med[(batch, "bf16")] / med[(batch, "fp32")]))

if __name__ == "__main__":
    main()
