"""From a stage name to the code that computes it: the formula, transformers' lines, the twin's lines.

A stage is a name ``reimpl.recording()`` records and ``annotate trace`` prints:
``bert.encoder.layer.3.attention.self.probs`` is the step ``attention.self.probs`` of layer 3 of a
BERT with a head (the base model under ``bert.``). ``explain(model_type, stage)`` answers, for
every stage of every architecture in reimpl/, without importing transformers, torch or reimpl:

- the twin's side is found, not written down: the twin files are parsed (annotate/code.py's
  reader), the module tree is followed from each class of the architecture's record through its
  ``__init__`` (``self.attention = Namespace(self=self.attention_class(config), ...)``;
  ``nn.ModuleList(...)`` numbers its items), and every ``record(module, "step", value)`` call in the
  classes' methods gives a stage pattern (``encoder.layer.*.attention.self.probs``). The lines
  shown are the call and the statements just before it that compute ``value``.
- transformers' side is the architecture's ``STEPS`` (annotate/models/<model_type>.py): for each
  step, the formula in the paper's notation and the function of the modeling file that computes
  it, with the text of the line(s) that do (the anchors). The line numbers are looked up in the
  installed file each time, never written down. A step the file lacks, or an anchor the installed
  file does not have, is said so, never guessed (tests/test_stages.py keeps every stage of every
  twin class known, under 4.57 and 5.x).

Steps: a stage name without the base model's prefix (``bert.``, ``transformer.``) and, inside a
layer, without the layer path and number: ``attention.self.probs``, ``mlp.act``; a layer's own
output is the layer path with ``N`` (``encoder.layer.N``); outside the layers, the path itself
(``embeddings.LayerNorm``, ``pooler.activation``, ``cls.predictions.decoder``, ``lm_head``).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
from pathlib import Path

from annotate import code, i18n, listing, models
from annotate.code import Def, order
from annotate.errors import UserError
from annotate.i18n import t

# ---------------------------------------------------------------------------------------------
# What explain returns.


@dataclasses.dataclass(frozen=True)
class Snippet:
    """Some lines of one function: those that compute a stage."""

    module: str  # "transformers.models.bert.modeling_bert", "reimpl.bert"
    function: str  # "eager_attention_forward", "BertLayer.forward"
    path: Path
    lines: tuple[int, ...]  # 1-based line numbers in the file, ascending
    text: str  # those lines, one per line
    folded: tuple[int, ...] = ()  # lines within the snippet's span that run only under the other transformers version
    folded_for: str = ""  # that version: "transformers 4.57" or "transformers 5.x"

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.function}"

    @property
    def first_line(self) -> int:
        return self.lines[0]

    @property
    def last_line(self) -> int:
        return self.lines[-1]

    @property
    def location(self) -> str:
        """``transformers/models/bert/modeling_bert.py:129,131 eager_attention_forward``: one line, for a trace."""
        top = code.package_dir(self.module.split(".")[0]).parent
        try:
            where = self.path.resolve().relative_to(top.resolve()).as_posix()
        except ValueError:
            where = str(self.path)
        runs = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in listing.chunks(self.lines, gap=0))
        return f"{where}:{runs} {self.function}"


@dataclasses.dataclass(frozen=True)
class Explanation:
    """What computes a stage, on both sides. ``hf`` is empty where transformers' side is unknown
    (``hf_note`` says why); ``twin`` is None where the twin's record call was not found."""

    model_type: str
    stage: str  # as asked: "bert.encoder.layer.0.attention.self.probs"
    step: str  # "attention.self.probs"
    formula: str | None
    hf: tuple[Snippet, ...]
    twin: Snippet | None
    hf_note: str = ""  # why transformers' side is unknown; for a family, whose entry it reuses
    twin_note: str = ""  # the twin class that runs an inherited method; or why the twin's side is missing
    twin_runs: tuple[str, str] = ()  # (the twin class, the method it runs) where that is another class's

    @property
    def note(self) -> str:
        return "; ".join(filter(None, [self.hf_note, self.twin_note]))

    @property
    def twin_note_shown(self) -> str:
        """``twin_note`` in the view's language (annotate.i18n)."""
        return _twin_note(self.model_type, self.stage, self.twin_runs) if self.twin_note else ""

    @property
    def note_shown(self) -> str:
        """``note`` in the view's language (transformers' side's note is the model file's, in English)."""
        return t("{a}; {b}", a=self.hf_note, b=self.twin_note_shown) if self.hf_note and self.twin_note else self.hf_note or self.twin_note_shown

    @property
    def hf_location(self) -> str:
        """Where transformers computes it, in one line: file:lines function (several: "; "), or "unknown (why)"."""
        if not self.hf:
            return f"unknown ({self.hf_note})" if self.hf_note else "unknown"
        return "; ".join(s.location for s in self.hf)

    @property
    def twin_location(self) -> str:
        return self.twin.location if self.twin else f"not found ({self.twin_note})"

    @property
    def hf_path(self) -> Path | None:
        return self.hf[0].path if self.hf else None

    @property
    def hf_lines(self) -> tuple[int, ...]:
        return tuple(line for s in self.hf for line in s.lines)

    @property
    def hf_text(self) -> str:
        return "\n".join(s.text for s in self.hf)

    @property
    def twin_path(self) -> Path | None:
        return self.twin.path if self.twin else None

    @property
    def twin_lines(self) -> tuple[int, ...]:
        return self.twin.lines if self.twin else ()

    @property
    def twin_text(self) -> str:
        return self.twin.text if self.twin else ""


