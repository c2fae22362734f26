"""The explorer's budgets (`annotate trace --html`), measured in one run.

- MiniLM (the packaged real weights), 9 tokens: the page's size, and the wall time of
  `annotate trace MiniLM TEXT --html FILE` as a ratio to `annotate trace MiniLM TEXT` (fresh
  subprocesses, interleaved, medians). Targets: <= 1.5 MB, <= 1.5x.
- bert-base size (random weights: 12 layers, 12 heads, hidden 768, written by
  annotate/examples.py), 128 tokens: the page's size, and in headless Chromium (tests/browser.py:
  Debian's, every request refused), from navigation to drawn (the flow chart, the first layer open,
  a stage with its histogram and code), then the Attention tab with all 144 heatmaps of 128 x 128
  drawn (a window tall enough to show every one, so none waits for a scroll). Fresh page each
  time, medians. Targets: <= 12 MB, open + every head drawn <= 2 s.

    python bench/bench_explorer.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_cli import annotate_command, measure  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCE = "The cat sat on the mat."  # 9 tokens with [CLS] and [SEP]
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512)
PROSE = (
    "The explorer shows every stage of the model, each head of every layer, and the residual stream; "
    "a learner reads the formula, then transformers' lines, then the twin's lines, one idea at a time. "
)


def text_of(tokens: int, folder: Path) -> str:
    """Prose that the checkpoint's tokenizer cuts into exactly ``tokens`` tokens ([CLS] and [SEP] included)."""
    from annotate.tracer import Tokenizer

    tokenizer = Tokenizer(folder)
    words = (PROSE * 20).split()
    text = ""
    for n in range(1, len(words)):
        candidate = " ".join(words[:n])
        if len(tokenizer.encode(candidate)[0]) > tokens:
            break
        text = candidate
    while len(tokenizer.encode(text)[0]) < tokens:
        text += " a"  # one token each
    assert len(tokenizer.encode(text)[0]) == tokens
    return text


def browser_times(path: Path, repeats: int) -> tuple[float, float]:
    """Median seconds from navigation to drawn, and from the Attention tab's click to every head drawn."""
    from tests.browser import Browser

    L, H = BERT_BASE["num_hidden_layers"], BERT_BASE["num_attention_heads"]
    opened, heads = [], []
    with Browser(viewport={"width": 1440, "height": 4200}) as b:
        for _ in range(repeats + 1):  # the first round warms the browser's caches: not counted
            page = b.page()
            start = time.perf_counter()
            b.load(page, path)
            drawn = time.perf_counter()
            page.click('[data-tab="attention"]')
            page.wait_for_selector(f'[data-layer="{L - 1}"][data-head="{H - 1}"][data-drawn="1"]', state="attached")
            every = time.perf_counter()
            missing = page.locator(".heads canvas:not([data-drawn])").count()
            assert missing == 0, f"{missing} heatmaps not drawn"
            assert b.errors == [] and b.foreign_requests(path) == [], (b.errors, b.foreign_requests(path))
            page.context.close()
            opened.append(drawn - start)
            heads.append(every - drawn)
    return statistics.median(opened[1:]), statistics.median(heads[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {args.repeats} repeats, medians")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        page = tmp / "minilm.html"
        annotate = annotate_command()
        t = measure(
            {
                "annotate trace": [*annotate, "trace", MINILM, SENTENCE],
                "annotate trace --html": [*annotate, "trace", MINILM, SENTENCE, "--html", str(page)],
            },
            args.repeats,
        )
        small_mb = page.stat().st_size / 1e6

        # Imported only now (see bench_cli: a big parent inflates its children's max RSS).
        from annotate import explorer, tracer
        from bench.common import print_table
        from annotate.examples import write_bert

        folder = write_bert(tmp / "bert-base", **BERT_BASE)
        text = text_of(128, folder)
        start = time.perf_counter()
        trace = tracer.trace(str(folder), text, progress=False)
        traced = time.perf_counter()
        big = tmp / "bert-base.html"
        explorer.write(trace, big)
        written = time.perf_counter()
        big_mb = big.stat().st_size / 1e6
        opened, heads = browser_times(big, args.repeats)

    print_table(
        "MiniLM, 9 tokens (subprocess wall, max RSS)",
        [(name, f"{wall:.3f}", f"{mib:.0f}") for name, (wall, mib) in t.items()],
        ("command", "wall s", "peak MiB"),
    )
    print(f"\nbert-base size, 128 tokens: trace {traced - start:.2f} s, page written in {written - traced:.2f} s")
    print_table(
        "bert-base size, 128 tokens, in headless Chromium",
        [
            ("open: navigation to drawn", f"{opened:.3f}"),
            ("then the Attention tab: all 144 heads drawn", f"{heads:.3f}"),
        ],
        ("step", "median s"),
    )
    ratio = t["annotate trace --html"][0] / t["annotate trace"][0]
    rows = [
        ("MiniLM page size", f"{small_mb:.3f} MB", "<= 1.5 MB", small_mb <= 1.5),
        ("MiniLM trace --html / trace", f"{ratio:.3f}x", "<= 1.5x", ratio <= 1.5),
        ("bert-base 128 tokens page size", f"{big_mb:.2f} MB", "<= 12 MB", big_mb <= 12),
        ("bert-base 128 tokens open + every head drawn", f"{opened + heads:.3f} s", "<= 2 s", opened + heads <= 2),
    ]
    print_table("Budgets", [(name, got, target, "ok" if ok else "OVER") for name, got, target, ok in rows], ("budget", "measured", "target", ""))


if __name__ == "__main__":
    main()
