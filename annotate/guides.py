"""The guides as data: their code blocks, and each guide as a Jupyter notebook.

A guide (``guides/NN-name.md``, ``guides/zh-CN/NN-name.md``) is Markdown whose fenced blocks the
tests run (tests/test_guides.py; the rules are in guides/README.md):

- ```python blocks run in order in one namespace; an ```output block right after one is what it
  prints;
- ```console blocks hold ``$ annotate ...`` commands followed by what they print;
- a comment ``<!-- test: KEY VALUE -->`` just before a block sets an option for it:
  ``transformers 4`` (runs only under that major version), ``exit N`` (the command's exit code),
  ``hub MODEL`` (needs that model from the Hugging Face hub in the local cache).

``notebook(path)`` turns a guide into a notebook (nbformat 4, no dependency): prose into Markdown
cells, ```python blocks into code cells, ``$ annotate ...`` lines into ``!annotate ...`` cells;
a block written for the other major version of transformers, or for a model from the hub that is
not in the cache, stays visible as Markdown so that "Run all" runs what the guide's test runs.

``folder()``: where the guides are. An installed package (a wheel, ``pip install .``) carries them
as ``annotate/_guides/`` (pyproject.toml maps the repository's guides/ there); a checkout, or an
editable install of one, reads guides/ beside the package. ``index()`` lists them with their
numbers and titles (``annotate guide list``), ``find(3, "zh-CN")`` gives one by number
(``annotate notebook 3 --lang zh-CN``).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
OPTIONS = re.compile(r"<!--\s*test:\s*(.*?)\s*-->")
# A guide's ``> Line numbers: transformers X.Y.Z.``: the release whose line numbers its listings show.
LINES_OF = re.compile(r"^> Line numbers: transformers (\d+\.\d+\.\d+)\.[ \t]*$", re.MULTILINE)
RELEASE_LINE = re.compile(r"^(> (?:Line numbers: |行号：)transformers )\d+\.\d+\.\d+", re.MULTILINE)  # both languages
# In a source listing (``annotate source``): a file header's range, and a numbered line's gutter.
HEADER = re.compile(r"(?P<path>\S*\.py):(?P<first>\d+)-(?P<last>\d+)$")
GUTTER = re.compile(r"^(?P<marker>❱\s*)?(?P<number>\d+) (?P<code>.*)$")


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence in the guide
    options: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # the ```output block that follows a ```python block
    start: int = 0  # character offsets of the whole block (fence to fence) in the guide's text
    end: int = 0
    prose: str = ""  # the guide's text between the previous block and this one


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a guide, in order; an ```output block is attached to the ```python
    block it follows (and must follow one directly)."""
    text = Path(path).read_text(encoding="utf-8")
    found: list[Block] = []
    previous_end = 0
    for match in FENCE.finditer(text):
        lang, code = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        between = text[previous_end : match.start()]
        options = {}
        for option in OPTIONS.finditer(between):  # the <!-- test: ... --> comments just before the block
            key, _, value = option.group(1).partition(" ")
            options[key] = value.strip()
        if lang == "output":
            if not found or found[-1].lang != "python" or between.strip() or found[-1].output is not None:
                raise ValueError(f"{Path(path).name}:{line}: an ```output block must directly follow a ```python block")
            found[-1].output = code
            found[-1].end = match.end()
        else:
            found.append(Block(lang, code, line, options, start=match.start(), end=match.end(), prose=between))
        previous_end = match.end()
    return found


def runs_here(block: Block) -> bool:
    """Whether the guide's test runs this block with the installed transformers and HF cache."""
    if "transformers" in block.options:
        from reimpl import versions

        if int(block.options["transformers"]) != versions.MAJOR:
            return False
    if "hub" in block.options:
        return in_hub_cache(block.options["hub"])
    return True