@dataclasses.dataclass(frozen=True)
class StageFound:
    """What ``annotate source`` finds for a stage name."""

    name: str
    explanation: Explanation
    also: tuple[str, ...] = ()  # other model types whose twins record the same name


# ---------------------------------------------------------------------------------------------
# The twin's side: the module tree, and the record calls in it.


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One ``record(module, step, value)`` call, and the stage names it makes."""

    pattern: tuple[str, ...]  # the stage name's parts; "*" where a layer number goes
    root: str  # the class of the architecture record the walk started from: "BertForMaskedLM"
    cls: str  # the class at that place in the tree: "RobertaLayer"
    function: Def  # the method that makes the call, where it is written: BertLayer.forward in reimpl/bert.py
    statement: ast.stmt  # the ``record(...)`` statement

    def matches(self, name: str) -> bool:
        parts = name.split(".")
        return len(parts) == len(self.pattern) and all(p == q or (q == "*" and p.isdigit()) for p, q in zip(parts, self.pattern))


@functools.cache
def _calls_super(function: ast.AST, name: str) -> bool:
    for node in ast.walk(function):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name
                and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == "super"):
            return True
    return False


@functools.cache
def _runs(cls: Def, name: str) -> tuple[Def, ...]:
    """The definitions of method ``name`` that a call on ``cls`` runs: the first along the MRO, and
    the next ones as long as each calls ``super().name(...)``."""
    out = []
    for klass in code.mro(cls):
        node = code.own_members(klass.node).get(name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(Def(klass.module, klass.path, node, f"{klass.qualname}.{name}"))
            if not _calls_super(node, name):
                break
    return tuple(out)


@functools.cache
def _methods(cls: Def) -> tuple[Def, ...]:
    names = []
    for klass in code.mro(cls):
        for name, node in code.own_members(klass.node).items():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and name not in names:
                names.append(name)
    return tuple(d for name in names for d in _runs(cls, name))


def _assignment_of(function: ast.AST, name: str) -> ast.expr | None:
    """The value last assigned to local ``name`` (``t = self.transform``; ``a, b = self.x, self.y``)."""
    value = None
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    value = node.value
                elif (isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                      and len(target.elts) == len(node.value.elts)):
                    for element, v in zip(target.elts, node.value.elts):
                        if isinstance(element, ast.Name) and element.id == name:
                            value = v
    return value


def _module_path(function: ast.AST, expr: ast.expr, depth: int = 0) -> tuple[str, ...] | None:
    """The module an expression names, as a path from ``self``: ``self.attention.output`` -> (attention, output)."""
    if depth > 5:
        return None
    if isinstance(expr, ast.Name):
        if expr.id == "self":
            return ()
        value = _assignment_of(function, expr.id)
        return None if value is None else _module_path(function, value, depth + 1)
    if isinstance(expr, ast.Attribute):
        base = _module_path(function, expr.value, depth + 1)
        return None if base is None else (*base, expr.attr)
    if isinstance(expr, ast.Subscript):
        base = _module_path(function, expr.value, depth + 1)
        return None if base is None else (*base, "*")
    return None


def _step_parts(expr: ast.expr) -> tuple[str, ...] | None:
    """A record call's step: "probs" -> (probs,); f"layer.{i}" -> (layer, *)."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return tuple(expr.value.split("."))
    if isinstance(expr, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in expr.values)
        return tuple(text.split("."))
    return None


