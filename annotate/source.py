"""`annotate source NAME`: transformers' installed source of a class, method, function or stage, beside its twin.

Nothing is imported to answer: importing transformers costs seconds, and importing reimpl imports
torch. ``find(name)`` reads the files of the transformers that is installed (found with
``importlib.util.find_spec``, which locates a package without running it) and parses them with
``ast``, so the file, the line numbers and the text are the ones Python runs, numbered as
``inspect.getsourcelines`` numbers them (a decorated definition starts at its first decorator). It
searches the modeling file of every architecture in reimpl/ and the shared pieces they call
(``SHARED_MODULES``). NAME may be

    BertSelfAttention                      a class or function
    BertSelfAttention.forward              a method (inherited ones too: DynamicCache.update)
    modeling_gpt2.GPT2Attention            with its module, short or dotted in full
    eager_attention_forward --model gpt2   a name several modeling files define: bert unless told
    encoder.layer.0.attention.self.probs   a stage, as `annotate trace` names it (annotate/stages.py)

The architectures are those whose twin file ends with its record, ``ARCHITECTURE =
Architecture(model_type=..., hf_file=..., base=..., ...)`` (reimpl/architecture.py): its literal
keyword arguments are read here with ``ast``, so a new twin file is found without a list to update.

It also finds the matching code in reimpl/ (read the same way): the class of the same name in the
architecture's twin file where there is one, else the entry in ``TWINS``, a short table for the
transformers names whose math the twin writes elsewhere (BertSelfOutput is five lines of
BertLayer.forward; eager_attention_forward is the middle of the twin's attention forward). Where
the twin keeps that math inside a longer function, ``render`` marks the lines that correspond.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib.util
import os
import re
import textwrap
from pathlib import Path

from annotate.errors import UserError

# ---------------------------------------------------------------------------------------------
# The files: found, read and parsed once per process, never imported.


@functools.cache
def package_dir(package: str) -> Path:
    """The folder of an installed package, without importing it (find_spec runs none of its code)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{package} is not installed in this Python ({package} is needed to show its source)")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def transformers_version() -> str:
    """The installed transformers' version: its ``__version__`` line, as ``transformers.__version__``
    gives it (importlib.metadata would say the same, but importing it costs more than this whole lookup)."""
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', _text(package_dir("transformers") / "__init__.py"), re.M)
    if match:
        return match.group(1)
    from importlib.metadata import version

    return version("transformers")


