"""Timing helpers shared by the benchmarks: interleaved repeats, medians, a ratio table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2, grad: bool = False) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so drift hits all alike.
    ``grad``: with autograd on (for forward + backward), else in inference mode."""
    with torch.enable_grad() if grad else torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