def _record_call(node: ast.AST) -> ast.Call | None:
    if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "record" and len(node.value.args) == 3):
        return node.value
    return None


def _class_attribute(cls: Def, name: str) -> Def | None:
    """A class attribute naming a class (``layer_class = BertLayer``), looked up on ``cls`` as Python does."""
    found = code.member(cls, name)
    if found is None or not isinstance(found.node, ast.Assign) or not isinstance(found.node.value, ast.Name):
        return None
    return code.resolve(found.module, found.node.value.id)


def _classes_in(expr: ast.expr, cls: Def, function: Def) -> list[tuple[tuple[str, ...], Def]]:
    """The twin classes an ``__init__`` expression builds, with their path below the assigned attribute."""
    if isinstance(expr, ast.IfExp):
        return _classes_in(expr.body, cls, function) + _classes_in(expr.orelse, cls, function)
    if not isinstance(expr, ast.Call):
        return []
    func = expr.func
    if isinstance(func, ast.Attribute) and func.attr in ("ModuleList", "Sequential") and expr.args:
        items = expr.args[0]
        elts = [items.elt] if isinstance(items, (ast.GeneratorExp, ast.ListComp)) else getattr(items, "elts", [])
        return [(("*", *path), d) for elt in elts for path, d in _classes_in(elt, cls, function)]
    target = None
    if isinstance(func, ast.Name):
        if func.id == "Namespace":  # reimpl.bert.Namespace(name=module, ...): submodules by keyword
            return [((kw.arg, *path), d) for kw in expr.keywords if kw.arg for path, d in _classes_in(kw.value, cls, function)]
        target = code.resolve(function.module, func.id)
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
        target = _class_attribute(cls, func.attr)  # self.layer_class(config): the class the *concrete* class names
    if target is not None and isinstance(target.node, ast.ClassDef) and target.module.startswith("reimpl."):
        return [((), target)]
    return []


@functools.cache
def _children(cls: Def) -> tuple[tuple[tuple[str, ...], Def], ...]:
    """The twin submodules ``cls.__init__`` builds (and the ``__init__``s it calls with super()), by path."""
    children: dict[tuple[str, ...], Def] = {}
    for init in reversed(_runs(cls, "__init__")):  # the base's first: a subclass's assignment replaces it
        for node in ast.walk(init.node):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            path = _module_path(init.node, node.targets[0]) if isinstance(node.targets[0], ast.Attribute) else None
            if not path:
                continue
            for key in [k for k in children if k[: len(path)] == path]:
                del children[key]
            for sub, d in _classes_in(node.value, cls, init):
                children[(*path, *sub)] = d
    return tuple(children.items())


