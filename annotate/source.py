"""`annotate source NAME`: transformers' installed source of a class, method, function or stage, beside its twin.

Nothing is imported to answer: ``find(name)`` reads the installed files with annotate/code.py's
reader (``ast``, never an import), so the file, the line numbers and the text are the ones Python
runs. It searches the modeling file of every architecture in reimpl/ and the shared pieces they
call (``SHARED_MODULES``). NAME may be

    BertSelfAttention                      a class or function
    BertSelfAttention.forward              a method (inherited ones too: DynamicCache.update)
    modeling_gpt2.GPT2Attention            with its module, short or dotted in full
    eager_attention_forward --model gpt2   a name several modeling files define: the first architecture's unless told
    encoder.layer.0.attention.self.probs   a stage, as `annotate trace` names it (annotate/stages.py)

The architectures are those whose twin file ends with its record (annotate/code.py's ``records``),
so a new twin file is found without a list to update.

It also finds the matching code in reimpl/ (read the same way): the class of the same name in the
architecture's twin file where there is one, else the entry in the architecture's ``TWINS``
(annotate/models/<model_type>.py) for the transformers names whose math the twin writes elsewhere
(BertSelfOutput is five lines of BertLayer.forward; eager_attention_forward is the middle of the
twin's attention forward), or in ``SHARED_TWINS`` here. Where the twin keeps that math inside a
longer function, ``render`` marks the lines that correspond.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import re
import textwrap
from pathlib import Path

from annotate import models
from annotate.models import Twin
from annotate.code import (  # the reader (annotate/code.py); its names are annotate.source's too
    Def,
    Record,
    _definitions,
    _text,
    lines_of,
    lookup,
    member,
    methods_of,
    module_file,
    mro,
    order,
    own_members,
    package_dir,
    records,
    resolve,
    span,
    transformers_version,
)
from annotate.errors import UserError
from annotate.i18n import t
from annotate.listing import MAX_WIDTH, chunks, console_for, display_path, show, show_lines

# Where NAME is looked for: short name -> module. Every class and function *defined* in these
# modules is a known name (imports are skipped: Conv1D is pytorch_utils', not modeling_gpt2's).
# The modeling files come from the architecture records (above); then the shared pieces.
SHARED_MODULES = {
    "masking_utils": "transformers.masking_utils",
    "cache_utils": "transformers.cache_utils",
    "activations": "transformers.activations",
    "pytorch_utils": "transformers.pytorch_utils",
    "sdpa_attention": "transformers.integrations.sdpa_attention",
    "modeling_utils": "transformers.modeling_utils",
}
KNOWN_MODULES = {**{r.hf_short: r.hf_module for r in records().values()}, **SHARED_MODULES}
# modeling_utils is thousands of lines of loading machinery: only these names of it are listed.
MODELING_UTILS_NAMES = ("AttentionInterface", "ALL_ATTENTION_FUNCTIONS", "PreTrainedModel")
# Module-level values that are not classes or functions: shown as their assignment statement.
# ALL_ATTENTION_FUNCTIONS, an AttentionInterface instance, is shown as that class (its mapping lives there).
VALUES = {("activations", "ACT2CLS"), ("activations", "ACT2FN")}
INSTANCES = {("modeling_utils", "ALL_ATTENTION_FUNCTIONS"): "AttentionInterface"}

MODEL_FILES = {model_type: r.hf_short for model_type, r in records().items()}
TWIN_MODULES = {r.hf_short: r.twin_module for r in records().values()}


@functools.cache
def call_path() -> list[str]:
    """The classes a reader meets first (guides/01-map.md), suggested first for a bare method name:
    each architecture's ``CALL_PATH`` (annotate/models/), taken in turn."""
    paths = [list(models.get(t).call_path) for t in order()]
    return [name for i in range(max(map(len, paths), default=0)) for path in paths if i < len(path) for name in [path[i]]]


def default_model() -> str:
    """The architecture a name several modeling files define is looked up in, unless --model says."""
    return order()[0]


# ---------------------------------------------------------------------------------------------
# What find returns.


