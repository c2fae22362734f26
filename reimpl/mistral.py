"""Mistral, written to be read beside transformers' models/mistral/modeling_mistral.py.

Mistral is Llama with a sliding window: a query sees the ``sliding_window`` keys up to and
including its own and nothing further back (transformers' modular_mistral.py passes
``sliding_window=...  # main diff with Llama``). Everything else is reimpl/llama.py's, inherited:
the classes here say only what differs. Qwen2 and Qwen3 (reimpl/qwen2.py, qwen3.py) take the
window from here, on the layers their ``layer_types`` name.

- the mask (MistralModel.mask): built once, one per kind of layer, as transformers'
  ``causal_mask_mapping``: "full_attention", Llama's causal and padding mask; "sliding_attention",
  that mask with the keys ``sliding_window`` or more slots back hidden too
  (``sliding_window_mask``: masking_utils.sliding_window_overlay's ``kv_idx > q_idx -
  sliding_window``, counted in slots of the batch as transformers counts them, padding included).
  Each layer reads its own (MistralDecoderLayer; ``MistralConfig.layer_type``: in Mistral every
  layer slides, or none);
- the cache (MistralAttention, ``SlidingWindowLayer``): transformers' cache for a sliding layer
  (cache_utils.DynamicSlidingWindowLayer, what its ``generate`` and its forward with
  ``use_cache=True`` make) keeps only the last ``sliding_window - 1`` keys and values, and hands
  the layer those and this call's. Fewer keys are fewer terms in softmax's sum and in P V, which
  round otherwise than the same row with masked keys (from 16 keys on, here), so the twin hands
  its layer the very same keys, and the mask for them.

Biases: none, on the attention or the MLP (transformers' Mistral reads neither ``attention_bias``
nor ``mlp_bias``: dropped from config.json, as it ignores them).

With the same weights and input every step is bit-identical (``torch.equal``) to transformers'
eager path in fp32: without a cache to transformers called with ``use_cache=False``, with a
``KVCache`` to its ``DynamicCache(config=config)`` (its default, and ``generate``'s).

Left out, as in reimpl/llama.py: ``inputs_embeds``, gradient checkpointing, the attention
backends (sdpa, flash, flex: this is ``eager_attention_forward``), the heads without a twin
(token classification, QA); ``is_causal=False`` (5.x's bidirectional masks), refused (by LlamaConfig).

Shape legend as reimpl/llama.py's: B batch, T tokens in this call, S tokens attended to, C hidden
size, nh query heads, nkv key/value heads, hs head size, W the keys a sliding layer sees.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from .architecture import Architecture
from .cache import KVCache
from .llama import (
    LlamaAttention,
    LlamaConfig,
    LlamaDecoderLayer,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
    checkpoint_key,
)


@dataclasses.dataclass
class MistralConfig(LlamaConfig):
    """LlamaConfig with a window, and MistralConfig's defaults."""

    model_type: ClassVar[str] = "mistral"
    # config.json keys transformers' class does not read (Llama's biases): dropped, as it ignores them.
    ignored: ClassVar[tuple[str, ...]] = ("attention_bias", "mlp_bias")

    intermediate_size: int = 14336
    num_key_value_heads: int | None = 8  # transformers' default: 8, not nh (None still means nh)
    max_position_embeddings: int = 4096 * 32
    sliding_window: int | None = 4096  # W: a query sees itself and the W - 1 keys before it; None: all of them

    def layer_type(self, layer_idx: int) -> str:
        """Which mask a layer reads, "sliding_attention" or "full_attention": in Mistral, every layer the same."""
        return "full_attention" if self.sliding_window is None else "sliding_attention"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MistralConfig":
        config = super().from_dict({k: v for k, v in d.items() if k not in cls.ignored})
        given = d.get("layer_types")
        if given is not None and list(given) != [config.layer_type(i) for i in range(config.num_hidden_layers)]:
            # MistralModel gives every layer the one mask, but DynamicCache(config) would build its
            # layers from layer_types: the two would disagree (transformers warns, pointing to Ministral).
            raise ValueError(f"layer_types {given!r} is not supported: every {cls.model_type} layer has the one window, "
                             f"sliding_window={config.sliding_window} (a Ministral checkpoint?)")
        return config

    def check(self) -> None:
        super().check()
        for name in self.ignored:
            if getattr(self, name):
                raise ValueError(f"{name}=True is not a {self.model_type} setting (transformers' {self.model_type} ignores it)")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window {self.sliding_window} is not supported: a window of at least one key (itself), or None")


