"""What the learner most likely did, at the first step where their module computes something else.

Each hypothesis is a mistake made on the twin itself: the twin's module, copied in float64, is
run once more with that one thing changed (the scale left out, the softmax over the other axis,
a bias zeroed, LayerNorm's epsilon changed, the layer rebuilt pre-LN, ...). If the learner's
float64 value at the first ``math`` step equals the changed twin's there (to 1e-7 of the step's
scale; both are float64, so the same math agrees far closer), that mistake is the diagnosis. It is
a test on numbers, never a reading of the learner's source: the learner's code may look nothing
like the twin's. Where no hypothesis matches, ``describe`` says what the numbers show: a constant
factor, a sign, an offset, the same values in another order, or where the differences are.

Each diagnosis is given in English and in Simplified Chinese; ``id`` names it for programs.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable
from unittest import mock

import torch
from torch import nn

from annotate import grader

MATCH = 1e-7  # relative to the step's scale: a hypothesis explains a float64 value this close
EPSILONS = (1e-5, 1e-6, 1e-12, 1e-8, 1e-7, 1e-3, 0.0)  # the epsilons learners use (PyTorch's default first)
ACTIVATIONS = {  # one of each family of activation a learner may use instead, and how it reads
    "gelu": ("the exact (erf) GELU", "精确的（erf 形式的）GELU"),
    "gelu_new": ("GELU's tanh approximation", "GELU 的 tanh 近似"),
    "relu": ("ReLU", "ReLU"),
    "silu": ("SiLU", "SiLU"),
}
FAMILY = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_new", "gelu_fast": "gelu_new", "gelu_pytorch_tanh": "gelu_new",
          "gelu_python_tanh": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}


@dataclasses.dataclass
class Diagnosis:
    id: str  # "not-scaled", "softmax-axis", "bias-missing", ...: what programs read
    en: str
    zh: str

    def to_dict(self) -> dict:
        return {"id": self.id, "en": self.en, "zh-CN": self.zh}


@dataclasses.dataclass
class Hypothesis:
    id: str
    run: Callable[[], dict[str, torch.Tensor]]  # the changed twin's steps, float64
    en: str
    zh: str
    rows: torch.Tensor | None = None  # (B, T): the tokens it predicts (None: every real token)


def diagnose(g: grader.Grading, report: grader.Report) -> Diagnosis | None:
    """The first hypothesis that explains the first math step, else what the numbers show there."""
    found = dropout(g)
    if found is not None:
        return found
    step = report.first_math
    if step is None:
        return None
    for hypothesis in hypotheses(g):
        try:
            predicted = hypothesis.run()
        except Exception:  # a change the module can't take (shapes): not this mistake
            continue
        if step in predicted and explains(g, step, predicted[step], hypothesis.rows):
            return Diagnosis(hypothesis.id, hypothesis.en.format(step=step), hypothesis.zh.format(step=step))
    return describe(g, step)


def mine(g: grader.Grading, step: str) -> tuple[torch.Tensor, bool]:
    """The learner's value at ``step``: the float64 run's if there is one (and whether it is)."""
    if g.mine64 is not None and g.mine64.get(step) is not None:
        return g.mine64[step], True
    return g.mine32[step], False


def explains(g: grader.Grading, step: str, predicted: torch.Tensor, rows: torch.Tensor | None = None) -> bool:
    value, exact = mine(g, step)
    if tuple(value.shape) != tuple(predicted.shape):
        return False
    layout = g.layout(step)
    a = grader.select(layout, value, g.setting, match=True, rows=rows)
    b = grader.select(layout, predicted, g.setting, match=True, rows=rows)
    if a.numel() == 0:
        return False
    return grader.max_diff(a, b) <= (MATCH if exact else grader.FALLBACK_TOLERANCE) * max(grader.scale(a, b), 1e-30)


# ---------------------------------------------------------------------------------------------
# Dropout: the one mistake two runs show by themselves.


def dropout(g: grader.Grading) -> Diagnosis | None:
    if not g.again:
        return None
    for step in g.kind.steps:
        if step in g.mine32 and step in g.again and g.again[step] is not None:
            d = grader.max_diff(g.mine32[step], g.again[step], nan_equal=True)
            if d:
                return Diagnosis(
                    "dropout-on",
                    f"Dropout is on: two runs on the same input differ, from {step} on (by up to {d:.2g}). The grader calls "
                    ".eval(); use nn.Dropout, which follows .train() and .eval(), or F.dropout(x, p, training=self.training): "
                    "F.dropout's training defaults to True.",
                    f"Dropout 仍在起作用：同一输入的两次运行结果不同，从 {step} 开始（最多相差 {d:.2g}）。评分时会调用 .eval()；"
                    "请用 nn.Dropout（它跟随 .train() 与 .eval()），或 F.dropout(x, p, training=self.training)："
                    "F.dropout 的 training 默认是 True。",
                )
    return None


# ---------------------------------------------------------------------------------------------
# The hypotheses: the twin with one mistake made.


def hypotheses(g: grader.Grading) -> list[Hypothesis]:
    s, kind = g.setting, g.kind
    if kind.incremental:
        return cache_hypotheses(g)
    f64 = torch.float64

    def twin(**changes):
        return lambda: grader.twin_states(s, f64, follow=True, **changes)

    out: list[Hypothesis] = []
    if kind.attention is not None:
        attention = s.module.get_submodule(kind.attention)
        hs = head_size(attention)
        root = f"√{hs} = {math.sqrt(hs):.4g}"
        # every attention of the module at once (one class written once, used for each), then each alone
        where = [None] + (attention_paths(s.module) if len(attention_paths(s.module)) > 1 else [])
        for path in where:
            out += [
                Hypothesis("not-scaled", twin(edit=scaled(lambda x: 1.0, path)),
                           f"The scores are not divided by √d_k: your values at {{step}} are what transformers computes from "
                           f"Q K^T without the 1/√d_k ({root}), so the softmax is far too sharp.",
                           f"注意力分数没有除以 √d_k：你的 {{step}} 等于 transformers 在 Q K^T 不乘 1/√d_k（{root}）时的结果，"
                           "所以 softmax 过于尖锐。"),
                Hypothesis("scaled-twice", twin(edit=scaled(lambda x: x * x, path)),
                           f"The scores are divided by √d_k twice (by d_k = {hs}): your values at {{step}} are what transformers "
                           "computes with the scale applied two times, so the softmax is too flat.",
                           f"注意力分数除了两次 √d_k（即除以 d_k = {hs}）：你的 {{step}} 等于 transformers 把缩放用了两次的结果，"
                           "所以 softmax 过于平坦。"),
            ]
        out += [
            Hypothesis("softmax-axis", twin(patches=(softmax_over_columns(),)),
                       "The softmax is over the wrong axis: over the queries (each column sums to 1) instead of over the keys "
                       "(each row, one query's weights, sums to 1). Use softmax(scores, dim=-1).",
                       "softmax 的轴不对：你对查询（query）方向做了归一化（每一列之和为 1），而应对键（key）方向归一化"
                       "（每一行，即一个查询的权重，之和为 1）。请用 softmax(scores, dim=-1)。"),
        ]
        if {"mask", "mask4d"} & set(kind.call):
            out.append(Hypothesis("padding-mask-ignored", twin(roles=masks(s, padding=False, causal=kind.causal)),
                                  "The padding mask is ignored: real tokens attend to the padding tokens too. Add the mask's large "
                                  "negative number to the scores where mask == 0 (on the keys' axis) before the softmax.",
                                  "忽略了填充掩码（padding mask）：真实词元也在关注填充词元。请在 softmax 之前，在 mask == 0 的位置"
                                  "（键的维度上）给分数加上一个很大的负数。"))
        out += cross_hypotheses(g, twin)
        if kind.causal:
            out.append(Hypothesis("causal-mask-ignored", twin(roles=masks(s, padding=True, causal=False)),
                                  "The causal mask is ignored: each token also attends to the tokens after it. Mask the keys j > i "
                                  "of query i (the upper triangle) before the softmax.",
                                  "忽略了因果掩码（causal mask）：每个词元也关注到了它之后的词元。请在 softmax 之前遮住查询 i 的"
                                  "所有键 j > i（上三角部分）。"))
        if kind.qkv is not None:
            out += [
                Hypothesis("query-key-swapped", twin(edit=swapped(kind.qkv[0], kind.qkv[1])),
                           "Query and key are swapped: your query is transformers' key (and your key its query), so the "
                           "scores are transposed: K Q^T instead of Q K^T.",
                           "query 和 key 用反了：你的 query 是 transformers 的 key（你的 key 是它的 query），所以分数被转置了："
                           "算成了 K Q^T 而不是 Q K^T。"),
                Hypothesis("heads-split-without-transpose", twin(edit=hooked(kind.qkv, split_without_transpose(hs))),
                           "The heads are split with a reshape and no transpose: (B, T, C) viewed as (B, heads, T, d) directly "
                           "mixes tokens and features. Write .view(B, T, heads, d).transpose(1, 2).",
                           "拆分多头时只做了 reshape 而没有转置：把 (B, T, C) 直接看成 (B, heads, T, d) 会把词元和特征混在一起。"
                           "应写成 .view(B, T, heads, d).transpose(1, 2)。"),
            ]
        context = f"{kind.attention}.context" if kind.attention else "context"
        out.append(Hypothesis("heads-merged-without-transpose", merged_without_transpose(g, hs, context),
                              "The heads are merged with a reshape and no transpose: (B, heads, T, d) reshaped straight to "
                              "(B, T, C) mixes tokens and heads. Write .transpose(1, 2).reshape(B, T, C).",
                              "合并多头时只做了 reshape 而没有转置：把 (B, heads, T, d) 直接 reshape 成 (B, T, C) 会把词元和头"
                              "混在一起。应写成 .transpose(1, 2).reshape(B, T, C)。"))
    out += biases(g, twin)
    out += epsilons(g, twin)
    out += activations(g, twin)
    out += structures(g)
    if "positions" in kind.call:
        T = s.ids.shape[1]
        out.append(Hypothesis("positions-from-1", twin(roles={"positions": torch.arange(1, T + 1)[None]}),
                              "The positions are counted from 1: the first token must get position 0 (position_ids = "
                              "arange(T)), the table's first row.",
                              "位置是从 1 开始数的：第一个词元的位置应是 0（position_ids = arange(T)），即位置表的第一行。"))
    return out


def head_size(attention: nn.Module) -> int:
    for name in ("head_dim", "attention_head_size"):
        if isinstance(getattr(attention, name, None), int):
            return getattr(attention, name)
    raise ValueError(f"{type(attention).__name__} has no head size")


def attention_paths(module: nn.Module) -> list[str]:
    """The paths of the attentions inside ``module`` (the modules that hold a float ``scaling``)."""
    return [name for name, m in module.named_modules() if isinstance(getattr(m, "scaling", None), float)]


def scaled(change: Callable[[float], float], path: str | None = None):
    """Every attention's scale changed (``path``: the attention there alone)."""

    def edit(module: nn.Module) -> None:
        for name, m in module.named_modules():
            if isinstance(getattr(m, "scaling", None), float) and (path is None or name == path):
                m.scaling = change(m.scaling)

    return edit


