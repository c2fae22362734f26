"""Rewrite the line numbers of the guides' source listings (``annotate source`` in their console
blocks, both languages) for the installed transformers and twins, and their ``> Line numbers:``
line for the installed release. Run after a twin file moves or a transformers release renumbers
its files; tests/test_guides.py then checks them (transformers' only under the named release).

    python scripts/renumber_guides.py            # under transformers 5.x: every listing
    .venv457/bin/python scripts/renumber_guides.py   # under 4.57: the twin's, in the blocks for 4.x
"""

from __future__ import annotations

import contextlib
import io
import os
from importlib.metadata import version
from pathlib import Path

from annotate.cli import main
from annotate.guides import renumber

GUIDES = Path(__file__).resolve().parent.parent / "guides"


def run(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit:
            pass
    return out.getvalue()


if __name__ == "__main__":
    os.environ["COLUMNS"] = "160"  # as the guides' test runs them: rich wraps code at this width
    installed = version("transformers")
    release = None if installed.startswith("4.") else installed  # the guides name a 5.x release
    changed = 0
    for path in sorted([*GUIDES.glob("*.md"), *(GUIDES / "zh-CN").glob("*.md")]):
        text = path.read_text(encoding="utf-8")
        new = renumber(path, run, release)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
            print(f"renumbered {path.relative_to(GUIDES.parent)}")
    print(f"{changed} guides changed; line numbers of transformers {installed}" + (" (the twin's only)" if release is None else ""))
