"""Every code block in guides/ runs, and what a guide shows as output is what the code prints.

The rules, which guides/README.md repeats for writers:

- ```python blocks run in order, in one namespace per guide file (a guide is one script).
- An ```output block right after a ```python block is what that block prints; an ```output block
  after a ```console block is not allowed (put the output inside the console block).
- ```console blocks: each line ``$ annotate ...`` runs the CLI in-process (``annotate.cli.main``
  with the shlex-split arguments); the lines after it, up to the next ``$``, are its output.
  The exit code must be 0, unless the block is preceded by ``<!-- test: exit N -->``.
- A block preceded by ``<!-- test: transformers 4 -->`` (or ``5``) shows what that major version
  of transformers prints or does, and runs only where it is installed; the guide's text beside it
  says what changed. CI runs the guides under 4.57 and 5.x.
  Any other ``$`` command is an error: a guide may only show commands the tests run.
- Expected output is checked line by line: every shown line (stripped; "..." lines skipped) must
  occur, in order, within a line of the real output. In console blocks two things are ignored,
  because they change with the installed transformers 5.x and not with the guide's claims: rich's
  gutter (the ``❱`` marker and the line number, ``❱ 139 ``) and the line range in a file header
  (``modeling_bert.py:139-203``). The code on those lines is compared.
- Other blocks (```text diagrams, ```bash) are not run.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

GUIDES = Path(__file__).resolve().parent.parent / "guides"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
OPTIONS = re.compile(r"<!--\s*test:\s*(.*?)\s*-->")


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence in the guide
    options: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # the ```output block that follows a ```python block


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
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
                raise AssertionError(f"{path.name}:{line}: an ```output block must directly follow a ```python block")
            found[-1].output = code
        else:
            found.append(Block(lang, code, line, options))
        previous_end = match.end()
    return found


def _source_listing(line: str) -> str:
    """A line of `annotate source` output without what moves between transformers releases."""
    line = re.sub(r"^\s*(❱\s*)?(\d+ )?", "", line.rstrip())  # rich's gutter: the ❱ marker and the line number
    return re.sub(r"\.py:\d+-\d+", ".py:N-N", line)  # a file header's line range


def assert_shown(expected: str, actual: str, where: str, listing: bool = False) -> None:
    """Every shown line occurs, in order, within a line of the actual output.

    ``listing``: the output is a CLI's, which may hold source listings; compare without gutters and line ranges."""
    normal = _source_listing if listing else str
    lines = [normal(line).strip() for line in actual.splitlines()]
    at = 0
    for want in expected.splitlines():
        want = normal(want).strip()
        if not want or want == "...":
            continue
        for i in range(at, len(lines)):
            if want in lines[i]:
                at = i + 1
                break
        else:
            raise AssertionError(f"{where}: the guide shows\n    {want}\nbut the output (from line {at + 1} on) has no such line:\n{actual}")


def run_console(block: Block, where: str) -> None:
    from annotate.cli import main

    commands: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
        elif line.strip():
            raise AssertionError(f"{where}: output before any $ command")
    assert commands, f"{where}: a console block with no $ command"
    want_exit = int(block.options.get("exit", "0"))
    for command, shown in commands:
        argv = shlex.split(command)
        assert argv[0] == "annotate", f"{where}: only `annotate` commands can be run by the tests, not {argv[0]!r}"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv[1:])
            except SystemExit as e:  # argparse errors and --help
                code = e.code
        output = out.getvalue() + err.getvalue()
        assert code == want_exit, f"{where}: `{command}` exited {code}, the guide expects {want_exit}:\n{output}"
        assert_shown("\n".join(shown), output, f"{where}: `{command}`", listing=True)


def run_guide(path: Path) -> None:
    namespace: dict = {"__name__": f"guide_{path.stem.replace('-', '_')}"}
    from reimpl import versions

    for block in blocks(path):
        where = f"{path.name}:{block.line}"
        if "transformers" in block.options and int(block.options["transformers"]) != versions.MAJOR:
            continue  # written for the other major version; the guide's text says what changed
        if block.lang == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                # Padded with blank lines so that a traceback names the guide's own file and line.
                exec(compile("\n" * block.line + block.code, str(path), "exec"), namespace)
            if block.output is not None:
                assert_shown(block.output, out.getvalue(), where)
        elif block.lang == "console":
            run_console(block, where)


GUIDE_FILES = sorted(GUIDES.glob("*.md"))


@pytest.mark.parametrize("path", GUIDE_FILES, ids=lambda p: p.name)
def test_guide_runs_and_shows_what_it_prints(path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich wraps code at this width when stdout is not a terminal
    run_guide(path)


def test_the_reading_path_lists_every_guide():
    index = (GUIDES / "README.md").read_text()
    numbered = [p.name for p in GUIDE_FILES if p.name != "README.md"]
    assert len(numbered) >= 8
    for name in numbered:
        assert f"({name})" in index, f"guides/README.md does not link {name}"


def test_the_harness_catches_a_stale_guide(tmp_path, monkeypatch):
    """A guide whose shown output is wrong, or whose command fails, fails its test."""
    monkeypatch.setenv("COLUMNS", "120")
    stale = tmp_path / "stale.md"
    stale.write_text("```python\nprint('a')\nprint('b')\n```\n\n```output\nb\na\n```\n")
    with pytest.raises(AssertionError, match="the guide shows"):
        run_guide(stale)
    failing = tmp_path / "failing.md"
    failing.write_text("```console\n$ annotate source NoSuchName\n```\n")
    with pytest.raises(AssertionError, match="exited 2, the guide expects 0"):
        run_guide(failing)
    expected_failure = tmp_path / "expected.md"
    expected_failure.write_text("<!-- test: exit 2 -->\n```console\n$ annotate source NoSuchName\nannotate: error: unknown name 'NoSuchName'\n```\n")
    run_guide(expected_failure)
    versioned = tmp_path / "versioned.md"  # a block for the other major version is not run
    from reimpl import versions

    versioned.write_text(f"<!-- test: transformers {9 - versions.MAJOR} -->\n```python\nraise AssertionError\n```\n")
    run_guide(versioned)
    versioned.write_text(f"<!-- test: transformers {versions.MAJOR} -->\n```python\nraise AssertionError('ran')\n```\n")
    with pytest.raises(AssertionError, match="ran"):
        run_guide(versioned)
    other = tmp_path / "other.md"
    other.write_text("```console\n$ ls\n```\n")
    with pytest.raises(AssertionError, match="only `annotate` commands"):
        run_guide(other)
