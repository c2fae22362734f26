"""One conformance suite for every architecture the twins cover, as transformers' ModelTesterMixin
is for its models: the checks every twin must pass, written once, run for every architecture in
``reimpl.ARCHITECTURES`` and every class of it (the base model and every head).

To add an architecture: add a Fixture here (to FIXTURES, below), and the suite checks it all:

- parity: every recorded stage and every output field ``torch.equal`` to transformers', eager,
  fp32, on a batch with right and left padding, one unpadded sentence with and without the mask,
  for every config variant, with the number of compared stages asserted (a silently skipped stage
  fails); position ids and missing token types; a released model's size (``full_size``);
- refusals: each unsupported config value refused with one clear message, by the config and by
  ``reimpl.from_pretrained``; a 4-D mask and ``inputs_embeds`` refused;
- ``from_hf``: on every class and on the components (attention, layer), weights copied, tied and
  shared as transformers ties them; every other class (its architecture's, and other
  architectures') refused by name;
- checkpoints: transformers' ``save_pretrained`` (safetensors, .bin, untied) loads as its class;
  a head's file into the base model; a base's file named as a head; an unknown or missing
  ``architectures`` entry gives the default class; TensorFlow-era names, old buffers and shards;
  a missing or mis-shaped tensor named;
- training: train mode (dropout) and the gradient at every stage and of every parameter, for
  every head (tests/test_training.py's ``assert_training_equal``; labels from the head's
  interface in annotate/models/<model_type>.py);
- ``annotate trace --diff``: every stage exactly 0 on a saved checkpoint of every class;
- real checkpoints from the local Hugging Face cache (``hub``: skipped when not cached).

What one architecture does that the others don't stays in its own file (RoBERTa's positions from
the padding index, ALBERT's shared layers, GPT-2's cache, packed sequences and generation,
DistilBERT's sinusoidal positions, ...), built from the Fixture's small config.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

import reimpl
from annotate import models
from reimpl import CheckpointError, recording, versions
from reimpl.albert import AlbertAttention, AlbertLayer
from reimpl.bert import BertLayer, BertSelfAttention
from reimpl.distilbert import DistilBertSelfAttention, TransformerBlock
from reimpl.electra import ElectraLayer, ElectraSelfAttention
from reimpl.loading import read_state_dict
from reimpl.roberta import RobertaLayer, RobertaSelfAttention
from reimpl.xlm_roberta import XLMRobertaLayer, XLMRobertaSelfAttention
from tests.conftest import hub_cached, run_json
from tests.parity import (
    RETURN_PROBS,
    assert_states_equal,
    config_on_every_module,
    copy_minilm_tokenizer,
    hf_encoder_mask,
    hf_from_pretrained,
    layer_output,
    legacy_names,
    random_inputs,
    random_model,
    save,
    write_config,
    write_sharded,
)
from tests.test_training import assert_training_equal

# --- the record each architecture supplies -------------------------------------------------------


def encoder_calls(hf: nn.Module, layer: nn.Module, attention: nn.Module, hidden: torch.Tensor, mask: torch.Tensor):
    """transformers' attention (its output and probabilities) and layer, called on their own with
    the additive mask the encoder hands them: the BERT family's and ALBERT's calls."""
    mask4d = hf_encoder_mask(hf, mask)
    return attention(hidden, mask4d, **RETURN_PROBS), layer_output(layer(hidden, mask4d))


@dataclasses.dataclass(frozen=True)
class Components:
    """The twins of one attention module and one layer, compared with transformers' fed the same input."""

    attention: type
    layer: type
    enter: Callable  # (transformers' base model, inputs) -> (the first layer's input, the layers)
    attention_path: str = "attention.self"  # inside a transformers layer
    config: dict = dataclasses.field(default_factory=dict)  # config overrides for this check
    calls: Callable = encoder_calls  # (hf, layer, attention, hidden, mask) -> ((output, probs), layer output)


@dataclasses.dataclass(frozen=True, eq=False)
class Fixture:
    """One architecture: a small model of it, and what the suite expects of it.

    Every architecture gives the fields up to ``train``; the rest have defaults that fit an
    architecture without the part (no pooler, no components twinned, no released size checked,
    MiniLM's WordPiece tokenizer for the trace, recorded names that are transformers' module paths).
    """

    model_type: str  # its key in reimpl.ARCHITECTURES
    hf_config: type  # transformers' config class
    small: dict  # the config's keyword arguments for a small model: fast, with every part exercised
    stages: Callable[[object, str], int]  # (config, class name) -> how many states the twin records
    variants: dict[str, dict]  # name -> config overrides: every setting that changes the math
    refusals: list[tuple[dict, str]]  # config overrides -> a fragment of the message that refuses them
    unknown_head: str  # a transformers class of the architecture that the twins lack
    train: dict  # config overrides for training: every dropout probability set, all different, far from 0
    # The base model built otherwise: name -> (transformers' constructor keywords, stages added).
    base_options: dict[str, tuple[dict, int]] = dataclasses.field(default_factory=dict)
    class_config: dict[str, dict] = dataclasses.field(default_factory=dict)  # class name -> config overrides it needs
    components: Components | None = None
    checkpoint: dict = dataclasses.field(default_factory=dict)  # config overrides for the checkpoint checks
    legacy: Callable[[object], dict] = lambda config: {}  # bare-key buffers old checkpoints carry (the loader ignores them)
    full_size: tuple[str, dict, float, int, int] | None = None  # (class, overrides of transformers' defaults, std, B, T)
    tokenizer: Callable[[Path], int] = copy_minilm_tokenizer  # writes tokenizer files into a folder, returns the vocabulary size
    module_path: Callable[[str, object], str] = lambda name, config: name  # a recorded name's transformers module path
    transformers_fails: Callable[[str], type | None] = lambda variant: None  # what the installed transformers raises, if it can't run a variant
    hf_position_ids: bool = True  # transformers' forward takes position_ids
    hub: tuple[tuple[str, str], ...] = ()  # (repo id, class) of real checkpoints, checked when in the local HF cache
    dropouts_per_layer: int = 2  # the dropout stages a layer records in training (the Llama family: the attention's only)

    @property
    def arch(self):
        return reimpl.ARCHITECTURES[self.model_type]

    @property
    def classes(self) -> list[str]:
        return [cls.__name__ for cls in self.arch.classes]

    def twin_class(self, cls: str) -> type:
        return next(c for c in self.arch.classes if c.__name__ == cls)

    def config(self, cls: str | None = None, **overrides):
        """transformers' config of the small model (eager), for class ``cls``."""
        settings = {**self.small, **self.class_config.get(cls, {}), **overrides}
        return self.hf_config(**settings, attn_implementation="eager")

    def model(self, cls: str, option: str | None = None, seed: int = 0, **overrides) -> nn.Module:
        """transformers' small model of class ``cls`` (base ``option``: "no-pooler"), random weights, eval mode."""
        kwargs = self.base_options[option][0] if option else {}
        return random_model(getattr(transformers, cls), self.config(cls, **overrides), seed=seed, **kwargs)

    def inputs(self, config, **kwargs) -> dict[str, torch.Tensor]:
        return random_inputs(config, self.arch.token_types, **kwargs)

    def expected(self, config, cls: str, option: str | None = None) -> int:
        return self.stages(config, cls) + (self.base_options[option][1] if option else 0)

    def expected_of(self, twin: nn.Module) -> int:
        """The states a loaded twin records: its class's, less a part its checkpoint lacked (hf_kwargs says which)."""
        option = next((name for name, (kwargs, _) in self.base_options.items() if twin.hf_kwargs() == kwargs), None)
        return self.expected(twin.config, type(twin).__name__, option)


