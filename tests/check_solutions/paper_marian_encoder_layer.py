"""The encoder layer of "Attention Is All You Need" (section 3.1: self-attention, then the
feed-forward, each as LayerNorm(x + Sublayer(x))), with its own names and the heads kept in the
batch axis, graded by tests/test_check.py as marian-encoder-layer on the packaged translator's
source: equal or rounding at every step."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from annotate import record

WEIGHTS = {
    "q.weight": "self_attn.q_proj.weight", "q.bias": "self_attn.q_proj.bias",
    "k.weight": "self_attn.k_proj.weight", "k.bias": "self_attn.k_proj.bias",
    "v.weight": "self_attn.v_proj.weight", "v.bias": "self_attn.v_proj.bias",
    "o.weight": "self_attn.out_proj.weight", "o.bias": "self_attn.out_proj.bias",
    "ln_attn.weight": "self_attn_layer_norm.weight", "ln_attn.bias": "self_attn_layer_norm.bias",
    "up.weight": "fc1.weight", "up.bias": "fc1.bias", "down.weight": "fc2.weight", "down.bias": "fc2.bias",
    "ln_ffn.weight": "final_layer_norm.weight", "ln_ffn.bias": "final_layer_norm.bias",
}


class EncoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.h = config.encoder_attention_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln_attn, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d)
        self.up, self.down = nn.Linear(d, config.encoder_ffn_dim), nn.Linear(config.encoder_ffn_dim, d)

    def forward(self, x, mask):
        B, S, d = x.shape
        d_k = d // self.h
        q, k, v = self.q(x), self.k(x), self.v(x)
        record("q_proj", q)
        record("k_proj", k)
        record("v_proj", v)
        # the heads in the batch axis: (B * h, S, d_k)
        q, k, v = (t.view(B, S, self.h, d_k).transpose(1, 2).reshape(B * self.h, S, d_k) for t in (q, k, v))
        scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(d_k)
        record("scores", scores)
        padding = (mask == 0).repeat_interleave(self.h, dim=0)[:, None, :]  # (B * h, 1, S)
        p = F.softmax(scores.masked_fill(padding, float("-inf")), dim=-1)
        record("probs", p)
        context = torch.bmm(p, v).view(B, self.h, S, d_k).transpose(1, 2).reshape(B, S, d)
        record("context", context)
        a = self.o(context)
        record("out_proj", a)
        x = self.ln_attn(x + a)
        record("self_attn_layer_norm", x)
        f = self.down(F.silu(self.up(x)))
        record("fc2", f)
        x = x + f
        record("fc2.residual", x)
        return self.ln_ffn(x)
