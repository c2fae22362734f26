"""Translating with the encoder-decoder twins (reimpl/marian.py, reimpl/bart.py): the twin of what
transformers' ``generate`` does for MarianMTModel and BartForConditionalGeneration
(generation/utils.py: GenerationMixin.generate, _sample, _beam_search), token for token.

The encoder reads the source once. The decoder starts from ``decoder_start_token_id`` (Marian: the
pad token; BART: ``</s>``) and is fed one token per step against its cache: its self-attention's
keys and values grow by one token a step, its cross-attention's are computed from the encoder's
output at the first step and kept (EncoderDecoderCache). Each step takes the last position's
logits as an fp32 copy, runs the logits processors (the twins below, in the order
``_get_logits_processor`` builds them), and chooses:

- greedy (``num_beams=1``): the argmax (``do_sample=True``: a draw, as reimpl/generation.py);
  a row that has produced eos gets ``pad_token_id`` from then on, and decoding stops once every
  row has, or at ``max_length``.
- beam search (``num_beams=k``): transformers' vectorised beam search. Each source keeps k running
  beams, scored by the sum of their tokens' (processed) log-probabilities; every step the 2k best
  continuations of all k beams are taken; those that end (eos, or ``max_length``) go to the
  source's k best finished hypotheses, scored by sum / length ** ``length_penalty``; the k best
  that don't end run on (the cache's rows reordered to follow them). ``early_stopping``: True
  stops a source once it has k finished hypotheses; False stops it once the best running beam,
  as long as it is now, cannot beat the worst finished one; "never" assumes it could still grow
  to ``max_length`` (with a positive length penalty) before giving up.

The ids returned are transformers': (B * num_return_sequences, length), the start token first,
finished rows padded (greedy: ``pad_token_id``; beams: the fill value, see ``_beam_search``).

Defaults are transformers' global ones (GenerationConfig._get_default_generation_params): 20 new
tokens, greedy, no processors. A checkpoint's generation_config.json (opus-mt: ``num_beams=4``,
``max_length=512``, ``bad_words_ids=[[pad]]``, ``forced_eos_token_id``) changes them in
transformers; ``settings_from`` reads it into keywords for ``generate`` and refuses what this
generate does not do. The special ids (start, eos, pad) default to the model's config, as a
generation config made ``from_model_config`` holds them.

Left out: sampling with beams, diverse (group) beam search, constrained beam search, repetition
penalties, and every processor not twinned here (``settings_from`` refuses them); output scores
(``on_step`` shows them); ``decoder_input_ids`` given by the caller (a forced prefix).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import generation, versions
from .cache import EncoderDecoderCache
from .outputs import BaseModelOutput
from .states import recording

# ---------------------------------------------------------------------------------------------
# The logits processors (generation/logits_process.py): called with the decoder's ids so far
# (N, t) and the scores (N, V) of the next token, they return new (N, V) scores. Beam search
# calls them on log-probabilities, greedy on the logits themselves.


class NoRepeatNGramLogitsProcessor:
    """Twin of NoRepeatNGramLogitsProcessor: no n-gram (of ``ngram_size`` tokens) twice in a row's
    ids. The last n - 1 ids are a prefix; wherever it occurred earlier, the token that followed it
    then is banned now (-inf).

    transformers 5.x matches the prefix against every window at once (below); 4.57 builds a dict
    of n-grams per row (``_get_ngrams``) and looks the prefix up. The banned set is the same, and
    both write -inf, so this one computation stands for both.
    """

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"`ngram_size` has to be a strictly positive integer, but is {ngram_size}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cur_len = input_ids.shape[-1]
        if cur_len < self.ngram_size:  # no complete n-gram yet: nothing to ban
            return scores
        prefix = input_ids[:, cur_len + 1 - self.ngram_size :]  # (N, n-1): the n-gram being completed
        windows = input_ids.unfold(dimension=1, size=self.ngram_size, step=1)  # (N, t-n+1, n): every earlier n-gram
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (N, t-n+1): began as the prefix does
        vocab_size = scores.shape[-1]
        banned_mask = scores.new_zeros((scores.shape[0], vocab_size + 1), dtype=torch.bool)  # a spare column for non-matches
        banned_mask.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
        return scores.masked_fill(banned_mask[:, :vocab_size], -float("inf"))  # (N, V)


class NoBadWordsLogitsProcessor:
    """Twin of NoBadWordsLogitsProcessor (a SequenceBiasLogitsProcessor with bias -inf): a bad word
    of one token is never chosen; one of several tokens is cut before its last token, where the
    row's ids end with the others. A bad word that is exactly an eos id is dropped (eos stays allowed).

    As transformers: a bias tensor, 0 or -inf, added to the scores. (4.57 adds each longer word's
    bias in turn, 5.x groups them by length with ``index_add_``; the sums are the same -inf.)
    """

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: list[int] | None = None):
        if not isinstance(bad_words_ids, list) or len(bad_words_ids) == 0:
            raise ValueError(f"`bad_words_ids` has to be a non-empty list, but is {bad_words_ids}.")
        if any(not isinstance(bad_word_ids, list) for bad_word_ids in bad_words_ids):
            raise ValueError(f"`bad_words_ids` has to be a list of lists, but is {bad_words_ids}.")
        if any(any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in ids) or not ids for ids in bad_words_ids):
            raise ValueError(f"Each list in `bad_words_ids` has to be a list of positive integers, but is {bad_words_ids}.")
        if eos_token_id is not None:
            bad_words_ids = [ids for ids in bad_words_ids if all(ids != [i] for i in eos_token_id)]
        self.bad_words = list(dict.fromkeys(tuple(ids) for ids in bad_words_ids))  # the dict's keys in transformers
        if not self.bad_words:  # SequenceBiasLogitsProcessor refuses an empty dict
            raise ValueError(f"`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists but is {{}}.")

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab_size = scores.shape[-1]
        if any(i >= vocab_size for word in self.bad_words for i in word):
            raise ValueError(f"The model vocabulary size is {vocab_size}, but the following tokens were being biased: "
                             f"{[i for word in self.bad_words for i in word if i >= vocab_size]}")
        length_1_bias = torch.zeros((vocab_size,), dtype=torch.float, device=scores.device)  # (V,)
        single_token_ids = [word[0] for word in self.bad_words if len(word) == 1]
        if single_token_ids:
            length_1_bias[single_token_ids] = -float("inf")
        bias = torch.zeros_like(scores)  # (N, V)
        bias += length_1_bias
        for word in self.bad_words:
            if len(word) == 1:  # done above
                continue
            if versions.V4:  # transformers 4.57 skips a word longer than the ids so far
                if len(word) > input_ids.shape[1]:
                    continue
            elif len(word) - 1 > input_ids.shape[1]:  # 5.x only one whose prefix is: a word one longer is matched
                continue  # against all the ids ([start, x] bans x as the first token; 4.57 never bans it)
            prefix = torch.tensor(word[:-1], dtype=input_ids.dtype, device=input_ids.device)  # (n-1,)
            matching_rows = (input_ids[:, -len(prefix) :] == prefix).all(dim=1)  # (N,): the ids end with the prefix
            bias[:, word[-1]] += torch.where(matching_rows, -float("inf"), 0.0)
        return scores + bias  # (N, V)


class MinLengthLogitsProcessor:
    """Twin of MinLengthLogitsProcessor: no eos while the decoder's ids (start token included) are
    fewer than ``min_length``."""

    def __init__(self, min_length: int, eos_token_id: list[int]):
        if not isinstance(min_length, int) or min_length < 0:
            raise ValueError(f"`min_length` has to be a non-negative integer, but is {min_length}")
        self.min_length = min_length
        self.eos_token_id = torch.tensor(eos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab_tensor = torch.arange(scores.shape[-1], device=scores.device)  # (V,)
        eos_token_mask = torch.isin(vocab_tensor, self.eos_token_id.to(scores.device))  # (V,)
        if input_ids.shape[-1] < self.min_length:
            return torch.where(eos_token_mask, -math.inf, scores)  # (N, V)
        return scores.clone()


class MinNewTokensLengthLogitsProcessor(MinLengthLogitsProcessor):
    """Twin of MinNewTokensLengthLogitsProcessor: no eos before ``min_new_tokens`` tokens after the
    first ``prompt_length_to_skip`` (here the start token). transformers also turns
    ``min_new_tokens`` into ``min_length`` (_prepare_generated_length), so both run: the same mask twice."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id: list[int]):
        if not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"`min_new_tokens` has to be a positive integer, but is {min_new_tokens}")
        super().__init__(prompt_length_to_skip + min_new_tokens, eos_token_id)


