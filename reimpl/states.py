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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# The recording in progress, or None. A plain global rather than a ContextVar: the check runs
# ~20 times per layer, and a recording belongs to one forward on one thread.
_states: dict[str, torch.Tensor] | None = None


@contextmanager
def recording() -> Iterator[dict[str, torch.Tensor]]:
    """Record every named step of the forwards run inside the block, in forward order."""
    global _states
    outer, _states = _states, {}
    try:
        yield _states
    finally:
        _states = outer


def record(module: nn.Module, step: str, tensor: torch.Tensor) -> None:
    """Keep ``tensor`` as ``<module path>.<step>`` if a recording is in progress."""
    if _states is None:
        return
    path = getattr(module, "_annotate_path", "")
    _states[f"{path}.{step}" if path else step] = tensor.detach()


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
