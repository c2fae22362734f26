"""Exercise 7: sampling: temperature, top-k, top-p.
练习 7：采样：温度、top-k、top-p。

Before a sampler draws the next token, transformers' logits processors reshape the model's scores
(logits) for it, in this order: divide by the temperature; keep the k highest scores (top-k); keep
the smallest set of likeliest tokens whose probabilities add up to p or more (top-p, nucleus).
A filtered-out token's score becomes -inf, so that the softmax gives it probability 0.
在采样器抽取下一个词元之前，transformers 的 logits 处理器会按以下顺序改造模型的分数（logits）：
除以温度；只保留分数最高的 k 个（top-k）；只保留概率之和达到或超过 p 的最小的一组最可能的词元
（top-p，也叫 nucleus）。被过滤掉的词元分数设为 -inf，这样 softmax 给它的概率为 0。

    annotate exercise check 7 DIR [--model CAUSAL_LM]

Graded as `sampling`, against reimpl/generation.py's twins of TemperatureLogitsWarper,
TopKLogitsWarper and TopPLogitsWarper, on the real next-token scores of SmolLM2-135M-Instruct
(packaged; or --model), under several settings. Your class is built as Warper(config), config a
transformers GenerationConfig: config.temperature, config.top_k (0: no top-k), config.top_p (1.0:
no top-p).
按 `sampling` 评分：对照 reimpl/generation.py 中 TemperatureLogitsWarper、TopKLogitsWarper、
TopPLogitsWarper 的孪生实现，在 SmolLM2-135M-Instruct（已随包安装；或用 --model）真实的下一个词元分数上，
用几组不同的设置比较。你的类以 Warper(config) 构造，config 是 transformers 的 GenerationConfig：
config.temperature、config.top_k（0 表示不做 top-k）、config.top_p（1.0 表示不做 top-p）。
"""

import torch

from annotate import record


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class Warper:
    def __init__(self, config):
        self.temperature, self.top_k, self.top_p = config.temperature, config.top_k, config.top_p

    def __call__(self, scores):
        """scores: (B, V), one row of logits per text. Returns them filtered: (B, V), -inf where removed.
        scores：(B, V)，每段文本一行 logits。返回过滤后的分数：(B, V)，被去掉的位置为 -inf。"""
        # TODO 1: the temperature. 温度。
        scores = todo("1: divide by the temperature")
        record("temperature", scores)
        if self.top_k:
            # TODO 2: keep the top_k highest scores (and any tied with the k-th); the rest -inf.
            # TODO 2：保留最高的 top_k 个分数（以及与第 k 个相等的）；其余设为 -inf。
            scores = todo("2: top-k")
        record("top_k", scores)
        if self.top_p < 1.0:
            # TODO 3: sort the probabilities, likeliest first; keep each token whose likelier tokens
            # add up to less than top_p (so the token that crosses top_p stays); the rest -inf.
            # TODO 3：把概率从大到小排序；保留那些“比它更可能的词元的概率之和小于 top_p”的词元
            # （于是越过 top_p 的那个词元也保留）；其余设为 -inf。
            scores = todo("3: top-p")
        record("top_p", scores)
        return scores
