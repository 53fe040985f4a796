#!/usr/bin/python3
"""The whole VQ-VAE-2 training step (default OASIS configuration, 256x256), ours vs
PyTorch side by side on this machine: images/s, peak RSS and the ratio.

    /usr/bin/python3 benchmarks/compare_vqvae2_step.py [build/benchmarks/bench_vqvae2] [--batches 8 32]

Every (side, batch) runs in its own process so that its peak RSS is its own; both use
2 threads. PyTorch uses the system BLAS (install libopenblas0-pthread for the fair
baseline: its transposed convolutions go through BLAS)."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ours(binary, batch, min_time):
    out = subprocess.run([binary, "--benchmark_filter=Oasis256>/%d/256/" % batch,
                          "--benchmark_format=json", "--benchmark_min_time=%g" % min_time],
                         check=True, capture_output=True, text=True, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin"})
    b = json.loads(out.stdout)["benchmarks"][0]
    return b["img/s"], b["peak_rss_MB"]


def pytorch(batch, steps):
    out = subprocess.run([sys.executable, str(HERE / "pytorch_vqvae2_step.py"), "--batch", str(batch), "--steps",
                          str(steps), "--json"], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["images_per_s"], r["peak_rss_mb"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="build/benchmarks/bench_vqvae2")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--min-time", type=float, default=5.0)
    ap.add_argument("--torch-steps", type=int, default=5)
    a = ap.parse_args()
    print("%-26s %10s %10s %7s %12s %12s" % ("VQ-VAE-2 train step", "ours img/s", "torch", "ratio", "ours RSS MB",
                                          "torch RSS MB"))
    for batch in a.batches:
        o_ips, o_rss = ours(a.binary, batch, a.min_time)
        t_ips, t_rss = pytorch(batch, a.torch_steps)
        print("%-26s %10.2f %10.2f %7.2f %12.0f %12.0f" % ("256x256 batch %d" % batch, o_ips, t_ips, o_ips / t_ips,
                                                           o_rss, t_rss))


if __name__ == "__main__":
    main()
