"""The PixelSNAIL prior workloads of benchmarks/bench_pixelsnail.cpp in PyTorch, with the
reference-architecture modules of tests/golden/gen_pixelsnail.py (rosinality's
pixelsnail.py, imported, not copied). One workload per process; prints one JSON line
(peak RSS is the process's resource.getrusage maxrss, so run each workload in a fresh process).

    ../shared/tools/torch-baseline python benchmarks/torch_pixelsnail.py WORKLOAD [options]
    (or /usr/bin/python3 with Debian's torch 1.13)

Workloads:
  train       zero_grad, forward (training mode), F.cross_entropy against the input codes,
              backward, Adam(lr 3e-4) step; median step time over --steps after --warmup.
  naive       naive sampling time per image as the reference samples: for every raster
              position (i, j) the network (evaluation mode, no grad) runs on the prefix rows
              0..i, with the conditioning network's output computed once (the reference's
              cache). The forward is timed at --heights prefix heights (median of --reps
              after one warm-up each), interpolated linearly in the height and summed over
              all H x W positions, then divided by the batch.
  forward     the no-grad evaluation forward of the whole map (median of --reps).
  check-sdpa  the SDPA attention variant against the reference one on a tiny prior:
              logits (evaluation) and parameter gradients, max abs difference.

Options: --prior top|bottom, --batch B, --config reference|small (small: the TopSmall /
BottomSmall sizes of include/vqvae2/models/pixelsnail_configs.hpp, for smoke tests),
--sdpa (the top prior's CausalAttention through F.scaled_dot_product_attention, the same
function: strictly-earlier mask, the first position's output zero, dropout on the
probabilities in training), --bf16 (torch.autocast("cpu", dtype=torch.bfloat16)),
--threads (default 2).
"""
import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "golden"))
import gen_pixelsnail as G  # noqa: E402

# name -> (PixelSNAIL positional args, keyword args); the C++ configurations of the same name.
CONFIGS = {
    ("reference", "top"): (([32, 32], 512, 256, 5, 4, 4, 256), dict(attention=True, dropout=0.1, n_head=8)),
    ("reference", "bottom"): (([64, 64], 512, 256, 5, 4, 4, 256),
                              dict(attention=False, dropout=0.1, n_cond_res_block=3, cond_res_channel=256, n_head=8)),
    ("small", "top"): (([32, 32], 512, 64, 5, 2, 2, 64), dict(attention=True, dropout=0.1, n_head=4)),
    ("small", "bottom"): (([64, 64], 512, 64, 5, 2, 2, 64),
                          dict(attention=False, dropout=0.1, n_cond_res_block=2, cond_res_channel=64, n_head=4)),
    ("tiny", "top"): (([8, 8], 16, 8, 5, 2, 2, 8), dict(attention=True, dropout=0.1, n_out_res_block=1, n_head=2)),
}


class SDPACausalAttention(G.CausalAttention):
    """G.CausalAttention's function through F.scaled_dot_product_attention: position i attends
    to j < i; position 0 attends to nothing (the reference softmaxes a fully masked row and
    multiplies it by 0, so its output is 0): it gets one dummy key and its output is zeroed."""

    _masks = {}

    @classmethod
    def masks(cls, L, device):
        if L not in cls._masks:
            allowed = torch.ones(L, L, dtype=torch.bool, device=device).tril(-1)
            allowed[0, 0] = True
            start = torch.ones(L, 1, device=device)
            start[0] = 0
            cls._masks[L] = (allowed, start)
        return cls._masks[L]

    def forward(self, query, key):
        batch, _, height, width = key.shape
        L = height * width

        def reshape(t):
            return t.view(batch, -1, self.n_head, self.dim_head).transpose(1, 2)

        query_flat = query.view(batch, query.shape[1], -1).transpose(1, 2)
        key_flat = key.view(batch, key.shape[1], -1).transpose(1, 2)
        q = reshape(self.query(query_flat))
        k = reshape(self.key(key_flat))
        v = reshape(self.value(key_flat))
        allowed, start = self.masks(L, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                             dropout_p=self.dropout.p if self.training else 0.0)
        out = out * start.to(out.dtype)
        out = out.transpose(1, 2).reshape(batch, height, width, self.dim_head * self.n_head)
        return out.permute(0, 3, 1, 2)


def build(config, prior, sdpa=False):
    args, kwargs = CONFIGS[(config, prior)]
    model = G.PixelSNAIL(*args, **kwargs)
    if sdpa:
        if not hasattr(F, "scaled_dot_product_attention"):
            raise SystemExit("--sdpa: torch %s has no F.scaled_dot_product_attention (2.0 or later)" % torch.__version__)
        n = 0
        for block in model.blocks:
            if block.attention:
                block.causal_attention.__class__ = SDPACausalAttention
                n += 1
        if n == 0:
            raise SystemExit("--sdpa: this prior has no attention")
    return model, args[0], args[1]


