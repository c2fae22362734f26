"""The encoder-decoder attention of "Attention Is All You Need" (section 3.2.3: "the queries come
from the previous decoder layer, and the memory keys and values come from the output of the
encoder"), with its own names and structure, graded by tests/test_check.py as
marian-cross-attention on the packaged translator: equal or rounding at every step."""

import math

import torch
from torch import nn

from annotate import record

WEIGHTS = {f"to_{mine}.{p}": f"{theirs}_proj.{p}" for mine, theirs in (("q", "q"), ("k", "k"), ("v", "v"), ("out", "out"))
           for p in ("weight", "bias")}


class EncoderDecoderAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.d_model, self.n_heads = config.d_model, config.decoder_attention_heads
        self.d_k = self.d_model // self.n_heads
        self.to_q = nn.Linear(self.d_model, self.d_model)
        self.to_k = nn.Linear(self.d_model, self.d_model)
        self.to_v = nn.Linear(self.d_model, self.d_model)
        self.to_out = nn.Linear(self.d_model, self.d_model)

    def split(self, t):
        """(B, n, d_model) -> (B, heads, n, d_k)."""
        return t.unflatten(-1, (self.n_heads, self.d_k)).transpose(1, 2)

    def forward(self, x, memory, source_mask):
        q = self.to_q(x)
        record("q_proj", q)
        k = self.to_k(memory)
        record("k_proj", k)
        v = self.to_v(memory)
        record("v_proj", v)
        q, k, v = self.split(q), self.split(k), self.split(v)
        scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(self.d_k)
        record("scores", scores)
        hidden = (source_mask == 0)[:, None, None, :]  # padding of the source: no query may see it
        weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)
        record("probs", weights)
        heads = torch.einsum("bhts,bhsd->bhtd", weights, v)
        context = heads.transpose(1, 2).flatten(2)
        record("context", context)
        out = self.to_out(context)
        record("out_proj", out)
        return out
