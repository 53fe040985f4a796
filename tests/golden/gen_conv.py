"""PyTorch goldens for Conv2d and ConvTranspose2d: forward output and the gradients
of input, weight and bias for a fixed upstream gradient. Run with /usr/bin/python3;
writes tests/golden/conv.bin."""
import torch
import torch.nn.functional as F

from golden_io import write_golden

torch.manual_seed(1234)
arrays = {}

# name, N, Cin, Cout, H, W, kernel (kh, kw), stride, padding (left, right, top, bottom)
CONV_CASES = [
    ("c3x3", 2, 3, 4, 6, 5, (3, 3), 1, (1, 1, 1, 1)),
    ("c4x4s2", 2, 3, 5, 8, 6, (4, 4), 2, (1, 1, 1, 1)),
    ("c1x1", 2, 6, 3, 4, 4, (1, 1), 1, (0, 0, 0, 0)),
    # A PixelSNAIL-style causal "down" kernel: pad top kh-1, left/right kw//2, bottom 0.
    ("causal", 2, 3, 4, 6, 7, (3, 5), 1, (2, 2, 2, 0)),
]
# name, N, Cin, Cout, H, W, kernel, stride, padding (symmetric)
TCONV_CASES = [
    ("t4x4s2", 2, 3, 4, 5, 4, (4, 4), 2, 1),
    ("t3x3s1", 2, 4, 3, 4, 5, (3, 3), 1, 0),
    ("t3x3s2", 1, 2, 3, 3, 4, (3, 3), 2, 1),
]


def run(name, x, w, b, fn):
    x = x.double().requires_grad_()
    w = w.double().requires_grad_()
    b = b.double().requires_grad_()
    y = fn(x, w, b)
    dy = torch.randn_like(y)
    y.backward(dy)
    arrays.update({name + ".x": x, name + ".w": w, name + ".b": b, name + ".dy": dy, name + ".y": y,
                   name + ".dx": x.grad, name + ".dw": w.grad, name + ".db": b.grad})


for name, n, cin, cout, h, wd, (kh, kw), s, pad in CONV_CASES:
    x = torch.randn(n, cin, h, wd)
    w = torch.randn(cout, cin, kh, kw) * 0.3
    b = torch.randn(cout)
    run(name, x, w, b, lambda x, w, b, s=s, pad=pad: F.conv2d(F.pad(x, pad), w, b, stride=s))

for name, n, cin, cout, h, wd, (kh, kw), s, p in TCONV_CASES:
    x = torch.randn(n, cin, h, wd)
    w = torch.randn(cin, cout, kh, kw) * 0.3
    b = torch.randn(cout)
    run(name, x, w, b, lambda x, w, b, s=s, p=p: F.conv_transpose2d(x, w, b, stride=s, padding=p))

write_golden("conv.bin", arrays)
