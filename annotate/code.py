"""The installed source of transformers and of the twins, read with ``ast``, never imported.

Importing transformers costs seconds, and importing reimpl imports torch: ``annotate source`` and
``--explain`` need neither. This module finds an installed package's files with
``importlib.util.find_spec`` (which locates a package without running it), parses them once per
process, and follows names as Python would: imports, base classes (the MRO), inherited members.
Line numbers are those Python runs, as ``inspect.getsourcelines`` gives them (a decorated
definition starts at its first decorator).

It also reads the architecture records of the twin files (``ARCHITECTURE = Architecture(...)``, the
last statement of each reimpl/<model>.py), so a new twin file is found without a list to update.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import re
from pathlib import Path

from annotate.errors import UserError
from annotate.i18n import t

# ---------------------------------------------------------------------------------------------
# The files: found, read and parsed once per process, never imported.


@functools.cache
def package_dir(package: str) -> Path:
    """The folder of an installed package, without importing it (find_spec runs none of its code)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(t("{package} is not installed in this Python ({package} is needed to show its source)", package=package))
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
    encoder: str = ""  # an encoder-decoder's encoder layers ("encoder.layers"); "" for one stack

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
            encoder=fields.get("encoder") or "",
        )
        out[record.model_type] = record
    return out


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
        return [target.id for target in node.targets if isinstance(target, ast.Name)]
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


@functools.cache
def order() -> list[str]:
    """Model types, the parents of families first (a stage name they share with a family member
    means theirs): those whose base model subclasses no other architecture's, the largest family first."""
    found = records()

    def key(d: Def | None) -> tuple | None:
        return (d.path, d.node.lineno) if d is not None else None

    bases = {model_type: resolve(r.twin_module, r.base) for model_type, r in found.items()}
    ancestors = {model_type: {key(d) for d in mro(cls)[1:]} if cls is not None else set() for model_type, cls in bases.items()}
    parents = {model_type: sum(key(bases[model_type]) in ancestors[u] for u in found) for model_type in found}
    return sorted(found, key=lambda model_type: (any(key(bases[u]) in ancestors[model_type] for u in found if u != model_type),
                                                -parents[model_type], model_type))
