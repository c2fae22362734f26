"""Source listings on a terminal or a pipe: a title, the file:first-last header, the lines numbered
as in the file (rich's Syntax), the lines that correspond marked ❱."""

from __future__ import annotations

import os
from pathlib import Path

from annotate.code import lines_of, package_dir
from annotate.i18n import t

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


def show(console, code, title: str, highlight: set[int] | None = None) -> None:
    """A title, the file:first-last header, and ``code``'s lines (annotate.source.Code) numbered as in
    the file (``highlight``: marked ❱)."""
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


def show_lines(console, path: Path, lines: tuple[int, ...], title: str, gap: int = 3,
               folded: tuple[int, ...] = (), folded_for: str = "") -> None:
    """A title, the file:first-last header, then ``lines`` (marked ❱) with the lines between them, except
    where more than ``gap`` lines apart: there a ``...`` stands for what is skipped. ``folded``: lines
    that run only under ``folded_for`` (the other transformers version), left out with a note."""
    from rich.syntax import Syntax
    from rich.text import Text

    console.print(Text(title, style="bold"), soft_wrap=True)
    console.print(Text(f"{display_path(path)}:{lines[0]}-{lines[-1]}", style="dim"), soft_wrap=True)
    skip = set(folded)
    note = lambda hidden: console.print(Text(t("  ⋯ {lines}: {version} only, not run here", lines=_runs(hidden), version=folded_for), style="dim"), soft_wrap=True)  # noqa: E731
    before = [n for n in folded if n < lines[0]]  # the other version's lines just above the first ("if versions.V4:")
    if before:
        note(before)
    for i, (first, last) in enumerate(chunks(lines, gap)):
        if i:
            console.print(Text("  ...", style="dim"))
        shown = tuple(n for n in range(first, last + 1) if n not in skip)
        previous = None  # the last line of the run printed before: the folded lines lie between
        for a, b in chunks(shown, gap=0):
            if previous is not None:
                note(list(range(previous + 1, a)))
            text = "\n".join(lines_of(path)[a - 1 : b])
            console.print(
                Syntax(text, "python", line_numbers=True, start_line=a,
                       highlight_lines=set(lines), word_wrap=True, background_color="default")
            )
            previous = b


def _runs(lines: list[int]) -> str:
    """[223, 224] -> "lines 223-224"; [228] -> "line 228"."""
    runs = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in chunks(tuple(lines), gap=0))
    return t("line {runs}", runs=runs) if len(lines) == 1 else t("lines {runs}", runs=runs)


def chunks(lines: tuple[int, ...], gap: int = 3) -> list[tuple[int, int]]:
    """Ascending line numbers as (first, last) runs, a run going on while the next line is at most ``gap`` further."""
    runs: list[list[int]] = []
    for n in lines:
        if runs and n - runs[-1][1] <= gap + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return [(a, b) for a, b in runs]
