"""How ``annotate trace`` looks in a terminal. Everything it shows is computed in tracer.py.

The default is one screen: the tokens, what the model predicts, one line per layer (the residual
stream's size, how much the layer changed it, where its attention mostly goes, and under --diff
its largest difference from transformers), the output, and the first divergence. ``--full``
prints every stage (shape, mean, std, min, max) in forward order, with per head the tokens each
token attends to most; ``--grid L.H`` one head's attention matrix; ``--explain`` each stage's
formula and the lines that compute it.

Laid out by hand, by display width (a CJK character takes two columns), so that at any width
from 80 columns up no number is ever cut and no line is longer than the terminal: rows that
don't fit on one line go on two, a grid too wide is split into panels. The words are annotate.i18n's
(``t``): in Chinese the notes wrap between characters too (``_wrap``), and the columns are as wide
as their Chinese headings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
from collections.abc import Iterator

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from annotate import i18n
from annotate.errors import UserError
from annotate.i18n import t

WIDE = 160  # columns when writing to a file or a pipe: names like encoder.layer.5.intermediate.intermediate_act_fn stay whole


# ---------------------------------------------------------------------------------------------
# What to show.


def _numbers(spec: str, option: str, what: str) -> frozenset[int]:
    """ "0,3-5" -> {0, 3, 4, 5}; ``what``: the word for one, in the view's language (t("layer"))."""
    out: set[int] = set()
    for item in spec.split(","):
        item = item.strip()
        first, dash, last = item.partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise UserError(t("{option} {spec!r}: {item!r} is not a {what} number or range (e.g. 0,3-5)", option=option, spec=spec, item=item, what=what)) from None
        if lo < 0 or hi < lo:
            raise UserError(t("{option} {spec!r}: {item!r} is not a {what} range (numbers from 0, low-high)", option=option, spec=spec, item=item, what=what))
        out.update(range(lo, hi + 1))
    return frozenset(out)


@dataclasses.dataclass(frozen=True)
class View:
    """Which parts of a trace to show; None means all."""

    layers: frozenset[int] | None = None
    heads: frozenset[int] | None = None
    stages: tuple[str, ...] | None = None  # last dotted component(s) of stage names: "query", "output.LayerNorm"
    grid: tuple[int, int] | None = None  # (layer, head)
    full: bool = False  # every stage, not the one-screen summary
    explain: bool = False  # each shown stage's formula and code

    @classmethod
    def parse(
        cls,
        layers: str | None = None,
        heads: str | None = None,
        stages: str | None = None,
        grid: str | None = None,
        full: bool = False,
        explain: bool = False,
    ) -> "View":
        """From the command line's --layers 0,3-5 --heads 0-2 --stages query,probs --grid 3.7 (syntax only;
        ``check`` compares with the model)."""
        grid_at = None
        if grid is not None:
            layer, dot, head = grid.strip().partition(".")
            if not (dot and layer.isdigit() and head.isdigit()):
                raise UserError(t("--grid {grid!r}: expected LAYER.HEAD, e.g. 3.7", grid=grid))
            grid_at = (int(layer), int(head))
        names = None
        if stages is not None:
            names = tuple(n.strip().strip(".") for n in stages.split(","))
            if not all(names):
                raise UserError(t("--stages {stages!r}: expected step names separated by commas, e.g. query,probs,LayerNorm", stages=stages))
        return cls(
            layers=_numbers(layers, "--layers", t("layer")) if layers is not None else None,
            heads=_numbers(heads, "--heads", t("head")) if heads is not None else None,
            stages=names,
            grid=grid_at,
            full=full,
            explain=explain,
        )

    @property
    def stage_tables(self) -> bool:
        """Stage by stage (--full, or stages asked for by name, or their explanation), not the summary."""
        return self.full or self.stages is not None or self.explain

    def check(self, trace) -> None:
        """Every layer, head and stage asked for exists in this model."""
        L, H = trace.num_layers, trace.num_heads
        if self.layers is not None and max(self.layers) >= L:
            raise UserError(t("--layers: the model has {L} layers (0-{last}); there is no layer {layer}", L=L, last=L - 1, layer=max(self.layers)))
        if self.heads is not None and max(self.heads) >= H:
            raise UserError(t("--heads: the model has {H} heads per layer (0-{last}); there is no head {head}", H=H, last=H - 1, head=max(self.heads)))
        if self.grid is not None:
            layer, head = self.grid
            if layer >= L or head >= H:
                raise UserError(t("--grid {layer}.{head}: the model has layers 0-{last_layer} and heads 0-{last_head}", layer=layer, head=head, last_layer=L - 1, last_head=H - 1))
        for want in self.stages or ():
            if not any(_matches(s.name, want) for s in trace.stages):
                steps = sorted({s.name.rsplit(".", 1)[-1] for s in trace.stages if not s.name.rsplit(".", 1)[-1].isdigit()})
                raise UserError(t("--stages: no stage is named {want!r}; steps in this model: {steps}", want=want, steps=", ".join(steps)))

    def shows_layer(self, layer: int | None) -> bool:
        return layer is None or self.layers is None or layer in self.layers

    def shows_stage(self, name: str) -> bool:
        return self.stages is None or any(_matches(name, want) for want in self.stages)

    def shows_head(self, head: int) -> bool:
        return self.heads is None or head in self.heads