@functools.cache
def _mounts(cls: Def) -> dict[tuple[str, ...], tuple[str, ...]]:
    """``with applied_as(group, self, f"layer.{i}")`` (reimpl.states): the group's steps are recorded
    under ``layer.N`` instead of its own path."""
    out = {}
    for function in _methods(cls):
        for node in ast.walk(function.node):
            if not isinstance(node, ast.With):
                continue
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "applied_as"
                        and len(call.args) == 3):
                    module = _module_path(function.node, call.args[0])
                    owner = _module_path(function.node, call.args[1])
                    step = _step_parts(call.args[2])
                    if module is not None and owner is not None and step is not None:
                        out[module] = (*owner, *step)
    return out


@functools.cache
def _records_of(cls: Def) -> tuple[tuple[tuple[str, ...], Def, ast.stmt], ...]:
    """The record calls a class's methods make: (the stage's path below the class, method, statement)."""
    out = []
    for function in _methods(cls):
        for node in ast.walk(function.node):
            call = _record_call(node)
            if call is None:
                continue
            where, what = _module_path(function.node, call.args[0]), _step_parts(call.args[1])
            if where is not None and what is not None:
                out.append(((*where, *what), function, node))
    return tuple(out)


def _walk(cls: Def, path: tuple[str, ...], root: str, out: list[Recorded], depth: int = 0) -> None:
    if depth > 12:
        return
    for below, function, node in _records_of(cls):
        out.append(Recorded((*path, *below), root, cls.qualname, function, node))
    mounts = _mounts(cls)
    for sub, child in _children(cls):
        _walk(child, (*path, *mounts.get(sub, sub)), root, out, depth + 1)


@functools.cache
def recorded(model_type: str) -> tuple[Recorded, ...]:
    """Every record call an architecture's twins make, with its stage pattern, from each class of its record."""
    record = code.records()[model_type]
    out: list[Recorded] = []
    for root in dict.fromkeys((record.base, *record.heads, record.default)):
        cls = code.resolve(record.twin_module, root)
        if cls is not None and isinstance(cls.node, ast.ClassDef):
            _walk(cls, (), root, out)
    return tuple(out)


def _params(function: ast.AST) -> set[str]:
    a = function.args
    return {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x is not None}


def _reads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _writes(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _recorded_name(node: ast.AST) -> str | None:
    call = _record_call(node)
    return call.args[2].id if call is not None and isinstance(call.args[2], ast.Name) else None


def _bookkeeping(node: ast.stmt) -> bool:
    """Shapes and aliases of submodules (``B, T, C = x.shape``, ``nh, hs = self.n_head, ...``): not the math."""
    if not isinstance(node, ast.Assign):
        return False
    value = node.value
    if any(isinstance(n, ast.Attribute) and n.attr in ("shape", "size") for n in ast.walk(value)) and not any(
        isinstance(n, ast.Call) and not (isinstance(n.func, ast.Attribute) and n.func.attr == "size") for n in ast.walk(value)
    ):
        return True
    items = value.elts if isinstance(value, ast.Tuple) else [value]
    return all(isinstance(i, ast.Attribute) and _on_self(i) for i in items)


def _on_self(node: ast.expr) -> bool:
    """``self.attention.output``: an attribute path from self (a submodule, a setting), not a computed value."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "self"


def _block_of(function: ast.AST, statement: ast.stmt) -> tuple[list[ast.stmt], ast.AST]:
    for node in ast.walk(function):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and statement in block:
                return block, node
    raise LookupError("statement not in function")


MAX_STATEMENTS = 6


def computing(function: ast.AST, statement: ast.stmt) -> list[ast.stmt]:
    """The statements before a ``record(module, step, value)`` that compute ``value``, in order.

    Walking back through the call's block: the assignments of ``value`` (and, two steps deep, of
    what they read) count, shapes do not, and a name recorded earlier stops there (its
    computation is another stage). If the walk reaches the top of a loop or an ``if`` with names
    still unexplained, that header counts too (``for i, layer in enumerate(...)``).
    """
    name = _recorded_name(statement)
    block, parent = _block_of(function, statement)
    params = _params(function)
    local = _writes(function)  # names assigned somewhere in the function (torch, self: never)
    want = {name: 0} if name else {}
    chosen: list[ast.stmt] = []
    for node in reversed(block[: block.index(statement)]):
        if not want or len(chosen) >= MAX_STATEMENTS:
            break
        recorded_here = _recorded_name(node)
        if recorded_here is not None:
            want.pop(recorded_here, None)
            continue
        hit = _writes(node) & want.keys()
        if not hit:
            continue
        if not isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and any(
            _recorded_name(n) in hit for n in ast.walk(node)
        ):  # a loop that records the value itself: what comes before is another stage
            for h in hit:
                want.pop(h)
            continue
        if _bookkeeping(node):
            continue
        chosen.append(node)
        depth = min(want[h] for h in hit)
        reads = _reads(node)
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for h in hit - reads:  # assigned afresh here: nothing earlier made it
                want.pop(h)
        if depth < 2:
            for r in (reads & local) - (_writes(node) - hit) - params:
                want.setdefault(r, depth + 1)
    else:
        if want and parent is not function and isinstance(parent, (ast.For, ast.If, ast.While, ast.With)):
            chosen.append(parent)  # only its header line is shown
    return chosen[::-1]


def _snippet(module: str, function: str, path: Path, lines: set[int]) -> Snippet:
    text = code.lines_of(path)
    numbers = tuple(sorted(n for n in lines if not text[n - 1].lstrip().startswith("#")))  # code, not comments
    return Snippet(module, function, path, numbers, "\n".join(text[n - 1] for n in numbers))


def _statement_lines(node: ast.stmt, inside: ast.stmt) -> set[int]:
    """A statement's lines; for a compound statement the record call sits in, its header only."""
    if node is not inside and any(n is inside for n in ast.walk(node)):
        return {node.lineno}
    return set(range(node.lineno, node.end_lineno + 1))


