"""A tensor in four numbers, as the trace shows each stage (and --grad each stage's gradient)."""

from __future__ import annotations

import torch


def summary(x: torch.Tensor) -> dict[str, float]:
    """mean, std (population, so a single value has std 0), min and max, computed in float64 (the
    mean of 1e5 fp32 values shouldn't depend on summation order)."""
    x = x.double()
    return {
        "mean": x.mean().item(),
        "std": x.std(correction=0).item(),
        "min": x.min().item(),
        "max": x.max().item(),
    }
