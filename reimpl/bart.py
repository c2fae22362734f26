"""BART, written to be read beside transformers' models/bart/modeling_bart.py.

The paper's encoder-decoder (reimpl/marian.py) with three changes: learned positions instead of
sinusoids (BartLearnedPositionalEmbedding, its rows offset by 2, a quirk of fairseq's), the token
embedding scaled inside its own module (BartScaledWordEmbedding; BART's configs leave the scale
at 1), and a LayerNorm right after the embeddings (``layernorm_embedding``), in the encoder and
the decoder. The layers, the attention and the caches are Marian's, which transformers' BART
pieces are ("Copied from ... Bart->Marian"). Twins of BartModel, BartForConditionalGeneration
(lm_head tied to ``shared``, plus ``final_logits_bias``) and BartForSequenceClassification (the
decoder's state at the source's last ``</s>``, through BartClassificationHead).

When ``decoder_input_ids`` are not given, BartModel feeds the decoder the source itself shifted
right (``shift_tokens_right``), as BART was pre-trained to rebuild its input: the classification
head relies on it.

Shape legend as reimpl/marian.py's; L labels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from .activations import get_activation
from .architecture import Architecture, ClassifierConfig
from .losses import sequence_classification_loss
from .marian import (
    MarianAttention,
    MarianDecoder,
    MarianDecoderLayer,
    MarianEncoder,
    MarianEncoderLayer,
    MarianModel,
    MarianMTModel,
    shift_tokens_right,
)
from .outputs import SequenceClassifierOutput
from .seq2seq import Seq2SeqGenerationMixin
from .states import Dropout, name_modules, record
from .loading import Twin


@dataclasses.dataclass
class BartConfig(ClassifierConfig):
    """The BartConfig fields that change the math, with transformers' names and defaults."""

    model_type: ClassVar[str] = "bart"  # config.json's

    vocab_size: int = 50265  # V, source and target alike (one table)
    max_position_embeddings: int = 1024  # learned rows (2 more are stored: the offset)
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096  # F
    encoder_attention_heads: int = 16  # nh
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    activation_function: str = "gelu"
    d_model: int = 1024  # C
    dropout: float = 0.1  # training only
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    classifier_dropout: float = 0.0  # BartClassificationHead's
    scale_embedding: bool = False  # sqrt(C) times the token embeddings (BART's checkpoints: no)
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2  # </s>: the classification head reads the last one
    decoder_start_token_id: int = 2
    tie_word_embeddings: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BartConfig":
        """From config.json; refuses what the twin can't compute."""
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        get_activation(config.activation_function)
        for side in ("encoder", "decoder"):
            if config.d_model % getattr(config, f"{side}_attention_heads"):
                raise ValueError(f"d_model {config.d_model} is not a multiple of {side}_attention_heads")
        if d.get("is_encoder_decoder") is False or d.get("is_decoder"):
            raise ValueError("a BART config set up as a decoder alone (BartForCausalLM) is not supported")
        if not config.tie_word_embeddings:
            raise ValueError("tie_word_embeddings=False is not supported: the twin's lm_head is the shared table")
        return config


class BartLearnedPositionalEmbedding(nn.Embedding):
    """Twin of BartLearnedPositionalEmbedding: a learned row per position, read at position + 2."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        self.offset = 2  # fairseq kept rows 0 and 1 for padding; the checkpoints keep the layout
        super().__init__(num_embeddings + self.offset, embedding_dim)

    def forward(self, input_ids: torch.Tensor, past: int = 0, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) from the ids' shape (the encoder), or (1, T, C) from ``position_ids`` (the decoder), as transformers calls it."""
        if position_ids is None:
            bsz, seq_len = input_ids.shape[:2]
            position_ids = torch.arange(past, past + seq_len, dtype=torch.long, device=self.weight.device).expand(bsz, -1)  # (B, T)
        else:
            position_ids = position_ids.unsqueeze(0)  # (1, T)
        return super().forward(position_ids + self.offset)


