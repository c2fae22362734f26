"""The decoder layer of "Attention Is All You Need" (section 3.1: masked self-attention, then
attention over the encoder's output, then the feed-forward, each as LayerNorm(x + Sublayer(x))),
with its own names and structure and one attention class for both attentions, graded by
tests/test_check.py as marian-decoder-layer on the packaged translator: equal or rounding at every step."""

import math

import torch
from torch import nn

from annotate import record

WEIGHTS = {
    **{f"{mine}.w_{p}.{t}": f"{theirs}.{p}_proj.{t}" for mine, theirs in (("masked", "self_attn"), ("source", "encoder_attn"))
       for p in ("q", "k", "v") for t in ("weight", "bias")},
    **{f"{mine}.w_o.{t}": f"{theirs}.out_proj.{t}" for mine, theirs in (("masked", "self_attn"), ("source", "encoder_attn"))
       for t in ("weight", "bias")},
    "norm_1.weight": "self_attn_layer_norm.weight", "norm_1.bias": "self_attn_layer_norm.bias",
    "norm_2.weight": "encoder_attn_layer_norm.weight", "norm_2.bias": "encoder_attn_layer_norm.bias",
    "norm_3.weight": "final_layer_norm.weight", "norm_3.bias": "final_layer_norm.bias",
    "ffn_in.weight": "fc1.weight", "ffn_in.bias": "fc1.bias", "ffn_out.weight": "fc2.weight", "ffn_out.bias": "fc2.bias",
}


class MultiHead(nn.Module):
    """softmax(Q K^T / sqrt(d_k)) V over h heads; queries from one sequence, keys and values from another (or the same)."""

    def __init__(self, d_model, h):
        super().__init__()
        self.h, self.d_k = h, d_model // h
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, queries_from, keys_from, allowed):
        """allowed: booleans broadcastable to (B, h, T, S), True where a query may see a key."""
        B, T, d = queries_from.shape
        q, k, v = self.w_q(queries_from), self.w_k(keys_from), self.w_v(keys_from)
        record("q_proj", q)
        record("k_proj", k)
        record("v_proj", v)
        q, k, v = (t.view(B, t.shape[1], self.h, self.d_k).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        record("scores", scores)
        p = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        record("probs", p)
        context = (p @ v).transpose(1, 2).reshape(B, T, d)
        record("context", context)
        out = self.w_o(context)
        record("out_proj", out)
        return out


class DecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        d, h = config.d_model, config.decoder_attention_heads
        self.masked = MultiHead(d, h)
        self.source = MultiHead(d, h)
        self.norm_1, self.norm_2, self.norm_3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn_in, self.ffn_out = nn.Linear(d, config.decoder_ffn_dim), nn.Linear(config.decoder_ffn_dim, d)

    def forward(self, x, mask, memory, source_mask):
        T = x.shape[1]
        no_peeking = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :].bool()
        x = x + self.masked(x, x, no_peeking)
        record("residual", x)
        x = self.norm_1(x)
        record("self_attn_layer_norm", x)
        x = x + self.source(x, memory, source_mask[:, None, None, :].bool())
        record("residual", x)
        x = self.norm_2(x)
        record("encoder_attn_layer_norm", x)
        hidden = self.ffn_in(x)
        record("fc1", hidden)
        hidden = hidden * torch.sigmoid(hidden)  # swish, the translator's activation (the paper's is ReLU)
        record("activation_fn", hidden)
        hidden = self.ffn_out(hidden)
        record("fc2", hidden)
        x = x + hidden
        record("residual", x)
        return self.norm_3(x)
