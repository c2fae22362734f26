"""Causal self-attention as GPT-2's paper and nanoGPT write it (one fused projection, nn.Linear's
(out, in) weights: transformers' Conv1D weights transposed through WEIGHTS), graded by
tests/test_check.py as gpt2-attention: equal or rounding at every step."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from annotate import record

WEIGHTS = {"qkv.weight": "c_attn.weight.T", "qkv.bias": "c_attn.bias", "out.weight": "c_proj.weight.T", "out.bias": "c_proj.bias"}


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.qkv = nn.Linear(self.n_embd, 3 * self.n_embd)
        self.out = nn.Linear(self.n_embd, self.n_embd)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        record("query", q)
        record("key", k)
        record("value", v)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        record("scores", att)
        seen = torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None] & mask[:, None, None, :].bool()
        att = att.masked_fill(~seen, float("-inf"))
        att = F.softmax(att, dim=-1)
        record("probs", att)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        record("context", y)
        y = self.out(y)
        return y
