"""RoBERTa, written to be read beside transformers' models/roberta/modeling_roberta.py.

RoBERTa is BERT's encoder, retrained (more data, no next-sentence task, byte-level BPE); the
arithmetic of a layer is BERT's to the last bit. transformers' modular_roberta.py says what
differs, and so does this file, by subclassing reimpl/bert.py's twins:

- the positions (RobertaEmbeddings): counted per row from ``pad_token_id + 1``, skipping padding
  tokens, which get position ``pad_token_id``; the position table has a padding row too;
- the heads: RobertaForMaskedLM's lm_head (RobertaLMHead: dense, GELU, layer_norm, then the
  decoder tied to the word embeddings) and RobertaForSequenceClassification's classifier
  (RobertaClassificationHead: dense, tanh and out_proj on the <s> token's final hidden state: it
  has its own dense where BERT's classifier reads the pooler);
- the names: the base model is kept under ``roberta``, the heads under ``lm_head`` and
  ``classifier``.

RobertaSelfAttention, RobertaLayer and RobertaModel are BERT's, under RoBERTa's names (so that
``from_hf`` checks it is given the right class, and the records point at the right file). With
the same weights and input every step is bit-identical (``torch.equal``) to transformers' eager
attention path in fp32.

Training, as in reimpl/bert.py: BERT's dropout (inherited), and the classification head's own,
applied twice (before its dense and before out_proj); ``labels=`` gives the loss as transformers
computes it.

Left out, as in reimpl/bert.py: the decoder (``is_decoder`` / ``add_cross_attention``, refused:
RobertaForCausalLM), the key/value cache, ``inputs_embeds``, gradient checkpointing, feed-forward
chunking, the heads without a checkpoint in the wild (token classification, QA, multiple choice),
and the attention backends (sdpa, flash, flex): this is ``eager_attention_forward``.

Shape legend: B batch, T tokens, C hidden size, nh heads, hs head size, I intermediate size,
V vocabulary, L labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .architecture import Architecture
from . import versions
from .bert import (
    BertConfig,
    BertEmbeddings,
    BertLayer,
    BertModel,
    BertPreTrainedModel,
    BertSelfAttention,
    checkpoint_key,
)
from .losses import cross_entropy, sequence_classification_loss
from .outputs import MaskedLMOutput, SequenceClassifierOutput
from .states import Dropout, name_modules, record


@dataclasses.dataclass
class RobertaConfig(BertConfig):
    """The RobertaConfig fields that change the math, with transformers' defaults (BERT's but two).

    Real checkpoints differ from these defaults: roberta-base has type_vocab_size 1 (one segment
    embedding, added to every token), layer_norm_eps 1e-5 and max_position_embeddings 514 (512
    tokens at positions 2..513: position 1 is the padding's, position 0 is never used).
    """

    model_type: ClassVar[str] = "roberta"  # config.json's, as in transformers' RobertaConfig

    vocab_size: int = 50265  # V: GPT-2's byte-level BPE plus <s>, <pad>, </s>, <unk>, <mask>
    # The padding token, and where positions start: the first real token is pad_token_id + 1.
    pad_token_id: int | None = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RobertaConfig":
        """From config.json (or a transformers config's to_dict()); refuses what the twin can't compute."""
        config = super().from_dict(d)
        if config.pad_token_id is None:
            raise ValueError(f"{cls.model_type} needs a pad_token_id: its positions are counted from pad_token_id + 1")
        if not 0 <= config.pad_token_id < config.max_position_embeddings:
            raise ValueError(
                f"pad_token_id {config.pad_token_id} is not a row of the position table "
                f"(max_position_embeddings {config.max_position_embeddings}); "
                f"{cls.model_type} uses it as the padding position"
            )
        return config


class RobertaEmbeddings(BertEmbeddings):
    """Twin of RobertaEmbeddings: BERT's sum of word, token type and position embeddings, then
    LayerNorm, with positions counted from ``padding_idx + 1`` (fairseq's ``make_positions``)."""

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        # The padding position's row, like the padding token's, gets no gradient. Registered last, as
        # in transformers' RobertaEmbeddings: the parameters' order is the order in which
        # clip_grad_norm_ adds up the gradients' norms, so it is part of training's arithmetic.
        if not versions.V4:  # transformers 4.57 replaces BERT's table in place: word, position, token type
            del self.position_embeddings
        C = config.hidden_size
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C, padding_idx=self.padding_idx)

    def create_position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T): BertEmbeddings' hook, here RoBERTa's positions. (Explicit ``position_ids`` are used as given.)"""
        return self.create_position_ids_from_input_ids(input_ids, self.padding_idx)

    @staticmethod
    def create_position_ids_from_input_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
        """(B, T): each row's tokens numbered padding_idx + 1, padding_idx + 2, ..., skipping padding
        tokens, which get padding_idx. The padding is found by token id, not by the attention mask,
        so a left-padded row starts at padding_idx + 1 too. HF's, without ``cache_length`` (no cache)."""
        mask = input_ids.ne(padding_idx).int()  # (B, T): 1 = token, 0 = padding
        counted = torch.cumsum(mask, dim=1).type_as(mask) * mask  # (B, T): 1, 2, ... at tokens, 0 at padding
        return counted.long() + padding_idx  # (B, T)


class RobertaSelfAttention(BertSelfAttention):
    """Twin of RobertaSelfAttention: BERT's (modular_roberta.py: ``class RobertaSelfAttention(BertSelfAttention): pass``)."""

    config_class = RobertaConfig


class RobertaLayer(BertLayer):
    """Twin of RobertaLayer: BERT's, with RoBERTa's attention class."""

    attention_class = RobertaSelfAttention


class RobertaModel(BertModel):
    """Twin of RobertaModel: embeddings (RoBERTa's positions), BERT's encoder, and the pooler if the
    checkpoint has one (roberta-base's file does; neither head below uses it)."""

    config_class = RobertaConfig
    embeddings_class = RobertaEmbeddings
    layer_class = RobertaLayer
    base_model_prefix = "roberta"

# ---------------------------------------------------------------------------------------------
# Heads: what the model predicts.


class RobertaLMHead(nn.Module):
    """Twin of RobertaLMHead: dense, GELU, layer_norm, then scores over the vocabulary.

    BERT's BertLMPredictionHead in one flat module, with lowercase ``layer_norm`` (fairseq's name)
    and the GELU written into forward (transformers' exact erf ``gelu``, whatever ``hidden_act``
    says). The decoder is the word embedding matrix (tied) with a bias of its own, also kept as
    ``bias``.
    """

    def __init__(self, config: RobertaConfig):
        super().__init__()
        C = config.hidden_size
        self.dense = nn.Linear(C, C)
        self.layer_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(C, config.vocab_size)  # (V, C): tied to the word embeddings
        self.bias = self.decoder.bias  # one (V,) tensor under two names, as in HF

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dense(features)  # (B, T, C)
        record(self, "dense", x)
        x = F.gelu(x)  # (B, T, C): transformers.activations.gelu, the exact erf form
        record(self, "gelu", x)
        x = self.layer_norm(x)  # (B, T, C)
        record(self, "layer_norm", x)
        logits = self.decoder(x)  # (B, T, V): each position against every word's embedding
        record(self, "decoder", logits)
        return logits


class RobertaClassificationHead(nn.Module):
    """Twin of RobertaClassificationHead: the <s> token's final hidden state through dense, tanh and out_proj.

    A pooler of its own, trained with the task (RobertaForSequenceClassification builds its
    RobertaModel without one). One dropout module, applied twice; recorded once, under
    ``classifier.dropout``: the second application's output (out_proj's input).
    """

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)  # (L, C)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features[:, 0, :]  # (B, C): the <s> token only (BERT's [CLS])
        x = self.dropout(x)  # (B, C); training only
        x = self.dense(x)  # (B, C)
        record(self, "dense", x)
        x = torch.tanh(x)  # (B, C)
        record(self, "tanh", x)
        x = self.dropout(x)  # (B, C); training only
        logits = self.out_proj(x)  # (B, L)
        record(self, "out_proj", logits)
        return logits


