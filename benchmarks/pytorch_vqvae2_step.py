"""Times the reference VQ-VAE-2 training step in PyTorch (forward, backward,
quantiser EMA, Adam) at 256x256, and prints images/s and peak RSS.

usage: /usr/bin/python3 benchmarks/pytorch_vqvae2_step.py [--batch 8] [--steps 5] [--threads 2] [--autocast]
--autocast runs the forward and the loss under torch.autocast("cpu", dtype=torch.bfloat16), as a user
turning on mixed precision would (fp32 master weights and Adam, bf16 convolutions).
Each batch size should run in its own process so that peak RSS belongs to it."""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_vqvae2 import VQVAE2  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--autocast", action="store_true", help="bf16 autocast for the forward and the loss")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = VQVAE2()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = torch.rand(a.batch, 1, a.size, a.size) * 2 - 1

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast):
            out, diff = model(x)
            loss = (out - x).pow(2).mean() + 0.25 * diff
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {"batch": a.batch, "threads": a.threads, "autocast_bf16": a.autocast, "images_per_s": a.batch / median, "step_s": median,
              "peak_rss_mb": rss_mb, "blas": torch.__config__.show().count("OpenBLAS") > 0 and "OpenBLAS" or "other"}
    print(json.dumps(result) if a.json else
          "pytorch vqvae2 step: batch %d, %.2f img/s (%.3f s/step), peak RSS %.0f MB" %
          (a.batch, result["images_per_s"], median, rss_mb))


if __name__ == "__main__":
    main()