class ForcedBOSTokenLogitsProcessor:
    """Twin of ForcedBOSTokenLogitsProcessor: the first token after the start token is
    ``bos_token_id`` (scores -inf but its 0). mBART-style models name the target language so."""

    def __init__(self, bos_token_id: int):
        self.bos_token_id = bos_token_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == 1:
            scores = torch.full_like(scores, -math.inf)  # (N, V)
            scores[:, self.bos_token_id] = 0
        return scores


class ForcedEOSTokenLogitsProcessor:
    """Twin of ForcedEOSTokenLogitsProcessor: the last token that fits in ``max_length`` is eos
    (scores -inf but the eos ids' 0), so a translation cut by the length limit still ends."""

    def __init__(self, max_length: int, eos_token_id: list[int]):
        if any(not isinstance(i, int) or i < 0 for i in eos_token_id):
            raise ValueError(f"`eos_token_id` has to be a list of positive integers, but is {eos_token_id}")
        self.max_length = max_length
        self.eos_token_id = torch.tensor(eos_token_id)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] == self.max_length - 1:
            scores = torch.full_like(scores, -math.inf)  # (N, V)
            scores[:, self.eos_token_id.to(scores.device)] = 0
        return scores


class LogitNormalization:
    """Twin of LogitNormalization (``renormalize_logits=True``, as opus-mt's generation configs set
    it): log-softmax again after the others, so that a beam's score stays a log-probability once
    tokens have been banned. Always the last processor."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.log_softmax(dim=-1)


class Warper:
    """A sampling warper of reimpl/generation.py (temperature, top-k, top-p), called as a processor."""

    def __init__(self, warper: Callable[[torch.Tensor], torch.Tensor]):
        self.warper = warper

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.warper(scores)


Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def logits_processor(
    max_length: int,
    eos_token_id: list[int] | None,
    min_length: int = 0,
    min_new_tokens: int | None = None,
    no_repeat_ngram_size: int | None = 0,
    bad_words_ids: list[list[int]] | None = None,
    forced_bos_token_id: int | None = None,
    forced_eos_token_id: int | list[int] | None = None,
    do_sample: bool = False,
    temperature: float | None = 1.0,
    top_k: int | None = 50,
    top_p: float | None = 1.0,
    renormalize_logits: bool = False,
) -> list[Processor]:
    """The processors ``_get_logits_processor`` builds for these settings, in its order (the same in
    4.57 and 5.x for these): only those that change anything. ``max_length`` as prepared (start token
    counted); min_length and min_new_tokens act only with an eos id, as in transformers."""
    processors: list[Processor] = []
    if no_repeat_ngram_size is not None and no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    if bad_words_ids is not None:
        processors.append(NoBadWordsLogitsProcessor(bad_words_ids, eos_token_id))
    if min_length is not None and eos_token_id is not None and min_length > 0:
        processors.append(MinLengthLogitsProcessor(min_length, eos_token_id))
    if min_new_tokens is not None and eos_token_id is not None and min_new_tokens > 0:
        processors.append(MinNewTokensLengthLogitsProcessor(1, min_new_tokens, eos_token_id))
    if forced_bos_token_id is not None:
        processors.append(ForcedBOSTokenLogitsProcessor(forced_bos_token_id))
    if forced_eos_token_id is not None:
        processors.append(ForcedEOSTokenLogitsProcessor(max_length, _id_list(forced_eos_token_id)))
    # the "warpers", with sampling only (never with beams here: settings refuse it); min_tokens_to_keep 1
    processors += [Warper(w) for w in generation.logits_processors(do_sample, temperature, top_k, top_p)]
    if renormalize_logits is True:
        processors.append(LogitNormalization())
    return processors


def _id_list(ids: int | list[int]) -> list[int]:
    """One id or several, as a list (transformers makes a 1-D tensor of them)."""
    return [ids] if isinstance(ids, int) else list(ids)


# ---------------------------------------------------------------------------------------------
# The stopping criteria (generation/stopping_criteria.py): which sequences are done.


def stopping_criteria(sequences: torch.Tensor, max_length: int, eos_token_id: torch.Tensor | None) -> torch.Tensor:
    """(N,) bool for (N, t) ids: StoppingCriteriaList of MaxLengthCriteria (all of them, once t
    reaches ``max_length``) and EosTokenCriteria (those whose last id is an eos id)."""
    is_done = torch.full((sequences.shape[0],), sequences.shape[1] >= max_length, dtype=torch.bool, device=sequences.device)
    if eos_token_id is not None:
        is_done = is_done | torch.isin(sequences[:, -1], eos_token_id)
    return is_done


# ---------------------------------------------------------------------------------------------
# What a watcher sees.


@dataclasses.dataclass
class Seq2SeqStep:
    """One decoding step; ``generate(..., on_step=f)`` calls ``f`` with one per step. B sources,
    k beams (1 when greedy), t = index + 2 target tokens so far (the start token first).
    Row [b, j] is source b's j-th running beam after this step (greedy: its one row)."""

    index: int  # 0 for the first new token
    sequences: torch.Tensor  # (B, k, t) each running beam's tokens, the chosen one last
    scores: torch.Tensor  # (B, k) fp32 running score: the sum of the chosen tokens' log-probabilities
    # (beams: transformers' running_beam_scores, of the processed log-probs; greedy: log_softmax of the
    # processed scores, computed for the watcher; a finished greedy row keeps its score)
    next_tokens: torch.Tensor  # (B, k) the chosen tokens (greedy: pad for a finished row)
    beam_parents: torch.Tensor  # (B, k) which beam of the previous step each one continues (greedy: 0)
    cross_attentions: list[torch.Tensor]  # per decoder layer, (B, k, nh, S): what the new token's
    # position attended to in the source (the parent beam's query), probabilities over S
    finished: torch.Tensor  # (B, k) bool: greedy, the row has ended; beams, finished hypothesis slot j is filled
    finished_scores: torch.Tensor | None = None  # (B, k) beams: the finished hypotheses' scores
    # (sum / length ** length_penalty), best first; -1e9 for an empty slot