def _matches(name: str, want: str) -> bool:
    return name == want or name.endswith("." + want)


# ---------------------------------------------------------------------------------------------
# Progress.


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs (only on a terminal: nothing in a pipe or a test)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with console.status(message):
        yield


# ---------------------------------------------------------------------------------------------
# Layout by display width.


def _num(x: float) -> str:
    """Four significant digits, at most 10 characters: 0.1111, -12.34, -4.291e-17."""
    return f"{x:.4g}"


def _diff(d: float | None) -> str:
    return "n/a" if d is None else "0" if d == 0.0 else f"{d:.3g}"


def _pad(s: str, width: int, right: bool = False) -> str:
    """``s`` padded with spaces to ``width`` display columns (CJK characters count two)."""
    gap = " " * max(0, width - cell_len(s))
    return gap + s if right else s + gap


def _clip(s: str, width: int) -> str:
    """A label (never a number) cut to ``width`` display columns, with an ellipsis."""
    if cell_len(s) <= width:
        return s
    out = ""
    for ch in s:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def _lines(words: list[str], width: int, indent: str = "", sep: str = "  ") -> list[str]:
    """Words joined by ``sep`` and wrapped at ``width`` display columns (a word is never split)."""
    return _fill([(sep, word) for word in words], width, indent)


def _fill(pieces: list[tuple[str, str]], width: int, indent: str = "") -> list[str]:
    """(glue, piece) pairs laid into lines of at most ``width`` display columns, each line after
    ``indent``: a piece is never split, and the glue before a line's first piece is dropped."""
    lines, line = [], ""
    for glue, piece in pieces:
        candidate = piece if not line else line + glue + piece
        if line and cell_len(indent + candidate) > width:
            lines.append(indent + line)
            line = piece
        else:
            line = candidate
    if line:
        lines.append(indent + line)
    return lines


# Chinese: a line may break between two CJK characters, not only at a space; never before closing
# punctuation (，。）…) nor after opening punctuation (（「…).
_NO_LINE_START = frozenset("，。、：；！？）」』》〉…%,.:;!?)]}")
_NO_LINE_END = frozenset("（「『《〈([{|")
_OPERATORS = frozenset(("-", "+", "=", "/", "×", "→"))
_PHRASE_END = frozenset("，；：。、")


def _wrap(text: str, width: int, indent: str = "", whole: tuple[str, ...] = ()) -> list[str]:
    """A message wrapped at ``width`` display columns: at its spaces (a word is never split), and in
    Chinese also between CJK characters, never inside the parts of it in ``whole`` ("7-8 京").
    English wraps exactly as ``_lines`` at spaces."""
    if i18n.current() == "en":
        return _lines(text.split(" "), width, indent=indent, sep=" ")
    for part in whole:
        text = text.replace(part, part.replace(" ", "\u00a0"))
    pieces: list[list] = []  # [glue before it ("" or " "), text, wide]
    glue = ""
    for ch in text:
        if ch == " ":
            glue = " "
            continue
        wide = cell_len(ch) == 2
        if pieces and not glue and (ch == "\u00a0" or pieces[-1][1][-1] == "\u00a0" or not wide and not pieces[-1][2]):
            pieces[-1][1] += ch  # a Latin word, a number, a stage name: one piece
        else:
            pieces.append([glue, ch, wide])
        glue = ""
    kept: list[list] = []
    operator = False  # the piece before was a formula's operator: what follows stays on its line
    for glue, piece, wide in pieces:
        # Kept on the line before: what may not start a line; an option's or a word's "（…）" written
        # against it (--lens（…）); a formula's operator and its right-hand side, an |…| (|h_out - h_in|).
        last = kept[-1][1] if kept else ""
        inside = last.count("|") % 2 == 1 and cell_len(last[last.rfind("|"):]) < 40  # within |…|: |孪生实现 - transformers|
        stays = kept and (operator or inside or piece in _OPERATORS or not glue and (
            piece[0] in _NO_LINE_START or last[-1] in _NO_LINE_END or (piece[0] == "（" and cell_len(last) <= 12)))
        operator = piece in _OPERATORS
        if stays:
            kept[-1][1] += glue + piece
            kept[-1][2] = kept[-1][2] or wide
        else:
            kept.append([glue, piece, wide])
    # A short phrase (up to its ，；：。、, or the end) moves to the next line whole: "目标句 11 个位置",
    # never "目标" | "句 11 个位置"; a long one breaks between its characters.
    phrases: list[list[list]] = [[]]
    for unit in kept:
        phrases[-1].append(unit)
        if unit[1][-1] in _PHRASE_END:
            phrases.append([])
    kept = []
    for phrase in phrases:
        whole = "".join((glue if i else "") + piece for i, (glue, piece, _) in enumerate(phrase))
        if len(phrase) > 1 and cell_len(whole) <= width // 2:
            kept.append([phrase[0][0], whole, True])
        else:
            kept.extend(phrase)
    return [line.replace("\u00a0", " ") for line in _fill([(glue, piece) for glue, piece, _ in kept], width, indent)]