class BartScaledWordEmbedding(nn.Embedding):
    """Twin of BartScaledWordEmbedding: the token lookup times ``embed_scale`` (sqrt(C), or 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int, embed_scale: float = 1.0):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale  # (B, T, C)


class BartAttention(MarianAttention):
    """Twin of BartAttention: Marian's (transformers' Marian attention is BART's, copied)."""


class BartEncoderLayer(MarianEncoderLayer):
    attention_class = BartAttention


class BartDecoderLayer(MarianDecoderLayer):
    attention_class = BartAttention


class BartEmbedding(nn.Module):
    """What BART's encoder and decoder embed alike: the scaled lookup plus learned positions, then a LayerNorm."""

    def embed(self, input_ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        """X_0 = LN(W_tok[ids] * scale + P[positions]) (B, T, C)."""
        words = self.embed_tokens(input_ids)  # (B, T, C), already times embed_scale
        record(self, "embed_tokens", words)
        positions = self.positions(input_ids, past)  # (B or 1, T, C)
        record(self, "embed_positions", positions)
        hidden_states = words + positions  # (B, T, C)
        record(self, "sum", hidden_states)
        hidden_states = self.layernorm_embedding(hidden_states)  # (B, T, C)
        record(self, "layernorm_embedding", hidden_states)
        return hidden_states


class BartEncoder(BartEmbedding, MarianEncoder):
    """Twin of BartEncoder: Marian's, with learned positions and ``layernorm_embedding``."""

    layer_class = BartEncoderLayer
    positions_class = BartLearnedPositionalEmbedding

    def __init__(self, config: BartConfig, embed_tokens: nn.Embedding):
        super().__init__(config, embed_tokens)
        self.layernorm_embedding = nn.LayerNorm(config.d_model)

    def positions(self, input_ids: torch.Tensor, past: int) -> torch.Tensor:
        return self.embed_positions(input_ids)  # (B, S, C): a row per token, from the ids' shape


class BartDecoder(BartEmbedding, MarianDecoder):
    """Twin of BartDecoder: Marian's, with the encoder's embeddings (learned positions, ``layernorm_embedding``)."""

    layer_class = BartDecoderLayer
    positions_class = BartLearnedPositionalEmbedding

    def __init__(self, config: BartConfig, embed_tokens: nn.Embedding):
        super().__init__(config, embed_tokens)
        self.layernorm_embedding = nn.LayerNorm(config.d_model)

    def positions(self, input_ids: torch.Tensor, past: int) -> torch.Tensor:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device) + past  # (T,): after the cached tokens
        return self.embed_positions(input_ids, past, position_ids=position_ids)  # (1, T, C)


class BartPreTrainedModel(Twin):
    config_class = BartConfig
    base_model_prefix = "model"


class BartModel(BartPreTrainedModel, MarianModel):
    """Twin of BartModel: one scaled table (``shared``) whose weight the encoder's and decoder's
    own embedding modules share; the decoder reads the source shifted right when not told otherwise."""

    encoder_class = BartEncoder
    decoder_class = BartDecoder
    _tied_weights_keys = {"decoder.embed_tokens.weight": "shared.weight", "encoder.embed_tokens.weight": "shared.weight"}

    def __init__(self, config: BartConfig):
        nn.Module.__init__(self)
        self.config = config
        embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.shared = BartScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, embed_scale)
        # three modules, one table: tied to ``shared`` on loading (_tied_weights_keys), as transformers ties them
        encoder_embed_tokens = BartScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, embed_scale)
        decoder_embed_tokens = BartScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, embed_scale)
        self.encoder = self.encoder_class(config, encoder_embed_tokens)
        self.decoder = self.decoder_class(config, decoder_embed_tokens)
        name_modules(self)

    def decoder_inputs(self, input_ids: torch.Tensor | None, decoder_input_ids: torch.Tensor | None) -> torch.Tensor:
        """Not given: the source shifted right, the start token first (denoising: rebuild the input)."""
        if decoder_input_ids is not None:
            return decoder_input_ids
        if input_ids is None:
            raise ValueError("without decoder_input_ids, input_ids are required: the decoder reads them shifted right")
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)  # (B, S)


