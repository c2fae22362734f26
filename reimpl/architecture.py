"""What a model type *is*: one record per architecture, which everything else reads.

Each twin file ends with its ``ARCHITECTURE`` record (reimpl/bert.py, reimpl/gpt2.py, ...), and
reimpl/registry.py collects them by ``model_type``. The loader, the tracer, annotate.capture,
``annotate source`` and the CLI ask the record properties (is it causal? does it take token
types? where do its layers live?) and never test a model's name. What annotate adds to a model
(formulas, transformers' lines, how to catch transformers' values, what a head predicts) lives in
annotate/models/<model_type>.py, not here: docs/adding-an-architecture.md has the whole list.

A leaf module: it imports no twin, so the twins can import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Architecture:
    model_type: str  # config.json's "model_type"
    config: type  # the twin's config dataclass (with ``from_dict``)
    base: type  # the twin of the base model (BertModel, GPT2Model)
    heads: tuple[type, ...]  # twins of the *For* classes, named as transformers names them
    default: type  # what to build when config.json's "architectures" names none of the above
    hf_file: str  # transformers' modeling file, relative to the package: "models/bert/modeling_bert.py"
    layers: str  # the path of the layer list inside the base model: "encoder.layer", "h"
    attention: str  # the path, inside a layer, of the module that records "probs": "attention.self", "attn"
    causal: bool  # a token attends to earlier tokens only (decoder) or to all (encoder)
    token_types: bool  # forward takes token_type_ids (segments A/B)
    # Checkpoint quirks: a key as found in a file -> the key as transformers names it today, or
    # None to drop it (a buffer, a head the twin has no class for). Prefixes are left alone:
    # ``reimpl.loading.match_prefix`` handles ``bert.`` / ``transformer.`` as transformers does.
    checkpoint_key: Callable[[str], str | None]
    # An encoder-decoder's encoder layers, inside the base model ("encoder.layers"); ``layers`` is
    # then its decoder's. None: one stack of layers (an encoder alone, or a decoder alone).
    encoder: str | None = None
    cross_attention: str | None = None  # an encoder-decoder's: inside a decoder layer, the attention over the source ("encoder_attn")

    @property
    def hf_module(self) -> str:
        """The importable name of the modeling file: ``transformers.models.bert.modeling_bert``."""
        return "transformers." + self.hf_file.removesuffix(".py").replace("/", ".")

    @property
    def classes(self) -> tuple[type, ...]:
        return (self.base, *self.heads)

    def model_class(self, architectures: list[str] | None) -> type:
        """The twin class config.json's ``architectures`` names, if the twin has it, else ``default``."""
        by_name = {cls.__name__: cls for cls in self.classes}
        for name in architectures or ():
            if name in by_name:
                return by_name[name]
        return self.default


@dataclasses.dataclass
class ClassifierConfig:
    """The config fields of a classification head, shared by every twin config: transformers'
    PreTrainedConfig derives ``num_labels`` from ``id2label`` (config.json's keys are strings)."""

    id2label: dict[int, str] | None = None  # label names; None: LABEL_0, LABEL_1, ...
    num_labels: int = 2  # L; len(id2label) when that is given
    # Which loss the classification head takes (reimpl/losses.py); None: decided by the first call's
    # labels and then kept, as transformers does (1 label: regression; integer labels: single-label).
    problem_type: str | None = None

    def __post_init__(self):
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self.id2label = {int(i): label for i, label in self.id2label.items()}
        self.num_labels = len(self.id2label)


def refuse_feed_forward_chunking(d: dict) -> None:
    """BERT-family configs: transformers with ``chunk_size_feed_forward`` runs the feed-forward on
    slices of the tokens, which rounds differently (tests/test_electra.py measures it)."""
    if d.get("chunk_size_feed_forward"):
        raise ValueError(
            f"chunk_size_feed_forward={d['chunk_size_feed_forward']} is not supported: transformers then computes the "
            "feed-forward a few tokens at a time (a memory saving), whose rounding the twin does not mirror; use 0"
        )