def styled(template: str, style: str = "", **parts: Text | tuple[str, str]) -> Text:
    """A translated message whose ``{name}`` places hold styled text: ``template`` as t() gives it
    (the places left as they are: ``t("prompt: {prompt} ({n} tokens)", prompt="{prompt}", n=3)``),
    each place filled with ``parts[name]`` (a Text, or (text, style)), the rest in ``style``. The
    places move with the language's word order."""
    pieces = [parts[p[1:-1]] if p[1:-1] in parts and p.startswith("{") else (p, style) for p in re.split(r"(\{\w+\})", template) if p]
    return Text.assemble(*pieces)


def _rule(title: str, width: int) -> Text:
    line = f"── {title} "
    return Text(line + "─" * max(0, width - cell_len(line)), style="bold")


# ---------------------------------------------------------------------------------------------
# The parts of the page.


def _header(trace) -> list[Text]:
    T = len(trace.tokens)
    text = Text.assemble(("annotate trace ", "bold"), trace.model)
    facts = t("{model_class} ({model_type}): {layers} layers, {heads} heads, {tokens} tokens",
              model_class=trace.model_class, model_type=trace.model_type, layers=trace.num_layers, heads=trace.num_heads, tokens=T)
    return [text, Text(facts, style="dim")]


def _token_line(trace, width: int) -> list[Text]:
    """The tokens as the model sees them, separated by │ so that spaces and pieces show."""
    shown = [f"{i}:{token}" for i, token in enumerate(trace.display_tokens)]
    out = [Text(line) for line in _lines(shown, width, sep=" │ ")]
    if trace.characters:
        runs = [f"{a}-{b} {text}" if b > a else f"{a} {text}" for a, b, text in trace.characters]
        note = t("bytes of one character (no token for it in the vocabulary): {runs}", runs=",  ".join(runs))
        out += [Text(line, style="yellow") for line in _wrap(note, width, whole=tuple(runs))]
    if trace.unknown:
        n, unk = len(trace.unknown), trace.tokens[trace.unknown[0]]
        note = t("{unk}: {n} of {tokens} tokens are not in this model's vocabulary (e.g. characters an "
                 "English vocabulary lacks); the model sees one and the same {unk} vector for each", unk=unk, n=n, tokens=len(trace.tokens))
        out += [Text(line, style="yellow") for line in _wrap(note, width)]
    return out


def _predictions(trace, width: int) -> list[Text]:
    out: list[Text] = []

    def ranked(title: str, predictions) -> None:
        out.append(_rule(title, width))
        cells = [f"{p.display} {p.prob:.3f}" for p in predictions]
        out.extend(Text(line) for line in _lines(cells, width, sep="   "))

    if trace.predictions:
        ranked(t("next token (probability)"), trace.predictions)
    for m in trace.mask_predictions or ():
        ranked(t("{token} at {position}: the model's answers (probability)", token=trace.tokens[m.position], position=m.position), m.top)
    if trace.replaced:
        out.append(_rule(t("replaced? (probability that each token was replaced)"), width))
        cells = [f"{r.token} {r.prob:.2f}" for r in trace.replaced]
        out.extend(Text(line) for line in _lines(cells, width, sep="   "))
    if trace.labels:
        out.append(_rule(t("labels (probability)"), width))
        best = max(trace.labels, key=lambda label: label.prob)
        cells = [f"{label.label} {label.prob:.3f}" for label in trace.labels]
        for line in _lines(cells, width, sep="   "):
            out.append(Text(line, style="bold" if best.label in line else ""))
    return out


