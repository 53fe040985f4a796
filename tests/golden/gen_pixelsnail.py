"""Golden values for the PixelSNAIL prior (include/vqvae2/models/pixelsnail.hpp).

The modules below are written the way the reference (rosinality's vq-vae-2-pytorch
pixelsnail.py) builds them, including its in-place ELU: GatedResBlock applies
nn.ELU(inplace=True) to its input, so the residual adds ELU(x), and a PixelBlock's
key concatenates ELU(input) once its first residual block has run. The C++ model
matches that function, so checkpoints map one-to-one.

Parameter names: the C++ names are the torch names without the weight-norm wrapper
segments ".conv" (blocks.0.resblocks.1.conv1.conv.conv.weight_v -> blocks.0.resblocks.1.conv1.weight_v).

Run: /usr/bin/python3 tests/golden/gen_pixelsnail.py          -> tests/golden/pixelsnail.bin
     /usr/bin/python3 tests/golden/gen_pixelsnail.py --count  parameter counts of the reference priors
"""
import sys
from functools import partial
from math import sqrt

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import weight_norm

from golden_io import write_golden


class WNConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, padding=0, bias=True):
        super().__init__()
        self.conv = weight_norm(nn.Conv2d(in_channel, out_channel, kernel_size, padding=padding, bias=bias))

    def forward(self, x):
        return self.conv(x)


def shift_down(x):
    return F.pad(x, [0, 0, 1, 0])[:, :, : x.shape[2], :]


def shift_right(x):
    return F.pad(x, [1, 0, 0, 0])[:, :, :, : x.shape[3]]


class CausalConv2d(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, padding="downright"):
        super().__init__()
        if isinstance(kernel_size, int):
            kernel_size = [kernel_size] * 2
        if padding == "downright":
            pad = [kernel_size[1] - 1, 0, kernel_size[0] - 1, 0]
        else:  # down, causal
            p = kernel_size[1] // 2
            pad = [p, p, kernel_size[0] - 1, 0]
        self.causal = kernel_size[1] // 2 if padding == "causal" else 0
        self.pad = nn.ZeroPad2d(pad)
        self.conv = WNConv2d(in_channel, out_channel, kernel_size)

    def forward(self, x):
        out = self.pad(x)
        if self.causal > 0:
            self.conv.conv.weight_v.data[:, :, -1, self.causal:].zero_()
        return self.conv(out)


class GatedResBlock(nn.Module):
    def __init__(self, in_channel, channel, kernel_size, conv="wnconv2d", dropout=0.1, auxiliary_channel=0,
                 condition_dim=0):
        super().__init__()
        if conv == "wnconv2d":
            conv_module = partial(WNConv2d, padding=kernel_size // 2)
        elif conv == "causal_downright":
            conv_module = partial(CausalConv2d, padding="downright")
        else:
            conv_module = partial(CausalConv2d, padding="causal")
        self.activation = nn.ELU(inplace=True)
        self.conv1 = conv_module(in_channel, channel, kernel_size)
        if auxiliary_channel > 0:
            self.aux_conv = WNConv2d(auxiliary_channel, channel, 1)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv_module(channel, in_channel * 2, kernel_size)
        if condition_dim > 0:
            self.condition = WNConv2d(condition_dim, in_channel * 2, 1, bias=False)
        self.gate = nn.GLU(1)

    def forward(self, x, aux_input=None, condition=None):
        out = self.conv1(self.activation(x))  # x now holds ELU(x)
        if aux_input is not None:
            out = out + self.aux_conv(self.activation(aux_input))
        out = self.activation(out)
        out = self.dropout(out)
        out = self.conv2(out)
        if condition is not None:
            out += self.condition(condition)
        out = self.gate(out)
        out += x
        return out


def causal_mask(size):
    mask = np.triu(np.ones([size, size]), k=1).astype(np.uint8).T
    start_mask = np.ones(size).astype(np.float32)
    start_mask[0] = 0
    return torch.from_numpy(mask).unsqueeze(0), torch.from_numpy(start_mask).unsqueeze(1)


class CausalAttention(nn.Module):
    def __init__(self, query_channel, key_channel, channel, n_head=8, dropout=0.1):
        super().__init__()
        self.query = weight_norm(nn.Linear(query_channel, channel))
        self.key = weight_norm(nn.Linear(key_channel, channel))
        self.value = weight_norm(nn.Linear(key_channel, channel))
        self.dim_head = channel // n_head
        self.n_head = n_head
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, key):
        batch, _, height, width = key.shape

        def reshape(t):
            return t.view(batch, -1, self.n_head, self.dim_head).transpose(1, 2)

        query_flat = query.view(batch, query.shape[1], -1).transpose(1, 2)
        key_flat = key.view(batch, key.shape[1], -1).transpose(1, 2)
        q = reshape(self.query(query_flat))
        k = reshape(self.key(key_flat)).transpose(2, 3)
        v = reshape(self.value(key_flat))
        attn = torch.matmul(q, k) / sqrt(self.dim_head)
        mask, start_mask = causal_mask(height * width)
        attn = attn.masked_fill(mask.type_as(q) == 0, -1e4)
        attn = torch.softmax(attn, 3) * start_mask.type_as(q)
        attn = self.dropout(attn)
        out = attn @ v
        out = out.transpose(1, 2).reshape(batch, height, width, self.dim_head * self.n_head)
        return out.permute(0, 3, 1, 2)