# ---------------------------------------------------------------------------------------------
# An encoder-decoder's cross-attention: the memory and the source's mask.


def cross_hypotheses(g: grader.Grading, twin) -> list[Hypothesis]:
    """The source's padding mask left out, or the target's used in its place; keys and values
    computed from the decoder's own states instead of the memory."""
    s, kind = g.setting, g.kind
    out = []
    if "source_mask4d" in kind.call and s.source_mask is not None:
        seen_all = grader.additive(torch.ones_like(s.source_mask, dtype=torch.bool)[:, None, None, :], torch.float32)
        out.append(Hypothesis("source-mask-ignored", twin(roles={"source_mask4d": seen_all}),
                              "The source's padding mask is ignored in the cross-attention: the target tokens attend to the "
                              "source's padding tokens too. Add the large negative number to the scores where source_mask == 0 "
                              "(on the keys' axis: the source's tokens) before the softmax.",
                              "交叉注意力中忽略了源序列的填充掩码：目标词元也在关注源序列的填充词元。请在 softmax 之前，"
                              "在 source_mask == 0 的位置（键的维度上，即源序列的词元）给分数加上一个很大的负数。"))
        target = grader.additive(s.mask.bool()[:, None, None, :], torch.float32)
        out.append(Hypothesis("target-mask-in-cross-attention", twin(roles={"source_mask4d": target}),
                              "The cross-attention is masked with the target's padding mask instead of the source's: its keys "
                              "are the source's tokens, so mask them where source_mask == 0.",
                              "交叉注意力用了目标序列的填充掩码，而不是源序列的：它的键是源序列的词元，所以应在 "
                              "source_mask == 0 的位置做掩码。"))
    for path, argument in kind.cross.items():
        out.append(Hypothesis("cross-kv-from-decoder", twin(edit=keys_values_from_queries(path, argument)),
                              "The cross-attention's keys and values are computed from the decoder's own states (x) instead of "
                              "the encoder's output: your {step} is what transformers computes with K = x W_K and V = x W_V. "
                              "In cross-attention only the queries come from the decoder: K = memory W_K, V = memory W_V.",
                              "交叉注意力的键和值是用解码器自己的隐藏状态（x）算的，而不是编码器的输出：你的 {step} 等于 "
                              "transformers 用 K = x W_K、V = x W_V 算出的结果。交叉注意力中只有查询来自解码器："
                              "K = memory W_K，V = memory W_V。"))
    return out


