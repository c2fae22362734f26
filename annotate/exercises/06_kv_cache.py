"""Exercise 6: the key/value cache.
练习 6：键/值缓存（KV cache）。

When a decoder generates, each new token's query attends to every earlier token's key and value.
Those never change, so they are kept (the cache) instead of recomputed: each call gets one new
token, appends its key and value to the cache, and attends over all of them. Fill in the TODOs,
then grade it on a GPT-2 checkpoint, one token at a time:
解码器生成文本时，每个新词元的查询都要关注之前所有词元的键和值。这些键和值不会再变，所以把它们保存下来
（缓存），而不是重新计算：每次调用只处理一个新词元，把它的键和值追加到缓存中，再在全部键值上做注意力。
补完 TODO，然后在一个 GPT-2 检查点上逐个词元地评分：

    annotate exercise check 6 DIR [--model GPT2_CHECKPOINT]

Graded as `gpt2-cache`: forward(x, mask, past) gets the new token's hidden state x (B, 1, C), the
padding mask of every token so far (B, S), and the cache the previous call returned (None at the
first token); it returns (output (B, 1, C), (keys, values)), each (B, h, S, d_k). The grader runs
the two texts token by token and compares your outputs, and your cache at the end, with
transformers' attention run with its own cache.
按 `gpt2-cache` 评分：forward(x, mask, past) 接收新词元的隐藏状态 x (B, 1, C)、到目前为止所有词元的
填充掩码 (B, S)，以及上一次调用返回的缓存（第一个词元时为 None）；返回 (输出 (B, 1, C), (键, 值))，
键和值的形状都是 (B, h, S, d_k)。评分器把两段文本逐个词元地输入，把你的输出和最后的缓存与
transformers 使用自己的缓存运行注意力的结果比较。
"""

import math

import torch
from torch import nn

WEIGHTS = {"qkv.weight": "c_attn.weight.T", "qkv.bias": "c_attn.bias", "proj.weight": "c_proj.weight.T", "proj.bias": "c_proj.bias"}


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class CachedAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.h, C = config.n_head, config.n_embd
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x, mask, past=None):
        B, T, C = x.shape  # T = 1: the new token
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in self.qkv(x).split(C, dim=-1))
        if past is not None:
            # TODO 1: the cached keys and values first, then the new ones, along the tokens' axis.
            # TODO 1：先是缓存中的键和值，再接上新的，沿词元这一维拼接。
            k = todo("1a: the cached keys, then the new key")
            v = todo("1b: the cached values, then the new value")
        S = k.shape[2]  # every token so far
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.h)  # (B, h, T, S)
        # TODO 2: which keys the new token sees: (T, S) causal, shifted by the S - T cached tokens
        # (the new token is the last position), and (B, 1, 1, S) not padding.
        # TODO 2：新词元能看到哪些键：(T, S) 的因果部分，要按缓存中的 S - T 个词元平移（新词元在最后一个位置），
        # 再加上 (B, 1, 1, S) 的非填充部分。
        seen = todo("2: the (B, 1, T, S) booleans")
        probs = scores.masked_fill(~seen, float("-inf")).softmax(dim=-1)
        out = self.proj((probs @ v).transpose(1, 2).reshape(B, T, C))
        return out, (k, v)
