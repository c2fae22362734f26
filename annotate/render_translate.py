"""The terminal view of an encoder-decoder's trace (annotate/translate.py), in one screen at 80 columns:

- the source's tokens and the target's (what the decoder read: the start token first);
- the encoder layer by layer, then the decoder layer by layer: the size of each token's vector,
  how much the layer changed it, and (decoder) where its cross-attention looked in the source;
- where each target position looked in the source: after each token the decoder has read, the
  token it chose next and the two source tokens the last decoder layer's cross-attention weighed
  most when choosing it (averaged over heads);
- the translation; with --diff, how each stage compares with transformers'.

``--full``: every stage, one row each.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from annotate.render import _clip, _diff, _lines, _num, _pad, _rule, output_width


def _header(t, width: int) -> list[Text]:
    facts = (f"{t.model_class} ({t.model_type}): {t.encoder_layers} encoder + {t.decoder_layers} decoder layers, "
             f"{t.num_heads} heads; {len(t.source_tokens)} source tokens, {len(t.target_tokens)} target positions")
    return [Text.assemble(("annotate trace ", "bold"), t.model), *[Text(line, style="dim") for line in _lines(facts.split(" "), width, sep=" ")]]


def _tokens(title: str, tokens: list[str], width: int) -> list[Text]:
    shown = [f"{i}:{token}" for i, token in enumerate(tokens)]
    return [Text(line) for line in _lines([f"{title}"] + shown, width, sep=" │ ")]


def _norms(t, name: str) -> float:
    return t.states[name][0].double().norm(dim=-1).mean().item()


def _layers(t, stack: str, width: int) -> list[Text]:
    """One line per layer of ``stack``: |h|, change, and the two source tokens its attention (the
    decoder: cross-attention) weights most, averaged over heads and positions."""
    out = [Text(f"{'':14}{'|h|':>6}  {'change':>7}  " + ("attention mostly to" if stack == "encoder" else "cross-attention mostly to (source)"), style="dim")]
    first = t.embedded(stack)
    before = t.states[first][0].double()
    out.append(Text(f"{'embeddings':14}{_norms(t, first):6.2f}"))
    layers = t.encoder_layers if stack == "encoder" else t.decoder_layers
    for L in range(layers):
        h = t.states[t.layer(stack, L)][0].double()
        change = ((h - before).norm(dim=-1) / before.norm(dim=-1)).mean().item()
        probs = t.attention(stack, L, cross=stack == "decoder").mean(dim=(0, 1))  # (S,): over heads and positions
        top = probs.topk(min(2, probs.numel()))
        to = "  ".join(f"{i}:{_clip(t.source_tokens[i], 12)} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        diff = ""
        if t.diffed:
            names = [s for s in t.stages if s.name.startswith(t.layer(stack, L) + ".")]
            worst = max((s.max_abs_diff for s in names if s.max_abs_diff is not None), default=None)
            diff = f"  Δ {_diff(worst)}"
        out.append(Text(_clip(f"{'layer ' + str(L):14}{h.norm(dim=-1).mean().item():6.2f}  {change:7.0%}  {to}{diff}", width)))
        before = h
    return out


def _looked(t, width: int) -> list[Text]:
    """Per target position: the token it read, the token the model chose next, and where the last
    decoder layer's cross-attention looked (heads averaged)."""
    L = t.decoder_layers - 1
    cross = t.cross_attention(L)  # (T, S)
    out = [_rule(f"where each target token looked (cross-attention, layer {L})", width)]
    out.append(Text(f"{'after':10} {'chose':10} looking at (source token, weight; heads averaged)", style="dim"))
    for pos in range(cross.shape[0]):
        top = cross[pos].topk(min(2, cross.shape[1]))
        looked = "  ".join(f"{i}:{t.source_tokens[i]} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        chose = t.next_tokens[pos].token if t.next_tokens else ""
        out.append(Text(_clip(f"{_pad(_clip(t.target_tokens[pos], 10), 10)} {_pad(_clip(chose, 10), 10)} {looked}", width)))
    return out


def _diff_lines(t, width: int) -> list[Text]:
    counts: dict[str, int] = {}
    for s in t.stages:
        counts[s.verdict or "not compared"] = counts.get(s.verdict or "not compared", 0) + 1
    out = [_rule(f"--diff: {t.comparison.a} against {t.comparison.b}", width)]
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
    out.append(Text(f"{len(t.stages)} stages: {summary}"))
    out.append(Text(f"logits: max |twin - transformers| {_diff(t.logits_max_abs_diff)}"))
    first = t.first_math()
    out.append(Text(f"first stage computing other math: {first}" if first else "no stage computes other math", style="bold" if first else ""))
    return out


def _full(t, width: int) -> list[Text]:
    out = [_rule("every stage", width)]
    name_width = max(20, width - 48)
    out.append(Text(f"{_pad('stage', name_width)} {'shape':>14} {'mean':>10} {'std':>10}" + (" Δ" if t.diffed else ""), style="dim"))
    for s in t.stages:
        name = s.name.removeprefix(t.prefix)
        shape = "(" + ", ".join(str(n) for n in s.shape) + ")"
        diff = f" {_diff(s.max_abs_diff)}" if t.diffed else ""
        out.append(Text(f"{_pad(_clip(name, name_width), name_width)} {shape:>14} {_num(s.stats['mean']):>10} {_num(s.stats['std']):>10}{diff}"))
    return out


def render(t, console: Console, full: bool = False) -> None:
    width = output_width(console)
    how = "the given target (teacher forcing)" if t.given_target else "the model's greedy translation, read back"
    lines = [*_header(t, width), *_tokens("source", t.source_tokens, width), *_tokens("target", t.target_tokens, width)]
    lines.extend(Text(line, style="dim") for line in _lines(f"the decoder reads {how}".split(" "), width, sep=" "))
    if full:
        lines.extend(_full(t, width))
    else:
        lines.append(_rule("encoder, layer by layer", width))
        lines.extend(_layers(t, "encoder", width))
        lines.append(_rule("decoder, layer by layer", width))
        lines.extend(_layers(t, "decoder", width))
        lines.extend(_looked(t, width))
    lines.append(_rule("translation", width))
    lines.append(Text(t.translation, style="bold"))
    if t.diffed:
        lines.extend(_diff_lines(t, width))
    if not full:
        lines.extend(Text(line, style="dim") for line in _lines("more: --full (every stage), --target TEXT (teacher forcing), --diff, --json".split(" "), width, sep=" "))
    for line in lines:
        console.print(line, overflow="ignore", crop=False, no_wrap=True)
