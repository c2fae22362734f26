"""What the twins return: transformers' output fields by their names.

The base models return NamedTuples (``out.last_hidden_state`` or ``out[0]``). The heads return a
``ModelOutput``, which behaves as transformers' ModelOutput does for the fields the twins have:
fields by name, and as a tuple only the fields that are set, in order. So ``out[0]`` is the loss
when ``labels`` were given and the logits otherwise, as in transformers. (transformers' other
fields, hidden states and attentions, are left out: the twins record every intermediate state by
name instead, see reimpl/states.py.)
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch


class BaseModelOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, C)
    pooler_output: torch.Tensor | None = None  # (B, C); None for a model without a pooler


class Seq2SeqModelOutput(NamedTuple):
    last_hidden_state: torch.Tensor  # (B, T, C): the decoder's output
    encoder_last_hidden_state: torch.Tensor  # (B, S, C): the encoder's output, which every decoder layer attends to


class ModelOutput(tuple):
    """A head's output: named fields, declared as annotations in order; as a tuple, the fields that
    are not None (transformers' ModelOutput.to_tuple), so ``out[0]`` is the loss if there is one.

    ``_fields`` and ``_asdict()`` list the fields that are set, as transformers' ``keys()`` does.
    """

    field_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.field_names = tuple(cls.__dict__.get("__annotations__", {}))

    def __new__(cls, *args: torch.Tensor | None, **kwargs: torch.Tensor | None):
        values = dict(zip(cls.field_names, args))
        for name, value in kwargs.items():
            if name not in cls.field_names or name in values:
                raise TypeError(f"{cls.__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        self = super().__new__(cls, tuple(values[n] for n in cls.field_names if values.get(n) is not None))
        self.__dict__.update({name: values.get(name) for name in cls.field_names})
        return self

    @property
    def _fields(self) -> tuple[str, ...]:
        return tuple(name for name in self.field_names if self.__dict__[name] is not None)

    def _asdict(self) -> dict[str, Any]:
        return {name: self.__dict__[name] for name in self._fields}

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={tuple(v.shape) if isinstance(v, torch.Tensor) else v}" for name, v in self._asdict().items())
        return f"{type(self).__name__}({fields})"


class MaskedLMOutput(ModelOutput):
    loss: torch.Tensor | None  # (): mean cross-entropy at the labelled positions (labels != -100)
    logits: torch.Tensor  # (B, T, V): a score for every vocabulary entry at every position


class Seq2SeqLMOutput(ModelOutput):
    loss: torch.Tensor | None  # (): mean cross-entropy of the labels (-100: ignored)
    logits: torch.Tensor  # (B, T, V): scores for the target token after each decoder position
    encoder_last_hidden_state: torch.Tensor | None  # (B, S, C)


class CausalLMOutput(ModelOutput):
    loss: torch.Tensor | None  # (): mean cross-entropy of each next token (labels shifted by one inside)
    logits: torch.Tensor  # (B, T, V): scores for the token after each position


class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None  # (): cross-entropy, mean squared error or binary cross-entropy (problem_type)
    logits: torch.Tensor  # (B, L): one score per label


class NextSentencePredictorOutput(ModelOutput):
    loss: torch.Tensor | None  # (): cross-entropy of the next-sentence labels
    logits: torch.Tensor  # (B, 2): "B follows A" (0) or "B is random" (1)


class PreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None  # (): masked-LM loss + next-sentence loss, when both labels are given
    prediction_logits: torch.Tensor  # (B, T, V): the masked-LM head
    seq_relationship_logits: torch.Tensor  # (B, 2): the next-sentence head


def last_token_logits(logits: torch.Tensor, input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """(B, T, L) -> (B, L): each row's scores at its last token that is not ``pad_token_id`` (left or
    right padding alike; transformers' int32 arithmetic), the only one that has seen the whole text.
    What a decoder's sequence classifier reads (GPT2ForSequenceClassification, GenericForSequenceClassification)."""
    B, T = input_ids.shape
    if pad_token_id is None:
        if B != 1:
            raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined (config.pad_token_id).")
        last = torch.tensor([T - 1], device=input_ids.device)  # (1,)
    else:
        not_pad = (input_ids != pad_token_id).to(torch.int32)  # (B, T)
        last = (torch.arange(T, device=input_ids.device, dtype=torch.int32) * not_pad).argmax(-1)  # (B,)
    return logits[torch.arange(B, device=logits.device), last]  # (B, L)