# transformers' shared pieces whose twin is not "the same name in the architecture's twin file",
# keyed by (module, qualname); an entry for a class also serves its methods. What belongs to one
# architecture (its classes written elsewhere in the twin, the mask it builds, its cache) is in its
# file's ``TWINS`` (annotate/models/).
SHARED_TWINS: dict[tuple[str, str], Twin] = {
    # Activations: the twin's are plain functions in reimpl/activations.py.
    ("activations", "NewGELUActivation"): Twin("reimpl.activations:gelu_new", "GPT-2's gelu_new, the same ops in the same order"),
    ("activations", "GELUActivation"): Twin(
        "reimpl.activations:ACT2FN", "BERT's 'gelu' is torch's exact F.gelu, as GELUActivation calls it", ('"gelu": F.gelu', '"gelu": F.gelu')
    ),
    ("activations", "FastGELUActivation"): Twin("reimpl.activations:gelu_fast", "the same ops in the same order"),
    ("activations", "QuickGELUActivation"): Twin("reimpl.activations:quick_gelu", "the same ops in the same order"),
    ("activations", "GELUTanh"): Twin("reimpl.activations:gelu_pytorch_tanh", "torch's fused tanh approximation"),
    ("activations", "ACT2CLS"): Twin("reimpl.activations:ACT2FN", "the names a config can give, and what each computes"),
    ("activations", "ACT2FN"): Twin("reimpl.activations:ACT2FN", "the names a config can give, and what each computes"),
    ("activations", "get_activation"): Twin("reimpl.activations:get_activation", "name -> function"),
    # Attention backends: the twins have one, eager, written inline.
    ("modeling_utils", "AttentionInterface"): Twin(
        None, "no registry in the twins: they compute eager_attention_forward's math inline (annotate source eager_attention_forward)"
    ),
    ("modeling_utils", "ALL_ATTENTION_FUNCTIONS"): Twin(
        None, "no registry in the twins: they compute eager_attention_forward's math inline (annotate source eager_attention_forward)"
    ),
    ("modeling_utils", "PreTrainedModel"): Twin(
        None, "no twin: the twins are plain nn.Modules; their loader is reimpl.registry.from_pretrained"
    ),
    ("modeling_utils", "PreTrainedModel.from_pretrained"): Twin(
        "reimpl.registry:from_pretrained", "the twins' loader: config.json and weights, no model code"
    ),
    ("modeling_utils", "PreTrainedModel.get_correct_attn_implementation"): Twin(
        None, "no twin: the twins have one attention implementation, eager, written inline"
    ),
    ("sdpa_attention", "sdpa_attention_forward"): Twin(
        None, "no twin: the twins compute the eager path only; guides/07-numerics.md measures how far sdpa is from it"
    ),
}


@dataclasses.dataclass
class Code:
    """One piece of source: where it is and what it says."""

    qualname: str  # "transformers.models.bert.modeling_bert.BertSelfAttention", "reimpl.bert.BertLayer.forward"
    path: Path  # the file it is read from (the one Python loads it from)
    first_line: int  # 1-based line of the first line shown (a decorator, if it has one)
    text: str
    highlight: tuple[int, int] | None = None  # file line numbers of the part that corresponds, inclusive

    @property
    def last_line(self) -> int:
        return self.first_line + len(self.text.splitlines()) - 1

    @property
    def def_line(self) -> int:
        """The line of the ``class``/``def`` statement (or the assignment), after any decorators."""
        try:
            node = ast.parse(textwrap.dedent(self.text)).body[0]
        except (SyntaxError, IndexError):
            return self.first_line
        return self.first_line + node.lineno - 1  # a def's lineno is its "def" line, not its first decorator's


@dataclasses.dataclass
class Found:
    """What ``find`` returns for a class, function or method: transformers' code for the name, and the twin's."""

    name: str  # as asked
    module: str  # KNOWN_MODULES key
    code: Code
    twin: Code | None
    twin_note: str  # why the twin is that code, or why there is none
    note: str = ""  # how the name was resolved (an instance shown as its class, an inherited method)
    also: list[str] = dataclasses.field(default_factory=list)  # other modules that define the name, with how to ask


def code_of(d: Def, qualname: str | None = None) -> Code:
    """The lines of a definition, read from its file."""
    first, last = span(d)
    text = "\n".join(lines_of(d.path)[first - 1 : last])
    return Code(qualname=qualname or d.qualname, path=d.path, first_line=first, text=text)


# ---------------------------------------------------------------------------------------------
# The index of known names.

_DEFINED = re.compile(r"^(?:async[ \t]+def|def|class)[ \t]+(\w+)", re.M)