def gpt2_tokenizer(folder: Path) -> int:
    """annotate.examples' byte-level BPE tokenizer, as GPT-2's (the model it writes is replaced)."""
    from annotate.examples import write_gpt2

    return json.loads((write_gpt2(folder) / "config.json").read_text())["vocab_size"]


def position_ids_buffer(config) -> dict[str, torch.Tensor]:
    """The position_ids buffer older BERT-family files store."""
    return {"embeddings.position_ids": torch.arange(config.max_position_embeddings)[None]}


def gpt2_causal_buffers(config) -> dict[str, torch.Tensor]:
    """As the hub's gpt2 files: each layer's causal-mask buffer attn.bias (1, 1, n_positions, n_positions) and attn.masked_bias (-1e4)."""
    n = config.n_positions
    state = {}
    for i in range(config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return state


def activations(*names: str) -> dict[str, dict]:
    return {f"act-{a}": dict(hidden_act=a) for a in names}


BERT_REFUSALS = [
    (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
    (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key' is not supported"),
    (dict(is_decoder=True), "decoder"),
    (dict(hidden_size=30, num_attention_heads=4), "hidden_size 30 is not a multiple of num_attention_heads 4"),
    (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
]
NO_POOLER = {"no-pooler": ({"add_pooling_layer": False}, -2)}  # the pooler's dense and tanh not recorded
ENCODER_DROPOUT = dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)


def bert_stages(config, cls: str) -> int:
    """Embeddings (5), 15 per layer, the pooler (2: dense, tanh) where the class has one, the head's."""
    head = {"Model": 2, "ForMaskedLM": 4, "ForPreTraining": 2 + 4 + 1, "ForNextSentencePrediction": 2 + 1, "ForSequenceClassification": 2 + 1}
    return 5 + 15 * config.num_hidden_layers + head[cls.removeprefix("Bert")]


def bert_enter(hf, inputs):
    return hf.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids")), hf.encoder.layer


BERT = Fixture(
    model_type="bert",
    hf_config=transformers.BertConfig,
    small=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=64, type_vocab_size=2),
    stages=bert_stages,
    variants={
        **activations("gelu", "relu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "gelu_python_tanh",
                      "quick_gelu", "silu", "swish", "tanh", "sigmoid", "linear"),
        "eps-1e-5": dict(layer_norm_eps=1e-5),
        "eps-1e-3": dict(layer_norm_eps=1e-3),
        "head-size-24": dict(hidden_size=48, num_attention_heads=2),
        "head-size-80": dict(hidden_size=80, num_attention_heads=1),
        "head-size-20": dict(hidden_size=60, num_attention_heads=3),
        "type-vocab-1": dict(type_vocab_size=1),
        "type-vocab-3": dict(type_vocab_size=3),
        "vocab-1000-positions-300": dict(vocab_size=1000, max_position_embeddings=300),
        "deeper-4": dict(num_hidden_layers=4),
        "untied": dict(tie_word_embeddings=False),
        "labels-3": dict(num_labels=3),
    },
    refusals=BERT_REFUSALS,
    unknown_head="BertForQuestionAnswering",
    train={**ENCODER_DROPOUT, "classifier_dropout": 0.25},
    base_options=NO_POOLER,
    components=Components(BertSelfAttention, BertLayer, bert_enter),
    legacy=position_ids_buffer,
    full_size=("BertModel", {}, 0.3, 2, 64),  # bert-base: transformers' defaults
    hub=(("bert-base-uncased", "BertForMaskedLM"),),
)


def roberta_stages(config, cls: str) -> int:
    """Embeddings (5), 15 per layer, the pooler's (2) or the head's: masked LM dense, gelu, layer_norm, decoder; classifier dense, tanh, out_proj."""
    head = {"Model": 2, "ForMaskedLM": 4, "ForSequenceClassification": 3}
    return 5 + 15 * config.num_hidden_layers + head[cls.split("Roberta")[1]]


ROBERTA = Fixture(
    model_type="roberta",
    hf_config=transformers.RobertaConfig,
    small=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=64,
               type_vocab_size=1,  # as in roberta-base and xlm-roberta-base
               layer_norm_eps=1e-5),  # as in roberta-base
    stages=roberta_stages,
    variants={
        "default": {},
        **activations("relu", "gelu_new", "silu"),  # the layers' act; lm_head's GELU stays erf
        "eps-1e-12": dict(layer_norm_eps=1e-12),
        "head-size-20": dict(hidden_size=60, num_attention_heads=3),
        "type-vocab-2": dict(type_vocab_size=2),
        "pad-0": dict(pad_token_id=0),  # positions from 1
        "pad-7": dict(pad_token_id=7),  # positions from 8
        "positions-tight": dict(max_position_embeddings=13),  # T 11 + pad 1 + 1: the last row is used
        "deeper-3": dict(num_hidden_layers=3),
        "untied": dict(tie_word_embeddings=False),  # the masked LM's decoder (and bias) of its own
        "labels-1": dict(num_labels=1),
        "labels-3": dict(id2label={0: "neg", 1: "neutral", 2: "pos"}),
    },
    refusals=[
        (dict(pad_token_id=None), "needs a pad_token_id: its positions are counted from pad_token_id \\+ 1"),
        (dict(pad_token_id=64), "pad_token_id 64 is not a row of the position table"),
        (dict(is_decoder=True), "decoder"),
        (dict(add_cross_attention=True), "decoder"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type"),
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(hidden_size=30, num_attention_heads=4), "not a multiple"),
    ],
    unknown_head="RobertaForQuestionAnswering",
    train={**ENCODER_DROPOUT, "classifier_dropout": 0.25},
    base_options=NO_POOLER,
    components=Components(RobertaSelfAttention, RobertaLayer, bert_enter),
    legacy=position_ids_buffer,
    full_size=("RobertaForMaskedLM", dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5), 0.3, 3, 40),
    # The trace's tokenizer: MiniLM's WordPiece (the default); the pad id 1 is [unused0], which text never gives.
    hub=(("FacebookAI/roberta-base", "RobertaForMaskedLM"),),
)

XLM_ROBERTA = dataclasses.replace(
    ROBERTA,
    model_type="xlm-roberta",
    hf_config=transformers.XLMRobertaConfig,
    unknown_head="XLMRobertaForQuestionAnswering",
    components=Components(XLMRobertaSelfAttention, XLMRobertaLayer, bert_enter),
    full_size=None,  # RoBERTa's, under another name
    hub=(("FacebookAI/xlm-roberta-base", "XLMRobertaForMaskedLM"),),
)


