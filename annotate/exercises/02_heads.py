"""Exercise 2: splitting and merging the heads.
练习 2：拆分与合并多头。

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

One (B, T, C) projection holds all h heads side by side: head i is the columns i*d_k .. (i+1)*d_k.
Fill in `split` ((B, T, C) -> (B, h, T, d_k)) and `merge` (the way back), then grade them:
一个 (B, T, C) 的投影把 h 个头并排放在一起：第 i 个头是第 i*d_k 到 (i+1)*d_k 列。补完 `split`
（(B, T, C) -> (B, h, T, d_k)）和 `merge`（反过来），然后评分：

    annotate exercise check 2 DIR

Graded as `bert-attention` on the real all-MiniLM-L6-v2. Careful: a reshape straight to
(B, h, T, d_k) has the right shape and the wrong numbers; the grader will tell you.
按 `bert-attention` 在真实的 all-MiniLM-L6-v2 上评分。注意：直接 reshape 成 (B, h, T, d_k)
形状是对的，数值却是错的；评分器会告诉你。
"""

import math

import torch
from torch import nn

from annotate import record


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class SelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.h = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def split(self, x):
        """(B, T, C) -> (B, h, T, d_k): token t's head i is x[b, t, i*d_k:(i+1)*d_k]."""
        B, T, C = x.shape
        # TODO 1: view the last axis as (h, d_k), then bring the heads before the tokens.
        # TODO 1：把最后一维看成 (h, d_k)，再把头这一维移到词元之前。
        return todo("1: split (B, T, C) into (B, h, T, d_k)")

    def merge(self, x):
        """(B, h, T, d_k) -> (B, T, C): the heads side by side again, in order."""
        B, h, T, d_k = x.shape
        # TODO 2: the way back: tokens before heads again, then the heads side by side (reshape).
        # TODO 2：反过来：先把词元移回头之前，再把各个头并排拼接（reshape）。
        return todo("2: merge (B, h, T, d_k) into (B, T, C)")

    def forward(self, x, mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        record("query", q)
        record("key", k)
        record("value", v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        record("scores", scores)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        probs = scores.softmax(dim=-1)
        record("probs", probs)
        context = self.merge(probs @ v)
        record("context", context)
        return context
