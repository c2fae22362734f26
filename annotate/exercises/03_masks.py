"""Exercise 3: the masks of a decoder.
练习 3：解码器的掩码。

GPT-2's attention may let query i see key j only if j <= i (the causal mask: no peeking at the
tokens to come) and key j is a real token (the padding mask: the batch's texts are padded to one
length, here on the left, as for generation). Build both as one boolean (B, 1, T, T) tensor,
`seen`, then grade it on a GPT-2 checkpoint:
GPT-2 的注意力只允许查询 i 看到满足 j <= i 的键 j（因果掩码：不能偷看后面的词元），并且键 j 必须是
真实词元（填充掩码：批次中的文本被填充到同一长度，这里是在左侧填充，和生成时一样）。把两者合成一个
布尔张量 `seen`，形状 (B, 1, T, T)，然后在一个 GPT-2 检查点上评分：

    annotate exercise check 3 DIR [--model GPT2_CHECKPOINT]

Graded as `gpt2-attention` (transformers' GPT2Attention). Without --model, a GPT-2 with random
weights in the real layout is written to DIR/gpt2-random once and used. nn.Linear stores its
weight as (out, in), transformers' Conv1D as (in, out): `WEIGHTS` below maps each parameter to
the checkpoint's name, transposed (".T").
按 `gpt2-attention`（transformers 的 GPT2Attention）评分。不给 --model 时，会在 DIR/gpt2-random
写入一个真实布局、随机权重的 GPT-2 并使用它。nn.Linear 的权重是 (out, in)，transformers 的 Conv1D
是 (in, out)：下面的 `WEIGHTS` 把每个参数映射到检查点中的名字，并转置（".T"）。
"""

import math

import torch
from torch import nn

from annotate import record

WEIGHTS = {"qkv.weight": "c_attn.weight.T", "qkv.bias": "c_attn.bias", "proj.weight": "c_proj.weight.T", "proj.bias": "c_proj.bias"}


def todo(what):
    raise NotImplementedError(f"TODO {what}")


def seen_keys(mask):
    """mask: (B, T), 1 for a real token, 0 for padding. Returns (B, 1, T, T) booleans: True where
    query i may attend to key j. mask：(B, T)，真实词元为 1，填充为 0。返回 (B, 1, T, T) 的布尔值。"""
    B, T = mask.shape
    # TODO 1: the causal part, (T, T): True on and below the diagonal (torch.tril).
    # TODO 1：因果部分，(T, T)：对角线及其下方为 True（torch.tril）。
    causal = todo("1: the causal (T, T) lower triangle")
    # TODO 2: the padding part, (B, 1, 1, T): True where the key is a real token.
    # TODO 2：填充部分，(B, 1, 1, T)：键是真实词元的位置为 True。
    real_keys = todo("2: the real keys, (B, 1, 1, T)")
    return causal[None, None] & real_keys


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.h, C = config.n_head, config.n_embd
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in self.qkv(x).split(C, dim=-1))
        record("query", q)
        record("key", k)
        record("value", v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.h)
        record("scores", scores)
        scores = scores.masked_fill(~seen_keys(mask), float("-inf"))
        probs = scores.softmax(dim=-1)
        record("probs", probs)
        context = (probs @ v).transpose(1, 2).reshape(B, T, C)
        record("context", context)
        return self.proj(context)
