"""The key/value cache: transformers' cache_utils.py (DynamicCache, DynamicLayer), as the twins use it.

Decoding one token at a time reuses every earlier token's keys and values; the cache keeps them,
per layer. The decoders' attention (reimpl/gpt2.py) appends to it, and generation
(reimpl/generation.py) makes one per call of ``generate``.
"""

from __future__ import annotations

import torch


class KVCache:
    """The keys and values of every token seen so far, per layer: what makes decoding one token
    at a time cost one token's work. The twin of transformers' DynamicCache (cache_utils.py).

    ``update`` appends with ``torch.cat``, as DynamicLayer.update does, so attention always gets
    fresh contiguous K/V tensors; that layout is part of the arithmetic (see GPT2Attention).
    """

    def __init__(self):
        self.keys: list[torch.Tensor] = []  # per layer: (B, nh, S, hs)
        self.values: list[torch.Tensor] = []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many tokens this layer has seen: where the next token's position starts."""
        return self.keys[layer_idx].shape[2] if layer_idx < len(self.keys) else 0

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this call's (B, nh, T, hs) keys and values; return the layer's (B, nh, S, hs) ones so far."""
        while len(self.keys) <= layer_idx:  # the layer's first tokens: start from empty, as DynamicLayer does
            self.keys.append(key[:, :, :0])
            self.values.append(value[:, :, :0])
        self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key], dim=2)  # (B, nh, S, hs), a contiguous copy
        self.values[layer_idx] = torch.cat([self.values[layer_idx], value], dim=2)  # (B, nh, S, hs)
        return self.keys[layer_idx], self.values[layer_idx]


class EncoderDecoderCache:
    """The decoder's two caches, as transformers' EncoderDecoderCache holds them: its
    self-attention's keys and values, growing by one token a step, and its cross-attention's,
    computed from the encoder's output at the first step and reused unchanged after
    (``is_updated[layer]``: that layer's are there)."""

    def __init__(self, self_attention_cache: KVCache | None = None, cross_attention_cache: KVCache | None = None):
        self.self_attention_cache = self_attention_cache or KVCache()
        self.cross_attention_cache = cross_attention_cache or KVCache()
        self.is_updated: dict[int, bool] = {}

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many target tokens the decoder has seen: where the next token's position starts."""
        return self.self_attention_cache.get_seq_length(layer_idx)

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Beam search: keep the rows of the beams that go on (``index_select`` on the batch, as transformers' reorder_cache)."""
        for cache in (self.self_attention_cache, self.cross_attention_cache):
            cache.keys = [k.index_select(0, beam_idx) for k in cache.keys]
            cache.values = [v.index_select(0, beam_idx) for v in cache.values]
