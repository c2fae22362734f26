"""ALBERT, written to be read beside transformers' models/albert/modeling_albert.py.

ALBERT is BERT with two savings in parameters:

- a factorized embedding: tokens are embedded at a small width E (``embedding_size``, 128 in the
  released checkpoints) and mapped up to the hidden size C once, by
  ``encoder.embedding_hidden_mapping_in``;
- shared layers: the encoder holds ``num_hidden_groups`` groups of ``inner_group_num`` layers
  (``encoder.albert_layer_groups.G.albert_layers.J``), and its ``num_hidden_layers`` steps apply
  them over and over: step i runs group ``int(i / (num_hidden_layers / num_hidden_groups))``.
  Every released checkpoint has one group of one layer, applied 12 (or 24) times.

Twins of AlbertEmbeddings (BERT's, at width E), AlbertAttention (BERT's self-attention, plus its
own output projection and LayerNorm), AlbertLayer, AlbertLayerGroup, AlbertTransformer,
AlbertModel (embeddings, encoder, and the pooler: ``pooler`` + ``pooler_activation``) and the
heads real checkpoints carry: AlbertForMaskedLM (``predictions``, AlbertMLMHead: dense to E,
activation, LayerNorm, and the decoder tied to the word embeddings), AlbertForPreTraining (that
head and the sentence-order head, ``sop_classifier``, on the pooler) and
AlbertForSequenceClassification (``classifier`` on the pooler). Classes and attributes have
transformers' names, so its state-dict keys load as they are, and with the same weights and input
every step is bit-identical (``torch.equal``) to transformers' eager attention path in fp32.

Names of the recorded steps. A shared group's module path (``encoder.albert_layer_groups.0``)
is the same at each of its applications, so its steps would overwrite each other. Each
application is recorded under ``encoder.layer.{i}``, i = 0 .. num_hidden_layers - 1 in forward
order, with the group's own sub-paths below it:
``encoder.layer.3.albert_layers.0.attention.probs``. ``encoder.layer.{i}`` is *not* a module
path in transformers' ALBERT, which has no module per step: it names step i of
AlbertTransformer's loop (its ``i``), and ``encoder.layer.{i}`` alone is that step's output.
reimpl.states.applied_as does the naming here, annotate.capture's ``Hooks.numbered`` on
transformers' side.

Training: dropout where transformers applies it (the embeddings' ``dropout``, the attention's
``attention_dropout`` on the probabilities and ``output_dropout`` after ``dense``, and
``classifier_dropout_prob`` before the classifiers; ALBERT's defaults are 0 but for the
classifiers'), in transformers' order. transformers' AlbertLayer also builds a ``dropout`` that
its forward never calls; the twin leaves it out. ``labels=`` gives the loss as transformers
computes it.

Left out, because the encoder's math does not need them: feed-forward chunking (``chunk_size_feed_forward``, refused), transformers 4.x's relative
position scores (``position_embedding_type``, refused; transformers 5 ignores the field),
``inputs_embeds``, the heads without a checkpoint in the wild (token classification,
QA, multiple choice), and the attention backends (sdpa, flash, flex): this is
``eager_attention_forward``.

Shape legend: B batch, T tokens, E embedding size, C hidden size, nh heads, hs head size,
I intermediate size, V vocabulary, L labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .activations import get_activation
from .architecture import Architecture, ClassifierConfig, refuse_feed_forward_chunking
from .bert import BertEmbeddings, BertPreTrainedModel, BertSelfAttention
from .bert import checkpoint_key as bert_checkpoint_key
from .loading import Twin, twin_of
from .losses import cross_entropy, sequence_classification_loss
from .outputs import BaseModelOutput, MaskedLMOutput, ModelOutput, SequenceClassifierOutput
from .states import Dropout, applied_as, name_modules, record


@dataclasses.dataclass
class AlbertConfig(ClassifierConfig):
    """The AlbertConfig fields that change the math, with transformers' defaults (albert-xxlarge's sizes)."""

    model_type: ClassVar[str] = "albert"  # config.json's, as in transformers' AlbertConfig

    vocab_size: int = 30000  # V: a SentencePiece vocabulary
    embedding_size: int = 128  # E: tokens are embedded this wide, then mapped up to C
    hidden_size: int = 4096  # C
    num_hidden_layers: int = 12  # steps of the encoder's loop, each applying one (shared) group
    num_hidden_groups: int = 1  # groups of layers with their own weights; steps share them in order
    num_attention_heads: int = 64  # nh; hs = C // nh
    intermediate_size: int = 16384  # I, the feed-forward's inner width
    inner_group_num: int = 1  # layers inside a group, applied one after the other at each step
    hidden_act: str = "gelu_new"  # the tanh approximation of GELU (BERT's default is the exact erf form)
    max_position_embeddings: int = 512  # learned positions: the longest input
    type_vocab_size: int = 2  # segment A / segment B
    layer_norm_eps: float = 1e-12  # TensorFlow's epsilon, as BERT's
    pad_token_id: int | None = 0  # the word embedding's padding_idx: its row gets no gradient
    tie_word_embeddings: bool = True  # the MLM decoder is the word embedding matrix
    hidden_dropout_prob: float = 0.0  # training only: after the embeddings and the attention's dense (0: none)
    attention_probs_dropout_prob: float = 0.0  # training only: on the attention probabilities (0: none)
    classifier_dropout_prob: float = 0.1  # training only: before the sentence-order and sequence classifiers

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AlbertConfig":
        """From config.json (or a transformers AlbertConfig's to_dict()); refuses what the twin can't compute."""
        if d.get("position_embedding_type", "absolute") != "absolute":
            # transformers 4.x's ALBERT had relative position scores; transformers 5 ignores the field.
            raise ValueError(f"position_embedding_type {d['position_embedding_type']!r} is not supported (only 'absolute')")
        refuse_feed_forward_chunking(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        get_activation(config.hidden_act)  # fail now, with the supported list, not mid-forward
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}")
        if config.num_hidden_groups < 1 or config.inner_group_num < 1:
            raise ValueError(
                f"num_hidden_groups {config.num_hidden_groups} and inner_group_num {config.inner_group_num}: "
                "ALBERT needs at least one group of at least one layer"
            )
        return config


class AlbertEmbeddings(BertEmbeddings):
    """Twin of AlbertEmbeddings: BERT's embeddings (word + token type + position, then LayerNorm),
    E wide instead of C. Its recorded steps are (B, T, E) where BertEmbeddings says (B, T, C)."""

    def __init__(self, config: AlbertConfig):
        super().__init__(dataclasses.replace(config, hidden_size=config.embedding_size))


class AlbertAttention(BertSelfAttention):
    """Twin of AlbertAttention: BERT's self-attention (BertSelfAttention, same math and names:
    query, key, value, eager softmax), then what BERT keeps in BertSelfOutput, here in the same
    module: the output projection ``dense``, the residual and ``LayerNorm``.

    Returns what transformers' returns: the normalised output and the probabilities (after
    dropout, in training).
    """

    config_class = AlbertConfig

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        # transformers' ALBERT names the probabilities' dropout attention_dropout: BERT's self.dropout, renamed.
        self.attention_dropout = self._modules.pop("dropout")
        self.output_dropout = Dropout(config.hidden_dropout_prob)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        # "LayerNorm", not "layer_norm": the TensorFlow checkpoint's name, kept so old checkpoints load.
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @property
    def dropout(self) -> nn.Module:
        """What BERT's forward, inherited, calls ``self.dropout``: here ``attention_dropout``."""
        return self.attention_dropout

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``attention_mask``: the tokenizer's (B, T) mask, 1 = token, 0 = padding, or None."""
        context, probs = super().forward(hidden_states, attention_mask)  # (B, T, C), (B, nh, T, T)
        projected = self.dense(context)  # (B, T, C)
        record(self, "dense", projected)
        projected = self.output_dropout(projected)  # (B, T, C); training only
        residual = hidden_states + projected  # (B, T, C); transformers adds in this order
        record(self, "residual", residual)
        hidden_states = self.LayerNorm(residual)  # (B, T, C)
        record(self, "LayerNorm", hidden_states)
        return hidden_states, probs


