"""Every code block in guides/ runs, and what a guide shows as output is what the code prints.

The rules, which guides/README.md repeats for writers (the parser is annotate/guides.py):

- ```python blocks run in order, in one namespace per guide file (a guide is one script).
- An ```output block right after a ```python block is what that block prints; an ```output block
  after a ```console block is not allowed (put the output inside the console block).
- ```console blocks: each line ``$ annotate ...`` runs the CLI in-process (``annotate.cli.main``
  with the shlex-split arguments); the lines after it, up to the next ``$``, are its output.
  The exit code must be 0, unless the block is preceded by ``<!-- test: exit N -->``.
  Any other ``$`` command is an error: a guide may only show commands the tests run.
- A block preceded by ``<!-- test: transformers 4 -->`` (or ``5``) shows what that major version
  of transformers prints or does, and runs only where it is installed; the guide's text beside it
  says what changed. CI runs the guides under 4.57 and 5.x. A block preceded by
  ``<!-- test: hub MODEL -->`` runs only where that model is in the local Hugging Face cache.
- Expected output is checked line by line: every shown line (stripped; "..." lines skipped) must
  occur, in order, within a line of the real output.
- Source listings (``annotate source``): a line number in the gutter (``❱ 139 code``) and a file
  header's range (``reimpl/bert.py:233-257``) must be the real ones. The twin's always; those of
  transformers' files when the installed transformers is the release the guide names on its line
  ``> Line numbers: transformers X.Y.Z.`` (another release moves them; the code is still compared).
- Other blocks (```text diagrams, ```mermaid, ```bash) are not run.
- guides/zh-CN/ holds each guide in Simplified Chinese with the same ```python, ```console,
  ```output and ```mermaid blocks and test options, byte for byte: running the English guide
  proves the Chinese one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest

from annotate.guides import FENCE as FENCE_RE, GUTTER, HEADER, LINES_OF, Block, blocks, runs_here
from annotate.guides import listing_line as _listing_line

GUIDES = Path(__file__).resolve().parent.parent / "guides"
ZH = GUIDES / "zh-CN"
def assert_shown(expected: str, actual: str, where: str, listing: bool = False, transformers_lines: bool = False) -> None:
    """Every shown line occurs, in order, within a line of the actual output.

    ``listing``: the output is a CLI's, which may hold source listings: a shown line's gutter
    number or header range must equal the real one; in transformers' files only when
    ``transformers_lines`` (the installed release is the guide's)."""
    if not listing:
        lines = [line.strip() for line in actual.splitlines()]
        at = 0
        for want in expected.splitlines():
            want = want.strip()
            if not want or want == "...":
                continue
            for i in range(at, len(lines)):
                if want in lines[i]:
                    at = i + 1
                    break
            else:
                raise AssertionError(f"{where}: the guide shows\n    {want}\nbut the output (from line {at + 1} on) has no such line:\n{actual}")
        return
    lines = [(line.strip(), *_listing_line(line)) for line in actual.splitlines()]
    at, listing_of = 0, None  # listing_of: None before the first file header, else whether its numbers are compared
    for raw in expected.splitlines():
        want, number = _listing_line(raw)
        if not want or want == "...":
            continue
        if HEADER.search(raw.strip()):  # a new file: the twin's numbers are always compared
            listing_of = want.startswith("reimpl/") or transformers_lines
        for i in range(at, len(lines)):
            whole, text, real = lines[i]
            if listing_of is None:
                found = raw.strip() in whole
            else:
                found = want in text and (number is None or not listing_of or number == real)
            if found:
                at = i + 1
                break
        else:
            near = [real for _, text, real in lines[at:] if want in text and real]
            hint = f" (the output has it numbered {near[0]})" if near and listing_of else ""
            raise AssertionError(f"{where}: the guide shows\n    {raw.strip()}\nbut the output (from line {at + 1} on) has no such line{hint}:\n{actual}")


def lines_release(path: Path) -> str | None:
    """The transformers release whose line numbers the guide shows (its ``> Line numbers:`` line)."""
    found = LINES_OF.findall(path.read_text(encoding="utf-8"))
    return found[0] if found else None


def run_console(block: Block, where: str, transformers_lines: bool = False) -> None:
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
        assert_shown("\n".join(shown), output, f"{where}: `{command}`", listing=True, transformers_lines=transformers_lines)


def run_guide(path: Path) -> None:
    namespace: dict = {"__name__": f"guide_{path.stem.replace('-', '_')}"}
    release = lines_release(path)
    transformers_lines = release == version("transformers")
    cwd = os.getcwd()  # a guide may chdir to run its commands on a relative folder; the next test starts where this one did
    try:
        _run_blocks(path, namespace, release, transformers_lines)
    finally:
        os.chdir(cwd)


def _run_blocks(path: Path, namespace: dict, release: str | None, transformers_lines: bool) -> None:
    for block in blocks(path):
        where = f"{path.name}:{block.line}"
        if not runs_here(block):
            continue  # for the other major version of transformers (the guide's text says what changed), or a hub model not in the cache
        if block.lang == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                # Padded with blank lines so that a traceback names the guide's own file and line.
                exec(compile("\n" * block.line + block.code, str(path), "exec"), namespace)
            if block.output is not None:
                assert_shown(block.output, out.getvalue(), where)
        elif block.lang == "console":
            if release is None and re.search(r"^(?!reimpl/)\S+\.py:\d+-\d+$", block.code, re.MULTILINE):
                raise AssertionError(f"{where}: a listing of transformers' source, but the guide has no line `> Line numbers: transformers X.Y.Z.`")
            run_console(block, where, transformers_lines)


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


def test_source_listings_are_true_to_the_line(tmp_path, monkeypatch):
    """A listing's line numbers are compared: the twin's always, transformers' in the release the guide names."""
    monkeypatch.setenv("COLUMNS", "160")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        from annotate.cli import main

        assert main(["source", "BertSelfOutput"]) == 0
    listing = out.getvalue().splitlines()
    header = next(line for line in listing if HEADER.search(line) and "modeling_bert.py" in line)
    first = int(HEADER.search(header)["first"])
    twin_header = next(line.strip() for line in listing if line.strip().startswith("reimpl/"))
    twin_first = int(HEADER.search(twin_header)["first"])
    twin_line = next(line for line in listing if GUTTER.match(line.strip()) and int(GUTTER.match(line.strip())["number"]) == twin_first + 1)

    def guide(release: str, shift: int, twin_shift: int) -> Path:
        path = tmp_path / f"g{release}{shift}{twin_shift}.md"
        shown_twin = re.sub(r"\d+", lambda m: str(int(m.group()) + twin_shift), twin_header, count=2)
        path.write_text(
            f"> Line numbers: transformers {release}.\n\n```console\n$ annotate source BertSelfOutput\n"
            f"transformers/models/bert/modeling_bert.py:{first + shift}-{int(HEADER.search(header)['last']) + shift}\n"
            f"{first + shift} class BertSelfOutput(nn.Module):\n"
            f"{shown_twin}\n{twin_first + 1 + twin_shift} {GUTTER.match(twin_line.strip())['code']}\n```\n"
        )
        return path

    installed = version("transformers")
    run_guide(guide(installed, 0, 0))
    run_guide(guide("1.0.0", 3, 0))  # another release: transformers' numbers may differ, the code is compared
    with pytest.raises(AssertionError, match="numbered"):
        run_guide(guide(installed, 1, 0))
    with pytest.raises(AssertionError, match="the guide shows"):
        run_guide(guide("1.0.0", 0, 1))  # the twin's numbers are always the real ones
    unnamed = tmp_path / "unnamed.md"
    unnamed.write_text(guide(installed, 0, 0).read_text().split("\n", 2)[2])
    with pytest.raises(AssertionError, match="no line `> Line numbers"):
        run_guide(unnamed)


def test_a_hub_block_runs_only_with_the_model_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    path = tmp_path / "hub.md"
    path.write_text("<!-- test: hub bert-base-chinese -->\n```python\nraise AssertionError('ran')\n```\n")
    run_guide(path)
    path.write_text("<!-- test: hub sentence-transformers/all-MiniLM-L6-v2 -->\n```python\nraise AssertionError('ran')\n```\n")
    (tmp_path / "empty-cache" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "0").mkdir(parents=True)
    (tmp_path / "empty-cache" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "0" / "config.json").write_text("{}")
    (tmp_path / "empty-cache" / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs").mkdir()
    (tmp_path / "empty-cache" / "models--sentence-transformers--all-MiniLM-L6-v2" / "refs" / "main").write_text("0")
    with pytest.raises(AssertionError, match="ran"):
        run_guide(path)


# ----------------------------------------------------------------------------- in Chinese

KEPT = ("python", "console", "output", "mermaid")  # what a translation keeps byte for byte


def kept(path: Path) -> list[tuple]:
    found = []
    for block in blocks(path):
        if block.lang in KEPT:
            found.append((block.lang, block.code, block.output, sorted(block.options.items())))
    return found


@pytest.mark.parametrize("path", GUIDE_FILES, ids=lambda p: p.name)
def test_each_guide_is_in_chinese_with_the_same_code(path):
    zh = ZH / path.name
    assert zh.is_file(), f"guides/zh-CN/{path.name} is missing: every guide has its Simplified Chinese version"
    english, chinese = kept(path), kept(zh)
    for i, (a, b) in enumerate(zip(english, chinese)):
        assert a == b, f"zh-CN/{path.name}: code block {i + 1} ({a[0]}) differs from the English guide's:\n{b[1]}\n--- English:\n{a[1]}"
    assert len(english) == len(chinese), f"zh-CN/{path.name} has {len(chinese)} code blocks, the English guide {len(english)}"
    text = zh.read_text(encoding="utf-8")
    assert re.search(r"[\u4e00-\u9fff]", text), f"zh-CN/{path.name} has no Chinese"
    if path.name != "README.md":
        assert f"(../{path.name})" in text, f"zh-CN/{path.name} does not link its English original"
    header = f"[English](../{path.name}) | 简体中文 | [术语表](glossary.md)"
    assert text.split("\n", 1)[0] == header, f"zh-CN/{path.name}'s first line is not {header!r}"
    prose = FENCE_RE.sub("", text)  # code such as f["x"](z) is no link
    for link in re.findall(r"\]\(([^)#\s]+)", prose):  # links resolve from guides/zh-CN/
        if not re.match(r"[a-z]+:", link):
            assert (zh.parent / link).exists(), f"zh-CN/{path.name} links {link}, which does not exist"


def test_the_chinese_guides_have_a_glossary_and_the_readmes_link_them():
    glossary = (ZH / "glossary.md").read_text(encoding="utf-8")
    for english, chinese in [("residual connection", "残差连接"), ("layer normalization", "层归一化"), ("feed-forward", "前馈网络"),
                             ("causal mask", "因果掩码"), ("positional encoding", "位置编码"), ("multi-head attention", "多头注意力")]:
        assert english in glossary.lower() and chinese in glossary, f"the glossary lacks {english} / {chinese}"
    assert "(glossary.md)" in (ZH / "README.md").read_text(encoding="utf-8")
    assert "guides/zh-CN/" in (GUIDES.parent / "README.md").read_text(encoding="utf-8")
    assert "(zh-CN/README.md)" in (GUIDES / "README.md").read_text(encoding="utf-8")


def test_the_translation_check_catches_a_changed_block(tmp_path):
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text("Text.\n\n```python\nprint(1)\n```\n\n```output\n1\n```\n")
    b.write_text("文字。\n\n```python\nprint(1)\n```\n\n```output\n1\n```\n")
    assert kept(a) == kept(b)
    b.write_text("文字。\n\n```python\nprint(2)\n```\n\n```output\n1\n```\n")
    assert kept(a) != kept(b)


# ----------------------------------------------------------------------------- as notebooks

ALL_GUIDES = GUIDE_FILES + sorted(ZH.glob("[0-9]*.md"))


@pytest.mark.parametrize("path", [p for p in ALL_GUIDES if p.name != "README.md"], ids=lambda p: str(p.relative_to(GUIDES)))
def test_each_guide_opens_as_a_notebook_with_the_code_the_test_runs(path):
    from annotate.guides import notebook

    nb = notebook(path)
    json.dumps(nb)  # writable as .ipynb
    assert nb["nbformat"] == 4 and len({c["id"] for c in nb["cells"]}) == len(nb["cells"])
    code = ["".join(c["source"]) for c in nb["cells"][1:] if c["cell_type"] == "code"]
    want = []
    for block in blocks(path):
        if block.lang == "python" and runs_here(block):
            want.append(block.code.rstrip("\n"))
        elif block.lang == "console" and runs_here(block):
            want.append("\n".join("!" + line[2:] for line in block.code.splitlines() if line.startswith("$ ")))
    assert code == want
    prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "<!-- test:" not in prose
    first_heading = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# "))
    assert first_heading in prose


def test_a_guide_runs_as_a_notebook(tmp_path):
    """Run all, in a Jupyter kernel of this environment: guide 3 (its python cells and its !annotate cells)."""
    import nbformat
    from nbclient import NotebookClient

    from annotate.guides import write_notebook

    written = write_notebook(GUIDES / "03-attention.md", tmp_path / "03-attention.ipynb")
    nb = nbformat.read(written, as_version=4)
    nbformat.validate(nb)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    shell = [c for c in nb.cells if c.cell_type == "code" and "".join(c.source).startswith("!annotate")]
    assert shell and all(c.outputs for c in shell), "the !annotate cells printed nothing"
    assert "Traceback" not in text


def test_annotate_notebook_writes_each_guide_and_refuses_what_is_not_one(tmp_path, capsys):
    from annotate.cli import main

    out = tmp_path / "notebooks"  # made if missing
    assert main(["notebook", str(GUIDES / "01-map.md"), str(GUIDES / "02-embeddings.md"), str(ZH / "01-map.md"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01-map.ipynb", "01-map.zh-CN.ipynb", "02-embeddings.ipynb"]  # both languages side by side
    assert json.loads((out / "01-map.ipynb").read_text(encoding="utf-8"))["metadata"]["annotate"]["guide"] == "01-map.md"
    stray = tmp_path / "stray.md"
    stray.write_text("Text.\n\n```output\n1\n```\n")
    capsys.readouterr()
    for argv, says in [(["notebook", str(tmp_path / "nope.md")], "is not a guide's .md file"),
                       (["notebook", str(GUIDES / "01-map.md"), "-o", str(out / "01-map.ipynb")], "is not a folder"),
                       (["notebook", str(GUIDES / "01-map.md"), str(GUIDES / "01-map.md"), "-o", str(out)], "would both be written as 01-map.ipynb"),
                       (["notebook", str(stray), "-o", str(out)], "must directly follow a ```python block")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


LINE_IN_PROSE = re.compile(r"\blines? \d+(?:\s*[-–]\s*\d+)?\b|\.py:\d+|第\s*\d+\s*[-–]\s*\d+\s*行")  # (第 0 行 is also "row 0")


@pytest.mark.parametrize("path", ALL_GUIDES, ids=lambda p: str(p.relative_to(GUIDES)))
def test_prose_names_code_by_name_not_by_line_number(path):
    """Line numbers move with every release; only listings, which the tests compare, may show them."""
    text = path.read_text(encoding="utf-8")
    prose = FENCE_RE.sub("", text)
    found = LINE_IN_PROSE.findall(prose)
    assert not found, f"{path.name}: the prose names lines by number: {found}"
