"""One layout for a twin's recorded values and transformers' caught ones (annotate.capture), so
that they compare name by name: in the parity tests, ``--diff`` and its verdict, and ``--grad``.

- Q, K, V: the twin records them split into heads, (B, nh, T, hs); transformers' are its linear
  layers' outputs, (B, T, C). ``heads_merged`` puts the twin's side by side again (a copy: exact).
- The scores never leave transformers' eager_attention_forward: annotate.capture catches softmax's
  input, scores + mask, under ``<name>+mask``. Where the mask keeps a key it adds exactly 0, so the
  scores compare there (``keep``) and nowhere else (elsewhere it holds the mask's ~-3.4e38). Their
  gradient passes through that addition unchanged, so gradients compare everywhere (``keep`` None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def heads_merged(x: torch.Tensor) -> torch.Tensor:
    """The twin's (B, nh, T, hs) Q/K/V in transformers' (B, T, C) layout."""
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


def layout(name: str, x: torch.Tensor) -> torch.Tensor:
    """A recorded value in transformers' layout (Q/K/V split into heads are merged; the rest as is)."""
    return heads_merged(x) if name.endswith((".query", ".key", ".value")) and x.dim() == 4 else x


def keep_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) booleans, True where a query attends to a key: not padding, and for a decoder not the future."""
    B, T = input_ids.shape
    keep = torch.ones(B, 1, T, T, dtype=torch.bool)
    if attention_mask is not None:
        keep = keep & attention_mask[:, None, None, :].bool()
    if causal:
        keep = keep & torch.ones(T, T, dtype=torch.bool).tril()
    return keep


def seq2seq_keep(attention_mask: torch.Tensor | None, S: int, T: int) -> Callable[[str], torch.Tensor]:
    """An encoder-decoder's keep masks, by stage name: the encoder's self-attention (B, 1, 1, S)
    and the decoder's cross-attention see every source token but padding; the decoder's
    self-attention (1, 1, T, T) sees itself and the earlier target tokens."""
    source = torch.ones(1, 1, 1, S, dtype=torch.bool) if attention_mask is None else attention_mask[:, None, None, :].bool()
    causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None]

    def keep(name: str) -> torch.Tensor:
        return causal if ".decoder." in f".{name}" and ".self_attn." in name else source

    return keep


def keep_for(keep: torch.Tensor | Callable[[str], torch.Tensor] | None, name: str) -> torch.Tensor | None:
    """The keep mask of stage ``name``: one for every stage, or an encoder-decoder's by stage (``seq2seq_keep``)."""
    return keep(name) if callable(keep) else keep


def pairs(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], keep: torch.Tensor | None = None
          ) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """(name, ours, theirs) per stage of ``ours``, both in one layout; theirs None where it was not
    caught or has another shape. Scores: against transformers' softmax input where ``theirs`` has no
    plain scores, and where ``keep`` (booleans broadcastable to (B, nh, T, S)) says a key is seen."""
    for name, x in ours.items():
        y = theirs.get(name)
        masked = y is None and name.endswith(".scores") and name + "+mask" in theirs
        if masked:
            y = theirs[name + "+mask"]
        if y is None:
            yield name, x, None
            continue
        x, y = layout(name, x), layout(name, y)
        if x.shape != y.shape:
            yield name, x, None
            continue
        if name.endswith(".scores") and keep is not None:
            where = keep_for(keep, name).to(y.device).expand_as(y)
            if masked and y.is_floating_point():  # and where the model's own mask keeps it (a sliding window's too)
                where = where & (y > torch.finfo(y.dtype).min / 2)
            x, y = x[where.to(x.device)], y[where]
        yield name, x, y


def max_diffs(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], keep: torch.Tensor | None = None
              ) -> dict[str, float | None]:
    """max |ours - theirs| per stage of ``ours`` (in float64); None where ``theirs`` has no such value."""
    return {
        name: None if y is None else ((x.detach().cpu().double() - y.detach().cpu().double()).abs().max().item() if x.numel() else 0.0)
        for name, x, y in pairs(ours, theirs, keep)
    }
