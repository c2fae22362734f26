"""Exercise 8: Llama's attention: rotary positions and shared key/value heads.
练习 8：Llama 的注意力：旋转位置编码与共享的键/值头。

Llama has no position table: it turns each query and key by angles that grow with the token's
position (RoPE), so the score of a query and a key depends on how far apart they are. Dimension i
of a head pairs with dimension i + d/2: x_rot = x cos + rotate_half(x) sin, where rotate_half
maps (x1, x2) to (-x2, x1). And its keys and values have fewer heads than its queries
(grouped-query attention): each key/value head serves h / h_kv query heads in a row.
Llama 没有位置表：它按随位置增大的角度旋转每个查询和键（RoPE），于是查询与键的分数只取决于两者相距多远。
每个头的第 i 维与第 i + d/2 维配对：x_rot = x cos + rotate_half(x) sin，其中 rotate_half 把
(x1, x2) 变为 (-x2, x1)。此外它的键和值的头数少于查询（分组查询注意力）：每个键/值头依次服务
h / h_kv 个查询头。

    annotate exercise check 8 DIR

Graded as `llama-attention` (transformers' LlamaAttention) on the real SmolLM2-135M-Instruct
(9 query heads, 3 key/value heads). forward(x, mask, position_embeddings) gets the positions'
(cos, sin), each (1, T, d), as transformers passes them; the masks are written for you.
按 `llama-attention`（transformers 的 LlamaAttention）在真实的 SmolLM2-135M-Instruct 上评分
（9 个查询头，3 个键/值头）。forward(x, mask, position_embeddings) 接收各位置的 (cos, sin)，
形状都是 (1, T, d)，和 transformers 传入的一样；掩码已经写好。
"""

import math

import torch
from torch import nn

from annotate import record


def todo(what):
    raise NotImplementedError(f"TODO {what}")


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) over the two halves of the last axis. 在最后一维的两半上：(x1, x2) -> (-x2, x1)。"""
    # TODO 1: split the last axis in two halves and put them back as (-second, first).
    # TODO 1：把最后一维分成两半，再按 (-后一半, 前一半) 拼回去。
    return todo("1: rotate_half")


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.h, self.h_kv = config.num_attention_heads, config.num_key_value_heads
        self.d = getattr(config, "head_dim", None) or C // self.h
        self.q_proj = nn.Linear(C, self.h * self.d, bias=config.attention_bias)
        self.k_proj = nn.Linear(C, self.h_kv * self.d, bias=config.attention_bias)
        self.v_proj = nn.Linear(C, self.h_kv * self.d, bias=config.attention_bias)
        self.o_proj = nn.Linear(self.h * self.d, C, bias=config.attention_bias)

    def forward(self, x, mask, position_embeddings):
        B, T, _ = x.shape
        cos, sin = position_embeddings  # (1, T, d) each
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)  # (B, h, T, d)
        k = self.k_proj(x).view(B, T, self.h_kv, self.d).transpose(1, 2)  # (B, h_kv, T, d)
        v = self.v_proj(x).view(B, T, self.h_kv, self.d).transpose(1, 2)
        # TODO 2: turn q and k by their positions' angles (cos and sin need a heads axis: [:, None]).
        # TODO 2：按各自位置的角度旋转 q 和 k（cos 和 sin 需要一个头的维度：[:, None]）。
        q = todo("2a: q turned")
        k = todo("2b: k turned")
        record("q_rope", q)
        record("k_rope", k)
        # TODO 3: repeat each key/value head for the h / h_kv query heads it serves, in a row.
        # TODO 3：把每个键/值头按它服务的 h / h_kv 个查询头依次重复。
        k = todo("3a: k repeated to h heads")
        v = todo("3b: v repeated to h heads")
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d)
        record("scores", scores)
        seen = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :].bool()
        probs = scores.masked_fill(~seen, float("-inf")).softmax(dim=-1)
        record("probs", probs)
        context = (probs @ v).transpose(1, 2).reshape(B, T, self.h * self.d)
        record("context", context)
        return self.o_proj(context)