@functools.cache
def _quick_names(short: str) -> frozenset[str]:
    """The top-level class and function names of a known module, from its text (a def or class at
    column 0): enough to know which files to parse. ``_defined`` confirms with the parsed file."""
    path = module_file(KNOWN_MODULES[short])
    if path is None:
        return frozenset()
    names = set(_DEFINED.findall(_text(path)))
    names |= {name for module, name in (*VALUES, *INSTANCES) if module == short}
    if short == "modeling_utils":
        names &= set(MODELING_UTILS_NAMES)
    return frozenset(names)


def _defined(short: str, name: str) -> Def | None:
    """A known name of a known module: a class or function defined there, or one of VALUES / INSTANCES."""
    if short == "modeling_utils" and name not in MODELING_UTILS_NAMES:
        return None
    module = KNOWN_MODULES[short]
    path = module_file(module)
    node = _definitions(path).get(name) if path is not None else None
    if node is None:
        return None
    is_value = (short, name) in VALUES or (short, name) in INSTANCES
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or is_value:
        return Def(module, path, node, name)
    return None


def index() -> dict[str, dict[str, Def]]:
    """Known top-level names per module: {module short name: {name: Def}} (parses every known file)."""
    return {short: {name: d for name in sorted(_quick_names(short)) if (d := _defined(short, name))} for short in KNOWN_MODULES}


def known_names() -> list[str]:
    """Every name ``find`` accepts without a module prefix: top-level names and Class.method."""
    names = set()
    for short, entries in index().items():
        for name, d in entries.items():
            names.add(name)
            if isinstance(d.node, ast.ClassDef) and short != "modeling_utils":
                names.update(f"{name}.{method}" for method in methods_of(d.node))
    return sorted(names)


# ---------------------------------------------------------------------------------------------
# Finding.


def _split(name: str) -> tuple[str | None, list[str]]:
    """'modeling_gpt2.GPT2Attention.forward' -> ('modeling_gpt2', ['GPT2Attention', 'forward'])."""
    parts = name.strip().split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        for short, path in KNOWN_MODULES.items():
            if prefix in (short, path, path.removeprefix("transformers."), path.split(".", 2)[-1]):
                return short, parts[i:]
    return None, parts


def _suggest(name: str) -> list[str]:
    names = known_names()
    methods = [n for n in names if n.lower().endswith("." + name.lower())]
    if methods:  # "forward": a method name without its class; the classes on the main call path first
        def rank(n: str) -> tuple[int, str]:
            owner = n.split(".")[0]
            path = call_path()
            return (path.index(owner) if owner in path else len(path), n)

        return sorted(methods, key=rank)[:5]
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.6)
    if not close:  # a method of an unknown class, or a prefix: try the last part on its own
        close = difflib.get_close_matches(name.split(".")[-1].lower(), list(lower), n=5, cutoff=0.6)
    return [lower[c] for c in close]


def _examples() -> list[str]:
    """Names to try: the first classes readers meet (a method of the second), a shared piece, and
    the first architecture's attention probabilities as a stage."""
    from annotate import stages

    first, second = (call_path() + ["", ""])[:2]
    probs = next((r.pattern for r in stages.recorded(default_model())
                  if models.get(default_model()).kind(stages.step_of(default_model(), ".".join(r.pattern).replace("*", "0"))) == "probs"), ())
    return [n for n in (first, f"{second}.forward" if second else "", "eager_mask", "Conv1D", ".".join(p.replace("*", "0") for p in probs)) if n]


def _looks_like_a_stage(name: str) -> bool:
    """encoder.layer.0.attention.self.probs, pooler.dense: dotted lower-case paths, or paths with a layer number."""
    parts = name.split(".")
    return any(p.isdigit() for p in parts) or ("." in name and parts[0][:1].islower())


