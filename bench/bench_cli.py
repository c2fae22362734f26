"""`annotate` start-up and trace cost as ratios to plain Python scripts, each run as a fresh subprocess.

Measured in one run, repeats interleaved so that drift (other processes on the machine) hits all
alike; medians of wall time and of peak memory (max RSS of each child, from os.wait4):

- `annotate --help` against `python -c "import torch"`. Target: <= 0.3x the wall time.
- `annotate trace MiniLM "one sentence"` (no --diff) against a plain script that loads the same
  checkpoint with transformers (AutoTokenizer, AutoModel eager) and runs one forward with
  output_hidden_states and output_attentions. Targets: <= 0.5x the wall time, <= 1.0x the memory.
- `annotate trace --diff`, which builds that transformers model too, for reference (no target).

    python bench/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCE = "The cat sat on the mat, and the dog watched it from the door."

PLAIN_TRANSFORMERS = f"""
import torch
from transformers import AutoTokenizer, AutoModel
from reimpl.loading import packaged_dir
folder = packaged_dir({MINILM!r})
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
with torch.inference_mode():
    out = model(**tokenizer({SENTENCE!r}, return_tensors="pt"), output_hidden_states=True, output_attentions=True)
assert len(out.attentions) == 6
"""


def annotate_command() -> list[str]:
    """The installed console script if there is one (what a user runs), else python -m annotate."""
    script = Path(sys.executable).parent / "annotate"
    if script.is_file():
        return [str(script)]
    found = shutil.which("annotate")
    return [found] if found else [sys.executable, "-m", "annotate"]


def run_once(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {child.returncode}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def measure(commands: dict[str, list[str]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall s, peak MiB) per command, runs interleaved, after one warm-up round (file cache)."""
    for command in commands.values():
        run_once(command)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            samples[name].append(run_once(command))
    return {
        name: (statistics.median(w for w, _ in s), statistics.median(m for _, m in s))
        for name, s in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    annotate = annotate_command()
    python = sys.executable
    commands = {
        "python -c 'import torch'": [python, "-c", "import torch"],
        "annotate --help": [*annotate, "--help"],
        "plain transformers script": [python, "-c", PLAIN_TRANSFORMERS],
        "annotate trace": [*annotate, "trace", MINILM, SENTENCE],
        "annotate trace --full": [*annotate, "trace", MINILM, SENTENCE, "--full"],
        "annotate trace --json": [*annotate, "trace", MINILM, SENTENCE, "--json"],
        "annotate trace --diff": [*annotate, "trace", MINILM, SENTENCE, "--diff"],
    }
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {args.repeats} repeats, medians")
    t = measure(commands, args.repeats)
    # Imported only now: bench.common imports torch, and a child's max RSS counts the pages it
    # shares with its parent between fork and exec, so a 200 MiB parent would inflate every child.
    sys.path.insert(0, str(ROOT))
    from bench.common import print_table
    print_table(
        "Subprocess wall time and peak memory (max RSS)",
        [(name, f"{wall:.3f}", f"{mib:.0f}") for name, (wall, mib) in t.items()],
        ("command", "wall s", "peak MiB"),
    )
    torch_s = t["python -c 'import torch'"][0]
    plain_s, plain_mib = t["plain transformers script"]
    rows = [
        ("annotate --help / import torch", "wall", f"{t['annotate --help'][0] / torch_s:.3f}x", "<= 0.3x"),
        ("annotate trace / plain transformers", "wall", f"{t['annotate trace'][0] / plain_s:.3f}x", "<= 0.5x"),
        ("annotate trace / plain transformers", "peak memory", f"{t['annotate trace'][1] / plain_mib:.3f}x", "<= 1.0x"),
        ("annotate trace --full / plain transformers", "wall", f"{t['annotate trace --full'][0] / plain_s:.3f}x", "<= 0.5x"),
        ("annotate trace --full / plain transformers", "peak memory", f"{t['annotate trace --full'][1] / plain_mib:.3f}x", "<= 1.0x"),
        ("annotate trace --json / plain transformers", "wall", f"{t['annotate trace --json'][0] / plain_s:.3f}x", "-"),
        ("annotate trace --diff / plain transformers", "wall", f"{t['annotate trace --diff'][0] / plain_s:.3f}x", "-"),
        ("annotate trace --diff / plain transformers", "peak memory", f"{t['annotate trace --diff'][1] / plain_mib:.3f}x", "-"),
    ]
    print_table("Ratios", rows, ("ratio", "of", "measured", "target"))


if __name__ == "__main__":
    main()
