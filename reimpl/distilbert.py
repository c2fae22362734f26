"""DistilBERT, written to be read beside transformers' models/distilbert/modeling_distilbert.py.

DistilBERT is BERT distilled to half the layers (Sanh et al., 2019): the same post-LayerNorm
encoder layer, but no token types, no pooler, and its own names, which the checkpoints keep
(``transformer.layer.3.attention.q_lin``, ``sa_layer_norm``, ``ffn.lin1``), so its twins are their
own classes rather than BERT's: Embeddings, DistilBertSelfAttention (with the output projection
``out_lin`` inside), FFN, TransformerBlock, DistilBertModel (HF's Transformer, the stack, is its
``transformer`` holding ``layer``; the loop is in DistilBertModel.forward), and the heads real
checkpoints carry: DistilBertForMaskedLM (vocab_transform, the activation, vocab_layer_norm, then
vocab_projector, tied to the word embeddings) and DistilBertForSequenceClassification
(pre_classifier, ReLU, classifier, on the first token's final hidden state). What is BERT's to
the last bit is taken
from reimpl/bert.py: the additive padding mask, the activations, the legacy key names, the
plumbing every head shares. With the same weights and input every step is bit-identical
(``torch.equal``) to transformers' eager attention path in fp32.

``sinusoidal_pos_embds``: in transformers 5.24 the flag only decides how ``_init_weights`` fills
``position_embeddings.weight`` in a new model (a fixed sin/cos table instead of N(0, 0.02)); it
is still a parameter, and a checkpoint that stores it is loaded as stored, flag or not (measured:
a stored random table survives ``from_pretrained`` with the flag True). Forward reads the table
the same way either way, so the twin loads what the checkpoint stores and the flag changes
nothing. A checkpoint without the table is refused by name (transformers would invent one).

Training: dropout where transformers has it (``dropout`` after the embeddings, on the attention
probabilities, after the feed-forward's lin2, and ``seq_classif_dropout`` before the classifier;
none after out_lin), in transformers' order; ``labels=`` gives the loss as transformers computes it.

Left out, because the encoder's math does not need them: gradient checkpointing, feed-forward
chunking (``chunk_size_feed_forward``, refused), ``inputs_embeds``, the heads without checkpoints
in the wild (token classification, QA, multiple choice), ``resize_position_embeddings``, and the
attention backends (sdpa, flash, flex): this is ``eager_attention_forward``.

Shape legend: B batch, T tokens, C hidden size (``dim``), nh heads, hs head size, I the
feed-forward's inner width (``hidden_dim``), V vocabulary, L labels.
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
from .bert import BertPreTrainedModel, Namespace, additive_mask, checkpoint_key
from .loading import Twin, twin_of
from .losses import cross_entropy, sequence_classification_loss
from .outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput
from .states import Dropout, name_modules, record

# transformers' DistilBertConfig.attribute_map: the names other configs use for the same fields.
ATTRIBUTE_MAP = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}
LAYER_NORM_EPS = 1e-12  # not a config field: every DistilBERT LayerNorm has BERT's epsilon, hard-coded


@dataclasses.dataclass
class DistilBertConfig(ClassifierConfig):
    """The DistilBertConfig fields that change the math, with transformers' names and defaults."""

    model_type: ClassVar[str] = "distilbert"  # config.json's, as in transformers' DistilBertConfig

    vocab_size: int = 30522  # V: BERT's WordPiece vocabulary
    max_position_embeddings: int = 512  # learned positions: the longest input
    sinusoidal_pos_embds: bool = False  # how transformers initialises a *new* position table; a stored one is used as is
    n_layers: int = 6  # half of bert-base's 12
    n_heads: int = 12  # nh; hs = C // nh
    dim: int = 768  # C
    hidden_dim: int = 4 * 768  # I, the feed-forward's inner width
    activation: str = "gelu"  # exact erf GELU, in the feed-forward and the masked-LM head
    pad_token_id: int | None = 0  # the word embedding's padding_idx: its row gets no gradient
    tie_word_embeddings: bool = True  # vocab_projector is the word embedding matrix
    dropout: float = 0.1  # training only: after the embeddings and after the feed-forward
    attention_dropout: float = 0.1  # training only: on the attention probabilities
    seq_classif_dropout: float = 0.2  # training only: before the sequence classifier

    @property
    def hidden_size(self) -> int:
        return self.dim

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DistilBertConfig":
        """From config.json (or a transformers DistilBertConfig's to_dict()); refuses what the twin can't compute."""
        # transformers' config takes BERT's names too (hidden_size=64 sets dim, and wins over dim): so does the twin's.
        d = {**d, **{field: d[name] for name, field in ATTRIBUTE_MAP.items() if name in d}}
        refuse_feed_forward_chunking(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        get_activation(config.activation)  # fail now, with the supported list, not mid-forward
        if config.dim % config.n_heads:
            raise ValueError(f"dim {config.dim} is not a multiple of n_heads {config.n_heads}")
        return config


class Embeddings(nn.Module):
    """Twin of DistilBERT's Embeddings: word + position embeddings, then LayerNorm. No token types."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        # Learned, or initialised as a sin/cos table when sinusoidal_pos_embds: either way the checkpoint's values.
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        # "LayerNorm", as BERT's: the one DistilBERT name kept from BERT.
        self.LayerNorm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        if position_ids is None:
            if T > self.position_embeddings.num_embeddings:
                raise ValueError(f"input has {T} tokens; the model has {self.position_embeddings.num_embeddings} positions")
            position_ids = torch.arange(T, device=input_ids.device)[None]  # (1, T): HF slices its position_ids buffer
        words = self.word_embeddings(input_ids)  # (B, T, C)
        record(self, "word_embeddings", words)
        positions = self.position_embeddings(position_ids)  # (1 or B, T, C), broadcast over the batch
        record(self, "position_embeddings", positions)
        embeddings = words + positions  # (B, T, C)
        record(self, "sum", embeddings)
        embeddings = self.LayerNorm(embeddings)  # (B, T, C)
        record(self, "LayerNorm", embeddings)
        embeddings = self.dropout(embeddings)  # (B, T, C); training only
        return embeddings


class DistilBertSelfAttention(nn.Module):
    """Twin of DistilBertSelfAttention with eager_attention_forward: softmax(Q K^T / sqrt(hs) + mask) V,
    then out_lin.

    BERT's arithmetic, but the output projection lives here (BERT keeps it in BertSelfOutput with
    the residual and LayerNorm). Returns what HF's returns: the output after out_lin, and the
    probabilities (after dropout, in training). Left out: the attention backends.
    """

    config_class = DistilBertConfig

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.n_heads = config.n_heads  # nh
        self.dim = config.dim  # C
        self.attention_head_size = self.dim // self.n_heads  # hs
        self.scaling = self.attention_head_size**-0.5  # a Python float, as in HF: 1 / sqrt(hs)
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.dropout = Dropout(config.attention_dropout)  # HF's p for eager_attention_forward's dropout

    @classmethod
    def from_hf(cls, module: nn.Module) -> "DistilBertSelfAttention":
        """The twin of a live transformers DistilBertSelfAttention: its config and a copy of its weights."""
        return twin_of(cls, cls.config_class, module)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``attention_mask``: the tokenizer's (B, T) mask, 1 = token, 0 = padding, or None."""
        B, T, C = hidden_states.shape
        nh, hs = self.n_heads, self.attention_head_size
        query = self.q_lin(hidden_states)  # (B, T, C)
        record(self, "q_lin", query)
        key = self.k_lin(hidden_states)  # (B, T, C)
        record(self, "k_lin", key)
        value = self.v_lin(hidden_states)  # (B, T, C)
        record(self, "v_lin", value)
        q = query.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = key.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = value.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if versions.V4:  # transformers 4.57 divides Q by sqrt(hs) first; 5.x multiplies Q K^T by hs**-0.5
            scores = torch.matmul(q / math.sqrt(hs), k.transpose(2, 3))  # (B, nh, T, T)
        else:
            scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling  # (B, nh, T, T)
        record(self, "scores", scores)
        if attention_mask is not None:
            scores = scores + additive_mask(attention_mask, scores.dtype)  # padding keys -> ~-inf
        probs = torch.softmax(scores, dim=-1)  # (B, nh, T, T), each row sums to 1
        record(self, "probs", probs)
        probs = self.dropout(probs)  # (B, nh, T, T); training only
        context = torch.matmul(probs, v)  # (B, nh, T, hs)
        context = context.transpose(1, 2).reshape(B, T, C).contiguous()  # (B, T, C): heads side by side again
        record(self, "context", context)
        output = self.out_lin(context)  # (B, T, C)
        record(self, "out_lin", output)
        return output, probs


