"""PyTorch goldens for nn::Linear, nn::WNLinear, nn::WNConv2d and nn::CausalConv2d.

Run with /usr/bin/python3 from the repository root: writes tests/golden/weightnorm.bin.

Every case stores its inputs (x, parameters, a probe) and PyTorch's results for the
loss L = sum(out * probe): the forward output and the gradients of x and every parameter.
The causal convolutions are built as in rosinality's PixelSNAIL: nn.ZeroPad2d(pad) then a
weight-normed conv with padding 0; 'causal' zeroes weight_v[:, :, -1, kw//2:] before each
forward. PyTorch still reports gradients for those zeroed entries of v; the file keeps
PyTorch's raw values and the C++ test compares the unmasked entries (ours are held at zero).
"""
import torch
import torch.nn as nn
from torch.nn.utils import weight_norm

from golden_io import write_golden

torch.manual_seed(20240611)
torch.set_default_dtype(torch.float64)


def rand(*shape):
    return torch.rand(*shape) * 2 - 1


def run(prefix, module, params, x, out_arrays):
    """params: list of (name, torch parameter) in the order the C++ layer visits them."""
    x = x.clone().requires_grad_(True)
    # Values before the forward: the 'causal' forward zeroes part of weight_v in place.
    for name, p in params:
        out_arrays[prefix + "." + name] = p.detach().clone()
    out = module(x)
    probe = rand(*out.shape)
    (out * probe).sum().backward()
    out_arrays[prefix + ".x"] = x
    out_arrays[prefix + ".probe"] = probe
    out_arrays[prefix + ".out"] = out
    out_arrays[prefix + ".grad_x"] = x.grad
    for name, p in params:
        out_arrays[prefix + ".grad_" + name] = p.grad


def set_wn(m):
    # Generic g (not ||v||) so that the g-scaling is really exercised.
    with torch.no_grad():
        m.weight_v.copy_(torch.randn_like(m.weight_v))
        m.weight_g.copy_(torch.rand_like(m.weight_g) + 0.5)
        m.bias.copy_(rand(*m.bias.shape))


class CausalConv2d(nn.Module):
    """rosinality's CausalConv2d, stride 1."""

    def __init__(self, cin, cout, kernel, padding):
        super().__init__()
        kh, kw = kernel
        if padding == "downright":
            pad = [kw - 1, 0, kh - 1, 0]
        else:
            pad = [kw // 2, kw // 2, kh - 1, 0]
        self.causal = kw // 2 if padding == "causal" else 0
        self.pad = nn.ZeroPad2d(pad)
        self.conv = weight_norm(nn.Conv2d(cin, cout, kernel, padding=0))

    def forward(self, x):
        if self.causal > 0:
            self.conv.weight_v.data[:, :, -1, self.causal:].zero_()
        return self.conv(self.pad(x))


arrays = {}

lin = nn.Linear(6, 5)
with torch.no_grad():
    lin.weight.copy_(rand(5, 6))
    lin.bias.copy_(rand(5))
run("linear", lin, [("weight", lin.weight), ("bias", lin.bias)], rand(7, 6), arrays)

wnl = weight_norm(nn.Linear(6, 5))
set_wn(wnl)
run("wnlinear", wnl, [("weight_g", wnl.weight_g), ("weight_v", wnl.weight_v), ("bias", wnl.bias)], rand(7, 6), arrays)

wnc = weight_norm(nn.Conv2d(3, 4, 3, stride=1, padding=1))
set_wn(wnc)
run("wnconv", wnc, [("weight_g", wnc.weight_g), ("weight_v", wnc.weight_v), ("bias", wnc.bias)],
    rand(2, 3, 5, 6), arrays)

# A strided, unpadded case too: geometry is passed straight through to the conv op.
wns = weight_norm(nn.Conv2d(2, 3, 4, stride=2, padding=0))
set_wn(wns)
run("wnconv_s2", wns, [("weight_g", wns.weight_g), ("weight_v", wns.weight_v), ("bias", wns.bias)],
    rand(2, 2, 8, 7), arrays)

for name, kernel, mode in [("causal", (5, 5), "causal"), ("down", (2, 5), "down"), ("downright", (3, 2), "downright")]:
    m = CausalConv2d(3, 4, kernel, mode)
    set_wn(m.conv)
    c = m.conv
    run(name, m, [("weight_g", c.weight_g), ("weight_v", c.weight_v), ("bias", c.bias)], rand(2, 3, 6, 7), arrays)

write_golden("weightnorm.bin", arrays)
