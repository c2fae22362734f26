"""ELECTRA, written to be read beside transformers' models/electra/modeling_electra.py.

ELECTRA's encoder is BERT's (models/electra's classes are "Copied from" BERT's), with one change:
the embeddings have their own width E = ``embedding_size`` (ELECTRA-small: 128 against a hidden
size of 256), and when E != C a linear layer, ``embeddings_project``, takes them up to C before
the first layer. There is no pooler. So the twins here subclass reimpl/bert.py's and override only
that: ElectraEmbeddings (BertEmbeddings at width E), ElectraSelfAttention and ElectraLayer (BERT's,
renamed), ElectraModel (embeddings, embeddings_project if E != C, encoder).

The heads real checkpoints carry: ElectraForPreTraining (the discriminator: is each token the
original or a replacement? one logit per token), ElectraForMaskedLM (the generator: a masked-LM
head at width E, its output layer tied to the word embeddings) and ElectraForSequenceClassification
(ElectraClassificationHead on the first token: dense, GELU, out_proj). Classes and attributes have
HF's names, so HF's state-dict keys load as they are, and with the same weights and input every
step is bit-identical (``torch.equal``) to transformers' eager attention path in fp32.

Training, as in reimpl/bert.py: BERT's dropout (inherited), and the classification head's own,
applied twice (before its dense and before out_proj); ``labels=`` gives the loss as transformers
computes it (the discriminator's: binary cross-entropy over the tokens the attention mask keeps).

Left out, as in reimpl/bert.py: ``is_decoder`` and cross-attention (ElectraForCausalLM; refused),
the key/value cache, gradient checkpointing, ``inputs_embeds``, the attention backends (sdpa, flash, flex): this is
``eager_attention_forward``; and the heads without checkpoints in the wild (token classification,
QA, multiple choice: the only users of the ``summary_*`` config fields). Feed-forward chunking
(``chunk_size_feed_forward``) is refused: transformers then runs the feed-forward on slices of the
tokens, whose matmuls round differently (measured: not bit-identical at C 256, I 1024).

Shape legend: B batch, T tokens, E embedding size, C hidden size, nh heads, hs head size,
I intermediate size, V vocabulary, L labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .activations import get_activation
from .architecture import Architecture
from .bert import (
    BertConfig,
    BertEmbeddings,
    BertLayer,
    BertModel,
    BertPreTrainedModel,
    BertSelfAttention,
    checkpoint_key,
)
from .loading import twin_of
from .losses import cross_entropy, replaced_token_loss, sequence_classification_loss
from .outputs import BaseModelOutput, MaskedLMOutput, ModelOutput, SequenceClassifierOutput
from .states import Dropout, name_modules, record


@dataclasses.dataclass
class ElectraConfig(BertConfig):
    """The ElectraConfig fields that change the math, with transformers' defaults (ELECTRA-small's
    discriminator, not BERT-base's)."""

    model_type: ClassVar[str] = "electra"  # config.json's, as in transformers' ElectraConfig

    hidden_size: int = 256  # C
    num_attention_heads: int = 4  # nh; hs = C // nh
    intermediate_size: int = 1024  # I
    embedding_size: int = 128  # E: the width of the embeddings (and of the generator's head)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ElectraConfig":
        """From config.json (or a transformers ElectraConfig's to_dict()); refuses what the twin can't compute."""
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError("ELECTRA as a decoder (is_decoder / add_cross_attention: ElectraForCausalLM) is not supported")
        return super().from_dict(d)  # BERT's refusals: feed-forward chunking, relative positions, activation, head size


class ElectraEmbeddings(BertEmbeddings):
    """Twin of ElectraEmbeddings: BERT's word + token type + position embeddings and LayerNorm, at width E."""

    def __init__(self, config: ElectraConfig):
        # The same four modules as BERT's, built as if the hidden size were E.
        super().__init__(dataclasses.replace(config, hidden_size=config.embedding_size))


class ElectraSelfAttention(BertSelfAttention):
    """Twin of ElectraSelfAttention: BERT's, "Copied from" it in transformers."""

    config_class = ElectraConfig


