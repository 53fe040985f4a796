"""Golden values for vq::VectorQuantizer: the reference Quantize module (rosinality's
VQ-VAE-2, EMA code book), restated here, run for two training-mode forwards.

Our quantiser takes NCHW input; the reference takes channel-last rows, so the
inputs are stored NCHW and permuted for the reference. Run: /usr/bin/python3 gen_vq.py
"""
import torch
from torch import nn
from torch.nn import functional as F

from golden_io import write_golden


class Quantize(nn.Module):
    """The reference algorithm (single process: no distributed all-reduce)."""

    def __init__(self, dim, n_embed, decay=0.99, eps=1e-5):
        super().__init__()
        self.dim = dim
        self.n_embed = n_embed
        self.decay = decay
        self.eps = eps
        embed = torch.randn(dim, n_embed)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, input):
        flatten = input.reshape(-1, self.dim)
        dist = (
            flatten.pow(2).sum(1, keepdim=True)
            - 2 * flatten @ self.embed
            + self.embed.pow(2).sum(0, keepdim=True)
        )
        _, embed_ind = (-dist).max(1)
        embed_onehot = F.one_hot(embed_ind, self.n_embed).type(flatten.dtype)
        embed_ind = embed_ind.view(*input.shape[:-1])
        quantize = self.embed_code(embed_ind)

        if self.training:
            embed_onehot_sum = embed_onehot.sum(0)
            embed_sum = flatten.transpose(0, 1) @ embed_onehot
            self.cluster_size.data.mul_(self.decay).add_(embed_onehot_sum, alpha=1 - self.decay)
            self.embed_avg.data.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            cluster_size = (self.cluster_size + self.eps) / (n + self.n_embed * self.eps) * n
            embed_normalized = self.embed_avg / cluster_size.unsqueeze(0)
            self.embed.data.copy_(embed_normalized)

        diff = (quantize.detach() - input).pow(2).mean()
        quantize = input + (quantize - input).detach()
        return quantize, diff, embed_ind

    def embed_code(self, embed_id):
        return F.embedding(embed_id, self.embed.transpose(0, 1))


def main():
    torch.manual_seed(20240607)
    dim, n_embed = 32, 64  # must match the test's VectorQuantizer<.., 32, 64>
    q = Quantize(dim, n_embed)
    q.train()
    arrays = {"embed0": q.embed.clone()}
    # Two steps, the second starting from the EMA state of the first. H*W = 30 rows per
    # image, not a multiple of any chunk size, and 90 rows for 64 codes: some codes unused.
    for step, shape in enumerate([(3, dim, 6, 5), (2, dim, 5, 7)]):
        x = torch.randn(*shape)
        quant, diff, ind = q(x.permute(0, 2, 3, 1).contiguous())
        arrays["x%d" % step] = x
        arrays["quantize%d" % step] = quant.permute(0, 3, 1, 2).contiguous()
        arrays["indices%d" % step] = ind
        arrays["diff%d" % step] = diff.reshape(1)
        arrays["embed%d" % (step + 1)] = q.embed.clone()
        arrays["cluster_size%d" % (step + 1)] = q.cluster_size.clone()
        arrays["embed_avg%d" % (step + 1)] = q.embed_avg.clone()
    write_golden("vq.bin", arrays)


if __name__ == "__main__":
    main()