class AlbertLayer(nn.Module):
    """Twin of AlbertLayer: attention, then the feed-forward, with residual and LayerNorm (post-LN),
    as BertLayer; the feed-forward's modules are flat here (``ffn``, ``ffn_output``,
    ``full_layer_layer_norm``), not under BertIntermediate and BertOutput."""

    attention_class = AlbertAttention

    def __init__(self, config: AlbertConfig):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size
        self.full_layer_layer_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.attention = self.attention_class(config)
        self.ffn = nn.Linear(C, I)
        self.ffn_output = nn.Linear(I, C)
        self.activation = get_activation(config.hidden_act)

    @classmethod
    def from_hf(cls, module: nn.Module) -> "AlbertLayer":
        """The twin of a live transformers AlbertLayer: its config and a copy of its weights."""
        return twin_of(cls, cls.attention_class.config_class, module)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attention_output, _ = self.attention(hidden_states, attention_mask)  # (B, T, C)
        up = self.ffn(attention_output)  # (B, T, I)
        record(self, "ffn", up)
        activated = self.activation(up)  # (B, T, I)
        record(self, "activation", activated)
        down = self.ffn_output(activated)  # (B, T, C)
        record(self, "ffn_output", down)
        residual = down + attention_output  # (B, T, C); transformers adds in this order
        record(self, "residual", residual)
        hidden_states = self.full_layer_layer_norm(residual)  # (B, T, C)
        record(self, "full_layer_layer_norm", hidden_states)
        return hidden_states


