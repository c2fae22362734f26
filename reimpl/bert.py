"""BERT, written to be read beside transformers' models/bert/modeling_bert.py.

Twins of BertEmbeddings, BertSelfAttention, BertLayer (which also carries the math of
BertAttention, BertSelfOutput, BertIntermediate and BertOutput) and BertModel (embeddings,
encoder, pooler). Classes and attributes have HF's names, so HF's state-dict keys load as they
are, and with the same weights and input every step is bit-identical (``torch.equal``) to
transformers' eager attention path in fp32.

Left out, because the encoder's math does not need them: dropout (the twins are inference-only),
cross-attention and ``is_decoder``, the key/value cache, gradient checkpointing, feed-forward
chunking, and the attention backends (sdpa, flash, flex): this is ``eager_attention_forward``.

Shape legend: B batch, T tokens, C hidden size, nh heads, hs head size, I intermediate size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from .activations import get_activation
from .loading import twin_of
from .states import name_modules, record


@dataclasses.dataclass
class BertConfig:
    """The BertConfig fields that change the math, with transformers' defaults."""

    model_type: ClassVar[str] = "bert"  # config.json's, as in transformers' BertConfig

    vocab_size: int = 30522
    hidden_size: int = 768  # C
    num_hidden_layers: int = 12
    num_attention_heads: int = 12  # nh; hs = C // nh
    intermediate_size: int = 3072  # I, the feed-forward's inner width
    hidden_act: str = "gelu"  # exact erf GELU, not GPT-2's tanh approximation
    max_position_embeddings: int = 512  # learned positions: the longest input
    type_vocab_size: int = 2  # segment A / segment B
    layer_norm_eps: float = 1e-12  # TensorFlow BERT's epsilon, far smaller than PyTorch's 1e-5

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
        """From config.json (or a transformers BertConfig's to_dict()); refuses what the twin can't compute."""
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {d['position_embedding_type']!r} is not supported (only 'absolute')")
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError("BERT as a decoder (is_decoder / add_cross_attention) is not supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        get_activation(config.hidden_act)  # fail now, with the supported list, not mid-forward
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}")
        return config


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) tokenizer mask, 1 = token, 0 = padding -> (B, 1, 1, T) bias for the scores.

    transformers' masking_utils.eager_mask does the same: 0 where a key may be attended to, the
    dtype's most negative finite value where not, so that softmax gives padding exactly 0.
    (transformers 4.x used -10000.0 here.)
    """
    keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, T)
    return torch.where(keep, torch.zeros((), dtype=dtype), torch.finfo(dtype).min)


class Namespace(nn.Module):
    """Holds named submodules and nothing else, so that nested HF keys such as
    ``attention.output.LayerNorm.weight`` load as they are while the math stays in one forward."""

    def __init__(self, /, **modules: nn.Module):  # "/": HF names one submodule "self"
        super().__init__()
        for name, module in modules.items():
            setattr(self, name, module)


class BertEmbeddings(nn.Module):
    """Twin of BertEmbeddings: word + token type + position embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        # "LayerNorm", not "layer_norm": the TensorFlow checkpoint's name, kept so old checkpoints load.
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # all segment A, as HF's zero buffer
        position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T): 0, 1, ..., T-1
        words = self.word_embeddings(input_ids)  # (B, T, C)
        record(self, "word_embeddings", words)
        types = self.token_type_embeddings(token_type_ids)  # (B, T, C)
        record(self, "token_type_embeddings", types)
        positions = self.position_embeddings(position_ids)  # (1, T, C), broadcast over the batch
        record(self, "position_embeddings", positions)
        # HF adds in this order: (words + types) + positions. Float addition is not associative.
        embeddings = words + types + positions  # (B, T, C)
        record(self, "sum", embeddings)
        embeddings = self.LayerNorm(embeddings)  # (B, T, C)
        record(self, "LayerNorm", embeddings)
        return embeddings


