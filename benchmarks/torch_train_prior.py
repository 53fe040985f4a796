#!/usr/bin/env python3
"""The PyTorch side of the prior-quality comparison: trains the reference-architecture
PixelSNAIL (tests/golden/gen_pixelsnail.py, the configurations of benchmarks/torch_pixelsnail.py)
on the code files that vqvae2_extract_codes wrote, for a wall-time budget, the way the
reference trains (Adam lr 3e-4, shuffled batches, dropout on), then reports the validation
NLL in nats and bits per code and the top-1 accuracy: the numbers vqvae2_train_prior prints
for the same budget (it evaluates when its --minutes budget ends, too).

    ../shared/tools/torch-baseline python benchmarks/torch_train_prior.py --hier top \\
        --codes run/codes/train.codes --val-codes run/codes/validate.codes --minutes 10 \\
        --config small --batch 16 --json-out top_torch.json

The clock starts after the model is built and the codes are read (vqvae2_train_prior's
--minutes budget starts at its first step as well); evaluation is outside the budget.
"""
import argparse
import json
import math
import struct
import sys
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_pixelsnail as TP  # noqa: E402


def read_code_file(path):
    """data/code_file.hpp, version 1: returns (top [N,h,w], bottom [N,H,W]) as int64 tensors."""
    raw = Path(path).read_bytes()
    fail = lambda why: SystemExit("%s: %s" % (path, why))  # noqa: E731
    if len(raw) < 24 or raw[:8] != b"VQV2CODE":
        raise fail("not a vqvae2 code file (bad magic)")
    version, _, size = struct.unpack_from("<IIQ", raw, 8)
    if version != 1:
        raise fail("code file version %d, this script reads version 1" % version)
    if size != len(raw):
        raise fail("truncated: %d bytes, the header says %d" % (len(raw), size))
    if zlib.crc32(raw[:-4]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
        raise fail("checksum mismatch (corrupted)")
    off = 24

    def string():
        nonlocal off
        (n,) = struct.unpack_from("<I", raw, off)
        off += 4 + n
        return raw[off - n:off].decode()

    string()  # the VQ-VAE-2 fingerprint
    off += 8  # its weight hash
    _, _, _, th, tw, bh, bw = struct.unpack_from("<7I", raw, off)
    off += 28
    (count,) = struct.unpack_from("<Q", raw, off)
    off += 8
    for _ in range(count):
        string()
    top = torch.frombuffer(bytearray(raw[off:off + 2 * count * th * tw]), dtype=torch.int16)
    off += 2 * count * th * tw
    bottom = torch.frombuffer(bytearray(raw[off:off + 2 * count * bh * bw]), dtype=torch.int16)
    as_codes = lambda t, h, w: (t.to(torch.int64) & 0xFFFF).view(count, h, w)  # noqa: E731
    return as_codes(top, th, tw), as_codes(bottom, bh, bw)


def batches(n, batch, gen):
    order = torch.randperm(n, generator=gen)
    for i in range(0, n - batch + 1, batch):  # full batches, as vqvae2's loader
        yield order[i:i + batch]


def step_inputs(hier, top, bottom, idx):
    return (top[idx], None) if hier == "top" else (bottom[idx], top[idx])


@torch.no_grad()
def evaluate(model, hier, top, bottom, batch):
    model.eval()
    nll, correct, positions = 0.0, 0, 0
    for i in range(0, top.shape[0], batch):
        idx = torch.arange(i, min(i + batch, top.shape[0]))
        codes, cond = step_inputs(hier, top, bottom, idx)
        logits = model(codes, cond)
        nll += F.cross_entropy(logits, codes, reduction="sum").item()
        correct += (logits.argmax(1) == codes).sum().item()
        positions += codes.numel()
    model.train()
    return {"val_nll_nats": nll / positions, "val_bits_per_code": nll / positions / math.log(2),
            "val_accuracy": correct / positions}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hier", choices=["top", "bottom"], required=True)
    p.add_argument("--codes", required=True)
    p.add_argument("--val-codes", required=True)
    p.add_argument("--config", default="small", choices=["small", "reference"])
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json-out")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    top, bottom = read_code_file(a.codes)
    val_top, val_bottom = read_code_file(a.val_codes)
    model, _, _ = TP.build(a.config, a.hier)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed)
    print("PyTorch %s, %d threads: %s prior '%s' (%d parameters), %d training maps, %d validation maps" %
          (torch.__version__, torch.get_num_threads(), a.hier, a.config, sum(q.numel() for q in model.parameters()),
           top.shape[0], val_top.shape[0]), file=sys.stderr, flush=True)

    start = time.perf_counter()
    steps, images, epoch, done, losses = 0, 0, 0, False, []
    while not done:
        for idx in batches(top.shape[0], a.batch, gen):
            codes, cond = step_inputs(a.hier, top, bottom, idx)
            opt.zero_grad()
            loss = F.cross_entropy(model(codes, cond), codes)
            loss.backward()
            opt.step()
            steps += 1
            images += len(idx)
            losses.append(loss.item())
            elapsed = time.perf_counter() - start
            if steps % 10 == 0:
                print("step %d (epoch %d) loss %.4f nats, %.2f img/s" % (steps, epoch + 1, losses[-1],
                                                                           images / elapsed), file=sys.stderr,
                      flush=True)
            if elapsed >= a.minutes * 60:
                done = True
                break
        else:
            epoch += 1
    seconds = time.perf_counter() - start
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "hier": a.hier, "config": a.config,
              "batch": a.batch, "steps": steps, "images": images, "epochs": images / top.shape[0],
              "train_seconds": seconds, "img_per_s": images / seconds,
              "last_20_train_loss": sum(losses[-20:]) / max(1, len(losses[-20:]))}
    result.update(evaluate(model, a.hier, val_top, val_bottom, a.batch))
    print(json.dumps(result))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
