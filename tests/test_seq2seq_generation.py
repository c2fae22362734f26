"""reimpl/seq2seq.py against transformers' ``generate`` for MarianMTModel and
BartForConditionalGeneration, token for token (``torch.equal`` on the returned ids).

Random small models (``randomise``: larger weights than transformers' init, a random
``final_logits_bias`` with eos raised, so that beams diverge and translations end at various
lengths, some at ``max_length``), several seeds, right-padded batches of 2-4 sources.

Settings: greedy; beams 4 with early_stopping True; beams 3 with length_penalty 0.6,
early_stopping False and the processors (no_repeat_ngram_size, bad_words_ids, min_length,
forced_eos_token_id); beams 4 with "never"; beams 3 with length_penalty 2 (all but the processed
one return several beams per source, so that the whole bank of finished hypotheses is compared);
BART with forced_bos_token_id; multi-token bad words and min_new_tokens; sampling after
``torch.manual_seed``; no attention mask. The settings transformers takes from the model's
generation config come through ``settings_from``, which also refuses what the twin's generate
does not do.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from reimpl import versions
from reimpl.bart import BartForConditionalGeneration
from reimpl.marian import MarianMTModel
from reimpl.seq2seq import NoBadWordsLogitsProcessor, Seq2SeqStep, generate, settings_from

V = 48  # vocabulary
SEEDS = (1, 4, 5)  # seeds whose beam searches tell early_stopping True, False and "never" apart
SOURCES = {1: 4, 4: 4, 5: 3}  # batch size per seed: 11 sources per family, 22 per setting


def randomise(hf: torch.nn.Module, seed: int, eos: int) -> torch.nn.Module:
    """transformers' init (N(0, 0.02)) gives outputs that ignore the source and repeat one token;
    instead: token embeddings from N(0, 0.15), the other matrices (positions included) from
    N(0, 0.5), LayerNorm gains 1 + N(0, 0.5), final_logits_bias from N(0, 0.5) with eos 1.5 higher.
    Then beams part from greedy, and translations end at various lengths, some at max_length."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 2:
                std = 0.15 if "shared" in name or "embed_tokens" in name else 0.5
                p.copy_(torch.randn(p.shape, generator=generator) * std)
            elif "layer_norm" in name and name.endswith("weight"):
                p.copy_(1 + torch.randn(p.shape, generator=generator) * 0.5)
        hf.final_logits_bias.copy_(torch.randn(hf.final_logits_bias.shape, generator=generator) * 0.5)
        hf.final_logits_bias[0, eos] += 1.5
    return hf.eval()


SIZES = dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, attn_implementation="eager")


def marian(seed: int) -> tuple[transformers.MarianMTModel, MarianMTModel]:
    """Marian as opus-mt has it: eos 0, pad = decoder start = the last id, sinusoids, swish."""
    torch.manual_seed(seed)
    config = transformers.MarianConfig(**SIZES, pad_token_id=V - 1, eos_token_id=0, decoder_start_token_id=V - 1,
                                       activation_function="swish", scale_embedding=True)
    hf = randomise(transformers.MarianMTModel(config), seed, eos=0)
    return hf, MarianMTModel.from_hf(hf)


def bart(seed: int) -> tuple[transformers.BartForConditionalGeneration, BartForConditionalGeneration]:
    """BART's ids: bos 0, pad 1, eos 2 = decoder start."""
    torch.manual_seed(seed)
    config = transformers.BartConfig(**SIZES)
    hf = randomise(transformers.BartForConditionalGeneration(config), seed, eos=2)
    return hf, BartForConditionalGeneration.from_hf(hf)