def _on_v4(test: ast.expr) -> bool | None:
    """Whether an ``if`` test holds under transformers 4.57 (True) or 5.x (False), where it is the
    twins' version switch (``versions.V4``, ``not versions.V4``, or either joined by ``and`` to
    other conditions, which then can only make the branch rarer); None for any other test."""
    if isinstance(test, ast.Attribute) and test.attr == "V4" and isinstance(test.value, ast.Name) and test.value.id == "versions":
        return True
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _on_v4(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        found = [v for v in map(_on_v4, test.values) if v is not None]
        return found[0] if len(found) == 1 else None
    return None


def _v4() -> bool:
    """Whether the twins follow transformers 4.57 now: reimpl.versions.V4 where reimpl is loaded
    (``versions.following`` may have switched it), else the installed version's major (``annotate
    source`` imports neither torch nor reimpl)."""
    import sys

    versions = sys.modules.get("reimpl.versions")
    if versions is not None:
        return versions.V4
    return int(code.transformers_version().split(".")[0]) < 5


def other_version_lines(function: ast.AST) -> set[int]:
    """The lines of ``function`` that never run under the installed transformers: the branch of
    each version switch (``if versions.V4:``, ``elif versions.V4:``) that belongs to the other
    version, with its header and a plain ``else:`` line left without its ``if``; or the ``else``
    of a switch whose own branch always runs here."""
    v4_here = _v4()
    elifs = {
        id(node.orelse[0])
        for node in ast.walk(function)
        if isinstance(node, ast.If) and len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)
        and node.orelse[0].col_offset == node.col_offset  # "elif", not "else:" holding an "if"
    }
    out: set[int] = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.If) or (v4 := _on_v4(node.test)) is None:
            continue
        body_end = node.body[-1].end_lineno
        if v4 != v4_here:  # the other version's branch: its header and body
            out |= set(range(node.lineno, body_end + 1))
            if node.orelse and id(node) not in elifs and not (isinstance(node.orelse[0], ast.If) and id(node.orelse[0]) in elifs):
                out |= set(range(body_end + 1, node.orelse[0].lineno))  # "else:", whose body runs here
        elif not isinstance(node.test, ast.BoolOp) and node.orelse:  # this version's branch always runs: the else never does
            out |= set(range(body_end + 1, node.orelse[-1].end_lineno + 1))
    return out