def in_hub_cache(model_id: str) -> bool:
    """Whether the hub model's config.json is in the local Hugging Face cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def _markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}


def _code(text: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": text.rstrip("\n").splitlines(keepends=True)}


def notebook(path: Path) -> dict:
    """The guide as a notebook (a dict in nbformat 4; ``json.dump`` it to a ``.ipynb`` file)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    cells: list[dict] = [_code(
        "import os, sys\n"
        "# `!annotate ...` cells run the annotate of this kernel's environment, wherever Jupyter was started from\n"
        "os.environ[\"PATH\"] = os.path.dirname(sys.executable) + os.pathsep + os.environ[\"PATH\"]"
    )]
    at = 0
    for block in blocks(path):
        prose = OPTIONS.sub("", text[at : block.start])
        if prose.strip():
            cells.append(_markdown(prose))
        whole = text[block.start : block.end]
        if block.lang == "python" and runs_here(block):
            cells.append(_code(block.code))
            if block.output is not None:  # what the guide shows it prints, for reading before running
                cells.append(_markdown("Expected output (as the guide shows it):\n\n```text\n" + block.output.rstrip("\n") + "\n```"))
        elif block.lang == "console" and runs_here(block):
            commands = [line[2:] for line in block.code.splitlines() if line.startswith("$ ")]
            cells.append(_code("\n".join("!" + command for command in commands)))
            cells.append(_markdown(whole))
        else:
            cells.append(_markdown(whole))
        at = block.end
    if text[at:].strip():
        cells.append(_markdown(OPTIONS.sub("", text[at:])))
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number}"
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "annotate": {"guide": path.name},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


LANGUAGE = re.compile(r"^[a-z]{2}(-[A-Z]{2})?$")  # a translation's folder: guides/zh-CN/
LANGUAGES = {"en": "English", "zh-CN": "简体中文"}  # the guides' languages: "en" in guides/, the others in guides/LANG/
NUMBERED = re.compile(r"^(\d+)-[^/]*\.md$")  # a guide's file name: 03-attention.md
TITLE = re.compile(r"^#\s+(?:\d+\.\s*)?(.*?)\s*$", re.MULTILINE)  # its first heading: "# 3. Scaled dot-product ..."


def folder() -> Path:
    """The English guides' folder: the installed package's copy (annotate/_guides), else the
    checkout's guides/ beside the package."""
    here = Path(__file__).resolve().parent
    packaged = here / "_guides"
    return packaged if packaged.is_dir() else here.parent / "guides"


@dataclass
class Guide:
    number: int
    lang: str  # "en", "zh-CN"
    title: str  # its first heading, without the number
    path: Path


def index(lang: str | None = None) -> list[Guide]:
    """The numbered guides of ``lang`` (None: every language), in order of language, then number."""
    from annotate.errors import UserError
    from annotate.i18n import t

    if lang is not None and lang not in LANGUAGES:
        raise UserError(t("no guides in {lang!r}: the languages are {languages}", lang=lang, languages=", ".join(LANGUAGES)))
    root = folder()
    if not root.is_dir():
        raise UserError(t("the guides are not installed (no {root}): reinstall annotate-transformers, or run from a clone", root=root))
    out = []
    for language in LANGUAGES if lang is None else (lang,):
        where = root if language == "en" else root / language
        for path in sorted(where.glob("*.md")) if where.is_dir() else ():
            if match := NUMBERED.match(path.name):
                heading = TITLE.search(path.read_text(encoding="utf-8"))
                out.append(Guide(int(match.group(1)), language, heading.group(1) if heading else path.stem, path))
    return out


def find(number: str | int, lang: str = "en") -> Path:
    """The guide numbered ``number`` ("3", "03", 3) in ``lang``."""
    from annotate.errors import UserError
    from annotate.i18n import t

    guides = index(lang)
    try:
        wanted = int(number)
    except ValueError:
        wanted = None
    for guide in guides:
        if guide.number == wanted:
            return guide.path
    numbers = ", ".join(str(g.number) for g in guides)
    raise UserError(t("no guide {number!r} in {language}: they are {numbers} (annotate guide list)",
                      number=number, language=LANGUAGES[lang], numbers=numbers))


def notebook_name(path: Path) -> str:
    """``03-attention.ipynb``; for a translation, ``03-attention.zh-CN.ipynb``, so that both
    languages can be written into one folder."""
    path = Path(path)
    language = path.parent.name
    return f"{path.stem}.{language}.ipynb" if LANGUAGE.match(language) else f"{path.stem}.ipynb"


