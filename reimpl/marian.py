"""Marian, the paper's Transformer, written to be read beside transformers' models/marian/modeling_marian.py.

"Attention Is All You Need" is an encoder-decoder, and MarianMTModel is its base model as
transformers has it (the opus-mt checkpoints: d_model 512, 6 + 6 layers, 8 heads, d_ff 2048):
token embeddings scaled by sqrt(d_model) plus the paper's sinusoidal positions; post-LN layers
(x = LayerNorm(x + sublayer(x))); an encoder of self-attention layers over the source; a decoder
whose layers attend causally to the target so far, then to the encoder's output (cross-attention:
queries from the decoder, keys and values from the encoder); the decoder's embedding matrix again
as the output projection, plus ``final_logits_bias``.

Twins of those: MarianSinusoidalPositionalEmbedding, MarianAttention (self- and cross-attention),
MarianEncoderLayer, MarianDecoderLayer, MarianEncoder, MarianDecoder, MarianModel (``shared``,
``encoder``, ``decoder``) and MarianMTModel (``model``, ``lm_head``, ``final_logits_bias``), with
``shift_tokens_right`` (teacher forcing: the decoder reads the target shifted right by one, the
start token first). Classes and attributes have transformers' names, so state-dict keys load as
they are; with the same weights and input every step is bit-identical (``torch.equal``) to
transformers' eager path in fp32, forward and backward. BART (reimpl/bart.py) is this skeleton
with learned positions and a LayerNorm after the embeddings: it subclasses these.

Left out: ``inputs_embeds`` and ``decoder_inputs_embeds``, head masks, the attention backends
(sdpa, flash): this is ``eager_attention_forward``; MarianForCausalLM (the decoder alone).

Shape legend: B batch, S source tokens, T target tokens in this call, K keys attended to (the
cache's and this call's, or the source's), C d_model, nh heads, hs head size (C // nh), F the
feed-forward's width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from . import versions
from .activations import get_activation
from .architecture import Architecture
from .bert import additive_mask
from .cache import EncoderDecoderCache, KVCache
from .gpt2 import causal_mask
from .loading import Twin
from .losses import cross_entropy
from .outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from .seq2seq import Seq2SeqGenerationMixin
from .states import Dropout, name_modules, record


@dataclasses.dataclass
class MarianConfig:
    """The MarianConfig fields that change the math, with transformers' names and defaults."""

    model_type: ClassVar[str] = "marian"  # config.json's

    vocab_size: int = 58101  # V: the source's (and, shared, the target's) vocabulary
    decoder_vocab_size: int | None = None  # the target's, when the embeddings are not shared; None: vocab_size
    max_position_embeddings: int = 1024  # rows of the sinusoid table: the longest text
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096  # F
    encoder_attention_heads: int = 16  # nh
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    activation_function: str = "gelu"  # the feed-forward's (opus-mt: "swish")
    d_model: int = 1024  # C
    dropout: float = 0.1  # training only: on the embeddings and each sublayer's output
    attention_dropout: float = 0.0  # on the attention probabilities
    activation_dropout: float = 0.0  # after the feed-forward's activation
    encoder_layerdrop: float = 0.0  # training only: the chance of skipping a whole layer
    decoder_layerdrop: float = 0.0
    scale_embedding: bool = False  # multiply the token embeddings by sqrt(C), as the paper does
    pad_token_id: int = 58100
    eos_token_id: int = 0
    decoder_start_token_id: int = 58100  # what the decoder reads first (Marian: the pad token)
    share_encoder_decoder_embeddings: bool = True  # one table for source and target (``shared``)
    tie_word_embeddings: bool = True  # lm_head is the (decoder's) token embedding

    def __post_init__(self):
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MarianConfig":
        """From config.json; refuses what the twin can't compute."""
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        config.check(d)
        return config

    def check(self, d: dict[str, Any]) -> None:
        get_activation(self.activation_function)  # fail now, with the supported list, not mid-forward
        for side in ("encoder", "decoder"):
            heads = getattr(self, f"{side}_attention_heads")
            if self.d_model % heads:
                raise ValueError(f"d_model {self.d_model} is not a multiple of {side}_attention_heads {heads}")
        if d.get("is_encoder_decoder") is False or d.get("is_decoder"):
            raise ValueError("a Marian config set up as a decoder alone (MarianForCausalLM) is not supported")
        if self.share_encoder_decoder_embeddings and not self.tie_word_embeddings:
            raise ValueError(
                "tie_word_embeddings=False with shared embeddings is not supported: transformers 5 then gives the encoder, "
                "the decoder and `shared` three tables of their own, 4.57 keeps one"
            )
        if versions.V4 and self.decoder_vocab_size != self.vocab_size:
            raise ValueError(
                f"decoder_vocab_size {self.decoder_vocab_size} other than vocab_size {self.vocab_size} is not supported under "
                "transformers 4.57, which builds the decoder's table with vocab_size rows (5.x sizes it decoder_vocab_size)"
            )
        if self.pad_token_id is None:
            raise ValueError("pad_token_id is required: the decoder's input is the target shifted right, padded with it")


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: (B, T) labels -> (B, T) decoder inputs, the start token first and every
    label one place later, so position t reads labels 0..t-1 and is trained to predict label t.
    Labels of -100 (ignored by the loss) become padding."""
    shifted_input_ids = input_ids.new_zeros(input_ids.shape)  # (B, T)
    shifted_input_ids[:, 1:] = input_ids[:, :-1].clone()
    shifted_input_ids[:, 0] = decoder_start_token_id
    shifted_input_ids.masked_fill_(shifted_input_ids == -100, pad_token_id)
    return shifted_input_ids


class MarianSinusoidalPositionalEmbedding(nn.Embedding):
    """Twin of MarianSinusoidalPositionalEmbedding: the paper's fixed sinusoids as a frozen table.

    Row p, column j: sin(p / 10000^(2i/C)) in the first half, cos in the second (i = j // 2; the
    paper interleaves them, Marian puts the sines first). Checkpoints need not store it:
    transformers computes it at init (``create_weight``), and so does the loader here when the file
    lacks it (``computed``).
    """

    computed = ("weight",)  # the loader calls compute(name) when a checkpoint lacks these

    def __init__(self, num_positions: int, embedding_dim: int, padding_idx: int | None = None) -> None:
        super().__init__(num_positions, embedding_dim, _freeze=True)  # no padding row: every position is real

    def compute(self, name: str) -> torch.Tensor:
        """(P, C) the table as transformers' create_weight computes it: in float64 by numpy, then fp32."""
        n_pos, dim = self.weight.shape
        position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
        out = torch.empty(n_pos, dim, dtype=torch.float32, device="cpu")  # on the CPU even when built on meta
        sentinel = dim // 2 if dim % 2 == 0 else (dim // 2) + 1
        out[:, 0:sentinel] = torch.FloatTensor(np.sin(position_enc[:, 0::2]))  # sines: even columns' angles
        out[:, sentinel:] = torch.FloatTensor(np.cos(position_enc[:, 1::2]))  # cosines: odd columns' angles
        return out

    def forward(self, input_ids_shape: torch.Size, past: int = 0) -> torch.Tensor:
        """(T, C): the rows of positions past .. past + T - 1, shared by every row of the batch."""
        seq_len = input_ids_shape[1]
        position_ids = torch.arange(past, past + seq_len, dtype=torch.long, device=self.weight.device)  # (T,)
        return super().forward(position_ids)  # (T, C)


