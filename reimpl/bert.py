"""BERT, written to be read beside transformers' models/bert/modeling_bert.py.

Twins of BertEmbeddings, BertSelfAttention, BertLayer (which also carries the math of
BertAttention, BertSelfOutput, BertIntermediate and BertOutput), BertModel (embeddings,
encoder, pooler) and the heads real checkpoints carry: BertForMaskedLM (BertOnlyMLMHead: the
transform and the decoder tied to the word embeddings), BertForPreTraining (that head and the
next-sentence head on the pooler), BertForNextSentencePrediction and
BertForSequenceClassification (a linear layer on the pooler). Classes and attributes have HF's names, so HF's state-dict keys load as they
are, and with the same weights and input every step is bit-identical (``torch.equal``) to
transformers' eager attention path in fp32.

Training: dropout where transformers has it (after the embeddings, on the attention
probabilities, after each sublayer's dense, before the classifier), each a named line, drawing
from torch's random stream in transformers' order, so that after the same ``torch.manual_seed``
a ``.train()`` forward and its gradients are bit-identical too; ``labels=`` gives the head's loss
as transformers computes it (reimpl/losses.py), returned first, as ``loss``.

Left out, because the encoder's math does not need them: cross-attention and ``is_decoder``
(BertLMHeadModel), the key/value cache, gradient checkpointing, feed-forward chunking (refused),
``inputs_embeds``, the heads without a checkpoint in the wild (token classification, QA, multiple
choice), and the attention backends (sdpa, flash, flex): this is ``eager_attention_forward``.

Shape legend: B batch, T tokens, C hidden size, nh heads, hs head size, I intermediate size,
V vocabulary, L labels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from . import versions
from .activations import get_activation
from .architecture import Architecture, ClassifierConfig, refuse_feed_forward_chunking
from .loading import Twin, twin_of
from .losses import cross_entropy, sequence_classification_loss
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    NextSentencePredictorOutput,
    PreTrainingOutput,
    SequenceClassifierOutput,
)
from .states import Dropout, name_modules, record


@dataclasses.dataclass
class BertConfig(ClassifierConfig):
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
    pad_token_id: int | None = 0  # the word embedding's padding_idx: its row gets no gradient
    tie_word_embeddings: bool = True  # the MLM decoder is the word embedding matrix
    hidden_dropout_prob: float = 0.1  # training only: after the embeddings and after each sublayer
    attention_probs_dropout_prob: float = 0.1  # training only: on the attention probabilities
    classifier_dropout: float | None = None  # training only: before the classifier; None: hidden_dropout_prob

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
        """From config.json (or a transformers BertConfig's to_dict()); refuses what the twin can't compute."""
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {d['position_embedding_type']!r} is not supported (only 'absolute')")
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError("BERT as a decoder (is_decoder / add_cross_attention) is not supported")
        refuse_feed_forward_chunking(d)
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
    (Early 4.x releases used -10000.0; 4.57 already uses this minimum.)
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
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        # "LayerNorm", not "layer_norm": the TensorFlow checkpoint's name, kept so old checkpoints load.
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def create_position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(1, T): 0, 1, ..., T-1, the same for every row (HF slices its position_ids buffer)."""
        return torch.arange(input_ids.shape[1], device=input_ids.device)[None]

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # all segment A, as HF's zero buffer
        if position_ids is None:
            position_ids = self.create_position_ids(input_ids)  # (1, T) or (B, T)
        words = self.word_embeddings(input_ids)  # (B, T, C)
        record(self, "word_embeddings", words)
        types = self.token_type_embeddings(token_type_ids)  # (B, T, C)
        record(self, "token_type_embeddings", types)
        positions = self.position_embeddings(position_ids)  # (1 or B, T, C), broadcast over the batch
        record(self, "position_embeddings", positions)
        # HF adds in this order: (words + types) + positions. Float addition is not associative.
        embeddings = words + types + positions  # (B, T, C)
        record(self, "sum", embeddings)
        embeddings = self.LayerNorm(embeddings)  # (B, T, C)
        record(self, "LayerNorm", embeddings)
        embeddings = self.dropout(embeddings)  # (B, T, C); training only
        return embeddings


class BertSelfAttention(nn.Module):
    """Twin of BertSelfAttention with eager_attention_forward: softmax(Q K^T / sqrt(hs) + mask) V.

    Returns what HF's returns: the context before the output projection, and the probabilities
    (after dropout, in training). Left out: cross-attention, the key/value cache, the attention backends.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads  # nh
        self.attention_head_size = config.hidden_size // config.num_attention_heads  # hs
        self.all_head_size = self.num_attention_heads * self.attention_head_size  # C
        self.scaling = self.attention_head_size**-0.5  # a Python float, as in HF: 1 / sqrt(hs)
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        # transformers 5 keeps this module for its p and calls nn.functional.dropout inside
        # eager_attention_forward (4.x calls the module): the same call either way.
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    @classmethod
    def from_hf(cls, module: nn.Module) -> "BertSelfAttention":
        """The twin of a live transformers BertSelfAttention: its config and a copy of its weights."""
        return twin_of(cls, cls.config_class, module)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``attention_mask``: the tokenizer's (B, T) mask, 1 = token, 0 = padding, or None."""
        B, T, C = hidden_states.shape
        nh, hs = self.num_attention_heads, self.attention_head_size
        q = self.query(hidden_states).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        record(self, "query", q)
        k = self.key(hidden_states).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        record(self, "key", k)
        v = self.value(hidden_states).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        record(self, "value", v)
        scores = torch.matmul(q, k.transpose(2, 3))  # (B, nh, T, T)
        if versions.V4:  # transformers 4.57 divides by sqrt(hs); 5.x multiplies by hs**-0.5 (last bit, unless hs is 4^n)
            scores = scores / math.sqrt(self.attention_head_size)  # (B, nh, T, T)
        else:
            scores = scores * self.scaling  # (B, nh, T, T)
        record(self, "scores", scores)
        if attention_mask is not None:
            scores = scores + additive_mask(attention_mask, scores.dtype)  # padding keys -> ~-inf
        probs = torch.softmax(scores, dim=-1)  # (B, nh, T, T), each row sums to 1
        record(self, "probs", probs)
        probs = self.dropout(probs)  # (B, nh, T, T); training only: whole links between tokens dropped
        context = torch.matmul(probs, v)  # (B, nh, T, hs)
        context = context.transpose(1, 2).reshape(B, T, C).contiguous()  # (B, T, C): heads side by side again
        record(self, "context", context)
        return context, probs


class BertLayer(nn.Module):
    """Twin of BertLayer: self-attention, then the feed-forward, each with residual + LayerNorm (post-LN).

    HF spreads this over five classes (BertAttention, BertSelfAttention, BertSelfOutput,
    BertIntermediate, BertOutput); here the math is one forward and the submodules keep HF's
    paths so the weights load as they are.
    """

    attention_class = BertSelfAttention  # a family member names its own (RobertaSelfAttention)

    def __init__(self, config: BertConfig):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size
        eps, p = config.layer_norm_eps, config.hidden_dropout_prob
        self.attention = Namespace(
            self=self.attention_class(config),
            output=Namespace(dense=nn.Linear(C, C), LayerNorm=nn.LayerNorm(C, eps=eps), dropout=Dropout(p)),
        )
        self.intermediate = Namespace(dense=nn.Linear(C, I))
        self.intermediate_act_fn = get_activation(config.hidden_act)
        self.output = Namespace(dense=nn.Linear(I, C), LayerNorm=nn.LayerNorm(C, eps=eps), dropout=Dropout(p))

    @classmethod
    def from_hf(cls, module: nn.Module) -> "BertLayer":
        """The twin of a live transformers BertLayer: its config and a copy of its weights."""
        return twin_of(cls, cls.attention_class.config_class, module)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attention, ffn_in, ffn_out = self.attention.output, self.intermediate, self.output
        context, _ = self.attention.self(hidden_states, attention_mask)  # (B, T, C)
        # BertSelfOutput: project, add the residual, normalise.
        projected = attention.dense(context)  # (B, T, C)
        record(attention, "dense", projected)
        projected = attention.dropout(projected)  # (B, T, C); training only
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
        down = ffn_out.dropout(down)  # (B, T, C); training only
        residual = down + hidden_states  # (B, T, C)
        record(ffn_out, "residual", residual)
        hidden_states = ffn_out.LayerNorm(residual)  # (B, T, C)
        record(ffn_out, "LayerNorm", hidden_states)
        return hidden_states


class BertModel(Twin):
    """Twin of BertModel: embeddings, the encoder's stack of layers, and the pooler if the checkpoint has one."""

    config_class = BertConfig
    embeddings_class = BertEmbeddings  # a family member names its own (RobertaEmbeddings)
    layer_class = BertLayer
    base_model_prefix = "bert"  # the attribute a *For* class keeps this model under, and its keys' prefix

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = self.embeddings_class(config)
        self.encoder = Namespace(layer=nn.ModuleList(self.layer_class(config) for _ in range(config.num_hidden_layers)))
        C = config.hidden_size
        # The pooler: tanh(W h_[CLS] + b), the input of the NSP and classification heads.
        # Sentence-embedding checkpoints may drop it.
        self.pooler = Namespace(dense=nn.Linear(C, C)) if add_pooling_layer else None
        name_modules(self)

    @classmethod
    def checkpoint_args(cls, state: dict[str, torch.Tensor]) -> tuple:
        """The constructor's extra arguments for a checkpoint: a pooler only if it has one."""
        return (any(key.endswith("pooler.dense.weight") for key in state),)

    @classmethod
    def from_hf(cls, model: nn.Module) -> "BertModel":
        """The twin of a live transformers BertModel: its config and a copy of its weights."""
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
        """``attention_mask``: the tokenizer's (B, T) 1/0 mask. ``position_ids``: (1 or B, T), by
        default 0..T-1. BERT's mask never depends on positions (unlike GPT-2's packed sequences)."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be the tokenizer's (B, T) mask, not a {attention_mask.dim()}-D tensor")
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, C)
        for i, layer in enumerate(self.encoder.layer):
            hidden_states = layer(hidden_states, attention_mask)  # (B, T, C)
            record(self.encoder, f"layer.{i}", hidden_states)  # "encoder.layer.i": the layer's output
        pooled = None
        if self.pooler is not None:
            pooled = self.pooler.dense(hidden_states[:, 0])  # (B, C): the [CLS] token only
            record(self.pooler, "dense", pooled)
            pooled = torch.tanh(pooled)  # (B, C)
            record(self.pooler, "activation", pooled)
        return BaseModelOutput(hidden_states, pooled)


# ---------------------------------------------------------------------------------------------
# Heads: what the model predicts.


class BertLMPredictionHead(nn.Module):
    """Twin of BertLMPredictionHead (inside BertOnlyMLMHead): transform, then scores over the vocabulary.

    The transform is its own dense + activation + LayerNorm (BertPredictionHeadTransform), then the
    decoder: the word embedding matrix itself (tied) and a bias of its own, one per vocabulary entry.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.hidden_size
        self.transform = Namespace(dense=nn.Linear(C, C), LayerNorm=nn.LayerNorm(C, eps=config.layer_norm_eps))
        self.transform.transform_act_fn = get_activation(config.hidden_act)
        self.decoder = nn.Linear(C, config.vocab_size)  # (V, C): tied to the word embeddings
        self.bias = self.decoder.bias  # one (V,) tensor under two names, as in HF

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        t = self.transform
        hidden_states = t.dense(hidden_states)  # (B, T, C)
        record(t, "dense", hidden_states)
        hidden_states = t.transform_act_fn(hidden_states)  # (B, T, C)
        record(t, "transform_act_fn", hidden_states)
        hidden_states = t.LayerNorm(hidden_states)  # (B, T, C)
        record(t, "LayerNorm", hidden_states)
        logits = self.decoder(hidden_states)  # (B, T, V): each position against every word's embedding
        record(self, "decoder", logits)
        return logits


class BertPreTrainedModel(Twin):
    """What every head shares: its base model under ``base_model_prefix``, built without the weights'
    random init (reimpl.loading.build). What a head predicts, for the tracer, is annotate/models' business."""

    base_class = BertModel
    base_model_prefix = "bert"

    @classmethod
    def from_hf(cls, model: nn.Module):
        """The twin of a live transformers model of the same class: its config and a copy of its weights."""
        return twin_of(cls, cls.base_class.config_class, model)


class BertForMaskedLM(BertPreTrainedModel):
    """Twin of BertForMaskedLM: BertModel without its pooler, then the masked-LM head (cls.predictions)."""

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = self.base_class(config, add_pooling_layer=False)  # HF's masked LM has no pooler
        self.cls = Namespace(predictions=BertLMPredictionHead(config))
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> MaskedLMOutput:
        """``labels``: (B, T) the token to predict at each masked position, -100 elsewhere."""
        hidden_states = self.bert(input_ids, attention_mask, token_type_ids, position_ids).last_hidden_state  # (B, T, C)
        logits = self.cls.predictions(hidden_states)  # (B, T, V)
        loss = cross_entropy(logits, labels, self.config.vocab_size) if labels is not None else None
        return MaskedLMOutput(loss=loss, logits=logits)


class BertForSequenceClassification(BertPreTrainedModel):
    """Twin of BertForSequenceClassification: the pooled [CLS] vector through one linear layer, a score per label."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.bert = self.base_class(config)  # with its pooler
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)  # (L, C)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> SequenceClassifierOutput:
        """``labels``: (B,) label ids; (B,) values for regression (one label); (B, L) 0/1 floats for multi-label."""
        pooled = self.bert(input_ids, attention_mask, token_type_ids, position_ids).pooler_output  # (B, C)
        pooled = self.dropout(pooled)  # (B, C); training only
        logits = self.classifier(pooled)  # (B, L)
        record(self, "classifier", logits)
        loss = sequence_classification_loss(logits, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class BertForPreTraining(BertPreTrainedModel):
    """Twin of BertForPreTraining: BERT's two pre-training heads, masked LM on every token and
    next-sentence prediction on the pooled [CLS] (cls.predictions and cls.seq_relationship)."""

    _tied_weights_keys = BertForMaskedLM._tied_weights_keys

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = self.base_class(config)
        self.cls = Namespace(predictions=BertLMPredictionHead(config), seq_relationship=nn.Linear(config.hidden_size, 2))
        name_modules(self)

    def forward(
        self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None, next_sentence_label=None
    ) -> PreTrainingOutput:
        """``labels``: masked-LM labels as BertForMaskedLM's; ``next_sentence_label``: (B,) 0 or 1. The loss
        is their sum, and only when both are given (as in transformers)."""
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids)
        prediction_logits = self.cls.predictions(out.last_hidden_state)  # (B, T, V)
        seq_relationship_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        record(self.cls, "seq_relationship", seq_relationship_logits)
        loss = None
        if labels is not None and next_sentence_label is not None:
            masked_lm_loss = cross_entropy(prediction_logits, labels, self.config.vocab_size)
            loss = masked_lm_loss + cross_entropy(seq_relationship_logits, next_sentence_label, 2)
        return PreTrainingOutput(loss=loss, prediction_logits=prediction_logits, seq_relationship_logits=seq_relationship_logits)


class BertForNextSentencePrediction(BertPreTrainedModel):
    """Twin of BertForNextSentencePrediction: does segment B follow segment A? (cls.seq_relationship on the pooler)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = self.base_class(config)
        self.cls = Namespace(seq_relationship=nn.Linear(config.hidden_size, 2))
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None) -> NextSentencePredictorOutput:
        """``labels``: (B,) 0 if segment B follows A, 1 if it is random."""
        pooled = self.bert(input_ids, attention_mask, token_type_ids, position_ids).pooler_output  # (B, C)
        logits = self.cls.seq_relationship(pooled)  # (B, 2)
        record(self.cls, "seq_relationship", logits)
        loss = cross_entropy(logits, labels, 2) if labels is not None else None
        return NextSentencePredictorOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# The record.


def checkpoint_key(key: str) -> str | None:
    """BERT checkpoints as found: TensorFlow-era LayerNorm names ``gamma``/``beta`` (bert-base-uncased's
    own file). Prefixes (``bert.``) are matched by the loader, as transformers does."""
    if ".LayerNorm." in key:
        key = key.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
    return key


ARCHITECTURE = Architecture(
    model_type="bert",
    config=BertConfig,
    base=BertModel,
    heads=(BertForMaskedLM, BertForPreTraining, BertForNextSentencePrediction, BertForSequenceClassification),
    default=BertModel,
    hf_file="models/bert/modeling_bert.py",
    layers="encoder.layer",
    attention="attention.self",
    causal=False,
    token_types=True,
    checkpoint_key=checkpoint_key,
)
