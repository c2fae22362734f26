"""Decoding with the cache: the twin of what transformers' ``generate`` does for GPT-2
(generation/utils.py, GenerationMixin._sample), written out as one loop, greedy or sampled.

Sampling follows transformers token for token: after the same ``torch.manual_seed``, the same
ids. Each step takes the last position's logits as an fp32 copy, runs the logits processors in
the order ``_get_logits_processor`` builds them (temperature, top-k, top-p: the twins of
generation/logits_process.py below), and draws with ``torch.multinomial(softmax(scores), 1)``.

Defaults are transformers' global generation defaults (GenerationConfig._get_default_generation_params):
``temperature=1.0``, ``top_k=50``, ``top_p=1.0``, so ``do_sample=True`` alone samples from the 50
likeliest tokens, as ``hf_model.generate(do_sample=True)`` does. As in transformers, a keyword
given as None switches its processor off (``top_k=None`` or ``top_k=0``: no top-k). ``generate``
reads nothing from the checkpoint: a checkpoint's generation_config.json (or config.json) can
set other defaults in transformers (eos_token_id, top_k, ...); ``checkpoint_settings`` reads
them, for callers that want transformers' defaults for a given checkpoint (annotate generate).

Left out: beam search, assisted and contrastive decoding, stopping strings, and every logits
processor not named here (repetition penalty, min-p, typical-p, ...; ``checkpoint_settings``
refuses a checkpoint that asks for one).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cache import KVCache

# ---------------------------------------------------------------------------------------------
# The logits processors (generation/logits_process.py): (B, V) scores in, (B, V) scores out.


class TemperatureLogitsWarper:
    """Twin of TemperatureLogitsWarper: divide the scores by the temperature (< 1 sharpens the
    distribution, > 1 flattens it)."""

    def __init__(self, temperature: float):
        # transformers also refuses an int (temperature=2); it divides the same, so it is accepted here.
        if not _is_number(temperature) or not temperature > 0:  # (NaN is not > 0)
            raise ValueError(f"`temperature` (={temperature}) has to be a strictly positive float, otherwise your next token scores will be invalid."
                             + (" If you're looking for greedy decoding strategies, set `do_sample=False`." if temperature == 0 else ""))
        self.temperature = temperature

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature  # (B, V)


class TopKLogitsWarper:
    """Twin of TopKLogitsWarper: keep the ``top_k`` highest scores (and every score tied with the
    k-th), set the rest to ``filter_value``."""

    def __init__(self, top_k: int, filter_value: float = -float("inf"), min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0:
            raise ValueError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        top_k = min(self.top_k, scores.size(-1))
        kth = torch.topk(scores, top_k)[0][..., -1, None]  # (B, 1): the k-th highest score
        return scores.masked_fill(scores < kth, self.filter_value)  # (B, V)


class TopPLogitsWarper:
    """Twin of TopPLogitsWarper (nucleus sampling): keep the smallest set of likeliest tokens whose
    probabilities add up to ``top_p`` or more, set the rest to ``filter_value``.

    As transformers does it: sort ascending, and drop the tokens whose cumulative probability,
    counted from the least likely, is still <= 1 - top_p; the ``min_tokens_to_keep`` likeliest
    always stay.
    """

    def __init__(self, top_p: float, filter_value: float = -float("inf"), min_tokens_to_keep: int = 1):
        # transformers checks only 0 <= top_p <= 1 here, and never builds the warper for top_p >= 1
        # (so 1.5 or NaN pass silently there); generate() refuses those before they get here.
        top_p = float(top_p)
        if top_p < 0 or top_p > 1.0:
            raise ValueError(f"`top_p` has to be a float > 0 and < 1, but is {top_p}")
        if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
            raise ValueError(f"`min_tokens_to_keep` has to be a positive integer, but is {min_tokens_to_keep}")
        self.top_p = top_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)  # (B, V), least likely first
        cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
        sorted_indices_to_remove = cumulative_probs <= (1 - self.top_p)  # (B, V)
        sorted_indices_to_remove[..., -self.min_tokens_to_keep :] = 0  # the likeliest always stay
        indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)  # (B, V), vocabulary order
        return scores.masked_fill(indices_to_remove, self.filter_value)  # (B, V)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def logits_processors(
    do_sample: bool, temperature: float | None = 1.0, top_k: int | None = 50, top_p: float | None = 1.0
) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The processors transformers' ``_get_logits_processor`` builds for these settings, in its
    order; only those that change anything (and none when greedy: they are "warpers", applied
    with sampling only). Refuses what transformers refuses, and the top-p values it silently ignores."""
    if not do_sample:
        return []
    if top_p is not None and not (_is_number(top_p) and 0 <= top_p <= 1):  # (NaN fails both)
        raise ValueError(f"`top_p` has to be a number between 0 and 1 (1: no top-p filtering), but is {top_p}")
    processors: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if temperature is not None and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k is not None and top_k != 0:
        processors.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    return processors


