"""Exercise 1: scaled dot-product attention.
练习 1：缩放点积注意力。

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V          ("Attention Is All You Need", 3.2.1)

Fill in the three TODOs of `attention` below, then grade it on the real all-MiniLM-L6-v2:
补完下面 `attention` 函数中的三个 TODO，然后在真实的 all-MiniLM-L6-v2 上评分：

    annotate exercise check 1 DIR

It is graded as `bert-attention` (transformers' BertSelfAttention, layer 0), on a padded batch of
two real texts: every step you `record` is compared with transformers' own, and the first step
that computes something else gets a diagnosis. The rest of the module (projections, heads, mask)
is written for you.
按 `bert-attention`（transformers 的 BertSelfAttention，第 0 层）评分，输入是两段真实文本组成的、
带填充的批次：你用 `record` 记录的每一步都与 transformers 自己的结果比较，第一个算得不一样的步骤
会得到诊断。模块的其余部分（投影、多头、掩码）已经写好。
"""

import math

import torch
from torch import nn

from annotate import record


def todo(what):
    raise NotImplementedError(f"TODO {what}")


def attention(q, k, v, mask):
    """q, k, v: (B, h, T, d_k), one vector per head and token; mask: (B, T), 1 for a real token, 0 for
    padding. Returns P V: (B, h, T, d_k).
    q、k、v：(B, h, T, d_k)，每个头、每个词元一个向量；mask：(B, T)，真实词元为 1，填充为 0。返回 P V。"""
    d_k = q.shape[-1]
    # TODO 1: the scores, one per (query, key) pair: Q K^T divided by sqrt(d_k), shape (B, h, T, T).
    # TODO 1：每一对（查询，键）的分数：Q K^T 除以 sqrt(d_k)，形状 (B, h, T, T)。
    scores = todo("1: scores = Q K^T / sqrt(d_k)")
    record("scores", scores)
    # The padding mask, written for you: a padding key gets -inf, so the softmax gives it 0.
    # 填充掩码（已写好）：填充位置的键得到 -inf，softmax 之后它的权重为 0。
    scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    # TODO 2: the weights: a softmax over the keys, so that each query's row sums to 1.
    # TODO 2：权重：在键的维度上做 softmax，使每个查询的那一行之和为 1。
    probs = todo("2: probs = softmax(scores) over the keys")
    record("probs", probs)
    # TODO 3: the weighted sum of the values, P V: (B, h, T, d_k).
    # TODO 3：对值（value）加权求和，即 P V：(B, h, T, d_k)。
    return todo("3: the weighted sum P V")


class SelfAttention(nn.Module):
    """BERT's self-attention: project, split into heads, attend, merge the heads. Its parameters
    carry transformers' names (query, key, value), so the checkpoint's weights load by name.
    BERT 的自注意力：投影、拆分多头、注意力、合并多头。参数沿用 transformers 的名字，按名字载入权重。"""

    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.h = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def split(self, x):  # (B, T, C) -> (B, h, T, d_k)
        B, T, C = x.shape
        return x.view(B, T, self.h, C // self.h).transpose(1, 2)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        record("query", q)
        record("key", k)
        record("value", v)
        context = attention(q, k, v, mask).transpose(1, 2).reshape(B, T, C)  # the heads side by side again
        record("context", context)
        return context