def _cross_attentions(model: nn.Module, states: dict[str, torch.Tensor], B: int, parents: torch.Tensor) -> list[torch.Tensor]:
    """The recorded cross-attention probabilities of this step's position, per layer, (B, k, nh, S),
    rows following ``parents`` (B, k) so that row [b, j] is what beam j's new token came from."""
    out = []
    for layer in model.model.decoder.layers:
        probs = states.get(f"{layer.encoder_attn._annotate_path}.probs")  # (B * k_fed, nh, 1, S)
        if probs is None:  # a layer skipped (layerdrop, training only)
            continue
        N, nh, _, S = probs.shape
        probs = probs[:, :, -1].reshape(B, N // B, nh, S)  # (B, k_fed, nh, S): the new position's row
        index = parents.long()[:, :, None, None].expand(-1, -1, nh, S)  # (B, k, nh, S)
        out.append(torch.gather(probs, 1, index))  # (B, k, nh, S)
    return out


# ---------------------------------------------------------------------------------------------
# generate.


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_length: int | None = None,
    max_new_tokens: int | None = None,
    min_length: int | None = 0,
    min_new_tokens: int | None = None,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    num_return_sequences: int = 1,
    no_repeat_ngram_size: int | None = 0,
    bad_words_ids: list[list[int]] | None = None,
    forced_bos_token_id: int | None = None,
    forced_eos_token_id: int | list[int] | None = None,
    do_sample: bool = False,
    temperature: float | None = 1.0,
    top_k: int | None = 50,
    top_p: float | None = 1.0,
    decoder_start_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    renormalize_logits: bool = False,
    on_step: Callable[[Seq2SeqStep], None] | None = None,
) -> torch.Tensor:
    """The ids of transformers' ``model.generate(input_ids, attention_mask=..., <same keywords>)``
    (after the same ``torch.manual_seed`` when sampling): (B * num_return_sequences, length), the
    decoder start token first.

    ``input_ids`` (B, S): the sources, padded; ``attention_mask`` (B, S) their 1/0 mask.
    ``max_length`` counts the start token; ``max_new_tokens`` (which wins) does not; neither: 20
    new tokens, at most ``max_position_embeddings`` in all. The special ids given as None are the
    model config's. ``on_step``: called after each step with a ``Seq2SeqStep`` (the plain path
    records nothing)."""
    config = model.config
    # GenerationConfig.validate and generate's own checks, for what this generate takes
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"`num_beams` has to be a positive integer, but is {num_beams}")
    if do_sample and num_beams > 1:
        raise ValueError("beam search with sampling (do_sample=True, num_beams > 1) is not implemented here")
    if early_stopping not in {True, False, "never"}:
        raise ValueError(f"`early_stopping` must be a boolean or 'never', but is {early_stopping}.")
    if num_beams == 1 and num_return_sequences != 1 and not do_sample:
        raise ValueError("Greedy methods without beam search do not support `num_return_sequences` different than 1 "
                         f"(got {num_return_sequences}).")
    if do_sample and num_return_sequences != 1:
        raise ValueError("sampling several sequences per source (num_return_sequences > 1) is not implemented here")
    if num_return_sequences > num_beams and num_beams > 1:
        raise ValueError(f"`num_return_sequences` ({num_return_sequences}) has to be smaller or equal to `num_beams` ({num_beams}).")
    if max_new_tokens is not None and max_new_tokens <= 0:
        raise ValueError(f"`max_new_tokens` must be greater than 0, but is {max_new_tokens}.")

    # GenerationMixin._prepare_special_tokens: the ids, eos as a list (several are allowed)
    decoder_start_token_id = _default(decoder_start_token_id, getattr(config, "decoder_start_token_id", None))
    bos_token_id = _default(bos_token_id, getattr(config, "bos_token_id", None))
    eos_token_id = _default(eos_token_id, getattr(config, "eos_token_id", None))
    pad_token_id = _default(pad_token_id, getattr(config, "pad_token_id", None))
    eos_token_id = _id_list(eos_token_id) if eos_token_id is not None else None
    if pad_token_id is None and eos_token_id is not None:
        pad_token_id = eos_token_id[0]  # as transformers: pad with eos
    if decoder_start_token_id is None:
        decoder_start_token_id = bos_token_id  # transformers falls back to bos (#30892)
    if decoder_start_token_id is None:
        raise ValueError("`decoder_start_token_id` or `bos_token_id` has to be defined for encoder-decoder generation.")

    B = input_ids.shape[0]
    device = input_ids.device
    if attention_mask is None and versions.V4:
        # transformers 4.57 infers the source's mask from its padding (_prepare_attention_mask_for_generation):
        # where pad appears and pad is not eos; 5.x leaves it None for encoder-decoders (every token attended to)
        can_infer = pad_token_id is not None and bool((input_ids == pad_token_id).any()) and pad_token_id not in (eos_token_id or [])
        attention_mask = input_ids.ne(pad_token_id).long() if can_infer else torch.ones_like(input_ids)

    # GenerationMixin._prepare_generated_length (the decoder's ids so far: the start token alone)
    input_ids_length = 1
    if max_new_tokens is not None:
        max_length = max_new_tokens + input_ids_length
    elif max_length is None:  # by default 20 new tokens, within the position table
        max_length = min(20 + input_ids_length, config.max_position_embeddings)
    if min_new_tokens is not None:
        min_length = min_new_tokens + input_ids_length
    if input_ids_length >= max_length:  # _validate_generated_length
        raise ValueError(f"Input length of decoder_input_ids is {input_ids_length}, but `max_length` is set to {max_length}. "
                         "This can lead to unexpected behavior. You should consider increasing `max_length` or, better yet, "
                         "setting `max_new_tokens`.")
    if not do_sample and (temperature, top_k, top_p) != (1.0, 50, 1.0):
        warnings.warn("temperature, top_k and top_p only apply with do_sample=True; ignored, as transformers does", stacklevel=3)
    processors = logits_processor(max_length, eos_token_id, min_length, min_new_tokens, no_repeat_ngram_size, bad_words_ids,
                                  forced_bos_token_id, forced_eos_token_id, do_sample, temperature, top_k, top_p, renormalize_logits)

    # _prepare_encoder_decoder_kwargs_for_generation: the encoder, once, over the B sources
    encoder_outputs = model.get_encoder()(input_ids, attention_mask)  # [0]: (B, S, C)
    # _prepare_decoder_input_ids_for_generation: every target starts with the start token
    decoder_input_ids = torch.full((B, 1), decoder_start_token_id, dtype=torch.long, device=device)  # (B, 1)
    # _expand_inputs_for_generation: each source's row repeated once per beam (after the encoder ran)
    if num_beams > 1:
        decoder_input_ids = decoder_input_ids.repeat_interleave(num_beams, dim=0)  # (B * k, 1)
        encoder_outputs = BaseModelOutput(encoder_outputs[0].repeat_interleave(num_beams, dim=0))  # (B * k, S, C)
        attention_mask = attention_mask.repeat_interleave(num_beams, dim=0) if attention_mask is not None else None  # (B * k, S)
    eos = torch.tensor(eos_token_id, device=device) if eos_token_id is not None else None

    def decoder_step(ids: torch.Tensor, cache: EncoderDecoderCache) -> tuple[torch.Tensor, dict | None]:
        """(N, V) fp32 logits of the next token after ``ids``'s last one (the cache holds the rest),
        and, for a watcher, the step's recorded states."""
        inputs = dict(attention_mask=attention_mask, decoder_input_ids=ids[:, -1:], encoder_outputs=encoder_outputs, cache=cache)
        if on_step is None:  # the plain path: nothing recorded
            return model(**inputs).logits[:, -1].to(dtype=torch.float32, copy=True), None  # (N, V): transformers' fp32 copy
        with recording() as states:  # for the watcher: the step's named states, the cross-attention among them
            logits = model(**inputs).logits  # (N, 1, V)
        return logits[:, -1].to(dtype=torch.float32, copy=True), states

    if num_beams == 1:
        return _sample(model, decoder_input_ids, decoder_step, processors, max_length, eos, pad_token_id, do_sample, on_step)
    return _beam_search(model, decoder_input_ids, decoder_step, processors, max_length, eos, pad_token_id, num_beams,
                        length_penalty, early_stopping, num_return_sequences, on_step)


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _sample(model, input_ids, decoder_step, processors, max_length, eos, pad_token_id, do_sample, on_step) -> torch.Tensor:
    """GenerationMixin._sample: one token per row per step, argmax (or a draw) of the processed scores."""
    B = input_ids.shape[0]
    unfinished_sequences = torch.ones(B, dtype=torch.long, device=input_ids.device)  # (B,): 1 until eos
    cache = EncoderDecoderCache()
    running_scores = torch.zeros(B, device=input_ids.device) if on_step is not None else None
    step = 0
    while True:
        next_token_logits, states = decoder_step(input_ids, cache)  # (B, V)
        next_token_scores = next_token_logits
        for processor in processors:  # LogitsProcessorList: each on the previous one's output
            next_token_scores = processor(input_ids, next_token_scores)  # (B, V)
        if do_sample:
            probs = nn.functional.softmax(next_token_scores, dim=-1)  # (B, V)
            next_tokens = torch.multinomial(probs, num_samples=1).squeeze(1)  # (B,)
        else:
            next_tokens = torch.argmax(next_token_scores, dim=-1)  # (B,)
        if eos is not None:  # finished rows get pad
            next_tokens = next_tokens * unfinished_sequences + pad_token_id * (1 - unfinished_sequences)
        if on_step is not None:
            chosen = nn.functional.log_softmax(next_token_scores, dim=-1).gather(1, next_tokens[:, None])[:, 0]  # (B,)
            running_scores = running_scores + torch.where(unfinished_sequences.bool(), chosen, 0.0)  # (B,)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)  # (B, t + 1)
        unfinished_sequences = unfinished_sequences & ~stopping_criteria(input_ids, max_length, eos)
        if on_step is not None:
            zeros = torch.zeros(B, 1, dtype=torch.long, device=input_ids.device)
            on_step(Seq2SeqStep(step, input_ids[:, None], running_scores[:, None], next_tokens[:, None], zeros,
                                _cross_attentions(model, states, B, zeros), ~unfinished_sequences.bool()[:, None]))
        if unfinished_sequences.max() == 0:  # StopCheck: every row has ended (eos or max_length)
            break
        step += 1
    return input_ids


