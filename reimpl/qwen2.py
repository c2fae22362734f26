"""Qwen2 (and Qwen2.5), written to be read beside transformers' models/qwen2/modeling_qwen2.py.

transformers' modular_qwen2.py builds Qwen2 from Llama's attention and Mistral's model; so does
this file, from reimpl/llama.py and reimpl/mistral.py. What differs from them:

- biases on the query, key and value projections, none on o_proj (Qwen2Attention re-declares the
  three, as transformers' modular file does); none in the MLP;
- the sliding window on some layers only: ``use_sliding_window`` turns it on, ``sliding_window``
  sizes it, and ``layer_types`` says which layers have it (when config.json gives none, the layers
  from ``max_window_layers`` on). Each layer reads its own kind of mask and cache, as Mistral's
  every layer does (reimpl/mistral.py: ``sliding_window_mask``, ``SlidingWindowLayer``).

With the same weights and input every step is bit-identical (``torch.equal``) to transformers'
eager path in fp32: without a cache to transformers called with ``use_cache=False``, with a
``KVCache`` to its ``DynamicCache(config=config)`` (its default, and ``generate``'s).

Left out, as in reimpl/llama.py: ``inputs_embeds``, gradient checkpointing, the attention
backends, the heads without a twin (token classification, QA).

Shape legend as reimpl/llama.py's: B batch, T tokens in this call, C hidden size, nh query heads,
nkv key/value heads, hs head size.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch import nn

from .architecture import Architecture
from .llama import LlamaForCausalLM, LlamaForSequenceClassification, checkpoint_key
from .mistral import MistralAttention, MistralConfig, MistralDecoderLayer, MistralModel

LAYER_TYPES = ("full_attention", "sliding_attention")  # the masks the twin builds (transformers knows chunked ones too)


@dataclasses.dataclass
class Qwen2Config(MistralConfig):
    """Qwen2Config's fields that change the math, with transformers' names and defaults."""

    model_type: ClassVar[str] = "qwen2"

    vocab_size: int = 151936
    intermediate_size: int = 22016
    num_key_value_heads: int | None = 32
    max_position_embeddings: int = 32768
    use_sliding_window: bool = False  # False: no layer slides, whatever sliding_window says (Qwen2.5 ships it so)
    sliding_window: int | None = 4096  # the window's size, when use_sliding_window
    max_window_layers: int = 28  # without layer_types: the layers from this one on slide
    layer_types: list[str] | None = None  # per layer, "full_attention" or "sliding_attention"; None: from the above

    def __post_init__(self):
        super().__post_init__()
        if not self.use_sliding_window:
            self.sliding_window = None  # as transformers' Qwen2Config does
        if self.layer_types is None:
            self.layer_types = [
                "sliding_attention" if self.sliding_window is not None and i >= self.max_window_layers else "full_attention"
                for i in range(self.num_hidden_layers)
            ]

    def layer_type(self, layer_idx: int) -> str:
        return self.layer_types[layer_idx]

    def check(self) -> None:
        super().check()
        if self.use_sliding_window and self.sliding_window is None:
            raise ValueError("use_sliding_window=True without a sliding_window is not supported: give the window's size")
        if len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
        if unknown:
            raise ValueError(f"layer_types {', '.join(unknown)} is not supported (supported: {', '.join(LAYER_TYPES)})")
        if "sliding_attention" in self.layer_types and self.sliding_window is None:
            raise ValueError("layer_types has sliding_attention layers but no window (use_sliding_window is false, "
                             "so sliding_window is None): transformers cannot build their mask")


class Qwen2Attention(MistralAttention):
    """Twin of Qwen2Attention: Mistral's (the window on sliding layers), with biases on Q, K and V
    (o_proj is Llama's, without one)."""

    def __init__(self, config: Qwen2Config, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        C, nh, nkv, hs = config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.q_proj = nn.Linear(C, nh * hs, bias=True)  # main diff with Llama: biases
        self.k_proj = nn.Linear(C, nkv * hs, bias=True)
        self.v_proj = nn.Linear(C, nkv * hs, bias=True)


class Qwen2DecoderLayer(MistralDecoderLayer):
    attention_class = Qwen2Attention


class Qwen2Model(MistralModel):
    """Twin of Qwen2Model: its layers read the full or the sliding mask, as layer_types says."""

    config_class = Qwen2Config
    layer_class = Qwen2DecoderLayer


class Qwen2ForCausalLM(LlamaForCausalLM):
    base_class = Qwen2Model
    config_class = Qwen2Config


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    base_class = Qwen2Model
    config_class = Qwen2Config


ARCHITECTURE = Architecture(
    model_type="qwen2",
    config=Qwen2Config,
    base=Qwen2Model,
    heads=(Qwen2ForCausalLM, Qwen2ForSequenceClassification),
    default=Qwen2ForCausalLM,
    hf_file="models/qwen2/modeling_qwen2.py",
    layers="layers",
    attention="self_attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
)
