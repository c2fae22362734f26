"""Llama's decoder layer from its papers: pre-norm with RMSNorm, the rotary attention of
paper_llama_attention.py, a SwiGLU feed-forward; graded by tests/test_check.py as llama-layer."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from annotate import record

sys.path.insert(0, str(Path(__file__).parent))
from paper_llama_attention import RotaryAttention  # noqa: E402

WEIGHTS = {
    "attention.wq.weight": "self_attn.q_proj.weight", "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight", "attention.wo.weight": "self_attn.o_proj.weight",
    "norm_1.g": "input_layernorm.weight", "norm_2.g": "post_attention_layernorm.weight",
    "w_gate.weight": "mlp.gate_proj.weight", "w_up.weight": "mlp.up_proj.weight", "w_down.weight": "mlp.down_proj.weight",
}


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * g: no mean taken away, no bias."""

    def __init__(self, d, eps):
        super().__init__()
        self.g, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.g


class DecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        C, I, eps = config.hidden_size, config.intermediate_size, config.rms_norm_eps
        self.norm_1, self.norm_2 = RMSNorm(C, eps), RMSNorm(C, eps)
        self.attention = RotaryAttention(config)
        self.w_gate, self.w_up, self.w_down = nn.Linear(C, I, bias=False), nn.Linear(C, I, bias=False), nn.Linear(I, C, bias=False)

    def forward(self, x, mask, position_embeddings):
        h = self.norm_1(x)
        record("input_layernorm", h)
        x = x + self.attention(h, mask, position_embeddings)
        record("self_attn.residual", x)
        h = self.norm_2(x)
        record("post_attention_layernorm", h)
        gated = F.silu(self.w_gate(h)) * self.w_up(h)
        record("mlp.gated", gated)
        return x + self.w_down(gated)
