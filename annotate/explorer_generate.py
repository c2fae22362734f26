"""The explorer page of a generation: ``annotate generate MODEL PROMPT --html FILE``.

A decoder-only model (GPT-2, the Llama family) continues the prompt one token per step against its
key/value cache (annotate/watch.py runs it, ``Watch.run(attention=True)``). The page shows each
step: the token chosen, with its probability (after temperature / top-k / top-p, and the model's
own) and the likeliest alternatives; where that step's query looked (the last position's attention
probabilities, in every layer and head, over the prompt and the tokens generated so far: the keys
in the cache); and the cache growing, one key per step (how many keys each step attends to, and
their bytes). The same page as the trace's explorer (annotate/explorer.py): plain HTML, its style
(annotate/explorer.css, then annotate/explorer_generate.css) and its script
(annotate/explorer_generate.js) inlined, no request of any kind; it works from file://.

The attention goes in its own block, as uint16 (round(p * 65535)), base64: step after step, each
(layers, heads, keys) with keys = the prompt's length + the step's index (from 0).

Element contract (for tests): one ``[data-step="i"]`` per new token (i from 0), with ``data-keys``
(the keys it attended to) and its token in ``.chosen``; selecting one fills ``#step-detail`` and
``#att-row`` (``data-att-step``), the sequence so far as one ``[data-key="j"]`` per key, shaded by the step's
attention (``data-weight``) for the layer and head picked (``[data-pick-layer]``,
``[data-pick-head]``; "mean" averages), ``#layers-map`` (every layer at this step) and
``#staircase`` (every step: the cache growing).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import torch

from annotate import explorer
from annotate.explorer import _round, _script_json, pieces, token_labels


def tokens(tokenizer, ids: list[int]) -> tuple[list[str], list[str], list[list[Any] | None], list[str]]:
    """The whole sequence (prompt and new tokens) as the page writes it: labels (a byte-level
    BPE's pieces of one character as that character, "猫 1/3"), the terminal's display ("<e7 8c>"),
    which character each piece belongs to, and the vocabulary's strings."""
    vocab = [tokenizer.token(i) for i in ids]
    display = tokenizer.display(ids, vocab)
    characters = tokenizer.characters(ids, display) if tokenizer.fast is not None else []
    return token_labels(display, characters), display, pieces(len(ids), characters), vocab


def data(watch) -> dict[str, Any]:
    """Everything the page draws but the attention (``attention_blob``), from a Watch that has run
    with ``attention=True``."""
    gen = watch.generation
    if len(watch.looked) != len(gen.steps):
        raise ValueError("the page needs the steps' attention: run the Watch with attention=True")
    config = watch.twin.config
    P = len(gen.prompt_ids)
    labels, display, piece, vocab = tokens(watch.tokenizer, gen.ids)
    tok = watch.tokenizer

    def candidate(c) -> dict[str, Any]:
        return {"id": c.id, "display": tok.display([c.id], [c.token])[0], "prob": _round(c.prob), "model_prob": _round(c.model_prob)}

    steps = []
    for choice, looked in zip(gen.steps, watch.looked):
        c = choice.chosen
        steps.append({
            "index": choice.index,
            "id": c.id,
            "token": labels[P + choice.index],
            "display": display[P + choice.index],
            "prob": _round(c.prob),
            "model_prob": _round(c.model_prob),
            "kept": choice.kept,
            "top": [candidate(a) for a in choice.top],
            "keys": looked.keys,
            "cache_bytes": looked.cache_bytes,
        })
    s = gen.settings
    return {
        "model": gen.model,
        "model_class": gen.model_class,
        "model_type": config.model_type,
        "prompt": gen.prompt,
        "chat": gen.chat,
        "prompt_len": P,
        "ids": list(gen.ids),
        "tokens": labels,
        "display_tokens": display,
        "pieces": piece,
        "vocab_tokens": vocab,
        "num_layers": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        "vocab_size": gen.vocab_size,
        "sampling": bool(s["do_sample"]),
        "processors": list(gen.processors),
        "seed": gen.seed,
        "max_new_tokens": gen.max_new_tokens,
        "stopped_at_eos": gen.stopped_at_eos,
        "text": gen.text,
        "steps": steps,
    }


def attention_blob(watch) -> str:
    """Each step's (layers, heads, keys) attention of its query, one after another, as base64 of
    little-endian uint16 (round(p * 65535): a step of 1.5e-5)."""
    flat = torch.cat([looked.attention.reshape(-1) for looked in watch.looked]) if watch.looked else torch.zeros(0)
    q = torch.round(flat.float().clamp(0, 1) * 65535).to(torch.int32)
    return base64.b64encode(q.numpy().astype("<u2").tobytes()).decode("ascii")


def page(watch) -> str:
    """The whole page: one HTML document with its data, style and script inside."""
    gen = watch.generation
    return explorer.document(explorer.title("annotate generate", gen.model_class, gen.prompt), ("explorer.css", "explorer_generate.css"),
                             "explorer_generate.js", _script_json(data(watch)), attention_blob(watch))


def write(watch, path: str | Path) -> int:
    """Write the page to ``path``; returns its size in bytes."""
    return explorer.write(watch, path, page)
