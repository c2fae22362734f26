"""How ``annotate trace`` looks in a terminal (rich). Everything it shows is computed in tracer.py.

Order of the output: the tokens with their ids; the embedding stages; then per layer its stages
in forward order (shape, mean, std, min, max, and with --diff max |twin - transformers|) and, per
head, the tokens each token attends to most; then the stages after the last layer (pooler, final
norm); with --diff a closing line; with --grid one head's attention matrix as a heatmap; for
GPT-2 the predicted next tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

from rich.console import Console
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from annotate.errors import UserError

WIDE = 160  # columns when writing to a file or a pipe: names like encoder.layer.5.intermediate.intermediate_act_fn stay whole


# ---------------------------------------------------------------------------------------------
# What to show.


def _numbers(spec: str, option: str, what: str) -> frozenset[int]:
    """ "0,3-5" -> {0, 3, 4, 5}."""
    out: set[int] = set()
    for item in spec.split(","):
        item = item.strip()
        first, dash, last = item.partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise UserError(f"{option} {spec!r}: {item!r} is not a {what} number or range (e.g. 0,3-5)") from None
        if lo < 0 or hi < lo:
            raise UserError(f"{option} {spec!r}: {item!r} is not a {what} range (numbers from 0, low-high)")
        out.update(range(lo, hi + 1))
    return frozenset(out)


@dataclasses.dataclass(frozen=True)
class View:
    """Which parts of a trace to show; None means all."""

    layers: frozenset[int] | None = None
    heads: frozenset[int] | None = None
    stages: tuple[str, ...] | None = None  # last dotted component(s) of stage names: "query", "output.LayerNorm"
    grid: tuple[int, int] | None = None  # (layer, head)

    @classmethod
    def parse(cls, layers: str | None = None, heads: str | None = None, stages: str | None = None, grid: str | None = None) -> "View":
        """From the command line's --layers 0,3-5 --heads 0-2 --stages query,probs --grid 3.7 (syntax only;
        ``check`` compares with the model)."""
        grid_at = None
        if grid is not None:
            layer, dot, head = grid.strip().partition(".")
            if not (dot and layer.isdigit() and head.isdigit()):
                raise UserError(f"--grid {grid!r}: expected LAYER.HEAD, e.g. 3.7")
            grid_at = (int(layer), int(head))
        names = None
        if stages is not None:
            names = tuple(n.strip().strip(".") for n in stages.split(","))
            if not all(names):
                raise UserError(f"--stages {stages!r}: expected step names separated by commas, e.g. query,probs,LayerNorm")
        return cls(
            layers=_numbers(layers, "--layers", "layer") if layers is not None else None,
            heads=_numbers(heads, "--heads", "head") if heads is not None else None,
            stages=names,
            grid=grid_at,
        )

    def check(self, trace) -> None:
        """Every layer, head and stage asked for exists in this model."""
        L, H = trace.num_layers, trace.num_heads
        if self.layers is not None and max(self.layers) >= L:
            raise UserError(f"--layers: the model has {L} layers (0-{L - 1}); there is no layer {max(self.layers)}")
        if self.heads is not None and max(self.heads) >= H:
            raise UserError(f"--heads: the model has {H} heads per layer (0-{H - 1}); there is no head {max(self.heads)}")
        if self.grid is not None:
            layer, head = self.grid
            if layer >= L or head >= H:
                raise UserError(f"--grid {layer}.{head}: the model has layers 0-{L - 1} and heads 0-{H - 1}")
        for want in self.stages or ():
            if not any(_matches(s.name, want) for s in trace.stages):
                steps = sorted({s.name.rsplit(".", 1)[-1] for s in trace.stages if not s.name.rsplit(".", 1)[-1].isdigit()})
                raise UserError(f"--stages: no stage is named {want!r}; steps in this model: {', '.join(steps)}")

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
# The trace.


def _num(x: float) -> str:
    return f"{x:.4g}"


def _diff_cell(d: float | None) -> Text:
    if d is None:
        return Text("not caught", style="yellow")
    if d == 0.0:
        return Text("0")
    return Text(f"{d:.3g}", style="bold red")


def _stage_table(trace, stages) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("stage", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    for column in ("mean", "std", "min", "max"):
        table.add_column(column, justify="right", no_wrap=True)
    if trace.diffed:
        table.add_column("max|diff|", justify="right", no_wrap=True)
    for s in stages:
        cells = [s.name, "(" + ", ".join(map(str, s.shape)) + ")", *(_num(s.stats[k]) for k in ("mean", "std", "min", "max"))]
        table.add_row(*cells, *([_diff_cell(s.max_abs_diff)] if trace.diffed else []))
    return table


def _label(token: str, width: int = 10) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def _attention_account(trace, layer: int, view: View, width: int) -> Text:
    """Per head (a column), for each token (a row), the two tokens it attends to most, with their
    weights. As many heads side by side as fit the console; the rest in further blocks. Laid out
    by hand, and with few styled spans: as a rich Table, or with each label styled, rich takes
