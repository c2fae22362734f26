"""``annotate.record(name, tensor)``: name a step of your own forward for ``annotate check``.

Call it in your own module's forward, with the twin's step name for the kind you are graded as
(``annotate check --list`` lists them: ``query``, ``scores``, ``probs`` for bert-attention)::

    from annotate import record

    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    record("scores", scores)

Outside a grading run it does nothing (one global lookup), so the module runs as it is anywhere
else; inside one (annotate/grader.py opens it around each call of your forward) it keeps a copy of
the tensor under that name, in the order of the calls. A copy: an in-place change after the call
(``scores.masked_fill_(...)``) does not change what was recorded. A short name means the next
step of that name in forward order: in a GPT-2 block, the attention's ``c_proj`` and then the
MLP's, so a block may record through an attention class written for ``gpt2-attention``.

A leaf module: no torch import, so that ``from annotate import record`` is free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# The grading run in progress: (name, tensor) in the order recorded; None outside one.
_steps: list | None = None


def record(name: str, tensor) -> None:
    """Keep a copy of ``tensor`` as the step ``name`` if a grading run is in progress; else nothing."""
    if _steps is None:
        return
    if not isinstance(name, str):
        raise TypeError(f"annotate.record: the step's name must be a string, not {type(name).__name__}")
    clone = getattr(tensor, "detach", None)
    _steps.append((name, clone().clone() if clone is not None else tensor))


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Inside the block, ``record`` keeps what it is given: the list yielded, of (name, tensor)."""
    global _steps
    outer, _steps = _steps, []
    try:
        yield _steps
    finally:
        _steps = outer
