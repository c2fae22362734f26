"""Named intermediate states: what the tracer shows and the parity tests compare.

Every forward in reimpl/ calls ``record(self, "query", q)`` at each step of the math. Outside a
``recording()`` block that call is one global lookup and returns: nothing is kept, nothing is
copied. Inside one, the tensor is stored under ``<module path>.<step>``, where the module path is
the module's own path in transformers' model (``encoder.layer.3.attention.self``,
``transformer.h.0.attn``), so a reader can go from a name in a trace to the line that made it:

    with recording() as states:
        model(input_ids)
    states["encoder.layer.3.attention.self.probs"]  # (B, nh, T, T)

Module paths are set once by ``name_modules(root)`` when a whole model is built; a module used on
its own (``BertSelfAttention.from_hf(...)``) has the empty path and records bare step names.

Gradients, under the same names: ``recording(grads=True)`` also puts a hook on every recorded
tensor that requires a gradient, and ``backward`` fills ``states.grads`` with d loss / d stage,
so a stage's value and its gradient are read under one name (llm.c keeps ``residual_forward``
beside ``residual_backward``; here they share a key):

    with recording(grads=True) as states:
        loss = model(input_ids, labels=labels).loss
    loss.backward()
    states.grads["encoder.layer.3.attention.self.probs"]  # (B, nh, T, T): d loss / d probs

A name recorded twice in one forward (a module applied twice) keeps the last tensor, value and
gradient alike. The hooks change no number: a gradient is only read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# The recording in progress, or None. A plain global rather than a ContextVar: the check runs
# ~20 times per layer, and a recording belongs to one forward on one thread.
_states: Recording | None = None


class Recording(dict):
    """The recorded states by name (a dict), and ``grads``: their gradients by the same names, filled
    by ``backward`` when the recording was started with ``grads=True`` (else it stays empty)."""

    def __init__(self, grads: bool = False):
        super().__init__()
        self.grads: dict[str, torch.Tensor] = {}
        self.hooks: dict[str, torch.utils.hooks.RemovableHandle] | None = {} if grads else None

    def keep(self, name: str, tensor: torch.Tensor) -> None:
        """``tensor`` (detached: a recording never changes the graph) under ``name``; with gradients
        on, a hook that keeps the gradient of this very tensor under the same name."""
        self[name] = tensor.detach()
        if self.hooks is not None and tensor.requires_grad:
            if name in self.hooks:  # recorded again: the last tensor's gradient is the one kept
                self.hooks[name].remove()

            def keep_grad(grad: torch.Tensor) -> None:
                self.grads[name] = grad

            self.hooks[name] = tensor.register_hook(keep_grad)


@contextmanager
def recording(grads: bool = False) -> Iterator[Recording]:
    """Record every named step of the forwards run inside the block, in forward order; with
    ``grads``, also their gradients once ``backward`` runs (inside the block or after it)."""
    global _states
    outer, _states = _states, Recording(grads)
    try:
        yield _states
    finally:
        _states = outer


def record(module: nn.Module, step: str | None, tensor: torch.Tensor) -> None:
    """Keep ``tensor`` as ``<module path>.<step>`` if a recording is in progress (``step`` None: as
    the module's own path, for a module that records its own output, as Dropout does)."""
    if _states is None:
        return
    path = getattr(module, "_annotate_path", "")
    _states.keep(path if step is None else f"{path}.{step}" if path else step, tensor)


class Dropout(nn.Dropout):
    """nn.Dropout, the same call (``F.dropout(x, p, training)``), which in training records what it
    let through under its own path: ``encoder.layer.0.output.dropout``.

    In training it zeroes each value with probability p and scales the others by 1 / (1 - p), so
    the expected value is unchanged; it draws from torch's random stream, one Bernoulli per value,
    so the twins call it where transformers does, in the same order, on tensors of the same shapes.
    In eval mode it returns its input and records nothing (the stage before already holds it).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = super().forward(input)
        if self.training:
            record(self, None if getattr(self, "_annotate_path", "") else "dropout", output)
        return output


def name_modules(root: nn.Module) -> None:
    """Give every submodule its path in the model, the same path as in transformers' model."""
    for path, module in root.named_modules():
        module._annotate_path = path


@contextmanager
def applied_as(module: nn.Module, owner: nn.Module, step: str) -> Iterator[None]:
    """Inside the block, ``module`` and its submodules record under ``<owner path>.<step>``.

    For a module applied several times in one forward (ALBERT's shared layer groups): its own
    path is the same at every application, so each would overwrite the last; named per
    application (``encoder.layer.3``), every application keeps its steps. annotate.capture's
    ``Hooks.numbered`` gives transformers' calls the same names. Outside a recording, nothing
    changes and nothing is walked.
    """
    if _states is None:
        yield
        return
    owner_path = getattr(owner, "_annotate_path", "")
    path = f"{owner_path}.{step}" if owner_path else step
    subs = list(module.named_modules())
    saved = [getattr(sub, "_annotate_path", "") for _, sub in subs]
    for sub_path, sub in subs:
        sub._annotate_path = f"{path}.{sub_path}" if sub_path else path
    try:
        yield
    finally:
        for (_, sub), old in zip(subs, saved):
            sub._annotate_path = old