# ---------------------------------------------------------------------------------------------
# Beam search: GenerationMixin._beam_search and its helpers, vectorised over sources and beams
# as transformers has it since 4.50 (the same in 4.57 and 5.x, but where noted).


def _gather_beams(tensor: torch.Tensor, beam_indices: torch.Tensor) -> torch.Tensor:
    """GenerationMixin._gather_beams: (B, n, ...) -> (B, m, ...), row [b, j] = tensor[b, beam_indices[b, j]]."""
    while len(beam_indices.shape) < len(tensor.shape):
        beam_indices = beam_indices.unsqueeze(-1)
    return torch.take_along_dim(input=tensor, indices=beam_indices, dim=1)


def _beam_search(model, input_ids, decoder_step, processors, max_length, eos, pad_token_id, num_beams, length_penalty,
                 early_stopping, num_return_sequences, on_step) -> torch.Tensor:
    batch_size = input_ids.shape[0] // num_beams  # B
    cur_len = decoder_prompt_len = input_ids.shape[1]  # 1: the start token
    device = input_ids.device

    # Keep the top 2k continuations (k more per eos id) so that k can run on even if the best k all end.
    n_eos_tokens = eos.shape[0] if eos is not None else 0
    beams_to_keep = max(2, 1 + n_eos_tokens) * num_beams  # K
    top_num_beam_mask = torch.cat((torch.ones((num_beams), dtype=torch.bool),
                                   torch.zeros((beams_to_keep - num_beams), dtype=torch.bool)), dim=0).to(device)  # (K,): the top k

    # Static-shaped state, per source and beam. Unfilled positions hold the fill value: pad, but eos
    # when pad is 0 (transformers writes ``pad_token_id or eos_token_id[0]``, and a 0 pad is falsy),
    # and -1 without eos.
    output_fill_value = (pad_token_id or int(eos[0])) if eos is not None else -1
    running_sequences = torch.full((batch_size, num_beams, max_length), output_fill_value, dtype=torch.int64, device=device)  # (B, k, L)
    running_sequences[:, :, :cur_len] = input_ids.reshape(batch_size, num_beams, cur_len)
    sequences = running_sequences.detach().clone()  # (B, k, L): the finished hypotheses
    running_beam_scores = torch.zeros((batch_size, num_beams), dtype=torch.float, device=device)  # (B, k): sum of log-probs
    running_beam_scores[:, 1:] = -1e9  # only the first beam's continuations at the first step (the k beams are equal)
    beam_scores = torch.full((batch_size, num_beams), -1e9, dtype=torch.float, device=device)  # (B, k): finished ones', length-penalised
    is_sent_finished = torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device)  # (B, k): finished slot filled
    is_early_stop_heuristic_unsatisfied = torch.ones((batch_size, 1), dtype=torch.bool, device=device)  # (B, 1): can still improve
    next_token_hits_stopping_criteria = torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device)
    # (B, k, L - 1): per generated token, the flat row (b * k + beam) it was chosen from; -1 not yet
    running_beam_indices = torch.full((batch_size, num_beams, max_length - cur_len), -1, dtype=torch.int32, device=device)
    beam_indices = running_beam_indices.detach().clone()
    cache = EncoderDecoderCache()

    this_peer_finished = False
    while not this_peer_finished:
        # a. the decoder on each running beam's last token; log-probabilities, processed
        flat_running_sequences = running_sequences[:, :, :cur_len].reshape(batch_size * num_beams, cur_len)  # (B * k, t)
        logits, states = decoder_step(flat_running_sequences, cache)  # (B * k, V)
        vocab_size = logits.shape[-1]  # 4.57 takes config.vocab_size (the same for these models' shared tables)
        log_probs = nn.functional.log_softmax(logits, dim=-1)  # (B * k, V)
        for processor in processors:
            log_probs = processor(flat_running_sequences, log_probs)  # (B * k, V)
        # b. each continuation's score: its beam's so far plus its token's
        log_probs = log_probs.reshape(batch_size, num_beams, vocab_size) + running_beam_scores[:, :, None]  # (B, k, V)
        log_probs = torch.reshape(log_probs, (batch_size, -1))  # (B, k * V)

        # c. _get_top_k_continuations: the K best over all beams of a source
        topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)  # (B, K)
        topk_current_beam_indices = topk_indices // vocab_size  # (B, K): which beam
        topk_running_beam_indices = _gather_beams(running_beam_indices, topk_current_beam_indices)  # (B, K, L - 1)
        topk_running_sequences = _gather_beams(running_sequences, topk_current_beam_indices)  # (B, K, L)
        topk_ids = topk_indices % vocab_size  # (B, K): which token
        topk_running_sequences[:, :, cur_len] = topk_ids
        batch_offset = torch.arange(batch_size, device=device).view(-1, 1) * num_beams  # (B, 1): row of the source's beam 0
        topk_running_beam_indices[:, :, cur_len - decoder_prompt_len] = topk_current_beam_indices + batch_offset

        # d. which continuations end here (eos, or max_length reached)
        candidates = topk_running_sequences[:, :, : cur_len + 1].reshape(batch_size * beams_to_keep, -1)  # (B * K, t + 1)
        next_token_hits_stopping_criteria = stopping_criteria(candidates, max_length, eos).reshape(batch_size, beams_to_keep)  # (B, K)

        # e. _get_running_beams_for_next_iteration: the k best that did not end run on
        topk_running_log_probs = topk_log_probs + next_token_hits_stopping_criteria.to(torch.float32) * -1.0e9  # (B, K)
        next_topk_indices = torch.topk(topk_running_log_probs, k=num_beams)[1]  # (B, k)
        running_sequences = _gather_beams(topk_running_sequences, next_topk_indices)  # (B, k, L)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk_indices)  # (B, k)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk_indices)  # (B, k, L - 1)

        # f. _update_finished_beams: the ended ones among the top k (the other k are spares) join
        # the finished, length-penalised, if they beat them
        did_top_num_beams_just_finished = next_token_hits_stopping_criteria & top_num_beam_mask[None, :]  # (B, K)
        finished_log_probs = topk_log_probs / ((cur_len + 1 - decoder_prompt_len) ** length_penalty)  # (B, K): sum / length ** lp
        beams_in_batch_are_full = torch.all(is_sent_finished, axis=-1, keepdims=True) & (early_stopping is True)  # (B, 1)
        finished_log_probs += beams_in_batch_are_full.to(torch.float32) * -1.0e9  # full and early_stopping: no more
        finished_log_probs += (~is_early_stop_heuristic_unsatisfied).to(torch.float32) * -1.0e9  # no improvement possible: no more
        finished_log_probs += (~did_top_num_beams_just_finished) * -1.0e9  # still running: not a finished hypothesis
        merged_sequences = torch.cat((sequences, topk_running_sequences), dim=1)  # (B, k + K, L)
        merged_scores = torch.cat((beam_scores, finished_log_probs), dim=1)  # (B, k + K)
        merged_beam_indices = torch.cat((beam_indices, topk_running_beam_indices), dim=1)
        merged_is_sent_finished = torch.cat((is_sent_finished, did_top_num_beams_just_finished), dim=1)
        topk_merged_indices = torch.topk(merged_scores, k=num_beams)[1]  # (B, k): the k best finished so far
        sequences = _gather_beams(merged_sequences, topk_merged_indices)
        beam_scores = _gather_beams(merged_scores, topk_merged_indices)
        beam_indices = _gather_beams(merged_beam_indices, topk_merged_indices)
        is_sent_finished = _gather_beams(merged_is_sent_finished, topk_merged_indices)

        # g. the cache's rows follow the beams that run on
        beam_idx = running_beam_indices[..., cur_len - decoder_prompt_len].reshape(-1)  # (B * k,) flat parent rows
        cache.reorder_cache(beam_idx)
        if on_step is not None:
            parents = running_beam_indices[..., cur_len - decoder_prompt_len] - batch_offset  # (B, k): parent beam
            on_step(Seq2SeqStep(cur_len - decoder_prompt_len, running_sequences[:, :, : cur_len + 1].clone(), running_beam_scores.clone(),
                                running_sequences[:, :, cur_len].clone(), parents, _cross_attentions(model, states, batch_size, parents),
                                is_sent_finished.clone(), beam_scores.clone()))
        cur_len = cur_len + 1

        # _check_early_stop_heuristic: can the best running beam still beat the worst finished one?
        if early_stopping == "never" and length_penalty > 0.0:
            best_hypothetical_length = max_length - decoder_prompt_len  # it may grow to max_length
        else:
            best_hypothetical_length = cur_len - decoder_prompt_len  # as long as it is now
        best_possible_running_score = running_beam_scores[:, :1] / (best_hypothetical_length**length_penalty)  # (B, 1)
        worst_finished_score = torch.where(is_sent_finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9)  # (B, k)
        is_early_stop_heuristic_unsatisfied = is_early_stop_heuristic_unsatisfied & torch.any(
            best_possible_running_score > worst_finished_score, dim=-1, keepdim=True)  # (B, 1)

        # _beam_search_has_unfinished_sequences: go on while some source can improve, some source is
        # not full (early_stopping=True), and some continuation did not end
        improvement_possible = torch.any(is_early_stop_heuristic_unsatisfied)
        exists_open_beam = ~(torch.all(is_sent_finished) & (early_stopping is True))
        valid_continuations = ~torch.all(next_token_hits_stopping_criteria)
        this_peer_finished = not (improvement_possible & exists_open_beam & valid_continuations)

    # The best num_return_sequences finished hypotheses per source (sorted best first), cut to the
    # longest of them: its count of generated tokens is where its beam_indices are not -1.
    sequences = sequences[:, :num_return_sequences, :].reshape(batch_size * num_return_sequences, max_length)  # (B * r, L)
    beam_indices = beam_indices[:, :num_return_sequences, :].reshape(batch_size * num_return_sequences, -1)
    max_generated_length = ((beam_indices + 1).bool()).sum(dim=1).max()
    output_length = decoder_prompt_len + max_generated_length
    return sequences[:, :output_length]