class PixelBlock(nn.Module):
    def __init__(self, in_channel, channel, kernel_size, n_res_block, attention=True, dropout=0.1, condition_dim=0,
                 n_head=8):
        super().__init__()
        self.resblocks = nn.ModuleList([
            GatedResBlock(in_channel, channel, kernel_size, conv="causal", dropout=dropout,
                          condition_dim=condition_dim) for _ in range(n_res_block)])
        self.attention = attention
        if attention:
            self.key_resblock = GatedResBlock(in_channel * 2 + 2, in_channel, 1, dropout=dropout)
            self.query_resblock = GatedResBlock(in_channel + 2, in_channel, 1, dropout=dropout)
            self.causal_attention = CausalAttention(in_channel + 2, in_channel * 2 + 2, in_channel // 2, n_head,
                                                    dropout=dropout)
            self.out_resblock = GatedResBlock(in_channel, in_channel, 1, auxiliary_channel=in_channel // 2,
                                              dropout=dropout)
        else:
            self.out = WNConv2d(in_channel + 2, in_channel, 1)

    def forward(self, x, background, condition=None):
        out = x
        for resblock in self.resblocks:
            out = resblock(out, condition=condition)
        if self.attention:
            key = self.key_resblock(torch.cat([x, out, background], 1))
            query = self.query_resblock(torch.cat([out, background], 1))
            attn_out = self.causal_attention(query, key)
            out = self.out_resblock(out, attn_out)
        else:
            out = self.out(torch.cat([out, background], 1))
        return out


