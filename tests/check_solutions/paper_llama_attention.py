"""Llama's attention written from RoFormer and the GQA paper: rotate Q and K by their positions'
angles (cos and sin given), share each key/value head among a group of query heads, causal and
padding masks; graded by tests/test_check.py as llama-attention on SmolLM2: equal or rounding."""

import math

import torch
from torch import nn

from annotate import record

WEIGHTS = {"wq.weight": "q_proj.weight", "wk.weight": "k_proj.weight", "wv.weight": "v_proj.weight", "wo.weight": "o_proj.weight"}


def rotate(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RotaryAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.h, self.h_kv = config.num_attention_heads, config.num_key_value_heads
        self.d = getattr(config, "head_dim", None) or C // self.h
        self.wq = nn.Linear(C, self.h * self.d, bias=False)
        self.wk = nn.Linear(C, self.h_kv * self.d, bias=False)
        self.wv = nn.Linear(C, self.h_kv * self.d, bias=False)
        self.wo = nn.Linear(self.h * self.d, C, bias=False)

    def forward(self, x, mask, position_embeddings):
        cos, sin = (t[:, None] for t in position_embeddings)  # (1, 1, T, d)
        B, T, _ = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)
        record("q_proj", q)
        record("k_proj", k)
        record("v_proj", v)
        q = q.view(B, T, self.h, self.d).transpose(1, 2)
        k = k.view(B, T, self.h_kv, self.d).transpose(1, 2)
        v = v.view(B, T, self.h_kv, self.d).transpose(1, 2)
        q = q * cos + rotate(q) * sin
        k = k * cos + rotate(k) * sin
        record("q_rope", q)
        record("k_rope", k)
        group = self.h // self.h_kv
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d)
        record("scores", scores)
        seen = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :].bool()
        p = scores.masked_fill(~seen, float("-inf")).softmax(-1)
        record("probs", p)
        context = (p @ v).transpose(1, 2).reshape(B, T, self.h * self.d)
        record("context", context)
        return self.wo(context)