def twin_snippet(found: Recorded) -> Snippet:
    """The record call and the statements that compute its value, less the lines that run only
    under the other transformers version (kept as ``folded``, for the views to fold and label)."""
    function = found.function
    lines = set(range(found.statement.lineno, found.statement.end_lineno + 1))
    for node in computing(function.node, found.statement):
        lines |= _statement_lines(node, found.statement)
    other = other_version_lines(function.node)
    snippet = _snippet(function.module, function.qualname, function.path, lines - other)
    span = range(min(lines), max(lines) + 1)
    folded = tuple(sorted(n for n in other if n in span))
    if not folded:
        return snippet
    return dataclasses.replace(snippet, folded=folded, folded_for="transformers 5.x" if _v4() else "transformers 4.57")


def _returned(record: code.Record) -> Snippet | None:
    """``last_hidden_state``: what the base model's forward returns."""
    cls = code.resolve(record.twin_module, record.base)
    forward = _runs(cls, "forward") if cls is not None else []
    if not forward:
        return None
    returns = [n for n in ast.walk(forward[0].node) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        return None
    last = max(returns, key=lambda n: n.lineno)
    return _snippet(forward[0].module, forward[0].qualname, forward[0].path, set(range(last.lineno, last.end_lineno + 1)))


# ---------------------------------------------------------------------------------------------
# transformers' side: the table's anchors, looked up in the installed files.


class _Missing(Exception):
    pass


def _base_prefix(record: code.Record) -> str:
    cls = code.resolve(record.twin_module, record.base)
    found = code.member(cls, "base_model_prefix") if cls is not None else None
    if found is not None and isinstance(found.node, ast.Assign) and isinstance(found.node.value, ast.Constant):
        return found.node.value.value
    return ""


def step_of(model_type: str, stage: str) -> str:
    """``bert.encoder.layer.3.attention.self.probs`` -> ``attention.self.probs``; ``transformer.h.3`` -> ``h.N``;
    an encoder-decoder's ``model.decoder.layers.3.encoder_attn.probs`` -> ``decoder.layers.N.encoder_attn.probs``;
    a list inside a layer is numbered N too (ALBERT's ``encoder.layer.3.albert_layers.1.ffn`` -> ``albert_layers.N.ffn``)."""
    record = code.records()[model_type]
    prefix = _base_prefix(record)
    if prefix and stage.startswith(prefix + "."):
        stage = stage[len(prefix) + 1 :]
    if record.encoder:  # two stacks: the step keeps its stack's path, every number N ("decoder.layers.N.encoder_attn.probs")
        return ".".join("N" if p.isdigit() else p for p in stage.split("."))
    if record.layers and stage.startswith(record.layers + "."):
        number, _, inner = stage[len(record.layers) + 1 :].partition(".")
        if number.isdigit():
            return ".".join("N" if p.isdigit() else p for p in inner.split(".")) if inner else f"{record.layers}.N"
    return stage


def _statement_at(function: ast.AST, line: int) -> ast.stmt:
    """The innermost statement of ``function`` that holds ``line``."""
    best = None
    for node in ast.walk(function):
        if isinstance(node, ast.stmt) and node is not function and node.lineno <= line <= node.end_lineno:
            if best is None or node.end_lineno - node.lineno <= best.end_lineno - best.lineno:
                best = node
    return best


def locate(module: str, function: str, anchors: tuple[str, ...]) -> Snippet:
    """The lines of ``module``'s ``function`` that contain the anchors, each widened to its whole statement."""
    d = code.lookup(module, function)
    if d is None or not isinstance(d.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise _Missing(f"{module.rsplit('.', 1)[1]}.py has no {function}")
    first, last = code.span(d)
    text = code.lines_of(d.path)
    lines: set[int] = set()
    at_line = first
    for anchor in anchors:
        hit = next((n for n in range(at_line, last + 1) if anchor in text[n - 1]), None)
        if hit is None:
            raise _Missing(f"{function} has no line with {anchor!r}" + (" after the previous one" if lines else ""))
        statement = _statement_at(d.node, hit)
        lines |= set(range(statement.lineno, statement.end_lineno + 1)) if statement is not None else {hit}
        at_line = hit + 1
    return _snippet(module, function, d.path, lines)


@functools.cache
def hf_side(model_type: str, step_name: str) -> tuple[str | None, tuple[Snippet, ...], str]:
    """(formula, transformers' snippets, note) for a step of an architecture; empty snippets: unknown."""
    record = code.records()[model_type]
    try:
        steps = models.get(model_type).steps(code.transformers_version())
    except LookupError as e:
        return None, (), str(e)
    entry = steps.get(step_name)
    if entry is None:
        return None, (), f"annotate/models/{models.module_name(model_type).rsplit('.', 1)[1]}.py has no step {step_name!r}"
    try:
        return entry.formula, tuple(locate(record.hf_module, f, a) for f, a in entry.hf), ""
    except _Missing as e:
        return entry.formula, (), f"not found in the installed {record.hf_short}.py: {e}"


# ---------------------------------------------------------------------------------------------
# The answers.


def matching(model_type: str, stage: str) -> list[Recorded]:
    return [r for r in recorded(model_type) if r.matches(stage)]


@functools.lru_cache(maxsize=4096)
def explain(model_type: str, stage: str, model_class: str | None = None) -> Explanation:
    """The formula, transformers' lines and the twin's lines of ``stage`` (a name the twins of
    ``model_type`` record, with or without the base model's prefix; ``last_hidden_state`` too).
    ``model_class``: the twin class that ran (BertForPreTraining), to pick its record call where
    several heads record the same name. Never raises for a model_type reimpl/ has: what is not
    found is None / empty, with a note."""
    record = code.records().get(model_type)
    if record is None:
        raise UserError(t("no twin for model_type {model_type!r}; reimpl/ has {types}", model_type=model_type, types=", ".join(order())))
    step_name = step_of(model_type, stage)
    found = matching(model_type, stage)
    if stage == "last_hidden_state":
        twin = _returned(record)
    elif found:
        preferred = [r for r in found if r.root == model_class] or found
        twin = twin_snippet(preferred[0])
    else:
        twin = None
    formula, hf, hf_note = hf_side(model_type, step_name)
    runs: tuple[str, str] = ()
    if twin is not None and found and preferred[0].cls != preferred[0].function.qualname.rsplit(".", 1)[0]:
        runs = (preferred[0].cls, preferred[0].function.qualname)
    twin_note = ""
    if twin is None or runs:
        with i18n.using("en"):  # the data's words; the views say it in their language (Explanation.twin_note_shown)
            twin_note = _twin_note(model_type, stage, runs)
    return Explanation(model_type, stage, step_name, formula, hf, twin, hf_note, twin_note, runs)


def _twin_note(model_type: str, stage: str, runs: tuple[str, str]) -> str:
    """Why the twin's side is another class's method (``runs``: (class, method)), or missing."""
    if runs:
        return t("the twin's {cls} runs {function}", cls=runs[0], function=runs[1])
    return t("no record call in the {model_type} twin makes {stage!r}", model_type=model_type, stage=stage)


def architectures_of(stage: str) -> list[str]:
    """The model types whose twins record ``stage``."""
    return [model_type for model_type in order() if stage == "last_hidden_state" or matching(model_type, stage)]


def find_stage(name: str, model: str | None = None) -> StageFound | None:
    """A stage name for ``annotate source``: None if no twin records it; an error if ``model``'s
    twin doesn't but another's does (saying whose)."""
    types = architectures_of(name)
    if model is not None:
        if model in types:
            return StageFound(name, explain(model, name), tuple(other for other in types if other != model))
        if types:
            raise UserError(t("{name!r} is not a stage of {model}; it is a stage name of {types} (annotate source {name} --model {first})",
                              name=name, model=model, types=", ".join(types), first=types[0]))
        return None
    if not types:
        return None
    return StageFound(name, explain(types[0], name), tuple(types[1:]))


def suggest(name: str, model: str | None = None) -> tuple[list[str], str]:
    """Stage names close to ``name`` (keeping the layer numbers it gives), and, when ``model``'s twin
    records none of them, a note saying whose names they are."""
    numbers = [p for p in name.split(".") if p.isdigit()]
    asked = ".".join("*" if p.isdigit() else p for p in name.split("."))
    pool: dict[str, list[str]] = {}  # pattern -> the model types that record it
    for model_type in order():
        for r in recorded(model_type):
            types = pool.setdefault(".".join(r.pattern), [])
            if model_type not in types:
                types.append(model_type)
    if model is not None and any(model in types for types in pool.values()):  # its own names first
        pool = dict(sorted(pool.items(), key=lambda item: model not in item[1]))
    ends = [p for p in pool if p.endswith("." + asked)]  # a step without its layer: "attention.self.probs"
    firsts = {pool[p][0]: p for p in reversed(ends)}  # each model type's first such name, before the others
    ends = sorted(ends, key=lambda p: p not in firsts.values())
    close = ends[: max(5, len(firsts))] or difflib.get_close_matches(asked, list(pool), n=5, cutoff=0.75)  # every model type's own name
    names = []
    for pattern in close:
        given = iter(numbers)
        names.append(".".join(next(given, "0") if p == "*" else p for p in pattern.split(".")))
    owners = list(dict.fromkeys(owner for pattern in close for owner in pool[pattern]))
    note = ""
    if close and model is not None and not any(model in pool[p] for p in close):
        note = t("; those are stage names of {owners}, not of {model} (--model {first})", owners=", ".join(owners), model=model, first=owners[0])
    return names, note


# ---------------------------------------------------------------------------------------------
# Rendering, for `annotate source STAGE`.


def render(found: StageFound, console=None, twin: bool = True) -> None:
    """The stage, its formula, transformers' lines and the twin's, each numbered as in its file."""
    from rich.text import Text

    e = found.explanation
    snippets = [*e.hf, *([e.twin] if twin and e.twin else [])]
    listings = [
        ("\n".join(code.lines_of(s.path)[a - 1 : b]), b) for s in snippets for a, b in listing.chunks(s.lines)
    ]
    console = console or listing.console_for(listings)
    step = t(", step {step}", step=e.step) if e.step != e.stage else ""
    console.print(Text(t("stage {stage} ({model_type}{step})", stage=e.stage, model_type=e.model_type, step=step), style="bold"), soft_wrap=True)
    console.print(Text(f"  {e.formula}" if e.formula else t("  (no formula: transformers' side unknown)"), style="cyan"), soft_wrap=True)
    if found.also:
        console.print(Text(t("also a stage of: {types} (--model {first})", types=", ".join(found.also), first=found.also[0]), style="yellow"), soft_wrap=True)
    console.print()
    version = code.transformers_version()
    for s in e.hf:
        listing.show_lines(console, s.path, s.lines, f"transformers {version}: {s.qualname}")
    if not e.hf:
        console.print(Text(t("transformers {version}: unknown", version=version), style="bold"), soft_wrap=True)
    if e.hf_note:
        console.print(Text(f"({e.hf_note})", style="dim"), soft_wrap=True)
    if not twin:
        return
    console.print()
    if e.twin is None:
        console.print(Text(t("twin: {where}", where=t("not found ({note})", note=e.twin_note_shown)), style="italic"), soft_wrap=True)
        return
    listing.show_lines(console, e.twin.path, e.twin.lines, t("twin: {name} (marked ❱: the record call and what computes its value)", name=e.twin.qualname),
                       folded=e.twin.folded, folded_for=e.twin.folded_for)
    if e.twin_note:
        console.print(Text(f"({e.twin_note_shown})", style="dim"), soft_wrap=True)