class MarianAttention(nn.Module):
    """Twin of MarianAttention with eager_attention_forward: softmax(Q K^T / sqrt(hs) + mask) V.

    Self-attention when ``key_value_states`` is None (keys and values from the same tokens as the
    queries); cross-attention when it is the encoder's output (queries from the decoder, keys and
    values from the source, computed once per generation and then kept in the cache). Returns the
    output after out_proj, and the probabilities.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, is_decoder: bool = False,
                 bias: bool = True, is_causal: bool = False, config: MarianConfig | None = None, layer_idx: int | None = None):
        super().__init__()
        self.embed_dim = embed_dim  # C
        self.num_heads = num_heads  # nh
        self.head_dim = embed_dim // num_heads  # hs
        self.scaling = self.head_dim**-0.5  # a Python float: 1 / sqrt(hs)
        self.is_decoder = is_decoder
        self.is_causal = is_causal
        self.layer_idx = layer_idx  # the cache's slot
        # transformers keeps a float here and calls nn.functional.dropout with it: the same call
        self.dropout = Dropout(dropout)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def keys_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of ``states``, split into heads: (B, nh, K, hs) each."""
        kv_shape = (*states.shape[:-1], -1, self.head_dim)
        key_states = self.k_proj(states)  # (B, K, C)
        record(self, "k_proj", key_states)
        value_states = self.v_proj(states)  # (B, K, C)
        record(self, "v_proj", value_states)
        return key_states.view(kv_shape).transpose(1, 2), value_states.view(kv_shape).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        cache: EncoderDecoderCache | KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``attention_mask``: additive, (B or 1, 1, T or 1, K): the future and padding -> finfo.min."""
        B, T, _ = hidden_states.shape
        is_cross_attention = key_value_states is not None
        query_states = self.q_proj(hidden_states)  # (B, T, C)
        record(self, "q_proj", query_states)
        query_states = query_states.view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        if isinstance(cache, EncoderDecoderCache):  # the decoder's: which half this attention uses
            layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
        else:
            layer_cache = cache
        if is_cross_attention and isinstance(cache, EncoderDecoderCache) and cache.is_updated.get(self.layer_idx):
            # the source's keys and values, computed at the first step, the same for every later one
            key_states, value_states = layer_cache.keys[self.layer_idx], layer_cache.values[self.layer_idx]
        else:
            key_states, value_states = self.keys_values(key_value_states if is_cross_attention else hidden_states)
            if layer_cache is not None:
                key_states, value_states = layer_cache.update(self.layer_idx, key_states, value_states)  # (B, nh, K, hs)
                if is_cross_attention and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True
        scores = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling  # (B, nh, T, K)
        record(self, "scores", scores)
        if attention_mask is not None:
            scores = scores + attention_mask  # padding (and, in the decoder's self-attention, the future) -> ~-inf
        probs = nn.functional.softmax(scores, dim=-1)  # (B, nh, T, K): each row sums to 1
        record(self, "probs", probs)
        probs = self.dropout(probs)  # (B, nh, T, K); training only
        context = torch.matmul(probs, value_states)  # (B, nh, T, hs)
        context = context.transpose(1, 2).contiguous().reshape(B, T, -1).contiguous()  # (B, T, C): heads side by side
        record(self, "context", context)
        output = self.out_proj(context)  # (B, T, C)
        record(self, "out_proj", output)
        return output, probs


class MarianEncoderLayer(nn.Module):
    """Twin of MarianEncoderLayer, post-LN as in the paper: x = LN(x + SelfAttn(x)); x = LN(x + FFN(x))."""

    attention_class = MarianAttention  # BART names its own

    def __init__(self, config: MarianConfig, layer_idx: int | None = None):
        super().__init__()
        self.embed_dim = C = config.d_model
        self.self_attn = self.attention_class(C, config.encoder_attention_heads, dropout=config.attention_dropout,
                                              config=config, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(C)
        self.dropout = Dropout(config.dropout)
        self.activation_fn = get_activation(config.activation_function)
        self.activation_dropout = Dropout(config.activation_dropout)
        self.fc1 = nn.Linear(C, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, C)
        self.final_layer_norm = nn.LayerNorm(C)

    def feed_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """x = LN(x + fc2(act(fc1(x)))): the position-wise feed-forward and its residual."""
        residual = hidden_states
        hidden_states = self.fc1(hidden_states)  # (B, T, F)
        record(self, "fc1", hidden_states)
        hidden_states = self.activation_fn(hidden_states)  # (B, T, F)
        record(self, "activation_fn", hidden_states)
        hidden_states = self.activation_dropout(hidden_states)  # training only
        hidden_states = self.fc2(hidden_states)  # (B, T, C)
        record(self, "fc2", hidden_states)
        hidden_states = self.dropout(hidden_states)  # training only
        hidden_states = residual + hidden_states  # (B, T, C)
        record(self.fc2, "residual", hidden_states)
        hidden_states = self.final_layer_norm(hidden_states)  # (B, T, C): after the sum (post-LN)
        record(self, "final_layer_norm", hidden_states)
        return hidden_states

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(hidden_states, attention_mask=attention_mask)  # (B, S, C)
        hidden_states = self.dropout(hidden_states)  # training only
        hidden_states = residual + hidden_states  # (B, S, C)
        record(self.self_attn, "residual", hidden_states)
        hidden_states = self.self_attn_layer_norm(hidden_states)  # (B, S, C)
        record(self, "self_attn_layer_norm", hidden_states)
        return self.feed_forward(hidden_states)


class MarianDecoderLayer(MarianEncoderLayer):
    """Twin of MarianDecoderLayer: x = LN(x + CausalSelfAttn(x)); x = LN(x + CrossAttn(x, encoder)); x = LN(x + FFN(x))."""

    def __init__(self, config: MarianConfig, layer_idx: int | None = None):
        nn.Module.__init__(self)
        self.embed_dim = C = config.d_model
        self.self_attn = self.attention_class(C, config.decoder_attention_heads, dropout=config.attention_dropout,
                                              is_decoder=True, is_causal=True, config=config, layer_idx=layer_idx)
        self.dropout = Dropout(config.dropout)
        self.activation_fn = get_activation(config.activation_function)
        self.activation_dropout = Dropout(config.activation_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(C)
        self.encoder_attn = self.attention_class(C, config.decoder_attention_heads, dropout=config.attention_dropout,
                                                 is_decoder=True, config=config, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, C)
        self.final_layer_norm = nn.LayerNorm(C)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(hidden_states, cache=cache, attention_mask=attention_mask)  # (B, T, C): causal
        hidden_states = self.dropout(hidden_states)  # training only
        hidden_states = residual + hidden_states  # (B, T, C)
        record(self.self_attn, "residual", hidden_states)
        hidden_states = self.self_attn_layer_norm(hidden_states)  # (B, T, C)
        record(self, "self_attn_layer_norm", hidden_states)
        if encoder_hidden_states is not None:
            residual = hidden_states
            hidden_states, _ = self.encoder_attn(hidden_states, key_value_states=encoder_hidden_states,
                                                 attention_mask=encoder_attention_mask, cache=cache)  # (B, T, C): Q here, K and V from the source
            hidden_states = self.dropout(hidden_states)  # training only
            hidden_states = residual + hidden_states  # (B, T, C)
            record(self.encoder_attn, "residual", hidden_states)
            hidden_states = self.encoder_attn_layer_norm(hidden_states)  # (B, T, C)
            record(self, "encoder_attn_layer_norm", hidden_states)
        return self.feed_forward(hidden_states)


def layerdrop(module: nn.Module, p: float) -> bool:
    """LayerDrop, training only: skip this layer with probability p (one draw from torch's stream, as transformers draws it)."""
    if versions.V4:  # transformers 4.57 draws in training even when p is 0, which moves every later dropout's mask
        return module.training and bool(torch.rand([]) < p)
    return module.training and p > 0.0 and bool(torch.rand([]) < p)


class MarianEncoder(nn.Module):
    """Twin of MarianEncoder: scaled token embeddings plus sinusoidal positions, then the layers.
    No final LayerNorm: each post-LN layer ends with one."""

    layer_class = MarianEncoderLayer
    positions_class = MarianSinusoidalPositionalEmbedding

    def __init__(self, config: MarianConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.dropout = Dropout(config.dropout)
        self.layerdrop = config.encoder_layerdrop
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0  # the paper's sqrt(d_model)
        self.embed_tokens = embed_tokens  # the model's ``shared`` table, or the encoder's own
        self.embed_positions = self.positions_class(config.max_position_embeddings, config.d_model, config.pad_token_id)
        self.layers = nn.ModuleList(self.layer_class(config) for _ in range(config.encoder_layers))

    def positions(self, input_ids: torch.Tensor, past: int) -> torch.Tensor:
        """(T, C): the rows of this call's positions, after ``past`` cached tokens."""
        return self.embed_positions(input_ids.shape, past)

    def embed(self, input_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        """X_0 = W_tok[ids] * sqrt(C) + PE[positions] (B, S, C)."""
        words = self.embed_tokens(input_ids)  # (B, S, C)
        record(self, "embed_tokens", words)
        words = words * self.embed_scale  # (B, S, C): sqrt(C) times, so the words are not drowned by the positions
        positions = self.positions(input_ids, past)  # (S, C), the same for every row
        record(self, "embed_positions", positions)
        hidden_states = words + positions  # (B, S, C)
        record(self, "sum", hidden_states)
        return hidden_states

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> BaseModelOutput:
        """``attention_mask``: the tokenizer's (B, S) 1/0 mask of the source."""
        hidden_states = self.dropout(self.embed(input_ids))  # (B, S, C); dropout in training only
        mask = additive_mask(attention_mask, hidden_states.dtype) if attention_mask is not None else None  # (B, 1, 1, S)
        for i, layer in enumerate(self.layers):
            if layerdrop(self, self.layerdrop):
                continue
            hidden_states = layer(hidden_states, mask)  # (B, S, C)
            record(self, f"layers.{i}", hidden_states)
        return BaseModelOutput(hidden_states)


class MarianDecoder(MarianEncoder):
    """Twin of MarianDecoder: the target's embeddings (scaled, plus positions after the cached ones),
    then the layers, each attending causally to the target and fully to the encoder's output."""

    layer_class = MarianDecoderLayer

    def __init__(self, config: MarianConfig, embed_tokens: nn.Embedding):
        nn.Module.__init__(self)
        self.config = config
        self.dropout = Dropout(config.dropout)
        self.layerdrop = config.decoder_layerdrop
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = embed_tokens
        self.embed_positions = self.positions_class(config.max_position_embeddings, config.d_model, config.pad_token_id)
        self.layers = nn.ModuleList(self.layer_class(config, layer_idx=i) for i in range(config.decoder_layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> BaseModelOutput:
        """``attention_mask``: (B, cached + T), the target's padding; ``encoder_attention_mask``: (B, S), the source's."""
        B, T = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0  # target tokens already in the cache
        hidden_states = self.dropout(self.embed(input_ids, past))  # (B, T, C); positions from past on
        dtype, device = hidden_states.dtype, hidden_states.device
        self_mask = causal_mask(attention_mask, T, past, dtype, device)  # (B or 1, 1, T, past + T): no peeking ahead
        cross_mask = additive_mask(encoder_attention_mask, dtype) if encoder_attention_mask is not None else None  # (B, 1, 1, S)
        for i, layer in enumerate(self.layers):
            if layerdrop(self, self.layerdrop):
                continue
            hidden_states = layer(hidden_states, self_mask, encoder_hidden_states, cross_mask, cache)  # (B, T, C)
            record(self, f"layers.{i}", hidden_states)
        return BaseModelOutput(hidden_states)


class MarianPreTrainedModel(Twin):
    """What the models share: the config class, and the key prefix of the heads' base model."""

    config_class = MarianConfig
    base_model_prefix = "model"


class MarianModel(MarianPreTrainedModel):
    """Twin of MarianModel: the encoder over the source, the decoder over the target, one embedding
    table for both (``shared``) unless the config keeps them apart."""

    encoder_class = MarianEncoder
    decoder_class = MarianDecoder

    def __init__(self, config: MarianConfig):
        super().__init__()
        self.config = config
        C, pad = config.d_model, config.pad_token_id
        if config.share_encoder_decoder_embeddings:  # one table: encoder and decoder hold the same module
            self.shared = self.embedding(config.vocab_size)
            encoder_embed_tokens = decoder_embed_tokens = self.shared
        else:
            self.shared = None
            encoder_embed_tokens = nn.Embedding(config.vocab_size, C, pad)
            decoder_embed_tokens = nn.Embedding(config.decoder_vocab_size, C, pad)
        self.encoder = self.encoder_class(config, encoder_embed_tokens)
        self.decoder = self.decoder_class(config, decoder_embed_tokens)
        name_modules(self)

    def embedding(self, vocab_size: int) -> nn.Embedding:
        """The token table (V, C); the padding row gets no gradient."""
        return nn.Embedding(vocab_size, self.config.d_model, self.config.pad_token_id)

    def decoder_inputs(self, input_ids: torch.Tensor | None, decoder_input_ids: torch.Tensor | None) -> torch.Tensor:
        """What the decoder reads. Marian needs them given (or ``labels`` to MarianMTModel)."""
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids are required (or labels, which MarianMTModel shifts right into them)")
        return decoder_input_ids

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> Seq2SeqModelOutput:
        """``encoder_outputs``: the encoder's output from an earlier call (generation runs the encoder once)."""
        decoder_input_ids = self.decoder_inputs(input_ids, decoder_input_ids)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask)  # (B, S, C)
        encoder_hidden_states = encoder_outputs[0]  # (B, S, C)
        decoder_outputs = self.decoder(decoder_input_ids, decoder_attention_mask, encoder_hidden_states, attention_mask, cache)  # (B, T, C)
        return Seq2SeqModelOutput(decoder_outputs.last_hidden_state, encoder_hidden_states)


class MarianMTModel(Seq2SeqGenerationMixin, MarianPreTrainedModel):
    """Twin of MarianMTModel: MarianModel, then logits over the target vocabulary,
    lm_head (the decoder's embedding matrix when tied) plus ``final_logits_bias``.
    ``generate`` (greedy and beam search, as transformers'): reimpl/seq2seq.py."""

    base_class = MarianModel
    computed = ("final_logits_bias",)  # zeros when a checkpoint lacks it, as transformers initialises it

    def __init__(self, config: MarianConfig):
        super().__init__()
        self.config = config
        self.model = self.base_class(config)
        shared = config.share_encoder_decoder_embeddings
        # as transformers declares them, per instance: which table lm_head is, when tied
        self._tied_weights_keys = {"lm_head.weight": "model.shared.weight" if shared else "model.decoder.embed_tokens.weight"}
        target_vocab_size = config.vocab_size if shared else config.decoder_vocab_size
        self.register_buffer("final_logits_bias", torch.zeros((1, target_vocab_size)))  # (1, V): in the checkpoint
        self.lm_head = nn.Linear(config.d_model, target_vocab_size, bias=False)  # (V, C)
        name_modules(self)

    def compute(self, name: str) -> torch.Tensor:
        """(1, V) zeros: transformers' init of a bias the file lacks."""
        return torch.zeros(tuple(self.final_logits_bias.shape), device="cpu")

    def get_encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
        labels: torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput:
        """``labels``: (B, T) the target ids (-100: ignored); without ``decoder_input_ids`` the
        decoder reads them shifted right (teacher forcing). Logits (B, T, V) for the next target token."""
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)  # (B, T)
        outputs = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs, cache)
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)
        record(self, "lm_head", logits)
        logits = logits + self.final_logits_bias  # (B, T, V)
        record(self, "logits", logits)
        loss = cross_entropy(logits, labels, self.lm_head.out_features) if labels is not None else None
        return Seq2SeqLMOutput(loss=loss, logits=logits, encoder_last_hidden_state=outputs.encoder_last_hidden_state)


# ---------------------------------------------------------------------------------------------
# The record.


def checkpoint_key(key: str) -> str | None:
    """Marian checkpoints as found: keys as transformers names them (older files also hold the
    sinusoid tables, which load as they are). Prefixes (``model.``) are matched by the loader."""
    return key


ARCHITECTURE = Architecture(
    model_type="marian",
    config=MarianConfig,
    base=MarianModel,
    heads=(MarianMTModel,),
    default=MarianMTModel,
    hf_file="models/marian/modeling_marian.py",
    layers="decoder.layers",
    attention="self_attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
    encoder="encoder.layers",
    cross_attention="encoder_attn",
)
