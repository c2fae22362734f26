"""Flow charts of BERT (post-LN) and GPT-2 (pre-LN), drawn from a real trace, as mermaid text.

The guides show each model's data flow as a ```mermaid flowchart (GitHub renders it). The charts
are not drawn by hand: each box names the stage of ``annotate.trace`` whose tensor it stands for,
and its shape is read from the trace, so the picture shows what the code computes.

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

import dataclasses
import sys
import tempfile
from collections.abc import Callable

TEXT = "The cat sat on the mat."
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
INPUT_IDS = "input_ids"  # not a recorded stage: the tokens' ids, shape (1, T)


@dataclasses.dataclass(frozen=True)
class Box:
    """One node of a chart."""

    id: str  # the mermaid node id
    label: str  # what the step computes; "{...}" fields are filled from the trace (see _facts)
    stage: str | None = None  # the stage whose shape the box shows ("{layer}": the first layer); None: no shape
    kind: str = "box"  # "box", "norm" (a LayerNorm, highlighted), "add" (a residual addition), "io" (a layer's input)


@dataclasses.dataclass(frozen=True)
class Chart:
    name: str
    title: str  # the subgraph's title; "{...}" fields filled from the trace
    before: tuple[Box, ...]  # above the repeated layer
    layer: tuple[Box, ...]  # one layer, drawn once (the title says how many)
    after: tuple[Box, ...]  # after the last layer
    edges: tuple[tuple[str, str, str], ...]  # (from, to, label): an arrow, labelled unless label is ""
    residuals: tuple[tuple[str, str], ...]  # (from, to): a residual connection, drawn dotted
    trace: Callable  # () -> annotate.tracer.Trace: the run the chart is read from

    @property
    def boxes(self) -> tuple[Box, ...]:
        return (*self.before, *self.layer, *self.after)

    def stages(self) -> dict[str, str]:
        """Node id -> the stage whose shape it shows, for the boxes that show one."""
        return {box.id: box.stage for box in self.boxes if box.stage is not None}


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
# The runs the charts are read from.


def bert_trace():
    """all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads of 32, feed-forward 1536) on TEXT."""
    import annotate

    return annotate.trace(MINILM, TEXT)


def gpt2_trace():
    """The guides' small random GPT-2 (annotate.examples.write_gpt2's defaults) on TEXT."""
    import annotate
    from annotate.examples import write_gpt2

    with tempfile.TemporaryDirectory() as folder:
        return annotate.trace(str(write_gpt2(folder)), TEXT)  # the twin holds its weights in memory


# ---------------------------------------------------------------------------------------------
# The charts. BERT: LayerNorm *after* each residual addition (post-LN), so the stream between
# layers is normalised. GPT-2: LayerNorm *before* each sublayer (pre-LN), the residual stream
# itself is never normalised inside a block, and one last LayerNorm (ln_f) closes the stack.

L = "encoder.layer.{layer}"
BERT = Chart(
    name="bert",
    title="BertLayer × {layers}, post-LN",
    before=(
        Box("ids", "input_ids: {tokens}", INPUT_IDS),
        Box("emb", "word + token type + position embeddings", "embeddings.sum"),
        Box("emb_ln", "LayerNorm", "embeddings.LayerNorm", "norm"),
    ),
    layer=(
        Box("x", "layer input", kind="io"),
        Box("qkv", "query, key, value: {heads} heads × {head_size}", f"{L}.attention.self.query"),
        Box("probs", "softmax(Q·Kᵀ / √{head_size} + mask)", f"{L}.attention.self.probs"),
        Box("ctx", "probs · V, heads concatenated", f"{L}.attention.self.context"),
        Box("proj", "attention.output.dense", f"{L}.attention.output.dense"),
        Box("add1", "+", f"{L}.attention.output.residual", "add"),
        Box("ln1", "attention.output.LayerNorm", f"{L}.attention.output.LayerNorm", "norm"),
        Box("up", "intermediate.dense, GELU", f"{L}.intermediate.intermediate_act_fn"),
        Box("down", "output.dense", f"{L}.output.dense"),
        Box("add2", "+", f"{L}.output.residual", "add"),
        Box("ln2", "output.LayerNorm", f"{L}.output.LayerNorm", "norm"),
    ),
    after=(
        Box("out", "last_hidden_state", "last_hidden_state"),
        Box("pool", "pooler: dense, tanh, on [CLS]'s vector", "pooler.activation"),
    ),
    edges=(
        ("ids", "emb", ""),
        ("emb", "emb_ln", ""),
        ("emb_ln", "x", ""),
        ("x", "qkv", ""),
        ("qkv", "probs", ""),
        ("probs", "ctx", ""),
        ("ctx", "proj", ""),
        ("proj", "add1", ""),
        ("add1", "ln1", ""),
        ("ln1", "up", ""),
        ("up", "down", ""),
        ("down", "add2", ""),
        ("add2", "ln2", ""),
        ("ln2", "out", "after layer {layers}"),
        ("out", "pool", ""),
    ),
    residuals=(("x", "add1"), ("ln1", "add2")),
    trace=bert_trace,
)

H = "transformer.h.{layer}"
GPT2 = Chart(
    name="gpt2",
    title="GPT2Block × {layers}, pre-LN",
    before=(
        Box("ids", "input_ids: {tokens}", INPUT_IDS),
        Box("emb", "wte + wpe: token + position embeddings", "transformer.sum"),
    ),
    layer=(
        Box("x", "block input", kind="io"),
        Box("ln1", "ln_1 (LayerNorm)", f"{H}.ln_1", "norm"),
        Box("qkv", "c_attn, split: query, key, value: {heads} heads × {head_size}", f"{H}.attn.query"),
        Box("probs", "softmax(Q·Kᵀ / √{head_size} + causal mask)", f"{H}.attn.probs"),
        Box("ctx", "probs · V, heads concatenated", f"{H}.attn.context"),
        Box("proj", "attn.c_proj", f"{H}.attn.c_proj"),
        Box("add1", "+", f"{H}.attn.residual", "add"),
        Box("ln2", "ln_2 (LayerNorm)", f"{H}.ln_2", "norm"),
        Box("up", "mlp.c_fc, gelu_new", f"{H}.mlp.act"),
        Box("down", "mlp.c_proj", f"{H}.mlp.c_proj"),
        Box("add2", "+", f"{H}.mlp.residual", "add"),
    ),
    after=(
        Box("lnf", "ln_f (LayerNorm)", "transformer.ln_f", "norm"),
        Box("head", "lm_head = wte (tied): a score per vocabulary entry", "lm_head"),
    ),
    edges=(
        ("ids", "emb", ""),
        ("emb", "x", ""),
        ("x", "ln1", ""),
        ("ln1", "qkv", ""),
        ("qkv", "probs", ""),
        ("probs", "ctx", ""),
        ("ctx", "proj", ""),
        ("proj", "add1", ""),
        ("add1", "ln2", ""),
        ("ln2", "up", ""),
        ("up", "down", ""),
        ("down", "add2", ""),
        ("add2", "lnf", "after block {layers}"),
        ("lnf", "head", ""),
    ),
    residuals=(("x", "add1"), ("add1", "add2")),
    trace=gpt2_trace,
)

CHARTS = {chart.name: chart for chart in (BERT, GPT2)}


def flowchart(name: str, trace=None) -> str:
    """The mermaid text of chart ``name`` ("bert", "gpt2"), read from ``trace`` (default: the
    chart's own run)."""
    chart = CHARTS[name]
    return render(chart, trace if trace is not None else chart.trace())


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
