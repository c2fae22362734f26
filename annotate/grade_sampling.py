"""``annotate check --as sampling``: a learner's temperature, top-k and top-p against the twins of
transformers' logits processors (reimpl/generation.py), on a real model's next-token scores.

The learner's class is built once per setting in ``grader.SETTINGS`` as ``CLASS(config)``, config a
transformers ``GenerationConfig(do_sample=True, temperature=..., top_k=..., top_p=...)`` (top_k 0
and top_p 1.0 switch that filter off, as in transformers), and called on the (B, V) scores of the
next token after each of the two texts. Its steps (``temperature``, ``top_k``, ``top_p``: the scores
after each, in that order) and its output (the scores after all three, -inf where a token is
filtered out) are compared with the processors', over every setting at once; the verdicts and the
float64 rerun are annotate check's (annotate/grader.py). The diagnoses are the mistakes sampling
code makes: the temperature multiplied, k off by one, the token that crosses p dropped, top-p on
the scores before the temperature, a finite fill value, probabilities returned instead of scores.
"""

from __future__ import annotations

import contextlib

import torch

from annotate import grader, recorder
from annotate.diagnosis import Diagnosis
from annotate.errors import UserError
from annotate.i18n import t


def reference(scores: torch.Tensor, temperature: float, top_k: int, top_p: float, *, multiply: bool = False, k_shift: int = 0,
              drop_crossing: bool = False, p_first: bool = False) -> dict[str, torch.Tensor]:
    """The processors' scores after each step (a step switched off passes its input on). The
    keywords make one mistake, for the diagnoses."""
    from reimpl.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    tempered = scores
    if temperature != 1.0:
        tempered = scores * temperature if multiply else TemperatureLogitsWarper(temperature)(scores)
    k = TopKLogitsWarper(max(top_k + k_shift, 1))(tempered) if top_k else tempered
    p = k
    if top_p < 1.0:
        if drop_crossing:
            p = _top_p_dropping_the_crossing_token(k, top_p)
        elif p_first:  # which tokens top-p keeps, decided on the scores before the temperature
            unscaled = TopKLogitsWarper(max(top_k + k_shift, 1))(scores) if top_k else scores
            p = k.masked_fill(TopPLogitsWarper(top_p)(unscaled) == -float("inf"), -float("inf"))
        else:
            p = TopPLogitsWarper(top_p)(k)
    return {"temperature": tempered, "top_k": k, "top_p": p}