~40 ms per layer to lay it out."""
    probs = trace.attention(layer)  # (nh, T, T)
    T = probs.shape[-1]
    top = probs.topk(min(2, T), dim=-1)  # per head and query token: (nh, T, k)
    values, indices = top.values.tolist(), top.indices.tolist()
    labels = [_label(t, 8) for t in trace.tokens]
    heads = [h for h in range(probs.shape[0]) if view.shows_head(h)]
    first = max(map(len, labels + ["token"])) + 2  # the token column
    cell = max(map(len, labels)) + len(" 0.00") + 2  # "[SEP] 0.42" and a gap
    per_block = max(1, (width - first) // cell)
    text = Text(no_wrap=True)
    for start in range(0, len(heads), per_block):
        chunk = heads[start : start + per_block]
        text.append("token".ljust(first) + "".join(f"head {h}".ljust(cell) for h in chunk).rstrip() + "\n", style="bold")
        for i in range(T):
            for rank in range(len(values[0][0])):
                cells = [(labels[i] if rank == 0 else "").ljust(first)]
                for h in chunk:
                    w, j = values[h][i][rank], indices[h][i][rank]
                    cells.append((f"{labels[j]} {w:.2f}" if w > 0 else "").ljust(cell))  # w == 0: GPT-2's first token sees only itself
                text.append("".join(cells).rstrip() + "\n")
    text.rstrip()
    return text


def _heat(p: float) -> str:
    """White (0) to deep blue (1)."""
    r = g = int(255 - 215 * p)
    b = int(255 - 80 * p)
    fg = "white" if p > 0.5 else "black"
    return f"{fg} on rgb({r},{g},{b})"


def _grid(trace, layer: int, head: int) -> Table:
    probs = trace.attention(layer)[head]  # (T, T)
    labels = [_label(t, 8) for t in trace.tokens]
    table = Table(box=None, pad_edge=False, padding=(0, 0))
    table.add_column("", justify="right", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="center", no_wrap=True, min_width=5)
    for i, label in enumerate(labels):
        row = [Text(f" {p:.2f} ", style=_heat(p)) for p in probs[i].tolist()]
        table.add_row(Text(label + " "), *row)
    return table


def _tokens(trace) -> Text:
    text = Text()
    for i, (token, id) in enumerate(zip(trace.tokens, trace.ids)):
        text.append(f"{i}:", style="dim")
        text.append(token, style="bold")
        text.append(f"({id})  ", style="cyan")
    return text


def render(trace, view: View, console: Console) -> None:
    """Print the trace: see the module docstring for what, in which order."""
    view.check(trace)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = max(console.width, WIDE)
    T = len(trace.tokens)
    console.print(Text.assemble(("annotate trace ", "bold"), trace.model, f"  ({trace.model_type}, {trace.num_layers} layers, {trace.num_heads} heads, {T} tokens)"))
    console.print(_tokens(trace))

    shown = [s for s in trace.stages if view.shows_layer(s.layer) and view.shows_stage(s.name)]
    first_layer = next((i for i, s in enumerate(trace.stages) if s.layer is not None), len(trace.stages))
    before = [s for s in shown if s.layer is None and trace.stages.index(s) < first_layer]
    after = [s for s in shown if s.layer is None and trace.stages.index(s) >= first_layer]
    if before:
        console.print(Rule("embeddings", align="left"))
        console.print(_stage_table(trace, before))
    for layer in range(trace.num_layers):
        if not view.shows_layer(layer):
            continue
        stages = [s for s in shown if s.layer == layer]
        attention = any(s.name.endswith(".probs") for s in stages) or view.stages is None
        if not stages and not attention:
            continue
        console.print(Rule(f"layer {layer}", align="left"))
        if stages:
            console.print(_stage_table(trace, stages))
        if attention:
            console.print(Text(f"layer {layer}: the tokens each token attends to most, per head", style="bold"))
            console.print(_attention_account(trace, layer, view, console.width))
    if after:
        console.print(Rule("output", align="left"))
        console.print(_stage_table(trace, after))

    if trace.diffed:
        first = trace.first_divergence()
        missing = [s.name for s in trace.stages if s.max_abs_diff is None]
        if first is not None:
            d = trace.stage(first).max_abs_diff
            console.print(Text.assemble(("first divergence: ", "bold red"), first, f" (max |twin - transformers| = {d:.3g})"))
        elif missing:
            console.print(Text(f"no difference where compared; {len(missing)} stages had no transformers value: {', '.join(missing)}", style="yellow"))
        else:
            console.print(Text(f"all {len(trace.stages)} stages are bit-identical to transformers (eager, fp32)", style="bold green"))
        if trace.logits_max_abs_diff is not None:
            console.print(Text(f"logits: max |twin - transformers| = {trace.logits_max_abs_diff:.3g}"))

    if view.grid is not None:
        layer, head = view.grid
        console.print(Rule(f"layer {layer}, head {head}: attention (row: token, column: the token attended to)", align="left"))
        console.print(_grid(trace, *view.grid))

    if trace.predictions:
        console.print(Rule("next token", align="left"))
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("rank", justify="right")
        table.add_column("token")
        table.add_column("id", justify="right")
        table.add_column("probability", justify="right")
        for rank, p in enumerate(trace.predictions, 1):
            table.add_row(str(rank), repr(p.text), str(p.id), f"{p.prob:.4f}")
        console.print(table)
    for m in trace.mask_predictions or ():
        console.print(Rule(f"{trace.tokens[m.position]} at position {m.position}: the model's answers", align="left"))
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("rank", justify="right")
        table.add_column("token")
        table.add_column("id", justify="right")
        table.add_column("probability", justify="right")
        for rank, p in enumerate(m.top, 1):
            table.add_row(str(rank), p.token, str(p.id), f"{p.prob:.4f}")
        console.print(table)
    if trace.labels:
        console.print(Rule("labels", align="left"))
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("label")
        table.add_column("probability", justify="right")
        for label in trace.labels:
            table.add_row(label.label, f"{label.prob:.4f}")
        console.print(table)
