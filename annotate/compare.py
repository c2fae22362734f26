"""Two runs of one text, stage by stage, and a verdict on every difference: rounding or math.

A *run* is one way of computing a model on the same token ids: the twin, transformers' eager or
sdpa path, in some dtype, on some device, from some checkpoint. ``compare(a, b, ...)`` lines up
the two runs' values under the twin's stage names (transformers' are caught by annotate.capture)
and keeps max |a - b| per stage, as ``annotate trace --diff`` always has.

Then the verdict. Where the two runs differ at all, both are run once more, in float64, from the
same weights (a half-precision run is redone from the checkpoint's own weights, not from its
rounded copies). Two computations of the same math differ only by rounding, and rounding shrinks
with the precision: float64 has 29 more mantissa bits than float32 (45 more than bfloat16), so
the float64 runs agree to within a tiny fraction of the stage's scale. Two computations of
different math (another weight, another epsilon, another formula) still differ in float64 by as
much as before. So, per stage:

- ``"equal"``: the two runs gave the same bits;
- ``"rounding"``: they differ, and the float64 runs agree to ``ROUNDING_BOUND``;
- ``"math"``: the float64 runs still differ by more: the two compute different things. The first
  such stage in forward order is where the difference starts (``first_math``);
- ``"absent"``: the other run has no such stage, so there is no difference to measure (the sdpa
  path computes the scores and probabilities inside one fused kernel and never returns them;
  ``Comparison.absent`` says why, for the views).

The bound, ``ROUNDING_BOUND = 2**-36`` of the stage's largest |value| over both float64 runs:
float64's unit roundoff is 2**-53, so the bound allows 2**17 (131072) units of float64 rounding,
accumulated through the whole model. Measured (tests/test_compare.py and guide 7): eager vs sdpa
on all-MiniLM-L6-v2 differ in float64 by at most 2.2e-15 of a stage's scale (about 10 units),
transformers 4.57's division by sqrt(hs) vs 5.x's multiplication by hs**-0.5 by 2.0e-15, and a
random 12-layer, 768-wide GPT-2's eager vs sdpa by 1.4e-15. So rounding clears the bound ~6000x,
while a difference in the math must be smaller than 1.5e-11 of the stage's scale to hide under it
(a weight off by one float32 unit, 6e-8 relative, on one term of a dot product is about that;
a layer_norm_eps or a formula changed is orders of magnitude above it).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from annotate import align, models
from annotate.errors import UserError
from annotate.i18n import t
from reimpl.states import recording

ROUNDING_BOUND = 2.0**-36  # relative to the stage's largest |value| in the float64 runs: see the module docstring

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AGAINST = ("eager", "sdpa")  # transformers' attention paths; anything else is a second checkpoint
# Why the sdpa path has no scores and probabilities: the verdict "absent" (the views say it).
FUSED = "computes the attention scores and probabilities inside one fused kernel (torch's scaled_dot_product_attention) and never returns them"


@dataclasses.dataclass
class Run:
    """One way of computing the model. ``states(dtype)``: its recorded states by stage name and its
    output, computed in its own dtype (``dtype`` None) or, for the verdict, in ``dtype``
    (float64) from the same weights."""

    label: str  # "twin (fp32)", "transformers (sdpa, fp32)", "transformers (eager, bf16, cuda)"
    states: Callable[[torch.dtype | None], tuple[dict[str, torch.Tensor], Any]]


@dataclasses.dataclass
class Comparison:
    a: str  # the runs' labels
    b: str
    diffs: dict[str, float | None]  # max |a - b| per stage of a; None where b has no such stage
    verdicts: dict[str, str | None]  # "equal", "rounding", "math", "absent" (b has no such stage)
    diffs64: dict[str, float | None] | None = None  # the float64 runs' max |a - b|; None when nothing differed
    scales64: dict[str, float] | None = None  # the float64 runs' largest |value| per stage
    logits_diff: float | None = None  # a head's outputs (not a stage)
    logits_verdict: str | None = None
    absent: str | None = None  # why b has no value for the "absent" stages, where it is known (sdpa: FUSED)

    def first_math(self) -> str | None:
        """The first stage, in forward order, whose verdict is "math": where the two runs start to compute different things."""
        return next((name for name, v in self.verdicts.items() if v == "math"), None)

    def first_divergence(self) -> str | None:
        return next((name for name, d in self.diffs.items() if d), None)

    def names(self) -> tuple[str, str]:
        """Short names of the two sides, for "max |a - b|": twin and transformers, or A and B."""
        return ("twin" if self.a.startswith("twin") else "A"), ("transformers" if self.b.startswith("transformers") else "B")

    def has_math(self) -> bool:
        return self.first_math() is not None or self.logits_verdict == "math"


# ---------------------------------------------------------------------------------------------
# Stage by stage.


def _pairs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keep: torch.Tensor | None):
    """(name, a's value, b's value or None) per stage of ``a``, in one layout (annotate.align), as float64."""
    for name, x, y in align.pairs(a, b, keep):
        yield name, x.detach().cpu().double(), None if y is None else y.detach().cpu().double()


def stage_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keep: torch.Tensor | None) -> dict[str, float | None]:
    """max |a - b| per stage of ``a``; None where ``b`` has no value of that name and shape."""
    return align.max_diffs(a, b, keep)


def stage_scales(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keep: torch.Tensor | None) -> dict[str, float]:
    """The largest |value| per stage over both sides (the scale the rounding bound is relative to)."""
    out = {}
    for name, x, y in _pairs(a, b, keep):
        if y is not None:
            out[name] = max(x.abs().max().item(), y.abs().max().item()) if x.numel() else 0.0
    return out


def verdict(diff: float | None, diff64: float | None, scale64: float | None) -> str | None:
    """"equal" (same bits), "rounding" (the float64 runs agree to ROUNDING_BOUND of the scale),
    "math", or "absent" where the other run has no such stage (``diff`` None); None where the
    float64 runs were not made."""
    if diff is None:
        return "absent"
    if diff == 0.0:
        return "equal"
    if diff64 is None or scale64 is None:
        return None
    return "rounding" if diff64 <= ROUNDING_BOUND * scale64 else "math"


def _outputs(output) -> dict[str, torch.Tensor]:
    fields = output._asdict() if hasattr(output, "_asdict") else {k: v for k, v in output.items()}
    return {k: v for k, v in fields.items() if isinstance(v, torch.Tensor) and k != "loss"}


def compare(a: Run, b: Run, keep: torch.Tensor | None = None, head: bool = False, first=None) -> Comparison:
    """Run both, diff every stage, and give each divergent stage its verdict (module docstring).
    ``head``: also compare the outputs' fields (logits) as one more line. ``first``: the runs'
    states and outputs when already computed (``(a_states, a_output, b_states, b_output)``)."""
    sa, oa, sb, ob = first if first is not None else (*a.states(None), *b.states(None))
    diffs = stage_diffs(sa, sb, keep)
    logits_diff = _outputs_diff(oa, ob) if head else None
    out = Comparison(a.label, b.label, diffs, {name: verdict(d, None, None) for name, d in diffs.items()}, logits_diff=logits_diff)
    if logits_diff is not None:
        out.logits_verdict = "equal" if logits_diff == 0.0 else None
    if any(diffs.values()) or logits_diff:
        sa64, oa64 = a.states(torch.float64)
        sb64, ob64 = b.states(torch.float64)
        out.diffs64, out.scales64 = stage_diffs(sa64, sb64, keep), stage_scales(sa64, sb64, keep)
        out.verdicts = {name: verdict(d, out.diffs64.get(name), out.scales64.get(name)) for name, d in diffs.items()}
        if head and logits_diff:
            a64, b64 = _outputs(oa64), _outputs(ob64)
            d64 = max((a64[k].double() - b64[k].double()).abs().max().item() for k in a64 if k in b64)
            scale = max(max(a64[k].abs().max().item(), b64[k].abs().max().item()) for k in a64 if k in b64)
            out.logits_verdict = verdict(logits_diff, d64, scale)
    return out


def _outputs_diff(oa, ob) -> float | None:
    a, b = _outputs(oa), _outputs(ob)
    common = [k for k in a if k in b and a[k].shape == b[k].shape]
    if not common:
        return None
    return max((a[k].detach().cpu().double() - b[k].detach().cpu().double()).abs().max().item() for k in common)


# ---------------------------------------------------------------------------------------------
# The runs the CLI compares.


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}.get(dtype, str(dtype).removeprefix("torch."))


def _device(device: str) -> str:
    if device == "cpu":
        return device
    if device != "cuda":
        raise UserError(t("--device: 'cpu' or 'cuda', not {device!r}", device=device))
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            raise UserError(t("--device cuda: this machine has no CUDA GPU that torch can use (torch.cuda.is_available() is False; "
                              "torch {version} is a CPU-only build); run it where there is one, or compare on the CPU",
                              version=torch.__version__))
        raise UserError(t("--device cuda: this machine has no CUDA GPU that torch can use (torch.cuda.is_available() is False); "
                          "run it where there is one, or compare on the CPU"))
    return device


def _to(inputs: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in inputs.items()}


def twin_run(twin, inputs: dict[str, torch.Tensor], label: str | None = None, *, base_output: bool = True,
             device: str = "cpu", follow: int | None = None) -> Run:
    """The twin as a run: its own dtype, or a float64 copy of it for the verdict. ``follow``: compute
    as transformers 4 or 5 does (reimpl.versions.following), whatever is installed."""
    from reimpl import versions

    def states(dtype):
        model = twin if dtype is None else copy.deepcopy(twin).to(dtype)
        model = model.to(device)
        follows = versions.following(follow) if follow is not None else contextlib.nullcontext()
        with torch.inference_mode(), recording() as recorded, follows:
            output = model(**_to(inputs, device))
            if base_output and models.head_of(model) is None:
                recorded["last_hidden_state"] = output.last_hidden_state
        return {k: v.cpu() for k, v in recorded.items()}, output

    dtype = next(twin.parameters()).dtype
    return Run(label or f"twin ({_dtype_name(dtype)})", states)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' load report, "Loading weights" bar and warnings would garble a trace: off inside."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_transformers(folder: Path, twin, attn: str, dtype: torch.dtype):
    """transformers' own model of the twin's class (the twins carry transformers' class names) from
    ``folder``, with the ``attn`` implementation, in ``dtype``, in eval mode; quietly.

    One copy of the weights: where the twin was loaded keeping its checkpoint's tensors
    (``annotate.tracer.load``), transformers is given those same tensors, the
    file's keys and values, as its ``state_dict`` (annotate/shared_weights.py)."""
    import transformers

    from annotate import shared_weights

    with quiet_transformers():
        try:
            cls = getattr(transformers, type(twin).__name__)
            if (state := shared_weights.state_dict_for(twin, folder, dtype)) is not None:
                config = cls.config_class.from_pretrained(folder)
                return cls.from_pretrained(None, config=config, state_dict=state, attn_implementation=attn, dtype=dtype, **twin.hf_kwargs()).eval()
            return cls.from_pretrained(folder, attn_implementation=attn, dtype=dtype, **twin.hf_kwargs()).eval()
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(t("--diff: transformers could not load {folder!r} ({attn}, {dtype}): {reason}",
                              folder=str(folder), attn=attn, dtype=_dtype_name(dtype), reason=reason)) from None


def transformers_run(folder: Path, twin, inputs: dict[str, torch.Tensor], attn: str = "eager",
                     dtype: torch.dtype = torch.float32, device: str = "cpu", causal: bool = False) -> Run:
    """transformers' own model of the twin's class from ``folder``: ``attn`` ("eager" or "sdpa"),
    in ``dtype`` on ``device``; for the verdict, the same path in float64 from the checkpoint."""
    from annotate.capture import hf_states

    head = models.head_of(twin) is not None
    extra = {"use_cache": False} if causal else {}  # the twin without a cache matches use_cache=False

    def states(as_dtype):
        hf = load_transformers(folder, twin, attn, as_dtype or dtype).to(device)
        with torch.inference_mode(), hf_states(hf) as caught:
            output = hf(**_to(inputs, device), **extra)
        caught = {k: v.cpu() for k, v in caught.items()}
        if not head:
            caught["last_hidden_state"] = output.last_hidden_state.cpu()
        return caught, output

    where = "" if device == "cpu" else f", {device}"
    return Run(f"transformers ({attn}, {_dtype_name(dtype)}{where})", states)


def against_transformers(folder: Path, twin, inputs, states, output, *, against: str = "eager", dtype: str = "fp32",
                         device: str = "cpu", causal: bool = False, keep: torch.Tensor | None = None) -> Comparison:
    """The fp32 twin's run (``states``, ``output``: already computed) against transformers'
    ``against`` path in ``dtype`` on ``device`` (annotate trace --diff)."""
    if against not in AGAINST:
        raise UserError(t("--against: one of {choices}, not {against!r} (to compare two checkpoints: annotate diff A B TEXT)",
                          choices=", ".join(AGAINST), against=against))
    if dtype not in DTYPES:
        raise UserError(t("--dtype: one of {choices}, not {dtype!r}", choices=", ".join(DTYPES), dtype=dtype))
    device = _device(device)
    head = models.head_of(twin) is not None
    a = twin_run(twin, inputs, "twin (fp32)")
    b = transformers_run(folder, twin, inputs, against, DTYPES[dtype], device, causal)
    sb, ob = b.states(None)
    out = compare(a, b, keep, head=head, first=(states, output, sb, ob))
    out.absent = FUSED if against == "sdpa" else None
    return out


def against_checkpoint(twin, other, inputs, states, output, *, label_a: str, label: str, keep: torch.Tensor | None = None) -> Comparison:
    """The twin of one checkpoint against the twin of another of the same architecture (annotate
    diff), on the first one's token ids."""
    head = models.head_of(twin) is not None
    if type(other) is not type(twin):
        raise UserError(t("the two checkpoints are not the same model: {a} and {b}", a=type(twin).__name__, b=type(other).__name__))
    if int(inputs["input_ids"].max()) >= other.config.vocab_size:
        raise UserError(t("the text's token ids reach {id}; the second model's vocabulary has {size}",
                          id=int(inputs["input_ids"].max()), size=other.config.vocab_size))
    a = twin_run(twin, inputs, label_a)
    b = twin_run(other, inputs, label)
    sb, ob = b.states(None)
    return compare(a, b, keep, head=head, first=(states, output, sb, ob))