def _top_p_dropping_the_crossing_token(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the likeliest tokens while their cumulative probability stays at most p (at least one)."""
    ordered, order = scores.sort(dim=-1, descending=True)
    cumulative = ordered.softmax(-1).cumsum(-1)
    drop = cumulative > top_p
    drop[..., 0] = False
    return scores.masked_fill(drop.scatter(-1, order, drop), -float("inf"))


def check(target, kind, *, model: str | None, name: str) -> grader.Report:
    import transformers

    if not isinstance(target, type):
        raise UserError(t("--as sampling grades a class: it is built once per setting, as CLASS(generation_config)"))
    s = grader.setting(kind, model)
    scores = s.roles["scores"]  # (B, V), fp32

    def run(settings, dtype):
        steps: dict[str, list] = {}
        for temperature, top_k, top_p in settings:
            config = transformers.GenerationConfig(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
            try:
                learner = target(config)
            except Exception as e:
                raise grader.failed(e, target, f"{name}(config)") from None
            with recorder.recording() as events, torch.no_grad(), (grader.float64_throughout() if dtype == torch.float64 else contextlib.nullcontext()):
                try:
                    out = learner(scores.to(dtype or torch.float32).clone())
                except Exception as e:
                    raise grader.failed(e, target, name, lambda message: t(
                        "{error} (temperature={temperature}, top_k={top_k}, top_p={top_p})",
                        error=message, temperature=temperature, top_k=top_k, top_p=top_p)) from None
            found, unknown = grader.match_steps(events, kind)
            found[kind.output] = grader.output_of(out, s, name)
            if tuple(found[kind.output].shape) != tuple(scores.shape):
                raise UserError(t("{name} returned a tensor of shape {shape}; the scores are {expected} (B, V)",
                                  name=name, shape=grader._shape(found[kind.output].shape), expected=grader._shape(scores.shape)))
            for step, value in found.items():
                steps.setdefault(step, []).append(value)
            for n, why in unknown:
                steps[f"?{n}"] = why
        return {k: torch.cat(v) if isinstance(v, list) else v for k, v in steps.items() if not isinstance(v, list) or len(v) == len(settings)}

    raw32 = run(grader.SETTINGS, None)
    raw64 = run(grader.SETTINGS, torch.float64)
    again = run(grader.SETTINGS, None)
    ref32, ref64 = both(scores, {})
    report, grading = grader.compare(s, None, name, raw32, raw64, again, ref32, ref64)
    shape, model = grader._shape(scores.shape), s.model
    report.inputs = grader._words(lambda: t(
        "the next-token scores (B, V) = {shape} after the {n} texts, under {settings}", shape=shape, n=len(grader.TEXTS),
        settings=grader._joined([t("temperature {temperature}, top_k {top_k}, top_p {top_p}", temperature=temperature, top_k=top_k,
                                   top_p=top_p) for temperature, top_k, top_p in grader.SETTINGS], semicolons=True)))
    report.layer = None
    report.against = grader._words(lambda: t("the twins of {cls} (reimpl/generation.py), on {model}", cls=kind.hf_class, model=model))
    if grader._differs(grading):
        report.diagnosis = Diagnosis("not-deterministic",
                                     "Two runs on the same scores differ: return the filtered scores; the sampling itself "
                                     "(torch.multinomial) comes after.",
                                     "同样的分数两次运行结果不同：请返回过滤后的分数；采样本身（torch.multinomial）在这之后。")
    elif report.first_math is not None:
        report.diagnosis = diagnose(grading, report.first_math, scores)
    return report


def both(scores: torch.Tensor, mistake: dict) -> tuple[dict, dict]:
    """The processors' steps over every setting, in fp32 and in float64."""
    out = []
    for dtype in (torch.float32, torch.float64):
        steps: dict[str, list] = {}
        for temperature, top_k, top_p in grader.SETTINGS:
            for step, value in reference(scores.to(dtype), temperature, top_k, top_p, **mistake).items():
                steps.setdefault(step, []).append(value)
        out.append({k: torch.cat(v) for k, v in steps.items()})
    return out[0], out[1]


MISTAKES = (
    ("temperature-multiplied", {"multiply": True},
     "The scores are multiplied by the temperature; they are divided by it (T < 1 sharpens, T > 1 flattens).",
     "分数乘上了温度；应该除以温度（T < 1 使分布更尖锐，T > 1 使其更平坦）。"),
    ("top-k-off-by-one", {"k_shift": 1},
     "Top-k keeps k + 1 tokens: keep the k highest scores (and those tied with the k-th).",
     "top-k 保留了 k + 1 个词元：应只保留分数最高的 k 个（以及与第 k 个相等的）。"),
    ("top-k-off-by-one", {"k_shift": -1},
     "Top-k keeps k - 1 tokens: keep the k highest scores (and those tied with the k-th).",
     "top-k 只保留了 k - 1 个词元：应保留分数最高的 k 个（以及与第 k 个相等的）。"),
    ("top-p-drops-crossing-token", {"drop_crossing": True},
     "Top-p drops the token whose cumulative probability crosses p: keep the smallest set of likeliest tokens whose "
     "probabilities add up to p or more, that token included.",
     "top-p 把累积概率越过 p 的那个词元也去掉了：应保留概率之和达到或超过 p 的最小的一组最可能词元，包括那个词元。"),
    ("top-p-before-temperature", {"p_first": True},
     "Top-p is decided on the scores before the temperature: transformers applies temperature, then top-k, then top-p "
     "to the scores they leave.",
     "top-p 是在施加温度之前的分数上决定的：transformers 先施加温度，再做 top-k，然后在剩下的分数上做 top-p。"),
)


def diagnose(grading: grader.Grading, step: str, scores: torch.Tensor) -> Diagnosis:
    from annotate import diagnosis

    mine = grading.mine64.get(step) if grading.mine64 else None
    mine = grading.mine32[step] if mine is None else mine
    ref = grading.ref64[step] if mine.dtype == torch.float64 else grading.ref32[step]
    for id, mistake, en, zh in MISTAKES:
        predicted = both(scores, mistake)[1 if mine.dtype == torch.float64 else 0][step]
        if grader.max_diff(mine, predicted.to(mine.dtype)) <= diagnosis.MATCH * grader.scale(predicted):
            return Diagnosis(id, en, zh)
    filtered = ref == -float("inf")
    if filtered.any() and torch.isfinite(mine[filtered]).all():
        fills = mine[filtered].unique()
        if fills.numel() == 1 and grader.max_diff(mine[~filtered], ref[~filtered]) <= 1e-6 * grader.scale(ref):
            v = float(fills[0])
            return Diagnosis("fill-value", f"The filtered tokens hold {v:g}, not -inf: set them to -inf (softmax then gives them "
                             "exactly 0, and a later filter can't bring them back).",
                             f"被过滤掉的词元的值是 {v:g}，而不是 -inf：请设为 -inf（这样 softmax 给它们的正好是 0，"
                             "之后的过滤也不会把它们找回来）。")
    probs = ref.softmax(-1)
    if grader.max_diff(mine, probs.to(mine.dtype)) <= 1e-6:
        return Diagnosis("probabilities", "Yours are probabilities (each row sums to 1): the processors return scores "
                         "(logits), -inf where filtered; the softmax comes when sampling.",
                         "你返回的是概率（每行之和为 1）：这些处理器返回的是分数（logits），被过滤处为 -inf；softmax 在采样时才做。")
    return diagnosis.describe(grading, step)