def sources(hf: torch.nn.Module, seed: int, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of B sources of 3..9 tokens ending in eos, right-padded with pad, as a tokenizer pads them."""
    generator = torch.Generator().manual_seed(100 + seed)
    config = hf.config
    special = {config.pad_token_id, config.eos_token_id, config.decoder_start_token_id, config.bos_token_id}
    lengths = torch.randint(3, 10, (B,), generator=generator).tolist()
    lengths[0] = max(lengths)  # the longest first, the others padded
    S = max(lengths)
    ids = torch.full((B, S), config.pad_token_id)
    mask = torch.zeros(B, S, dtype=torch.long)
    for b, n in enumerate(lengths):
        words = [i for i in torch.randint(0, V, (3 * n,), generator=generator).tolist() if i not in special][: n - 1]
        ids[b, :n] = torch.tensor(words + [config.eos_token_id])
        mask[b, :n] = 1
    return ids, mask


def theirs(hf, ids, mask, **settings) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.generate(input_ids=ids, attention_mask=mask, **settings)


def ours(hf, twin, ids, mask, **settings) -> torch.Tensor:
    """The twin with the settings transformers takes from the model's generation config, then the caller's."""
    defaults = settings_from(hf.generation_config.to_dict(), hf.config.to_dict())
    return twin.generate(ids, mask, **(defaults | settings))


GREEDY = dict(max_new_tokens=14)
BEAMS_EARLY = dict(num_beams=4, length_penalty=1.0, early_stopping=True, num_return_sequences=4, max_new_tokens=14)
BEAMS_PROCESSED = dict(num_beams=3, length_penalty=0.6, early_stopping=False, no_repeat_ngram_size=2, min_length=3,
                       max_length=12)  # + bad_words_ids [[pad]] and forced_eos_token_id, per model below
BEAMS_NEVER = dict(num_beams=4, early_stopping="never", length_penalty=1.0, num_return_sequences=4, max_new_tokens=14)
BEAMS_LONG = dict(num_beams=3, early_stopping=False, length_penalty=2.0, num_return_sequences=2, max_new_tokens=14)
# opus-mt's generation configs renormalize (LogitNormalization last): the banned tokens' mass shared out again
BEAMS_RENORMALIZED = dict(num_beams=4, length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=2, renormalize_logits=True,
                          max_new_tokens=14)  # + bad_words_ids [[pad]] and forced_eos_token_id, per model below
SETTINGS = {"greedy": GREEDY, "beams-early": BEAMS_EARLY, "beams-processed": BEAMS_PROCESSED, "beams-never": BEAMS_NEVER,
            "beams-long": BEAMS_LONG, "beams-renormalized": BEAMS_RENORMALIZED}
FAMILIES = {"marian": marian, "bart": bart}


def with_model_ids(name: str, settings: dict, hf) -> dict:
    if name not in ("beams-processed", "beams-renormalized"):
        return settings
    return settings | dict(bad_words_ids=[[hf.config.pad_token_id]], forced_eos_token_id=hf.config.eos_token_id)


_cache: dict = {}


def models(family: str, seed: int):
    if (family, seed) not in _cache:
        _cache[family, seed] = FAMILIES[family](seed)
    return _cache[family, seed]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", SETTINGS)
def test_token_equal(name: str, family: str, seed: int):
    hf, twin = models(family, seed)
    ids, mask = sources(hf, seed, B=SOURCES[seed])
    settings = with_model_ids(name, SETTINGS[name], hf)
    expected = theirs(hf, ids, mask, **settings)
    got = ours(hf, twin, ids, mask, **settings)
    assert got.shape == expected.shape, (got, expected)
    assert torch.equal(got, expected), (got, expected)


def test_settings_exercised():
    """The random models do what the comparisons need: translations that end early and some that
    run to max_length, greedy and beams alike, and beams whose best hypothesis is not greedy's."""
    ended_early = ran_full = differs = 0
    for family in FAMILIES:
        for seed in SEEDS:
            hf, twin = models(family, seed)
            ids, mask = sources(hf, seed, B=SOURCES[seed])
            greedy = ours(hf, twin, ids, mask, **GREEDY)
            beams = ours(hf, twin, ids, mask, **BEAMS_EARLY | dict(num_return_sequences=1))
            for out in (greedy, beams):
                generated = (out[:, 1:] != hf.config.pad_token_id).sum(dim=1)  # (B,): tokens after the start one
                ended_early += int((generated < GREEDY["max_new_tokens"]).sum())
                ran_full += int((generated == GREEDY["max_new_tokens"]).sum())
            n = min(beams.shape[1], greedy.shape[1])
            differs += int((beams[:, :n] != greedy[:, :n]).any(dim=1).sum())
    assert ended_early >= 8 and ran_full >= 8 and differs >= 8, (ended_early, ran_full, differs)


@pytest.mark.parametrize("seed", SEEDS)
def test_bart_forced_bos(seed: int):
    """BART with forced_bos_token_id (the first token after </s> is <s>), beams and greedy."""
    hf, twin = models("bart", seed)
    ids, mask = sources(hf, seed, B=2)
    for settings in (dict(forced_bos_token_id=0, max_new_tokens=12),
                     dict(forced_bos_token_id=0, num_beams=4, early_stopping=True, max_new_tokens=12)):
        expected = theirs(hf, ids, mask, **settings)
        assert (expected[:, 1] == 0).all()
        assert torch.equal(ours(hf, twin, ids, mask, **settings), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_token_bad_words_and_min_new_tokens(family: str):
    """A bad word of two tokens (its first the decoder start: 5.x bans the second as the first new
    token, 4.57 does not; the twin follows the installed one), two-token words later in the text,
    and min_new_tokens; defaults left to the generation config (max_length 20 new tokens)."""
    hf, twin = models(family, 4)
    ids, mask = sources(hf, 4, B=4)
    start = hf.config.decoder_start_token_id
    first = theirs(hf, ids, mask, max_new_tokens=3)[:, 1].tolist()  # what greedy says first
    later = theirs(hf, ids, mask, max_new_tokens=3)[:, 1:3].tolist()
    settings = dict(bad_words_ids=[[start, first[0]], later[1], [5, 6, 7]], min_new_tokens=4)
    for extra in (dict(), dict(num_beams=3)):
        expected = theirs(hf, ids, mask, **settings, **extra)
        assert torch.equal(ours(hf, twin, ids, mask, **settings, **extra), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling(family: str):
    """do_sample with num_beams=1: the same draws after the same seed (top-k 50 by default, and top-p)."""
    hf, twin = models(family, 1)
    ids, mask = sources(hf, 1, B=3)
    for settings in (dict(do_sample=True, max_new_tokens=10), dict(do_sample=True, top_p=0.8, temperature=0.7, max_new_tokens=10)):
        torch.manual_seed(7)
        expected = theirs(hf, ids, mask, **settings)
        torch.manual_seed(7)
        assert torch.equal(ours(hf, twin, ids, mask, **settings), expected)


def test_no_attention_mask():
    """Without a mask: 4.57 infers it from the padding, 5.x attends to every token; the twin does what the installed one does."""
    hf, twin = models("marian", 5)
    ids, _ = sources(hf, 5, B=3)
    for settings in (GREEDY, BEAMS_EARLY):
        assert torch.equal(ours(hf, twin, ids, None, **settings), theirs(hf, ids, None, **settings))


def test_on_step():
    """The watcher sees each step: running beams' tokens and scores, chosen tokens, parents and the
    cross-attention of the new position; the ids are the same with and without it."""
    hf, twin = models("marian", 1)
    ids, mask = sources(hf, 1, B=2)
    steps: list[Seq2SeqStep] = []
    got = twin.generate(ids, mask, num_beams=3, max_new_tokens=8, on_step=steps.append)
    assert torch.equal(got, twin.generate(ids, mask, num_beams=3, max_new_tokens=8))
    assert [s.index for s in steps] == list(range(len(steps)))
    S = ids.shape[1]
    for s in steps:
        assert s.sequences.shape == (2, 3, s.index + 2)
        assert torch.equal(s.sequences[:, :, -1], s.next_tokens)
        assert s.scores.shape == (2, 3) and s.finished_scores.shape == (2, 3)
        assert ((s.beam_parents >= 0) & (s.beam_parents < 3)).all()
        assert len(s.cross_attentions) == 2 and s.cross_attentions[0].shape == (2, 3, 4, S)
        torch.testing.assert_close(s.cross_attentions[0].sum(-1), torch.ones(2, 3, 4))
        assert (s.cross_attentions[1][1, :, :, mask[1] == 0] == 0).all()  # no attention to the padding
    for a, b in zip(steps, steps[1:]):  # each beam continues its parent's tokens
        parent = torch.gather(a.sequences, 1, b.beam_parents[:, :, None].expand(-1, -1, a.sequences.shape[2]).long())
        assert torch.equal(b.sequences[:, :, :-1], parent)
    greedy: list[Seq2SeqStep] = []
    out = twin.generate(ids, mask, max_new_tokens=8, on_step=greedy.append)
    assert torch.equal(greedy[-1].sequences[:, 0], out)
    assert greedy[0].cross_attentions[0].shape == (2, 1, 4, S)


# --- settings_from ---------------------------------------------------------------------------


def test_settings_from_checkpoint():
    """An opus-mt generation_config.json gives beams, lengths and the processors; without one,
    config.json's generation fields stand in, as transformers reads them."""
    opus = {"bad_words_ids": [[58100]], "bos_token_id": 0, "decoder_start_token_id": 58100, "eos_token_id": 0,
            "forced_eos_token_id": 0, "max_length": 512, "num_beams": 4, "pad_token_id": 58100, "renormalize_logits": False,
            "transformers_version": "4.27.0.dev0"}
    assert settings_from(opus) == {"bad_words_ids": [[58100]], "bos_token_id": 0, "decoder_start_token_id": 58100, "eos_token_id": 0,
                                   "forced_eos_token_id": 0, "max_length": 512, "num_beams": 4, "pad_token_id": 58100,
                                   "renormalize_logits": False}
    config = {"model_type": "bart", "d_model": 1024, "num_beams": 4, "length_penalty": 2.0, "no_repeat_ngram_size": 3,
              "min_length": 56, "max_length": 142, "early_stopping": True, "forced_bos_token_id": 0, "eos_token_id": 2}
    assert settings_from(None, config) == {"num_beams": 4, "length_penalty": 2.0, "no_repeat_ngram_size": 3, "min_length": 56,
                                           "max_length": 142, "early_stopping": True, "forced_bos_token_id": 0, "eos_token_id": 2}
    # 4.57 reads a max_length of 20 (the global default) as unset: 20 new tokens after the start token
    assert ("max_length" in settings_from({"max_length": 20})) is not versions.V4


@pytest.mark.parametrize("setting, message", [
    ({"num_beams": 4, "do_sample": True}, "do_sample=True with num_beams=4"),
    ({"repetition_penalty": 1.2}, "repetition_penalty=1.2"),
    ({"num_beam_groups": 2, "diversity_penalty": 0.5}, "num_beam_groups=2"),
    ({"diversity_penalty": 0.5}, "diversity_penalty=0.5"),
    ({"constraints": ["x"]}, "constraints"),
    ({"force_words_ids": [[3]]}, "force_words_ids"),
    ({"encoder_no_repeat_ngram_size": 3}, "encoder_no_repeat_ngram_size=3"),
    ({"early_stopping": "sometimes"}, "early_stopping='sometimes'"),
    ({"use_cache": False}, "use_cache=False"),
])
def test_settings_from_refuses(setting, message):
    with pytest.raises(ValueError, match="not implement|must be") as error:
        settings_from(setting)
    assert message in str(error.value) and "generation_config.json" in str(error.value)


def test_generate_refuses():
    hf, twin = models("marian", 1)
    ids, mask = sources(hf, 1, B=2)
    with pytest.raises(ValueError, match="beam search with sampling"):
        twin.generate(ids, mask, num_beams=2, do_sample=True)
    with pytest.raises(ValueError, match="num_return_sequences"):
        twin.generate(ids, mask, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="Greedy methods"):
        twin.generate(ids, mask, num_return_sequences=2)
    with pytest.raises(ValueError, match="early_stopping"):
        twin.generate(ids, mask, num_beams=2, early_stopping="soon")
    with pytest.raises(ValueError, match="max_length"):
        twin.generate(ids, mask, max_length=1)
    with pytest.raises(TypeError):
        twin.generate(ids, mask, repetition_penalty=1.2)
    with pytest.raises(ValueError, match="non-empty"):
        NoBadWordsLogitsProcessor([[0]], eos_token_id=[0])  # the only bad word is eos: nothing left, as transformers refuses


def test_renormalization_changes_the_beams():
    """The renormalized setting is not the plain one in disguise: transformers' beams differ with and without it."""
    differ = 0
    for family in FAMILIES:
        for seed in SEEDS:
            hf, twin = models(family, seed)
            ids, mask = sources(hf, seed, B=SOURCES[seed])
            settings = with_model_ids("beams-renormalized", BEAMS_RENORMALIZED, hf)
            a, b = theirs(hf, ids, mask, **settings), theirs(hf, ids, mask, **settings | dict(renormalize_logits=False))
            differ += int(a.shape != b.shape or not torch.equal(a, b))
    assert differ >= 3, differ
