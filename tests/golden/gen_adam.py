"""Golden values for train::Adam: three steps of torch.optim.Adam / AdamW.

Two small parameters (w [3, 4], b [5]) with given gradients; the parameters
after every step and the moments after the last. Values start as float32
numbers so the C++ float and double runs see identical inputs. Some gradient
entries are tiny (1e-9, 1e-7) so that eps visibly shapes the update.

Run with /usr/bin/python3 (Debian's torch 1.13): writes tests/golden/adam.bin.
"""
import torch

from golden_io import write_golden

torch.manual_seed(1234)
w0 = torch.randn(3, 4, dtype=torch.float32).double()
b0 = torch.randn(5, dtype=torch.float32).double()
b_scale = torch.tensor([1e-9, 1e-7, 1.0, 1.0, 1e-3], dtype=torch.float32)
grads = []
for _ in range(3):
    gw = torch.randn(3, 4, dtype=torch.float32).double()
    gb = (torch.randn(5, dtype=torch.float32) * b_scale).double()
    grads.append((gw, gb))

# name -> (optimizer class, options, learning rate used at steps 1, 2, 3)
configs = {
    "plain": (torch.optim.Adam, dict(), [1e-2, 1e-2, 5e-3]),
    "l2": (torch.optim.Adam, dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), [2e-2, 2e-2, 2e-2]),
    "adamw": (torch.optim.AdamW, dict(weight_decay=0.1), [1e-2, 1e-2, 1e-2]),
}

arrays = {"w0": w0, "b0": b0}
for k, (gw, gb) in enumerate(grads, start=1):
    arrays["gw%d" % k] = gw
    arrays["gb%d" % k] = gb

for name, (cls, opts, lrs) in configs.items():
    w = torch.nn.Parameter(w0.clone())
    b = torch.nn.Parameter(b0.clone())
    opt = cls([w, b], lr=lrs[0], **opts)
    for k, (gw, gb) in enumerate(grads, start=1):
        for group in opt.param_groups:
            group["lr"] = lrs[k - 1]
        w.grad = gw.clone()
        b.grad = gb.clone()
        opt.step()
        arrays["%s.w.step%d" % (name, k)] = w.detach().clone()
        arrays["%s.b.step%d" % (name, k)] = b.detach().clone()
    arrays["%s.lr" % name] = torch.tensor(lrs, dtype=torch.float64)
    for pname, p in (("w", w), ("b", b)):
        arrays["%s.%s.exp_avg" % (name, pname)] = opt.state[p]["exp_avg"]
        arrays["%s.%s.exp_avg_sq" % (name, pname)] = opt.state[p]["exp_avg_sq"]

write_golden("adam.bin", arrays)
