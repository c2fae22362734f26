"""Multi-head self-attention as "Attention Is All You Need" (section 3.2) writes it, with its own
names and structure, graded by tests/test_check.py as bert-attention: equal or rounding at every step.

Each line the mistakes in tests/test_check.py change is marked with the mistake's name.
"""

import math

import torch
from torch import nn

from annotate import record

# The paper's names -> transformers' names inside BertSelfAttention.
WEIGHTS = {
    "W_q.weight": "query.weight", "W_q.bias": "query.bias",
    "W_k.weight": "key.weight", "W_k.bias": "key.bias",
    "W_v.weight": "value.weight", "W_v.bias": "value.bias",
}


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.h = config.num_attention_heads
        self.d_model = config.hidden_size
        self.d_k = self.d_model // self.h
        self.W_q = nn.Linear(self.d_model, self.d_model)
        self.W_k = nn.Linear(self.d_model, self.d_model)
        self.W_v = nn.Linear(self.d_model, self.d_model)
        self.p = config.attention_probs_dropout_prob

    def heads(self, x):
        """(B, T, d_model) -> (B, h, T, d_k)"""
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.d_k).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        B, T, _ = x.shape
        Q = self.heads(self.W_q(x))
        K = self.heads(self.W_k(x))
        V = self.heads(self.W_v(x))
        record("query", Q)
        record("key", K)
        record("value", V)
        scores = torch.einsum("bhqd,bhkd->bhqk", Q, K) / math.sqrt(self.d_k)
        record("scores", scores)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        record("probs", weights)
        weights = nn.functional.dropout(weights, self.p, training=self.training)
        out = torch.einsum("bhqk,bhkd->bhqd", weights, V)
        out = out.permute(0, 2, 1, 3).reshape(B, T, self.d_model)
        record("context", out)
        return out