# ---------------------------------------------------------------------------------------------
# A checkpoint's own settings.

# The keywords generate() takes from a generation config (the special ids included).
SETTINGS = (
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "length_penalty", "early_stopping",
    "num_return_sequences", "no_repeat_ngram_size", "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id",
    "do_sample", "temperature", "top_k", "top_p", "decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id",
    "renormalize_logits",
)
# GenerationConfig fields that change the tokens and that generate() does not implement, with the
# value that changes nothing (None, unset, is always fine): reimpl/generation.py's list, less what
# is implemented here, plus beam search's own.
NEUTRAL: dict[str, Any] = {key: value for key, value in generation.NEUTRAL.items() if key not in SETTINGS} | {
    "diversity_penalty": 0.0, "low_memory": False, "use_cache": True,
}


def settings_from(generation_config: dict[str, Any] | None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``generate`` keywords transformers takes from a checkpoint: its generation_config.json
    (a dict), or, without one (None), the generation fields of its config.json, as transformers
    then builds the generation config from it (4.57: ``GenerationConfig.from_model_config``; 5.x:
    ``GenerationConfig.from_pretrained(..., config_file_name="config.json")``). Only keys set to a
    value; the caller's keywords go on top. A ValueError names a setting this generate does not do."""
    source, name = (generation_config, "generation_config.json") if generation_config is not None else (config or {}, "config.json")
    for key, neutral in NEUTRAL.items():
        value = source.get(key)
        if value is not None and value != neutral:
            raise ValueError(f"{name} sets {key}={value!r}, which this generate does not implement")
    settings = {key: source[key] for key in SETTINGS if source.get(key) is not None}
    if settings.get("do_sample") and settings.get("num_beams", 1) > 1:
        raise ValueError(f"{name} sets do_sample=True with num_beams={settings['num_beams']}: "
                         "beam sampling is not implemented by this generate")
    if settings.get("early_stopping", False) not in {True, False, "never"}:
        raise ValueError(f"{name} sets early_stopping={settings['early_stopping']!r}: it must be True, False or 'never'")
    if isinstance(settings.get("decoder_start_token_id"), list):
        raise ValueError(f"{name} sets a decoder_start_token_id per row ({settings['decoder_start_token_id']}), which is not supported")
    if versions.V4 and settings.get("max_length") == 20:
        # transformers 4.57 takes a max_length equal to the global default (20) for "unset": 20 new
        # tokens after the start token (21), within max_position_embeddings; 5.x takes it as given
        del settings["max_length"]
    return settings


class Seq2SeqGenerationMixin:
    """``model.generate(input_ids, attention_mask, **settings)`` on the encoder-decoder twins
    (MarianMTModel, BartForConditionalGeneration), as transformers' models get it from its
    GenerationMixin: ``generate`` above."""

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **settings) -> torch.Tensor:
        return generate(self, input_ids, attention_mask, **settings)
