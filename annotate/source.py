"""`annotate source NAME`: transformers' installed source of a class, method or function, beside its twin.

``find(name)`` looks NAME up in the transformers that is installed (never a copy), with
``inspect.getsourcelines`` on the imported object, so the file, the line numbers and the text are
the ones Python runs. It searches BERT's and GPT-2's modeling files and the shared pieces they
call (``KNOWN_MODULES``). NAME may be

    BertSelfAttention                      a class or function
    BertSelfAttention.forward              a method (inherited ones too: DynamicCache.update)
    modeling_gpt2.GPT2Attention            with its module, short or dotted in full
    eager_attention_forward --model gpt2   a name both modeling files define: bert unless told

It also finds the matching code in reimpl/: the class of the same name in reimpl.bert or
reimpl.gpt2 where there is one, else the entry in ``TWINS``, a short table for the transformers
names whose math the twin writes elsewhere (BertSelfOutput is five lines of BertLayer.forward;
eager_attention_forward is the middle of the twin's attention forward). Where the twin keeps that
math inside a longer function, ``render`` highlights the lines that correspond.

transformers is imported here, when the command runs, not when the CLI starts.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import textwrap
from pathlib import Path

from annotate.errors import UserError
from reimpl.registry import ARCHITECTURES

# Where NAME is looked for: short name -> module. Every class and function *defined* in these
# modules is a known name (imports are skipped: Conv1D is pytorch_utils', not modeling_gpt2's).
# The modeling files come from the architecture records (reimpl/registry.py); then the shared pieces.
KNOWN_MODULES = {
    **{arch.hf_module.rsplit(".", 1)[1]: arch.hf_module for arch in ARCHITECTURES.values()},
    "masking_utils": "transformers.masking_utils",
    "cache_utils": "transformers.cache_utils",
    "activations": "transformers.activations",
    "pytorch_utils": "transformers.pytorch_utils",
    "sdpa_attention": "transformers.integrations.sdpa_attention",
    "modeling_utils": "transformers.modeling_utils",
}
# modeling_utils is thousands of lines of loading machinery: only these names of it are listed.
MODELING_UTILS_NAMES = ("AttentionInterface", "ALL_ATTENTION_FUNCTIONS", "PreTrainedModel")
# Module-level values that are not classes or functions: shown as their assignment statement.
# ALL_ATTENTION_FUNCTIONS, an AttentionInterface instance, is shown as that class (its mapping lives there).
VALUES = {("activations", "ACT2CLS"), ("activations", "ACT2FN")}
INSTANCES = {("modeling_utils", "ALL_ATTENTION_FUNCTIONS"): "AttentionInterface"}

MODEL_FILES = {model_type: arch.hf_module.rsplit(".", 1)[1] for model_type, arch in ARCHITECTURES.items()}
# The classes a reader meets first (guides/01-map.md), suggested first for a bare method name.
CALL_PATH = ["BertSelfAttention", "GPT2Attention", "BertLayer", "GPT2Block", "BertModel", "GPT2Model",
             "BertEmbeddings", "GPT2MLP", "GPT2LMHeadModel", "BertAttention", "BertSelfOutput",
             "BertIntermediate", "BertOutput", "BertEncoder", "Conv1D", "DynamicLayer", "DynamicCache"]
TWIN_MODULES = {MODEL_FILES[model_type]: arch.base.__module__ for model_type, arch in ARCHITECTURES.items()}


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
_NO_HEADS = ("reimpl/ has the heads real checkpoints carry (masked LM, pre-training, next sentence, sequence "
             "classification, GPT-2's LM head); not this one")

# transformers names whose twin is not "the same name in reimpl.bert / reimpl.gpt2". Keyed by
# (module, qualname); an entry for a class also serves its methods. A dict keyed by model picks
# the twin by --model, for the shared pieces both models call.
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
    path: Path  # the file Python loaded it from
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
    """What ``find`` returns: transformers' code for the name, and the twin's."""

    name: str  # as asked
    module: str  # KNOWN_MODULES key
    code: Code
    twin: Code | None
    twin_note: str  # why the twin is that code, or why there is none
    note: str = ""  # how the name was resolved (an instance shown as its class, an inherited method)
    also: list[str] = dataclasses.field(default_factory=list)  # other modules that define the name, with how to ask


def transformers_version() -> str:
    import transformers

    return transformers.__version__


# ---------------------------------------------------------------------------------------------
# The index of known names.

_index_cache: dict[str, dict[str, object]] | None = None


def _modules() -> dict[str, object]:
    return {short: importlib.import_module(path) for short, path in KNOWN_MODULES.items()}


def index() -> dict[str, dict[str, object]]:
    """Known top-level names per module: {module short name: {name: object}}."""
    global _index_cache
    if _index_cache is None:
        out: dict[str, dict[str, object]] = {}
        for short, module in _modules().items():
            names = {}
            for name, obj in vars(module).items():
                if short == "modeling_utils" and name not in MODELING_UTILS_NAMES:
                    continue
                defined_here = getattr(obj, "__module__", None) == module.__name__
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and defined_here:
                    names[name] = obj
                elif (short, name) in VALUES or (short, name) in INSTANCES:
                    names[name] = obj
            out[short] = names
        _index_cache = out
    return _index_cache


def known_names() -> list[str]:
    """Every name ``find`` accepts without a module prefix: top-level names and Class.method."""
    names = set()
    for short, entries in index().items():
        for name, obj in entries.items():
            names.add(name)
            if inspect.isclass(obj) and short != "modeling_utils":
                names.update(f"{name}.{attr}" for attr, value in vars(obj).items() if inspect.isfunction(value))
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


def _suggest(name: str) -> str:
    names = known_names()
    methods = [n for n in names if n.lower().endswith("." + name.lower())]
    if methods:  # "forward": a method name without its class; the classes on the main call path first
        def rank(n: str) -> tuple[int, str]:
            owner = n.split(".")[0]
            return (CALL_PATH.index(owner) if owner in CALL_PATH else len(CALL_PATH), n)

        return ", ".join(sorted(methods, key=rank)[:5])
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.6)
    if not close:  # a method of an unknown class, or a prefix: try the last part on its own
        close = difflib.get_close_matches(name.split(".")[-1].lower(), list(lower), n=5, cutoff=0.6)
    return ", ".join(lower[c] for c in close)


def find(name: str, model: str | None = None) -> Found:
    """Locate NAME in the installed transformers, and its twin in reimpl/.

    ``model`` ("bert" or "gpt2") picks the modeling file when both define NAME (default bert),
    and the twin of a shared piece that both models use (eager_mask).
    """
    if model not in (None, *MODEL_FILES):
        raise UserError(f"--model must be one of {', '.join(MODEL_FILES)}, not {model!r}")
    module, parts = _split(name)
    if not parts or not all(p.isidentifier() for p in parts):
        raise UserError(f"{name!r} is not a Python name (e.g. BertSelfAttention, GPT2Attention.forward)")
    idx = index()
    top = parts[0]
    modules = [short for short in idx if top in idx[short] and (module is None or short == module)]
    if not modules:
        where = f" in {module}" if module else " in transformers' BERT and GPT-2 files or the pieces they share"
        suggestions = _suggest(".".join(parts))
        hint = f"; did you mean: {suggestions}" if suggestions else "; try e.g. BertSelfAttention, GPT2Attention.forward, eager_mask, Conv1D"
        raise UserError(f"unknown name {name!r}{where}{hint}")
    preferred = MODEL_FILES[model or "bert"]
    chosen = preferred if preferred in modules else modules[0]
    also = [
        f"{short}.{'.'.join(parts)} (annotate source {'.'.join(parts)} --model {_model_of(short)})"
        if _model_of(short)
        else f"{short}.{'.'.join(parts)} (annotate source {short}.{'.'.join(parts)})"
        for short in modules
        if short != chosen
    ]

    obj = idx[chosen][top]
    note = ""
    if (chosen, top) in INSTANCES:
        cls_name = INSTANCES[(chosen, top)]
        note = f"{top} is an instance of {cls_name}; shown: its class"
        obj = idx[chosen][cls_name] if cls_name in idx[chosen] else type(obj)
    for i, attr in enumerate(parts[1:], start=1):
        owner = obj
        if not hasattr(owner, attr):
            members = sorted(a for a, v in vars(owner).items() if inspect.isfunction(v)) if inspect.isclass(owner) else []
            listing = f"; its methods: {', '.join(members)}" if members else ""
            raise UserError(f"{'.'.join(parts[:i])} has no attribute {attr!r}{listing}")
        obj = getattr(owner, attr)
        if isinstance(obj, property):
            obj = obj.fget
    qualname_asked = ".".join(parts)
    if (chosen, top) in VALUES:
        code = _assignment(importlib.import_module(KNOWN_MODULES[chosen]), top)
    else:
        code = _code_of(obj)
        real = getattr(inspect.unwrap(obj), "__qualname__", qualname_asked)
        if len(parts) > 1 and real != qualname_asked and not note:
            note = f"{qualname_asked} is inherited: defined as {real}"
    code.qualname = f"{KNOWN_MODULES[chosen]}.{qualname_asked}"
    twin, twin_note = _twin(chosen, parts, obj, model)
    return Found(name=name, module=chosen, code=code, twin=twin, twin_note=twin_note, note=note, also=also)


def _model_of(module: str) -> str | None:
    return {v: k for k, v in MODEL_FILES.items()}.get(module)


def _code_of(obj) -> Code:
    """Source of a class, function or method, from the file Python loaded it from."""
    obj = inspect.unwrap(obj)  # decorators (auto_docstring, capture_outputs) wrap; the lines are the original's
    try:
        lines, first = inspect.getsourcelines(obj)
        path = Path(inspect.getsourcefile(obj) or inspect.getfile(obj))
    except (OSError, TypeError) as e:
        raise UserError(f"no Python source for {getattr(obj, '__qualname__', obj)!r}: {e}") from None
    return Code(qualname=getattr(obj, "__qualname__", ""), path=path, first_line=first, text="".join(lines).rstrip("\n"))


def _assignment(module, name: str) -> Code:
    """The module-level statement that assigns ``name``, for values that are not classes or functions."""
    path = Path(inspect.getsourcefile(module))
    source = path.read_text()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            lines = source.splitlines()[node.lineno - 1 : node.end_lineno]
            return Code(qualname=name, path=path, first_line=node.lineno, text="\n".join(lines))
    raise UserError(f"no assignment of {name!r} in {path}")


def _twin_entry(module: str, parts: list[str], model: str | None) -> Twin | None:
    for key in (".".join(parts), parts[0]):
        entry = TWINS.get((module, key))
        if entry is not None:
            return entry[model or "bert"] if isinstance(entry, dict) else entry
    return None


def _twin(module: str, parts: list[str], obj, model: str | None) -> tuple[Code | None, str]:
    entry = _twin_entry(module, parts, model)
    if entry is None:
        twin_module = TWIN_MODULES.get(module)
        if twin_module is None:
            return None, "no twin: reimpl/ has no counterpart of this shared piece"
        entry = Twin(f"{twin_module}:{'.'.join(parts)}", "same name, same math")
        if not _has(entry.target):
            if parts[0].startswith(("BertFor", "GPT2For", "GPT2DoubleHeads")) or "Head" in parts[0]:
                return None, f"no twin: {_NO_HEADS}"
            if _has(f"{twin_module}:{parts[0]}"):
                return None, f"no twin of {'.'.join(parts)}: reimpl's {parts[0]} has no {'.'.join(parts[1:])}"
            return None, f"no twin: reimpl/ has no {parts[0]} (see the docstring of {twin_module.replace('.', '/')}.py for what is left out)"
    if entry.target is None:
        return None, entry.note
    if not _has(entry.target):
        return None, f"no twin yet: {entry.target} is not in this checkout of reimpl/"
    code = _resolve(entry.target)
    if entry.focus is not None:
        code.highlight = _focus(code, *entry.focus)
    return code, entry.note


def _has(target: str) -> bool:
    try:
        _lookup(target)
    except (ImportError, AttributeError):
        return False
    return True


def _lookup(target: str):
    module_name, qualname = target.split(":")
    obj = importlib.import_module(module_name)
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    return obj


def _resolve(target: str) -> Code:
    module_name, qualname = target.split(":")
    obj = _lookup(target)
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
        code = _code_of(obj)
    else:  # a module-level value: ACT2FN
        code = _assignment(importlib.import_module(module_name), qualname)
    code.qualname = f"{module_name}.{qualname}"
    return code


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


def display_path(path: Path) -> str:
    """reimpl's files relative to the checkout (reimpl/bert.py); transformers' in full, to open them."""
    import reimpl

    package = Path(reimpl.__file__).resolve().parent
    try:
        return str(Path("reimpl") / path.resolve().relative_to(package))
    except ValueError:
        return str(path)


def render(found: Found, console, twin: bool = True) -> None:
    """Print transformers' code with its file and real line numbers, then the twin's (unless ``twin`` is False)."""
    from rich.syntax import Syntax
    from rich.text import Text

    def show(code: Code, title: str) -> None:
        # soft_wrap: a long path or title stays one line (the terminal wraps it), so it can be copied.
        console.print(Text(title, style="bold"), soft_wrap=True)
        console.print(Text(f"{display_path(code.path)}:{code.first_line}-{code.last_line}", style="dim"), soft_wrap=True)
        highlight = set(range(code.highlight[0], code.highlight[1] + 1)) if code.highlight else None
        console.print(
            Syntax(code.text, "python", line_numbers=True, start_line=code.first_line,
                   highlight_lines=highlight, word_wrap=True, background_color="default")
        )

    show(found.code, f"transformers {transformers_version()}: {found.code.qualname}")
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
    show(found.twin, f"twin: {found.twin.qualname} ({found.twin_note}{marked})")
