"""Decoding with the cache: the twin of what transformers' ``generate`` does for GPT-2
(generation/utils.py, GenerationMixin._sample), written out as one loop.

Left out: beam search, assisted and contrastive decoding, stopping strings, and every logits
processor not named here.
"""

from __future__ import annotations

import torch
from torch import nn



@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Greedy decoding with the cache: the (B, T + new) ids of HF's ``generate(do_sample=False)``
    called with the same ``eos_token_id`` and ``pad_token_id``.

    The prompt goes through once, then one token per step against the cache. As in HF: a
    left-padded prompt's positions count from its first real token (padding slots get 0);
    only the last position's logits are computed; with ``eos_token_id``, a row that has
    produced it gets ``pad_token_id`` (default: eos) from then on, and decoding stops early
    once every row has. Without ``eos_token_id`` it always runs ``max_new_tokens`` steps.
    """
    from .gpt2 import KVCache

    B, T = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if pad_token_id is None:
        pad_token_id = eos_token_id
    # GenerationMixin._prepare_position_ids_for_generation: 0, 1, 2, ... from the first real token.
    position_ids = attention_mask.long().cumsum(-1) - 1  # (B, T)
    position_ids = position_ids.masked_fill(attention_mask == 0, 0)  # (B, T)
    unfinished = torch.ones(B, dtype=torch.long, device=input_ids.device)  # (B,): 1 until eos
    cache = KVCache()
    new_ids = input_ids  # the whole prompt first, then only the newest token
    for _ in range(max_new_tokens):
        # HF's generate asks for the last position only (logits_to_keep=1): a (B, 1, C) product.
        logits = model(new_ids, attention_mask, cache, position_ids, logits_to_keep=1).logits  # (B, 1, V)
        next_tokens = torch.argmax(logits[:, -1], dim=-1)  # (B,)
        if eos_token_id is not None:
            next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)  # finished rows: pad
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)  # (B, T + steps)
        if eos_token_id is not None:
            unfinished = unfinished & (next_tokens != eos_token_id).long()
            if not unfinished.any():
                break
        new_ids = next_tokens[:, None]  # (B, 1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=-1)  # (B, S + 1)
        position_ids = position_ids[:, -1:] + 1  # (B, 1)
    return input_ids
