"""The explorer: a trace as one self-contained web page, and the same view inline in Jupyter.

``annotate trace MODEL TEXT --html FILE`` writes it with ``write(trace, FILE)``; in a notebook the
Trace that ``annotate.trace`` returns shows it (``Trace._repr_html_`` calls ``notebook``). The page
is plain HTML, CSS and JavaScript (annotate/explorer.css, annotate/explorer.js, inlined): no CDN, no
web font, no request of any kind, so it works opened from file:// on a machine with no network.

What it shows, and what it is made from here (the page's script only draws):

- the flow chart: ``flow(trace)`` sorts the stages, in forward order, into the embeddings, each
  layer's branches (what branches off the residual stream: self-attention, feed-forward) and what
  stays on the stream (each ⊕ residual add, and a LayerNorm right after one: post-LN, as BERT; a
  LayerNorm opening a branch is pre-LN, as GPT-2), and what follows the layers. What a stage is
  (a lookup, a LayerNorm, an add, Q/K/V, the probabilities) is its step's kind in
  annotate/models/<model_type>.py (``kinds(trace)``), never read from its name; the page gets it
  too (each stage's ``kind``), for the boxes' colours;
- each stage: statistics, a histogram of its values, and ``annotate.stages.explain``'s formula
  with transformers' lines and the twin's (file, line numbers, text), the lines of the other
  transformers version's branch folded (``other_lines``); under --diff, max |twin - transformers|,
  the first stage that differs, and each stage's verdict as --json gives it (annotate/compare.py:
  "equal", "rounding", "math", "absent"), the first math difference and why stages are absent
  (``verdicts``);
- every head's attention: (layers, heads, T, T) probabilities as little-endian uint16
  (round(p * 65535): a step of 1.5e-5), base64, in one block the script decodes on first use;
- the residual stream: the norm |h| of each token's hidden state at every point of the stream;
- the head's predictions (next tokens, [MASK] answers, labels, replaced tokens);
- ``lens`` (``annotate trace --lens``): annotate/lens.py's result, per layer and position the top
  tokens with their probabilities; ``final``, the model's own answer at each position (the last
  layer's top-1) and ``first``, the first layer where that answer is already top-1;
- the tokens as a reader reads them: a byte-level BPE's pieces of one character (GPT-2 and Llama
  on Chinese text) shown as that character (``token_labels``: "我 1/2"; ``pieces`` says which);
- what a modern decoder (Llama) adds, only where the trace has the stages (found by kind and
  shape, read from the values; BERT's and GPT-2's page data carry none of it): a norm whose
  formula says RMSNorm is labelled so; ``rope``: RoPE's angle per position and pair of dimensions,
  atan2 of the recorded sin and cos; ``gqa``: which query heads share each key/value head (from
  the rotated Q's and K's head counts, checked against the scores); ``gates``: per layer and token,
  the share of a gated MLP's units whose gate silu(G) nearly closes, and histograms of silu(G), U
  and silu(G) * U.

Element contract (for tests): a stage's box has ``data-stage="<stage name>"``, a head's heatmap
``data-layer="L" data-head="H"``; selecting a stage fills ``#stage-panel``, whose source block has
transformers' file with its line numbers and the twin's ``reimpl/<file>.py:<line>``. A Llama
page adds: ``[data-rope]`` (the angles' card of a rotary stage, its canvas ``[data-rope-map]``),
``[data-kv-group="G"]`` on the heads (and their bands) that share K/V head G, ``[data-gqa]`` (the
legend), ``[data-gate="L"]`` (the gate's card of layer L's gated MLP stages, with
``[data-gate-token]``, ``[data-gate-series]``, ``[data-gate-closed]`` and ``[data-gate-map]``), and
a ``.tag[data-norm="RMSNorm"]`` on each RMSNorm's box. Under --diff each stage's box (and each
layer's row) has a ``.mark[data-verdict="equal|rounding|math|absent"]`` ("=", "≈", "≠", "∅"; the
legend ``[data-verdict-legend]``), the first math difference's box the class ``first-math`` and a
``.fm[data-first-math]`` tag, its layer the class ``first-math``; the stage panel's
``.diffline[data-verdict]`` says the stage's verdict, and ``.first-math-note[data-first-math]``
marks the first math difference; the header's ``[data-verdict]`` sums them up, as the terminal's
closing lines do. A page says what it says in the language it was written in (annotate.i18n: the
script's ``t``, and ``<html lang>``). A trace with ``lens`` adds the tab
``[data-tab="lens"]``: ``[data-lens-cell="L,i"]`` per layer and position (``data-prob``, and
``data-final`` where it is the final answer), ``[data-lens-first]`` on the cell where position
i's final answer first becomes top-1; clicking a cell fills ``#lens-detail``. A byte-level
character's pieces sit in one ``.tok-char[data-char]`` in the token strip.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from annotate.errors import UserError
from annotate.i18n import t

HISTOGRAM_BINS = 40
CONTEXT_GAP = 3  # lines of a snippet further apart than this are shown with "⋮" between them


# ---------------------------------------------------------------------------------------------
# The flow chart: stages sorted into the residual stream and its branches.


@functools.lru_cache(maxsize=8192)
def _kind(model_type: str, name: str) -> str | None:
    from annotate import models, stages

    try:
        return models.get(model_type).kind(stages.step_of(model_type, name))
    except (LookupError, KeyError):  # no table (or no twin) for the model type
        return None


def kinds(trace) -> dict[str, str | None]:
    """What each stage is: its step's kind in annotate/models/<model_type>.py (one of
    annotate.models.KINDS: "lookup", "norm", "query", "probs", "residual", ...). The chart is sorted
    by these, never by names. None for a stage the table lacks (tests/test_source.py checks it
    has every stage the twins record): never a lookup, an add or a LayerNorm, a plain row."""
    return {s.name: _kind(trace.model_type, s.name) for s in trace.stages}


def _rows(names: list[str], group) -> list[list[str]]:
    """Consecutive names in the same ``group`` share a row (Q, K and V; the rotated Q and K; the
    embedding lookups); ``group`` returns None for a name that stands alone."""
    rows: list[list[str]] = []
    for name in names:
        if rows and group(name) is not None and group(name) == group(rows[-1][-1]):
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
    kind_of = kinds(trace)
    names = [s.name for s in trace.stages]
    lookup = lambda n: "lookup" if kind_of[n] == "lookup" else None  # noqa: E731  the embedding tables, read side by side, then summed
    layered = [i for i, s in enumerate(trace.stages) if s.layer is not None]
    if not layered:
        return {"before": _rows(names, lookup), "layers": [], "after": [], "norm": "none"}
    first, last = layered[0], layered[-1]
    layers = []
    post = pre = False
    for layer in range(trace.num_layers):
        output = f"{trace.layers_path}.{layer}"
        inside = [s.name for s in trace.stages if s.layer == layer and s.name != output]
        blocks: list[dict[str, Any]] = []
        branch: list[str] = []
        for i, name in enumerate(inside):
            if kind_of[name] == "residual":
                if branch:
                    blocks.append(_branch(branch, kind_of))
                    pre = pre or kind_of[branch[0]] == "norm"
                    branch = []
                blocks.append({"kind": "add", "stage": name})
            elif kind_of[name] == "norm" and i and kind_of[inside[i - 1]] == "residual" and _on_stream(trace, kind_of, inside, i, output):
                blocks.append({"kind": "norm", "stage": name})
                post = True
            else:
                branch.append(name)
        if branch:  # a branch that is never added back (none of the twins has one)
            blocks.append(_branch(branch, kind_of))
        layers.append({"layer": layer, "blocks": blocks, "output": output if output in trace.states else None})
    return {
        "before": _rows(names[:first], lookup),
        "layers": layers,
        "after": [[name] for name in names[last + 1 :]],
        "norm": "post-LN" if post else "pre-LN" if pre else "none",
    }


def _on_stream(trace, kind_of: dict[str, str | None], names: list[str], i: int, output: str) -> bool:
    """Whether the LayerNorm ``names[i]``, right after a residual add, normalizes the stream itself
    (post-LN: BERT's LayerNorm(x + sublayer(x))) or only opens the next branch (pre-LN: GPT-2's
    ln_2). Read from the values, not the names: the next add is (the stream it adds to) + (its
    branch's last stage), so subtracting the branch leaves the norm's output (post-LN) or the add
    before it (pre-LN), to within the rounding of one addition. A norm after the layer's last add
    is on the stream if it is what the layer outputs."""
    norm, add = trace.states[names[i]], trace.states[names[i - 1]]
    following = next((j for j in range(i + 1, len(names)) if kind_of[names[j]] == "residual"), None)
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


def _branch(names: list[str], kind_of: dict[str, str | None]) -> dict[str, Any]:
    """A branch off the stream: self-attention if it computes attention probabilities; Q, K and V
    side by side, and the rotated Q and K (RoPE)."""
    title = "self-attention" if any(kind_of[n] == "probs" for n in names) else "feed-forward"
    side = {"query": "qkv", "key": "qkv", "value": "qkv", "rotary": "rotary"}
    return {"kind": "branch", "title": title, "rows": _rows(names, lambda n: side.get(kind_of[n]))}


def _stream_start(trace, chart: dict[str, Any]) -> str | None:
    """What enters the first layer: the last stage before the layers that is not RoPE's cos or
    sin (kind "rotary": a table of angles every layer's attention reads, not the stream)."""
    before = [name for row in chart["before"] for name in row if _kind(trace.model_type, name) != "rotary"]
    return before[-1] if before else None


def stream(trace, chart: dict[str, Any]) -> dict[str, Any]:
    """The residual stream, point by point: what enters the first layer, the stream after each
    add (after its LayerNorm, post-LN), and a LayerNorm right after the layers (GPT-2's ln_f; a
    head's own LayerNorm, as in BERT's masked-LM transform, is not the stream). ``norms``: per
    point, |h| of each token's vector (L2 over the hidden size). The labels are the page's, in
    the current language (annotate.i18n)."""
    points: list[tuple[str, str]] = []  # (label, stage)
    start = _stream_start(trace, chart)
    if start:
        points.append((t("embeddings"), start))
    for layer in chart["layers"]:
        blocks = layer["blocks"]
        for i, block in enumerate(blocks):
            if block["kind"] == "branch" or (block["kind"] == "add" and i + 1 < len(blocks) and blocks[i + 1]["kind"] == "norm"):
                continue
            title = next((b["title"] for b in reversed(blocks[:i]) if b["kind"] == "branch"), "")
            n = layer["layer"]
            points.append((t("layer {n} · attn", n=n) if title == "self-attention" else t("layer {n} · ffn", n=n), block["stage"]))
        if points and layer["output"]:
            points[-1] = (t("layer {n}", n=layer["layer"]), layer["output"])  # the layer's output: the same values as its last add
    if chart["after"] and _kind(trace.model_type, chart["after"][0][0]) == "norm":  # right after the layers: a norm of the stream itself (ln_f)
        points.append((t("final norm"), chart["after"][0][0]))
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
    start = _stream_start(trace, chart)
    h = trace.states[start][0] if start else None  # (T, C): what enters layer 0
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
# What a modern decoder (Llama) adds: rotary positions, grouped-query attention, a gated MLP.
# Each is found by its stages' kinds and shapes and read from their values, never from a model's
# name; a trace without them (BERT, GPT-2) gets none of these keys, and its page is as before.

GATE_CLOSED = 0.05  # |silu(G)| below this: the gate lets (almost) nothing of U through
GATE_BINS = 32


def rope(trace) -> dict[str, Any] | None:
    """RoPE's angles as the model used them: the recorded cos and sin before the layers (two
    stages of kind "rotary", (1, T, d)), angle = atan2(sin, cos) mod 2π, (T, d/2): one per
    position and pair of dimensions (i, i + d/2), which rotate_half turns together (both halves
    of cos and sin hold the same angles; if they do not, every dimension is its own column).
    ``freq``: each pair's turn per position (the angle of position 1 minus position 0), i.e.
    theta^(-2i/d); ``theta``: the base that gives (freq_0 / freq_1)^(d/2); ``scale``: |(cos, sin)|
    (1 but for a rope type that scales them). None without such stages."""
    T = len(trace.tokens)
    tables = [s.name for s in trace.stages if s.layer is None and _kind(trace.model_type, s.name) == "rotary"
              and trace.states[s.name].dim() == 3 and tuple(trace.states[s.name].shape[:2]) == (1, T)]
    if len(tables) != 2 or trace.states[tables[0]].shape != trace.states[tables[1]].shape:
        return None
    first, second = (trace.states[n][0].double() for n in tables)
    # sin(0) = 0: the table that is zero at position 0 is the sine (else forward order: cos, then sin)
    cos, sin = (tables[1], tables[0]) if not first[0].any() and second[0].any() else tables
    c, s = trace.states[cos][0].double(), trace.states[sin][0].double()
    d = c.shape[-1]
    paired = d % 2 == 0 and torch.equal(c[:, : d // 2], c[:, d // 2 :]) and torch.equal(s[:, : d // 2], s[:, d // 2 :])
    n = d // 2 if paired else d
    angles = torch.atan2(s[:, :n], c[:, :n]).remainder(2 * math.pi)  # (T, n), in [0, 2π)
    freq = theta = None
    if T > 1:
        step = (angles[1] - angles[0] + math.pi).remainder(2 * math.pi) - math.pi  # in [-π, π): a pair turns less than π per token
        freq = [float(f"{v:.6g}") for v in step.tolist()]
        if paired and n > 1 and step[0] > 0 and step[1] > 0:
            theta = _round(((step[0] / step[1]) ** (d / 2)).item())
    return {
        "cos": cos,
        "sin": sin,
        "dims": d,
        "paired": paired,
        "angles": [[_round(v) for v in row] for row in angles.tolist()],
        "freq": freq,
        "theta": theta,
        "scale": _round(torch.hypot(c[0, 0], s[0, 0]).item()),
    }


def gqa(trace) -> dict[str, Any] | None:
    """Grouped-query attention: the rotated Q and K of the first layer (kind "rotary", (1, heads,
    T, d_k)) have nh and nkv < nh heads; query head h reads K/V head ``kv_of[h]`` (repeat_kv's
    order, h // (nh / nkv)). ``checked``: that order was read from the values too: each query
    head's scores are its Q times exactly one K head's (cosine similarity 1 to within rounding).
    None when every query head has its own K and V (or no rotated Q and K were recorded)."""
    layered = [s.layer for s in trace.stages if s.layer is not None]
    if not layered:
        return None
    layer = min(layered)
    inside = [s.name for s in trace.stages if s.layer == layer]
    rot = [n for n in inside if _kind(trace.model_type, n) == "rotary" and trace.states[n].dim() == 4]
    if len(rot) != 2:
        return None
    q, k = sorted(rot, key=lambda n: -trace.states[n].shape[1])  # the query has more heads (stable: forward order)
    nh, nkv = trace.states[q].shape[1], trace.states[k].shape[1]
    if not nkv or nkv >= nh or nh % nkv or nh != trace.num_heads:
        return None
    kv_of = [h // (nh // nkv) for h in range(nh)]
    checked = False
    scores = next((n for n in inside if _kind(trace.model_type, n) == "scores" and trace.states[n].dim() == 4 and trace.states[n].shape[1] == nh), None)
    if scores is not None:
        Q, K, S = trace.states[q][0].double(), trace.states[k][0].double(), trace.states[scores][0].double()
        if K.shape[1] == S.shape[-1] and Q.shape[1] == S.shape[-2]:
            found, best = [], []
            for h in range(nh):
                products = Q[h] @ K.transpose(-1, -2)  # (nkv, T, T): query head h against every K head
                ok = torch.isfinite(S[h])
                a = S[h][ok]
                sims = [torch.nn.functional.cosine_similarity(a, p[ok], dim=0).item() if a.numel() else 0.0 for p in products]
                found.append(max(range(nkv), key=lambda g: sims[g]))
                best.append(max(sims))
            if min(best) > 1 - 1e-6:
                kv_of, checked = found, True
    return {"layer": layer, "query": q, "key": k, "heads": nh, "kv_heads": nkv, "kv_of": kv_of, "checked": checked}


def _counts(x: torch.Tensor, lo: float, hi: float, bins: int) -> list[list[int]]:
    """Per row of ``x`` (T, F), the counts of its finite values in ``bins`` equal bins from lo to hi."""
    x = x.float()
    ok = torch.isfinite(x)
    idx = ((x.nan_to_num(lo) - lo) / ((hi - lo) or 1) * bins).floor().clamp(0, bins - 1).long()
    counts = torch.zeros(x.shape[0], bins).scatter_add_(1, idx, ok.float())
    return [[int(c) for c in row] for row in counts.tolist()]


def gates(trace, chart: dict[str, Any]) -> dict[str, Any] | None:
    """A gated MLP (SwiGLU) in each layer's feed-forward branch: an activation A (kind
    "activation"; silu(G) of the stage G before it), then U of A's shape, then A * U, found by its
    values (equal to A * U as computed). Per layer and token: ``closed``, the share of the inner
    units whose gate nearly closes (|A| < GATE_CLOSED), and histograms of A, U and A * U over the
    layer's range of each. None without such a branch (GPT-2's GELU MLP, BERT's)."""
    layers = []
    for layer in chart["layers"]:
        for block in layer["blocks"]:
            if block["kind"] != "branch":
                continue
            names = [n for row in block["rows"] for n in row]
            for i, name in enumerate(names):
                if _kind(trace.model_type, name) != "activation" or i + 2 >= len(names):
                    continue
                a, u, p = (trace.states[n] for n in names[i : i + 3])
                if not (a.shape == u.shape == p.shape) or a.dim() < 2:
                    continue
                product = a * u
                if not (torch.equal(product, p) or torch.allclose(product.double(), p.double(), rtol=1e-5, atol=1e-6)):
                    continue
                g = names[i - 1] if i and trace.states[names[i - 1]].shape == a.shape else None
                entry = {"layer": layer["layer"], "gate": g, "act": name, "up": names[i + 1], "product": names[i + 2],
                         "units": a.shape[-1], "range": {}, "hist": {}}
                flat = {key: x.reshape(-1, x.shape[-1]) for key, x in (("act", a), ("up", u), ("product", p))}  # (T, F)
                for key, x in flat.items():
                    finite = x[torch.isfinite(x)]
                    lo, hi = (finite.min().item(), finite.max().item()) if finite.numel() else (0.0, 0.0)
                    entry["range"][key] = [_round(lo), _round(hi)]
                    entry["hist"][key] = _counts(x, lo, hi, GATE_BINS)
                entry["closed"] = [_round(v) for v in (flat["act"].abs() < GATE_CLOSED).float().mean(-1).tolist()]
                layers.append(entry)
                break
    return {"threshold": GATE_CLOSED, "bins": GATE_BINS, "layers": layers} if layers else None


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
    folded = set(snippet.folded)
    shown: list[list[Any]] = []  # [number, text, marked]; number 0: a gap
    for i, n in enumerate(lines):
        if i and n - lines[i - 1] > 1:
            if n - lines[i - 1] <= CONTEXT_GAP + 1 or any(lines[i - 1] < m < n for m in folded):
                shown.extend([m, text[m - 1], False] for m in range(lines[i - 1] + 1, n))
            else:
                shown.append([0, "⋮", False])
        shown.append([n, text[n - 1], True])
    before = sorted(m for m in folded if m < lines[0])  # the other version's lines just above the first ("if versions.V4:")
    if before:
        shown[:0] = [[m, text[m - 1], False] for m in range(before[0], lines[0])]
    # A first line deeper than the others sits in a block the snippet doesn't show ("if mask is
    # not None:"): add that block's header, unmarked, so the indentation reads as code.
    depth = lambda line: len(line) - len(line.lstrip())  # noqa: E731
    marked = [row[1] for row in shown if row[2] and row[1].strip()]
    if len(marked) > 1 and depth(marked[0]) > min(depth(line) for line in marked):
        for m in range(lines[0] - 1, max(lines[0] - 1 - CONTEXT_GAP, 0), -1):
            if text[m - 1].strip() and depth(text[m - 1]) < depth(marked[0]):
                shown[:0] = [[k, text[k - 1], False] for k in range(m, lines[0])]
                break
    code = [row[1] for row in shown if row[0] and row[1].strip()]
    indent = min((len(line) - len(line.lstrip()) for line in code), default=0)  # shown as a block, from column 0
    for row in shown:
        if row[0]:
            row[1] = row[1][indent:]
    first, last = lines[0], lines[-1]
    where = f"{_display(snippet.path)}:{first}" + (f"-{last}" if last != first else "")
    out = {"where": where, "path": str(snippet.path), "function": snippet.qualname, "lines": shown}
    other = sorted(folded & {row[0] for row in shown})
    if other:  # these lines (of the other version's branch) run only under it: the page folds them
        out["other_version"], out["other_lines"] = snippet.folded_for, other
    return out


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
            "note": e.note_shown,
        }
        key = json.dumps(entry, sort_keys=True)
        if key not in seen:
            seen[key] = len(table)
            table.append(entry)
        index.append(seen[key])
    return table, index


# ---------------------------------------------------------------------------------------------
# Tokens as a reader reads them, and the logit lens.


def pieces(n: int, characters) -> list[list[Any] | None]:
    """Per position, ``[character, k, of]`` for the k-th (from 1) of ``of`` byte-level tokens that
    together spell ``character`` (annotate/tracer.py Tokenizer.characters: (first, last, text)), else
    None."""
    out: list[list[Any] | None] = [None] * n
    for first, last, text in characters:
        for i in range(first, last + 1):
            out[i] = [text, i - first + 1, last - first + 1]
    return out


def token_labels(display: list[str], characters) -> list[str]:
    """The tokens as the page writes them (canvases, tooltips, the lens' columns): the terminal's
    display ("␣cat"), and a piece of a character as that character, "我" alone or "我 1/3" for the
    first of three (annotate/render.py's position labels do the same)."""
    out = list(display)
    for i, piece in enumerate(pieces(len(display), characters)):
        if piece is not None:
            text, k, of = piece
            out[i] = text if of == 1 else f"{text} {k}/{of}"
    return out


def lens(trace) -> dict[str, Any] | None:
    """The logit lens as the page draws it (None without --lens): per layer (``layers``), per
    position, the top tokens ``[{id, display, prob}]``, likeliest first (``top[l][i]``); ``final``,
    the model's own answer at each position (the last layer's top-1); ``first``, per position, the
    index in ``layers`` of the first layer whose top-1 is already that answer. ``reads``, ``norms``
    and ``head``: what the rows went through (annotate/lens.py)."""
    found = getattr(trace, "lens", None)
    if found is None or not found.layers:
        return None
    top = [[[{"id": p.id, "display": p.display, "prob": _round(p.prob)} for p in row] for row in entry.top] for entry in found.layers]
    final = [row[0]["id"] for row in top[-1]]
    first = [next(l for l, rows in enumerate(top) if rows[i][0]["id"] == final[i]) for i in range(len(final))]
    return {
        "reads": found.reads,
        "norms": list(found.norms),
        "head": list(found.head),
        "k": len(top[0][0]) if top[0] else 0,
        "layers": [entry.layer for entry in found.layers],
        "top": top,
        "final": final,
        "first": first,
    }


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


def verdicts(trace) -> dict[str, Any]:
    """What the page needs of --diff's verdicts (annotate/compare.py) beyond each stage's own
    (``verdict``: "equal", "rounding", "math", "absent", as Trace.to_dict() has them): ``first_math``,
    the first stage whose difference is math; ``compared``, the two runs' labels; ``rounding_bound``;
    ``why_absent``, why the other run has no value for the absent stages, in the current language
    (``absent_fused``: because sdpa computes them inside one fused kernel)."""
    from annotate.compare import FUSED, ROUNDING_BOUND

    if not trace.diffed:
        return {"first_math": None}
    c = trace.comparison
    out: dict[str, Any] = {"first_math": trace.first_math(), "rounding_bound": ROUNDING_BOUND}
    if c is not None:
        out["compared"] = [c.a, c.b]
        if any(s.verdict == "absent" for s in trace.stages):
            out["absent_fused"] = c.absent == FUSED
            if c.absent == FUSED:
                out["why_absent"] = t(
                    "{run} computes the attention scores and probabilities inside one fused kernel "
                    "(torch's scaled_dot_product_attention) and never returns them",
                    run=c.b,
                )
            elif c.absent is None:
                out["why_absent"] = t("{run} has no such stages", run=c.b)
            else:
                out["why_absent"] = f"{c.b} {c.absent}"
    return out


def data(trace) -> dict[str, Any]:
    """Everything the page shows, as plain data (the attention goes in its own block: ``attention_blob``)."""
    with _one_thread():
        return _data(trace)


def _data(trace) -> dict[str, Any]:
    from annotate import source

    chart = flow(trace)
    kind_of = kinds(trace)
    table, index = explanations(trace)
    diffs = {s.name: s.max_abs_diff for s in trace.stages}
    plain = trace.to_dict()
    try:
        version = source.transformers_version()
    except UserError:
        version = None
    out = {
        "model": trace.model,
        "model_class": trace.model_class,
        "model_type": trace.model_type,
        "text": trace.text,
        "tokens": token_labels(list(trace.display_tokens), trace.characters),
        "display_tokens": list(trace.display_tokens),
        "pieces": pieces(len(trace.tokens), trace.characters),
        "vocab_tokens": list(trace.tokens),
        "ids": list(trace.ids),
        "unknown": list(trace.unknown),
        "causal": trace.causal,
        "num_layers": trace.num_layers,
        "num_heads": trace.num_heads,
        "transformers": version,
        "diffed": trace.diffed,
        "first_divergence": trace.first_divergence(),
        **verdicts(trace),
        "logits_max_abs_diff": trace.logits_max_abs_diff,
        "stages": [
            {
                "name": s.name,
                "layer": s.layer,
                "shape": list(s.shape),
                "stats": s.stats,
                "diff": diffs[s.name],
                **({"verdict": s.verdict} if trace.diffed else {}),
                "hist": histogram(trace.states[s.name], s.stats["min"], s.stats["max"]),
                "explain": i,
                "kind": kind_of[s.name],
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
    # What a modern decoder adds, and the logit lens (--lens), only where the trace has them (BERT's and GPT-2's data are as before).
    for key, value in (("rope", rope(trace)), ("gqa", gqa(trace)), ("gates", gates(trace, chart)), ("lens", lens(trace))):
        if value is not None:
            out[key] = value
    return out


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


def document(title: str, styles: tuple[str, ...], script: str, payload: str, attention: str | None = None) -> str:
    """One offline HTML document: its title, its style sheets and script (package files, inlined),
    its data as JSON (``payload``) and, where it has one, its attention blob. Every explorer page
    (the trace's, a generation's, an encoder-decoder's) is one of these."""
    from annotate import i18n

    language = i18n.current()
    blob = f'<script type="text/plain" id="annotate-attention">{attention}</script>\n' if attention is not None else ""
    messages = f'<script type="application/json" id="annotate-messages">{_script_json(i18n.catalogue(language))}</script>\n' if language != "en" else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No request may leave the page: the policy refuses any that a future edit might add.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{''.join(_asset(name) for name in styles)}</style>\n</head>\n<body>\n"
        f'<div id="app"><noscript>{i18n.t("The explorer draws with JavaScript; turn it on to see the page.")}</noscript></div>\n'
        f'<script type="application/json" id="annotate-data">{payload}</script>\n'
        f"{messages}{blob}<script>\n{_asset('i18n.js')}{_asset('page.js')}{_asset(script)}</script>\n</body>\n</html>\n"
    )


def title(kind: str, model_class: str, text: str) -> str:
    return f"{kind} · {model_class} · {text if len(text) <= 40 else text[:39] + '…'}"


def page(trace) -> str:
    """The whole page: one HTML document with its data, style and script inside."""
    with _one_thread():
        payload, attention = _script_json(_data(trace)), attention_blob(trace)
    return document(title("annotate", trace.model_class, trace.text), ("explorer.css",), "explorer.js", payload, attention)


def check_target(path: str | Path) -> Path:
    """Refuse a path the page cannot be written to (a directory, or in a missing one): the CLI asks
    before it traces, so a typo costs no trace."""
    path = Path(path)
    if path.is_dir():
        raise UserError(t("--html: {path!r} is a directory; give a file name, e.g. {example!r}", path=str(path), example=str(path / "trace.html")))
    if not path.parent.is_dir():
        raise UserError(t("--html: no directory {folder!r}", folder=str(path.parent)))
    return path


def write(trace, path: str | Path, page=page) -> int:
    """Write ``page(trace)`` to ``path``; returns its size in bytes."""
    path = check_target(path)
    text = page(trace).encode("utf-8")
    try:
        path.write_bytes(text)
    except OSError as e:
        raise UserError(t("--html: could not write {path!r}: {reason}", path=str(path), reason=e.strerror or e)) from None
    return len(text)


def notebook(trace, height: int = 860) -> str:
    """The page inside an iframe (its own document: the notebook's styles and scripts and the
    page's do not meet), for Jupyter's ``_repr_html_``."""
    return (
        f'<iframe srcdoc="{html.escape(page(trace), quote=True)}" '
        f'style="width: 100%; height: {height}px; border: 1px solid #ddd; border-radius: 4px" '
        f'sandbox="allow-scripts" title="{html.escape(t("annotate explorer"), quote=True)}"></iframe>'
    )