class AlbertLayerGroup(nn.Module):
    """Twin of AlbertLayerGroup: ``inner_group_num`` layers with their own weights, one after the other."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.albert_layers = nn.ModuleList(AlbertLayer(config) for _ in range(config.inner_group_num))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for albert_layer in self.albert_layers:
            hidden_states = albert_layer(hidden_states, attention_mask)  # (B, T, C)
        return hidden_states


class AlbertTransformer(nn.Module):
    """Twin of AlbertTransformer, the encoder: E -> C once, then ``num_hidden_layers`` steps, each
    applying one of the shared groups. Step i's steps are recorded under ``encoder.layer.{i}``
    (see the module docstring): not a module path, the step's index in this loop."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = config
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList(AlbertLayerGroup(config) for _ in range(config.num_hidden_groups))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.embedding_hidden_mapping_in(hidden_states)  # (B, T, E) -> (B, T, C)
        record(self, "embedding_hidden_mapping_in", hidden_states)
        layers, groups = self.config.num_hidden_layers, self.config.num_hidden_groups
        for i in range(layers):
            # transformers' formula, in floats: 4 layers in 2 groups run groups 0 0 1 1; in 3 groups, 0 0 1 2.
            group = self.albert_layer_groups[int(i / (layers / groups))]
            with applied_as(group, self, f"layer.{i}"):  # this application's steps: encoder.layer.i.albert_layers.j...
                hidden_states = group(hidden_states, attention_mask)  # (B, T, C)
            record(self, f"layer.{i}", hidden_states)  # "encoder.layer.i": step i's output
        return hidden_states


class AlbertModel(Twin):
    """Twin of AlbertModel: embeddings (E wide), the encoder, and the pooler if the checkpoint has one.

    Not a subclass of the twin's BertModel: its encoder (the mapping E -> C and the shared groups)
    and its pooler (``pooler`` + ``pooler_activation``, not ``pooler.dense``) are laid out otherwise.
    """

    config_class = AlbertConfig
    embeddings_class = AlbertEmbeddings
    base_model_prefix = "albert"  # the attribute a *For* class keeps this model under, and its keys' prefix

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = self.embeddings_class(config)
        self.encoder = AlbertTransformer(config)
        # The pooler: tanh(W h_[CLS] + b), the input of the sentence-order and classification heads.
        C = config.hidden_size
        self.pooler = nn.Linear(C, C) if add_pooling_layer else None
        self.pooler_activation = nn.Tanh() if add_pooling_layer else None
        name_modules(self)

    @classmethod
    def checkpoint_args(cls, state: dict[str, torch.Tensor]) -> tuple:
        """The constructor's extra arguments for a checkpoint: a pooler only if it has one."""
        return (any(key.endswith("pooler.weight") for key in state),)

    @classmethod
    def from_hf(cls, model: nn.Module) -> "AlbertModel":
        """The twin of a live transformers AlbertModel: its config and a copy of its weights.
        (``getattr``: a model of another class gets twin_of's TypeError, not an AttributeError.)"""
        return twin_of(cls, cls.config_class, model, getattr(model, "pooler", None) is not None)

    def hf_kwargs(self) -> dict[str, Any]:
        """What transformers' from_pretrained needs to build the same model (no invented pooler)."""
        return {"add_pooling_layer": self.pooler is not None}

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
        embeddings = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, E)
        hidden_states = self.encoder(embeddings, attention_mask)  # (B, T, C)
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler(hidden_states[:, 0])  # (B, C): the [CLS] token only
            record(self, "pooler", pooled)
            pooled = self.pooler_activation(pooled)  # (B, C): tanh
            record(self, "pooler_activation", pooled)
        return BaseModelOutput(hidden_states, pooled)


# ---------------------------------------------------------------------------------------------
# Heads: what the model predicts.


class AlbertForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None  # (): masked-LM loss + sentence-order loss, when both labels are given
    prediction_logits: torch.Tensor  # (B, T, V): the masked-LM head
    sop_logits: torch.Tensor  # (B, L): sentence order, 0 = A then B as written, 1 = swapped