class CondResNet(nn.Module):
    def __init__(self, in_channel, channel, kernel_size, n_res_block, dropout=0.1):
        super().__init__()
        blocks = [WNConv2d(in_channel, channel, kernel_size, padding=kernel_size // 2)]
        for _ in range(n_res_block):
            blocks.append(GatedResBlock(channel, channel, kernel_size, dropout=dropout))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class PixelSNAIL(nn.Module):
    def __init__(self, shape, n_class, channel, kernel_size, n_block, n_res_block, res_channel, attention=True,
                 dropout=0.1, n_cond_res_block=0, cond_res_channel=0, cond_res_kernel=3, n_out_res_block=0, n_head=8):
        super().__init__()
        height, width = shape
        self.n_class = n_class
        kernel = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
        self.horizontal = CausalConv2d(n_class, channel, [kernel // 2, kernel], padding="down")
        self.vertical = CausalConv2d(n_class, channel, [(kernel + 1) // 2, kernel // 2], padding="downright")
        coord_x = (torch.arange(height).float() - height / 2) / height
        coord_x = coord_x.view(1, 1, height, 1).expand(1, 1, height, width)
        coord_y = (torch.arange(width).float() - width / 2) / width
        coord_y = coord_y.view(1, 1, 1, width).expand(1, 1, height, width)
        self.register_buffer("background", torch.cat([coord_x, coord_y], 1))
        self.blocks = nn.ModuleList([
            PixelBlock(channel, res_channel, kernel_size, n_res_block, attention=attention, dropout=dropout,
                       condition_dim=cond_res_channel, n_head=n_head) for _ in range(n_block)])
        if n_cond_res_block > 0:
            self.cond_resnet = CondResNet(n_class, cond_res_channel, cond_res_kernel, n_cond_res_block, dropout)
        out = [GatedResBlock(channel, res_channel, 1, dropout=dropout) for _ in range(n_out_res_block)]
        out.extend([nn.ELU(inplace=True), WNConv2d(channel, n_class, 1)])
        self.out = nn.Sequential(*out)

    def forward(self, x, condition=None):
        batch, height, width = x.shape
        x = F.one_hot(x, self.n_class).permute(0, 3, 1, 2).type_as(self.background)
        out = shift_down(self.horizontal(x)) + shift_right(self.vertical(x))
        background = self.background[:, :, :height, :].expand(batch, 2, height, width)
        if condition is not None:
            condition = F.one_hot(condition, self.n_class).permute(0, 3, 1, 2).type_as(self.background)
            condition = self.cond_resnet(condition)
            condition = F.interpolate(condition, scale_factor=2)
            condition = condition[:, :, :height, :]
        for block in self.blocks:
            out = block(out, background, condition=condition)
        return self.out(out)


def cpp_name(torch_name):
    """The C++ parameter name: drop the weight-norm wrapper segments '.conv'."""
    return ".".join(s for s in torch_name.split(".") if s != "conv")


def perturb(m, gen):
    """weight_norm starts with g = ||v||; move g (and the biases) away so that every parameter matters."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(torch.empty(p.shape, dtype=p.dtype).uniform_(0.6, 1.4, generator=gen))
            elif name.endswith("bias"):
                p.uniform_(-0.3, 0.3, generator=gen)


def record(arrays, prefix, m):
    # The reference zeroes the hidden taps of weight_v before every forward, so they never
    # matter, but autograd still reports gradients for them; the C++ layer holds those
    # gradients at zero (the mask is applied to dv), so the golden records them zeroed.
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, CausalConv2d) and mod.causal > 0:
                mod.conv.conv.weight_v.grad[:, :, -1, mod.causal:] = 0
    for name, p in m.named_parameters():
        arrays[prefix + "param." + cpp_name(name)] = p
        arrays[prefix + "grad." + cpp_name(name)] = p.grad


def count():
    top = PixelSNAIL([32, 32], 512, 256, 5, 4, 4, 256, attention=True, dropout=0.1)
    bottom = PixelSNAIL([64, 64], 512, 256, 5, 4, 4, 256, attention=False, dropout=0.1, n_cond_res_block=3,
                        cond_res_channel=256)
    for name, m in (("top", top), ("bottom", bottom)):
        print(name, sum(p.numel() for p in m.parameters()))


def main():
    torch.manual_seed(20260707)
    gen = torch.Generator().manual_seed(7)
    arrays = {}

    # GatedResBlock: 3x3 causal convs, aux and condition, 6 -> res 5.
    blk = GatedResBlock(6, 5, 3, conv="causal", dropout=0.1, auxiliary_channel=3, condition_dim=4).double().eval()
    perturb(blk, gen)
    x = torch.randn(2, 6, 5, 6, dtype=torch.float64)
    aux = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    cond = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    xin = x.clone().requires_grad_(True)
    out = blk(xin.clone(), aux.clone(), cond)  # clones: the in-place ELUs must not overwrite the recorded inputs
    dy = torch.randn_like(out)
    out.backward(dy)
    arrays.update({"grb.x": x, "grb.aux": aux, "grb.cond": cond, "grb.dy": dy, "grb.out": out, "grb.dx": xin.grad,
                   "grb.daux": aux.grad, "grb.dcond": cond.grad})
    record(arrays, "grb.", blk)

    # PixelBlock with attention: channel 8, res 6, kernel 5, 2 res blocks, 2 heads, condition 3.
    pb = PixelBlock(8, 6, 5, 2, attention=True, dropout=0.1, condition_dim=3, n_head=2).double().eval()
    perturb(pb, gen)
    H, W = 4, 5
    x = torch.randn(2, 8, H, W, dtype=torch.float64)
    cond = torch.randn(2, 3, H, W, dtype=torch.float64, requires_grad=True)
    bg = PixelSNAIL([H, W], 4, 4, 5, 1, 1, 4).background.double().expand(2, 2, H, W)
    xin = x.clone().requires_grad_(True)
    out = pb(xin.clone(), bg, cond)
    dy = torch.randn_like(out)
    out.backward(dy)
    arrays.update({"pb.x": x, "pb.bg": bg, "pb.cond": cond, "pb.dy": dy, "pb.out": out, "pb.dx": xin.grad, "pb.dcond": cond.grad})
    record(arrays, "pb.", pb)

    # Whole tiny priors (the TopTiny / BottomTiny configurations of pixelsnail_configs.hpp).
    top = PixelSNAIL([8, 8], 16, 8, 5, 2, 2, 8, attention=True, dropout=0.1, n_out_res_block=1,
                     n_head=2).double().eval()
    perturb(top, gen)
    codes = torch.randint(0, 16, (2, 8, 8), generator=gen)
    logits = top(codes)
    dl = torch.randn_like(logits)
    logits.backward(dl)
    arrays.update({"top.codes": codes, "top.logits": logits, "top.dlogits": dl})
    record(arrays, "top.", top)

    bottom = PixelSNAIL([8, 8], 16, 8, 5, 2, 2, 8, attention=False, dropout=0.1, n_cond_res_block=1,
                        cond_res_channel=6).double().eval()
    perturb(bottom, gen)
    codes = torch.randint(0, 16, (2, 8, 8), generator=gen)
    cond = torch.randint(0, 16, (2, 4, 4), generator=gen)
    logits = bottom(codes, cond)
    dl = torch.randn_like(logits)
    logits.backward(dl)
    arrays.update({"bottom.codes": codes, "bottom.condition": cond, "bottom.logits": logits, "bottom.dlogits": dl})
    record(arrays, "bottom.", bottom)

    write_golden("pixelsnail.bin", arrays)


if __name__ == "__main__":
    if "--count" in sys.argv:
        count()
    else:
        main()
