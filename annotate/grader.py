"""annotate check: grade a learner's own module against transformers, step by step, on real weights.

``annotate check FILE.py::CLASS --as KIND`` (``annotate.check(module_or_class, KIND)`` in Python)
builds the learner's class as ``CLASS(config)`` with transformers' config of the model, gives it the
checkpoint's weights by transformers' names inside that module (``query.weight``; or as the file's
``WEIGHTS = {"my.name": "transformers.name"}`` maps them), and runs it on the module's real input:
a padded batch of two texts, run through the twin of the model up to that module (so a mask
mistake shows). The reference answer is the twin's own module (annotate/models/<type>.py lists
what each KIND is: ``GRADED``), whose every step is proven equal to transformers' (tests/).

Every step the learner names with ``annotate.record(name, tensor)`` (annotate/recorder.py), and
the output, gets the verdict ``annotate trace --diff`` gives (annotate/compare.py): ``equal``, or
the two computations are rerun in float64 (the learner's module and the twin's, from the same
weights and inputs) and agree there to 2^-36 of the step's scale: ``rounding``; else ``math``.
Only positions the model's own mask makes meaningful are compared: real tokens, and for the
scores the keys a query sees (align.keep_mask). The first ``math`` step gets a diagnosis in words,
English and Chinese (annotate/diagnosis.py): hypotheses tested on the numbers, never on the source.

An encoder-decoder's kinds (Marian's) run on two source texts and their targets (``Graded.texts``,
``Graded.targets``): the sources padded through the real encoder, the targets fed to the decoder
under teacher forcing, padded too. A module of the decoder also takes the encoder's output (the
role ``memory``) and the source's mask (``source_mask``); its cross-attention's steps are compared
over the source's real tokens as keys (the layouts ``memory``, ``cross-scores``, ``cross-probs``).

The kinds that are not one call of a module: ``gpt2-cache`` runs the learner's attention token by
token with its own cache; ``sampling`` compares the learner's temperature, top-k and top-p with
reimpl/generation.py's logits processors on a real model's next-token scores.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import html
import importlib.util
import json
import math
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from annotate import align, i18n, models, recorder
from annotate.compare import verdict as judge
from annotate.errors import UserError
from annotate.i18n import N_, t, translated
from reimpl.registry import architecture_of

TEXTS = ("The cat sat on the mat.", "Attention is all you need, said the paper, and the field listened.")
FALLBACK_TOLERANCE = 1e-4  # relative to the step's scale, when the learner's module can't run in float64

# The sampling kind: no module of a model, reimpl/generation.py's logits processors.
SAMPLING = models.Graded(
    "sampling", "TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper", "", call=(), args=("scores",),
    returns=N_("the scores (B, V) after temperature, top-k and top-p, in that order, -inf where filtered; "
               "built as CLASS(generation_config) per setting"),
    steps=("temperature", "top_k", "top_p"), output="top_p",
)
SETTINGS = ((0.7, 50, 0.9), (1.5, 20, 1.0), (1.0, 0, 0.75), (0.5, 5, 0.6))  # (temperature, top_k, top_p) the sampling kind runs


def kinds() -> dict[str, models.Graded]:
    """Every kind ``annotate check`` grades, by name: the architectures' and ``sampling``."""
    return {**models.graded(), "sampling": SAMPLING}


def kind_of(name: str) -> models.Graded:
    found = kinds()
    if name not in found:
        raise UserError(t("--as {name!r}: no such kind; one of {kinds} (annotate check --list says what each is)",
                          name=name, kinds=", ".join(found)))
    return found[name]


class Words(str):
    """Prose of annotate's in a report (the input, a note, why a step was not compared): the
    English as the str itself (the report's data: --json, tests), ``view()`` in the view's language."""

    view: Callable[[], str]


def _words(say: Callable[[], str]) -> Words:
    """``say()`` (which calls t()) as Words: its English now, and ``say`` for the view."""
    with i18n.using("en"):
        words = Words(say())
    words.view = say
    return words


def _in_view(text: str | None) -> str | None:
    """Words in the view's language; any other text (the learner's, a name) as it is."""
    return text.view() if isinstance(text, Words) else text


def _joined(items: list[str], semicolons: bool = False) -> str:
    """``a, b, c`` (``a; b; c``) in the view's language."""
    out = items[0] if items else ""
    for item in items[1:]:
        out = t("{items}; {item}", items=out, item=item) if semicolons else t("{items}, {item}", items=out, item=item)
    return out


# ---------------------------------------------------------------------------------------------
# The learner's class, from a file.


def load_target(target: str) -> tuple[type, dict | None, str]:
    """``FILE.py::CLASS`` (or ``FILE.py`` holding one nn.Module class) -> (the class, the file's
    WEIGHTS or None, how to name it)."""
    path_text, sep, name = target.partition("::")
    path = Path(path_text)
    if not path.is_file():
        raise UserError(t("{path}: no such file (give FILE.py::CLASS)", path=path_text))
    module_name = f"annotate_check_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(t("{path}: not a Python file", path=path_text))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # so that it can import its neighbours
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UserError(f"{path_text}:{e.lineno}: SyntaxError: {e.msg}") from None
    except Exception as e:
        raise UserError(t("importing {path} raised {error}", path=path_text, error=_raised(e, path))) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    classes = {k: v for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name}
    if not sep:
        candidates = [k for k, v in classes.items() if issubclass(v, nn.Module)] or list(classes)
        if not candidates:
            raise UserError(t("{path}: name the class to grade, FILE.py::CLASS (it defines no class)", path=path_text))
        if len(candidates) != 1:
            raise UserError(t("{path}: name the class to grade, FILE.py::CLASS (it defines {classes})",
                              path=path_text, classes=", ".join(candidates)))
        name = candidates[0]
    if name not in classes:
        if classes:
            raise UserError(t("{path} has no class {name!r} (it defines {classes})", path=path_text, name=name, classes=", ".join(classes)))
        raise UserError(t("{path} has no class {name!r}", path=path_text, name=name))
    weights = getattr(module, "WEIGHTS", None)
    if weights is not None and not (isinstance(weights, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in weights.items())):
        raise UserError(t("{path}: WEIGHTS must be a dict of str to str (your name -> transformers' name)", path=path_text))
    return classes[name], weights, f"{path_text}::{name}"


def _raised(e: BaseException, path: Path | None = None) -> str:
    """``TypeError: message (file.py:12, in forward)``: the exception and the innermost line of the learner's file."""
    frame = _frame(e, path, skip=("todo",)) or _frame(e, path)  # an exercise's todo(): the line that calls it
    message = str(e).strip().splitlines()[0] if str(e).strip() else ""
    error = f"{type(e).__name__}: {message}" if message else type(e).__name__  # as Python says it
    if frame is None:
        return error
    return t("{error} ({file}:{line}, in {function})", error=error, file=Path(frame.filename).name, line=frame.lineno, function=frame.name)


