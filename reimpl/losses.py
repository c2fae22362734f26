"""The heads' losses, computed as transformers computes them: the same calls, the same reduction
(the mean), the same ignore index (-100), so that the loss and every gradient are bit-identical.

transformers writes these inside each head's forward (``CrossEntropyLoss()`` in BertForMaskedLM,
the ``problem_type`` branches in every *ForSequenceClassification) or in loss/loss_utils.py
(``ForCausalLMLoss``, which GPT2LMHeadModel reaches through ``self.loss_function``); the twins'
heads call the functions here, one line each, and the docstrings say which transformers code each
one mirrors.

Shape legend: B batch, T tokens, V vocabulary, L labels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IGNORE_INDEX = -100  # a label that takes no part in the loss: padding, unmasked positions


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``CrossEntropyLoss()(logits.view(-1, n), labels.view(-1))``: the masked-LM loss (n = V) and the
    next-sentence / sentence-order loss (n = 2). The mean of -log softmax(logits)[label] over the
    positions whose label is not -100; the logits keep their dtype (no upcast, unlike GPT-2's)."""
    return nn.CrossEntropyLoss()(logits.view(-1, num_classes), labels.view(-1))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """transformers' ForCausalLMLoss (loss/loss_utils.py): position t predicts token t + 1.

    ``labels`` are (B, T), usually the input ids themselves: they are shifted inside, by padding one
    -100 on the right and dropping the first, so every position keeps its logits (the last one is
    ignored) rather than the logits being cut. The logits are upcast to float32 first.
    """
    logits = logits.float()  # (B, T, V); a no-op in float32
    labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)  # (B, T + 1)
    shift_labels = labels[..., 1:].contiguous()  # (B, T): the next token at each position, -100 at the end
    logits = logits.view(-1, vocab_size)  # (B*T, V)
    return F.cross_entropy(logits, shift_labels.view(-1), ignore_index=IGNORE_INDEX, reduction="mean")


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config, num_labels: int) -> torch.Tensor:
    """The loss every *ForSequenceClassification computes, by ``config.problem_type``.

    Unset, transformers decides it from the first call's labels and writes it into the config, so
    later calls keep it: one label is regression (mean squared error), integer labels are
    single-label classification (cross-entropy), float labels with several labels are multi-label
    (binary cross-entropy with logits, each label on its own). The twin writes it into its config
    the same way.
    """
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif num_labels > 1 and (labels.dtype == torch.long or labels.dtype == torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        if num_labels == 1:
            return nn.MSELoss()(logits.squeeze(), labels.squeeze())  # (B,) against (B,)
        return nn.MSELoss()(logits, labels)
    if config.problem_type == "single_label_classification":
        return nn.CrossEntropyLoss()(logits.view(-1, num_labels), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return nn.BCEWithLogitsLoss()(logits, labels)
    raise ValueError(f"problem_type {config.problem_type!r} is not one of regression, single_label_classification, multi_label_classification")


def replaced_token_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """ElectraForPreTraining's: binary cross-entropy of "was this token replaced?" (labels 1/0), over
    the tokens the attention mask keeps (all of them without a mask)."""
    T = logits.shape[1]
    if attention_mask is not None:
        active = attention_mask.view(-1, T) == 1  # (B, T)
        return nn.BCEWithLogitsLoss()(logits.view(-1, T)[active], labels[active].float())
    return nn.BCEWithLogitsLoss()(logits.view(-1, T), labels.float())
