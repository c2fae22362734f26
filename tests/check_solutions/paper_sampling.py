"""Temperature, top-k and top-p written from their definitions (top-p counted from the likeliest
token down, where transformers counts from the least likely up), graded by tests/test_check.py as
sampling: equal or rounding."""

import torch

from annotate import record


class Warper:
    def __init__(self, config):
        self.temperature, self.top_k, self.top_p = config.temperature, config.top_k, config.top_p

    def __call__(self, scores):
        scores = scores / self.temperature
        record("temperature", scores)
        if self.top_k:
            kth = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        record("top_k", scores)
        if self.top_p < 1.0:
            probs, order = scores.softmax(-1).sort(dim=-1, descending=True)
            before = probs.cumsum(-1) - probs  # the mass of the likelier tokens
            drop = before >= self.top_p
            scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        record("top_p", scores)
        return scores
