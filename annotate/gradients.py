"""What ``annotate trace --grad`` adds to a trace: the model's natural loss, backpropagated, and
each stage's gradient (d loss / d stage) beside its value, under the same name.

The loss, by what the head predicts (its head interface, annotate/models), computed by the head itself from
``labels``, as transformers computes it:

- a causal LM (GPT-2): the language-model loss of the text, each token predicted from the ones
  before it (labels = the input ids; the head shifts them);
- a masked LM: the cross-entropy of ``--target WORD`` at each mask token (default: the model's
  own top prediction there, the loss that sharpens what it already believes);
- a classifier: the cross-entropy of ``--label`` (default: the predicted label); a regression
  head (one label) the squared error to ``--label VALUE``; a multi-label head the binary
  cross-entropy of the labels named (default: those predicted);
- next-sentence and pre-training heads: the same for the sentence label (and the masks);
- ELECTRA's discriminator: binary cross-entropy of its own replaced / original calls.

A model without a head has no loss to take, and is refused. The twin runs as for the trace, in
eval mode (no dropout): the values are the trace's, and the gradients are those of these values.
With ``--diff``, transformers' model takes the same loss and its gradients are caught under the
twin's names (annotate.capture), stage by stage and parameter by parameter.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from annotate import models
from annotate.errors import UserError
from annotate.i18n import t
from reimpl import registry
from reimpl.states import recording


@dataclasses.dataclass
class Loss:
    kind: str  # the head's task: "causal-lm", "masked-lm", "sequence-classification", ...
    value: float
    target: str  # what the loss scores: "the text", a word ("paris"), a label ("positive")
    description: str  # one line: "cross-entropy of 'paris' at [MASK] (position 6)"
    abs_diff: float | None = None  # |twin's loss - transformers'| under --diff


def _one_token(tokenizer, word: str) -> int:
    """The vocabulary id of ``word``: a token as spelled (``##ing``, ``Ġcat``), or a word the
    tokenizer turns into one token (for a byte-level BPE, as after a space, where a mask sits)."""
    if tokenizer.fast is not None:
        if (id := tokenizer.fast.token_to_id(word)) is not None:
            return id
        byte_level = type(tokenizer.fast.decoder).__name__ == "ByteLevel"
        attempts = ([" " + word] if byte_level else []) + [word]
        encodings = [tokenizer.fast.encode(text, add_special_tokens=False) for text in attempts]
        pieces = [(e.ids, e.tokens) for e in encodings]
    else:
        pieces = [(ids := tokenizer.auto(word, add_special_tokens=False)["input_ids"], tokenizer.auto.convert_ids_to_tokens(ids))]
    for ids, _ in pieces:
        if len(ids) == 1:
            return ids[0]
    ids, tokens = pieces[-1]
    raise UserError(t("--target {word!r} is {n} tokens ({tokens}); it must be one token of the vocabulary",
                      word=word, n=len(ids), tokens=" ".join(tokens)))


def _label_id(names: dict[int, str], given: str) -> int:
    """A label by its name (config.id2label's) or its number."""
    for id, name in names.items():
        if name == given:
            return id
    if given.isdigit() and int(given) in names:
        return int(given)
    raise UserError(t("--label {given!r} is not one of this model's labels: {labels} (or their numbers 0-{last})",
                      given=given, labels=", ".join(names.values()), last=len(names) - 1))


def choose(result, twin, inputs: dict[str, torch.Tensor], tokenizer, target: str | None, label: str | None) -> tuple[dict[str, torch.Tensor], Loss]:
    """The labels for the twin's forward, and what the loss is: one term per output of the head
    (annotate/models' head interface: how it reads, which argument takes its labels), its labels
    from the trace's predictions (the defaults) or from ``target`` / ``label``."""
    head = models.head_of(twin)
    if head is None:
        heads = ", ".join(cls.__name__ for cls in registry.architecture_of(twin).heads)
        raise UserError(t("--grad needs a loss, and {cls} has no head to take one from: use a checkpoint "
                          "saved with a head ({heads}), e.g. a classifier fine-tuned from it (guide 9)",
                          cls=type(twin).__name__, heads=heads))
    if target is not None and head.reading("masked-tokens") is None:
        raise UserError(t("--target is for a masked LM (the word to score at each mask); {cls} is a {task} head",
                          cls=type(twin).__name__, task=head.task))
    if label is not None and head.reading("labels") is None:
        raise UserError(t("--label is for a classifier (the label to score); {cls} is a {task} head",
                          cls=type(twin).__name__, task=head.task))
    labels: dict[str, torch.Tensor] = {}
    described: list[str] = []
    targets: list[str] = []
    for o in head.outputs:
        value, target_names, text = _LABELS[o.reads](result, twin, inputs, tokenizer, o, target, label)
        labels[o.labels] = value
        targets += target_names
        described.append(text)
    text = " + ".join(described)  # two only for pre-training, whose loss is the sum
    return labels, Loss(head.task, float("nan"), ", ".join(dict.fromkeys(targets)), text)


def _next_tokens(result, twin, inputs, tokenizer, o, target, label):
    """A causal LM: the text itself (shifted inside the head: token t + 1 scored at position t)."""
    return torch.tensor([result.ids]), ["the text"], f"mean cross-entropy of each next token ({len(result.ids) - 1} predictions)"


def _masked_tokens(result, twin, inputs, tokenizer, o, target, label):
    """A masked LM: at each mask, ``target`` (default: the model's own top prediction there)."""
    if not result.mask_predictions:
        mask = tokenizer.token(tokenizer.mask_token_id(result.folder)) or "[MASK]"
        raise UserError(t("--grad: a masked LM's loss is the cross-entropy at its mask tokens, and the text has none: "
                          "put {mask} where a word is to be predicted", mask=mask))
    masked = torch.full((1, len(result.ids)), -100)  # -100: not scored
    targets = []
    for m in result.mask_predictions:
        id = _one_token(tokenizer, target) if target is not None else m.top[0].id
        masked[0, m.position] = id
        targets.append(tokenizer.token(id))
    where = ", ".join(str(m.position) for m in result.mask_predictions)
    return masked, targets, f"cross-entropy of {', '.join(repr(token) for token in dict.fromkeys(targets))} at the mask (position {where})"


def _labels(result, twin, inputs, tokenizer, o, target, label):
    """A classifier: ``label`` (default: the predicted one); a regression head (one output of a
    classifier whose config names its labels) the squared error to ``label``; multi-label: the
    labels named (default: those predicted)."""
    names = o.names or twin.config.id2label
    predicted = max(range(len(result.labels)), key=lambda i: result.labels[i].prob)
    problem = None if o.names else twin.config.problem_type
    if o.names is None and problem is None and twin.num_labels == 1:
        problem = "regression"  # as reimpl/losses.py decides for one label
    if problem == "regression":
        if label is None:
            raise UserError(t("--grad: a regression head (one output) needs the value to score against: --label VALUE"))
        try:
            value = float(label)
        except ValueError:
            raise UserError(t("--label {label!r}: a regression head takes a number", label=label)) from None
        return torch.tensor([value]), [label], f"squared error to {value}"
    if problem == "multi_label_classification":
        if label:
            chosen = [_label_id(names, name.strip()) for name in label.split(",")]
        else:  # what it predicts: each label whose own sigmoid passes 0.5, i.e. whose logit is positive
            with torch.no_grad():
                chosen = (getattr(twin(**inputs), o.field)[0] > 0).nonzero().flatten().tolist()
        hot = torch.zeros(1, len(names))
        hot[0, chosen] = 1.0
        chosen_names = ",".join(names[i] for i in chosen) or "none"
        return hot, [chosen_names], f"binary cross-entropy of each label against {{{chosen_names}}}"
    id = _label_id(names, label) if label is not None else predicted
    return torch.tensor([id]), [names[id]], f"cross-entropy of the label {names[id]!r}"


def _replaced_tokens(result, twin, inputs, tokenizer, o, target, label):
    """ELECTRA's discriminator: its own replaced / original calls."""
    calls = torch.tensor([[1 if r.prob > 0.5 else 0 for r in result.replaced]])
    return calls, ["its own calls"], f"binary cross-entropy of its own calls ({int(calls.sum())} of {len(result.ids)} replaced)"


_LABELS = {"next-token": _next_tokens, "masked-tokens": _masked_tokens, "labels": _labels, "replaced-tokens": _replaced_tokens}


@dataclasses.dataclass
class Backward:
    """What backpropagating the head's loss gives a trace."""

    loss: Loss
    grads: dict[str, torch.Tensor]  # d loss / d stage, for each of the trace's stages
    grad_diffs: dict[str, float | None] | None = None  # under diff: max |twin's - transformers'| per stage
    param_grad_max_abs_diff: float | None = None  # under diff: the largest difference of any parameter's gradient
    param_grads_compared: int = 0


def backward(result, twin, inputs: dict[str, torch.Tensor], tokenizer, *, diff: bool, target: str | None, label: str | None) -> Backward:
    """Take the loss of ``result`` (a trace: its predictions give the default labels), backpropagate
    through the twin, and (under ``diff``) through transformers' model from the same files."""
    labels, loss = choose(result, twin, inputs, tokenizer, target, label)
    twin.zero_grad(set_to_none=True)
    with torch.enable_grad(), recording(grads=True) as states:
        out = twin(**inputs, **labels)
        out.loss.backward()
    loss.value = out.loss.item()
    found = Backward(loss, {stage.name: states.grads[stage.name] for stage in result.stages if stage.name in states.grads})
    if not diff:
        return found
    from annotate import compare
    from annotate.capture import differences, hf_states

    extra = {"use_cache": False} if result.causal else {}
    with compare.quiet_transformers():  # GPT-2 warns of its default loss_type while computing it
        hf = compare.load_transformers(result.folder, twin, "eager", torch.float32)
        with torch.enable_grad(), hf_states(hf, grads=True) as theirs:
            hf_out = hf(**inputs, **labels, **extra)
            hf_out.loss.backward()
    loss.abs_diff = abs(out.loss.item() - hf_out.loss.item())
    found.grad_diffs = differences(found.grads, theirs.grads, keep=None)  # gradients: compared everywhere, masked keys too
    theirs_params = dict(hf.named_parameters())
    worst = 0.0
    for name, p in twin.named_parameters():
        q = theirs_params[name]
        if (p.grad is None) != (q.grad is None):
            worst = float("inf")
        elif p.grad is not None:
            worst = max(worst, (p.grad.double() - q.grad.double()).abs().max().item())
    found.param_grad_max_abs_diff, found.param_grads_compared = worst, len(theirs_params)
    return found


def to_dict(result) -> dict[str, Any]:
    """The trace's top-level --grad fields for --json (the per-stage ones are in Trace.to_dict)."""
    out: dict[str, Any] = {"loss": dataclasses.asdict(result.loss)}
    if result.diffed:
        out["param_grad_max_abs_diff"] = result.param_grad_max_abs_diff
        out["first_grad_divergence"] = result.first_grad_divergence()
    return out