def _frame(e: BaseException, path: Path | None = None, skip: tuple[str, ...] = ()):
    """The innermost frame of the learner's code (of ``path`` if given), not in a function named in ``skip``."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.name not in skip]
    mine = [f for f in frames if path is not None and Path(f.filename).resolve() == path.resolve()] or \
        [f for f in frames if not _ours(f.filename)]
    return mine[-1] if mine else None


class Unfinished(UserError):
    """The learner's code raised NotImplementedError: a TODO of an exercise not filled in yet."""

    def __init__(self, message: str, where: str, todo: str):
        super().__init__(message)
        self.where, self.todo = where, todo


def failed(e: BaseException, obj, what: str, around: Callable[[str], str] | None = None) -> UserError:
    """The UserError for the learner's code raising ``e`` (``what``: "MyAttention.forward");
    Unfinished for a NotImplementedError (a TODO). ``around(message)``: the message with what
    was being run said around it. The error's ``words``: its message as Words (a report's note
    quotes it, in English in the data)."""
    path = _file_of(obj)

    def say() -> str:
        message = t("{what} raised {error}", what=what, error=_raised(e, path))
        return around(message) if around else message

    words = _words(say)
    if isinstance(e, NotImplementedError):
        frame = _frame(e, path, skip=("todo",))
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else what
        error = Unfinished(words.view(), where, str(e).strip() or "NotImplementedError")
    else:
        error = UserError(words.view())
    error.words = words
    return error


def _ours(filename: str) -> bool:
    """A frame of annotate, reimpl, torch, an installed package or the standard library: not the learner's code."""
    path = Path(filename).resolve()
    here = Path(__file__).resolve().parent
    roots = (here, here.parent / "reimpl", Path(torch.__file__).resolve().parent, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
    return any(root == path or root in path.parents for root in roots)


# ---------------------------------------------------------------------------------------------
# The model, the module's real input, and the reference runs.


@functools.lru_cache(maxsize=4)
def _load(model: str):
    """(the twin, its folder, its tokenizer, transformers' config): once per process per model."""
    import transformers

    import reimpl
    from annotate.compare import quiet_transformers
    from reimpl import loading

    folder = loading.resolve(model)
    twin = reimpl.from_pretrained(model).eval()
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer recommends sacremoses, which it uses for nothing here
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        config = transformers.AutoConfig.from_pretrained(folder)
    return twin, folder, tokenizer, config


@dataclasses.dataclass
class Setting:
    """What a kind runs on: the model, the twin's module, its input by role.

    ``ids`` and ``mask`` are the tokens the module's x holds: the text's; in an encoder-decoder,
    the source's for a module of the encoder, the target's (the decoder's input) for one of the
    decoder, whose ``source_ids`` and ``source_mask`` are then the source's (the memory's tokens)."""

    kind: models.Graded
    model: str
    layer: int | None
    twin: nn.Module  # the whole model
    module: nn.Module | None  # the twin's module that is graded
    config: Any  # transformers' config, the learner's constructor's argument
    ids: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T), 1/0
    roles: dict[str, Any]  # the twin module's arguments, fp32, by role (models.ROLES)
    tokens: list[list[str]]
    source_ids: torch.Tensor | None = None  # (B, S): a decoder's module's memory's tokens; None elsewhere
    source_mask: torch.Tensor | None = None  # (B, S), 1/0
    source_tokens: list[list[str]] | None = None
    padding_side: str = "right"
    seq2seq: str | None = None  # an encoder-decoder's: "source" (a module of the encoder) or "target" (of the decoder)

    @property
    def keep(self) -> torch.Tensor:
        """(B, 1, T, T): where a query sees a key (a real key; for a causal kind, not the future)."""
        return align.keep_mask(self.ids, self.mask, self.kind.causal)

    def keep_of(self, layout: str) -> torch.Tensor:
        """The keep mask of a step laid out as ``layout``: a cross-attention's (B, 1, T, S), where a
        target token sees a real source token; else ``keep``."""
        if layout.startswith("cross-") and self.source_mask is not None:
            B, T = self.ids.shape
            return self.source_mask[:, None, None, :].bool().expand(B, 1, T, self.source_mask.shape[1])
        return self.keep

    @property
    def rows(self) -> torch.Tensor:
        """(B, T): the real tokens, whose values are compared."""
        return self.mask.bool()

    def rows_of(self, layout: str) -> torch.Tensor:
        """(B, T), or (B, S) for a value over the memory's tokens: the real ones."""
        return self.source_mask.bool() if layout == "memory" and self.source_mask is not None else self.rows

    def tokens_of(self, layout: str) -> list[list[str]]:
        return self.source_tokens if layout == "memory" and self.source_tokens is not None else self.tokens

    def describe(self) -> str:
        """The input in English: "2 texts, 11 tokens each (text 1: 3 padding tokens at the start)"."""
        return str(self.described())

    def described(self) -> Words:
        """The input in words, ``describe``'s English and ``view()`` in the view's language (from
        the counts, not the tensors: a report does not hold on to them)."""
        side = "start" if self.padding_side == "left" else "end"
        batch = _counted(self.mask)
        if self.seq2seq == "target":
            source = _counted(self.source_mask)
            return _words(lambda: t("{source}, run through the encoder (the memory); their translations, fed to the decoder "
                                    "under teacher forcing: {target}",
                                    source=_padded(source, "source", side), target=_padded(batch, "target", side)))
        what = "source" if self.seq2seq == "source" else "text"
        if self.kind.incremental:
            return _words(lambda: t("{inputs}, fed one token at a time", inputs=_padded(batch, what, side)))
        return _words(lambda: _padded(batch, what, side))


def _counted(mask: torch.Tensor) -> tuple[int, list[int]]:
    """(T, the padding tokens of each row) of a (B, T) mask."""
    return mask.shape[1], [int((row == 0).sum()) for row in mask]


def _padded(batch: tuple[int, list[int]], what: str, side: str) -> str:
    """``2 texts, 11 tokens each (text 1: 3 padding tokens at the start)``, in the view's language;
    ``what``: text, source or target; ``side``: where the padding is, start or end."""
    T, pads = batch
    rows = []
    for row, n in enumerate(pads, 1):
        if n:
            rows.append({
                ("text", "start"): t("text {row}: {n} padding tokens at the start", row=row, n=n),
                ("text", "end"): t("text {row}: {n} padding tokens at the end", row=row, n=n),
                ("source", "start"): t("source {row}: {n} padding tokens at the start", row=row, n=n),
                ("source", "end"): t("source {row}: {n} padding tokens at the end", row=row, n=n),
                ("target", "start"): t("target {row}: {n} padding tokens at the start", row=row, n=n),
                ("target", "end"): t("target {row}: {n} padding tokens at the end", row=row, n=n),
            }[what, side])
    B, padded = len(pads), _joined(rows)
    if not rows:
        return {"text": t("{n} texts, {length} tokens each", n=B, length=T),
                "source": t("{n} sources, {length} tokens each", n=B, length=T),
                "target": t("{n} targets, {length} tokens each", n=B, length=T)}[what]
    return {"text": t("{n} texts, {length} tokens each ({padded})", n=B, length=T, padded=padded),
            "source": t("{n} sources, {length} tokens each ({padded})", n=B, length=T, padded=padded),
            "target": t("{n} targets, {length} tokens each ({padded})", n=B, length=T, padded=padded)}[what]