class ElectraLayer(BertLayer):
    """Twin of ElectraLayer: BERT's post-LN layer (ElectraAttention, ElectraSelfOutput,
    ElectraIntermediate and ElectraOutput are BERT's too)."""

    attention_class = ElectraSelfAttention


class ElectraModel(BertModel):
    """Twin of ElectraModel: embeddings at width E, ``embeddings_project`` up to C if E != C, the encoder. No pooler."""

    config_class = ElectraConfig
    embeddings_class = ElectraEmbeddings
    layer_class = ElectraLayer
    base_model_prefix = "electra"

    def __init__(self, config: ElectraConfig):
        super().__init__(config, add_pooling_layer=False)  # ELECTRA has no pooler: self.pooler is None
        E, C = config.embedding_size, config.hidden_size
        # transformers creates embeddings_project only when the widths differ (ELECTRA-small, the
        # generators); ELECTRA-base and -large discriminators have none, and no such weights.
        self.embeddings_project = nn.Linear(E, C) if E != C else None
        # transformers registers embeddings_project before the encoder. The parameters' order is the
        # order in which clip_grad_norm_ adds up the gradients' norms: part of training's arithmetic.
        self._modules["encoder"] = self._modules.pop("encoder")
        name_modules(self)

    @classmethod
    def checkpoint_args(cls, state: dict[str, torch.Tensor]) -> tuple:
        return ()  # no optional parts: embeddings_project follows from the config

    @classmethod
    def from_hf(cls, model: nn.Module) -> "ElectraModel":
        """The twin of a live transformers ElectraModel: its config and a copy of its weights."""
        return twin_of(cls, cls.config_class, model)  # BERT's asks for a pooler, which ELECTRA never has

    def hf_kwargs(self) -> dict[str, Any]:
        return {}  # transformers' ElectraModel takes no add_pooling_layer

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        """``attention_mask``: the tokenizer's (B, T) 1/0 mask. ``position_ids``: (1 or B, T), by default 0..T-1."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be the tokenizer's (B, T) mask, not a {attention_mask.dim()}-D tensor")
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, E)
        if self.embeddings_project is not None:
            hidden_states = self.embeddings_project(hidden_states)  # (B, T, C)
            record(self, "embeddings_project", hidden_states)
        for i, layer in enumerate(self.encoder.layer):
            hidden_states = layer(hidden_states, attention_mask)  # (B, T, C)
            record(self.encoder, f"layer.{i}", hidden_states)  # "encoder.layer.i": the layer's output
        return BaseModelOutput(hidden_states)  # pooler_output None


# ---------------------------------------------------------------------------------------------
# Heads: what the model predicts.


class ElectraForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None  # (): binary cross-entropy of "replaced?" over the tokens the mask keeps
    logits: torch.Tensor  # (B, T): > 0 where the discriminator thinks the token was replaced


class ElectraDiscriminatorPredictions(nn.Module):
    """Twin of ElectraDiscriminatorPredictions: dense, the config's activation, one logit per token."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        C = config.hidden_size
        self.dense = nn.Linear(C, C)
        self.activation = get_activation(config.hidden_act)  # the encoder's activation, not a fixed GELU
        self.dense_prediction = nn.Linear(C, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(hidden_states)  # (B, T, C)
        record(self, "dense", hidden_states)
        hidden_states = self.activation(hidden_states)  # (B, T, C)
        record(self, "activation", hidden_states)
        logits = self.dense_prediction(hidden_states)  # (B, T, 1)
        record(self, "dense_prediction", logits)
        return logits.squeeze(-1)  # (B, T)


class ElectraGeneratorPredictions(nn.Module):
    """Twin of ElectraGeneratorPredictions: down from C to E, GELU, LayerNorm (BERT's MLM transform, at width E)."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        E = config.embedding_size
        self.activation = get_activation("gelu")  # always exact GELU, whatever hidden_act says
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, E)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(hidden_states)  # (B, T, E)
        record(self, "dense", hidden_states)
        hidden_states = self.activation(hidden_states)  # (B, T, E)
        record(self, "activation", hidden_states)
        hidden_states = self.LayerNorm(hidden_states)  # (B, T, E)
        record(self, "LayerNorm", hidden_states)
        return hidden_states


class ElectraClassificationHead(nn.Module):
    """Twin of ElectraClassificationHead: the first token's vector through dense, GELU and out_proj.

    Not BERT's pooler: GELU where BERT has tanh, and a second layer of its own ("although BERT uses
    tanh here, it seems Electra authors used gelu here", transformers' comment). One dropout module,
    applied twice; recorded once, under ``classifier.dropout``: the second application's output.
    """

    def __init__(self, config: ElectraConfig):
        super().__init__()
        C = config.hidden_size
        self.dense = nn.Linear(C, C)
        self.activation = get_activation("gelu")  # fixed, whatever hidden_act says
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.out_proj = nn.Linear(C, config.num_labels)  # (L, C)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states[:, 0, :]  # (B, C): the first token, [CLS]
        x = self.dropout(x)  # (B, C); training only
        x = self.dense(x)  # (B, C)
        record(self, "dense", x)
        x = self.activation(x)  # (B, C)
        record(self, "activation", x)
        x = self.dropout(x)  # (B, C); training only
        logits = self.out_proj(x)  # (B, L)
        record(self, "out_proj", logits)
        return logits


class ElectraPreTrainedModel(BertPreTrainedModel):
    """What every ELECTRA head shares: the base model under ``electra``."""

    base_class = ElectraModel
    base_model_prefix = "electra"

class ElectraForPreTraining(ElectraPreTrainedModel):
    """Twin of ElectraForPreTraining: the discriminator. For each token, was it replaced by the generator?"""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.config = config
        self.electra = self.base_class(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> ElectraForPreTrainingOutput:
        """``labels``: (B, T) 1 where the token was replaced, 0 where it is the original."""
        hidden_states = self.electra(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        logits = self.discriminator_predictions(hidden_states)  # (B, T)
        loss = replaced_token_loss(logits, labels, attention_mask) if labels is not None else None
        return ElectraForPreTrainingOutput(loss=loss, logits=logits)


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """Twin of ElectraForMaskedLM: the generator. Scores over the vocabulary at every position, at width E."""

    # Only the weight: the output layer keeps a bias of its own (no separate ``bias`` as BERT's).
    _tied_weights_keys = {"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"}

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.config = config
        self.electra = self.base_class(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)  # (V, E): the word embeddings
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> MaskedLMOutput:
        """``labels``: (B, T) the token to predict at each masked position, -100 elsewhere."""
        hidden_states = self.electra(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        hidden_states = self.generator_predictions(hidden_states)  # (B, T, E)
        logits = self.generator_lm_head(hidden_states)  # (B, T, V): each position against every word's embedding
        record(self, "generator_lm_head", logits)
        loss = cross_entropy(logits, labels, self.config.vocab_size) if labels is not None else None
        return MaskedLMOutput(loss=loss, logits=logits)


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    """Twin of ElectraForSequenceClassification: ElectraClassificationHead on the first token, a score per label."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.electra = self.base_class(config)
        self.classifier = ElectraClassificationHead(config)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> SequenceClassifierOutput:
        """``labels``: as BertForSequenceClassification's."""
        hidden_states = self.electra(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        logits = self.classifier(hidden_states)  # (B, L)
        loss = sequence_classification_loss(logits, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# The record.


ARCHITECTURE = Architecture(
    model_type="electra",
    config=ElectraConfig,
    base=ElectraModel,
    heads=(ElectraForPreTraining, ElectraForMaskedLM, ElectraForSequenceClassification),
    default=ElectraModel,
    hf_file="models/electra/modeling_electra.py",
    layers="encoder.layer",
    attention="attention.self",
    causal=False,
    token_types=True,
    checkpoint_key=checkpoint_key,  # BERT's: TensorFlow-era LayerNorm gamma/beta
)
