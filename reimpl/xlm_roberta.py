"""XLM-RoBERTa, written to be read beside transformers' models/xlm_roberta/modeling_xlm_roberta.py.

XLM-RoBERTa is RoBERTa trained on one hundred languages with a SentencePiece vocabulary of
250,002 pieces; transformers' modular_xlm_roberta.py copies RoBERTa's classes and renames them,
and so does this file: every class below is reimpl/roberta.py's twin under the XLMRoberta* name,
with nothing overridden but the names (and the classes each one builds, and the heads' place in
the parameters' order). The math, the positions
counted from ``pad_token_id + 1``, the checkpoint layout (``roberta.`` prefix, ``lm_head``,
``classifier``), what is left out and what is refused are RoBERTa's: see reimpl/roberta.py.

Shape legend: as in reimpl/roberta.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch import nn

from . import versions
from .architecture import Architecture
from .roberta import (
    RobertaClassificationHead,
    RobertaConfig,
    RobertaEmbeddings,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaLayer,
    RobertaLMHead,
    RobertaModel,
    RobertaSelfAttention,
    checkpoint_key,
)


@dataclasses.dataclass
class XLMRobertaConfig(RobertaConfig):
    """XLMRobertaConfig: RobertaConfig's fields under model_type "xlm-roberta", with transformers'
    defaults (its vocab_size default is BERT's 30522; real checkpoints say 250002)."""

    model_type: ClassVar[str] = "xlm-roberta"  # config.json's, as in transformers' XLMRobertaConfig

    vocab_size: int = 30522


class XLMRobertaEmbeddings(RobertaEmbeddings):
    pass


class XLMRobertaSelfAttention(RobertaSelfAttention):
    config_class = XLMRobertaConfig


class XLMRobertaLayer(RobertaLayer):
    attention_class = XLMRobertaSelfAttention


class XLMRobertaModel(RobertaModel):
    config_class = XLMRobertaConfig
    embeddings_class = XLMRobertaEmbeddings
    layer_class = XLMRobertaLayer


class XLMRobertaLMHead(RobertaLMHead):
    pass


class XLMRobertaClassificationHead(RobertaClassificationHead):
    pass


def head_first(model: nn.Module) -> None:
    """transformers 5's XLM-R heads register the head before ``roberta`` (RoBERTa's, after). The
    parameters' order is the order in which clip_grad_norm_ adds up the gradients' norms, so the
    twin registers them in transformers' order too."""
    if versions.V4:  # transformers 4.57's XLM-R heads register roberta first, as RoBERTa's do
        return
    model._modules["roberta"] = model._modules.pop("roberta")


class XLMRobertaForMaskedLM(RobertaForMaskedLM):
    base_class = XLMRobertaModel
    lm_head_class = XLMRobertaLMHead

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        head_first(self)


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    base_class = XLMRobertaModel
    classifier_class = XLMRobertaClassificationHead

    def __init__(self, config: XLMRobertaConfig):
        super().__init__(config)
        head_first(self)


ARCHITECTURE = Architecture(
    model_type="xlm-roberta",
    config=XLMRobertaConfig,
    base=XLMRobertaModel,
    heads=(XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification),
    default=XLMRobertaModel,
    hf_file="models/xlm_roberta/modeling_xlm_roberta.py",
    layers="encoder.layer",
    attention="attention.self",
    causal=False,
    token_types=True,  # forward takes token_type_ids; real checkpoints have a single type (type_vocab_size 1)
    checkpoint_key=checkpoint_key,
)