def find(name: str, model: str | None = None):
    """Locate NAME in the installed transformers and its twin in reimpl/: a ``Found`` for a class,
    function or method, a ``stages.StageFound`` for a stage name.

    ``model`` (a model_type: "bert", "gpt2", ...) picks the modeling file when several define NAME
    (default: ``default_model()``), the twin of a shared piece that several models use (eager_mask), and the
    architecture of a stage name.
    """
    if model not in (None, *MODEL_FILES):
        raise UserError(t("--model must be one of {choices}, not {model!r}", choices=", ".join(MODEL_FILES), model=model))
    module, parts = _split(name)
    python_name = bool(parts) and all(p.isidentifier() for p in parts)
    if python_name:
        modules = [
            short
            for short in KNOWN_MODULES
            if (module is None or short == module) and parts[0] in _quick_names(short) and _defined(short, parts[0])
        ]
        if modules:
            return _find_code(name, parts, modules, model)
    from annotate import stages

    if module is None:
        found = stages.find_stage(name, model)  # None if no architecture records it; an error if another does
        if found is not None:
            return found
    stage_names, note = stages.suggest(name, model) if module is None else ([], "")
    code_names = _suggest(".".join(parts)) if python_name else []
    if module is None and _looks_like_a_stage(name):
        suggestions = stage_names or code_names
    else:
        suggestions, note = code_names or stage_names, "" if code_names else note
    if module and suggestions:
        raise UserError(t("unknown name {name!r} in {module}; did you mean: {names}", name=name, module=module, names=", ".join(suggestions)))
    if module:
        raise UserError(t("unknown name {name!r} in {module}; try e.g. {names}", name=name, module=module, names=", ".join(_examples())))
    if suggestions:
        raise UserError(t("unknown name {name!r} in transformers' modeling files, the pieces they share, or the twins' stages; "
                          "did you mean: {names}{note}", name=name, names=", ".join(suggestions), note=note))
    raise UserError(t("unknown name {name!r} in transformers' modeling files, the pieces they share, or the twins' stages; "
                      "try e.g. {names}", name=name, names=", ".join(_examples())))


def _find_code(name: str, parts: list[str], modules: list[str], model: str | None) -> Found:
    preferred = MODEL_FILES.get(model or default_model())
    chosen = preferred if preferred in modules else modules[0]
    asked = ".".join(parts)
    also = [
        f"{short}.{asked} (annotate source {asked} --model {_model_of(short)})"
        if _model_of(short)
        else f"{short}.{asked} (annotate source {short}.{asked})"
        for short in modules
        if short != chosen
    ]
    top = parts[0]
    d = _defined(chosen, top)
    note = ""
    if (chosen, top) in INSTANCES:
        cls_name = INSTANCES[(chosen, top)]
        note = f"{top} is an instance of {cls_name}; shown: its class"
        d = resolve(d.module, cls_name)
    for i, attr in enumerate(parts[1:], start=1):
        owner = d
        d = member(owner, attr) if isinstance(owner.node, ast.ClassDef) else None
        if d is None:
            members = sorted(methods_of(owner.node)) if isinstance(owner.node, ast.ClassDef) else []
            if members:
                raise UserError(t("{owner} has no attribute {attr!r}; its methods: {methods}",
                                  owner=".".join(parts[:i]), attr=attr, methods=", ".join(members)))
            raise UserError(t("{owner} has no attribute {attr!r}", owner=".".join(parts[:i]), attr=attr))
    code = code_of(d, f"{KNOWN_MODULES[chosen]}.{asked}")
    if len(parts) > 1 and d.qualname != asked and not note:
        note = f"{asked} is inherited: defined as {d.qualname}"
    twin, twin_note = _twin(chosen, parts, model)
    return Found(name=name, module=chosen, code=code, twin=twin, twin_note=twin_note, note=note, also=also)


def _model_of(module: str) -> str | None:
    return {v: k for k, v in MODEL_FILES.items()}.get(module)


def _twin_entry(module: str, parts: list[str], model: str | None) -> Twin | None:
    """Where the twin writes a transformers name: the asked architecture's file first (a shared
    piece such as eager_mask has one twin per architecture), then the others', then SHARED_TWINS."""
    first = model or default_model()
    tables = [models.get(t).twins for t in [first, *(t for t in order() if t != first)]] + [SHARED_TWINS]
    for key in (".".join(parts), parts[0]):
        for table in tables:
            if (module, key) in table:
                return table[(module, key)]
    return None


def _is_head(name: str) -> bool:
    return re.search(r"For[A-Z]", name) is not None or "Head" in name