class AlbertMLMHead(nn.Module):
    """Twin of AlbertMLMHead: BERT's transform (dense, activation, LayerNorm), but down from C to E,
    then the decoder E -> V: the word embedding matrix itself (tied) and a bias of its own."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        E = config.embedding_size
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, E)
        self.decoder = nn.Linear(E, config.vocab_size)  # (V, E): tied to the word embeddings
        self.bias = self.decoder.bias  # one (V,) tensor under two names, as transformers ties them
        self.activation = get_activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(hidden_states)  # (B, T, E)
        record(self, "dense", hidden_states)
        hidden_states = self.activation(hidden_states)  # (B, T, E)
        record(self, "activation", hidden_states)
        hidden_states = self.LayerNorm(hidden_states)  # (B, T, E)
        record(self, "LayerNorm", hidden_states)
        logits = self.decoder(hidden_states)  # (B, T, V): each position against every word's embedding
        record(self, "decoder", logits)
        return logits


class AlbertSOPHead(nn.Module):
    """Twin of AlbertSOPHead: sentence-order prediction, one linear layer on the pooled [CLS]."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.dropout = Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)  # (L, C); L is 2 in pre-training

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        pooled_output = self.dropout(pooled_output)  # (B, C); training only
        logits = self.classifier(pooled_output)  # (B, L)
        record(self, "classifier", logits)
        return logits


class AlbertPreTrainedModel(BertPreTrainedModel):
    """What every ALBERT head shares (BERT's: from_hf, base_model, checkpoint_args), under ``albert``."""

    base_class = AlbertModel
    base_model_prefix = "albert"

class AlbertForMaskedLM(AlbertPreTrainedModel):
    """Twin of AlbertForMaskedLM: AlbertModel without its pooler, then the masked-LM head (predictions)."""

    _tied_weights_keys = {
        "predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
        "predictions.decoder.bias": "predictions.bias",
    }

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = config
        self.albert = self.base_class(config, add_pooling_layer=False)  # transformers' masked LM has no pooler
        self.predictions = AlbertMLMHead(config)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> MaskedLMOutput:
        """``labels``: (B, T) the token to predict at each masked position, -100 elsewhere."""
        hidden_states = self.albert(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        logits = self.predictions(hidden_states)  # (B, T, V)
        loss = cross_entropy(logits, labels, self.config.vocab_size) if labels is not None else None
        return MaskedLMOutput(loss=loss, logits=logits)


class AlbertForPreTraining(AlbertPreTrainedModel):
    """Twin of AlbertForPreTraining: ALBERT's two pre-training heads, masked LM on every token and
    sentence-order prediction (are segments A and B in their original order?) on the pooled [CLS]."""

    _tied_weights_keys = AlbertForMaskedLM._tied_weights_keys

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = config
        self.albert = self.base_class(config)
        self.predictions = AlbertMLMHead(config)
        self.sop_classifier = AlbertSOPHead(config)
        name_modules(self)

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None, sentence_order_label=None
    ) -> AlbertForPreTrainingOutput:
        """``labels``: masked-LM labels; ``sentence_order_label``: (B,) 0 or 1. The loss is their sum,
        and only when both are given (as in transformers)."""
        out = self.albert(input_ids, attention_mask, token_type_ids, position_ids)
        prediction_logits = self.predictions(out.last_hidden_state)  # (B, T, V)
        sop_logits = self.sop_classifier(out.pooler_output)  # (B, L)
        loss = None
        if labels is not None and sentence_order_label is not None:
            masked_lm_loss = cross_entropy(prediction_logits, labels, self.config.vocab_size)
            loss = masked_lm_loss + cross_entropy(sop_logits, sentence_order_label, 2)
        return AlbertForPreTrainingOutput(loss=loss, prediction_logits=prediction_logits, sop_logits=sop_logits)


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    """Twin of AlbertForSequenceClassification: the pooled [CLS] vector through one linear layer, a score per label."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.albert = self.base_class(config)  # with its pooler
        self.dropout = Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)  # (L, C)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> SequenceClassifierOutput:
        """``labels``: as BertForSequenceClassification's."""
        pooled = self.albert(input_ids, attention_mask, token_type_ids, position_ids).pooler_output  # (B, C)
        pooled = self.dropout(pooled)  # (B, C); training only
        logits = self.classifier(pooled)  # (B, L)
        record(self, "classifier", logits)
        loss = sequence_classification_loss(logits, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# The record.


# BERT's: TensorFlow-era LayerNorm names gamma/beta, which transformers renames for every model
# (conversion_mapping.py's "legacy" renamings). Prefixes (``albert.``) are matched by the loader.
checkpoint_key = bert_checkpoint_key


ARCHITECTURE = Architecture(
    model_type="albert",
    config=AlbertConfig,
    base=AlbertModel,
    heads=(AlbertForMaskedLM, AlbertForPreTraining, AlbertForSequenceClassification),
    default=AlbertModel,
    hf_file="models/albert/modeling_albert.py",
    layers="encoder.layer",  # not a module path: the encoder loop's steps, as recorded (see the module docstring)
    attention="albert_layers.0.attention",  # the first layer of each step's group (the only one in real checkpoints)
    causal=False,
    token_types=True,
    checkpoint_key=checkpoint_key,
)