def write_notebook(path: Path, out: Path | None = None) -> Path:
    """Write the guide at ``path`` as ``out`` (default: ``notebook_name(path)`` in the current
    directory); returns the file written."""
    path = Path(path)
    out = Path(out) if out is not None else Path(notebook_name(path))
    out.write_text(json.dumps(notebook(path), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# Source listings: the line numbers a guide shows, and rewriting them for the installed files.


def listing_line(line: str) -> tuple[str, str | None]:
    """A line of a source listing as (text, number): the number of its gutter or its header's
    range ("1086-1141"), and the text without them."""
    line = line.strip()
    if header := HEADER.search(line):
        return line[: header.start("first") - 1], f"{header['first']}-{header['last']}"
    if gutter := GUTTER.match(line):
        return gutter["code"].strip(), gutter["number"]
    return line, None


def real_numbers(shown: list[str], actual: str) -> list[str | None]:
    """For each shown line of a listing, the number the real output gives the line it matches, or
    None where it matches none or has no number. Lines are matched in order, by text; where the text
    occurs more than once, the line whose number is the shown one moved as the lines before it
    moved (a header's first line, the last numbered line) is taken."""
    lines = [listing_line(line) for line in actual.splitlines()]
    out: list[str | None] = []
    at, shift = 0, 0
    for raw in shown:
        want, number = listing_line(raw)
        if not want or want == "...":
            out.append(None)
            continue
        candidates = [i for i in range(at, len(lines)) if want in lines[i][0]]
        if not candidates:
            out.append(None)
            continue
        found = candidates[0]
        if number is not None and "-" not in number:
            expected = str(int(number) + shift)
            found = next((i for i in candidates if lines[i][1] == expected), found)
        real = lines[found][1]
        if number is not None and real is not None:
            first = lambda n: int(n.split("-")[0])  # noqa: E731
            shift = first(real) - first(number)
        out.append(real if number is not None else None)
        at = found + 1
    return out


def renumber(path: Path, run, release: str | None) -> str:
    """The guide at ``path`` with the line numbers of its ``annotate source`` listings as ``run(argv)``
    (the CLI's output for those arguments) gives them, and its ``> Line numbers:`` line naming
    ``release``. ``release`` None: the twin's listings only (run under the other major version of
    transformers, for the blocks written for it). Blocks that do not run here (the other major
    version's, or a hub model's not in the cache) are left as they are."""
    text = Path(path).read_text(encoding="utf-8")
    pieces, at = [], 0
    for block in blocks(path):
        if block.lang != "console" or not runs_here(block):
            continue
        body_start = text.index("\n", block.start) + 1
        lines = block.code.splitlines(keepends=True)
        command, shown = None, []
        for i, line in enumerate([*lines, "$ \n"]):
            if line.startswith("$ "):
                if command is not None and command[:2] == ["annotate", "source"]:
                    start, twin = i - len(shown), False
                    for j, real in enumerate(real_numbers([l.rstrip("\n") for l in shown], run(command[1:]))):
                        if HEADER.search(shown[j].strip()):
                            twin = shown[j].strip().startswith("reimpl/")
                        if real is not None and (twin or release is not None):
                            lines[start + j] = _with_number(lines[start + j], real)
                command, shown = shlex.split(line[2:]), []
            elif command is not None:
                shown.append(line)
        pieces += [text[at:body_start], "".join(lines)]
        at = body_start + len(block.code)
    text = "".join(pieces) + text[at:]
    return RELEASE_LINE.sub(lambda m: m.group(1) + release, text) if release is not None else text


def _with_number(line: str, number: str) -> str:
    """A shown listing line with its gutter number or header range replaced by ``number``."""
    end = "\n" if line.endswith("\n") else ""
    body = line.rstrip("\n")
    if "-" in number and (header := HEADER.search(body)):
        return body[: header.start("first")] + number + end
    gutter = GUTTER.match(body.strip())
    if gutter:
        at = body.index(gutter["number"], len(body) - len(body.lstrip()) + (len(gutter["marker"]) if gutter["marker"] else 0))
        width = len(gutter["number"])
        return body[:at] + number + body[at + width:] + end
    return line