def sliding_window_mask(mask: torch.Tensor, T: int, past: int, sliding_window: int) -> torch.Tensor:
    """The additive (B or 1, 1, T, S) causal mask, with the keys ``sliding_window`` or more slots
    back hidden too: (B or 1, 1, T, W), W the keys a sliding layer sees (``SlidingWindowLayer``).

    transformers' sliding_window_overlay: key j is seen by query i (at slot past + i) iff
    ``j > past + i - sliding_window``, on top of the causal and padding rules; outside, the dtype's
    most negative finite value, as the causal mask has it.
    """
    S = past + T
    query_positions = torch.arange(T, device=mask.device) + past  # (T,)
    key_positions = torch.arange(S, device=mask.device)  # (S,)
    allowed = key_positions[None, :] > query_positions[:, None] - sliding_window  # (T, S): the window
    mask = torch.where(allowed, mask, torch.finfo(mask.dtype).min)  # (B or 1, 1, T, S)
    visible = min(past, sliding_window - 1) + T  # W: what the cache hands a sliding layer (all S without a cache)
    return mask[..., -visible:]  # (B or 1, 1, T, W)


class SlidingWindowLayer:
    """A sliding layer's view of the KVCache, as transformers' DynamicSlidingWindowLayer
    (cache_utils.py) serves it: the KVCache keeps every token; this hands the layer only the last
    ``sliding_window - 1`` cached keys and values and this call's, in a fresh contiguous tensor
    (transformers' ``torch.cat`` of what it kept and the new ones)."""

    def __init__(self, cache: KVCache, sliding_window: int):
        self.cache = cache
        self.sliding_window = sliding_window

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        past = self.cache.get_seq_length(layer_idx)  # tokens cached before this call
        keys, values = self.cache.update(layer_idx, key, value)  # (B, nkv, S, hs): every token so far
        visible = min(past, self.sliding_window - 1) + key.shape[2]  # W: transformers kept the last W - T
        return keys[:, :, -visible:].contiguous(), values[:, :, -visible:].contiguous()  # (B, nkv, W, hs)


class MistralAttention(LlamaAttention):
    """Twin of MistralAttention: Llama's, with the sliding window's cache (its mask comes from the model)."""

    def __init__(self, config: MistralConfig, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.layer_type = config.layer_type(layer_idx)
        self.sliding_window = config.sliding_window if self.layer_type == "sliding_attention" else None  # main diff with Llama

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache: KVCache | None = None):
        if cache is not None and self.sliding_window is not None:
            cache = SlidingWindowLayer(cache, self.sliding_window)  # the keys transformers' sliding cache hands the layer
        return super().forward(hidden_states, position_embeddings, attention_mask, cache)


class MistralDecoderLayer(LlamaDecoderLayer):
    """Twin of MistralDecoderLayer: Llama's, reading its own kind of mask (full or sliding)."""

    attention_class = MistralAttention

    def __init__(self, config: MistralConfig, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.attention_type = config.layer_type(layer_idx)

    def forward(self, hidden_states, attention_mask, position_embeddings, cache: KVCache | None = None) -> torch.Tensor:
        return super().forward(hidden_states, attention_mask[self.attention_type], position_embeddings, cache)


class MistralModel(LlamaModel):
    """Twin of MistralModel: LlamaModel with its mask windowed (create_sliding_window_causal_mask)."""

    config_class = MistralConfig
    layer_class = MistralDecoderLayer

    def mask(self, attention_mask, T: int, past: int, dtype, device, packed) -> dict[str, torch.Tensor]:
        """One mask per kind of layer, built once, as transformers' ``causal_mask_mapping``:
        "full_attention", Llama's (B or 1, 1, T, S); "sliding_attention", windowed, (B or 1, 1, T, W).
        Packed sequences: a window inside one sequence is the same in slots as in positions (5.x's)."""
        mask = super().mask(attention_mask, T, past, dtype, device, packed)  # (B or 1, 1, T, S): causal and padding
        types = {self.config.layer_type(i) for i in range(self.config.num_hidden_layers)}
        masks = {"full_attention": mask}
        if "sliding_attention" in types:
            masks["sliding_attention"] = sliding_window_mask(mask, T, past, self.config.sliding_window)  # (B or 1, 1, T, W)
        return masks


class MistralForCausalLM(LlamaForCausalLM):
    base_class = MistralModel
    config_class = MistralConfig


class MistralForSequenceClassification(LlamaForSequenceClassification):
    base_class = MistralModel
    config_class = MistralConfig


ARCHITECTURE = Architecture(
    model_type="mistral",
    config=MistralConfig,
    base=MistralModel,
    heads=(MistralForCausalLM, MistralForSequenceClassification),
    default=MistralForCausalLM,
    hf_file="models/mistral/modeling_mistral.py",
    layers="layers",
    attention="self_attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
)
