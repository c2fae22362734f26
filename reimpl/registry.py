"""Every architecture the twins cover, by config.json's ``model_type``, and ``from_pretrained``.

The records themselves live beside their twins (the ``ARCHITECTURE`` at the end of each twin
file); this module only collects them. Adding an architecture: its twin file, and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import albert, bart, bert, distilbert, electra, gpt2, llama, marian, mistral, qwen2, qwen3, roberta, xlm_roberta
from .architecture import Architecture
from .loading import CheckpointError, build, read_config, read_state_dict, resolve

ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        bert.ARCHITECTURE,
        roberta.ARCHITECTURE,
        xlm_roberta.ARCHITECTURE,
        distilbert.ARCHITECTURE,
        albert.ARCHITECTURE,
        electra.ARCHITECTURE,
        gpt2.ARCHITECTURE,
        llama.ARCHITECTURE,
        mistral.ARCHITECTURE,
        qwen2.ARCHITECTURE,
        qwen3.ARCHITECTURE,
        marian.ARCHITECTURE,
        bart.ARCHITECTURE,
    )
}


def supported_model_types() -> list[str]:
    return sorted(ARCHITECTURES)


def architecture(model_type: str | None) -> Architecture:
    """The record of ``model_type``; a CheckpointError naming the supported ones if there is none."""
    if model_type not in ARCHITECTURES:
        raise CheckpointError(f"model_type {model_type!r} is not supported; supported: {', '.join(supported_model_types())}")
    return ARCHITECTURES[model_type]


def architecture_of(model: nn.Module) -> Architecture:
    """The record of a twin model (or of a transformers model: both carry ``config.model_type``)."""
    return architecture(getattr(model.config, "model_type", None))


def twin_class(hf_class_name: str) -> type | None:
    """The twin class of a transformers model class, by name (``BertForMaskedLM``), or None."""
    for arch in ARCHITECTURES.values():
        for cls in arch.classes:
            if cls.__name__ == hf_class_name:
                return cls
    return None


def from_pretrained(name_or_path: str | Path, dtype: torch.dtype | None = torch.float32, *,
                    state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """Load a checkpoint straight into its twin, without building the transformers model.

    ``name_or_path``: a local directory, a hub id (the local HF cache first, then the hub), or a
    model an installed package ships (``sentence-transformers/all-MiniLM-L6-v2``). The twin class
    is the one config.json's ``architectures`` names when the twin has it (BertForMaskedLM,
    GPT2LMHeadModel, ...), else the architecture's default (its base model; GPT-2's LM head, which
    every GPT-2 checkpoint has, being the token embedding). ``dtype``: the twin's (fp32 by default;
    None keeps the checkpoint's). ``state``: the checkpoint's tensors, already read
    (``read_state_dict(folder)``; annotate trace --diff gives transformers the same ones); None reads them.
    """
    folder = resolve(name_or_path)
    config_dict = read_config(folder)
    arch = architecture(config_dict.get("model_type"))
    try:
        config = arch.config.from_dict(config_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{arch.model_type} config in {str(folder)!r} is not supported: {e}") from None
    tensors = {}
    for key, tensor in (read_state_dict(folder) if state is None else state).items():
        if (key := arch.checkpoint_key(key)) is not None:
            tensors[key] = tensor
    model_cls = arch.model_class(config_dict.get("architectures"))
    return build(model_cls, config, tensors, *model_cls.checkpoint_args(tensors), dtype=dtype)
