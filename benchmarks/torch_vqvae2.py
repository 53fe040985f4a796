"""The reference VQ-VAE-2 architecture (REFERENCE.md) in PyTorch, for side-by-side
timings and for parity goldens. Written from the architecture description."""
import torch
from torch import nn
import torch.nn.functional as F


class Quantize(nn.Module):
    def __init__(self, dim, n_embed, decay=0.99, eps=1e-5):
        super().__init__()
        self.dim, self.n_embed, self.decay, self.eps = dim, n_embed, decay, eps
        embed = torch.randn(dim, n_embed)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, x):  # x: [N, H, W, dim]
        flat = x.reshape(-1, self.dim)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed + self.embed.pow(2).sum(0, keepdim=True)
        _, ind = (-dist).max(1)
        onehot = F.one_hot(ind, self.n_embed).type(flat.dtype)
        ind = ind.view(*x.shape[:-1])
        quantize = F.embedding(ind, self.embed.transpose(0, 1))
        if self.training:
            with torch.no_grad():
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(flat.transpose(0, 1) @ onehot, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (n + self.n_embed * self.eps) * n
                self.embed.copy_(self.embed_avg / size.unsqueeze(0))
        diff = (quantize.detach() - x).pow(2).mean()
        quantize = x + (quantize - x).detach()
        return quantize, diff, ind


class ResBlock(nn.Module):
    def __init__(self, c, rc):
        super().__init__()
        self.conv = nn.Sequential(nn.ReLU(), nn.Conv2d(c, rc, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(rc, c, 1))

    def forward(self, x):
        return x + self.conv(x)


def encoder(cin, ch, nrb, rc, stride):
    if stride == 4:
        layers = [nn.Conv2d(cin, ch // 2, 4, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(ch // 2, ch, 4, 2, 1),
                  nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, padding=1)]
    else:
        layers = [nn.Conv2d(cin, ch // 2, 4, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(ch // 2, ch, 3, padding=1)]
    layers += [ResBlock(ch, rc) for _ in range(nrb)] + [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def decoder(cin, cout, ch, nrb, rc, stride):
    layers = [nn.Conv2d(cin, ch, 3, padding=1)] + [ResBlock(ch, rc) for _ in range(nrb)] + [nn.ReLU(inplace=True)]
    if stride == 4:
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.ReLU(inplace=True), nn.ConvTranspose2d(ch // 2, cout, 4, 2, 1)]
    else:
        layers += [nn.ConvTranspose2d(ch, cout, 4, 2, 1)]
    return nn.Sequential(*layers)


class VQVAE2(nn.Module):
    def __init__(self, in_channel=1, channel=128, n_res_block=2, n_res_channel=32, embed_dim=64, n_embed=512):
        super().__init__()
        self.enc_b = encoder(in_channel, channel, n_res_block, n_res_channel, 4)
        self.enc_t = encoder(channel, channel, n_res_block, n_res_channel, 2)
        self.quantize_conv_t = nn.Conv2d(channel, embed_dim, 1)
        self.quantize_t = Quantize(embed_dim, n_embed)
        self.dec_t = decoder(embed_dim, embed_dim, channel, n_res_block, n_res_channel, 2)
        self.quantize_conv_b = nn.Conv2d(embed_dim + channel, embed_dim, 1)
        self.quantize_b = Quantize(embed_dim, n_embed)
        self.upsample_t = nn.ConvTranspose2d(embed_dim, embed_dim, 4, 2, 1)
        self.dec = decoder(embed_dim * 2, in_channel, channel, n_res_block, n_res_channel, 4)

    def forward(self, x):
        enc_b = self.enc_b(x)
        enc_t = self.enc_t(enc_b)
        qt, diff_t, _ = self.quantize_t(self.quantize_conv_t(enc_t).permute(0, 2, 3, 1))
        qt = qt.permute(0, 3, 1, 2)
        dec_t = self.dec_t(qt)
        qb, diff_b, _ = self.quantize_b(self.quantize_conv_b(torch.cat([dec_t, enc_b], 1)).permute(0, 2, 3, 1))
        qb = qb.permute(0, 3, 1, 2)
        dec = self.dec(torch.cat([self.upsample_t(qt), qb], 1))
        return dec, diff_t + diff_b
