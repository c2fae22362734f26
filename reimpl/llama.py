"""Llama, written to be read beside transformers' models/llama/modeling_llama.py.

The modern decoder: GPT-2's pre-norm block with four changes, each a class or function here by
transformers' name. LayerNorm becomes LlamaRMSNorm (no mean, no bias); learned positions become
rotary embeddings (LlamaRotaryEmbedding, apply_rotary_pos_emb), which turn each query and key
pair of dimensions by an angle proportional to the token's position; several query heads share one
key/value head (grouped-query attention: repeat_kv); the MLP is SwiGLU (LlamaMLP: down(silu(gate(x))
* up(x))). Twins of those, LlamaAttention, LlamaDecoderLayer, LlamaModel (embed_tokens, layers,
norm, rotary_emb), LlamaForCausalLM (lm_head, tied to embed_tokens when the config says so) and
LlamaForSequenceClassification (score, read at each row's last real token). Classes and
attributes have transformers' names, so its state-dict keys load as they are; with the same
weights and input every step is bit-identical (``torch.equal``) to transformers' eager path in
fp32: without a cache to transformers called with ``use_cache=False``, with a ``KVCache`` to its
default call.

Family members (reimpl/qwen2.py, qwen3.py, mistral.py) subclass these and write only what differs.

Rotary scaling (``rope_parameters`` / 4.x ``rope_scaling``): "default", "linear" and "llama3"
are computed as transformers computes them; the others ("dynamic", "yarn", "longrope", ...) are
refused by name, as is ``partial_rotary_factor`` below 1. ``pretraining_tp``, which older releases
used to split the matmuls, is read by neither supported transformers (4.57, 5.x): accepted,
ignored as they ignore it.

Left out: ``inputs_embeds``, gradient checkpointing, the attention backends (sdpa, flash, flex):
this is ``eager_attention_forward``; the heads without a twin (token classification, QA).

Shape legend: B batch, T tokens in this call, S tokens attended to (the cache's and this call's),
C hidden size, nh query heads, nkv key/value heads, hs head size, I the MLP's inner width,
V vocabulary, L labels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from .activations import get_activation
from .architecture import Architecture, ClassifierConfig
from .cache import KVCache
from .gpt2 import causal_mask
from .loading import Twin
from .losses import causal_lm_loss, sequence_classification_loss
from .generation import GenerationMixin
from .outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput, last_token_logits
from .states import Dropout, name_modules, record

ROPE_TYPES = ("default", "linear", "llama3")  # computed here as transformers computes them


@dataclasses.dataclass
class LlamaConfig(ClassifierConfig):
    """The LlamaConfig fields that change the math, with transformers' names and defaults."""

    model_type: ClassVar[str] = "llama"  # config.json's

    vocab_size: int = 32000  # V
    hidden_size: int = 4096  # C
    intermediate_size: int = 11008  # I: SwiGLU's gate and up width
    num_hidden_layers: int = 32
    num_attention_heads: int = 32  # nh
    num_key_value_heads: int | None = None  # nkv; None: nh (no sharing). nh // nkv query heads share each
    head_dim: int | None = None  # hs; None: C // nh (it may be set otherwise)
    hidden_act: str = "silu"  # the gate's activation: SwiGLU is SiLU-gated
    max_position_embeddings: int = 2048  # the context it was trained for (no position table: RoPE)
    rms_norm_eps: float = 1e-6
    # RoPE, as transformers 5 names it: {"rope_type", "rope_theta" (the base: pair i of a head turns
    # by position * theta^(-2i/hs)), and the type's own settings ("factor", ...)}. None: the default
    # rotation, theta 10000. (4.x's config.json has rope_theta and rope_scaling: from_dict reads both.)
    rope_parameters: dict[str, Any] | None = None
    attention_bias: bool = False  # biases on q/k/v/o_proj (Llama: none; Qwen2's q/k/v have them)
    mlp_bias: bool = False
    tie_word_embeddings: bool = False  # lm_head is embed_tokens (small models: SmolLM2, Llama 3.2 1B)
    pad_token_id: int | None = None  # embed_tokens' padding_idx; the classifier reads the last token that is not this
    attention_dropout: float = 0.0  # training only: on the attention probabilities

    def __post_init__(self):
        super().__post_init__()
        self.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0, **(self.rope_parameters or {})}
        if "type" in self.rope_parameters:  # the oldest files' name for it
            self.rope_parameters["rope_type"] = self.rope_parameters.pop("type")
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    @property
    def rope_type(self) -> str:
        return self.rope_parameters["rope_type"]

    @property
    def rope_theta(self) -> float:
        return self.rope_parameters["rope_theta"]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LlamaConfig":
        """From config.json, as transformers 5 writes it (``rope_parameters``) or 4.x
        (``rope_theta``, ``rope_scaling``); refuses what the twin can't compute."""
        d = dict(d)
        if d.get("is_causal") is False:  # transformers 5 then builds bidirectional masks; 4.57 ignores it
            raise ValueError("is_causal=False (transformers 5's bidirectional masks for a decoder) is not supported")
        if not d.get("rope_parameters"):  # transformers 4: theta and scaling apart
            d["rope_parameters"] = {**(d.get("rope_scaling") or {}), "rope_theta": d.get("rope_theta", 10000.0)}
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        config.check()
        return config

    def check(self) -> None:
        get_activation(self.hidden_act)  # fail now, with the supported list, not mid-forward
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type {self.rope_type!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
        if self.rope_parameters.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("partial_rotary_factor below 1 (a rotation of part of each head) is not supported")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads {self.num_attention_heads} is not a multiple of num_key_value_heads {self.num_key_value_heads}")


class LlamaRMSNorm(nn.Module):
    """Twin of LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * weight, in fp32. No mean subtracted, no bias."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))  # (C,)
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)  # (B, T, C)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)  # (B, T, 1): mean of squares, no mean removed
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)  # (B, T, C)
        return self.weight * hidden_states.to(input_dtype)  # (B, T, C)


def rope_inv_freq(config: LlamaConfig) -> torch.Tensor:
    """(hs/2,) the angle per position of each pair of dimensions: theta^(-2i/hs), scaled as the rope type says."""
    dim = config.head_dim
    # On the CPU even when the twin is built on the meta device (reimpl.loading.build): a buffer no
    # checkpoint holds, computed here as transformers computes it at init.
    positions = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").to(dtype=torch.float)  # (hs/2,): 0, 2, 4, ...
    inv_freq = 1.0 / (config.rope_theta ** (positions / dim))  # (hs/2,)
    scaling = config.rope_parameters
    if config.rope_type == "linear":  # positions divided by the factor: a longer context at the same angles
        inv_freq = inv_freq / scaling["factor"]
    elif config.rope_type == "llama3":  # slow pairs divided by the factor, fast ones kept, a smooth ramp between
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_context_len = scaling["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = old_context_len / low, old_context_len / high
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth_factor = (old_context_len / wavelen - low) / (high - low)
        smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv_freq = torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)
    return inv_freq


class LlamaRotaryEmbedding(nn.Module):
    """Twin of LlamaRotaryEmbedding: cos and sin of each position's angles, shared by every layer."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)  # (hs/2,): not in checkpoints
        self.attention_scaling = 1.0  # (yarn's would scale cos and sin: refused)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)  # (B, T, hs/2): angles
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hs): each angle twice, for the two halves rotate_half pairs
        cos = emb.cos() * self.attention_scaling  # (B, T, hs)
        record(self, "cos", cos)
        sin = emb.sin() * self.attention_scaling  # (B, T, hs)
        record(self, "sin", sin)
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension: dimension i pairs with i + hs/2."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn each (i, i + hs/2) pair of q and k by its angle: x cos + rotate_half(x) sin."""
    cos = cos.unsqueeze(unsqueeze_dim)  # (B, 1, T, hs): the same angles for every head
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)  # (B, nh, T, hs)
    k_embed = (k * cos) + (rotate_half(k) * sin)  # (B, nkv, T, hs)
    return q_embed, k_embed


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, nkv, S, hs) -> (B, nkv * n_rep, S, hs): each key/value head serves n_rep query heads in a row."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)  # a contiguous copy


