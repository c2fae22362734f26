"""GPT-2's block, pre-LN (x + attn(ln_1(x)), then + mlp(ln_2(.))), with its own names, graded by
tests/test_check.py as gpt2-block: equal or rounding at every step. Its attention is the
gpt2-attention solution's class, recording under the same short names."""

import math
import sys
from pathlib import Path

import torch
from torch import nn

from annotate import record

sys.path.insert(0, str(Path(__file__).parent))
from paper_gpt2_attention import CausalSelfAttention  # noqa: E402

WEIGHTS = {
    "attention.qkv.weight": "attn.c_attn.weight.T", "attention.qkv.bias": "attn.c_attn.bias",
    "attention.out.weight": "attn.c_proj.weight.T", "attention.out.bias": "attn.c_proj.bias",
    "norm_1.weight": "ln_1.weight", "norm_1.bias": "ln_1.bias", "norm_2.weight": "ln_2.weight", "norm_2.bias": "ln_2.bias",
    "up.weight": "mlp.c_fc.weight.T", "up.bias": "mlp.c_fc.bias", "down.weight": "mlp.c_proj.weight.T", "down.bias": "mlp.c_proj.bias",
}


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        C, eps = config.n_embd, config.layer_norm_epsilon
        self.norm_1 = nn.LayerNorm(C, eps=eps)
        self.attention = CausalSelfAttention(config)
        self.norm_2 = nn.LayerNorm(C, eps=eps)
        self.up = nn.Linear(C, 4 * C)
        self.down = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        h = self.norm_1(x)
        record("ln_1", h)
        a = self.attention(h, mask)
        record("c_proj", a)
        x = x + a
        record("attn.residual", x)
        h = self.norm_2(x)
        record("ln_2", h)
        h = self.up(h)
        record("c_fc", h)
        h = gelu_tanh(h)
        record("act", h)
        h = self.down(h)
        record("c_proj", h)
        x = x + h
        return x