EMBEDDINGS_TIED = {f"model.{target}": f"model.{source}" for target, source in BartModel._tied_weights_keys.items()}  # a head's view of them


class BartForConditionalGeneration(BartPreTrainedModel, MarianMTModel, Seq2SeqGenerationMixin):
    """Twin of BartForConditionalGeneration: BartModel, lm_head (the shared table) plus ``final_logits_bias``."""

    base_class = BartModel

    def __init__(self, config: BartConfig):
        nn.Module.__init__(self)
        self.config = config
        self.model = self.base_class(config)
        self._tied_weights_keys = {"lm_head.weight": "model.shared.weight", **EMBEDDINGS_TIED}
        self.register_buffer("final_logits_bias", torch.zeros((1, config.vocab_size)))  # (1, V)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)  # (V, C)
        name_modules(self)


class BartClassificationHead(nn.Module):
    """Twin of BartClassificationHead: dense, tanh, out_proj (dropout before each linear layer)."""

    def __init__(self, input_dim: int, inner_dim: int, num_classes: int, pooler_dropout: float):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.dropout = Dropout(p=pooler_dropout)
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(hidden_states)  # (B, C); training only
        hidden_states = self.dense(hidden_states)  # (B, C)
        record(self, "dense", hidden_states)
        hidden_states = torch.tanh(hidden_states)  # (B, C)
        record(self, "tanh", hidden_states)
        hidden_states = self.dropout(hidden_states)
        hidden_states = self.out_proj(hidden_states)  # (B, L)
        record(self, "out_proj", hidden_states)
        return hidden_states


class BartForSequenceClassification(BartPreTrainedModel):
    """Twin of BartForSequenceClassification: the decoder reads the source shifted right; its state
    at the source's last ``</s>`` is the sentence, scored by the classification head."""

    _tied_weights_keys = EMBEDDINGS_TIED

    def __init__(self, config: BartConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.model = BartModel(config)
        self.classification_head = BartClassificationHead(config.d_model, config.d_model, config.num_labels, config.classifier_dropout)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None, labels=None) -> SequenceClassifierOutput:
        hidden_states = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask).last_hidden_state  # (B, T, C)
        eos_mask = input_ids.eq(self.config.eos_token_id)  # (B, S): where the source has </s>
        if torch.unique_consecutive(eos_mask.sum(1)).numel() != 1:
            raise ValueError("All examples must have the same number of <eos> tokens.")
        selected = hidden_states[eos_mask, :]  # (B * n_eos, C)
        if selected.shape[0] // hidden_states.shape[0] < 1:
            raise ValueError("Each example must contain at least one <eos> token.")
        sentence_representation = selected.view(hidden_states.size(0), -1, hidden_states.size(-1))[:, -1, :]  # (B, C): the last </s>
        record(self, "sentence_representation", sentence_representation)
        logits = self.classification_head(sentence_representation)  # (B, L)
        loss = sequence_classification_loss(logits, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# The record.


def checkpoint_key(key: str) -> str | None:
    """BART checkpoints as found: keys as transformers names them. Prefixes (``model.``) are matched by the loader."""
    return key


ARCHITECTURE = Architecture(
    model_type="bart",
    config=BartConfig,
    base=BartModel,
    heads=(BartForConditionalGeneration, BartForSequenceClassification),
    default=BartForConditionalGeneration,
    hf_file="models/bart/modeling_bart.py",
    layers="decoder.layers",
    attention="self_attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
    encoder="encoder.layers",
    cross_attention="encoder_attn",
)