class LlamaMLP(nn.Module):
    """Twin of LlamaMLP, SwiGLU: down(silu(gate(x)) * up(x)). The gate decides, per inner unit, how much of up passes."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(C, I, bias=config.mlp_bias)
        self.up_proj = nn.Linear(C, I, bias=config.mlp_bias)
        self.down_proj = nn.Linear(I, C, bias=config.mlp_bias)
        self.act_fn = get_activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate_proj(x)  # (B, T, I)
        record(self, "gate_proj", gate)
        gate = self.act_fn(gate)  # (B, T, I): silu(g) = g * sigmoid(g)
        record(self, "act_fn", gate)
        up = self.up_proj(x)  # (B, T, I)
        record(self, "up_proj", up)
        gated = gate * up  # (B, T, I)
        record(self, "gated", gated)
        down = self.down_proj(gated)  # (B, T, C)
        record(self, "down_proj", down)
        return down


class LlamaAttention(nn.Module):
    """Twin of LlamaAttention with eager_attention_forward: rotate Q and K, then softmax(Q K^T * scaling + mask) V.

    ``num_key_value_groups`` query heads share each key/value head (grouped-query attention; 1:
    multi-head, nh: multi-query). Returns the output after o_proj, and the probabilities.
    """

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx  # the cache's slot
        self.head_dim = config.head_dim  # hs
        self.num_heads = config.num_attention_heads  # nh
        self.num_key_value_heads = config.num_key_value_heads  # nkv
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads  # query heads per key/value head
        self.scaling = self.head_dim**-0.5  # a Python float, as in transformers: 1 / sqrt(hs)
        # transformers keeps a float here and calls nn.functional.dropout with it: the same call
        self.attention_dropout = Dropout(config.attention_dropout)
        C, nh, nkv, hs, bias = config.hidden_size, self.num_heads, self.num_key_value_heads, self.head_dim, config.attention_bias
        self.q_proj = nn.Linear(C, nh * hs, bias=bias)
        self.k_proj = nn.Linear(C, nkv * hs, bias=bias)
        self.v_proj = nn.Linear(C, nkv * hs, bias=bias)
        self.o_proj = nn.Linear(nh * hs, C, bias=bias)

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V, split into heads: (B, nh, T, hs), (B, nkv, T, hs), (B, nkv, T, hs)."""
        B, T, _ = hidden_states.shape
        q = self.q_proj(hidden_states)  # (B, T, nh * hs)
        record(self, "q_proj", q)
        k = self.k_proj(hidden_states)  # (B, T, nkv * hs)
        record(self, "k_proj", k)
        v = self.v_proj(hidden_states)  # (B, T, nkv * hs)
        record(self, "v_proj", v)
        hidden_shape = (B, T, -1, self.head_dim)
        return q.view(hidden_shape).transpose(1, 2), k.view(hidden_shape).transpose(1, 2), v.view(hidden_shape).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_embeddings``: (cos, sin) of this call's positions; ``attention_mask``: the additive (B, 1, T, S) mask."""
        B, T, _ = hidden_states.shape
        q, k, v = self.project(hidden_states)  # (B, nh, T, hs), (B, nkv, T, hs), (B, nkv, T, hs)
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)  # turned by each token's position
        record(self, "q_rope", q)
        record(self, "k_rope", k)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nkv, S, hs): the cached tokens' first
        k = repeat_kv(k, self.num_key_value_groups)  # (B, nh, S, hs)
        v = repeat_kv(v, self.num_key_value_groups)  # (B, nh, S, hs)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling  # (B, nh, T, S)
        record(self, "scores", scores)
        if attention_mask is not None:
            scores = scores + attention_mask  # the future, padding (and outside a sliding window) -> ~-inf
        probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # (B, nh, T, S)
        record(self, "probs", probs)
        probs = self.attention_dropout(probs)  # (B, nh, T, S); training only: whole links between tokens dropped
        context = torch.matmul(probs, v)  # (B, nh, T, hs)
        context = context.transpose(1, 2).contiguous().reshape(B, T, -1).contiguous()  # (B, T, nh * hs)
        record(self, "context", context)
        output = self.o_proj(context)  # (B, T, C)
        record(self, "o_proj", output)
        return output, probs


