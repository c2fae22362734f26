"""Source listings on a terminal or a pipe: a title, the file:first-last header, the lines numbered
as in the file (rich's Syntax), the lines that correspond marked ❱."""

from __future__ import annotations

import os
from pathlib import Path

from annotate.code import lines_of, package_dir

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