def setting(kind: models.Graded, model: str | None, layer: int = 0) -> Setting:
    """Load the model, run the twin on the two texts, and catch the graded module's input."""
    if model is None:
        model = kind.default_model
        if model is None and kind.kind == "sampling":
            model = _sampling_default()
        if model is None:
            raise UserError(t("--as {kind} needs --model: a {model_type} checkpoint (a directory, a hub id, or a packaged model)",
                              kind=kind.kind, model_type=kind.model_type))
    twin, folder, tokenizer, config = _load(str(Path(model).resolve()) if Path(model).exists() else model)
    model_type = twin.config.model_type
    if kind.kind == "sampling":
        if not hasattr(twin, "generate") or architecture_of(twin).encoder:
            raise UserError(t("--as sampling needs a causal language model; {model} is a {cls}", model=model, cls=type(twin).__name__))
    elif model_type != kind.model_type:
        raise UserError(t("--as {kind} grades a module of a {model_type} model; {model} is a {its_type} model",
                          kind=kind.kind, model_type=kind.model_type, model=model, its_type=model_type))
    causal = kind.causal or kind.kind == "sampling"
    encoder = architecture_of(twin).encoder if kind.kind != "sampling" else None  # an encoder-decoder: its encoder's layers
    # left: a causal model's padding can only show there; an encoder-decoder's target counts its positions from 0 on the left
    tokenizer.padding_side = "left" if causal and not encoder else "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(list(kind.texts or TEXTS), padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
    inputs = dict(input_ids=ids, attention_mask=mask)
    seq2seq, source = None, {}
    if encoder:
        decoder_ids, decoder_mask = teacher_forced(tokenizer, twin.config, kind)
        inputs.update(decoder_input_ids=decoder_ids, decoder_attention_mask=decoder_mask)
        seq2seq = "source" if kind.where.startswith(encoder.rpartition(".")[0] + ".") else "target"
        if seq2seq == "target":  # the module's x is the target's; the memory's tokens are the source's
            source = dict(source_ids=ids, source_mask=mask, source_tokens=tokens)
            ids, mask = decoder_ids, decoder_mask
            tokens = [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]
    module, roles = None, {}
    with torch.no_grad():
        if kind.kind == "sampling":
            roles["scores"] = twin(input_ids=ids, attention_mask=mask).logits[:, -1, :].float()  # (B, V): the next token's
        else:
            where = kind.where.format(layer=layer)
            try:
                module = twin.base_model.get_submodule(where)
            except AttributeError:
                raise UserError(t("--layer {layer}: {model} has no {where} ({layers})", layer=layer, model=model, where=where,
                                  layers=_layers(twin, kind.where))) from None
            caught = {}

            def catch(_, args, kwargs):
                caught.setdefault("args", arguments(module, args, kwargs))

            handle = module.register_forward_pre_hook(catch, with_kwargs=True)
            try:
                twin(**inputs)
            finally:
                handle.remove()
            for role, value in zip(kind.call, caught["args"]):
                if role is not None:
                    roles[role] = value
            roles.setdefault("mask", mask)
            if seq2seq == "target":
                roles.setdefault("source_mask", source["source_mask"])
            roles.update(ids=ids, types=torch.zeros_like(ids))
            roles.setdefault("positions", None)
    return Setting(kind, model, layer if "{layer}" in kind.where else None, twin, module, config, ids, mask, roles, tokens,
                   padding_side=tokenizer.padding_side, seq2seq=seq2seq, **source)


def arguments(module: nn.Module, args: tuple, kwargs: dict) -> tuple:
    """A call's arguments, positional and by keyword, in the order of the module's forward's
    parameters (defaults filled in): what ``Graded.call`` names by role."""
    import inspect

    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return tuple(args)
    bound.apply_defaults()
    return tuple(bound.arguments.values())


def teacher_forced(tokenizer, config, kind: models.Graded) -> tuple[torch.Tensor, torch.Tensor]:
    """An encoder-decoder's decoder input under teacher forcing: (B, T) the start token, then the
    targets shifted right one place (as the twins' shift_tokens_right), and its (B, T) mask, 1 at
    the positions whose next token is a real one of the target (the start token's included)."""
    if not kind.targets:
        raise UserError(t("--as {kind}: an encoder-decoder's kind needs its targets (Graded.targets)", kind=kind.kind))
    labels = tokenizer(text_target=list(kind.targets), padding=True, return_tensors="pt")
    ids, mask = labels["input_ids"], labels["attention_mask"]
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id
    shifted = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
    return shifted, mask


def _layers(twin, where: str) -> str:
    container = where.partition(".{layer}")[0]
    n = len(twin.base_model.get_submodule(container))
    return t("its layers are 0 to {last}", last=n - 1)


def _causal_default() -> str | None:
    """The packaged causal language model a causal kind defaults to (llama's SmolLM2)."""
    return next((g.default_model for g in models.graded().values() if g.causal and g.default_model and not g.targets), None)


def _sampling_default() -> str | None:
    """The packaged causal language model, if it is installed (else None: --model)."""
    from reimpl.loading import CheckpointError, resolve

    model = _causal_default()
    try:
        return model and (resolve(model) and model)
    except CheckpointError:
        return None