class LlamaDecoderLayer(nn.Module):
    """Twin of LlamaDecoderLayer: pre-norm, as GPT-2's block, with RMSNorm. x + attn(norm(x)), then + mlp(norm(x))."""

    attention_class = LlamaAttention  # a family member names its own (Qwen3Attention)
    mlp_class = LlamaMLP

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        super().__init__()
        self.self_attn = self.attention_class(config, layer_idx)
        self.mlp = self.mlp_class(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask, position_embeddings, cache: KVCache | None = None) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)  # (B, T, C)
        record(self, "input_layernorm", hidden_states)
        hidden_states, _ = self.self_attn(hidden_states, position_embeddings, attention_mask, cache)  # (B, T, C)
        hidden_states = residual + hidden_states  # (B, T, C): back onto the residual stream
        record(self.self_attn, "residual", hidden_states)
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)  # (B, T, C)
        record(self, "post_attention_layernorm", hidden_states)
        hidden_states = self.mlp(hidden_states)  # (B, T, C)
        hidden_states = residual + hidden_states  # (B, T, C)
        record(self.mlp, "residual", hidden_states)
        return hidden_states


class LlamaModel(Twin):
    """Twin of LlamaModel: token embeddings, the decoder layers, the final RMSNorm. No position table:
    positions enter each attention through the rotation."""

    config_class = LlamaConfig
    layer_class = LlamaDecoderLayer  # a family member names its own
    base_model_prefix = "model"  # the attribute the *For* classes keep this model under, and its keys' prefix

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(self.layer_class(config, layer_idx=i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        name_modules(self)

    def mask(self, attention_mask, T: int, past: int, dtype, device, packed) -> torch.Tensor:
        """The additive (B or 1, 1, T, S) mask, built once for all layers: causal and padding (Mistral: a window too)."""
        return causal_mask(attention_mask, T, past, dtype, device, packed)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be the tokenizer's (B, S) mask, not a {attention_mask.dim()}-D tensor")
        B, T = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0  # tokens already in the cache
        packed = position_ids if attention_mask is None and cache is None else None  # packed sequences (see causal_mask)
        if position_ids is None:
            position_ids = (torch.arange(T, device=input_ids.device) + past)[None]  # (1, T): after the cache, unshifted by padding
        hidden_states = self.embed_tokens(input_ids)  # (B, T, C)
        record(self, "embed_tokens", hidden_states)
        mask = self.mask(attention_mask, T, past, hidden_states.dtype, hidden_states.device, packed)  # (B, 1, T, S)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)  # cos, sin: (1 or B, T, hs)
        for i, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, mask, position_embeddings, cache)  # (B, T, C)
            record(self, f"layers.{i}", hidden_states)  # "model.layers.i": the layer's output
        hidden_states = self.norm(hidden_states)  # (B, T, C)
        record(self, "norm", hidden_states)
        return BaseModelOutput(hidden_states)


class LlamaPreTrainedModel(Twin):
    """What the heads share: the base model under ``model``."""

    base_class = LlamaModel
    config_class = LlamaConfig
    base_model_prefix = "model"


class LlamaForCausalLM(LlamaPreTrainedModel, GenerationMixin):
    """Twin of LlamaForCausalLM: LlamaModel, then logits over the vocabulary (lm_head; tied to
    embed_tokens when ``tie_word_embeddings``). ``generate``: reimpl/generation.py."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = self.base_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # (V, C)
        name_modules(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        labels: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """Logits (B, T, V) for the next token after each input token; the arguments as GPT2LMHeadModel's."""
        hidden_states = self.model(input_ids, attention_mask, cache, position_ids).last_hidden_state  # (B, T, C)
        logits = self.lm_head(hidden_states[:, -logits_to_keep:, :])  # (B, T or N, V); -0: all
        record(self, "lm_head", logits)
        loss = causal_lm_loss(logits, labels, self.config.vocab_size) if labels is not None else None
        return CausalLMOutput(loss=loss, logits=logits)


class LlamaForSequenceClassification(LlamaPreTrainedModel):
    """Twin of LlamaForSequenceClassification (transformers' GenericForSequenceClassification):
    a score per label at every position (score, no bias), read at each row's last real token."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.model = self.base_class(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)  # (L, C)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None) -> SequenceClassifierOutput:
        hidden_states = self.model(input_ids, attention_mask, None, position_ids).last_hidden_state  # (B, T, C)
        logits = self.score(hidden_states)  # (B, T, L)
        record(self, "score", logits)
        pooled = last_token_logits(logits, input_ids, self.config.pad_token_id)  # (B, L)
        loss = sequence_classification_loss(pooled, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=pooled)


# ---------------------------------------------------------------------------------------------
# The record.


def checkpoint_key(key: str) -> str | None:
    """Llama checkpoints as found: older saves carry each layer's ``rotary_emb.inv_freq`` buffer,
    which transformers recomputes from the config: dropped. Prefixes (``model.``) are matched by the loader."""
    return None if key.endswith("rotary_emb.inv_freq") else key


ARCHITECTURE = Architecture(
    model_type="llama",
    config=LlamaConfig,
    base=LlamaModel,
    heads=(LlamaForCausalLM, LlamaForSequenceClassification),
    default=LlamaForCausalLM,
    hf_file="models/llama/modeling_llama.py",
    layers="layers",
    attention="self_attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
)
