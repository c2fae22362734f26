"""Transformers' own intermediate values, caught under the twin's stage names.

``hf_states(hf)`` puts forward hooks on a live transformers ``BertModel`` or ``GPT2LMHeadModel``
(eager attention) and fills a dict as it runs, keyed by the names the twin records
(reimpl/states.py): ``encoder.layer.3.attention.self.query``, ``transformer.h.0.mlp.act``. Then
``differences`` lines the two up step by step, in the same layout, for ``annotate trace --diff``
and for the parity tests.

Most steps are a module's output. The others are caught where they next appear:

- residual sums: the input of the LayerNorm (or module) that follows them;
- Q/K/V: transformers keeps them as Linear (BERT) or c_attn (GPT-2) outputs, (B, T, C); the twin
  records them split into heads, (B, nh, T, hs); ``heads_merged`` turns the twin's into HF's
  layout (a copy, so exact);
- scaled scores: they never leave ``eager_attention_forward``; they are caught as softmax's input,
  which is scores + mask, under ``<name>+mask``. The mask adds exactly 0 where a key is kept, so
  the scores compare exactly there and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F


class _Hooks:
    """Forward hooks that store into ``caught``, removed together."""

    def __init__(self, caught: dict[str, torch.Tensor]):
        self.caught = caught
        self.handles = []

    def on(self, module: nn.Module, name: str, index: int | None = None) -> None:
        """The module's output (or one element of its output tuple) is ``name``."""

        def hook(module, args, output):
            self.caught[name] = output if index is None else output[index]

        self.handles.append(module.register_forward_hook(hook))

    def before(self, module: nn.Module, name: str) -> None:
        """The module's first input is ``name``."""

        def hook(module, args):
            self.caught[name] = args[0]

        self.handles.append(module.register_forward_pre_hook(hook))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _bert(hf: nn.Module, hooks: _Hooks) -> str:
    """BertModel; returns the prefix of its layers' names."""
    e = hf.embeddings
    hooks.on(e.word_embeddings, "embeddings.word_embeddings")
    hooks.on(e.token_type_embeddings, "embeddings.token_type_embeddings")
    hooks.on(e.position_embeddings, "embeddings.position_embeddings")
    hooks.before(e.LayerNorm, "embeddings.sum")
    hooks.on(e.LayerNorm, "embeddings.LayerNorm")
    for i, layer in enumerate(hf.encoder.layer):
        p = f"encoder.layer.{i}"
        s = layer.attention.self
        hooks.on(s.query, f"{p}.attention.self.query")
        hooks.on(s.key, f"{p}.attention.self.key")
        hooks.on(s.value, f"{p}.attention.self.value")
        hooks.on(s, f"{p}.attention.self.context", 0)
        hooks.on(s, f"{p}.attention.self.probs", 1)
        hooks.on(layer.attention.output.dense, f"{p}.attention.output.dense")
        hooks.before(layer.attention.output.LayerNorm, f"{p}.attention.output.residual")
        hooks.on(layer.attention.output.LayerNorm, f"{p}.attention.output.LayerNorm")
        hooks.on(layer.intermediate.dense, f"{p}.intermediate.dense")
        hooks.on(layer.intermediate, f"{p}.intermediate.intermediate_act_fn")
        hooks.on(layer.output.dense, f"{p}.output.dense")
        hooks.before(layer.output.LayerNorm, f"{p}.output.residual")
        hooks.on(layer.output.LayerNorm, f"{p}.output.LayerNorm")
        hooks.on(layer, p)
    if hf.pooler is not None:
        hooks.on(hf.pooler.dense, "pooler.dense")
        hooks.on(hf.pooler, "pooler.activation")
    return "encoder.layer"