def additive(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Booleans (True: a key is seen) as an additive mask: 0, or the dtype's most negative finite value."""
    return torch.where(keep, torch.zeros((), dtype=dtype), torch.finfo(dtype).min)


def convert(value, dtype: torch.dtype | None):
    """Floating tensors (inside tuples too) in ``dtype``; the rest as is."""
    if dtype is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(convert(v, dtype) for v in value)
    return value


@contextlib.contextmanager
def float64_throughout():
    """In a float64 run, casts down to float32 are skipped (on both sides: the learner's and the
    twin's). transformers upcasts to float32 in places (RMSNorm, Llama's softmax) for the sake of
    half precision; in a float64 run those casts would round to float32 in the middle, and the
    verdict needs float64 throughout."""
    to, as_float, softmax, t_softmax = torch.Tensor.to, torch.Tensor.float, torch.nn.functional.softmax, torch.softmax

    def to64(self, *args, **kwargs):
        if self.dtype == torch.float64:
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            if kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = torch.float64
        return to(self, *args, **kwargs)

    def float64(self, *args, **kwargs):
        return self if self.dtype == torch.float64 else as_float(self, *args, **kwargs)

    def softmax64(input, dim=None, _stacklevel=3, dtype=None):
        if dtype is torch.float32 and input.dtype == torch.float64:
            dtype = None
        return softmax(input, dim=dim, _stacklevel=_stacklevel, dtype=dtype)

    def t_softmax64(input, dim, dtype=None, **kwargs):
        if dtype is torch.float32 and input.dtype == torch.float64:
            dtype = None
        return t_softmax(input, dim, dtype=dtype, **kwargs)

    with mock.patch.object(torch.Tensor, "to", to64), mock.patch.object(torch.Tensor, "float", float64), \
            mock.patch.object(torch.nn.functional, "softmax", softmax64), mock.patch.object(torch, "softmax", t_softmax64):
        yield


def twin_states(s: Setting, dtype: torch.dtype | None, *, edit=None, roles: dict | None = None, follow: bool = False,
                patches=()) -> dict[str, torch.Tensor]:
    """The twin module's recorded steps (names inside the module) and its output, run alone on the
    setting's input: as it is (``dtype`` None) or a float64 copy. For a diagnosis, ``edit(module)``
    changes the copy, ``roles`` replaces arguments, ``follow`` computes as transformers 5 does
    (the scale as the ``scaling`` attribute), ``patches``: context managers to run inside."""
    from reimpl import recording, versions

    if s.kind.incremental:
        return cache_twin_states(s, dtype, edit=edit, roles=roles)
    module = s.module if dtype is None and edit is None else copy.deepcopy(s.module).to(dtype or torch.float32).eval()
    if edit is not None:
        edit(module)
    given = {**s.roles, **(roles or {})}
    args = [convert(given[role], dtype) if role is not None else None for role in s.kind.call]
    prefix = getattr(s.module, "_annotate_path", "")
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if dtype == torch.float64:
            stack.enter_context(float64_throughout())
        if follow:
            stack.enter_context(versions.following(5))
        for patch in patches:
            stack.enter_context(patch)
        recorded = stack.enter_context(recording())
        module(*args)
    states = {name[len(prefix) + 1:] if prefix else name: value for name, value in recorded.items()
              if not prefix or name.startswith(prefix + ".")}
    return expanded(s, states)


def expanded(s: Setting, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Steps laid out as "positions" (1, T, C), broadcast over the batch, as (B, T, C)."""
    B, T = s.ids.shape
    for step, layout in s.kind.layouts.items():
        if layout == "positions" and step in states:
            states[step] = states[step].expand(B, T, -1)
    return states


def cache_twin_states(s: Setting, dtype, *, edit=None, roles=None) -> dict[str, torch.Tensor]:
    """gpt2-cache: the twin's attention token by token with its KVCache (as generation runs it):
    the outputs side by side, and the cache's keys and values at the end. ``roles["keep_step"]``:
    a function (t) -> (B, 1, 1, t + 1) booleans, which keys token t sees (default: the model's)."""
    from reimpl import KVCache, recording

    module = copy.deepcopy(s.module).to(dtype or torch.float32).eval()
    if edit is not None:
        edit(module)
    roles = roles or {}
    x = convert(s.roles["x"], dtype)
    keep = s.keep
    sees = roles.get("keep_step") or (lambda i: keep[:, :, i:i + 1, :i + 1])
    fresh = roles.get("fresh", False)  # each token alone: the cache never read
    cache, outputs = KVCache(), []
    T = x.shape[1]
    with torch.no_grad(), recording(), (float64_throughout() if dtype == torch.float64 else contextlib.nullcontext()):
        for i in range(T):
            if fresh:
                out, _ = module(x[:, i:i + 1], additive(torch.ones(x.shape[0], 1, 1, 1, dtype=torch.bool), x.dtype), None)
            else:
                out, _ = module(x[:, i:i + 1], additive(sees(i), x.dtype), cache)
            outputs.append(out)
    states = {"c_proj": torch.cat(outputs, dim=1)}
    if not fresh:
        states["key"], states["value"] = cache.keys[-1], cache.values[-1]
    return states


# ---------------------------------------------------------------------------------------------
# The learner's module: built, given the weights, run.

_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w.]*?)(?P<index>\[[0-9:,\s-]*\])?(?P<t>\.T)?$")


def weight(spec: str, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """A checkpoint tensor by WEIGHTS' syntax: ``name``, ``name[:, 0:384]`` (a slice), ``name.T`` (transposed)."""
    match = _SPEC.match(spec.strip())
    if match is None or match["name"] not in state:
        return None
    value = state[match["name"]]
    if match["index"]:
        index = []
        for part in match["index"][1:-1].split(","):
            part = part.strip()
            if ":" in part:
                lo, _, hi = part.partition(":")
                index.append(slice(int(lo) if lo.strip() else None, int(hi) if hi.strip() else None))
            elif part:
                index.append(int(part))
        value = value[tuple(index)]
    if match["t"]:
        value = value.T
    return value


def give_weights(module: nn.Module, s: Setting, mapping: dict[str, str] | None, name: str) -> list[str]:
    """Copy the checkpoint's weights (the twin module's, transformers' names) into the learner's
    module; a UserError naming the first that is missing or of the wrong shape. Returns the
    checkpoint's weights that no parameter took."""
    mapping = mapping or {}
    state = s.module.state_dict()
    params = dict(module.named_parameters())
    for key in mapping:
        if key not in params:
            raise UserError(t("WEIGHTS maps {key!r}, which is no parameter of {name} (its parameters: {params})",
                              key=key, name=name, params=_listed(params)))
    used = set()
    for key, param in params.items():
        spec = mapping.get(key, key)
        value = weight(spec, state)
        cls = s.kind.hf_class
        if value is None:
            missing = dict(name=name, key=key, cls=cls, spec=spec, weights=_listed(state))
            if key in mapping:
                raise UserError(t("{name}'s weight {key!r}: {cls} has no weight {spec!r} (its weights: {weights}); "
                                  "WEIGHTS maps it to a name that is not there", **missing))
            raise UserError(t("{name}'s weight {key!r}: {cls} has no weight {spec!r} (its weights: {weights}); "
                              "map it: WEIGHTS = {{{key!r}: 'transformers.name'}}", **missing))
        if tuple(value.shape) != tuple(param.shape):
            shapes = dict(name=name, key=key, shape=_shape(param.shape), cls=cls, spec=spec, expected=_shape(value.shape))
            if not (value.dim() == 2 and tuple(value.shape[::-1]) == tuple(param.shape)):
                raise UserError(t("{name}'s weight {key!r} is {shape}; {cls}'s {spec} is {expected}", **shapes))
            if "c_" in spec:  # GPT-2's Conv1D
                raise UserError(t("{name}'s weight {key!r} is {shape}; {cls}'s {spec} is {expected} (the transpose: {cls}'s {spec} "
                                  "is stored (in, out); map it as {fix!r} in WEIGHTS)", fix=spec + ".T", **shapes))
            raise UserError(t("{name}'s weight {key!r} is {shape}; {cls}'s {spec} is {expected} (the transpose; map it as {fix!r} "
                              "in WEIGHTS)", fix=spec + ".T", **shapes))
        with torch.no_grad():
            param.copy_(value.to(param.dtype))
        used.add(_SPEC.match(spec.strip())["name"])
    return [k for k in state if k not in used]


def _listed(names, limit: int = 12) -> str:
    names = list(names)
    if len(names) > limit:
        return t("{names}, ... ({n} in all)", names=", ".join(names[:limit]), n=len(names))
    return ", ".join(names)


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def build(target, s: Setting, mapping: dict | None, name: str) -> tuple[nn.Module, list[str]]:
    """The learner's module, built with transformers' config and given the weights, in eval mode."""
    if isinstance(target, type):
        try:
            module = target(s.config)
        except Exception as e:
            raise failed(e, target, f"{name}(config)") from None
    else:
        module = copy.deepcopy(target)
    if not isinstance(module, nn.Module):
        raise UserError(t("{name} is not a torch.nn.Module", name=name))
    unused = give_weights(module, s, mapping, name)
    return module.float().eval(), unused


def _file_of(obj) -> Path | None:
    cls = obj if isinstance(obj, type) else type(obj)
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return Path(file) if file else None


def learner_args(s: Setting, dtype) -> list:
    values = {"x": s.roles.get("x"), "mask": s.mask, "rope": s.roles.get("rope"), "ids": s.ids, "types": s.roles.get("types"),
              "scores": s.roles.get("scores"), "memory": s.roles.get("memory"), "source_mask": s.source_mask}
    return [convert(values[role], dtype) for role in s.kind.args]


def run_learner(module, s: Setting, dtype: torch.dtype | None, name: str) -> dict[str, torch.Tensor]:
    """The learner's recorded steps and its output (under the kind's output step), in ``dtype``."""
    if s.kind.incremental:
        return run_learner_cache(module, s, dtype, name)
    if dtype is not None:
        module = copy.deepcopy(module).to(dtype)
    with recorder.recording() as steps, torch.no_grad(), (float64_throughout() if dtype == torch.float64 else contextlib.nullcontext()):
        try:
            out = module(*learner_args(s, dtype))
        except Exception as e:
            calls = (lambda message: t("{error}; --as {kind} calls forward({args})", error=message, kind=s.kind.kind,
                                       args=", ".join(s.kind.args))) if isinstance(e, TypeError) else None
            raise failed(e, module, f"{name}.forward", calls) from None
    found, unknown = match_steps(steps, s.kind)
    found[s.kind.output] = output_of(out, s, name)
    found.update({f"?{n}": why for n, why in unknown})  # "?name": not a step (compare() lists them)
    return expanded(s, found)


def output_of(out, s: Setting, name: str) -> torch.Tensor:
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise UserError(t("{name}.forward returned a {type}; --as {kind} expects a tensor: {returns}",
                          name=name, type=type(out).__name__, kind=s.kind.kind, returns=translated(s.kind.returns)))
    return out


def run_learner_cache(module, s: Setting, dtype, name: str) -> dict[str, torch.Tensor]:
    """gpt2-cache: one token at a time, the cache going from each call to the next."""
    if dtype is not None:
        module = copy.deepcopy(module).to(dtype)
    x = convert(s.roles["x"], dtype)
    past, outputs = None, []
    with recorder.recording(), torch.no_grad(), (float64_throughout() if dtype == torch.float64 else contextlib.nullcontext()):
        for i in range(x.shape[1]):
            try:
                out = module(x[:, i:i + 1], s.mask[:, :i + 1], past)
            except Exception as e:
                raise failed(e, module, f"{name}.forward",
                             lambda message: t("{error} at token {i} (with {i} cached)", error=message, i=i)) from None
            if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], (tuple, list)) and len(out[1]) == 2
                    and all(isinstance(v, torch.Tensor) for v in (out[0], *out[1]))):
                raise UserError(t("{name}.forward returned {type}; --as gpt2-cache expects (output, (key, value)): {returns}",
                                  name=name, type=type(out).__name__, returns=translated(s.kind.returns)))
            outputs.append(out[0])
            past = tuple(out[1])
    shapes = {_shape(o.shape) for o in outputs}
    B, _, C = x.shape
    if any(tuple(o.shape) != (B, 1, C) for o in outputs):
        raise UserError(t("{name}.forward returned outputs of shape {shapes}; one token's is (B, 1, C) = {shape}",
                          name=name, shapes=", ".join(sorted(shapes)), shape=_shape((B, 1, C))))
    return {"c_proj": torch.cat(outputs, dim=1), "key": past[0], "value": past[1]}


