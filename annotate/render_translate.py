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

from annotate import i18n
from annotate.i18n import t
from annotate.render import _clip, _diff, _lines, _num, _pad, _rule, _wrap, output_width


def _header(tr, width: int) -> list[Text]:
    facts = t("{model_class} ({model_type}): {encoder} encoder + {decoder} decoder layers, {heads} heads; "
              "{source} source tokens, {target} target positions", model_class=tr.model_class, model_type=tr.model_type,
              encoder=tr.encoder_layers, decoder=tr.decoder_layers, heads=tr.num_heads,
              source=len(tr.source_tokens), target=len(tr.target_tokens))
    return [Text.assemble(("annotate trace ", "bold"), tr.model), *[Text(line, style="dim") for line in _wrap(facts, width)]]


def _tokens(title: str, tokens: list[str], width: int) -> list[Text]:
    shown = [f"{i}:{token}" for i, token in enumerate(tokens)]
    return [Text(line) for line in _lines([f"{title}"] + shown, width, sep=" │ ")]


def _norms(tr, name: str) -> float:
    return tr.states[name][0].double().norm(dim=-1).mean().item()


def _layers(tr, stack: str, width: int) -> list[Text]:
    """One line per layer of ``stack``: |h|, change, and the two source tokens its attention (the
    decoder: cross-attention) weights most, averaged over heads and positions."""
    to_what = t("attention mostly to") if stack == "encoder" else t("cross-attention mostly to (source)")
    out = [Text(f"{'':14}{'|h|':>6}  {_pad(t('change'), 7, right=True)}  " + to_what, style="dim")]
    first = tr.embedded(stack)
    before = tr.states[first][0].double()
    out.append(Text(f"{_pad(t('embeddings'), 14)}{_norms(tr, first):6.2f}"))
    layers = tr.encoder_layers if stack == "encoder" else tr.decoder_layers
    for L in range(layers):
        h = tr.states[tr.layer(stack, L)][0].double()
        change = ((h - before).norm(dim=-1) / before.norm(dim=-1)).mean().item()
        probs = tr.attention(stack, L, cross=stack == "decoder").mean(dim=(0, 1))  # (S,): over heads and positions
        top = probs.topk(min(2, probs.numel()))
        to = "  ".join(f"{i}:{_clip(tr.source_tokens[i], 12)} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        diff = ""
        if tr.diffed:
            names = [s for s in tr.stages if s.name.startswith(tr.layer(stack, L) + ".")]
            worst = max((s.max_abs_diff for s in names if s.max_abs_diff is not None), default=None)
            diff = f"  Δ {_diff(worst)}"
        out.append(Text(_clip(f"{_pad(t('layer {n}', n=L), 14)}{h.norm(dim=-1).mean().item():6.2f}  {change:7.0%}  {to}{diff}", width)))
        before = h
    return out


def _looked(tr, width: int) -> list[Text]:
    """Per target position: the token it read, the token the model chose next, and where the last
    decoder layer's cross-attention looked (heads averaged)."""
    L = tr.decoder_layers - 1
    cross = tr.cross_attention(L)  # (T, S)
    out = [_rule(t("where each target token looked (cross-attention, layer {n})", n=L), width)]
    out.append(Text(f"{_pad(t('after'), 10)} {_pad(t('chose'), 10)} " + t("looking at (source token, weight; heads averaged)"), style="dim"))
    for pos in range(cross.shape[0]):
        top = cross[pos].topk(min(2, cross.shape[1]))
        looked = "  ".join(f"{i}:{tr.source_tokens[i]} {p:.2f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        chose = tr.next_tokens[pos].token if tr.next_tokens else ""
        out.append(Text(_clip(f"{_pad(_clip(tr.target_tokens[pos], 10), 10)} {_pad(_clip(chose, 10), 10)} {looked}", width)))
    return out


def _verdict(verdict: str | None) -> str:
    """A verdict as the summary names it: the JSON's word in English, the glossary's in Chinese."""
    names = {"equal": t("equal"), "rounding": t("rounding"), "math": t("math"), "absent": t("absent")}
    return t("not compared") if verdict is None else names.get(verdict, verdict)


def _run_label(label: str) -> str:
    """A run's label from annotate/compare.py ("twin (fp32)", "transformers (eager, fp32)"): the
    twin named in the view's language; transformers and the settings as they are."""
    if label == "twin" or label.startswith("twin "):
        return t("twin") + label.removeprefix("twin")
    return label


def _diff_lines(tr, width: int) -> list[Text]:
    counts: dict[str | None, int] = {}
    for s in tr.stages:
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
    out = [_rule(t("--diff: {a} against {b}", a=_run_label(tr.comparison.a), b=_run_label(tr.comparison.b)), width)]
    shown = [(_verdict(verdict), n) for verdict, n in sorted(counts.items(), key=lambda item: item[0] or "not compared")]
    summary = ("、" if i18n.current() == "zh-CN" else ", ").join(t("{n} {verdict}", n=n, verdict=verdict) for verdict, n in shown)
    out.append(Text(t("{n} stages: {summary}", n=len(tr.stages), summary=summary)))
    out.append(Text(t("logits: max |twin - transformers| {d}", d=_diff(tr.logits_max_abs_diff))))
    first = tr.first_math()
    out.append(Text(t("first stage computing other math: {stage}", stage=first) if first else t("no stage computes other math"),
                    style="bold" if first else ""))
    return out


def _full(tr, width: int) -> list[Text]:
    out = [_rule(t("every stage"), width)]
    name_width = max(20, width - 48)
    out.append(Text(f"{_pad(t('stage'), name_width)} {_pad(t('shape'), 14, right=True)} {_pad(t('mean'), 10, right=True)} "
                    f"{_pad(t('std'), 10, right=True)}" + (" Δ" if tr.diffed else ""), style="dim"))
    for s in tr.stages:
        name = s.name.removeprefix(tr.prefix)
        shape = "(" + ", ".join(str(n) for n in s.shape) + ")"
        diff = f" {_diff(s.max_abs_diff)}" if tr.diffed else ""
        out.append(Text(f"{_pad(_clip(name, name_width), name_width)} {shape:>14} {_num(s.stats['mean']):>10} {_num(s.stats['std']):>10}{diff}"))
    return out


def render(tr, console: Console, full: bool = False) -> None:
    width = output_width(console)
    reads = t("the decoder reads the given target (teacher forcing)") if tr.given_target else \
        t("the decoder reads the model's greedy translation, read back")
    lines = [*_header(tr, width), *_tokens(t("source"), tr.source_tokens, width), *_tokens(t("target"), tr.target_tokens, width)]
    lines.extend(Text(line, style="dim") for line in _wrap(reads, width))
    if full:
        lines.extend(_full(tr, width))
    else:
        lines.append(_rule(t("encoder, layer by layer"), width))
        lines.extend(_layers(tr, "encoder", width))
        lines.append(_rule(t("decoder, layer by layer"), width))
        lines.extend(_layers(tr, "decoder", width))
        lines.extend(_looked(tr, width))
    lines.append(_rule(t("translation"), width))
    lines.append(Text(tr.translation, style="bold"))
    if tr.diffed:
        lines.extend(_diff_lines(tr, width))
    if not full:
        more = t("more: --full (every stage), --target TEXT (teacher forcing), --diff, --json")
        lines.extend(Text(line, style="dim") for line in _wrap(more, width))
    for line in lines:
        console.print(line, overflow="ignore", crop=False, no_wrap=True)