def _summary(trace, view: View, width: int) -> list[Text]:
    """One line per layer: what a reader needs first (see the module docstring)."""
    rows = [s for s in trace.layer_summary() if view.shows_layer(s.layer)]
    diffed = trace.diffed
    names = {r.layer: t("embeddings") if r.layer is None else t("layer {layer}", layer=r.layer) for r in rows}
    name_w = max([cell_len(t("embeddings"))] + [cell_len(name) for layer, name in names.items() if layer is not None])
    fixed = name_w + 2 + 8 + 2 + 7 + 2 + (10 if diffed else 0)
    attn_w = max(16, min(40, width - fixed))
    label_w = max(4, (attn_w - 2 * 6) // 2)  # two "token 0.42" cells
    head = _pad("", name_w) + "  " + _pad("|h|", 8, True) + "  " + _pad(t("change"), 7, True) + "  "
    head += _pad(t("attention mostly to"), attn_w) + _pad("max|diff|", 10, True) if diffed else t("attention mostly to")
    out = [Text(head.rstrip(), style="bold")]
    for r in rows:
        name = names[r.layer]
        change = "" if r.change is None else f"{100 * r.change:.0f}%"
        attn = "  ".join(f"{_clip(token, label_w)} {w:.2f}" for token, w in r.attends_to)
        line = _pad(name, name_w) + "  " + _pad(f"{r.norm:.2f}", 8, True) + "  " + _pad(change, 7, True) + "  "
        line += _pad(attn, attn_w) + _pad(_diff(r.max_abs_diff), 10, True) if diffed else attn
        out.append(Text(line.rstrip(), style="bold red" if r.max_abs_diff else ""))
    legend = t("|h|: the mean size (L2 norm) of a token's vector after the layer; change: how much the layer "
               "changed it, |h_out - h_in| / |h_in|; attention: the tokens that receive the most weight, "
               "averaged over heads and tokens")
    out.extend(Text(line, style="dim") for line in _wrap(legend, width))
    return out


def _outputs(trace, width: int) -> list[Text]:
    """The stages after the last layer (final norm, pooler, the last hidden state), as in --full."""
    first_layer = next(i for i, s in enumerate(trace.stages) if s.layer is not None)
    after = [s for i, s in enumerate(trace.stages) if s.layer is None and i > first_layer]
    return [_rule(t("output"), width), *_stage_rows(trace, after, width, "", None)] if after else []


def _stage_rows(trace, stages, width: int, prefix: str, explain) -> list[Text]:
    """One row per stage: name, shape, mean, std, min, max (and max|diff|); two lines if that is too wide."""
    keys = ("mean", "std", "min", "max")
    headings = (t("mean"), t("std"), t("min"), t("max"))
    stage_h, shape_h = t("stage"), t("shape")
    names = [s.name.removeprefix(prefix) for s in stages]
    shapes = ["(" + ", ".join(map(str, s.shape)) + ")" for s in stages]
    numbers = [[_num(s.stats[k]) for k in keys] for s in stages]
    diffs = [t("absent") if s.verdict == "absent" else _diff(s.max_abs_diff) for s in stages]  # absent: the other run has no such stage
    name_w = max(map(cell_len, names + [stage_h]))
    shape_w = max(map(cell_len, shapes + [shape_h]))
    number_w = max(len(n) for row in numbers for n in row) + 2  # this table's widest number, and a gap
    if headings != keys:  # translated headings: as wide as they need (the English ones fit as they are)
        number_w = max(number_w, max(map(cell_len, headings)) + 2)
    diff_w = max(map(cell_len, diffs + ["max|diff|"])) + 2 if trace.diffed else 0
    one_line = name_w + 2 + shape_w + 4 * number_w + diff_w <= width
    columns = "".join(_pad(k, number_w, True) for k in headings) + (_pad("max|diff|", diff_w, True) if trace.diffed else "")
    out = []
    if one_line:
        out.append(Text(_pad(stage_h, name_w) + "  " + _pad(shape_h, shape_w) + columns, style="bold"))
    else:
        out.append(Text(stage_h + "  " + shape_h, style="bold"))
        out.append(Text("  " + columns, style="bold"))
    for s, name, shape, row, d in zip(stages, names, shapes, numbers, diffs):
        cells = "".join(_pad(n, number_w, True) for n in row) + (_pad(d, diff_w, True) if trace.diffed else "")
        style = "bold red" if s.max_abs_diff else ""
        if one_line:
            out.append(Text(_pad(name, name_w) + "  " + _pad(shape, shape_w) + cells, style=style))
        else:
            out.append(Text(name + "  " + shape, style=style))
            out.append(Text("  " + cells, style=style))
        if explain is not None:
            out.extend(explain(s.name, width))
    return out


def _attention_account(trace, layer: int, view: View, width: int) -> list[Text]:
    """Per head (a column), for each token (a row), the two tokens it attends to most, with their
    weights. As many heads side by side as fit; the rest in further blocks."""
    probs = trace.attention(layer)  # (nh, T, T)
    T = probs.shape[-1]
    top = probs.topk(min(2, T), dim=-1)  # per head and query token: (nh, T, k)
    values, indices = top.values.tolist(), top.indices.tolist()
    labels = [_clip(token, 8) for token in trace.display_tokens]
    heads = [h for h in range(probs.shape[0]) if view.shows_head(h)]
    token_h = t("token")
    first = max(map(cell_len, labels + [token_h])) + 2  # the token column
    cell = max(map(cell_len, labels)) + len(" 0.00") + 2  # "[SEP] 0.42" and a gap
    per_block = max(1, (width - first) // cell)
    out = [Text(t("layer {layer}: the tokens each token attends to most, per head", layer=layer), style="bold")]
    for start in range(0, len(heads), per_block):
        chunk = heads[start : start + per_block]
        out.append(Text((_pad(token_h, first) + "".join(_pad(t("head {head}", head=h), cell) for h in chunk)).rstrip(), style="bold"))
        for i in range(T):
            for rank in range(len(values[0][0])):
                cells = [_pad(labels[i] if rank == 0 else "", first)]
                for h in chunk:
                    w, j = values[h][i][rank], indices[h][i][rank]
                    cells.append(_pad(f"{labels[j]} {w:.2f}" if w > 0 else "", cell))  # w == 0: a causal model's first token sees only itself
                if "".join(cells).strip():
                    out.append(Text("".join(cells).rstrip()))
    return out


def _heat(p: float) -> str:
    """White (0) to deep blue (1)."""
    r = g = int(255 - 215 * p)
    b = int(255 - 80 * p)
    fg = "white" if p > 0.5 else "black"
    return f"{fg} on rgb({r},{g},{b})"


def _grid(trace, layer: int, head: int, width: int) -> list[Text]:
    """One head's attention matrix: a row per token (the query), a column per token attended to,
    headed by its index. Columns that don't fit the width go to further panels, each saying which."""
    probs = trace.attention(layer)[head].tolist()  # (T, T)
    T = len(probs)
    labels = [f"{i} {_clip(token, 10)}" for i, token in enumerate(trace.display_tokens)]
    label_w = max(map(cell_len, labels)) + 1
    per_panel = max(1, (width - label_w) // 5)
    out = [_rule(t("layer {layer}, head {head}: attention (row: token, column: the token attended to)", layer=layer, head=head), width)]
    for start in range(0, T, per_panel):
        stop = min(T, start + per_panel)
        if per_panel < T:
            out.append(Text(t("columns {first}-{last} of 0-{end}", first=start, last=stop - 1, end=T - 1), style="dim"))
        out.append(Text(_pad("", label_w) + "".join(_pad(str(j), 5, True) for j in range(start, stop)), style="bold"))
        for i in range(T):
            line = Text(_pad(labels[i], label_w))
            for j in range(start, stop):
                line.append(f" {probs[i][j]:.2f}", style=_heat(probs[i][j]))
            out.append(line)
    return out


def _position_labels(trace) -> list[str]:
    """Each position as the token line shows it, "index:token"; a byte-level BPE's pieces of one
    character (the token line's grouping, trace.characters) as that character, with which piece of
    how many: "3:我 1/3"."""
    shown = list(trace.display_tokens)
    for first, last, text in trace.characters:
        for i in range(first, last + 1):
            shown[i] = text if first == last else f"{text} {i - first + 1}/{last - first + 1}"
    return [f"{i}:{token}" for i, token in enumerate(shown)]


def _prob(p: float) -> str:
    """A probability in four columns: .42, 1.00; under .005 as a power of ten, 3e-4 (not .00)."""
    if p >= 0.005 or p == 0.0:
        return f"{p:.2f}".removeprefix("0")
    mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e-{int(exponent[1:])}"


def _lens(trace, view: View, width: int) -> list[Text]:
    """--lens: a row per layer, a column per position; in each cell the top token of that layer's
    output read through the final norm and the LM head, with its probability (annotate/lens.py).
    Bold: already the model's own answer there (the last layer's top token). Positions that don't
    fit the width go to further panels of even size, each saying which."""
    lens = trace.lens
    rows = [entry for entry in lens.layers if view.shows_layer(entry.layer)]
    final = [top[0].id for top in lens.layers[-1].top]  # the model's own top token at each position
    T = len(final)
    layer_h = t("layer")
    label_w = max(cell_len(layer_h), len(str(rows[-1].layer))) + 2
    widest = max(cell_len(top[0].display) for entry in rows for top in entry.top)

    def panels(token_w: int) -> int:
        return math.ceil(T / max(1, (width - label_w) // (token_w + 1 + 4 + 2)))  # "␣Paris .42" and a gap

    # Tokens up to 8 columns, fewer (down to 6) where that saves a panel.
    token_w = min(range(min(6, widest), min(8, widest) + 1), key=lambda w: (panels(w), -w))
    cell = token_w + 1 + 4 + 2
    per_panel = math.ceil(T / panels(token_w))  # evenly filled
    positions = [_clip(label, cell - 2) for label in _position_labels(trace)]
    causal = lens.reads == "next-token"
    title = t("logit lens: each layer's likeliest next token") if causal else t("logit lens: each layer's likeliest token at each position")
    out = [_rule(title, width)]
    for start in range(0, T, per_panel):
        stop = min(T, start + per_panel)
        if per_panel < T:
            out.append(Text(t("positions {first}-{last} of 0-{end}", first=start, last=stop - 1, end=T - 1), style="dim"))
        out.append(Text((_pad(layer_h, label_w) + "".join(_pad(positions[i], cell) for i in range(start, stop))).rstrip(), style="bold"))
        for entry in rows:
            line = Text(_pad(str(entry.layer), label_w - 2, True) + "  ")
            for i in range(start, stop):
                p = entry.top[i][0]
                shown = f"{_clip(p.display, token_w)} {_prob(p.prob)}"
                line.append(shown, style="bold" if p.id == final[i] else "")
                line.append(" " * (cell - cell_len(shown)))
            line.rstrip()
            out.append(line)
    norms, heads = ", ".join(lens.norms), ", ".join(lens.head)
    if causal:
        head = (t("the final norm ({norms}), then the LM head ({head})", norms=norms, head=heads) if lens.norms
                else t("the LM head ({head})", head=heads))
        what = t("the likeliest next token after that position, had the model stopped after that layer")
    else:
        head = (t("the final norm ({norms}), then the whole MLM head, {head}: its transform (dense, activation, LayerNorm), then its decoder",
                  norms=norms, head=heads) if lens.norms
                else t("the whole MLM head, {head}: its transform (dense, activation, LayerNorm), then its decoder", head=heads))
        what = t("the token the MLM head would put at that position from that layer's output (the head learned to "
                 "read the last layer only: earlier rows show what it makes of earlier layers)")
    legend = t("each layer's output put through {head}. Row: the layer; column: the position and its token; cell: "
               "{what}, with its probability. Bold: already the model's own answer there (the last layer's row is the "
               "model's logits, bit for bit). --json: the top {k} per position and layer.", head=head, what=what, k=len(rows[0].top[0]))
    out.extend(Text(line, style="dim") for line in _wrap(legend, width))
    return out


def _diff_lines(trace, width: int) -> list[Text]:
    """The closing lines under --diff: the first divergence, and the verdict on the differences
    (annotate/compare.py: re-run in float64, rounding or math)."""
    c = trace.comparison
    a, b = _sides(c.names() if c is not None else ("twin", "transformers"))
    label = c.b if c is not None else "transformers (eager, fp32)"
    first, first_math = trace.first_divergence(), trace.first_math()
    missing = [s.name for s in trace.stages if s.max_abs_diff is None]
    messages = []
    absent = []
    if missing:  # the verdict "absent": the other run has no such stage, and why, where that is known (sdpa)
        from annotate.compare import FUSED

        steps = sorted({name.rsplit(".", 1)[-1] for name in missing})
        why = c.absent if c is not None and c.absent else t("has no such stages")
        if why == FUSED:
            why = t("computes the attention scores and probabilities inside one fused kernel (torch's "
                    "scaled_dot_product_attention) and never returns them")
        absent.append((t("absent ({n} stages: {steps}): {label} {why}", n=len(missing), steps=", ".join(steps), label=label, why=why), "yellow"))
    if first is not None:
        s = trace.stage(first)
        messages.append((t("first divergence: {stage} (max |{a} - {b}| = {d:.3g}){verdict}", stage=first, a=a, b=b, d=s.max_abs_diff,
                           verdict=_verdict(s.verdict)), "bold red" if first_math else "yellow"))
        if first_math is not None and first_math != first:
            messages.append((t("first math difference: {stage} (max |{a} - {b}| = {d:.3g})", stage=first_math, a=a, b=b,
                               d=trace.stage(first_math).max_abs_diff), "bold red"))
        if c is not None and c.diffs64 is not None:
            from annotate.compare import ROUNDING_BOUND

            bound = f"2^{round(math.log2(ROUNDING_BOUND))}"
            if first_math is not None:
                d64 = c.diffs64.get(first_math)
                messages.append((t("in float64 they still differ there ({d:.3g}): the two compute different things", d=d64), "bold red"))
            else:
                messages.append((t("every difference is rounding: re-run in float64, both agree to {bound} of each stage's scale", bound=bound), "green"))
        messages += absent
    elif missing:
        messages += [(t("no difference where compared ({n} stages)", n=len(trace.stages) - len(missing)), "green"), *absent]
    else:
        messages.append((t("all {n} stages are bit-identical to {label}", n=len(trace.stages), label=label), "bold green"))
    out = [Text(line, style=style) for message, style in messages for line in _wrap(message, width)]
    if trace.logits_max_abs_diff is not None:
        verdict = _verdict(c.logits_verdict) if c is not None and c.logits_verdict not in (None, "equal") else ""
        out.append(Text(t("the head's scores: max |{a} - {b}| = {d:.3g}{verdict}", a=a, b=b, d=trace.logits_max_abs_diff, verdict=verdict)))
    return out


def _sides(names: tuple[str, str]) -> tuple[str, str]:
    """The two sides of "max |a - b|" as the view names them: twin (in Chinese 孪生实现), transformers, A, B."""
    return tuple(t("twin") if name == "twin" else name for name in names)


def _verdict(verdict: str | None) -> str:
    """": rounding" after a difference: the verdict (annotate/compare.py), in Chinese with its English name."""
    if verdict == "rounding":
        return t(": rounding")
    if verdict == "math":
        return t(": math")
    return f": {verdict}" if verdict else ""


def _gradients(trace, view: View, width: int) -> list[Text]:
    """--grad: the loss, then d loss / d h at each layer's output (one line per layer), or, with the
    stage tables, every shown stage's gradient statistics; under --diff, the verdict on gradients."""
    loss = trace.loss
    out = [_rule(t("gradients of the loss (backward, eval mode: no dropout)"), width)]
    message = t("loss {value} = {description}", value=_num(loss.value), description=loss.description)
    out.extend(Text(line, style="bold") for line in _wrap(message, width))
    if view.stage_tables:
        shown = [dataclasses.replace(s, stats=s.grad_stats, max_abs_diff=s.grad_max_abs_diff, verdict=None)
                 for s in trace.stages if s.grad_stats and view.shows_layer(s.layer) and view.shows_stage(s.name)]
        out.extend(_stage_rows(trace, shown, width, "", None))
    else:
        first = next(i for i, s in enumerate(trace.stages) if s.layer is not None)
        rows = [(t("embeddings"), trace.entering(), None)]
        rows += [(t("layer {layer}", layer=i), f"{trace.layers_path}.{i}", i) for i in range(trace.num_layers) if view.shows_layer(i)]
        header = _pad("", 12) + _pad("|∇h|", 10, True) + (_pad("max|∇diff|", 12, True) if trace.diffed else "")
        out.append(Text(header, style="bold"))
        for label, name, layer in rows:
            grad = trace.grads.get(name)
            size = _num(grad[0].double().norm(dim=-1).mean().item()) if grad is not None else "n/a"
            diffs = [s.grad_max_abs_diff for s in trace.stages if s.layer == layer and s.grad_stats is not None
                     and (layer is not None or trace.stages.index(s) < first)]  # (RoPE's cos and sin have no gradient)
            d = None if any(x is None for x in diffs) else max(diffs, default=None)
            line = _pad(label, 12) + _pad(size, 10, True) + (_pad(_diff(d), 12, True) if trace.diffed else "")
            out.append(Text(line, style="bold red" if trace.diffed and d else ""))
        legend = t("|∇h|: the mean size (L2 norm) of d loss / d h, the gradient at a token's vector after the layer; --full: every stage's")
        out.extend(Text(line, style="dim") for line in _wrap(legend, width))
    if trace.diffed:
        first_grad = trace.first_grad_divergence()
        if first_grad is not None:
            d = trace.stage(first_grad).grad_max_abs_diff
            message, style = t("first divergent gradient (from the loss backwards): {stage} (max |{a} - transformers| = {d:.3g})",
                               stage=first_grad, a=t("twin"), d=d), "bold red"
        elif any(s.grad_max_abs_diff is None for s in trace.stages) or trace.param_grad_max_abs_diff != 0.0:
            message, style = t("stage gradients equal where compared; parameters' gradients: max |{a} - transformers| = {d:.3g}",
                               a=t("twin"), d=trace.param_grad_max_abs_diff), "yellow"
        else:
            message = t("all {n} stage gradients and {m} parameter gradients are bit-identical to transformers (eager, fp32); loss |diff| {d}",
                        n=len(trace.stages), m=trace.param_grads_compared, d=_diff(loss.abs_diff))
            style = "bold green"
        out.extend(Text(line, style=style) for line in _wrap(message, width))
    return out


def output_width(console: Console) -> int:
    """The terminal's width; into a pipe (| less, | tail) the width of the terminal that stderr is
    on, if any; into a file, WIDE. COLUMNS wins, as everywhere."""
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console.width
    try:
        return os.get_terminal_size(2).columns  # the pipe ends in this terminal
    except OSError:
        return WIDE


def render(trace, view: View, console: Console, explain=None) -> None:
    """Print the trace: see the module docstring for what, in which order. ``explain(stage, width)``
    gives the lines under a stage with --explain."""
    view.check(trace)
    width = output_width(console)
    lines: list[Text] = [*_header(trace), *_token_line(trace, width), *_predictions(trace, width)]

    if not view.stage_tables:
        lines.append(_rule(t("layer by layer"), width))
        lines.extend(_summary(trace, view, width))
        lines.extend(_outputs(trace, width))
    else:
        shown = [s for s in trace.stages if view.shows_layer(s.layer) and view.shows_stage(s.name)]
        first_layer = next((i for i, s in enumerate(trace.stages) if s.layer is not None), len(trace.stages))
        before = [s for s in shown if s.layer is None and trace.stages.index(s) < first_layer]
        after = [s for s in shown if s.layer is None and trace.stages.index(s) >= first_layer]
        if before:
            lines.append(_rule(t("embeddings"), width))
            lines.extend(_stage_rows(trace, before, width, "", explain))
        for layer in range(trace.num_layers):
            if not view.shows_layer(layer):
                continue
            stages = [s for s in shown if s.layer == layer]
            attention = view.full and (view.stages is None or any(s.name.endswith(".probs") for s in stages))
            if not stages and not attention:
                continue
            prefix = f"{trace.layers_path}.{layer}."
            lines.append(_rule(t("layer {layer}  ({prefix}*)", layer=layer, prefix=prefix), width))
            if stages:
                lines.extend(_stage_rows(trace, stages, width, prefix, explain))
            if attention:
                lines.extend(_attention_account(trace, layer, view, width))
        if after:
            lines.append(_rule(t("output"), width))
            lines.extend(_stage_rows(trace, after, width, "", explain))

    if trace.diffed:
        lines.extend(_diff_lines(trace, width))
    if trace.loss is not None:
        lines.extend(_gradients(trace, view, width))
    if trace.lens is not None:
        lines.extend(_lens(trace, view, width))
    if view.grid is not None:
        lines.extend(_grid(trace, *view.grid, width))
    if not view.stage_tables and view.grid is None:
        lens = t(", --lens (each layer's guess)") if trace.lens is None and (trace.predictions is not None or trace.mask_predictions is not None) else ""
        hint = t("more: --full (every stage), --grid L.H (one head), --explain (formulas and code){lens}, --json", lens=lens)
        lines.extend(Text(line, style="dim") for line in _wrap(hint, width))
    for line in lines:
        console.print(line, overflow="ignore", crop=False, no_wrap=True)


def explainer(trace):
    """The lines --explain puts under a stage: its formula in the paper's notation, and where it is
    computed, in transformers (file:line, read from the installed library) and in the twin."""
    from annotate import stages

    def explain(name: str, width: int) -> list[Text]:
        e = stages.explain(trace.model_type, name)
        out = []
        if e.formula:
            out.append(Text("    " + e.formula, style="italic"))
        hf = e.hf_location if e.hf else t("unknown ({note})", note=e.hf_note) if e.hf_note else t("unknown")
        twin = e.twin_location if e.twin else t("not found ({note})", note=e.twin_note_shown)
        for line in (f"transformers: {hf}", t("twin: {where}", where=twin)):
            out.extend(Text(piece, style="dim") for piece in _wrap(line, width, indent="    "))
        return out

    return explain