# ---------------------------------------------------------------------------------------------
# Comparing.


def fit(layout: str, x, like: torch.Tensor) -> tuple[torch.Tensor | None, Words | None]:
    """The learner's value in the twin's layout, and a note if it was recorded in another one;
    (None, why) when it fits none."""
    if not isinstance(x, torch.Tensor):
        recorded = type(x).__name__
        return None, _words(lambda: t("recorded a {type}, not a tensor", type=recorded))
    if tuple(x.shape) == tuple(like.shape):
        return x, None
    shown, expected = _shape(x.shape), _shape(like.shape)
    if like.dim() == 4:
        B, h, T, d = like.shape
        if layout == "heads":
            if tuple(x.shape) == (B, T, h * d):
                return x.reshape(B, T, h, d).transpose(1, 2), _words(lambda: t("recorded as (B, T, C) {shape}: compared split into {h} heads",
                                                                               shape=shown, h=h))
            if tuple(x.shape) == (B, T, h, d):
                return x.transpose(1, 2), _words(lambda: t("recorded as (B, T, heads, d) {shape}: compared as (B, heads, T, d)", shape=shown))
        if tuple(x.shape) == (B * h, T, d):
            return x.reshape(B, h, T, d), _words(lambda: t("recorded with the heads in the batch {shape}: compared as {expected}",
                                                           shape=shown, expected=expected))
    if like.dim() == 3 and x.dim() == 4:
        B, T, C = like.shape
        if x.shape[0] == B and x.shape[2] == T and x.shape[1] * x.shape[3] == C:
            return x.transpose(1, 2).reshape(B, T, C), _words(lambda: t("recorded split into heads {shape}: compared merged, (B, T, C)",
                                                                        shape=shown))
        if x.shape[0] == B and x.shape[1] == T and x.shape[2] * x.shape[3] == C:
            return x.reshape(B, T, C), _words(lambda: t("recorded as (B, T, heads, d) {shape}: compared as (B, T, C)", shape=shown))
    if layout == "positions":
        try:
            return x.expand_as(like), _words(lambda: t("recorded as {shape}: compared broadcast over the batch", shape=shown))
        except RuntimeError:
            pass
    return None, _words(lambda: t("recorded as {shape}, which fits no layout of this step (transformers': {expected})",
                                  shape=shown, expected=expected))