def module_file(module: str) -> Path | None:
    """The file of a transformers or reimpl module (``transformers.models.bert.modeling_bert``), or None
    for anything else (torch: its classes are leaves here) or a module that is not there."""
    top, *rest = module.split(".")
    if top not in ("transformers", "reimpl"):
        return None
    folder = package_dir(top).joinpath(*rest)
    for candidate in (folder.with_name(folder.name + ".py") if rest else None, folder / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


@functools.cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def lines_of(path: Path) -> list[str]:
    return _text(path).splitlines()


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(_text(path), filename=str(path))


# ---------------------------------------------------------------------------------------------
# The architecture records, read from the twin files.


@dataclasses.dataclass(frozen=True)
class Record:
    """An architecture's record as its twin file writes it (reimpl/<model>.py's ``ARCHITECTURE``): the
    literal fields; the classes by name."""

    model_type: str  # "bert"
    hf_file: str  # "models/bert/modeling_bert.py"
    twin_module: str  # "reimpl.bert": the file that holds the record
    base: str  # "BertModel"
    heads: tuple[str, ...]  # ("BertForMaskedLM", ...)
    default: str
    layers: str  # "encoder.layer": where the layers' stage names start, inside the base model
    attention: str  # "attention.self"

    @property
    def hf_module(self) -> str:
        return "transformers." + self.hf_file.removesuffix(".py").replace("/", ".")

    @property
    def hf_short(self) -> str:
        return self.hf_module.rsplit(".", 1)[1]


def _literal(node: ast.expr):
    """A record field: a constant as itself, a class as its name, a tuple of classes as names."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    return None


@functools.cache
def records() -> dict[str, Record]:
    """Every architecture reimpl/ has a twin file for, by model_type: the ``ARCHITECTURE = Architecture(...)``
    statement of each reimpl/*.py (only that statement is parsed: it ends the file)."""
    out: dict[str, Record] = {}
    for path in sorted(package_dir("reimpl").glob("*.py")):
        text = _text(path)
        at = text.find("\nARCHITECTURE = Architecture(")
        if at < 0:
            continue
        try:
            statement = ast.parse(text[at + 1 :]).body[0]
        except SyntaxError:  # something odd after the record: parse the whole file
            statement = next(n for n in _tree(path).body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "ARCHITECTURE")
        fields = {kw.arg: _literal(kw.value) for kw in statement.value.keywords}
        heads = fields.get("heads") or ()
        record = Record(
            model_type=fields["model_type"],
            hf_file=fields["hf_file"],
            twin_module=f"reimpl.{path.stem}",
            base=fields["base"],
            heads=heads if isinstance(heads, tuple) else (heads,),
            default=fields.get("default") or fields["base"],
            layers=fields.get("layers") or "",
            attention=fields.get("attention") or "",
        )
        out[record.model_type] = record
    return out


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
# The classes a reader meets first (guides/01-map.md), suggested first for a bare method name.
CALL_PATH = ["BertSelfAttention", "GPT2Attention", "BertLayer", "GPT2Block", "BertModel", "GPT2Model",
             "BertEmbeddings", "GPT2MLP", "GPT2LMHeadModel", "BertAttention", "BertSelfOutput",
             "BertIntermediate", "BertOutput", "BertEncoder", "Conv1D", "DynamicLayer", "DynamicCache"]


# ---------------------------------------------------------------------------------------------
# Definitions in a file, and following names: imports, base classes, inherited members.


@dataclasses.dataclass(frozen=True)
class Def:
    """A definition found in a file: a class, a function or method, or an assignment."""

    module: str  # "transformers.cache_utils"
    path: Path
    node: ast.stmt
    qualname: str  # "Cache.update": where it is defined


def _top_statements(body: list[ast.stmt]):
    """A module's top-level statements, including those inside top-level if / try / with blocks."""
    for node in body:
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            blocks = [node.body, getattr(node, "orelse", [])]
            if isinstance(node, ast.Try):
                blocks += [h.body for h in node.handlers] + [node.finalbody]
            for block in blocks:
                yield from _top_statements(block)
        else:
            yield node


def _assigned_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


@functools.cache
def _definitions(path: Path) -> dict[str, ast.stmt]:
    """Top-level classes, functions and assignments of a file, by name (the last one wins, as when it runs)."""
    out: dict[str, ast.stmt] = {}
    for node in _top_statements(_tree(path).body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        for name in _assigned_names(node):
            out[name] = node
    return out


def _absolute(module: str, level: int, name: str | None, is_package: bool) -> str:
    """``from ..cache_utils import X`` in transformers.models.bert.modeling_bert -> transformers.cache_utils."""
    if not level:
        return name or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


@functools.cache
def _imports(module: str, path: Path) -> dict[str, tuple[str, str]]:
    """Names a file imports with ``from X import name [as alias]``: alias -> (module, name)."""
    out = {}
    package = path.name == "__init__.py"
    for node in _top_statements(_tree(path).body):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.level, node.module, package)
            for alias in node.names:
                if alias.name != "*":
                    out[alias.asname or alias.name] = (source, alias.name)
    return out


def resolve(module: str, name: str, _depth: int = 0) -> Def | None:
    """``name`` as seen from ``module``: defined there, or imported from another file we can read."""
    path = module_file(module)
    if path is None or _depth > 6:
        return None
    node = _definitions(path).get(name)
    if node is not None:
        return Def(module, path, node, name)
    imported = _imports(module, path).get(name)
    if imported is not None:
        return resolve(*imported, _depth + 1)
    return None


_NOT_METHODS = {"property", "staticmethod", "classmethod", "cached_property"}
_IMPLICIT_CLASSMETHODS = {"__init_subclass__", "__class_getitem__"}


def _decorator_names(node) -> list[str]:
    names = []
    for dec in getattr(node, "decorator_list", []):
        target = dec.func if isinstance(dec, ast.Call) else dec
        names.append(ast.unparse(target))
    return names


@functools.cache
def own_members(cls: ast.ClassDef) -> dict[str, ast.stmt]:
    """What a class body defines: methods (a property's getter, not its setter), class attributes, nested classes."""
    out: dict[str, ast.stmt] = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            accessor = any(d.endswith((".setter", ".deleter")) for d in _decorator_names(node))
            if not (accessor and node.name in out):
                out[node.name] = node
        for name in _assigned_names(node):
            out[name] = node
    return out


def methods_of(cls: ast.ClassDef) -> list[str]:
    """The plain methods a class body defines (what ``inspect.isfunction`` finds in its ``vars``)."""
    return [
        name
        for name, node in own_members(cls).items()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and name not in _IMPLICIT_CLASSMETHODS
        and not (_NOT_METHODS & {d.rsplit(".", 1)[-1] for d in _decorator_names(node)})
        and not any(d.endswith((".setter", ".deleter")) for d in _decorator_names(node))
    ]


def bases(cls: Def) -> list[Def]:
    """The base classes we can read (transformers' and reimpl's); torch's nn.Module and the like are left out."""
    out = []
    for base in cls.node.bases:  # a Name (Cache, BertSelfAttention); nn.Module, an Attribute, is torch's
        found = resolve(cls.module, base.id) if isinstance(base, ast.Name) else None
        if found is not None and isinstance(found.node, ast.ClassDef):
            out.append(found)
    return out


@functools.cache
def mro(cls: Def) -> tuple[Def, ...]:
    """The method resolution order over the classes we can read (C3, as Python computes it)."""
    return tuple(_mro(cls, 0))


def _mro(cls: Def, depth: int) -> list[Def]:
    if depth > 30:
        return [cls]
    sequences = [_mro(b, depth + 1) for b in bases(cls)] + [bases(cls)]
    out = [cls]
    key = lambda d: (d.path, d.node.lineno)  # noqa: E731
    sequences = [list(s) for s in sequences if s]
    while sequences:
        for seq in sequences:
            head = seq[0]
            if not any(key(head) in {key(d) for d in other[1:]} for other in sequences):
                break
        else:  # inconsistent hierarchy (cannot happen in code that runs): fall back to depth first
            head = sequences[0][0]
        out.append(head)
        sequences = [[d for d in s if key(d) != key(head)] for s in sequences]
        sequences = [s for s in sequences if s]
    return out


def member(cls: Def, name: str) -> Def | None:
    """``cls.name`` as attribute lookup finds it: in the class, else along its bases."""
    classes = [cls] if name in own_members(cls.node) else mro(cls)  # the MRO only when needed: it reads the bases' files
    for klass in classes:
        node = own_members(klass.node).get(name)
        if node is not None:
            return Def(klass.module, klass.path, node, f"{klass.qualname}.{name}")
    return None


def lookup(module: str, qualname: str) -> Def | None:
    """``module``'s ``qualname`` (``BertLayer.forward``), following imports and base classes."""
    first, *rest = qualname.split(".")
    found = resolve(module, first)
    for attr in rest:
        if found is None or not isinstance(found.node, ast.ClassDef):
            return None
        found = member(found, attr)
    return found


def span(d: Def) -> tuple[int, int]:
    """First and last line of a definition, as ``inspect.getsourcelines`` gives them: from the first
    decorator, through trailing comments indented as the body (``inspect.getblock``'s rule)."""
    node = d.node
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.lineno, node.end_lineno
    first = min([node.lineno, *(dec.lineno for dec in node.decorator_list)])
    lines = lines_of(d.path)
    last = node.end_lineno
    body = node.body[0]
    before = lines[body.lineno - 1][: body.col_offset]
    body_col = body.col_offset if not before.strip() else None  # None: a one-line definition
    for i in range(last, len(lines)):
        stripped = lines[i].strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        if body_col is not None and len(lines[i]) - len(lines[i].lstrip()) >= body_col:
            last = i + 1
    return first, last


# ---------------------------------------------------------------------------------------------
# What find returns.


@dataclasses.dataclass(frozen=True)
class Twin:
    """Where in reimpl/ the math of a transformers name lives.

    ``target``: "module:qualname". ``focus``: the first and last line of the part that
    corresponds, as text the lines contain (None: all of it). ``note``: why it lives there.
    """

    target: str | None
    note: str
    focus: tuple[str, str] | None = None


_LAYER = "reimpl.bert:BertLayer.forward"

# transformers names whose twin is not "the same name in the architecture's twin file". Keyed by
# (module, qualname); an entry for a class also serves its methods. A dict keyed by model picks
# the twin by --model, for the shared pieces both models use.
TWINS: dict[tuple[str, str], Twin | dict[str, Twin]] = {
    # BERT: HF's five classes per layer are one forward in the twin.
    ("modeling_bert", "eager_attention_forward"): Twin(
        "reimpl.bert:BertSelfAttention.forward",
        "the twin writes eager_attention_forward's lines inline, in its attention's forward",
        ("scores = torch.matmul", "context = context.transpose"),
    ),
    ("modeling_bert", "BertAttention"): Twin(
        _LAYER, "BertAttention = BertSelfAttention, then BertSelfOutput: the first half of the twin's BertLayer.forward",
        ("context, _ = self.attention.self", 'record(attention, "LayerNorm"'),
    ),
    ("modeling_bert", "BertSelfOutput"): Twin(
        _LAYER, "BertSelfOutput's projection, residual and LayerNorm are these lines of the twin's BertLayer.forward",
        ("# BertSelfOutput", 'record(attention, "LayerNorm"'),
    ),
    ("modeling_bert", "BertIntermediate"): Twin(
        _LAYER, "BertIntermediate's dense and activation are these lines of the twin's BertLayer.forward",
        ("# BertIntermediate", 'record(ffn_in, "intermediate_act_fn"'),
    ),
    ("modeling_bert", "BertOutput"): Twin(
        _LAYER, "BertOutput's projection, residual and LayerNorm are these lines of the twin's BertLayer.forward",
        ("# BertOutput", 'record(ffn_out, "LayerNorm"'),
    ),
    ("modeling_bert", "BertLayer.feed_forward_chunk"): Twin(
        _LAYER, "the feed-forward (BertIntermediate, then BertOutput); the twin never chunks it",
        ("# BertIntermediate", 'record(ffn_out, "LayerNorm"'),
    ),
    ("modeling_bert", "BertEncoder"): Twin(
        "reimpl.bert:BertModel.forward", "the encoder is the loop over the layers in the twin's BertModel.forward",
        ("for i, layer in enumerate", "record(self.encoder"),
    ),
    ("modeling_bert", "BertPooler"): Twin(
        "reimpl.bert:BertModel.forward", "the pooler is the tail of the twin's BertModel.forward",
        ("if self.pooler is not None", 'record(self.pooler, "activation"'),
    ),
    ("modeling_bert", "BertModel._create_attention_masks"): Twin(
        "reimpl.bert:additive_mask", "an encoder's mask hides padding keys only: create_bidirectional_mask -> eager_mask"
    ),
    ("modeling_bert", "BertPreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
    ("modeling_bert", "BertPredictionHeadTransform"): Twin(
        "reimpl.bert:BertLMPredictionHead.forward", "the transform is the first lines of the twin's BertLMPredictionHead.forward",
        ("t = self.transform", 'record(t, "LayerNorm"'),
    ),
    ("modeling_bert", "BertOnlyMLMHead"): Twin("reimpl.bert:BertLMPredictionHead", "BertOnlyMLMHead only holds `predictions`: the twin's cls is a Namespace"),
    ("modeling_bert", "BertOnlyNSPHead"): Twin(
        "reimpl.bert:BertForNextSentencePrediction.forward", "one linear layer on the pooled [CLS]: cls.seq_relationship"
    ),
    ("modeling_bert", "BertPreTrainingHeads"): Twin(
        "reimpl.bert:BertForPreTraining.forward", "both heads, called from the twin's BertForPreTraining.forward"
    ),
    ("modeling_bert", "BertCrossAttention"): Twin(None, "left out: cross-attention (BERT as a decoder); see reimpl/bert.py's docstring"),
    ("modeling_bert", "BertLMHeadModel"): Twin(None, "left out: BERT as a decoder (is_decoder); see reimpl/bert.py's docstring"),
    # GPT-2.
    ("modeling_gpt2", "eager_attention_forward"): Twin(
        "reimpl.gpt2:GPT2Attention.forward",
        "the twin writes eager_attention_forward's lines inline, in its attention's forward",
        ("scores = torch.matmul(q, k.transpose", "context = context.transpose"),
    ),
    ("modeling_gpt2", "GPT2Attention._upcast_and_reordered_attn"): Twin(
        "reimpl.gpt2:GPT2Attention.forward", "reorder_and_upcast_attn is a branch of the twin's attention forward",
        ("if self.reorder_and_upcast_attn", "scores = scores.reshape(B, nh, T, S)"),
    ),
    ("modeling_gpt2", "GPT2PreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
    ("pytorch_utils", "Conv1D"): Twin("reimpl.gpt2:Conv1D", "GPT-2's linear layer, weight stored (in, out)"),
    # Masks: the twins build the additive mask in one function each.
    ("masking_utils", "eager_mask"): {
        "bert": Twin("reimpl.bert:additive_mask", "BERT's eager mask: padding keys only (--model gpt2 for the causal one)"),
        "gpt2": Twin("reimpl.gpt2:causal_mask", "GPT-2's eager mask: the causal triangle and padding (--model bert for BERT's)"),
    },
    ("masking_utils", "sdpa_mask"): {
        "bert": Twin("reimpl.bert:additive_mask", "eager_mask is sdpa_mask's booleans turned into 0 / finfo.min, as here",
                     ("keep =", "return torch.where")),
        "gpt2": Twin("reimpl.gpt2:causal_mask", "eager_mask is sdpa_mask's booleans turned into 0 / finfo.min, as here",
                     ("allowed = key_positions", "return torch.where")),
    },
    ("masking_utils", "create_bidirectional_mask"): Twin("reimpl.bert:additive_mask", "what BertModel builds: padding keys hidden"),
    ("masking_utils", "create_causal_mask"): Twin("reimpl.gpt2:causal_mask", "what GPT2Model builds: the future and padding hidden"),
    ("masking_utils", "causal_mask_function"): Twin(
        "reimpl.gpt2:causal_mask", "kv_idx <= q_idx, for all positions at once", ("query_positions =", "allowed = key_positions")
    ),
    ("masking_utils", "bidirectional_mask_function"): Twin("reimpl.bert:additive_mask", "every key allowed, except padding"),
    ("masking_utils", "padding_mask_function"): {
        "bert": Twin("reimpl.bert:additive_mask", "padding keys hidden", ("keep =", "keep =")),
        "gpt2": Twin("reimpl.gpt2:causal_mask", "padding keys hidden", ("if attention_mask is not None", "allowed = allowed &")),
    },
    # The key/value cache.
    ("cache_utils", "DynamicCache"): Twin("reimpl.gpt2:KVCache", "one list of keys and one of values, per layer"),
    ("cache_utils", "DynamicLayer"): Twin("reimpl.gpt2:KVCache", "one layer's keys and values: an entry of the twin's lists"),
    ("cache_utils", "DynamicLayer.update"): Twin("reimpl.gpt2:KVCache.update", "append with torch.cat, return the whole layer"),
    ("cache_utils", "DynamicCache.update"): Twin("reimpl.gpt2:KVCache.update", "append with torch.cat, return the whole layer"),
    ("cache_utils", "Cache.update"): Twin("reimpl.gpt2:KVCache.update", "append with torch.cat, return the whole layer"),
    ("cache_utils", "DynamicLayer.get_seq_length"): Twin("reimpl.gpt2:KVCache.get_seq_length", "tokens seen so far"),
    ("cache_utils", "DynamicCache.get_seq_length"): Twin("reimpl.gpt2:KVCache.get_seq_length", "tokens seen so far"),
    ("cache_utils", "Cache.get_seq_length"): Twin("reimpl.gpt2:KVCache.get_seq_length", "tokens seen so far"),
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
            return (CALL_PATH.index(owner) if owner in CALL_PATH else len(CALL_PATH), n)

        return sorted(methods, key=rank)[:5]
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.6)
    if not close:  # a method of an unknown class, or a prefix: try the last part on its own
        close = difflib.get_close_matches(name.split(".")[-1].lower(), list(lower), n=5, cutoff=0.6)
    return [lower[c] for c in close]


def _looks_like_a_stage(name: str) -> bool:
    """encoder.layer.0.attention.self.probs, pooler.dense: dotted lower-case paths, or paths with a layer number."""
    parts = name.split(".")
    return any(p.isdigit() for p in parts) or ("." in name and parts[0][:1].islower())


def find(name: str, model: str | None = None):
    """Locate NAME in the installed transformers and its twin in reimpl/: a ``Found`` for a class,
    function or method, a ``stages.StageFound`` for a stage name.

    ``model`` (a model_type: "bert", "gpt2", ...) picks the modeling file when several define NAME
    (default bert), the twin of a shared piece that several models use (eager_mask), and the
    architecture of a stage name.
    """
    if model not in (None, *MODEL_FILES):
        raise UserError(f"--model must be one of {', '.join(MODEL_FILES)}, not {model!r}")
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
    where = f" in {module}" if module else " in transformers' modeling files, the pieces they share, or the twins' stages"
    stage_names, note = stages.suggest(name, model) if module is None else ([], "")
    code_names = _suggest(".".join(parts)) if python_name else []
    if module is None and _looks_like_a_stage(name):
        suggestions = stage_names or code_names
    else:
        suggestions, note = code_names or stage_names, "" if code_names else note
    hint = (f"; did you mean: {', '.join(suggestions)}{note}" if suggestions
            else "; try e.g. BertSelfAttention, GPT2Attention.forward, eager_mask, Conv1D, encoder.layer.0.attention.self.probs")
    raise UserError(f"unknown name {name!r}{where}{hint}")


def _find_code(name: str, parts: list[str], modules: list[str], model: str | None) -> Found:
    preferred = MODEL_FILES.get(model or "bert")
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
            listing = f"; its methods: {', '.join(members)}" if members else ""
            raise UserError(f"{'.'.join(parts[:i])} has no attribute {attr!r}{listing}")
    code = code_of(d, f"{KNOWN_MODULES[chosen]}.{asked}")
    if len(parts) > 1 and d.qualname != asked and not note:
        note = f"{asked} is inherited: defined as {d.qualname}"
    twin, twin_note = _twin(chosen, parts, model)
    return Found(name=name, module=chosen, code=code, twin=twin, twin_note=twin_note, note=note, also=also)


def _model_of(module: str) -> str | None:
    return {v: k for k, v in MODEL_FILES.items()}.get(module)


def _twin_entry(module: str, parts: list[str], model: str | None) -> Twin | None:
    for key in (".".join(parts), parts[0]):
        entry = TWINS.get((module, key))
        if entry is not None:
            return entry.get(model or "bert", next(iter(entry.values()))) if isinstance(entry, dict) else entry
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

MAX_WIDTH = 160  # piped output: wide enough for every line of transformers' files we show, and no wider


def display_path(path: Path) -> str:
    """reimpl's files relative to the checkout (reimpl/bert.py); transformers' in full, to open them."""
    package = package_dir("reimpl").resolve()
    try:
        return str(Path("reimpl") / path.resolve().relative_to(package))
    except ValueError:
        return str(path)


def console_for(listings: list[tuple[str, int]]):
    """A rich Console for printing ``listings`` (text, last line number). On a terminal: its width. Piped
    (a file, ``less``, a test), rich would wrap at 80 columns; here the width is the longest listed line
    with its gutter, capped at MAX_WIDTH, so code lines stay whole. COLUMNS, when set, wins."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        # rich's gutter: the marker column, the number, a space (see rich.syntax.Syntax._numbers_column_width)
        widest = max((len(line.expandtabs(4)) + len(str(last)) + 4 for text, last in listings for line in text.splitlines()), default=0)
        console.width = max(80, min(MAX_WIDTH, widest))
    return console


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
        console.print(Text(f"also defined: {other}", style="yellow"), soft_wrap=True)
    if not twin:
        return
    console.print()
    if found.twin is None:
        console.print(Text(found.twin_note, style="italic"), soft_wrap=True)
        return
    marked = ", marked ❱" if found.twin.highlight else ""
    show(console, found.twin, f"twin: {found.twin.qualname} ({found.twin_note}{marked})")


def show(console, code: Code, title: str, highlight: set[int] | None = None) -> None:
    """A title, the file:first-last header, and the lines numbered as in the file (``highlight``: marked ❱)."""
    from rich.syntax import Syntax
    from rich.text import Text

    # soft_wrap: a long path or title stays one line (the terminal wraps it), so it can be copied.
    console.print(Text(title, style="bold"), soft_wrap=True)
    console.print(Text(f"{display_path(code.path)}:{code.first_line}-{code.last_line}", style="dim"), soft_wrap=True)
    if highlight is None and code.highlight:
        highlight = set(range(code.highlight[0], code.highlight[1] + 1))
    console.print(
        Syntax(code.text, "python", line_numbers=True, start_line=code.first_line,
               highlight_lines=highlight, word_wrap=True, background_color="default")
    )


def show_lines(console, path: Path, lines: tuple[int, ...], title: str, gap: int = 3) -> None:
    """A title, the file:first-last header, then ``lines`` (marked ❱) with the lines between them, except
    where more than ``gap`` lines apart: there a ``...`` stands for what is skipped."""
    from rich.syntax import Syntax
    from rich.text import Text

    console.print(Text(title, style="bold"), soft_wrap=True)
    console.print(Text(f"{display_path(path)}:{lines[0]}-{lines[-1]}", style="dim"), soft_wrap=True)
    for i, (first, last) in enumerate(chunks(lines, gap)):
        if i:
            console.print(Text("  ...", style="dim"))
        text = "\n".join(lines_of(path)[first - 1 : last])
        console.print(
            Syntax(text, "python", line_numbers=True, start_line=first,
                   highlight_lines=set(lines), word_wrap=True, background_color="default")
        )


def chunks(lines: tuple[int, ...], gap: int = 3) -> list[tuple[int, int]]:
    """Ascending line numbers as (first, last) runs, a run going on while the next line is at most ``gap`` further."""
    runs: list[list[int]] = []
    for n in lines:
        if runs and n - runs[-1][1] <= gap + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return [(a, b) for a, b in runs]


# ---------------------------------------------------------------------------------------------
# Names from the other major version of transformers (reimpl/versions.py): a 4.x tutorial's
# names under 5.x, and 5.x's names under 4.57, answered with what the installed version has.

_RELEASE = "transformers 4.57"  # the last 4.x; the names below left its PyTorch files before it
RENAMED_NAMES: dict[str, tuple[str, str | None, str]] = {
    # name: (what to show instead, its --model, what changed)
    "transpose_for_scores": ("BertSelfAttention.forward", None,
        "transpose_for_scores was BertSelfAttention's method in 4.x tutorials: split the heads, view to (B, T, nh, hs) and "
        "transpose to (B, nh, T, hs); by 4.57 that is written inline in BertSelfAttention.forward, as in 5.x: shown"),
    "GPT2Attention._attn": ("eager_attention_forward", "gpt2",
        "GPT2Attention._attn (4.x tutorials) computed softmax(Q K^T / sqrt(hs) + mask) V; since 4.48 that is the "
        "module-level eager_attention_forward of modeling_gpt2.py, called through the attention registry: shown"),
    "GPT2Attention._split_heads": ("GPT2Attention.forward", None,
        "GPT2Attention._split_heads (4.x tutorials) viewed c_attn's Q, K, V as heads; GPT2Attention.forward now does it "
        "inline (.view(shape).transpose(1, 2)): shown"),
    "GPT2Attention._merge_heads": ("GPT2Attention.forward", None,
        "GPT2Attention._merge_heads (4.x tutorials) put the heads side by side again; GPT2Attention.forward now reshapes "
        "inline: shown"),
    "BertSdpaSelfAttention": ("BertSelfAttention.forward", None,
        "BertSdpaSelfAttention is transformers 4.x's (4.57 has it): a subclass per backend, picked from "
        "BERT_SELF_ATTENTION_CLASSES. 5.x has one BertSelfAttention that asks ALL_ATTENTION_FUNCTIONS for the function "
        "named by config._attn_implementation (sdpa: sdpa_attention_forward): shown"),
    "BERT_SELF_ATTENTION_CLASSES": ("BertSelfAttention.forward", None,
        "BERT_SELF_ATTENTION_CLASSES is transformers 4.x's (4.57 has it): a dict from backend name to attention class. "
        "5.x picks a function instead, in BertSelfAttention.forward: shown"),
    "AlbertSdpaAttention": ("AlbertAttention.forward", None,
        "AlbertSdpaAttention is transformers 4.x's (4.57 has it); 5.x has one AlbertAttention for every backend: shown"),
    "DistilBertSdpaAttention": ("DistilBertSelfAttention.forward", None,
        "DistilBertSdpaAttention is transformers 4.x's (4.57 has it); 5.x has one DistilBertSelfAttention for every backend: shown"),
    "MultiHeadSelfAttention": ("DistilBertSelfAttention", None,
        "MultiHeadSelfAttention is transformers 4.x's name (4.57 has it) for DistilBERT's attention; 5.x renamed it "
        "DistilBertSelfAttention: shown"),
    "get_extended_attention_mask": ("create_bidirectional_mask", None,
        "get_extended_attention_mask is transformers 4.x's (4.57 has it, on every model): BERT's additive mask, "
        "(1 - mask) * finfo.min. 5.x builds it in masking_utils: shown"),
    # 5.x names that 4.57 does not have
    "DistilBertSelfAttention": ("MultiHeadSelfAttention", None,
        "DistilBertSelfAttention is transformers 5.x's name; 4.57 calls it MultiHeadSelfAttention: shown"),
    "create_bidirectional_mask": ("BertModel.forward", None,
        "create_bidirectional_mask is transformers 5.x's; 4.57 builds BERT's mask in BertModel.forward with "
        "get_extended_attention_mask (the same 0 / finfo.min values): shown"),
    "BertCrossAttention": ("BertLayer.__init__", None,
        "BertCrossAttention is transformers 5.x's; 4.57 builds cross-attention as a second BertAttention, "
        "BertLayer.crossattention: shown"),
}
for _old in ("_attn", "_split_heads", "_merge_heads"):
    RENAMED_NAMES[_old] = RENAMED_NAMES[f"GPT2Attention.{_old}"]
RENAMED_NAMES["BertSelfAttention.transpose_for_scores"] = RENAMED_NAMES["transpose_for_scores"]

_find_in_installed = find


def find(name: str, model: str | None = None):  # noqa: F811 (the finder above, plus the other version's names)
    """``find``, and for a name of the other major version of transformers (a 4.x tutorial's
    ``transpose_for_scores`` under 5.x, 5.x's ``DistilBertSelfAttention`` under 4.57) what the
    installed version has instead, with a note saying what changed (``RENAMED_NAMES``)."""
    try:
        return _find_in_installed(name, model)
    except UserError:
        _four_57_overrides()
        renamed = RENAMED_NAMES.get(name.strip())
        if renamed is None:
            raise
        instead, instead_model, change = renamed
        try:
            found = _find_in_installed(instead, model or instead_model)
        except UserError:
            raise UserError(f"{name!r} is not in transformers {transformers_version()}: {change.removesuffix(': shown')}") from None
        found.note = f"{change}; transformers {transformers_version()} is installed"
        return found


def _four_57_overrides() -> None:
    # (reimpl.versions would import reimpl, and so torch: this command imports neither)
    if transformers_version().startswith("4."):  # 4.57 has it, but on a mixin the finder does not index: as PreTrainedModel's
        RENAMED_NAMES["get_extended_attention_mask"] = ("PreTrainedModel.get_extended_attention_mask", None,
            "get_extended_attention_mask is a method every 4.57 model inherits (ModuleUtilsMixin); 5.x builds "
            "the mask in masking_utils (create_bidirectional_mask): shown")
        RENAMED_NAMES["BERT_SELF_ATTENTION_CLASSES"] = ("BertAttention.__init__", None,
            "BERT_SELF_ATTENTION_CLASSES is a dict, which the finder does not list; BertAttention.__init__ picks "
            "the attention class from it by config._attn_implementation: shown")

