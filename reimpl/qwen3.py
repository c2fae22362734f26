"""Qwen3, written to be read beside transformers' models/qwen3/modeling_qwen3.py.

Qwen2 (reimpl/qwen2.py) with one new step and Llama's biases:

- q_norm and k_norm: before the rotation, each head's query and key is RMS-normalised over its
  own hs dimensions, with a learned (hs,) gain shared by the heads (Qwen3Attention.project). It
  keeps Q K^T from growing with the projections' scale;
- the projections' biases as Llama's: ``attention_bias`` on all four (q, k, v and o_proj), off in
  the released checkpoints; ``head_dim`` defaults to 128, not C / nh.

The window is Qwen2's (``use_sliding_window``, ``sliding_window``, ``max_window_layers``,
``layer_types``), and so are the mask, the cache and the heads. With the same weights and input
every step is bit-identical (``torch.equal``) to transformers' eager path in fp32: without a cache
to transformers called with ``use_cache=False``, with a ``KVCache`` to its
``DynamicCache(config=config)``.

Left out, as in reimpl/llama.py: ``inputs_embeds``, gradient checkpointing, the attention
backends, the heads without a twin (token classification, QA).

Shape legend as reimpl/llama.py's: B batch, T tokens in this call, nh query heads, nkv key/value
heads, hs head size.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from .architecture import Architecture
from .llama import LlamaRMSNorm, checkpoint_key
from .mistral import MistralAttention
from .qwen2 import Qwen2Config, Qwen2DecoderLayer, Qwen2ForCausalLM, Qwen2ForSequenceClassification, Qwen2Model
from .states import record


@dataclasses.dataclass
class Qwen3Config(Qwen2Config):
    """Qwen2Config, with ``attention_bias`` read (as Llama's) and Qwen3Config's head_dim."""

    model_type: ClassVar[str] = "qwen3"
    ignored: ClassVar[tuple[str, ...]] = ("mlp_bias",)  # transformers' Qwen3 reads attention_bias, not mlp_bias

    head_dim: int | None = 128  # hs, whatever C / nh is (None: C / nh)


class Qwen3Attention(MistralAttention):
    """Twin of Qwen3Attention: Llama's projections (biases as ``attention_bias`` says), each head's
    query and key RMS-normalised before the rotation, and Qwen2's window on sliding layers."""

    def __init__(self, config: Qwen3Config, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.q_norm = LlamaRMSNorm(self.head_dim, eps=config.rms_norm_eps)  # (hs,): over each head, not the whole width
        self.k_norm = LlamaRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = super().project(hidden_states)  # (B, nh, T, hs), (B, nkv, T, hs), (B, nkv, T, hs)
        q = self.q_norm(q.transpose(1, 2))  # (B, T, nh, hs): normalised as transformers does, before heads go first
        record(self, "q_norm", q)
        k = self.k_norm(k.transpose(1, 2))  # (B, T, nkv, hs)
        record(self, "k_norm", k)
        return q.transpose(1, 2), k.transpose(1, 2), v  # (B, nh, T, hs), (B, nkv, T, hs), (B, nkv, T, hs)


class Qwen3DecoderLayer(Qwen2DecoderLayer):
    attention_class = Qwen3Attention


class Qwen3Model(Qwen2Model):
    config_class = Qwen3Config
    layer_class = Qwen3DecoderLayer


class Qwen3ForCausalLM(Qwen2ForCausalLM):
    base_class = Qwen3Model
    config_class = Qwen3Config


class Qwen3ForSequenceClassification(Qwen2ForSequenceClassification):
    base_class = Qwen3Model
    config_class = Qwen3Config


ARCHITECTURE = Architecture(
    model_type="qwen3",
    config=Qwen3Config,
    base=Qwen3Model,
    heads=(Qwen3ForCausalLM, Qwen3ForSequenceClassification),
    default=Qwen3ForCausalLM,
    hf_file="models/qwen3/modeling_qwen3.py",
    layers="layers",
    attention="self_attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
)
