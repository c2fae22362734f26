"""The activation functions a BERT or GPT-2 config can name, written out.

Each is the exact op sequence of its class in transformers/activations.py (``ACT2CLS``): the
same ops in the same order, so the twin's MLP is bit-identical. Two names for "GELU" differ:
``gelu`` is the exact erf form, ``gelu_new`` (GPT-2's default) the tanh approximation written in
Python, and ``gelu_pytorch_tanh`` the same approximation fused by PyTorch, whose last bits differ
from ``gelu_new``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """NewGELUActivation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's original."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """FastGELUActivation: the tanh approximation with the constant folded in."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def gelu_python(x: torch.Tensor) -> torch.Tensor:
    """GELUActivation(use_gelu_python=True): the erf form, written out."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_python_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELUTanh(use_gelu_tanh_python=True): gelu_new with its factors in another order."""
    return x * 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """QuickGELUActivation: x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


def gelu_pytorch_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELUTanh: PyTorch's fused tanh approximation."""
    return F.gelu(x, approximate="tanh")


def linear(x: torch.Tensor) -> torch.Tensor:
    return x


ACT2FN: dict[str, Activation] = {
    "gelu": F.gelu,  # exact: x * Phi(x), through erf
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_python": gelu_python,
    "gelu_pytorch_tanh": gelu_pytorch_tanh,
    "gelu_python_tanh": gelu_python_tanh,
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": linear,
}


def get_activation(name: str) -> Activation:
    if name not in ACT2FN:
        raise ValueError(f"activation {name!r} is not supported; supported: {', '.join(sorted(ACT2FN))}")
    return ACT2FN[name]
