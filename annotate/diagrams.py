"""Flow charts of the architectures (BERT post-LN, GPT-2 pre-LN), drawn from a real trace, as mermaid text.

The guides show each model's data flow as a ```mermaid flowchart (GitHub renders it). The charts
are not drawn by hand: each box names the stage of ``annotate.trace`` whose tensor it stands for,
and its shape is read from the trace, so the picture shows what the code computes. Each chart is
its architecture's ``CHART`` (annotate/models/<model_type>.py), with the run it is read from:

- ``bert``: the real all-MiniLM-L6-v2 (packaged, offline) on "The cat sat on the mat.";
- ``gpt2``: the small random GPT-2 of ``annotate.examples.write_gpt2`` (2 blocks, 4 heads,
  n_embd 32, its own byte-level BPE of 400 entries) on the same text.

``python -m annotate.diagrams NAME`` prints one chart's mermaid text (what goes between the
fences); without NAME it prints every chart, each as the guides hold it: the
``<!-- generated: python -m annotate.diagrams NAME -->`` comment, then the fenced block.
tests/test_diagrams.py regenerates every such block in guides/ and compares, and checks each
shown shape against a fresh trace.
"""

from __future__ import annotations

import sys

from annotate.models import INPUT_IDS, Box, Chart  # noqa: F401 (the vocabulary of the charts, annotate/models)

TEXT = "The cat sat on the mat."


def shape_of(trace, stage: str, layer: int = 0) -> tuple[int, ...]:
    """The shape of a stage's tensor in ``trace`` (``{layer}`` read as ``layer``)."""
    if stage == INPUT_IDS:
        return (1, len(trace.ids))
    return tuple(trace[stage.format(layer=layer)].shape)


def _facts(trace, chart: Chart) -> dict[str, object]:
    """What a label may name: sizes read from the trace's tensors, not from a config."""
    layer = chart.layer
    query = shape_of(trace, next(b.stage for b in layer if b.id == "qkv"))  # (1, nh, T, hs)
    inner = shape_of(trace, next(b.stage for b in layer if b.id == "up"))  # (1, T, I)
    return {
        "layers": trace.num_layers,
        "heads": query[1],
        "head_size": query[3],
        "inner": inner[-1],
        "tokens": " ".join(trace.display_tokens),
    }


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _node(box: Box, trace, facts: dict) -> str:
    if box.kind == "add":
        return f'{box.id}(("+"))'
    label = box.label.format(**facts).replace('"', "#quot;")  # a quote would end mermaid's label
    if box.stage is not None:
        label += "<br/>" + _shape_text(shape_of(trace, box.stage))
    if box.kind == "io":
        return f'{box.id}(["{label}"])'
    return f'{box.id}["{label}"]' + (":::norm" if box.kind == "norm" else "")


def render(chart: Chart, trace) -> str:
    """The chart as mermaid text, its shapes read from ``trace``."""
    facts = _facts(trace, chart)
    lines = ["flowchart TB"]
    lines += [f"    {_node(box, trace, facts)}" for box in chart.before]
    lines.append(f'    subgraph layer["{chart.title.format(**facts)}"]')
    lines += [f"        {_node(box, trace, facts)}" for box in chart.layer]
    lines.append("    end")
    lines += [f"    {_node(box, trace, facts)}" for box in chart.after]
    for start, end, label in chart.edges:
        lines.append(f"    {start} -->|{label.format(**facts)}| {end}" if label else f"    {start} --> {end}")
    lines += [f"    {start} -. residual .-> {end}" for start, end in chart.residuals]
    lines.append("    classDef norm fill:#ffd8a8,stroke:#d9480f")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The charts: each architecture's CHART, in annotate/models/<model_type>.py.


def _charts() -> dict:
    from annotate import code, models

    found = {}
    for model_type in code.order():
        try:
            chart = models.get(model_type).chart
        except LookupError:
            continue
        if chart is not None:
            found[chart.name] = chart
    return found


CHARTS = _charts()



def flowchart(name: str, trace=None) -> str:
    """The mermaid text of chart ``name`` ("bert", "gpt2"), read from ``trace`` (default: the
    chart's own run)."""
    chart = CHARTS[name]
    return render(chart, trace if trace is not None else chart.trace(TEXT))


def comment(name: str) -> str:
    """The comment that precedes a generated block in a guide."""
    return f"<!-- generated: python -m annotate.diagrams {name} -->"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    unknown = [name for name in args if name not in CHARTS]
    if unknown:
        print(f"unknown chart {unknown[0]!r}; the charts are: {', '.join(CHARTS)}", file=sys.stderr)
        return 2
    if len(args) == 1:
        print(flowchart(args[0]), end="")
        return 0
    for i, name in enumerate(args or CHARTS):
        print(("\n" if i else "") + comment(name) + "\n```mermaid\n" + flowchart(name) + "```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