def _gpt2(hf: nn.Module, hooks: _Hooks) -> str:
    """GPT2LMHeadModel; returns the prefix of its blocks' names."""
    t = hf.transformer
    hooks.on(t.wte, "transformer.wte")
    hooks.on(t.wpe, "transformer.wpe")
    hooks.before(t.drop, "transformer.sum")  # words + positions, before the (inactive) dropout
    for i, block in enumerate(t.h):
        p = f"transformer.h.{i}"
        hooks.on(block.ln_1, f"{p}.ln_1")
        hooks.on(block.attn.c_attn, f"{p}.attn.c_attn")  # [Q | K | V], split below
        hooks.on(block.attn, f"{p}.attn.probs", 1)
        hooks.before(block.attn.c_proj, f"{p}.attn.context")
        hooks.on(block.attn.c_proj, f"{p}.attn.c_proj")
        hooks.before(block.ln_2, f"{p}.attn.residual")
        hooks.on(block.ln_2, f"{p}.ln_2")
        hooks.on(block.mlp.c_fc, f"{p}.mlp.c_fc")
        hooks.before(block.mlp.c_proj, f"{p}.mlp.act")
        hooks.on(block.mlp.c_proj, f"{p}.mlp.c_proj")
        hooks.on(block, f"{p}.mlp.residual")  # the block ends with that sum
        hooks.on(block, p)
    hooks.on(t.ln_f, "transformer.ln_f")
    hooks.on(hf.lm_head, "lm_head")
    return "transformer.h"


ARCHITECTURES = {"BertModel": _bert, "GPT2LMHeadModel": _gpt2}


@contextlib.contextmanager
def hf_states(hf: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Hooks on a transformers BertModel or GPT2LMHeadModel that catch, under the twin's names,
    what each step produced. The dict is complete when the block exits.

    Q/K/V are in HF's (B, T, C) layout (see ``heads_merged``); the scores are softmax's input, so
    they are caught as ``<name>.scores+mask``.
    """
    kind = type(hf).__name__
    if kind not in ARCHITECTURES:
        raise TypeError(f"no hooks for {kind}; supported: {', '.join(ARCHITECTURES)}")
    caught: dict[str, torch.Tensor] = {}
    hooks = _Hooks(caught)
    layers = ARCHITECTURES[kind](hf, hooks)

    # The scores never leave eager_attention_forward: catch them as softmax's input, in layer order.
    # (HF calls nn.functional.softmax by attribute, so replacing the attribute reaches it.)
    softmax_inputs: list[torch.Tensor] = []
    real_softmax = F.softmax

    def spy(x, *args, **kwargs):
        softmax_inputs.append(x)
        return real_softmax(x, *args, **kwargs)

    F.softmax = spy
    try:
        yield caught
    finally:
        F.softmax = real_softmax
        hooks.remove()
    for i, x in enumerate(softmax_inputs):
        scores = f"{layers}.{i}.attn.scores+mask" if kind == "GPT2LMHeadModel" else f"{layers}.{i}.attention.self.scores+mask"
        caught[scores] = x
    if kind == "GPT2LMHeadModel":
        C = hf.config.n_embd
        for i in range(hf.config.n_layer):
            if (qkv := caught.pop(f"{layers}.{i}.attn.c_attn", None)) is not None:
                q, k, v = qkv.split(C, dim=2)  # as GPT2Attention.forward splits it
                caught.update({f"{layers}.{i}.attn.query": q, f"{layers}.{i}.attn.key": k, f"{layers}.{i}.attn.value": v})


def heads_merged(x: torch.Tensor) -> torch.Tensor:
    """The twin's (B, nh, T, hs) Q/K/V in HF's (B, T, C) layout."""
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


def differences(
    ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], keep: torch.Tensor | None
) -> dict[str, float | None]:
    """max |twin - HF| per twin stage, compared in the same layout; None where HF's value wasn't caught.

    ``keep``: booleans broadcastable to the scores (B, nh, T, S), True where a key is attended to
    (not padding, and for GPT-2 not in the future); None for all. Scores are compared there only:
    elsewhere HF's softmax input holds the mask's ~-3.4e38.
    """
    out: dict[str, float | None] = {}
    for name, value in ours.items():
        if name.endswith((".query", ".key", ".value")) and value.dim() == 4:
            value = heads_merged(value)
        if name.endswith(".scores"):
            seen = theirs.get(name + "+mask")
            if seen is not None and keep is not None:
                where = keep.expand_as(value)
                value, seen = value[where], seen[where]
        else:
            seen = theirs.get(name)
        if seen is None or seen.shape != value.shape:
            out[name] = None
        else:
            out[name] = (value.double() - seen.double()).abs().max().item() if value.numel() else 0.0
    return out