def keys_values_from_queries(path: str, argument: str):
    """The cross-attention at ``path`` given its own input (its forward's first argument) as the
    memory, in its argument ``argument``."""
    import inspect

    def edit(module: nn.Module) -> None:
        attention = module.get_submodule(path) if path else module
        signature = inspect.signature(attention.forward)

        def hook(_, args, kwargs):
            bound = signature.bind(*args, **kwargs)
            first = next(iter(bound.arguments.values()))
            bound.arguments[argument] = first
            return bound.args, bound.kwargs

        attention.register_forward_pre_hook(hook, with_kwargs=True)

    return edit


@contextlib.contextmanager
def softmax_over_columns():
    """torch's softmax over the next-to-last axis wherever the last is asked for (a 3-D or larger input)."""
    softmax, functional = torch.softmax, torch.nn.functional.softmax

    def moved(input, args, kwargs):
        dim = kwargs.pop("dim", args[0] if args else None)
        args = args[1:]
        if input.dim() >= 3 and dim in (-1, input.dim() - 1):
            dim = -2
        return dim, args, kwargs

    def t(input, *args, **kwargs):
        dim, args, kwargs = moved(input, args, kwargs)
        return softmax(input, dim, *args, **kwargs)

    def f(input, *args, **kwargs):
        dim, args, kwargs = moved(input, args, kwargs)
        return functional(input, dim, *args, **kwargs)

    with mock.patch.object(torch, "softmax", t), mock.patch.object(torch.nn.functional, "softmax", f):
        yield


