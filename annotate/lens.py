"""The logit lens: what the model would predict if it stopped after each layer.

Every layer's output, the residual stream after it, is put through what the model puts its last
layer's output through: the base model's final norm if it has one (GPT-2's ``ln_f``, Llama's
``norm``: a stage of kind "norm" recorded after the last layer, inside the base model), then the
head's own modules, as the head interface names them (``Output.through`` in
annotate/models/<type>.py: GPT-2's and Llama's ``lm_head``; a masked LM's whole MLM head, its
transform - dense, activation, LayerNorm - then its decoder). The same modules on tensors of the
same shape, one layer at a time, so the last layer's lens *is* the model's logits, bit for bit
(tests/test_lens.py checks ``torch.equal``).

What it means: a causal LM's row for layer L is, at each position, the next token the model would
give if its layers stopped at L. A masked LM's is the token its MLM head would put at each position
from layer L's vectors. That head's transform learned to read the last layer only; earlier layers
go through it all the same (that is the lens), so their guesses show what the head makes of them,
not something the model itself computes.

No model names here: only the head interface (annotate/models) and the step kinds.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import torch

from annotate import models
from annotate.errors import UserError
from annotate.i18n import t
from reimpl import registry
from reimpl.states import recording

VOCABULARY = ("next-token", "masked-tokens")  # the outputs that score the vocabulary: an LM head


@dataclasses.dataclass
class Lens:
    reads: str  # how the head's scores read: "next-token" (a causal LM) or "masked-tokens" (a masked LM)
    norms: list[str]  # the base model's final norm, if it has one: ["model.norm"], ["transformer.ln_f"], []
    head: tuple[str, ...]  # the head's modules: ("lm_head",), ("cls.predictions",)
    layers: list[LensLayer]

    def to_list(self) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self.layers]


@dataclasses.dataclass
class LensLayer:
    layer: int
    top: list[list[Any]]  # per position, the top tokens (annotate.tracer.Prediction), likeliest first

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "top": [[{"id": p.id, "token": p.token, "prob": p.prob} for p in row] for row in self.top]}


def lm_output(twin) -> models.Output:
    """The head's output that scores the vocabulary (a causal LM's next token, a masked LM's tokens);
    a UserError for a model without an LM head."""
    head = models.head_of(twin)
    name = type(twin).__name__
    found = next((o for reads in VOCABULARY if head is not None and (o := head.reading(reads)) is not None), None)
    if found is None:
        what = t("a base model") if head is None else t("its head is for {task}: it scores no vocabulary", task=head.task)
        raise UserError(t("--lens: {name} has no LM head ({what}); the lens reads each layer's output through a causal or masked LM's head", name=name, what=what))
    if not found.through:
        where = f"annotate/models/{twin.config.model_type.replace('-', '_')}.py"
        raise UserError(t("--lens: {name}'s scores are not a chain of modules the lens can call on a layer's output ({where} names none: Output.through)", name=name, where=where))
    return found


def _layers(twin) -> tuple[str, int]:
    """Where the layers' outputs are recorded ("transformer.h", "model.layers"), and how many there are."""
    arch = registry.architecture_of(twin)
    return f"{twin.base_model_prefix}.{arch.layers}", twin.config.num_hidden_layers


def modules(twin, states: dict[str, torch.Tensor]) -> list[str]:
    """The twin's modules from a layer's output to the scores, in order: the base model's final
    norm, if a stage of kind "norm" follows the last layer inside the base model (``states``: a
    recording of the twin, in forward order), then the head's (``Output.through``)."""
    return [*final_norms(twin, states), *lm_output(twin).through]


def final_norms(twin, states: dict[str, torch.Tensor]) -> list[str]:
    """The base model's final norm, by its step kind: the stages of kind "norm" after the last
    layer's output and inside the base model (GPT-2's ln_f, Llama's norm; none in a post-LN BERT)."""
    from annotate import stages

    model_type = twin.config.model_type
    knowledge = models.get(model_type)
    layers, n = _layers(twin)
    names = list(states)
    after = names[names.index(f"{layers}.{n - 1}") + 1 :]  # after the last layer's output
    base = twin.base_model_prefix + "."
    return [name for name in after if name.startswith(base) and knowledge.kind(stages.step_of(model_type, name)) == "norm"]


def logits(twin, states: dict[str, torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
    """(layer, its lens logits (B, T, V)) for every layer, in order, from a recording of the twin's
    forward; the last layer's are the model's own."""
    calls = [functools.reduce(getattr, path.split("."), twin) for path in modules(twin, states)]  # modules, or an activation function
    layers, n = _layers(twin)
    with torch.inference_mode(), recording():  # a recording of its own: the modules record into it, not into a caller's
        for layer in range(n):
            h = states[f"{layers}.{layer}"]  # (B, T, C): the residual stream after the layer
            for call in calls:
                h = call(h)
            yield layer, h  # (B, T, V)


def lens(twin, states: dict[str, torch.Tensor], top) -> Lens:
    """Every layer's lens on the first text of the batch, as its top tokens per position;
    ``top(probs)`` ranks a (V,) distribution (annotate.tracer's, so the tokens read as the
    predictions do)."""
    out = []
    for layer, scores in logits(twin, states):
        probs = torch.softmax(scores[0].double(), dim=-1)  # (T, V), as the predictions are computed
        out.append(LensLayer(layer, [top(p) for p in probs]))
    output = lm_output(twin)
    return Lens(output.reads, final_norms(twin, states), output.through, out)