class FFN(nn.Module):
    """Twin of FFN: up to I, the activation, back down to C (HF's ff_chunk, unchunked)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = get_activation(config.activation)
        self.dropout = Dropout(config.dropout)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        up = self.lin1(input)  # (B, T, I)
        record(self, "lin1", up)
        activated = self.activation(up)  # (B, T, I)
        record(self, "activation", activated)
        down = self.lin2(activated)  # (B, T, C)
        record(self, "lin2", down)
        down = self.dropout(down)  # (B, T, C); training only
        return down


class TransformerBlock(nn.Module):
    """Twin of TransformerBlock: BERT's post-LN layer under DistilBERT's names. Self-attention, add
    the residual, sa_layer_norm; then the feed-forward, add the residual, output_layer_norm."""

    attention_class = DistilBertSelfAttention

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = self.attention_class(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)

    @classmethod
    def from_hf(cls, module: nn.Module) -> "TransformerBlock":
        """The twin of a live transformers TransformerBlock: its config and a copy of its weights."""
        return twin_of(cls, cls.attention_class.config_class, module)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attention_output, _ = self.attention(hidden_states, attention_mask)  # (B, T, C), after out_lin
        residual = attention_output + hidden_states  # (B, T, C)
        record(self.attention, "residual", residual)
        attention_output = self.sa_layer_norm(residual)  # (B, T, C)
        record(self, "sa_layer_norm", attention_output)
        ffn_output = self.ffn(attention_output)  # (B, T, C)
        residual = ffn_output + attention_output  # (B, T, C)
        record(self.ffn, "residual", residual)
        hidden_states = self.output_layer_norm(residual)  # (B, T, C)
        record(self, "output_layer_norm", hidden_states)
        return hidden_states


class DistilBertModel(Twin):
    """Twin of DistilBertModel: embeddings and the stack of layers (HF's Transformer). No pooler."""

    config_class = DistilBertConfig
    embeddings_class = Embeddings
    layer_class = TransformerBlock
    base_model_prefix = "distilbert"  # the attribute a *For* class keeps this model under, and its keys' prefix

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = self.embeddings_class(config)
        self.transformer = Namespace(layer=nn.ModuleList(self.layer_class(config) for _ in range(config.n_layers)))
        name_modules(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        """``attention_mask``: the tokenizer's (B, T) 1/0 mask. ``position_ids``: (1 or B, T), by default 0..T-1."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be the tokenizer's (B, T) mask, not a {attention_mask.dim()}-D tensor")
        hidden_states = self.embeddings(input_ids, position_ids)  # (B, T, C)
        for i, layer in enumerate(self.transformer.layer):
            hidden_states = layer(hidden_states, attention_mask)  # (B, T, C)
            record(self.transformer, f"layer.{i}", hidden_states)  # "transformer.layer.i": the layer's output
        return BaseModelOutput(hidden_states)


# ---------------------------------------------------------------------------------------------
# Heads: what the model predicts.


class DistilBertPreTrainedModel(BertPreTrainedModel):
    """What every head shares (BERT's: see BertPreTrainedModel), with DistilBertModel under ``distilbert``."""

    base_class = DistilBertModel
    base_model_prefix = "distilbert"

class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    """Twin of DistilBertForMaskedLM: BERT's masked-LM head, flattened into the model under its own
    names: vocab_transform, the activation, vocab_layer_norm, then vocab_projector, whose weight
    is the word embedding matrix (tied) and whose bias is its own."""

    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.config = config
        C = config.dim
        self.activation = get_activation(config.activation)
        self.distilbert = self.base_class(config)
        self.vocab_transform = nn.Linear(C, C)
        self.vocab_layer_norm = nn.LayerNorm(C, eps=LAYER_NORM_EPS)
        self.vocab_projector = nn.Linear(C, config.vocab_size)  # (V, C): tied to the word embeddings
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None) -> MaskedLMOutput:
        """``labels``: (B, T) the token to predict at each masked position, -100 elsewhere."""
        hidden_states = self.distilbert(input_ids, attention_mask, position_ids).last_hidden_state  # (B, T, C)
        hidden_states = self.vocab_transform(hidden_states)  # (B, T, C)
        record(self, "vocab_transform", hidden_states)
        hidden_states = self.activation(hidden_states)  # (B, T, C)
        record(self, "activation", hidden_states)
        hidden_states = self.vocab_layer_norm(hidden_states)  # (B, T, C)
        record(self, "vocab_layer_norm", hidden_states)
        logits = self.vocab_projector(hidden_states)  # (B, T, V): each position against every word's embedding
        record(self, "vocab_projector", logits)
        loss = cross_entropy(logits, labels, logits.shape[-1]) if labels is not None else None  # HF's mlm_loss_fct
        return MaskedLMOutput(loss=loss, logits=logits)


class DistilBertForSequenceClassification(DistilBertPreTrainedModel):
    """Twin of DistilBertForSequenceClassification: the first token's ([CLS]) final hidden state
    through pre_classifier and a ReLU (where BERT has its pooler's dense and tanh), then classifier."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.distilbert = self.base_class(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)  # (L, C)
        self.dropout = Dropout(config.seq_classif_dropout)
        name_modules(self)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None) -> SequenceClassifierOutput:
        """``labels``: as BertForSequenceClassification's."""
        hidden_state = self.distilbert(input_ids, attention_mask, position_ids).last_hidden_state  # (B, T, C)
        pooled_output = hidden_state[:, 0]  # (B, C): the first token only
        pooled_output = self.pre_classifier(pooled_output)  # (B, C)
        record(self, "pre_classifier", pooled_output)
        pooled_output = torch.relu(pooled_output)  # (B, C); HF builds an nn.ReLU() on the spot
        record(self, "relu", pooled_output)
        pooled_output = self.dropout(pooled_output)  # (B, C); training only
        logits = self.classifier(pooled_output)  # (B, L)
        record(self, "classifier", logits)
        loss = sequence_classification_loss(logits, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# The record.


ARCHITECTURE = Architecture(
    model_type="distilbert",
    config=DistilBertConfig,
    base=DistilBertModel,
    heads=(DistilBertForMaskedLM, DistilBertForSequenceClassification),
    default=DistilBertModel,
    hf_file="models/distilbert/modeling_distilbert.py",
    layers="transformer.layer",
    attention="attention",
    causal=False,
    token_types=False,
    checkpoint_key=checkpoint_key,  # BERT's: TensorFlow-era LayerNorm gamma/beta, as transformers' "legacy" renaming
)