def masks(s: grader.Setting, padding: bool, causal: bool) -> dict:
    """The mask arguments with the padding or the causal part left out."""
    from annotate import align

    mask = s.mask if padding else torch.ones_like(s.mask)
    keep = align.keep_mask(s.ids, mask, causal)
    return {"mask": mask, "mask4d": grader.additive(keep, torch.float32)}


def _fused(spec: str) -> tuple[str, int | None]:
    name, _, rest = spec.partition("[")
    return name, int(rest.rstrip("]")) if rest else None


def swapped(a: str, b: str):
    """Swap the query and key projections (whole modules, or two thirds of a fused one)."""

    def edit(module: nn.Module) -> None:
        (na, ia), (nb, ib) = _fused(a), _fused(b)
        if ia is not None:
            fused = module.get_submodule(na)
            n = fused.bias.numel() if getattr(fused, "bias", None) is not None else max(fused.weight.shape)
            for param in (fused.weight, getattr(fused, "bias", None)):
                if param is None:
                    continue
                dim = max(d for d in range(param.dim()) if param.shape[d] == n)  # the fused axis: [Q | K | V]
                third = n // 3
                x, y = param.narrow(dim, ia * third, third).clone(), param.narrow(dim, ib * third, third).clone()
                with torch.no_grad():
                    param.narrow(dim, ia * third, third).copy_(y)
                    param.narrow(dim, ib * third, third).copy_(x)
            return
        qa, qb = module.get_submodule(na), module.get_submodule(nb)
        if qa.weight.shape != qb.weight.shape:
            raise ValueError("query and key of different shapes (grouped-query attention) can't be swapped")
        pa, _, la = na.rpartition(".")
        pb, _, lb = nb.rpartition(".")
        setattr(module.get_submodule(pa) if pa else module, la, qb)
        setattr(module.get_submodule(pb) if pb else module, lb, qa)

    return edit


