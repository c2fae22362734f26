"""The Transformer's encoder layer as the paper writes it (section 3.1: LayerNorm(x + Sublayer(x))),
with its own names and structure and a LayerNorm written out, graded by tests/test_check.py as
bert-layer: equal or rounding at every step."""

import math

import torch
from torch import nn

from annotate import record

WEIGHTS = {
    "attention.w_q.weight": "attention.self.query.weight", "attention.w_q.bias": "attention.self.query.bias",
    "attention.w_k.weight": "attention.self.key.weight", "attention.w_k.bias": "attention.self.key.bias",
    "attention.w_v.weight": "attention.self.value.weight", "attention.w_v.bias": "attention.self.value.bias",
    "w_o.weight": "attention.output.dense.weight", "w_o.bias": "attention.output.dense.bias",
    "norm_1.gamma": "attention.output.LayerNorm.weight", "norm_1.beta": "attention.output.LayerNorm.bias",
    "w_1.weight": "intermediate.dense.weight", "w_1.bias": "intermediate.dense.bias",
    "w_2.weight": "output.dense.weight", "w_2.bias": "output.dense.bias",
    "norm_2.gamma": "output.LayerNorm.weight", "norm_2.beta": "output.LayerNorm.bias",
}


class Norm(nn.Module):
    """LayerNorm: (x - mean) / sqrt(var + eps) * gamma + beta, over the features."""

    def __init__(self, d, eps):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(d))
        self.beta = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.gamma + self.beta


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.d_k = h, d // h
        self.w_q, self.w_k, self.w_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        B, T, d = x.shape
        q, k, v = (w(x).view(B, T, self.h, self.d_k).transpose(1, 2) for w in (self.w_q, self.w_k, self.w_v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        record("scores", scores)
        scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * -1e9
        p = scores.softmax(-1)
        record("probs", p)
        context = (p @ v).transpose(1, 2).reshape(B, T, d)
        record("context", context)
        return context


class EncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        d, d_ff, eps = config.hidden_size, config.intermediate_size, config.layer_norm_eps
        self.attention = Attention(d, config.num_attention_heads)
        self.w_o = nn.Linear(d, d)
        self.norm_1 = Norm(d, eps)
        self.w_1, self.w_2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
        self.norm_2 = Norm(d, eps)

    def forward(self, x, mask):
        a = self.w_o(self.attention(x, mask))
        record("attention.output.dense", a)
        x = x + a
        record("attention.output.residual", x)
        x = self.norm_1(x)
        record("attention.output.LayerNorm", x)
        h = self.w_1(x)
        record("intermediate.dense", h)
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        record("intermediate.intermediate_act_fn", h)
        f = self.w_2(h)
        record("output.dense", f)
        x = x + f
        record("output.residual", x)
        x = self.norm_2(x)
        return x