def distilbert_stages(config, cls: str) -> int:
    """Embeddings (4), 15 steps in each layer, the head's."""
    head = {"DistilBertModel": 0, "DistilBertForMaskedLM": 4, "DistilBertForSequenceClassification": 3}
    return 4 + 15 * config.n_layers + head[cls]


def distilbert_calls(hf, layer, attention, hidden, mask):
    if versions.V4:  # 4.57: MultiHeadSelfAttention(query, key, value, mask) takes the (B, T) mask itself
        return attention(hidden, hidden, hidden, mask, output_attentions=True), layer(hidden, attn_mask=mask)[0]
    mask4d = hf_encoder_mask(hf, mask)
    return attention(hidden, attention_mask=mask4d), layer(hidden, attention_mask=mask4d)


DISTILBERT = Fixture(
    model_type="distilbert",
    hf_config=transformers.DistilBertConfig,
    small=dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64),
    stages=distilbert_stages,
    variants={
        "default": {},
        **{f"act-{a}": dict(activation=a) for a in ("relu", "gelu_new", "gelu_pytorch_tanh", "silu", "quick_gelu", "tanh")},
        "head-size-24": dict(dim=48, n_heads=2),
        "head-size-20": dict(dim=60, n_heads=3),
        "head-size-1": dict(dim=8, n_heads=8),
        "one-head": dict(dim=40, n_heads=1),
        "deeper-3": dict(n_layers=3),
        "hidden-dim-128": dict(hidden_dim=128),
        "sinusoidal": dict(sinusoidal_pos_embds=True),
        "pad-token-5": dict(pad_token_id=5),
        "vocab-1000-positions-300": dict(vocab_size=1000, max_position_embeddings=300),
        "untied": dict(tie_word_embeddings=False),
        "labels-3": dict(num_labels=3),
    },
    refusals=[
        (dict(activation="xielu"), "activation 'xielu' is not supported"),
        (dict(dim=30, n_heads=4), "dim 30 is not a multiple of n_heads 4"),
        (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
        (dict(chunk_size_feed_forward=2), "chunk_size_feed_forward=2"),
    ],
    unknown_head="DistilBertForQuestionAnswering",
    train=dict(dropout=0.2, attention_dropout=0.3, seq_classif_dropout=0.25),
    components=Components(
        DistilBertSelfAttention, TransformerBlock, lambda hf, inputs: (hf.embeddings(inputs["input_ids"]), hf.transformer.layer),
        attention_path="attention", calls=distilbert_calls,
    ),
    legacy=position_ids_buffer,
    full_size=("DistilBertModel", {}, 0.05, 2, 48),  # distilbert-base-uncased: transformers' defaults
    hf_position_ids=not versions.V4,  # 4.57's DistilBERT takes none (5.x added them): tests/test_distilbert.py
    hub=(("distilbert-base-uncased", "DistilBertForMaskedLM"),
         ("distilbert-base-uncased-finetuned-sst-2-english", "DistilBertForSequenceClassification")),
)


def albert_stages(config, cls: str) -> int:
    """Embeddings (5), the mapping E -> C, per step of the encoder's loop 14 per layer of its group
    (9 in the attention, 5 in the feed-forward) and the step's output, the pooler (2) unless masked
    LM, and the head's."""
    per_step = 14 * config.inner_group_num + 1
    pooler = 0 if cls == "AlbertForMaskedLM" else 2
    head = {"AlbertModel": 0, "AlbertForMaskedLM": 4, "AlbertForPreTraining": 5, "AlbertForSequenceClassification": 1}[cls]
    return 5 + 1 + config.num_hidden_layers * per_step + pooler + head


def albert_enter(hf, inputs):
    hidden = hf.encoder.embedding_hidden_mapping_in(hf.embeddings(inputs["input_ids"], inputs["token_type_ids"]))
    return hidden, hf.encoder.albert_layer_groups[0].albert_layers


def albert_module_path(name: str, config) -> str:
    """The twin records each step of the encoder's loop (encoder.layer.i); transformers' module is
    the group that step runs: int(i / (layers / groups)), transformers' float formula."""
    def group(m: re.Match) -> str:
        return f"encoder.albert_layer_groups.{int(int(m[1]) / (config.num_hidden_layers / config.num_hidden_groups))}"

    return re.sub(r"encoder\.layer\.(\d+)", group, name)


