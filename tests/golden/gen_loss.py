"""PyTorch goldens for nn/loss.hpp, nn/glu.hpp and the ELU of nn/activation.hpp.

Run with Debian's python3 (torch 1.13):  /usr/bin/python3 tests/golden/gen_loss.py
Writes tests/golden/loss.bin. Inputs are float32 (what the C++ side computes
in); the reference outputs are computed in float64 from those same inputs.
"""
import torch
import torch.nn.functional as F

from golden_io import write_golden

torch.manual_seed(20240607)


def f32(t):
    # Round to float32 so both sides start from identical inputs.
    return t.float().double()


def cross_entropy_case(prefix, n, k, h, w, spread):
    logits = f32(torch.randn(n, k, h, w, dtype=torch.float64) * spread).requires_grad_(True)
    targets = torch.randint(0, k, (n, h, w))
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    acc = (logits.argmax(dim=1) == targets).double().mean()
    return {
        prefix + "logits": logits,
        prefix + "targets": targets,
        prefix + "loss": loss.reshape(1),
        prefix + "dlogits": logits.grad,
        prefix + "accuracy": acc.reshape(1),
    }


arrays = {}
arrays.update(cross_entropy_case("ce_small.", 2, 7, 3, 5, 2.0))
# The PixelSNAIL head's class count; large logits check the max subtraction.
arrays.update(cross_entropy_case("ce_512.", 2, 512, 2, 2, 8.0))

# softmax over channels with a temperature (sampling).
x = f32(torch.randn(2, 7, 3, 5, dtype=torch.float64) * 3)
arrays["softmax.x"] = x
arrays["softmax.temperature"] = torch.tensor([0.7], dtype=torch.float64)
arrays["softmax.y"] = torch.softmax(x / 0.7, dim=1)

# MSE loss and gradient.
pred = f32(torch.randn(2, 1, 4, 4, dtype=torch.float64)).requires_grad_(True)
target = f32(torch.randn(2, 1, 4, 4, dtype=torch.float64))
mse = F.mse_loss(pred, target)
mse.backward()
arrays["mse.pred"] = pred
arrays["mse.target"] = target
arrays["mse.loss"] = mse.reshape(1)
arrays["mse.dpred"] = pred.grad

# ELU (alpha 1) forward and backward, with values on both sides and near 0.
x = f32(torch.randn(2, 3, 4, 5, dtype=torch.float64) * 2)
x.view(-1)[:6] = torch.tensor([0.0, -1e-3, 1e-3, -20.0, 20.0, -0.4], dtype=torch.float64)
x.requires_grad_(True)
dy = f32(torch.randn(2, 3, 4, 5, dtype=torch.float64))
y = F.elu(x, alpha=1.0)
y.backward(dy)
arrays["elu.x"] = x
arrays["elu.dy"] = dy
arrays["elu.y"] = y
arrays["elu.dx"] = x.grad

# GLU over channels.
x = f32(torch.randn(2, 6, 3, 4, dtype=torch.float64) * 2).requires_grad_(True)
dy = f32(torch.randn(2, 3, 3, 4, dtype=torch.float64))
y = F.glu(x, dim=1)
y.backward(dy)
arrays["glu.x"] = x
arrays["glu.dy"] = dy
arrays["glu.y"] = y
arrays["glu.dx"] = x.grad

write_golden("loss.bin", arrays)
