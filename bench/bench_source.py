"""`annotate source` start-to-finish cost, against importing the modeling file it reads, each a fresh subprocess.

`annotate source` reads transformers' files instead of importing them (annotate/source.py). Measured
in one run, repeats interleaved (bench_cli.measure: one warm-up round, then medians of wall time):

- `annotate source BertSelfAttention` against `python -c "import transformers.models.bert.modeling_bert"`.
  Targets: <= 0.5 s, and <= 0.5x the import.
- `annotate source encoder.layer.0.attention.self.probs` (a stage: every twin file is parsed), same targets.
- the same two through the source command's own code path (parser, then ``args.run``), without
  ``annotate.cli.main``'s error-handling imports, to tell the command's cost from the dispatcher's.
- `import annotate.cli` and parsing `source NAME`, against bare `python -c pass`: the start-up every
  command pays (no target beyond staying what it was: a few ms over Python's own start).

    python bench/bench_source.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_cli import annotate_command, measure  # noqa: E402  (bench_cli imports nothing heavy)

CLASS = "BertSelfAttention"
STAGE = "encoder.layer.0.attention.self.probs"


def command_path(name: str) -> str:
    """What `annotate source NAME` runs after main() has parsed it."""
    return f"from annotate.cli import build_parser; a = build_parser().parse_args(['source', {name!r}]); a.run(a)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    annotate = annotate_command()
    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "import annotate.cli + parse": [python, "-c", "from annotate.cli import build_parser; build_parser().parse_args(['source', 'X'])"],
        "import modeling_bert": [python, "-c", "import transformers.models.bert.modeling_bert"],
        f"annotate source {CLASS}": [*annotate, "source", CLASS],
        f"annotate source {STAGE}": [*annotate, "source", STAGE],
        f"source command path: {CLASS}": [python, "-c", command_path(CLASS)],
        f"source command path: {STAGE}": [python, "-c", command_path(STAGE)],
    }
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {args.repeats} repeats, medians")
    t = {name: wall for name, (wall, _) in measure(commands, args.repeats).items()}
    from bench.common import print_table  # imports torch: only after the children have run

    print_table("Subprocess wall time", [(name, f"{wall:.3f}") for name, wall in t.items()], ("command", "wall s"))
    imported = t["import modeling_bert"]
    rows = []
    for name in (f"annotate source {CLASS}", f"annotate source {STAGE}", f"source command path: {CLASS}", f"source command path: {STAGE}"):
        rows.append((name, f"{t[name]:.3f} s", "<= 0.5 s", f"{t[name] / imported:.3f}x", "<= 0.5x"))
    rows.append(("import annotate.cli + parse", f"{t['import annotate.cli + parse']:.3f} s", "-",
                 f"+{t['import annotate.cli + parse'] - t['python -c pass']:.3f} s over python -c pass", "-"))
    print_table("Against the targets (ratios to importing modeling_bert)", rows, ("command", "wall", "target", "ratio", "target"))


if __name__ == "__main__":
    main()