ALBERT = Fixture(
    model_type="albert",
    hf_config=transformers.AlbertConfig,
    small=dict(vocab_size=99,
               embedding_size=16,  # E != C: the factorized embedding and embedding_hidden_mapping_in matter
               hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
               type_vocab_size=2),
    stages=albert_stages,
    variants={
        "default": {},  # one group of one layer, applied twice (as every released checkpoint), gelu_new
        "groups-2-of-4": dict(num_hidden_layers=4, num_hidden_groups=2),  # steps run groups 0 0 1 1
        "groups-3-of-4": dict(num_hidden_layers=4, num_hidden_groups=3),  # 0 0 1 2: transformers' float formula
        "groups-4-of-2": dict(num_hidden_layers=2, num_hidden_groups=4),  # 0 2: groups 1 and 3 never run
        "inner-2": dict(inner_group_num=2),
        "groups-2-inner-2": dict(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2),
        "one-layer": dict(num_hidden_layers=1),
        "embedding-equals-hidden": dict(embedding_size=32),
        "embedding-wider": dict(embedding_size=48),
        **activations("gelu", "relu", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "quick_gelu", "silu", "tanh", "linear"),
        "eps-1e-5": dict(layer_norm_eps=1e-5),
        "head-size-20": dict(hidden_size=60, num_attention_heads=3),
        "type-vocab-1": dict(type_vocab_size=1),
        "type-vocab-3": dict(type_vocab_size=3),
        "untied": dict(tie_word_embeddings=False),
        "labels-3": dict(num_labels=3),  # the classifier and the sentence-order head have num_labels outputs
    },
    refusals=[
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(hidden_act="gelu_10"), "activation 'gelu_10' is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key' is not supported"),
        (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
        (dict(chunk_size_feed_forward=2), "chunk_size_feed_forward=2 is not supported"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size 30 is not a multiple of num_attention_heads 4"),
        (dict(num_hidden_groups=0), "at least one group of at least one layer"),
        (dict(inner_group_num=0), "at least one group of at least one layer"),
    ],
    unknown_head="AlbertForTokenClassification",
    train={**ENCODER_DROPOUT, "classifier_dropout_prob": 0.25,
           "num_hidden_layers": 3, "num_hidden_groups": 2},  # shared groups: the gradients of two steps add up
    base_options=NO_POOLER,
    components=Components(AlbertAttention, AlbertLayer, albert_enter, attention_path="attention", config=dict(inner_group_num=2)),
    checkpoint=dict(num_hidden_layers=4, num_hidden_groups=2),
    legacy=position_ids_buffer,
    full_size=("AlbertForMaskedLM", dict(vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12,
                                         num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512),
               0.05, 2, 32),  # albert-base-v2's sizes; std 0.3 would saturate tanh and softmax at this width
    module_path=albert_module_path,
    # More groups than layers: transformers 4.57 slices head_mask into int(2 / 4) = 0 entries per
    # group and AlbertLayerGroup indexes it: IndexError. 5.x runs it; so does the twin.
    transformers_fails=lambda variant: IndexError if versions.V4 and variant == "groups-4-of-2" else None,
    hub=(("albert/albert-base-v2", "AlbertForMaskedLM"),),
)


def electra_stages(config, cls: str) -> int:
    """Embeddings (5), embeddings_project if E != C, 15 steps per layer, the head's: discriminator
    dense, activation, dense_prediction; generator dense, activation, LayerNorm, lm_head; classifier
    dense, activation, out_proj."""
    head = {"ElectraModel": 0, "ElectraForPreTraining": 3, "ElectraForMaskedLM": 4, "ElectraForSequenceClassification": 3}
    return 5 + (config.embedding_size != config.hidden_size) + 15 * config.num_hidden_layers + head[cls]


def electra_enter(hf, inputs):
    hidden = hf.embeddings_project(hf.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"]))
    return hidden, hf.encoder.layer


ELECTRA = Fixture(
    model_type="electra",
    hf_config=transformers.ElectraConfig,
    small=dict(vocab_size=99,
               embedding_size=16,  # E != C: embeddings_project takes the embeddings up to C
               hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64),
    stages=electra_stages,
    variants={
        "embed-16": {},
        "embed-equals-hidden": dict(embedding_size=32),  # no embeddings_project, as ELECTRA-base
        "embed-48": dict(embedding_size=48),  # wider than the encoder
        **activations("relu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "quick_gelu", "silu", "tanh", "sigmoid", "linear"),
        "eps-1e-5": dict(layer_norm_eps=1e-5),
        "head-size-4": dict(num_attention_heads=8),
        "head-size-24": dict(hidden_size=48, num_attention_heads=2),
        "head-size-20": dict(hidden_size=60, num_attention_heads=3, embedding_size=60),
        "head-size-80": dict(hidden_size=80, num_attention_heads=1),
        "type-vocab-1": dict(type_vocab_size=1),
        "type-vocab-3": dict(type_vocab_size=3),
        "deeper-3": dict(num_hidden_layers=3),
        "untied": dict(tie_word_embeddings=False),  # the generator's lm_head weight of its own
        "labels-1": dict(num_labels=1),
        "labels-5": dict(id2label={i: f"class {i}" for i in range(5)}),
    },
    refusals=[
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(hidden_act="gelu_10"), "activation 'gelu_10' is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key' is not supported"),
        (dict(is_decoder=True), "ELECTRA as a decoder"),
        (dict(add_cross_attention=True), "ELECTRA as a decoder"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size 30 is not a multiple of num_attention_heads 4"),
        (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
    ],
    unknown_head="ElectraForTokenClassification",
    train={**ENCODER_DROPOUT, "classifier_dropout": 0.25},
    components=Components(ElectraSelfAttention, ElectraLayer, electra_enter),
    legacy=position_ids_buffer,
    # google/electra-small-discriminator's shape (transformers' defaults): V 30522, E 128, C 256, 12
    # layers, 4 heads of 64, I 1024. std 0.1: at 0.3 and this width the GELUs saturate.
    full_size=("ElectraForPreTraining", {}, 0.1, 2, 64),
    hub=(("google/electra-small-discriminator", "ElectraForPreTraining"),
         ("google/electra-small-generator", "ElectraForMaskedLM"),
         ("google/electra-base-discriminator", "ElectraForPreTraining")),
)


def gpt2_stages(config, cls: str) -> int:
    """wte, wpe, their sum, 15 steps per block, ln_f, and the head's scores (lm_head, score)."""
    return 3 + 15 * config.n_layer + 1 + (cls != "GPT2Model")


GPT2 = Fixture(
    model_type="gpt2",
    hf_config=transformers.GPT2Config,
    small=dict(vocab_size=101, n_embd=32,
               n_layer=3,  # three layers, so that scale_attn_by_inverse_layer_idx divides by 1, 2 and 3
               n_head=4, n_positions=64,
               bos_token_id=None, eos_token_id=None),  # GPT2Config's 50256 is outside a small vocabulary
    stages=gpt2_stages,
    variants={
        "default": {},
        "no-scale": dict(scale_attn_weights=False),
        "inverse-layer-idx": dict(scale_attn_by_inverse_layer_idx=True),
        "no-scale+inverse-layer-idx": dict(scale_attn_weights=False, scale_attn_by_inverse_layer_idx=True),
        "reorder-upcast": dict(reorder_and_upcast_attn=True),
        "reorder-upcast+inverse-layer-idx": dict(reorder_and_upcast_attn=True, scale_attn_by_inverse_layer_idx=True),
        "reorder-upcast+no-scale": dict(reorder_and_upcast_attn=True, scale_attn_weights=False),
        "n_inner-37": dict(n_inner=37),
        **{f"act-{a}": dict(activation_function=a) for a in ("gelu", "relu", "gelu_pytorch_tanh", "gelu_fast", "silu", "quick_gelu")},
        "eps-1e-3": dict(layer_norm_epsilon=1e-3),
        "head-size-20": dict(n_embd=60, n_head=3),
        "head-size-32": dict(n_embd=64, n_head=2),
        "head-size-1": dict(n_embd=8, n_head=8),  # transformers makes the merged heads contiguous; Conv1D's .view needs it
        "untied": dict(tie_word_embeddings=False),
        "labels-3": dict(num_labels=3),
    },
    refusals=[
        (dict(add_cross_attention=True), "cross-attention"),
        (dict(activation_function="xielu"), "activation 'xielu' is not supported"),
        (dict(n_embd=30, n_head=4), "not a multiple"),
    ],
    unknown_head="GPT2ForQuestionAnswering",
    train=dict(resid_pdrop=0.2, embd_pdrop=0.25, attn_pdrop=0.3),
    # The classifier reads each row's last token that is not the pad token: a batch needs one.
    class_config={"GPT2ForSequenceClassification": dict(pad_token_id=0)},
    legacy=gpt2_causal_buffers,
    tokenizer=gpt2_tokenizer,
    hub=(("gpt2", "GPT2LMHeadModel"), ("distilgpt2", "GPT2LMHeadModel")),
)
# GPT-2's components (attention and block, with and without a cache), its real size (cache,
# generation, sdpa) and its checkpoint quirks are in tests/test_gpt2.py.



def llama_stages(config, cls: str) -> int:
    """embed_tokens, RoPE's cos and sin; 19 per layer (with its output); the final norm; the head's scores."""
    return 3 + 19 * config.num_hidden_layers + 1 + (cls != "LlamaModel")


LLAMA = Fixture(
    model_type="llama",
    hf_config=transformers.LlamaConfig,
    # Tied, as the small real ones are (SmolLM2, Llama 3.2 1B): a base model's file is then a whole LM's.
    small=dict(vocab_size=101, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
               num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
               tie_word_embeddings=True),
    stages=llama_stages,
    variants={
        "gqa-3": {},  # 6 query heads sharing 2 key/value heads
        "mqa": dict(num_key_value_heads=1),
        "mha": dict(num_key_value_heads=6),
        "head-dim-12": dict(head_dim=12),
        "biases": dict(attention_bias=True, mlp_bias=True),
        "untied": dict(tie_word_embeddings=False),
        "eps-1e-3": dict(rms_norm_eps=1e-3),
        "act-gelu": dict(hidden_act="gelu"),
        "labels-3": dict(num_labels=3),
    },  # rope types, the cache, generation and the real SmolLM2: tests/test_llama.py
    refusals=[
        (dict(num_key_value_heads=4), "not a multiple of num_key_value_heads"),
        (dict(hidden_act="xielu"), "xielu"),
    ],
    unknown_head="LlamaForTokenClassification",  # (its QA head keeps the base under "transformer.", as transformers' BC)
    train=dict(attention_dropout=0.2),
    dropouts_per_layer=1,
    legacy=lambda config: {f"layers.{i}.self_attn.rotary_emb.inv_freq": torch.ones(4) for i in range(config.num_hidden_layers)},
    tokenizer=gpt2_tokenizer,
)



def family_member(model_type: str, hf_config: type, small: dict, variants: dict, per_layer: int = 19, unknown_head: str = "") -> Fixture:
    """A member of the Llama family: Llama's fixture with its own config, its window (shorter than
    the texts: 11 tokens) and what it records per layer. Its own checks: tests/test_llama_family.py."""
    prefix = unknown_head.removesuffix("ForTokenClassification")
    return dataclasses.replace(
        LLAMA, model_type=model_type, hf_config=hf_config, small={**LLAMA.small, **small},
        stages=lambda config, cls: 3 + per_layer * config.num_hidden_layers + 1 + (cls != f"{prefix}Model"),
        variants={name: LLAMA.variants[name] for name in ("gqa-3", "mqa", "mha", "untied", "labels-3")} | variants,
        refusals=[(dict(num_key_value_heads=4), "not a multiple of num_key_value_heads"), (dict(sliding_window=0), "sliding_window")],
        unknown_head=unknown_head,
    )


MISTRAL = family_member("mistral", transformers.MistralConfig, dict(sliding_window=4), {"no-window": dict(sliding_window=None)},
                        unknown_head="MistralForTokenClassification")
QWEN2 = family_member("qwen2", transformers.Qwen2Config, dict(use_sliding_window=True, sliding_window=4, max_window_layers=1),
                      {"no-window": dict(use_sliding_window=False)}, unknown_head="Qwen2ForTokenClassification")
QWEN3 = family_member("qwen3", transformers.Qwen3Config, dict(use_sliding_window=True, sliding_window=4, max_window_layers=1, head_dim=8),
                      {"attention-bias": dict(attention_bias=True)}, per_layer=21, unknown_head="Qwen3ForTokenClassification")

FIXTURES = {fx.model_type: fx for fx in (BERT, ROBERTA, XLM_ROBERTA, DISTILBERT, ALBERT, ELECTRA, GPT2, LLAMA, MISTRAL, QWEN2, QWEN3)}


# --- the cases: every fixture, every class ------------------------------------------------------


def class_cases(heads_only: bool = False, options: bool = True) -> list:
    """(fixture, class, base option) for every class of every architecture."""
    cases = []
    for fx in FIXTURES.values():
        for cls in fx.classes[1:] if heads_only else fx.classes:
            cases.append(pytest.param(fx, cls, None, id=f"{fx.model_type}-{cls}"))
            if options and cls == fx.arch.base.__name__:
                cases += [pytest.param(fx, cls, option, id=f"{fx.model_type}-{cls}[{option}]") for option in fx.base_options]
    return cases


def fixture_cases(with_components: bool = False) -> list:
    return [pytest.param(fx, id=fx.model_type) for fx in FIXTURES.values() if fx.components or not with_components]


CLASSES = class_cases()
VARIANTS = [
    pytest.param(fx, cls, option, variant, id=f"{case.id}-{variant}")
    for case in CLASSES
    for fx, cls, option in [case.values]
    for variant in fx.variants
]


def test_every_architecture_has_a_fixture():
    """Every architecture of one stack has a Fixture here; the encoder-decoders (which take a target
    too) have the same checks in tests/test_seq2seq.py."""
    from tests.test_seq2seq import CLASSES

    encoder_decoders = {t for t, arch in reimpl.ARCHITECTURES.items() if arch.encoder}
    assert encoder_decoders == {reimpl.registry.twin_class(cls).config_class.model_type for cls in CLASSES}
    missing = sorted(set(reimpl.ARCHITECTURES) - set(FIXTURES) - encoder_decoders)
    assert not missing, f"add a Fixture to tests/test_conformance.py for: {', '.join(missing)}"


# --- parity: every class, every config variant ---------------------------------------------------


@pytest.mark.parametrize("fx, cls, option, variant", VARIANTS)
def test_config_variants_every_step_bit_identical(fx, cls, option, variant):
    hf = fx.model(cls, option, **fx.variants[variant])
    twin = fx.twin_class(cls).from_hf(hf)
    assert type(twin) is fx.twin_class(cls)
    inputs = fx.inputs(hf.config)
    if (error := fx.transformers_fails(variant)) is not None:
        with pytest.raises(error):
            hf(**inputs)
        assert twin(**inputs)[0].isfinite().all()
        return
    assert not inputs["attention_mask"].all()  # the batch really has padding
    expected = fx.expected(hf.config, cls, option)
    assert assert_states_equal(hf, twin, **inputs) == expected
    one = {k: v[:1] for k, v in inputs.items()}  # one unpadded sentence, with its mask, and with nothing but its ids
    assert assert_states_equal(hf, twin, **one) == expected
    assert assert_states_equal(hf, twin, input_ids=one["input_ids"]) == expected


@pytest.mark.parametrize("fx, cls, option", class_cases(options=False))
def test_position_ids_and_default_token_types(fx, cls, option):
    """position_ids as given, (1, T) and (B, T); token_type_ids left out: segment A, as transformers
    (which gathers its zero buffer, at the position ids when they are given)."""
    hf = fx.model(cls)
    twin = fx.twin_class(cls).from_hf(hf)
    inputs = fx.inputs(hf.config)
    B, T = inputs["input_ids"].shape
    expected = fx.expected(hf.config, cls)
    without_types = {k: v for k, v in inputs.items() if k != "token_type_ids"}
    if fx.arch.token_types:
        assert assert_states_equal(hf, twin, **without_types) == expected
    g = torch.Generator().manual_seed(2)
    for position_ids in (torch.arange(T).flip(0)[None], torch.randint(0, hf.config.max_position_embeddings, (B, T), generator=g)):
        if not fx.hf_position_ids:
            with pytest.raises(TypeError, match="position_ids"):
                hf(**inputs, position_ids=position_ids)
            continue
        assert assert_states_equal(hf, twin, **inputs, position_ids=position_ids) == expected
        assert assert_states_equal(hf, twin, **without_types, position_ids=position_ids) == expected


@pytest.mark.parametrize("fx", [pytest.param(fx, id=fx.model_type) for fx in FIXTURES.values() if fx.full_size])
def test_released_size_every_step_bit_identical(fx):
    """A released model's sizes (the widths, the depth, the vocabulary), random weights."""
    cls, overrides, std, B, T = fx.full_size
    config = fx.hf_config(**overrides, attn_implementation="eager")
    hf = random_model(getattr(transformers, cls), config, std=std)
    assert assert_states_equal(hf, fx.twin_class(cls).from_hf(hf), **fx.inputs(config, B=B, T=T)) == fx.expected(config, cls)


@pytest.mark.parametrize("fx, cls, option", CLASSES)
def test_recorded_names_are_transformers_module_paths(fx, cls, option):
    """Every recorded name is a transformers module path, or one plus a step; the record's layers
    and attention are where the layers' outputs and probabilities are recorded."""
    hf = fx.model(cls, option)
    twin = fx.twin_class(cls).from_hf(hf)
    with recording() as states:
        twin(**fx.inputs(hf.config))
    hf_paths = {name for name, _ in hf.named_modules()}
    for name in states:
        path = fx.module_path(name, hf.config)
        module = path.rsplit(".", 1)[0] if "." in path else ""  # a step of that module ("relu": of the model itself)
        assert path in hf_paths or module in hf_paths, f"{name}: {path!r} is not a transformers module path"
    arch, prefix = fx.arch, "" if cls == fx.arch.base.__name__ else fx.arch.base.base_model_prefix + "."
    for i in range(hf.config.num_hidden_layers):
        assert f"{prefix}{arch.layers}.{i}" in states
        probs = states[f"{prefix}{arch.layers}.{i}.{arch.attention}.probs"]
        assert torch.equal(probs[0].triu(1) == 0, torch.ones_like(probs[0], dtype=torch.bool)) == arch.causal  # row 0: no padding


# --- what the twins refuse -----------------------------------------------------------------------

REFUSALS = [
    pytest.param(fx, overrides, message, id=f"{fx.model_type}-{'-'.join(f'{k}={v}' for k, v in overrides.items())}")
    for fx in FIXTURES.values()
    for overrides, message in fx.refusals
]


@pytest.mark.parametrize("fx, overrides, message", REFUSALS)
def test_unsupported_configs_refused(fx, overrides, message, tmp_path):
    """By the twin's config (a ValueError), and by from_pretrained on a checkpoint whose config.json
    says so (a CheckpointError naming the model type)."""
    with pytest.raises(ValueError, match=message):
        fx.arch.config.from_dict({**fx.config().to_dict(), **overrides})
    save(fx.model(fx.arch.base.__name__), tmp_path, **overrides)
    with pytest.raises(CheckpointError, match=f"{fx.model_type} config .* is not supported: .*{message}"):
        reimpl.from_pretrained(tmp_path)


@pytest.mark.parametrize("fx, cls, option", class_cases(options=False))
def test_refused_inputs(fx, cls, option):
    """A 4-D attention mask (the twin takes the tokenizer's), and embeddings instead of ids (left out)."""
    twin = fx.twin_class(cls).from_hf(fx.model(cls))
    inputs = fx.inputs(twin.config)
    with pytest.raises(ValueError, match=r"attention_mask must be the tokenizer's \(B, [TS]\) mask, not a 4-D tensor"):
        twin(inputs["input_ids"], attention_mask=inputs["attention_mask"][:, None, None, :])
    with pytest.raises(TypeError, match="inputs_embeds"):
        twin(inputs["input_ids"], inputs_embeds=torch.zeros(*inputs["input_ids"].shape, 8))


@pytest.mark.parametrize("fx", fixture_cases())
def test_config_defaults_match_transformers(fx):
    ours, theirs = fx.arch.config(), fx.hf_config()
    assert fx.arch.config.from_dict(theirs.to_dict()) == ours
    assert fx.arch.config.model_type == theirs.model_type == fx.model_type
    for field in dataclasses.fields(ours):
        if hasattr(theirs, field.name):
            if field.name == "head_dim" and getattr(theirs, field.name) is None:  # 4.57's MistralConfig: None, C // nh in the attention
                assert ours.head_dim == ours.hidden_size // ours.num_attention_heads
                continue
            assert getattr(ours, field.name) == getattr(theirs, field.name), field.name


@pytest.mark.parametrize("fx", fixture_cases())
def test_architecture_record(fx):
    """The record's classes are transformers' (by name, in its modeling file, with its prefix), and
    each head's scores are a transformers module (annotate/models' head interface)."""
    arch = fx.arch
    hf_module = importlib.import_module(arch.hf_module)
    assert arch.default in arch.classes
    assert arch.token_types == hasattr(fx.hf_config(), "type_vocab_size")
    for cls in arch.classes:
        assert getattr(hf_module, cls.__name__) is getattr(transformers, cls.__name__)
        assert cls.base_model_prefix == getattr(transformers, cls.__name__).base_model_prefix
    for cls in fx.classes[1:]:
        stage = models.get(fx.model_type).head(cls).stage
        assert stage in {name for name, _ in fx.model(cls).named_modules()}, stage


# --- from_hf: weights copied and tied, components, other classes refused -------------------------


def sharing(model: nn.Module) -> set[frozenset[str]]:
    """The parameters that are one tensor under several names (tied weights, a head's bias)."""
    names: dict[int, set[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), set()).add(name)
    return {frozenset(group) for group in names.values() if len(group) > 1}


def assert_tied(twin: nn.Module, tie: bool) -> None:
    """The output embedding is the input embedding itself, unless the config unties them."""
    for target, source in getattr(twin, "_tied_weights_keys", {}).items():
        if source.startswith(twin.base_model_prefix + "."):
            assert (twin.get_parameter(target) is twin.get_parameter(source)) == tie, target


TIES = [pytest.param(*case.values, tie, id=f"{case.id}-{'tied' if tie else 'untied'}") for case in CLASSES for tie in (True, False)]


@pytest.mark.parametrize("fx, cls, option, tie", TIES)
def test_from_hf_copies_and_ties_weights(fx, cls, option, tie):
    hf = fx.model(cls, option, tie_word_embeddings=tie)
    twin = fx.twin_class(cls).from_hf(hf)
    assert sharing(twin) == sharing(hf)
    assert_tied(twin, tie)
    assert [name for name, _ in twin.named_parameters()] == [name for name, _ in hf.named_parameters()]
    for name, module in hf.named_modules():  # padding_idx changes no value, only the gradient: as in transformers
        if isinstance(module, nn.Embedding):
            assert twin.get_submodule(name).padding_idx == module.padding_idx, name
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    assert all(torch.equal(v, before[k]) for k, v in hf.state_dict().items())


def assert_components_equal(fx: Fixture, hf: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    """from_hf on each layer of transformers' base model ``hf`` and on its attention, fed the same
    input as transformers' modules: the same output (and probabilities), bit for bit."""
    c = fx.components
    config_on_every_module(hf)
    mask = inputs["attention_mask"]
    hidden, layers = c.enter(hf, inputs)
    for hf_layer in layers:
        attention = hf_layer.get_submodule(c.attention_path)
        (hf_output, hf_probs), hf_next = c.calls(hf, hf_layer, attention, hidden, mask)
        output, probs = c.attention.from_hf(attention)(hidden, mask)
        assert torch.equal(output, hf_output) and torch.equal(probs, hf_probs)
        assert torch.equal(c.layer.from_hf(hf_layer)(hidden, mask), hf_next)
        hidden = hf_next


@pytest.mark.parametrize("fx", fixture_cases(with_components=True))
def test_components_from_hf(fx):
    hf = fx.model(fx.arch.base.__name__, **fx.components.config)
    assert_components_equal(fx, hf, fx.inputs(hf.config))


def refuses(twin_class: type, module: nn.Module) -> None:
    with pytest.raises(TypeError, match=rf"{twin_class.__name__}\.from_hf was given a {type(module).__name__};"):
        twin_class.from_hf(module)


@functools.cache
def shared_model(model_type: str, cls: str) -> nn.Module:
    """One small transformers model per class, for the checks that only hand it to from_hf."""
    return config_on_every_module(FIXTURES[model_type].model(cls))


@pytest.mark.parametrize("fx, cls, option", class_cases(options=False))
def test_from_hf_refuses_every_other_class(fx, cls, option):
    """Every other class of every architecture: the twin would compute its own math on other
    weights (BERT's positions on RoBERTa's, a masked LM's head on a classifier's), so it is
    refused, naming both classes."""
    twin_class = fx.twin_class(cls)
    for other in FIXTURES.values():
        for other_cls in other.classes:
            if (other.model_type, other_cls) != (fx.model_type, cls):
                refuses(twin_class, shared_model(other.model_type, other_cls))


def module_classes(model: nn.Module) -> dict[type, nn.Module]:
    """One module of each class in ``model`` (the model itself included)."""
    return {type(module): module for module in reversed(list(model.modules()))}


@pytest.mark.parametrize("fx", fixture_cases(with_components=True))
def test_components_refuse_every_other_module(fx):
    """The attention twin takes transformers' attention module only, the layer twin its layer only:
    every other module of the model (the layer, the attention, their parts, the layer list's
    parent, the model) and of every other architecture is refused by name."""
    c = fx.components
    hf = shared_model(fx.model_type, fx.arch.base.__name__)
    layer = c.enter(hf, fx.inputs(hf.config))[1][0]
    takes = {c.attention: type(layer.get_submodule(c.attention_path)), c.layer: type(layer)}
    for other in FIXTURES.values():
        for module_class, module in module_classes(shared_model(other.model_type, other.arch.base.__name__)).items():
            for twin, own in takes.items():
                if module_class is not own:
                    refuses(twin, module)


# --- checkpoints on disk ---------------------------------------------------------------------------


def head_keys(twin: nn.Module) -> list[str]:
    """The twin's tensors outside its base model that are not tied to one inside it."""
    prefix = twin.base_model_prefix + "."
    tied = getattr(twin, "_tied_weights_keys", {})
    return [k for k in twin.state_dict() if not k.startswith(prefix) and not tied.get(k, "").startswith(prefix)]


@pytest.mark.parametrize("layout", ["safetensors", "bin", "untied"])
@pytest.mark.parametrize("fx, cls, option", CLASSES)
def test_save_pretrained_loads_as_its_class(fx, cls, option, layout, tmp_path):
    """transformers' save_pretrained: a head's keys under the base model's prefix (and its own
    module's), a base model's bare; reimpl.from_pretrained builds the class config.json names,
    tied as transformers ties it, equal to transformers' from_pretrained of the same folder."""
    hf = fx.model(cls, option, seed=4, **fx.checkpoint, **({"tie_word_embeddings": False} if layout == "untied" else {}))
    save(hf, tmp_path, "bin" if layout == "bin" else "safetensors")
    keys = set(read_state_dict(tmp_path))
    twin_class = fx.twin_class(cls)
    prefix = twin_class.base_model_prefix + "."
    if twin_class is fx.arch.base:
        assert not any(k.startswith(prefix) for k in keys)
    else:
        heads = {name for name, _ in twin_class.from_hf(hf).named_children() if name != twin_class.base_model_prefix}
        assert all(k.startswith(prefix) or k.split(".")[0] in heads for k in keys), sorted(keys)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is twin_class
    assert sharing(twin) == sharing(hf)
    assert_tied(twin, layout != "untied")
    for target in getattr(twin, "_tied_weights_keys", {}):  # a tied weight is saved once, under its source
        if layout != "untied":
            assert target not in keys, target
    theirs = hf_from_pretrained(cls, tmp_path, **twin.hf_kwargs())
    assert assert_states_equal(theirs, twin, **fx.inputs(hf.config)) == fx.expected(hf.config, cls, option)


@pytest.mark.parametrize("fx, cls, option", class_cases(heads_only=True))
def test_head_checkpoint_loads_into_the_base_model(fx, cls, option, tmp_path):
    """A head's file (base keys under the prefix) named as the base model: the base, as transformers loads it."""
    hf = fx.model(cls, **fx.checkpoint)
    base = fx.arch.base.__name__
    save(hf, tmp_path, architectures=[base])
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is fx.arch.base
    theirs = hf_from_pretrained(base, tmp_path, **twin.hf_kwargs())
    assert assert_states_equal(theirs, twin, **fx.inputs(hf.config)) == fx.expected_of(twin)


@pytest.mark.parametrize("fx, cls, option", class_cases(heads_only=True))
def test_base_checkpoint_named_as_a_head(fx, cls, option, tmp_path):
    """The base model's file, config.json naming a head: the head's missing tensor is named; a head
    that is all tied to the base (GPT-2's LM head is wte) loads."""
    hf = fx.model(fx.arch.base.__name__, **fx.class_config.get(cls, {}))
    save(hf, tmp_path, architectures=[cls])
    missing = head_keys(fx.twin_class(cls).from_hf(fx.model(cls)))
    if missing:
        with pytest.raises(CheckpointError, match=rf"no tensor '({'|'.join(map(re.escape, missing))})'"):
            reimpl.from_pretrained(tmp_path)
        return
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin).__name__ == cls
    assert assert_states_equal(hf_from_pretrained(cls, tmp_path), twin, **fx.inputs(hf.config)) == fx.expected_of(twin)


@pytest.mark.parametrize("how", ["unknown", "none"])
@pytest.mark.parametrize("fx", fixture_cases())
def test_unnamed_class_falls_back_to_the_default(fx, how, tmp_path):
    """config.json naming a class the twins lack (the file of that class: base keys under the prefix,
    its own head, no pooler), or none at all: the architecture's default class."""
    if how == "unknown":
        hf = fx.model(fx.unknown_head)
        save(hf, tmp_path)
        assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [fx.unknown_head]
    else:
        hf = fx.model(fx.classes[1])
        save(hf, tmp_path, architectures=None)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is fx.arch.default
    theirs = hf_from_pretrained(fx.arch.default.__name__, tmp_path, **twin.hf_kwargs())
    assert assert_states_equal(theirs, twin, **fx.inputs(hf.config)) == fx.expected_of(twin)


@pytest.mark.parametrize("layout", ["legacy-bin", "legacy-head-bin", "sharded-safetensors", "sharded-bin"])
@pytest.mark.parametrize("fx", fixture_cases())
def test_checkpoint_layouts_load(fx, layout, tmp_path):
    """Files as older tools and large models write them, with the buffers old versions stored (a
    BERT's position_ids, GPT-2's causal-mask bias): the base model's bare keys (as the hub's
    bert-base and gpt2) and no class named, loaded as the architecture's default; a head's keys and
    its class named (as converted TensorFlow checkpoints); LayerNorm gamma/beta in the .bin files;
    two shards and their index. Equal to transformers' model the tensors came from."""
    cls = fx.classes[1] if layout == "legacy-head-bin" else fx.arch.default.__name__
    hf = fx.model(cls)
    if layout == "legacy-head-bin":
        state = {**hf.state_dict(), **{f"{hf.base_model_prefix}.{k}": v for k, v in fx.legacy(hf.config).items()}}
    else:
        state = {**hf.base_model.state_dict(), **fx.legacy(hf.config)}
    state = {k: v.clone() for k, v in state.items()}
    if layout.endswith("bin"):
        state = legacy_names(state)
    write_config(tmp_path, hf, architectures=[cls] if layout == "legacy-head-bin" else None)
    if layout.startswith("legacy"):
        torch.save(state, tmp_path / "pytorch_model.bin")
    else:
        write_sharded(tmp_path, state, layout.removeprefix("sharded-"))
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin).__name__ == cls
    assert sharing(twin) == sharing(hf)
    assert assert_states_equal(hf, twin, **fx.inputs(hf.config)) == fx.expected(hf.config, cls)


@pytest.mark.parametrize("fx", fixture_cases())
def test_missing_and_misshaped_tensors_are_named(fx, tmp_path):
    from safetensors.torch import load_file, save_file

    hf = fx.model(fx.arch.base.__name__)
    save(hf, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    matrices = [k for k, v in state.items() if v.dim() == 2 and v.shape[0] != v.shape[1]]
    key = matrices[len(matrices) // 2]
    shape = tuple(state[key].shape)
    save_file({k: v for k, v in state.items() if k != key}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"no tensor '{re.escape(key)}' \(the model needs shape {re.escape(str(shape))}\)"):
        reimpl.from_pretrained(tmp_path)
    save_file({**state, key: state[key].T.contiguous()}, tmp_path / "model.safetensors")  # stored as the other layout
    message = rf"'{re.escape(key)}' has shape {re.escape(str(shape[::-1]))} in the checkpoint; the model needs {re.escape(str(shape))}"
    with pytest.raises(CheckpointError, match=message):
        reimpl.from_pretrained(tmp_path)


# --- training: train mode and gradients, every head ----------------------------------------------


def head_labels(fx: Fixture, cls: str, config, inputs: dict, seed: int = 2) -> dict[str, torch.Tensor]:
    """The labels each of the head's outputs takes (annotate/models' head interface), as transformers documents them."""
    g = torch.Generator().manual_seed(seed)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    labels = {}
    for output in models.get(fx.model_type).head(cls).outputs:
        labels[output.labels] = {
            "masked-tokens": lambda: torch.where((torch.rand(ids.shape, generator=g) < 0.4) & mask.bool(), ids, -100),  # -100: not scored
            "next-token": lambda: torch.where(mask.bool(), ids, -100),
            "replaced-tokens": lambda: (torch.rand(ids.shape, generator=g) < 0.3).long(),
            "labels": lambda: torch.randint(0, len(output.names or config.id2label), (ids.shape[0],), generator=g),
        }[output.reads]()
    return labels


@pytest.mark.parametrize("fx, cls, option", class_cases(heads_only=True))
def test_train_mode_forward_and_gradients_bit_identical(fx, cls, option):
    """Dropout on: the loss, every output, every stage's value and gradient, every parameter's
    gradient, and the random stream afterwards equal transformers' (tests/test_training.py)."""
    hf = fx.model(cls, **fx.train)
    twin = fx.twin_class(cls).from_hf(hf)
    inputs = fx.inputs(hf.config)
    n = assert_training_equal(hf, twin, {**inputs, **head_labels(fx, cls, hf.config, inputs)})
    assert n["dropout"] >= fx.dropouts_per_layer * hf.config.num_hidden_layers  # every layer's dropouts were recorded and compared


# --- annotate trace --diff -----------------------------------------------------------------------


@pytest.mark.parametrize("fx, cls, option", CLASSES)
def test_trace_diff_every_stage_exactly_zero(fx, cls, option, tmp_path):
    """A saved checkpoint with a tokenizer: every stage the tracer shows is bit-identical to
    transformers', the head's scores too, one stage per recorded state (less the head's scores,
    shown as predictions; plus a base model's last_hidden_state), in the layers the config has."""
    vocab_size = fx.tokenizer(tmp_path)
    hf = fx.model(cls, option, vocab_size=vocab_size, **fx.checkpoint)
    save(hf, tmp_path)
    code, trace = run_json("trace", str(tmp_path), "The cat sat on the [MASK].", "--diff")
    assert code == 0
    assert trace["model_type"] == fx.model_type and trace["model_class"] == cls
    head = cls != fx.arch.base.__name__
    assert len(trace["stages"]) == fx.expected(hf.config, cls, option) - head + (not head)
    assert all(s["max_abs_diff"] == 0.0 for s in trace["stages"]), [s["name"] for s in trace["stages"] if s["max_abs_diff"] != 0.0]
    assert {s["layer"] for s in trace["stages"]} == {None, *range(hf.config.num_hidden_layers)}
    if head:
        assert trace["logits_max_abs_diff"] == 0.0
    if trace.get("mask_predictions"):
        assert [m["position"] for m in trace["mask_predictions"]] == [i for i, t in enumerate(trace["tokens"]) if t == "[MASK]"]
    if trace.get("labels"):
        assert len(trace["labels"]) == hf.config.num_labels


# --- real weights from the local Hugging Face cache ----------------------------------------------

HUB = [pytest.param(fx, repo_id, cls, id=repo_id) for fx in FIXTURES.values() for repo_id, cls in fx.hub]


@pytest.mark.hub
@pytest.mark.parametrize("fx, repo_id, cls", HUB)
def test_real_checkpoint_from_hub_cache(fx, repo_id, cls):
    if not hub_cached(repo_id):
        pytest.skip(f"{repo_id} is not in the local Hugging Face cache")
    hf = hf_from_pretrained(cls, repo_id)
    tok = transformers.AutoTokenizer.from_pretrained(repo_id, padding_side="left" if fx.arch.causal else "right")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    twin = reimpl.from_pretrained(repo_id)
    assert type(twin).__name__ == cls
    mask = tok.mask_token or "mat"
    enc = tok([f"The cat sat on the {mask}.", "Attention is all you need, said the paper, and the field listened."],
              padding=True, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc and (k != "token_type_ids" or fx.arch.token_types)}
    assert assert_states_equal(hf, twin, **inputs) == fx.expected(hf.config, cls)