def select(layout: str, value: torch.Tensor, s: Setting, match: bool = False, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The entries that are compared: real tokens (or ``rows``, (B, T) booleans; the source's for a
    value over the memory); the scores where a key is seen (``match``: the probabilities too; else
    each real query's whole row, padding keys included: they must get 0)."""
    rows = s.rows_of(layout) if rows is None else rows
    if layout == "heads" and value.dim() == 4:
        return value.transpose(1, 2)[rows]
    if layout in ("scores", "probs", "cross-scores", "cross-probs") and value.dim() == 4:
        if layout.endswith("scores") or match:
            return value.permute(0, 2, 3, 1)[s.keep_of(layout)[:, 0]]
        return value.permute(0, 2, 1, 3)[rows]
    if value.dim() >= 2 and tuple(value.shape[:2]) == tuple(rows.shape):
        return value[rows]
    return value


def max_diff(a: torch.Tensor, b: torch.Tensor, nan_equal: bool = False) -> float:
    """max |a - b| in float64; infinite where one is NaN or infinite and the other is not the same
    (``nan_equal``: NaN and NaN are the same)."""
    if a.numel() == 0:
        return 0.0
    a, b = a.detach().double(), b.detach().double()
    d = (a - b).abs()
    same = (a == b) | (a.isnan() & b.isnan()) if nan_equal else a == b
    d = torch.where(same, torch.zeros((), dtype=d.dtype), d)
    return float(torch.nan_to_num(d, nan=math.inf, posinf=math.inf).max())


def scale(*values: torch.Tensor) -> float:
    """The largest finite |value| over ``values``."""
    out = 0.0
    for v in values:
        v = v.detach().double().abs()
        v = v[torch.isfinite(v)]
        if v.numel():
            out = max(out, float(v.max()))
    return out


@dataclasses.dataclass
class StepResult:
    name: str
    verdict: str | None  # "equal", "rounding", "math"; None: not compared (``note`` says why)
    max_abs_diff: float | None
    note: str | None = None

    def to_dict(self) -> dict:
        d = self.max_abs_diff
        out = {"name": self.name, "verdict": self.verdict, "max_abs_diff": d if d is None or math.isfinite(d) else None}
        if d is not None and not math.isfinite(d):
            out["nonfinite"] = True  # NaN or infinity where transformers has a number
        if self.note:
            out["note"] = str(self.note)
        return out


def match_steps(events, kind: models.Graded) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The kind's steps the recorded (name, value) pairs mean: a step's own name, or a name it ends
    with (``probs`` -> ``attention.self.probs``), taken as the next step of that name in forward
    order (a GPT-2 block's ``c_proj``: the attention's, then the MLP's). Returns ({step: value},
    [(name, why)] for the names that are no step)."""
    steps, found, unknown, at = list(kind.steps), {}, [], 0
    for name, value in events:
        if name in steps:
            step = name
        else:
            candidates = [i for i, st in enumerate(steps) if st.endswith("." + name)]
            if not candidates:
                unknown.append((name, _not_a_step(kind)))
                continue
            later = [i for i in candidates if i >= at and steps[i] not in found]
            step = steps[later[0] if later else next((i for i in candidates if steps[i] not in found), candidates[-1])]
        found[step] = value
        at = steps.index(step) + 1
    return found, list(dict.fromkeys(unknown))


def _not_a_step(kind: models.Graded) -> Words:
    return _words(lambda: t("not a step of {kind} ({steps})", kind=kind.kind, steps=", ".join(kind.steps)))


# ---------------------------------------------------------------------------------------------
# The report.

VERDICT_STYLE = {"equal": "green", "rounding": "cyan", "math": "bold red", None: "dim"}


@dataclasses.dataclass
class Report:
    """What ``annotate check`` found: per step a verdict and max |difference|, the first ``math``
    step, and a diagnosis in English and Chinese. Prints as the terminal's table
    (``render``), draws as a page in a notebook (``_repr_html_``), ``to_dict`` as --json."""

    kind: str
    hf_class: str
    model: str
    layer: int | None
    learner: str
    inputs: str  # Words (English; view() in the view's language), as are annotate's notes, step notes and reasons
    steps: list[StepResult]
    not_recorded: list[str]
    not_compared: list[tuple[str, str]]
    first_math: str | None
    diagnosis: Any  # annotate.diagnosis.Diagnosis or None
    notes: list[str] = dataclasses.field(default_factory=list)
    against: str | None = None  # what it was graded against, in words, where "CLASS, layer N of MODEL" does not say it

    @property
    def verdict(self) -> str:
        verdicts = {s.verdict for s in self.steps}
        return "math" if "math" in verdicts else "rounding" if "rounding" in verdicts else "equal"

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "math" else 0

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "class": self.hf_class, "model": self.model, "layer": self.layer, "learner": self.learner,
            "inputs": str(self.inputs), "verdict": self.verdict, "steps": [s.to_dict() for s in self.steps],
            "first_math": self.first_math, "diagnosis": self.diagnosis.to_dict() if self.diagnosis else None,
            "not_recorded": self.not_recorded, "not_compared": [{"name": n, "reason": str(r)} for n, r in self.not_compared],
            "notes": [str(note) for note in self.notes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    def __repr__(self) -> str:
        return f"<check {self.learner} as {self.kind}: {self.verdict}" + (f", first math step {self.first_math}>" if self.first_math else ">")

    def title(self) -> str:
        """What the learner's module is graded against, in the view's language."""
        if self.against:
            return _in_view(self.against)
        if self.layer is not None:
            return t("{cls}, layer {layer} of {model}", cls=self.hf_class, layer=self.layer, model=self.model)
        return t("{cls} of {model}", cls=self.hf_class, model=self.model)

    def render(self, console) -> None:
        """The report in a terminal, laid out for the console's width (80 columns up): long lines
        wrap under their own column, never under the labels."""
        from rich.table import Table
        from rich.text import Text

        from annotate.render import styled

        file, _, cls = self.learner.rpartition("::")
        head = [styled(t("{learner}{file} as {kind}"), learner=Text(cls or self.learner, style="bold"),
                       file=Text(f" ({file})" if file else ""), kind=Text(self.kind, style="bold")),
                Text(t("against {what}", what=self.title())),
                Text(t("input: {inputs}", inputs=_in_view(self.inputs)), style="dim")]
        for line in head:  # wrapped as the grid's text is: between Chinese characters too, not only at spaces
            console.print(_wrapped(line, console.width), highlight=False)
        console.print()
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column(t("step"), overflow="fold")
        table.add_column(t("verdict"))
        table.add_column("max|diff|", justify="right")
        table.add_column("")
        for step in self.steps:
            d = _diff_text(step.max_abs_diff)
            mark = Text(t("← first math step"), style="bold red") if step.name == self.first_math else Text("")
            table.add_row(Text(step.name), Text(step.verdict or "—", style=VERDICT_STYLE[step.verdict]), d, mark)
        console.print(table)
        rows = [(step.name, _in_view(step.note), "dim") for step in self.steps if step.note]
        if self.not_recorded:
            rows.append((t("not recorded"), t("{steps} (annotate.record(name, tensor) in your forward compares a step, so that a "
                                             "difference shows where it starts)", steps=", ".join(self.not_recorded)), "dim"))
        rows += [(t("not compared"), t("{name}: {why}", name=name, why=_in_view(why)), "yellow") for name, why in self.not_compared]
        rows += [(t("note"), _in_view(note), "dim") for note in self.notes]
        if rows:
            console.print()
            _grid(console, rows)
        console.print()
        final = []
        if self.diagnosis is not None:
            both = [("diagnosis", self.diagnosis.en, ""), ("诊断", self.diagnosis.zh, "")]
            final += both[::-1] if i18n.current() == "zh-CN" else both  # the view's language first, the other beside it
        summary = {"equal": t("every step is bit-identical to transformers'"),
                   "rounding": t("every step equals transformers' up to rounding (the float64 reruns agree)"),
                   "math": t("your module computes something else, from {step} on", step=self.first_math)}[self.verdict]
        final.append((t("verdict"), Text(self.verdict, style=VERDICT_STYLE[self.verdict]) + Text(t(": {summary}", summary=summary)), ""))
        _grid(console, final, label_style="bold")

    def _repr_html_(self) -> str:
        e = html.escape
        color = {"equal": "#1a7f37", "rounding": "#0969da", "math": "#cf222e", None: "#6e7781"}
        rows = "".join(
            f"<tr><td><code>{e(s.name)}</code></td><td style='color:{color[s.verdict]}'>{e(s.verdict or '—')}"
            f"{' ← first math step' if s.name == self.first_math else ''}</td>"
            f"<td style='text-align:right'>{e(_diff_text(s.max_abs_diff))}</td>"
            f"<td>{e(s.note or '')}</td></tr>"
            for s in self.steps
        )
        extra = ""
        if self.not_recorded:
            extra += f"<p style='color:#6e7781'>not recorded: {e(', '.join(self.not_recorded))}</p>"
        for name, why in self.not_compared:
            extra += f"<p style='color:#9a6700'>not compared: <code>{e(name)}</code>: {e(why)}</p>"
        for note in self.notes:
            extra += f"<p style='color:#6e7781'>note: {e(note)}</p>"
        diagnosis = ""
        if self.diagnosis is not None:
            diagnosis = (f"<p><b>diagnosis:</b> {e(self.diagnosis.en)}</p>"
                         f"<p lang='zh-CN'><b>诊断：</b>{e(self.diagnosis.zh)}</p>")
        return (f"<div><p><b>annotate check</b> <code>{e(self.learner)}</code> as <code>{e(self.kind)}</code>, against "
                f"{e(self.title())}<br><span style='color:#6e7781'>input: {e(self.inputs)}</span></p>"
                f"<table><tr><th>step</th><th>verdict</th><th>max|diff|</th><th></th></tr>{rows}</table>{extra}{diagnosis}"
                f"<p><b>verdict:</b> <span style='color:{color[self.verdict]}'>{e(self.verdict)}</span></p></div>")


def _diff_text(d: float | None) -> str:
    return "" if d is None else "0" if d == 0 else f"{d:.2e}" if math.isfinite(d) else "inf"


def _grid(console, rows, label_style: str = "dim") -> None:
    """Label and text side by side, the text wrapped under itself (Chinese between any two
    characters, other text at spaces)."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    labels = max(cell_len(label) for label, _, _ in rows)
    width = max(console.width - labels - 2, 20)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style=label_style)
    grid.add_column(no_wrap=True)
    for label, text, style in rows:
        text = text if isinstance(text, Text) else Text(text, style=style)
        grid.add_row(label, _wrapped(text, width))
    console.print(grid)


def _wrapped(text, width: int):
    """A rich Text broken into lines of ``width`` cells by ``_wrap``."""
    from rich.text import Text

    return Text("\n").join(text[a:b] for a, b in _wrap(text.plain, width))


_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")
_NO_LINE_START = set("，。、：；！？）」』》〉,.;:!?)")
_NO_LINE_END = set("（「『《〈")


def _wrap(text: str, width: int) -> list[tuple[int, int]]:
    """(start, end) of each line of ``text`` wrapped to ``width`` cells: at spaces, and between
    any two Chinese characters (never before a closing punctuation mark); a word longer than a
    line is cut."""
    from rich.cells import cell_len

    tokens, i = [], 0  # (start, end) of words: a run of non-space, non-Chinese characters, or one Chinese character
    for match in re.finditer(r"\S", text):
        j = match.start()
        if j < i:
            continue
        if _CJK.match(text[j]):
            end = j + 1
        else:
            end = j
            while end < len(text) and not text[end].isspace() and not _CJK.match(text[end]):
                end += 1
        while end < len(text) and text[end] in _NO_LINE_START:  # kept with the word before it
            end += 1
        if tokens and tokens[-1][1] == j and text[j - 1] in _NO_LINE_END:  # an opening bracket goes with what follows
            j = tokens.pop()[0]
        tokens.append((j, end))
        i = end
    lines, start, end = [], None, None
    for a, b in tokens:
        if start is None:
            start, end = a, b
        elif cell_len(text[start:b]) <= width:
            end = b
        else:
            lines.append((start, end))
            start, end = a, b
        while cell_len(text[start:end]) > width:  # one word wider than the line
            cut = start + 1
            while cell_len(text[start:cut + 1]) <= width:
                cut += 1
            lines.append((start, cut))
            start = cut
    if start is not None:
        lines.append((start, end))
    return lines or [(0, 0)]


# ---------------------------------------------------------------------------------------------
# Grading.


@dataclasses.dataclass
class Grading:
    """One grading run's values, for the verdicts and the diagnoses (annotate/diagnosis.py)."""

    setting: Setting
    learner: nn.Module
    name: str
    mine32: dict[str, torch.Tensor]  # the learner's steps, by the kind's step names, in the twin's layout
    mine64: dict[str, torch.Tensor] | None
    ref32: dict[str, torch.Tensor]
    ref64: dict[str, torch.Tensor]
    again: dict[str, torch.Tensor] | None = None  # a second fp32 run of the learner (dropout shows there)

    @property
    def kind(self) -> models.Graded:
        return self.setting.kind

    def layout(self, step: str) -> str:
        return self.kind.layouts.get(step, "tokens")


def check(target, kind: str, *, model: str | None = None, layer: int = 0, weights: dict[str, str] | None = None,
          name: str | None = None) -> Report:
    """Grade ``target`` (an nn.Module class, built as ``CLASS(config)``, or a module, whose copy is
    given the weights) as ``kind`` against the twin of ``model``: a Report."""
    g = kind_of(kind)
    if name is None:
        name = target.__name__ if isinstance(target, type) else type(target).__name__
    if weights is None:
        weights = getattr(target, "WEIGHTS", None)
        if weights is None:
            weights = getattr(sys.modules.get((target if isinstance(target, type) else type(target)).__module__), "WEIGHTS", None)
    if g.kind == "sampling":
        from annotate import grade_sampling

        return grade_sampling.check(target, g, model=model, name=name)
    s = setting(g, model, layer)
    learner, unused = build(target, s, weights, name)
    ref32, ref64 = twin_states(s, None), twin_states(s, torch.float64)
    raw32 = run_learner(learner, s, None, name)
    notes = []
    try:
        raw64 = run_learner(learner, s, torch.float64, name)
    except Unfinished:
        raise
    except UserError as e:
        raw64 = None
        why = getattr(e, "words", str(e))
        notes.append(_words(lambda: t("your module could not run in float64 ({error}); rounding is told from math by a tolerance "
                                      "of {tolerance:g} of each step's scale instead", error=_in_view(why), tolerance=FALLBACK_TOLERANCE)))
    again = run_learner(learner, s, None, name)
    out = raw32[g.output]
    if tuple(out.shape) != tuple(ref32[g.output].shape):
        fitted, _ = fit(g.layouts.get(g.output, "tokens"), out, ref32[g.output])
        if fitted is None:
            raise UserError(t("{name}.forward returned a tensor of shape {shape}; {kind} returns {expected}: {returns}",
                              name=name, shape=_shape(out.shape), kind=g.kind, expected=_shape(ref32[g.output].shape), returns=translated(g.returns)))
    report, grading = compare(s, learner, name, raw32, raw64, again, ref32, ref64)
    report.notes = notes + report.notes
    if unused:
        report.notes.append(_words(lambda: t("{n} of {cls}'s weights went into no parameter of yours: {weights}",
                                             n=len(unused), cls=g.hf_class, weights=_listed(unused))))
    if report.first_math is not None or _differs(grading):
        from annotate import diagnosis

        report.diagnosis = diagnosis.diagnose(grading, report)
    return report


def _differs(grading: Grading) -> bool:
    return bool(grading.again) and any(max_diff(grading.mine32[k], grading.again[k], nan_equal=True)
                                       for k in grading.mine32 if grading.again.get(k) is not None)


def compare(s: Setting, learner, name: str, raw32, raw64, again, ref32, ref64) -> tuple[Report, Grading]:
    g = s.kind
    results, not_compared, mine32, mine64, mine_again = {}, [], {}, {}, {}
    notes = []
    for recorded, value in raw32.items():
        if recorded.startswith("?"):
            not_compared.append((recorded[1:], value))
            continue
        step = recorded
        if step not in ref32:
            not_compared.append((recorded, _not_in_twin(recorded)))
            continue
        layout = g.layouts.get(step, "tokens")
        a32, note = fit(layout, value, ref32[step])
        if a32 is None:
            results[step] = StepResult(step, None, None, note)
            continue
        mine32[step] = a32
        if again is not None and recorded in again:
            mine_again[step] = fit(layout, again[recorded], ref32[step])[0]
        if raw64 is not None and recorded in raw64:
            mine64[step] = fit(layout, raw64[recorded], ref64[step])[0]
        t32 = select(layout, ref32[step], s)
        diff = max_diff(select(layout, a32, s), t32)
        if diff == 0:
            verdict = "equal"
        elif step in mine64 and mine64[step] is not None:
            a64, t64 = select(layout, mine64[step], s), select(layout, ref64[step], s)
            verdict = judge(diff, max_diff(a64, t64), scale(a64, t64))
        else:
            verdict = "rounding" if diff <= FALLBACK_TOLERANCE * scale(t32) else "math"
        results[step] = StepResult(step, verdict, diff, note)
    ordered = [results[step] for step in g.steps if step in results]
    first = next((r.name for r in ordered if r.verdict == "math"), None)
    not_recorded = [step for step in g.steps if step not in results]
    layer = s.layer
    report = Report(g.kind, g.hf_class, s.model, layer, name, s.described(), ordered, not_recorded, not_compared, first, None, notes)
    grading = Grading(s, learner, name, mine32, mine64 if raw64 is not None else None, ref32, ref64, mine_again)
    return report, grading


def _not_in_twin(step: str) -> Words:
    return _words(lambda: t("the twin records no {step} here", step=step))


def check_file(target: str, kind: str, *, model: str | None = None, layer: int = 0) -> Report:
    """``annotate check FILE.py::CLASS --as KIND``."""
    kind_of(kind)  # an unknown kind before the file is run
    cls, weights, name = load_target(target)
    return check(cls, kind, model=model, layer=layer, weights=weights, name=name)


def listing() -> list[dict]:
    """Each kind: its transformers class, default model, inputs, output and steps (``annotate check --list``)."""
    out = []
    for g in kinds().values():
        out.append({
            "kind": g.kind, "class": g.hf_class, "forward": f"forward({', '.join(g.args)})",
            "model": g.default_model or _checkpoint_of(g.model_type),
            "inputs": [_role(role) if role in models.ROLES else _scores_input(role) for role in g.args],
            "returns": _words(lambda g=g: translated(g.returns)), "steps": list(g.steps),
        })
    return out


def _checkpoint_of(model_type: str) -> Words:
    if model_type:
        return _words(lambda: t("--model (a {model_type} checkpoint)", model_type=model_type))
    default = _causal_default()
    return _words(lambda: t("{model} when installed, else --model (a causal LM checkpoint)", model=default))


def _role(role: str) -> Words:
    """``x: hidden states (B, T, C): …``: a forward argument and what it is (models.ROLES)."""
    return _words(lambda: t("{role}: {what}", role=role, what=translated(models.ROLES[role])))


def _scores_input(role: str) -> Words:
    return _words(lambda: t("{role}: the next-token scores (B, V) of a real model", role=role))


def render_listing(console) -> None:
    """``annotate check --list``: each kind, what its forward takes and returns, its step names."""
    from rich.text import Text

    for i, entry in enumerate(listing()):
        if i:
            console.print()
        console.print(Text(entry["kind"], style="bold") + Text(f"  {entry['class']}"), highlight=False)
        rows = [(t("model"), _in_view(entry["model"]), ""), (t("call"), entry["forward"], "")]
        rows += [(t("in") if j == 0 else "", _in_view(line), "") for j, line in enumerate(entry["inputs"])]
        rows += [(t("out"), _in_view(entry["returns"]), ""), (t("steps"), ", ".join(entry["steps"]), "cyan")]
        _grid(console, rows)
