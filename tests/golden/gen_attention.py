"""Golden values for nn::CausalAttention: PixelSNAIL's CausalAttention (rosinality's
module, written out here) with weight-normalised linears, eval mode (no dropout).

Run: /usr/bin/python3 tests/golden/gen_attention.py  -> tests/golden/attention.bin
     /usr/bin/python3 tests/golden/gen_attention.py --time [eval]
         times the module at benchmarks/bench_attention.cpp's shape (2 threads).
"""
import sys
import time
from math import sqrt

import numpy as np
import torch
from torch import nn
from torch.nn.utils import weight_norm

from golden_io import write_golden


def wn_linear(in_dim, out_dim):
    return weight_norm(nn.Linear(in_dim, out_dim))


def causal_mask(size):
    mask = np.triu(np.ones([size, size]), k=1).astype(np.uint8).T
    start_mask = np.ones(size).astype(np.float32)
    start_mask[0] = 0
    return torch.from_numpy(mask).unsqueeze(0), torch.from_numpy(start_mask).unsqueeze(1)


class CausalAttention(nn.Module):
    def __init__(self, query_channel, key_channel, channel, n_head=8, dropout=0.1):
        super().__init__()
        self.query = wn_linear(query_channel, channel)
        self.key = wn_linear(key_channel, channel)
        self.value = wn_linear(key_channel, channel)
        self.dim_head = channel // n_head
        self.n_head = n_head
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, key):
        batch, _, height, width = key.shape

        def reshape(x):
            return x.view(batch, -1, self.n_head, self.dim_head).transpose(1, 2)

        query_flat = query.view(batch, query.shape[1], -1).transpose(1, 2)
        key_flat = key.view(batch, key.shape[1], -1).transpose(1, 2)
        query = reshape(self.query(query_flat))
        key = reshape(self.key(key_flat)).transpose(2, 3)
        value = reshape(self.value(key_flat))

        attn = torch.matmul(query, key) / sqrt(self.dim_head)
        mask, start_mask = causal_mask(height * width)
        mask = mask.type_as(query)
        start_mask = start_mask.type_as(query)
        attn = attn.masked_fill(mask == 0, -1e4)
        attn = torch.softmax(attn, 3) * start_mask
        attn = self.dropout(attn)
        out = attn @ value
        out = out.transpose(1, 2).reshape(batch, height, width, self.dim_head * self.n_head)
        return out.permute(0, 3, 1, 2)


def main():
    torch.manual_seed(1234)
    B, CQ, CK, CH, HEADS, H, W = 2, 6, 10, 32, 8, 4, 5
    m = CausalAttention(CQ, CK, CH, HEADS).double().eval()
    # weight_norm starts with g = ||v||; move g away from it so g and v both matter.
    with torch.no_grad():
        for lin in (m.query, m.key, m.value):
            lin.weight_g.mul_(torch.empty_like(lin.weight_g).uniform_(0.5, 1.5))
            lin.bias.uniform_(-0.5, 0.5)
    query = torch.randn(B, CQ, H, W, dtype=torch.float64, requires_grad=True)
    key = torch.randn(B, CK, H, W, dtype=torch.float64, requires_grad=True)
    out = m(query, key)
    dy = torch.randn_like(out)
    out.backward(dy)

    arrays = {"query": query, "key": key, "dy": dy, "out": out, "dquery": query.grad, "dkey": key.grad}
    for name, p in m.named_parameters():
        arrays["param." + name] = p
        arrays["grad." + name] = p.grad
    write_golden("attention.bin", arrays)


def time_reference(train=True, repeats=6):
    """Forward and backward at B=8, 32x32, query 258, key 514, 128 channels, 8 heads."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    m = CausalAttention(258, 514, 128, 8, 0.1).train(train)
    query = torch.randn(8, 258, 32, 32, requires_grad=True)
    key = torch.randn(8, 514, 32, 32, requires_grad=True)
    dy = torch.randn(8, 128, 32, 32)
    fwd, bwd = [], []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        out = m(query, key)
        t1 = time.perf_counter()
        out.backward(dy)
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
    fwd, bwd = sorted(fwd[1:]), sorted(bwd[1:])  # the first call warms up
    print("PyTorch CausalAttention %s: forward min %.0f ms median %.0f ms, backward min %.0f ms median %.0f ms"
          % ("train" if train else "eval", fwd[0] * 1e3, fwd[len(fwd) // 2] * 1e3, bwd[0] * 1e3,
             bwd[len(bwd) // 2] * 1e3))


if __name__ == "__main__":
    if "--time" in sys.argv:
        time_reference(train="eval" not in sys.argv)
    else:
        main()