def split_without_transpose(hs: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A projection's (B, T, h*d) output such that the twin's view(B, T, h, d).transpose(1, 2) gives view(B, h, T, d)."""

    def change(y: torch.Tensor) -> torch.Tensor:
        B, T, C = y.shape
        return y.reshape(B, C // hs, T, hs).transpose(1, 2).reshape(B, T, C)

    return change


def merge_without_transpose(hs: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The heads' (B, T, h*d) merged properly -> as (B, h, T, d).reshape(B, T, C) would have merged them."""

    def change(c: torch.Tensor) -> torch.Tensor:
        B, T, C = c.shape
        return c.reshape(B, T, C // hs, hs).transpose(1, 2).reshape(B, T, C)

    return change


def hooked(specs, change):
    """Forward hooks changing each named projection's output (each third of a fused one)."""

    def edit(module: nn.Module) -> None:
        done = set()
        for spec in specs:
            name, third = _fused(spec)
            if name in done:
                continue
            done.add(name)
            target = module.get_submodule(name)
            if third is None:
                target.register_forward_hook(lambda m, i, o: change(o))
            else:
                target.register_forward_hook(lambda m, i, o: torch.cat([change(part) for part in o.chunk(3, dim=-1)], dim=-1))

    return edit


def merged_without_transpose(g: grader.Grading, hs: int, context: str):
    s, kind = g.setting, g.kind
    change = merge_without_transpose(hs)

    def edit(module: nn.Module) -> None:
        if kind.out_proj is not None:
            module.get_submodule(kind.out_proj).register_forward_pre_hook(lambda m, args: (change(args[0]), *args[1:]))

    def run():
        states = grader.twin_states(s, torch.float64, follow=True, edit=edit)
        states[context] = change(states[context])
        return states

    return run


def biases(g: grader.Grading, twin) -> list[Hypothesis]:
    """Each bias of the module (and each third of a fused query/key/value bias) left out."""
    out = []
    fused = {_fused(spec)[0]: spec for spec in (g.kind.qkv or ()) if _fused(spec)[1] is not None}
    for name, param in g.setting.module.named_parameters():
        if not name.endswith("bias"):
            continue
        parts = [(name, None)]
        owner = name.rpartition(".")[0]
        if owner in fused:
            parts += [(f"{name}[{i * param.numel() // 3}:{(i + 1) * param.numel() // 3}] ({('query', 'key', 'value')[i]})", i) for i in range(3)]
        for shown, third in parts:
            out.append(Hypothesis("bias-missing", twin(edit=zeroed(name, third)),
                                  f"A bias is missing: {shown}. Your values at {{step}} are what transformers computes without "
                                  "it (nn.Linear(..., bias=False), or the bias not added).",
                                  f"缺少一个偏置（bias）：{shown}。你的 {{step}} 等于 transformers 不加它时的结果"
                                  "（nn.Linear(..., bias=False)，或者没有加上偏置）。"))
    return out


def zeroed(name: str, third: int | None):
    def edit(module: nn.Module) -> None:
        param = module.get_parameter(name)
        with torch.no_grad():
            if third is None:
                param.zero_()
            else:
                n = param.numel() // 3
                param[third * n:(third + 1) * n] = 0

    return edit


def _norms(module: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "eps") if isinstance(m, nn.LayerNorm) else (m, "variance_epsilon")
            for m in module.modules() if isinstance(m, nn.LayerNorm) or isinstance(getattr(m, "variance_epsilon", None), float)]


def epsilons(g: grader.Grading, twin) -> list[Hypothesis]:
    norms = _norms(g.setting.module)
    if not norms:
        return []
    current = {getattr(m, attr) for m, attr in norms}
    field = next((f for f in ("layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps") if hasattr(g.setting.config, f)), "eps")
    config_eps = getattr(g.setting.config, field, None)
    shown = f"{config_eps:g}" if isinstance(config_eps, float) else ", ".join(f"{e:g}" for e in current)
    what = "RMSNorm" if norms[0][1] == "variance_epsilon" else "LayerNorm"

    def set_eps(eps):
        def edit(module):
            for m, attr in _norms(module):
                setattr(m, attr, eps)

        return edit

    if config_eps is None:  # the config has no field for it: the model keeps nn.LayerNorm's default (Marian)
        source_en, fix_en = "nn.LayerNorm's default: its config has no field for it", "leave eps at its default"
        source_zh, fix_zh = "nn.LayerNorm 的默认值：它的配置里没有这一项", "不要改 eps 的默认值"
    else:
        source_en, fix_en = f"config.{field}", f"pass eps=config.{field}"
        source_zh, fix_zh = f"config.{field}", f"请传入 eps=config.{field}"
    out = []
    for eps in EPSILONS:
        if any(math.isclose(eps, c, rel_tol=1e-6) for c in current):
            continue
        default = " (PyTorch's default for nn.LayerNorm)" if eps == 1e-5 and what == "LayerNorm" else ""
        default_zh = "（PyTorch 中 nn.LayerNorm 的默认值）" if default else ""
        out.append(Hypothesis("norm-eps", twin(edit=set_eps(eps)),
                              f"{what}'s epsilon is {eps:g}{default}, not this model's {shown} ({source_en}): {fix_en}.",
                              f"{what} 的 epsilon 用了 {eps:g}{default_zh}，而不是这个模型的 {shown}（{source_zh}）：{fix_zh}。"))
    return out


def activations(g: grader.Grading, twin) -> list[Hypothesis]:
    from reimpl.activations import ACT2FN

    kind = g.kind
    if kind.activation is None:
        return []
    owner_path, _, attr = kind.activation.rpartition(".")
    current = getattr(g.setting.module.get_submodule(owner_path) if owner_path else g.setting.module, attr)
    name = next((n for n, f in ACT2FN.items() if f is current), None)
    family = FAMILY.get(name, name)

    def use(fn):
        def edit(module):
            setattr(module.get_submodule(owner_path) if owner_path else module, attr, fn)

        return edit

    out = []
    for other, (en, zh) in ACTIVATIONS.items():
        if other == family:
            continue
        here_en, here_zh = ACTIVATIONS.get(family, (f"'{name}'", f"'{name}'"))
        out.append(Hypothesis(f"activation-{other}", twin(edit=use(ACT2FN[other])),
                              f"The activation is {en} where this model uses {here_en} ('{name}' in its config). "
                              + ("GELU's exact form is x · Φ(x) = 0.5 x (1 + erf(x / √2)): F.gelu(x)." if family == "gelu" else
                                 "GPT-2's is 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))): F.gelu(x, approximate='tanh')."
                                 if family == "gelu_new" else ""),
                              f"激活函数用了{zh}，而这个模型用的是{here_zh}（配置中的 '{name}'）。"
                              + ("GELU 的精确形式是 x · Φ(x) = 0.5 x (1 + erf(x / √2))：F.gelu(x)。" if family == "gelu" else
                                 "GPT-2 用的是 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))：F.gelu(x, approximate='tanh')。"
                                 if family == "gelu_new" else "")))
    return out


def structures(g: grader.Grading) -> list[Hypothesis]:
    """The layer rebuilt from its own modules: normalised on the other side of each sublayer, or a residual left out."""
    kind = g.kind
    if not kind.sublayers:
        return []
    n = len(kind.sublayers)
    if kind.pre_norm:
        flip = ("post-norm",
                "The layer normalises after each residual sum (post-LN, as BERT does) instead of before each sublayer: "
                "this model is pre-LN, x + attention(norm(x)), then + MLP(norm(.)), one final norm after the last layer.",
                "这一层在每次残差相加之后做归一化（post-LN，BERT 的做法），而不是在每个子层之前：这个模型是 pre-LN，"
                "即 x + attention(norm(x))，再 + MLP(norm(·))，最后一层之后还有一个最终的归一化。")
    else:
        flip = ("pre-norm",
                "The layer normalises each sublayer's input (pre-LN, as GPT-2 does) instead of after each residual sum: "
                "this model is post-LN, LayerNorm(x + attention(x)), then LayerNorm(. + FFN(.)).",
                "这一层对每个子层的输入做归一化（pre-LN，GPT-2 的做法），而不是在每次残差相加之后：这个模型是 post-LN，"
                "即 LayerNorm(x + attention(x))，再 LayerNorm(· + FFN(·))。")
    out = [Hypothesis(flip[0], lambda: rebuilt(g, not kind.pre_norm, (True,) * n), flip[1], flip[2])]
    for i, sub in enumerate(kind.sublayers):
        residuals = tuple(j != i for j in range(n))
        out.append(Hypothesis("residual-missing", lambda r=residuals: rebuilt(g, kind.pre_norm, r),
                              f"A residual connection is missing: {sub.residual_step} should be the layer's stream plus the "
                              "sublayer's output; yours is the sublayer's output alone.",
                              f"缺少一个残差连接：{sub.residual_step} 应是该层的残差流加上子层的输出；你的只有子层的输出。"))
    return out


def rebuilt(g: grader.Grading, pre_norm: bool, residuals: tuple[bool, ...]) -> dict[str, torch.Tensor]:
    """The twin layer's own modules, in float64, put together pre- or post-norm, with the residuals asked for."""
    from reimpl import recording, versions

    s, kind = g.setting, g.kind
    module = copy.deepcopy(s.module).to(torch.float64).eval()
    args = {role: grader.convert(value, torch.float64) for role, value in s.roles.items()}
    states: dict[str, torch.Tensor] = {}
    with torch.no_grad(), grader.float64_throughout(), versions.following(5), recording() as recorded:
        h = args["x"]
        for sub, keep in zip(kind.sublayers, residuals):
            norm = module.get_submodule(sub.norm)
            branch_input = norm(h) if pre_norm else h
            if pre_norm:
                states[sub.norm_step] = branch_input
            steps, branch = sub.branch(module, branch_input, args)
            states.update(steps)
            summed = h + branch if keep else branch
            states[sub.residual_step] = summed
            h = summed if pre_norm else norm(summed)
            if not pre_norm:
                states[sub.norm_step] = h
    prefix = getattr(s.module, "_annotate_path", "")
    out = {name[len(prefix) + 1:] if prefix else name: value for name, value in recorded.items() if not prefix or name.startswith(prefix + ".")}
    out.update(states)
    out[kind.output] = h  # what the layer returns
    return out


def cache_hypotheses(g: grader.Grading) -> list[Hypothesis]:
    s = g.setting
    keep = s.keep
    first_only = s.rows & s.mask[:, :1].bool()  # the tokens that see a key when only key 0 is seen

    def reversed_cache():
        states = dict(g.ref64)
        states["key"], states["value"] = states["key"].flip(2), states["value"].flip(2)
        return states

    return [
        Hypothesis("cache-unused", lambda: grader.twin_states(s, torch.float64, roles={"fresh": True}),
                   "The cache is not used: each new token attends to itself alone. Concatenate the cached keys and values "
                   "with the new ones (torch.cat([past_key, key], dim=-2)) and attend over all of them.",
                   "没有用到缓存：每个新词元只关注它自己。请把缓存的 key、value 与新的拼接起来"
                   "（torch.cat([past_key, key], dim=-2)），再在全部之上做注意力。"),
        Hypothesis("cache-causal-mask-not-shifted",
                   lambda: grader.twin_states(s, torch.float64, roles={"keep_step": lambda t: keep[:, :, t:t + 1, :t + 1] & (torch.arange(t + 1) == 0)}),
                   "The causal mask is not shifted by the cache's length: with one new query and S keys, tril of a (1, S) "
                   "matrix keeps key 0 only. The new token is the last position: it sees every cached key (tril(diagonal=S - T)).",
                   "因果掩码没有按缓存长度平移：一个新查询对 S 个键时，(1, S) 矩阵的 tril 只保留了第 0 个键。新词元在最后一个"
                   "位置，它能看到所有缓存的键（tril(diagonal=S - T)）。", rows=first_only),
        Hypothesis("cache-order-reversed", reversed_cache,
                   "The cache is in reverse order: each new key and value goes before the cached ones. Append them: "
                   "torch.cat([past, new], dim=-2) keeps the positions in order (the padding mask counts on it).",
                   "缓存的顺序反了：每个新的 key、value 都被放在了缓存的前面。应把它们追加在后面："
                   "torch.cat([past, new], dim=-2) 才能保持位置顺序（填充掩码依赖这一点）。"),
    ]


# ---------------------------------------------------------------------------------------------
# When no hypothesis matches: what the numbers show.


def describe(g: grader.Grading, step: str) -> Diagnosis:
    value, exact = mine(g, step)
    ref = g.ref64[step] if exact else g.ref32[step]
    s, layout = g.setting, g.layout(step)
    a = grader.select(layout, value, s, match=True).double()
    b = grader.select(layout, ref, s, match=True).double()
    tol = 1e-9 if exact else 1e-5
    sc = max(grader.scale(b), 1e-30)
    try:
        en, zh = _what_differs(a, b, sc, tol, value, ref, g, step, layout)
    except Exception:  # a value of an unexpected shape: say the size at least
        d = grader.max_diff(a, b) if a.shape == b.shape else math.inf
        en, zh = f"It differs by up to {d:.3g}.", f"最多相差 {d:.3g}。"
    return Diagnosis("unexplained", f"No known mistake matches {step}. {en}", f"没有已知的错误与 {step} 相符。{zh}")


def _what_differs(a, b, sc, tol, value, ref, g, step, layout) -> tuple[str, str]:
    if not torch.isfinite(a).all():
        n = int((~torch.isfinite(a)).sum())
        return (f"{n} of its {a.numel()} compared values are NaN or infinite where transformers' are numbers "
                "(a softmax over a row that is all -inf gives NaN).",
                f"在比较的 {a.numel()} 个值中有 {n} 个是 NaN 或无穷大，而 transformers 的是正常数值"
                "（对整行都是 -inf 的行做 softmax 会得到 NaN）。")
    big = b.abs() > 1e-3 * sc
    if big.any():
        ratio = a[big] / b[big]
        c = float(ratio.mean())
        rest = (a[~big] - c * b[~big]).abs()
        if c != 0 and float((ratio - c).abs().max()) <= 1e-6 * abs(c) and (rest.numel() == 0 or float(rest.max()) <= 1e-6 * sc):
            if abs(c + 1) < 1e-6:
                return "Yours is transformers' with the sign flipped (× -1).", "你的结果是 transformers 的相反数（× -1）。"
            root = _root(c)
            return (f"Yours is transformers' times a constant factor, {c:.6g}{root}.",
                    f"你的结果是 transformers 的常数倍：{c:.6g}{root}。")
    offset = a - b
    if float((offset - offset.mean()).abs().max()) <= tol * 10 * sc:
        return (f"Yours is transformers' plus a constant, {float(offset.mean()):.6g}.",
                f"你的结果等于 transformers 的加上一个常数 {float(offset.mean()):.6g}。")
    if a.shape == b.shape and torch.allclose(a.flatten().sort().values, b.flatten().sort().values, rtol=0, atol=tol * 10 * sc):
        axis = _permuted_axis(value, ref, g, layout)
        return (f"Yours holds the same values as transformers', in another order{axis}: a reshape, transpose or index that "
                "moves values without changing them.",
                f"你的结果与 transformers 的数值相同，只是顺序不同{_axis_zh(axis)}：某个 reshape、转置或索引移动了数值而没有改变它们。")
    if value.dim() == 4 and value.shape[-1] == value.shape[-2]:
        t = grader.select(layout, value.transpose(-1, -2), g.setting, match=True).double()
        if t.shape == b.shape and grader.max_diff(t, b) <= tol * 10 * sc:
            return ("Yours is transformers' transposed: your rows are its columns (queries and keys exchanged).",
                    "你的结果是 transformers 的转置：你的行是它的列（查询与键互换了）。")
    return _where(a, b, sc, value, ref, g, step, layout)


def _root(c: float) -> str:
    for x, name in ((c, ""), (1 / c if c else 0.0, "1/")):
        n = round(x * x)
        if n > 1 and math.isclose(x * x, n, rel_tol=1e-6) and not math.isclose(math.sqrt(n), round(math.sqrt(n))):
            return f" = {name}√{n}"
    return ""


def _permuted_axis(value, ref, g, layout) -> str:
    v, r = value.double(), ref.double()
    names = {"heads": ("texts", "heads", "tokens", "features"), "scores": ("texts", "heads", "queries", "keys"),
             "probs": ("texts", "heads", "queries", "keys")}.get(layout.removeprefix("cross-"), ("texts", "tokens", "features"))
    if v.shape != r.shape:
        return ""
    for dim in range(v.dim()):
        if torch.allclose(v.sort(dim=dim).values, r.sort(dim=dim).values, rtol=0, atol=1e-6 * max(float(r.abs().max()), 1e-30)):
            if dim < len(names):
                return f" along the {names[dim]} axis"
    return ""


def _axis_zh(axis: str) -> str:
    zh = {"texts": "文本", "heads": "头", "tokens": "词元", "features": "特征", "queries": "查询", "keys": "键"}
    for en, name in zh.items():
        if axis == f" along the {en} axis":
            return f"（沿{name}这一维）"
    return ""


def _where(a, b, sc, value, ref, g, step, layout) -> tuple[str, str]:
    s = g.setting
    worst = grader.max_diff(a, b)
    share = worst / sc
    en = f"It differs by up to {worst:.3g} ({share:.1%} of the step's largest value)"
    zh = f"最多相差 {worst:.3g}（占该步最大值的 {share:.1%}）"
    rows, tokens = s.rows_of(layout), s.tokens_of(layout)
    if value.dim() >= 3 and tuple(value.shape[:2]) == tuple(rows.shape) or (layout == "heads" and value.dim() == 4):
        per = (value.double() - ref.double()).abs()
        per = per.transpose(1, 2) if layout == "heads" else per
        per = per.reshape(*rows.shape, -1).amax(-1)
        differ = (per > 1e-6 * sc) & rows
        n, total = int(differ.sum()), int(rows.sum())
        if n < total:
            where = [f"text {b + 1} '{tokens[b][t]}' ({t})" for b, t in differ.nonzero().tolist()[:4]]
            en += f", at {n} of the {total} real tokens ({', '.join(where)}{', ...' if n > 4 else ''}); the others are equal"
            zh += f"，只在 {total} 个真实词元中的 {n} 个上不同（{', '.join(where)}{'……' if n > 4 else ''}），其余相同"
        else:
            en += ", at every token"
            zh += "，每个词元都不同"
    if layout in ("heads", "scores", "probs", "cross-scores", "cross-probs") and value.dim() == 4:
        per_head = (value.double() - ref.double()).abs().amax(dim=(0, 2, 3))
        heads = [i for i, d in enumerate(per_head.tolist()) if d > 1e-6 * sc]
        if 0 < len(heads) < len(per_head):
            en += f"; only heads {', '.join(map(str, heads))} of {len(per_head)} differ"
            zh += f"；{len(per_head)} 个头中只有第 {', '.join(map(str, heads))} 个不同"
    if layout in ("probs", "cross-probs") and value.dim() == 4:
        rows = value.double().sum(-1).transpose(1, 2)[s.rows]
        if not torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
            en += "; your rows do not sum to 1"
            zh += "；你的每一行之和不是 1"
    return en + ".", zh + "。"
