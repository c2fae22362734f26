"""The cost of the verdict (annotate/compare.py): the float64 re-runs of both sides, against a
plain ``annotate trace --diff``, measured in one run, in-process, repeats interleaved.

A plain --diff (twin vs transformers eager, fp32) finds every stage equal and re-runs nothing.
A comparison with differences (transformers' sdpa path; a bf16 run; a second checkpoint) re-runs
both sides once in float64 to give each difference its verdict: one more twin (a float64 copy)
and one more transformers model (loaded in float64), or a second twin. Rows:

- trace: ``annotate trace MiniLM TEXT`` without --diff (the twin alone), for scale;
- --diff: the plain comparison, no differences, no re-runs;
- --diff --against sdpa, --diff --dtype bf16, annotate diff (one weight changed): with verdicts;
- and, for sdpa, the verdict's own part: the two float64 re-runs alone.

    python bench/bench_verdict.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotate import compare, tracer  # noqa: E402
from bench.common import print_table, time_interleaved  # noqa: E402
from reimpl import versions  # noqa: E402
from reimpl.loading import packaged_dir  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXT = "The cat sat on the mat, and the dog watched it from the door."


def changed_copy(folder: Path) -> Path:
    from safetensors.torch import load_file, save_file

    dst = Path(tempfile.mkdtemp()) / "minilm-changed"
    shutil.copytree(packaged_dir(MINILM), dst)
    state = load_file(dst / "model.safetensors")
    key = next(k for k in state if k.endswith("encoder.layer.2.attention.self.key.weight"))
    state[key][0, 0] += 1e-3
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    other = changed_copy(packaged_dir(MINILM))

    def trace(**kw):
        return lambda: tracer.trace(MINILM, TEXT, progress=False, **kw)

    # The verdict's own part for sdpa: both sides' float64 re-runs.
    base = tracer.trace(MINILM, TEXT, progress=False)
    twin = tracer.load(MINILM)[1]
    ids = torch.tensor([base.ids])
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
    a = compare.twin_run(twin, inputs)
    b = compare.transformers_run(packaged_dir(MINILM), twin, inputs, "sdpa")

    def reruns():
        a.states(torch.float64)
        b.states(torch.float64)

    fns = {
        "trace (twin alone)": trace(),
        "--diff (eager, fp32): plain": trace(diff=True),
        "--diff --against sdpa": trace(diff=True, against="sdpa"),
        "--diff --dtype bf16": trace(diff=True, dtype="bf16"),
        "annotate diff (a weight changed)": trace(diff=True, other=str(other)),
        "sdpa's float64 re-runs alone": reruns,
    }
    times = time_interleaved(fns, repeats=args.repeats, warmup=1)
    plain = times["--diff (eager, fp32): plain"]
    rows = [(name, f"{t * 1000:.0f} ms", f"{t / plain:.2f}x") for name, t in times.items()]
    print_table(
        f"verdict cost, {versions.LABEL}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"MiniLM, {len(base.ids)} tokens, median of {args.repeats}",
        rows,
        ("run", "time", "vs plain --diff"),
    )
    shutil.rmtree(other.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