class BertSelfAttention(nn.Module):
    """Twin of BertSelfAttention with eager_attention_forward: softmax(Q K^T / sqrt(hs) + mask) V.

    Returns what HF's returns: the context before the output projection, and the probabilities.
    Left out: cross-attention, the key/value cache, the attention backends, attention dropout.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads  # nh
        self.attention_head_size = config.hidden_size // config.num_attention_heads  # hs
        self.all_head_size = self.num_attention_heads * self.attention_head_size  # C
        self.scaling = self.attention_head_size**-0.5  # a Python float, as in HF: 1 / sqrt(hs)
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)

    @classmethod
    def from_hf(cls, module: nn.Module) -> "BertSelfAttention":
        """The twin of a live transformers BertSelfAttention: its config and a copy of its weights."""
        return twin_of(cls, BertConfig, module)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = hidden_states.shape
        nh, hs = self.num_attention_heads, self.attention_head_size
        q = self.query(hidden_states).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        record(self, "query", q)
        k = self.key(hidden_states).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        record(self, "key", k)
        v = self.value(hidden_states).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        record(self, "value", v)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling  # (B, nh, T, T)
        record(self, "scores", scores)
        if attention_mask is not None:
            scores = scores + additive_mask(attention_mask, scores.dtype)  # padding keys -> ~-inf
        probs = torch.softmax(scores, dim=-1)  # (B, nh, T, T), each row sums to 1
        record(self, "probs", probs)
        context = torch.matmul(probs, v)  # (B, nh, T, hs)
        context = context.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        record(self, "context", context)
        return context, probs


class BertLayer(nn.Module):
    """Twin of BertLayer: self-attention, then the feed-forward, each with residual + LayerNorm (post-LN).

    HF spreads this over five classes (BertAttention, BertSelfAttention, BertSelfOutput,
    BertIntermediate, BertOutput); here the math is one forward and the submodules keep HF's
    paths so the weights load as they are.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size
        self.attention = Namespace(
            self=BertSelfAttention(config),
            output=Namespace(dense=nn.Linear(C, C), LayerNorm=nn.LayerNorm(C, eps=config.layer_norm_eps)),
        )
        self.intermediate = Namespace(dense=nn.Linear(C, I))
        self.intermediate_act_fn = get_activation(config.hidden_act)
        self.output = Namespace(dense=nn.Linear(I, C), LayerNorm=nn.LayerNorm(C, eps=config.layer_norm_eps))

    @classmethod
    def from_hf(cls, module: nn.Module) -> "BertLayer":
        """The twin of a live transformers BertLayer: its config and a copy of its weights."""
        return twin_of(cls, BertConfig, module)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attention, ffn_in, ffn_out = self.attention.output, self.intermediate, self.output
        context, _ = self.attention.self(hidden_states, attention_mask)  # (B, T, C)
        # BertSelfOutput: project, add the residual, normalise.
        projected = attention.dense(context)  # (B, T, C)
        record(attention, "dense", projected)
        residual = projected + hidden_states  # (B, T, C)
        record(attention, "residual", residual)
        hidden_states = attention.LayerNorm(residual)  # (B, T, C)
        record(attention, "LayerNorm", hidden_states)
        # BertIntermediate: up to I and the activation.
        up = ffn_in.dense(hidden_states)  # (B, T, I)
        record(ffn_in, "dense", up)
        activated = self.intermediate_act_fn(up)  # (B, T, I)
        record(ffn_in, "intermediate_act_fn", activated)
        # BertOutput: down to C, add the residual, normalise.
        down = ffn_out.dense(activated)  # (B, T, C)
        record(ffn_out, "dense", down)
        residual = down + hidden_states  # (B, T, C)
        record(ffn_out, "residual", residual)
        hidden_states = ffn_out.LayerNorm(residual)  # (B, T, C)
        record(ffn_out, "LayerNorm", hidden_states)
        return hidden_states


class BertModelOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, C)
    pooler_output: torch.Tensor | None  # (B, C), None when the checkpoint has no pooler


class BertModel(nn.Module):
    """Twin of BertModel: embeddings, the encoder's stack of layers, and the pooler if the checkpoint has one."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Namespace(layer=nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers)))
        C = config.hidden_size
        # The pooler is the NSP head's input: tanh(W h_[CLS] + b). Sentence-embedding checkpoints may drop it.
        self.pooler = Namespace(dense=nn.Linear(C, C)) if add_pooling_layer else None
        name_modules(self)

    @classmethod
    def from_hf(cls, model: nn.Module) -> "BertModel":
        """The twin of a live transformers BertModel: its config and a copy of its weights."""
        return twin_of(cls, BertConfig, model, model.pooler is not None)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> BertModelOutput:
        hidden_states = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        for i, layer in enumerate(self.encoder.layer):
            hidden_states = layer(hidden_states, attention_mask)  # (B, T, C)
            record(self.encoder, f"layer.{i}", hidden_states)  # "encoder.layer.i": the layer's output
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler.dense(hidden_states[:, 0])  # (B, C): the [CLS] token only
            record(self.pooler, "dense", pooled)
            pooled = torch.tanh(pooled)  # (B, C)
            record(self.pooler, "activation", pooled)
        return BertModelOutput(hidden_states, pooled)
