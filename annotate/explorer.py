"""The explorer: a trace as one self-contained web page, and the same view inline in Jupyter.

``annotate trace MODEL TEXT --html FILE`` writes it with ``write(trace, FILE)``; in a notebook the
Trace that ``annotate.trace`` returns shows it (``Trace._repr_html_`` calls ``notebook``). The page
is plain HTML, CSS and JavaScript (annotate/explorer.css, annotate/explorer.js, inlined): no CDN, no
web font, no request of any kind, so it works opened from file:// on a machine with no network.

What it shows, and what it is made from here (the page's script only draws):

- the flow chart: ``flow(trace)`` sorts the stages, in forward order, into the embeddings, each
  layer's branches (what branches off the residual stream: self-attention, feed-forward) and what
  stays on the stream (each ⊕ residual add, and a LayerNorm right after one: post-LN, as BERT; a
  LayerNorm opening a branch is pre-LN, as GPT-2), and what follows the layers;
- each stage: statistics, a histogram of its values, and ``annotate.stages.explain``'s formula
  with transformers' lines and the twin's (file, line numbers, text); under --diff, max |twin -
  transformers| and the first stage that differs;
- every head's attention: (layers, heads, T, T) probabilities as little-endian uint16
  (round(p * 65535): a step of 1.5e-5), base64, in one block the script decodes on first use;
- the residual stream: the norm |h| of each token's hidden state at every point of the stream;
- the head's predictions (next tokens, [MASK] answers, labels, replaced tokens).

Element contract (for tests): a stage's box has ``data-stage="<stage name>"``, a head's heatmap
``data-layer="L" data-head="H"``; selecting a stage fills ``#stage-panel``, whose source block has
transformers' file with its line numbers and the twin's ``reimpl/<file>.py:<line>``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from annotate.errors import UserError

HISTOGRAM_BINS = 40
CONTEXT_GAP = 3  # lines of a snippet further apart than this are shown with "⋮" between them


# ---------------------------------------------------------------------------------------------
# The flow chart: stages sorted into the residual stream and its branches.


def _step(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def is_residual(name: str) -> bool:
    """A residual add: the twins record each one as the step ``residual``."""
    return _step(name) == "residual"


def is_norm(name: str) -> bool:
    """A LayerNorm, by the names the twins use: LayerNorm, ln_1, ln_f, sa_layer_norm, full_layer_layer_norm."""
    step = _step(name).lower()
    return "layernorm" in step or "layer_norm" in step or step == "ln" or step.startswith("ln_")


def _is_lookup(name: str) -> bool:
    """An embedding table lookup (these run side by side, then are summed)."""
    step = _step(name)
    return step.endswith("_embeddings") or step in ("wte", "wpe", "token_type_embeds")


_QKV = re.compile(r"^(query|key|value|q_lin|k_lin|v_lin|q|k|v)$")


def _rows(names: list[str], parallel) -> list[list[str]]:
    """Consecutive names that ``parallel`` accepts share a row (Q, K and V; the embedding lookups)."""
    rows: list[list[str]] = []
    for name in names:
        if rows and parallel(name) and parallel(rows[-1][-1]):
            rows[-1].append(name)
        else:
            rows.append([name])
    return rows


def flow(trace) -> dict[str, Any]:
    """The flow chart as data: ``before`` and ``after`` the layers (rows of stage names), and per
    layer its ``blocks`` in forward order: ``{"kind": "branch", "title", "rows"}`` off the stream,
    ``{"kind": "add", "stage"}`` a residual add onto it, ``{"kind": "norm", "stage"}`` a LayerNorm on
    the stream itself (post-LN); ``output`` is the layer's own output stage. ``norm``: "post-LN" (a
    LayerNorm on the stream after each add), "pre-LN" (each branch opens with one), or "none"."""
    names = [s.name for s in trace.stages]
    layered = [i for i, s in enumerate(trace.stages) if s.layer is not None]
    if not layered:
        return {"before": _rows(names, _is_lookup), "layers": [], "after": [], "norm": "none"}
    first, last = layered[0], layered[-1]
    layers = []
    post = pre = False
    for layer in range(trace.num_layers):
        output = f"{trace.layers_path}.{layer}"
        inside = [s.name for s in trace.stages if s.layer == layer and s.name != output]
        blocks: list[dict[str, Any]] = []
        branch: list[str] = []
        for i, name in enumerate(inside):
            if is_residual(name):
                if branch:
                    blocks.append(_branch(branch))
                    pre = pre or is_norm(branch[0])
                    branch = []
                blocks.append({"kind": "add", "stage": name})
            elif is_norm(name) and i and is_residual(inside[i - 1]) and _on_stream(trace, inside, i, output):
                blocks.append({"kind": "norm", "stage": name})
                post = True
            else:
                branch.append(name)
        if branch:  # a branch that is never added back (none of the twins has one)
            blocks.append(_branch(branch))
        layers.append({"layer": layer, "blocks": blocks, "output": output if output in trace.states else None})
    return {
        "before": _rows(names[:first], _is_lookup),
        "layers": layers,
        "after": [[name] for name in names[last + 1 :]],
        "norm": "post-LN" if post else "pre-LN" if pre else "none",
    }


def _on_stream(trace, names: list[str], i: int, output: str) -> bool:
    """Whether the LayerNorm ``names[i]``, right after a residual add, normalizes the stream itself
    (post-LN: BERT's LayerNorm(x + sublayer(x))) or only opens the next branch (pre-LN: GPT-2's
    ln_2). Read from the values, not the names: the next add is (the stream it adds to) + (its
    branch's last stage), so subtracting the branch leaves the norm's output (post-LN) or the add
    before it (pre-LN), to within the rounding of one addition. A norm after the layer's last add
    is on the stream if it is what the layer outputs."""
    norm, add = trace.states[names[i]], trace.states[names[i - 1]]
    following = next((j for j in range(i + 1, len(names)) if is_residual(names[j])), None)
    if following is None:
        return output not in trace.states or torch.equal(trace.states[output], norm)
    if following == i + 1:
        return True
    stream = trace.states[names[following]] - trace.states[names[following - 1]]
    if stream.shape != norm.shape or stream.shape != add.shape:
        return True
    return (stream - norm).abs().max().item() < (stream - add).abs().max().item()


def labels(trace) -> dict[str, str]:
    """A short name for each stage's box: inside a layer, the shortest tail of its path that no
    other stage of the layer shares ("query", "intermediate.dense", "attention.output.dense");
    outside the layers, the whole name ("pooler.dense": its path says which dense)."""
    groups: dict[int | None, list[tuple[str, list[str]]]] = {}
    out = {}
    for s in trace.stages:
        if s.layer is None:
            out[s.name] = s.name
            continue
        if s.name == f"{trace.layers_path}.{s.layer}":
            parts = ["output"]
        else:
            parts = s.name[len(f"{trace.layers_path}.{s.layer}.") :].split(".")
        groups.setdefault(s.layer, []).append((s.name, parts))
    for members in groups.values():
        for name, parts in members:
            for k in range(1, len(parts) + 1):
                tail = parts[-k:]
                if not any(other[-k:] == tail for n, other in members if n != name):
                    break
            out[name] = ".".join(tail)
    return out


def _branch(names: list[str]) -> dict[str, Any]:
    title = "self-attention" if any(_step(n) == "probs" for n in names) else "feed-forward"
    return {"kind": "branch", "title": title, "rows": _rows(names, lambda n: bool(_QKV.match(_step(n))))}


def stream(trace, chart: dict[str, Any]) -> dict[str, Any]:
    """The residual stream, point by point: what enters the first layer, the stream after each
    add (after its LayerNorm, post-LN), and a LayerNorm right after the layers (GPT-2's ln_f; a
    head's own LayerNorm, as in BERT's masked-LM transform, is not the stream). ``norms``: per
    point, |h| of each token's vector (L2 over the hidden size)."""
    points: list[tuple[str, str]] = []  # (label, stage)
    before = [name for row in chart["before"] for name in row]
    if before:
        points.append(("embeddings", before[-1]))
    for layer in chart["layers"]:
        blocks = layer["blocks"]
        for i, block in enumerate(blocks):
            if block["kind"] == "branch" or (block["kind"] == "add" and i + 1 < len(blocks) and blocks[i + 1]["kind"] == "norm"):
                continue
            title = next((b["title"] for b in reversed(blocks[:i]) if b["kind"] == "branch"), "")
            points.append((f"layer {layer['layer']} · {'attn' if title == 'self-attention' else 'ffn'}", block["stage"]))
        if points and layer["output"]:
            points[-1] = (f"layer {layer['layer']}", layer["output"])  # the layer's output: the same values as its last add
    if chart["after"] and is_norm(chart["after"][0][0]):  # right after the layers: a norm of the stream itself (ln_f)
        points.append(("final norm", chart["after"][0][0]))
    T = len(trace.tokens)
    kept = [(label, name) for label, name in points if tuple(trace.states[name].shape[:2]) == (1, T) and trace.states[name].dim() == 3]
    norms = [[_round(v) for v in trace.states[name][0].norm(dim=-1).tolist()] for _, name in kept]  # fp32: 4 digits are shown
    return {"labels": [label for label, _ in kept], "stages": [name for _, name in kept], "norms": norms}


# ---------------------------------------------------------------------------------------------
# Numbers.


def layer_rows(trace, chart: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer, what its collapsed box says: ``norm``, the mean over tokens of |h| after it;
    ``change``, the mean over tokens of |h_out - h_in| / |h_in|; ``diff``, the largest max
    |twin - transformers| of its stages (None without --diff). As the terminal's one-line-per-layer
    view (Trace.layer_summary), in fp32: the page shows 4 digits."""
    before = [name for row in chart["before"] for name in row]
    h = trace.states[before[-1]][0] if before else None  # (T, C): what enters layer 0
    rows = []
    for layer in chart["layers"]:
        out = trace.states.get(layer["output"]) if layer["output"] else None
        row: dict[str, Any] = {"layer": layer["layer"], "norm": None, "change": None}
        if out is not None:
            out = out[0]  # (T, C)
            row["norm"] = out.norm(dim=-1).mean().item()
            if h is not None and h.shape == out.shape:
                row["change"] = ((out - h).norm(dim=-1) / h.norm(dim=-1)).mean().item()
            h = out
        diffs = [s.max_abs_diff for s in trace.stages if s.layer == layer["layer"] and s.max_abs_diff is not None]
        row["diff"] = max(diffs) if trace.diffed and diffs else None
        rows.append(row)
    return rows


def _round(x: float) -> float:
    """Four significant digits: what a plot or a hover needs (the statistics are kept whole)."""
    return float(f"{x:.4g}")


def histogram(x: torch.Tensor, lo: float, hi: float, bins: int = HISTOGRAM_BINS) -> list[int]:
    """Counts of ``x``'s values in ``bins`` equal bins from ``lo`` to ``hi``, its min and max (one
    bin if they are equal). In fp32: a picture, and a bert-base trace has 10^7 values to count."""
    x = x.detach().float()
    if not (math.isfinite(lo) and math.isfinite(hi)):  # an overflow: count the finite values
        x = x[torch.isfinite(x)]
        if not x.numel():
            return []
        lo, hi = x.min().item(), x.max().item()
    if lo == hi:
        return [x.numel()]
    return [int(c) for c in torch.histc(x, bins=bins, min=lo, max=hi).tolist()]


def attention_blob(trace) -> str:
    """Every layer's attention probabilities, (layers, heads, T, T), as base64 of little-endian uint16."""
    probs = torch.stack([trace.attention(layer) for layer in range(trace.num_layers)])  # (L, nh, T, T)
    q = torch.round(probs.float().clamp(0, 1) * 65535).to(torch.int32)  # (L, nh, T, T), 0..65535
    raw = q.numpy().astype("<u2").tobytes()
    return base64.b64encode(raw).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Source: annotate.stages.explain, shown as the lines of each file around those that compute a stage.


@functools.cache
def _file_lines(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


@functools.cache
def _transformers_root() -> Path | None:
    from annotate import source

    try:
        return source.package_dir("transformers").parent
    except UserError:
        return None


def _display(path: Path) -> str:
    """reimpl/bert.py for the twin; transformers/models/bert/modeling_bert.py for transformers'."""
    from annotate import source

    shown = source.display_path(path)
    root = _transformers_root()
    if shown == str(path) and root is not None:
        try:
            return str(Path(path).resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return shown


def _snippet(snippet) -> dict[str, Any]:
    """A snippet as the page shows it: its file, its lines (those that compute the stage, marked),
    with the lines between them when they are close, and "⋮" where they are not."""
    lines = list(snippet.lines)
    text = _file_lines(snippet.path)
    shown: list[list[Any]] = []  # [number, text, marked]; number 0: a gap
    for i, n in enumerate(lines):
        if i and n - lines[i - 1] > 1:
            if n - lines[i - 1] <= CONTEXT_GAP + 1:
                shown.extend([m, text[m - 1], False] for m in range(lines[i - 1] + 1, n))
            else:
                shown.append([0, "⋮", False])
        shown.append([n, text[n - 1], True])
    # A first line deeper than the others sits in a block the snippet doesn't show ("if mask is
    # not None:"): add that block's header, unmarked, so the indentation reads as code.
    depth = lambda t: len(t) - len(t.lstrip())  # noqa: E731
    marked = [t for n, t, hit in shown if hit and t.strip()]
    if len(marked) > 1 and depth(marked[0]) > min(depth(t) for t in marked):
        for m in range(lines[0] - 1, max(lines[0] - 1 - CONTEXT_GAP, 0), -1):
            if text[m - 1].strip() and depth(text[m - 1]) < depth(marked[0]):
                shown[:0] = [[k, text[k - 1], False] for k in range(m, lines[0])]
                break
    code = [t for n, t, _ in shown if n and t.strip()]
    indent = min((len(t) - len(t.lstrip()) for t in code), default=0)  # shown as a block, from column 0
    for row in shown:
        if row[0]:
            row[1] = row[1][indent:]
    first, last = lines[0], lines[-1]
    where = f"{_display(snippet.path)}:{first}" + (f"-{last}" if last != first else "")
    return {"where": where, "path": str(snippet.path), "function": snippet.qualname, "lines": shown}


def explanations(trace) -> tuple[list[dict[str, Any]], list[int | None]]:
    """The distinct explanations of the trace's stages (the same step in every layer shows the
    same lines) and, per stage, the index of its own."""
    from annotate import stages

    table: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    index: list[int | None] = []
    for stage in trace.stages:
        name = stage.name
        if stage.layer is not None:  # every layer runs the same lines: ask once, as layer 0 (explain caches by name)
            name = f"{trace.layers_path}.0" + name[len(f"{trace.layers_path}.{stage.layer}") :]
        try:
            e = stages.explain(trace.model_type, name, trace.model_class)
        except UserError:
            index.append(None)
            continue
        entry = {
            "step": e.step,
            "formula": e.formula,
            "hf": [_snippet(s) for s in e.hf],
            "twin": _snippet(e.twin) if e.twin is not None else None,
            "note": e.note,
        }
        key = json.dumps(entry, sort_keys=True)
        if key not in seen:
            seen[key] = len(table)
            table.append(entry)
        index.append(seen[key])
    return table, index


# ---------------------------------------------------------------------------------------------
# The page.


@contextlib.contextmanager
def _one_thread():
    """The page's numbers are a few hundred small reductions (histograms, norms): on one thread.
    Measured for MiniLM on a 2-core machine under load: data() took 0.79 s on torch's 2 threads
    and 0.024 s on one (the threads wait for each other longer than they share the work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def data(trace) -> dict[str, Any]:
    """Everything the page shows, as plain data (the attention goes in its own block: ``attention_blob``)."""
    with _one_thread():
        return _data(trace)


def _data(trace) -> dict[str, Any]:
    from annotate import source

    chart = flow(trace)
    table, index = explanations(trace)
    diffs = {s.name: s.max_abs_diff for s in trace.stages}
    plain = trace.to_dict()
    try:
        version = source.transformers_version()
    except UserError:
        version = None
    return {
        "model": trace.model,
        "model_class": trace.model_class,
        "model_type": trace.model_type,
        "text": trace.text,
        "tokens": list(trace.display_tokens),
        "vocab_tokens": list(trace.tokens),
        "ids": list(trace.ids),
        "unknown": list(trace.unknown),
        "causal": trace.causal,
        "num_layers": trace.num_layers,
        "num_heads": trace.num_heads,
        "transformers": version,
        "diffed": trace.diffed,
        "first_divergence": trace.first_divergence(),
        "logits_max_abs_diff": trace.logits_max_abs_diff,
        "stages": [
            {
                "name": s.name,
                "layer": s.layer,
                "shape": list(s.shape),
                "stats": s.stats,
                "diff": diffs[s.name],
                "hist": histogram(trace.states[s.name], s.stats["min"], s.stats["max"]),
                "explain": i,
            }
            for s, i in zip(trace.stages, index)
        ],
        "explanations": table,
        "flow": chart,
        "short": labels(trace),
        "layers": layer_rows(trace, chart),
        "stream": stream(trace, chart),
        "predictions": plain.get("predictions"),
        "mask_predictions": plain.get("mask_predictions"),
        "labels": plain.get("labels"),
        "replaced": plain.get("replaced"),
    }


def _asset(name: str) -> str:
    return resources.files("annotate").joinpath(name).read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    """``value`` with every non-finite float as a string ("nan", "inf", "-inf"): JSON has no such
    numbers, and an overflowing stage should show as one, not break the page."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no "<" at all (so no "</script>" nor "<!--")."""
    return json.dumps(_plain(value), ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")


def page(trace) -> str:
    """The whole page: one HTML document with its data, style and script inside."""
    with _one_thread():
        payload, attention = _script_json(_data(trace)), attention_blob(trace)
    title = f"annotate · {trace.model_class} · {trace.text if len(trace.text) <= 40 else trace.text[:39] + '…'}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No request may leave the page: the policy refuses any that a future edit might add.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{_asset('explorer.css')}</style>\n</head>\n<body>\n"
        '<div id="app"><noscript>The explorer draws with JavaScript; turn it on to see the trace.</noscript></div>\n'
        f'<script type="application/json" id="annotate-data">{payload}</script>\n'
        f'<script type="text/plain" id="annotate-attention">{attention}</script>\n'
        f"<script>\n{_asset('explorer.js')}</script>\n</body>\n</html>\n"
    )


def check_target(path: str | Path) -> Path:
    """Refuse a path the page cannot be written to (a directory, or in a missing one): the CLI asks
    before it traces, so a typo costs no trace."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--html: {str(path)!r} is a directory; give a file name, e.g. {str(path / 'trace.html')!r}")
    if not path.parent.is_dir():
        raise UserError(f"--html: no directory {str(path.parent)!r}")
    return path


def write(trace, path: str | Path) -> int:
    """Write the page to ``path``; returns its size in bytes."""
    path = check_target(path)
    text = page(trace).encode("utf-8")
    try:
        path.write_bytes(text)
    except OSError as e:
        raise UserError(f"--html: could not write {str(path)!r}: {e.strerror or e}") from None
    return len(text)


def notebook(trace, height: int = 860) -> str:
    """The page inside an iframe (its own document: the notebook's styles and scripts and the
    page's do not meet), for Jupyter's ``_repr_html_``."""
    return (
        f'<iframe srcdoc="{html.escape(page(trace), quote=True)}" '
        f'style="width: 100%; height: {height}px; border: 1px solid #ddd; border-radius: 4px" '
        'sandbox="allow-scripts" title="annotate explorer"></iframe>'
    )
