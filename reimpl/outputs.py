"""What the twins return: transformers' output fields by their names, as tuples.

NamedTuples, so ``out.logits`` and ``out[0]`` both work, as with transformers' ModelOutput (whose
other fields, the losses, hidden states and attentions, are left out: the twins record every
intermediate state by name instead, see reimpl/states.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class BaseModelOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, C)
    pooler_output: torch.Tensor | None = None  # (B, C); None for a model without a pooler


class MaskedLMOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, V): a score for every vocabulary entry at every position


class CausalLMOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, V): scores for the token after each position


class SequenceClassifierOutput(NamedTuple):
    logits: torch.Tensor  # (B, L): one score per label


class NextSentencePredictorOutput(NamedTuple):
    logits: torch.Tensor  # (B, 2): "B follows A" (0) or "B is random" (1)


class PreTrainingOutput(NamedTuple):
    prediction_logits: torch.Tensor  # (B, T, V): the masked-LM head
    seq_relationship_logits: torch.Tensor  # (B, 2): the next-sentence head