# ---------------------------------------------------------------------------------------------
# The loop.


@dataclasses.dataclass
class Step:
    """What one decoding step saw and chose; ``generate(..., on_step=f)`` calls ``f`` with one per step."""

    index: int  # 0 for the first new token
    logits: torch.Tensor  # (B, V) fp32: the model's scores for the next token
    scores: torch.Tensor  # (B, V) after the logits processors (the logits themselves when greedy); filtered: -inf
    probs: torch.Tensor  # (B, V) softmax(scores): what multinomial drew from (greedy: computed for the watcher)
    next_tokens: torch.Tensor  # (B,) the chosen ids (a row finished earlier: pad)


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    do_sample: bool = False,
    temperature: float | None = 1.0,
    top_k: int | None = 50,
    top_p: float | None = 1.0,
    on_step: Callable[[Step], None] | None = None,
) -> torch.Tensor:
    """The (B, T + new) ids of HF's ``generate`` called with the same settings (and, when
    sampling, after the same ``torch.manual_seed``).

    The prompt goes through once, then one token per step against the cache. As in HF: a
    left-padded prompt's positions count from its first real token (padding slots get 0);
    only the last position's logits are computed; with ``eos_token_id``, a row that has
    produced it gets ``pad_token_id`` (default: eos) from then on, and decoding stops early
    once every row has. Without ``eos_token_id`` it always runs ``max_new_tokens`` steps.

    ``do_sample=False``: the likeliest token (argmax); ``temperature``, ``top_k`` and ``top_p``
    are ignored, as transformers ignores them (it warns; so does this). ``do_sample=True``: drawn
    from softmax of the processed scores (see ``logits_processors`` and the module docstring for
    the defaults). ``on_step``: called after each step with a ``Step`` (for watching; the plain
    path computes nothing extra).
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
        raise ValueError(f"`max_new_tokens` must be greater than 0, but is {max_new_tokens}.")
    if not isinstance(do_sample, bool):  # transformers treats do_sample=1 as greedy in one place, sampling in another
        raise ValueError(f"`do_sample` must be True or False, not {do_sample!r}")
    if not do_sample and (temperature, top_k, top_p) != (1.0, 50, 1.0):
        warnings.warn("temperature, top_k and top_p only apply with do_sample=True; ignored, as transformers does", stacklevel=2)
    processors = logits_processors(do_sample, temperature, top_k, top_p)

    B, T = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if pad_token_id is None:
        pad_token_id = eos_token_id
    # GenerationMixin._prepare_position_ids_for_generation: 0, 1, 2, ... from the first real token.
    position_ids = attention_mask.long().cumsum(-1) - 1  # (B, T)
    position_ids = position_ids.masked_fill(attention_mask == 0, 0)  # (B, T)
    unfinished = torch.ones(B, dtype=torch.long, device=input_ids.device)  # (B,): 1 until eos
    cache = KVCache()
    new_ids = input_ids  # the whole prompt first, then only the newest token
    for step in range(max_new_tokens):
        # HF's generate asks for the last position only (logits_to_keep=1): a (B, 1, C) product.
        logits = model(new_ids, attention_mask, cache, position_ids, logits_to_keep=1).logits  # (B, 1, V)
        next_token_logits = logits[:, -1].to(dtype=torch.float32, copy=True)  # (B, V): HF's fp32 copy
        scores = next_token_logits
        for processor in processors:  # LogitsProcessorList: each one on the previous one's output
            scores = processor(scores)  # (B, V)
        probs = None
        if do_sample:
            probs = nn.functional.softmax(scores, dim=-1)  # (B, V)
            next_tokens = torch.multinomial(probs, num_samples=1).squeeze(1)  # (B,)
        else:
            next_tokens = torch.argmax(scores, dim=-1)  # (B,)
        if eos_token_id is not None:
            next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)  # finished rows: pad
        if on_step is not None:
            probs = nn.functional.softmax(scores, dim=-1) if probs is None else probs  # (B, V)
            on_step(Step(step, next_token_logits, scores, probs, next_tokens))
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)  # (B, T + steps)
        if eos_token_id is not None:
            unfinished = unfinished & (next_tokens != eos_token_id).long()
            if not unfinished.any():
                break
        new_ids = next_tokens[:, None]  # (B, 1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=-1)  # (B, S + 1)
        position_ids = position_ids[:, -1:] + 1  # (B, 1)
    return input_ids


# ---------------------------------------------------------------------------------------------
# A checkpoint's own defaults.

SETTINGS = ("do_sample", "temperature", "top_k", "top_p", "eos_token_id", "pad_token_id")  # what generate() takes
# GenerationConfig fields that change the tokens, with the value that changes nothing (None, the
# unset value, is always fine): a checkpoint setting another value asks for something generate()
# does not do. Fields not listed change nothing here (output_*, max_length: max_new_tokens is given, ...).
NEUTRAL: dict[str, Any] = {
    "num_beams": 1, "num_beam_groups": 1, "num_return_sequences": 1, "penalty_alpha": None, "constraints": None,
    "force_words_ids": None, "dola_layers": None, "prompt_lookup_num_tokens": None, "assistant_early_exit": None,
    "use_mtp": False, "guidance_scale": 1, "sequence_bias": None, "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None, "min_length": 0, "min_new_tokens": 0, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "remove_invalid_values": False, "exponential_decay_length_penalty": None,
    "suppress_tokens": None, "begin_suppress_tokens": None, "top_h": None, "min_p": None, "typical_p": 1.0,
    "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "watermarking_config": None, "renormalize_logits": False,
    "use_cache": True, "cache_implementation": "dynamic", "prefill_chunk_size": None, "max_time": None,
    "stop_strings": None, "token_healing": False,
}


def checkpoint_settings(folder: str | Path) -> dict[str, Any]:
    """The ``generate`` keywords (of ``SETTINGS``) a checkpoint sets for transformers' generate:
    from generation_config.json, else from config.json (as ``adjust_generation_fn`` reads them).
    Only keys the file sets to a value; the caller's own values go on top. A ValueError if the file
    asks for something ``generate`` doesn't do (beam search, a repetition penalty, ...)."""
    folder = Path(folder)
    file = folder / "generation_config.json"
    if not file.is_file():
        file = folder / "config.json"
    try:
        config = json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(file)!r} is not valid JSON: {e}") from None
    for key, neutral in NEUTRAL.items():
        value = config.get(key)
        if value is not None and value != neutral:
            raise ValueError(f"{file.name} sets {key}={value!r}, which this generate does not implement")
    settings = {key: config[key] for key in SETTINGS if config.get(key) is not None}
    for key in ("eos_token_id", "pad_token_id"):
        if isinstance(settings.get(key), list):  # several eos ids: transformers stops at any of them
            if len(settings[key]) != 1:
                raise ValueError(f"{file.name} sets {key}={settings[key]}: more than one id is not supported")
            settings[key] = settings[key][0]
    return settings


class GenerationMixin:
    """``model.generate(...)`` on a twin's causal LM head (GPT2LMHeadModel, LlamaForCausalLM), as
    transformers' heads get it from its GenerationMixin: decoding with the cache, ``generate`` above."""

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return generate(self, input_ids, max_new_tokens, attention_mask, **kwargs)