def _twin(module: str, parts: list[str], model: str | None) -> tuple[Code | None, str]:
    entry = _twin_entry(module, parts, model)
    if entry is None:
        twin_module = TWIN_MODULES.get(module)
        if twin_module is None:
            return None, "no twin: reimpl/ has no counterpart of this shared piece"
        entry = Twin(f"{twin_module}:{'.'.join(parts)}", "same name, same math")
        if _twin_def(entry.target) is None:
            if _twin_def(f"{twin_module}:{parts[0]}") is not None:
                return None, f"no twin of {'.'.join(parts)}: reimpl's {parts[0]} has no {'.'.join(parts[1:])}"
            if _is_head(parts[0]):
                heads = next(r.heads for r in records().values() if r.hf_short == module)
                return None, f"no twin: reimpl/ has the heads real checkpoints carry ({', '.join(heads)}); not this one"
            return None, f"no twin: reimpl/ has no {parts[0]} (see the docstring of {twin_module.replace('.', '/')}.py for what is left out)"
    if entry.target is None:
        return None, entry.note
    d = _twin_def(entry.target)
    if d is None:
        return None, f"no twin yet: {entry.target} is not in this checkout of reimpl/"
    module_name, qualname = entry.target.split(":")
    code = code_of(d, f"{module_name}.{qualname}")
    if entry.focus is not None:
        code.highlight = _focus(code, *entry.focus)
    return code, entry.note


def _twin_def(target: str) -> Def | None:
    module_name, qualname = target.split(":")
    return lookup(module_name, qualname)


def _focus(code: Code, start: str, end: str) -> tuple[int, int] | None:
    """File line numbers of the first line containing ``start`` through the next containing ``end``."""
    lines = code.text.splitlines()
    first = next((i for i, line in enumerate(lines) if start in line), None)
    if first is None:
        return None
    last = next((i for i in range(first, len(lines)) if end in lines[i]), first)
    return code.first_line + first, code.first_line + last


# ---------------------------------------------------------------------------------------------
# Rendering.


def render(found, console=None, twin: bool = True) -> None:
    """Print transformers' code with its file and real line numbers, then the twin's (unless ``twin`` is False).
    A stage (``stages.StageFound``) prints its formula, then both sides' lines. ``console``: a rich Console
    (by default one sized for the listing: ``console_for``)."""
    from annotate import stages

    if isinstance(found, stages.StageFound):
        stages.render(found, console, twin=twin)
        return
    from rich.text import Text

    codes = [found.code] + ([found.twin] if twin and found.twin is not None else [])
    console = console or console_for([(c.text, c.last_line) for c in codes])
    show(console, found.code, f"transformers {transformers_version()}: {found.code.qualname}")
    if found.note:
        console.print(Text(f"({found.note})", style="dim"), soft_wrap=True)
    for other in found.also:
        console.print(Text(t("also defined: {other}", other=other), style="yellow"), soft_wrap=True)
    if not twin:
        return
    console.print()
    if found.twin is None:
        console.print(Text(found.twin_note, style="italic"), soft_wrap=True)
        return
    marked = t(", marked ❱") if found.twin.highlight else ""
    show(console, found.twin, t("twin: {name} ({note}{marked})", name=found.twin.qualname, note=found.twin_note, marked=marked))


# ---------------------------------------------------------------------------------------------
# Names from the other major version of transformers (reimpl/versions.py): a 4.x tutorial's
# names under 5.x, and 5.x's names under 4.57, answered with what the installed version has.

def renamed_names() -> dict[str, tuple[str, str | None, str]]:
    """Every architecture's names of the other major version (annotate/models/: ``RENAMED``), for
    the installed release: name -> (what to show instead, its --model, what changed)."""
    out: dict[str, tuple[str, str | None, str]] = {}
    for model_type in reversed(order()):  # the first architecture's entry wins
        out.update(models.get(model_type).renamed_names(transformers_version()))
    return out


_find_in_installed = find


def find(name: str, model: str | None = None):  # noqa: F811 (the finder above, plus the other version's names)
    """``find``, and for a name of the other major version of transformers (a 4.x tutorial's
    ``transpose_for_scores`` under 5.x, 5.x's ``DistilBertSelfAttention`` under 4.57) what the
    installed version has instead, with a note saying what changed (``renamed_names``)."""
    try:
        return _find_in_installed(name, model)
    except UserError:
        renamed = renamed_names().get(name.strip())
        if renamed is None:
            raise
        instead, instead_model, change = renamed
        try:
            found = _find_in_installed(instead, model or instead_model)
        except UserError:
            raise UserError(t("{name!r} is not in transformers {version}: {change}",
                              name=name, version=transformers_version(), change=change.removesuffix(": shown"))) from None
        found.note = f"{change}; transformers {transformers_version()} is installed"
        return found
