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

import html
from pathlib import Path
from typing import Any

from annotate.errors import UserError
from annotate.explorer import _asset, _script_json, check_target


def _round(rows) -> list:
    return [[round(float(p), 4) for p in row] for row in rows]


def data(t) -> dict[str, Any]:
    """What the page draws: tokens, every attention (rounded to 4 digits), the masks, the verdicts."""
    def layers(stack: str, count: int, cross: bool = False) -> list[list[list[list[float]]]]:
        return [[_round(head) for head in t.attention(stack, L, cross).tolist()] for L in range(count)]  # (L, nh, T, K)

    S, T = len(t.source_tokens), len(t.target_tokens)
    source_mask = [1] * S  # one source, no padding: every column kept (a padded batch would block its padding's)
    return {
        "model": t.model, "model_class": t.model_class, "model_type": t.model_type,
        "source": t.source, "translation": t.translation, "given_target": t.given_target,
        "source_tokens": t.source_tokens, "target_tokens": t.target_tokens,
        "next_tokens": [{"token": p.token, "prob": round(p.prob, 4)} for p in t.next_tokens],
        "encoder": layers("encoder", t.encoder_layers),
        "decoder": layers("decoder", t.decoder_layers),
        "cross": layers("decoder", t.decoder_layers, cross=True),
        "masks": {
            "padding": [source_mask[:] for _ in range(S)],
            # the same source in a batch beside one two tokens longer: padded on the right, those columns blocked
            "padded": [[1] * S + [0, 0] for _ in range(S + 2)],
            "causal": [[1 if j <= i else 0 for j in range(T)] for i in range(T)],
            "cross": [source_mask[:] for _ in range(T)],
        },
        "stages": [{"name": s.name, "verdict": s.verdict, "max_abs_diff": s.max_abs_diff} for s in t.stages] if t.diffed else None,
        "first_math": t.first_math() if t.diffed else None,
    }


def page(t) -> str:
    """The whole page: one HTML document with its data, style and script inside."""
    title = f"annotate · {t.model_class} · {t.source if len(t.source) <= 40 else t.source[:39] + '…'}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{_asset('explorer_translate.css')}</style>\n</head>\n<body>\n"
        '<div id="app"><noscript>The explorer draws with JavaScript; turn it on to see the trace.</noscript></div>\n'
        f'<script type="application/json" id="annotate-data">{_script_json(data(t))}</script>\n'
        f"<script>\n{_asset('explorer_translate.js')}</script>\n</body>\n</html>\n"
    )


def write(t, path: str | Path) -> int:
    """Write the page to ``path``; returns its size in bytes."""
    path = check_target(path)
    text = page(t).encode("utf-8")
    try:
        path.write_bytes(text)
    except OSError as e:
        raise UserError(f"--html: could not write {str(path)!r}: {e.strerror or e}") from None
    return len(text)