def inputs(shape, n_class, batch, conditioned, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, n_class, (batch, *shape), generator=g)
    cond = torch.randint(0, n_class, (batch, shape[0] // 2, shape[1] // 2), generator=g) if conditioned else None
    return codes, cond


def condition_features(model, cond):
    """The conditioning network's output, computed once (the reference sampler's cache)."""
    c = F.one_hot(cond, model.n_class).permute(0, 3, 1, 2).type_as(model.background)
    return F.interpolate(model.cond_resnet(c), scale_factor=2)


def forward_cached(model, x, cond_feat):
    """G.PixelSNAIL.forward on prefix rows x [B, h, W] with a precomputed condition
    (rosinality's forward with cache['condition']): the same module calls."""
    if cond_feat is None:
        return model(x)
    batch, height, width = x.shape
    x = F.one_hot(x, model.n_class).permute(0, 3, 1, 2).type_as(model.background)
    out = G.shift_down(model.horizontal(x)) + G.shift_right(model.vertical(x))
    background = model.background[:, :, :height, :].expand(batch, 2, height, width)
    condition = cond_feat[:, :, :height, :]
    for block in model.blocks:
        out = block(out, background, condition=condition)
    return model.out(out)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def autocast(on):
    if on:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def timed(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def run_train(a):
    model, shape, n_class = build(a.config, a.prior, a.sdpa)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    codes, cond = inputs(shape, n_class, a.batch, a.prior == "bottom")

    def step():
        opt.zero_grad()
        with autocast(a.bf16):
            logits = model(codes, cond)
            loss = F.cross_entropy(logits.float(), codes)
        loss.backward()
        opt.step()

    median, times = timed(step, a.steps, a.warmup)
    return {"step_s": median, "img_per_s": a.batch / median, "times": times}


def run_forward(a):
    model, shape, n_class = build(a.config, a.prior, a.sdpa)
    model.eval()
    codes, cond = inputs(shape, n_class, a.batch, a.prior == "bottom")

    def fwd():
        with torch.no_grad(), autocast(a.bf16):
            model(codes, cond)

    median, times = timed(fwd, a.reps, 1)
    return {"forward_s": median, "img_per_s": a.batch / median, "times": times}


def heights_for(H, k):
    if k <= 1:
        return [H]
    return sorted({max(1, round(1 + (H - 1) * i / (k - 1))) for i in range(k)})


def run_naive(a):
    model, shape, n_class = build(a.config, a.prior, a.sdpa)
    model.eval()
    H, W = shape
    codes, cond = inputs(shape, n_class, a.batch, a.prior == "bottom")
    with torch.no_grad(), autocast(a.bf16):
        t = time.perf_counter()
        cond_feat = condition_features(model, cond) if cond is not None else None
        cond_s = time.perf_counter() - t
    measured = {}
    for h in heights_for(H, a.heights):
        prefix = codes[:, :h].contiguous()

        def fwd():
            with torch.no_grad(), autocast(a.bf16):
                logits = forward_cached(model, prefix, cond_feat)
                torch.softmax(logits[:, :, h - 1, 0], 1)  # the reference's draw reads one position

        measured[h], _ = timed(fwd, a.reps, 1)
    hs = sorted(measured)

    def interp(h):
        for lo, hi in zip(hs, hs[1:]):
            if lo <= h <= hi:
                return measured[lo] + (measured[hi] - measured[lo]) * (h - lo) / (hi - lo)
        return measured[hs[-1]] * h / hs[-1] if h > hs[-1] else measured[hs[0]]

    per_batch = cond_s + sum(W * interp(h) for h in range(1, H + 1))
    return {"s_per_img": per_batch / a.batch, "per_batch_s": per_batch, "cond_s": cond_s,
            "step_s_by_height": {str(h): measured[h] for h in hs}, "positions": H * W}


def run_check_sdpa(a):
    torch.manual_seed(0)
    ref, shape, n_class = build("tiny", "top")
    sdpa, _, _ = build("tiny", "top", sdpa=True)
    sdpa.load_state_dict(ref.state_dict())
    ref.double().eval()
    sdpa.double().eval()
    codes, _ = inputs(shape, n_class, 2, False, seed=1)
    lr, ls = ref(codes), sdpa(codes)
    dl = torch.randn_like(lr)
    lr.backward(dl)
    ls.backward(dl)
    grad_diff = max((p.grad - q.grad).abs().max().item()
                    for p, q in zip(ref.parameters(), sdpa.parameters()) if p.grad is not None)
    logit_diff = (lr - ls).abs().max().item()
    return {"logits_max_abs_diff": logit_diff, "grad_max_abs_diff": grad_diff, "ok": logit_diff < 1e-9 and grad_diff < 1e-9}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["train", "naive", "forward", "check-sdpa"])
    ap.add_argument("--prior", choices=["top", "bottom"], default="top")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--config", choices=["reference", "small"], default="reference")
    ap.add_argument("--sdpa", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--heights", type=int, default=5, help="prefix heights timed by 'naive' (1 and H included)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    run = {"train": run_train, "naive": run_naive, "forward": run_forward, "check-sdpa": run_check_sdpa}[a.workload]
    result = {"workload": a.workload, "prior": a.prior, "config": a.config, "batch": a.batch, "sdpa": a.sdpa,
              "bf16": a.bf16, "threads": a.threads, "torch": torch.__version__}
    result.update(run(a))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
