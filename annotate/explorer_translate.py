"""The explorer page of an encoder-decoder's trace (annotate/translate.py): one offline HTML file.

Four views, a tab each:

- **cross-attention**: for each target token, where it looked in the source (a grid, rows the
  target positions, columns the source tokens), per decoder layer and head or averaged; beside
  it, each position's strongest source tokens and the token the model chose next;
- **encoder** and **decoder**: each layer's self-attention, per head or averaged (the decoder's is
  a lower triangle: no token sees a later one);
- **masks**: the three masks of the paper, as this input gives them: the source's padding mask
  (the encoder's self-attention and the cross-attention never look at padding), the decoder's
  causal mask, and the cross-attention's mask (target rows, source columns);

and, with --diff, each stage's verdict against transformers (equal, rounding, math), the first
stage computing other math marked. The data is one JSON blob; explorer_translate.js draws it.
System fonts only, no request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from annotate import explorer
from annotate.explorer import _script_json, check_target  # noqa: F401 (check_target: the CLI asks it before tracing)


def _round(rows) -> list:
    return [[round(float(p), 4) for p in row] for row in rows]


def data(tr) -> dict[str, Any]:
    """What the page draws: tokens, every attention (rounded to 4 digits), the masks, the verdicts."""
    def layers(stack: str, count: int, cross: bool = False) -> list[list[list[list[float]]]]:
        return [[_round(head) for head in tr.attention(stack, L, cross).tolist()] for L in range(count)]  # (L, nh, T, K)

    S, T = len(tr.source_tokens), len(tr.target_tokens)
    source_mask = [1] * S  # one source, no padding: every column kept (a padded batch would block its padding's)
    return {
        "model": tr.model, "model_class": tr.model_class, "model_type": tr.model_type,
        "source": tr.source, "translation": tr.translation, "given_target": tr.given_target,
        "source_tokens": tr.source_tokens, "target_tokens": tr.target_tokens,
        "next_tokens": [{"token": p.token, "prob": round(p.prob, 4)} for p in tr.next_tokens],
        "encoder": layers("encoder", tr.encoder_layers),
        "decoder": layers("decoder", tr.decoder_layers),
        "cross": layers("decoder", tr.decoder_layers, cross=True),
        "masks": {
            "padding": [source_mask[:] for _ in range(S)],
            # the same source in a batch beside one two tokens longer: padded on the right, those columns blocked
            "padded": [[1] * S + [0, 0] for _ in range(S + 2)],
            "causal": [[1 if j <= i else 0 for j in range(T)] for i in range(T)],
            "cross": [source_mask[:] for _ in range(T)],
        },
        "stages": [{"name": s.name, "verdict": s.verdict, "max_abs_diff": s.max_abs_diff} for s in tr.stages] if tr.diffed else None,
        "first_math": tr.first_math() if tr.diffed else None,
    }


def page(tr) -> str:
    """The whole page: one HTML document with its data, style and script inside."""
    return explorer.document(explorer.title("annotate", tr.model_class, tr.source), ("explorer_translate.css",), "explorer_translate.js",
                             _script_json(data(tr)))


def write(tr, path: str | Path) -> int:
    """Write the page to ``path``; returns its size in bytes."""
    return explorer.write(tr, path, page)
