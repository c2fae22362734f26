"""Redo the README's pictures of the explorer: docs/explorer.png and docs/explorer-attention.png.

The packaged real MiniLM traced with --diff on "The cat sat on the mat.", its page opened in
headless Chromium (tests/browser.py: Debian's, every request refused) at 1440 x 900, and shot
twice: the stage view (layer 0 open, its attention probabilities with formula and code), and the
Attention tab (layer 1's head 8 large, and as lines from one hovered token).

    python scripts/explorer_screenshot.py [--out docs]

Needs Chromium (apt-get install chromium) and Playwright (the [test] extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXT = "The cat sat on the mat."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default: docs/)")
    args = parser.parse_args()

    import annotate
    from annotate import explorer
    from tests import browser

    why = browser.missing()
    if why:
        raise SystemExit(f"explorer_screenshot: {why}")
    trace = annotate.trace(MINILM, TEXT, diff=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, browser.Browser() as b:
        page_file = Path(tmp) / "minilm.html"
        explorer.write(trace, page_file)
        page = b.page()
        b.load(page, page_file)
        page.click('[data-stage="encoder.layer.0.attention.self.probs"]')
        page.screenshot(path=args.out / "explorer.png")
        page.click('[data-tab="attention"]')
        page.click('[data-pick-layer="1"]')
        page.click('[data-pick-head="8"]')  # each token looks at the one before it
        box = page.locator("#bv").bounding_box()
        page.mouse.move(box["x"] + 100, box["y"] + 24 + 3.5 * 18)  # the lines view, hovering query 3 ("sat")
        page.screenshot(path=args.out / "explorer-attention.png")
        if b.errors or b.foreign_requests(page_file):
            raise SystemExit(f"explorer_screenshot: the page went wrong: {b.errors} {b.foreign_requests(page_file)}")
    for name in ("explorer.png", "explorer-attention.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