class RobertaPreTrainedModel(BertPreTrainedModel):
    """What RoBERTa's heads share: a RobertaModel under ``roberta``."""

    base_class = RobertaModel
    base_model_prefix = "roberta"

class RobertaForMaskedLM(RobertaPreTrainedModel):
    """Twin of RobertaForMaskedLM: RobertaModel without its pooler, then lm_head (RobertaLMHead)."""

    _tied_weights_keys = {
        "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
        "lm_head.decoder.bias": "lm_head.bias",
    }
    lm_head_class = RobertaLMHead  # XLM-RoBERTa names its own

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.roberta = self.base_class(config, add_pooling_layer=False)  # HF's masked LM has no pooler
        self.lm_head = self.lm_head_class(config)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> MaskedLMOutput:
        """``labels``: (B, T) the token to predict at each masked position, -100 elsewhere."""
        hidden_states = self.roberta(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        logits = self.lm_head(hidden_states)  # (B, T, V)
        loss = cross_entropy(logits, labels, self.config.vocab_size) if labels is not None else None
        return MaskedLMOutput(loss=loss, logits=logits)


class RobertaForSequenceClassification(RobertaPreTrainedModel):
    """Twin of RobertaForSequenceClassification: RobertaModel without its pooler, then classifier
    (RobertaClassificationHead) on the <s> token, a score per label."""

    classifier_class = RobertaClassificationHead  # XLM-RoBERTa names its own

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.roberta = self.base_class(config, add_pooling_layer=False)  # the classifier is its own pooler
        self.classifier = self.classifier_class(config)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> SequenceClassifierOutput:
        """``labels``: as BertForSequenceClassification's."""
        hidden_states = self.roberta(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        logits = self.classifier(hidden_states)  # (B, L)
        loss = sequence_classification_loss(logits, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# The record.


ARCHITECTURE = Architecture(
    model_type="roberta",
    config=RobertaConfig,
    base=RobertaModel,
    heads=(RobertaForMaskedLM, RobertaForSequenceClassification),
    default=RobertaModel,
    hf_file="models/roberta/modeling_roberta.py",
    layers="encoder.layer",
    attention="attention.self",
    causal=False,
    token_types=True,  # forward takes token_type_ids; real checkpoints have a single type (type_vocab_size 1)
    checkpoint_key=checkpoint_key,  # BERT's: LayerNorm gamma/beta, which transformers renames for every model
)
