"""``annotate generate`` for an encoder-decoder (Marian, BART): the source encoded once, then the
target token by token, greedy or by beam search, as transformers' ``generate`` does with the
checkpoint's generation_config.json (reimpl/seq2seq.py, token for token), and each step shown:
the running beams, their scores, the token each one took, and where that token's position looked
in the source (the last decoder layer's cross-attention, heads averaged).

``run`` computes (no printing); ``show`` prints one step after another; ``to_json`` gives the
source ids and ``ids`` exactly as transformers' ``generate`` returns them (the decoder start token
first).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.text import Text

from annotate.errors import UserError
from annotate.i18n import t
from annotate.render import _clip, _lines, _pad, _rule, _wrap, output_width


@dataclasses.dataclass
class Beam:
    tokens: list[str]  # the target so far, the start token left out
    score: float  # the running score: the sum of the chosen tokens' log-probabilities
    token: str  # the token this step added
    parent: int  # the beam of the step before that it continues
    looked: list[tuple[str, float]]  # the source tokens its new position weighed most (last decoder layer, heads averaged)


@dataclasses.dataclass
class Step:
    index: int
    beams: list[Beam]
    finished: list[tuple[str, float]]  # beam search: the finished hypotheses so far (text, score), best first


@dataclasses.dataclass
class Run:
    model: str
    model_class: str
    source: str
    source_tokens: list[str]
    source_ids: list[int]
    settings: dict[str, Any]  # what generate was called with
    ids: list[int]  # as transformers' generate returns them: the start token first
    text: str  # decoded, special tokens skipped
    steps: list[Step]

    def to_json(self) -> str:
        return json.dumps({
            "model": self.model, "model_class": self.model_class, "source": self.source,
            "source_ids": self.source_ids, "source_tokens": self.source_tokens, "settings": self.settings,
            "ids": self.ids, "text": self.text,
            "steps": [{"step": s.index, "beams": [dataclasses.asdict(b) for b in s.beams],
                       "finished": [{"hypothesis": name, "score": score} for name, score in s.finished]} for s in self.steps],
        }, ensure_ascii=False, indent=1)


def run(model: str, source: str, *, num_beams: int | None = None, max_new_tokens: int | None = None) -> Run:
    from annotate import tracer
    from annotate.translate import _tokenizer
    from reimpl import seq2seq

    folder, twin = tracer.load(model)
    if not hasattr(twin, "generate"):
        raise UserError(t("{model} loads as {cls}, which has no head to generate with", model=model, cls=type(twin).__name__))
    path = folder / "generation_config.json"
    try:
        settings = seq2seq.settings_from(json.loads(path.read_text()) if path.is_file() else None,
                                         json.loads((folder / "config.json").read_text()))
    except ValueError as e:
        raise UserError(str(e)) from None
    if num_beams is not None:
        if num_beams < 1:
            raise UserError(t("--num-beams must be at least 1, not {num_beams}", num_beams=num_beams))
        settings["num_beams"] = num_beams
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise UserError(t("--max-new-tokens must be at least 1, not {max_new_tokens}", max_new_tokens=max_new_tokens))
        settings["max_new_tokens"] = max_new_tokens
    tokenizer = _tokenizer(folder)
    if not source.strip():
        raise UserError(t("the source text is empty"))
    enc = tokenizer(source, return_tensors="pt")
    source_tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    steps: list[Step] = []

    def on_step(s) -> None:
        beams = []
        for j in range(s.sequences.shape[1]):
            looked = s.cross_attentions[-1][0, j].double().mean(0) if s.cross_attentions else None  # (S,)
            top = looked.topk(min(2, looked.numel())) if looked is not None else None
            beams.append(Beam(
                tokens=tokenizer.convert_ids_to_tokens(s.sequences[0, j, 1:].tolist()), score=float(s.scores[0, j]),
                token=tokenizer.convert_ids_to_tokens(int(s.next_tokens[0, j])), parent=int(s.beam_parents[0, j]),
                looked=[(source_tokens[i], round(p, 4)) for p, i in zip(top.values.tolist(), top.indices.tolist())] if top is not None else [],
            ))
        finished = []
        if s.finished_scores is not None:
            finished = [(f"hypothesis {j}", float(score)) for j, score in enumerate(s.finished_scores[0].tolist()) if score > -1e8]
        steps.append(Step(s.index, beams, finished))

    try:
        ids = seq2seq.generate(twin, enc["input_ids"], enc["attention_mask"], on_step=on_step, **settings)
    except ValueError as e:
        raise UserError(str(e)) from None
    ids = ids[0].tolist()
    return Run(model=model, model_class=type(twin).__name__, source=source, source_tokens=source_tokens,
               source_ids=enc["input_ids"][0].tolist(), settings=settings, ids=ids,
               text=tokenizer.decode(ids, skip_special_tokens=True), steps=steps)


def show(r: Run, console: Console) -> None:
    width = output_width(console)
    beams = r.settings.get("num_beams", 1)
    settings = ", ".join(f"{k} {v}" for k, v in r.settings.items() if k not in ("num_beams", "decoder_start_token_id", "pad_token_id", "eos_token_id"))
    lines = [Text.assemble(("annotate generate ", "bold"), r.model)]
    if beams > 1:
        described = t("{model_class}: beam search, {n} beams; {settings}", model_class=r.model_class, n=beams, settings=settings)
    else:
        described = t("{model_class}: greedy; {settings}", model_class=r.model_class, settings=settings)
    lines += [Text(line, style="dim") for line in _wrap(described, width)]
    lines += [Text(line) for line in _lines([t("source")] + [f"{i}:{token}" for i, token in enumerate(r.source_tokens)], width, sep=" │ ")]
    head = (f"{_pad(t('beam'), 4, right=True)} {_pad(t('from'), 4, right=True)} {_pad(t('score'), 8, right=True)}  "
            f"{_pad(t('new'), 8)} {_pad(t('target so far'), 24)} {t('looked at')}")
    for s in r.steps:
        lines.append(_rule(t("step {n}", n=s.index), width))
        lines.append(Text(_clip(head, width), style="dim"))
        for j, b in enumerate(s.beams):
            looked = "  ".join(f"{token} {p:.2f}" for token, p in b.looked)
            text = "".join(token.replace("▁", " ") for token in b.tokens).strip()
            score = f"{b.score:8.3f}" if b.score > -1e8 else _pad(t("ended"), 8, right=True)  # transformers' -1e9: a beam that can't go on
            row = f"{j:>4} {b.parent:>4} {score}  {_pad(_clip(b.token, 8), 8)} {_pad(_clip(text, 24), 24)} {looked}"
            lines.append(Text(_clip(row, width)))
        if s.finished:
            scores = ", ".join(f"{score:.3f}" for _, score in s.finished)
            lines.append(Text(_clip(t("finished: {scores}", scores=scores), width), style="dim"))
    lines.append(_rule(t("result"), width))
    lines.append(Text(r.text, style="bold"))
    lines.append(Text(_clip(t("ids: {ids}", ids=r.ids), width), style="dim"))
    for line in lines:
        console.print(line, overflow="ignore", crop=False, no_wrap=True)
