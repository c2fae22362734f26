"""The encoder-decoder twins (reimpl/marian.py, reimpl/bart.py) against transformers: every stage
of the encoder, the decoder and the cross-attention ``torch.equal``, forward and backward, in eval
and train mode; checkpoints as transformers saves them and as the hub has them.

The conformance suite (tests/test_conformance.py) is written for one stack of layers fed
``input_ids``; an encoder-decoder also takes the target, so its checks are here, the same checks
for two stacks. Generation: tests/test_seq2seq_generation.py.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import reimpl
from reimpl import CheckpointError, versions
from reimpl.bart import BartForConditionalGeneration, BartForSequenceClassification, BartModel
from reimpl.marian import MarianModel, MarianMTModel, shift_tokens_right
from tests.parity import assert_states_equal

SMALL = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=2,
             encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=40)
MARIAN = dict(SMALL, pad_token_id=98, decoder_start_token_id=98, eos_token_id=0, scale_embedding=True, activation_function="swish")
BART = dict(SMALL, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, num_labels=3)

CLASSES = {
    "MarianMTModel": (transformers.MarianMTModel, transformers.MarianConfig, MarianMTModel, MARIAN),
    "MarianModel": (transformers.MarianModel, transformers.MarianConfig, MarianModel, MARIAN),
    "BartForConditionalGeneration": (transformers.BartForConditionalGeneration, transformers.BartConfig, BartForConditionalGeneration, BART),
    "BartForSequenceClassification": (transformers.BartForSequenceClassification, transformers.BartConfig, BartForSequenceClassification, BART),
    "BartModel": (transformers.BartModel, transformers.BartConfig, BartModel, BART),
}
VARIANTS = {
    "MarianMTModel": {"default": {}, "unshared": dict(share_encoder_decoder_embeddings=False),
                      **({} if versions.V4 else {"unshared-120": dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=120)}),
                      "unscaled-relu": dict(scale_embedding=False, activation_function="relu"), "unshared-untied": dict(share_encoder_decoder_embeddings=False, tie_word_embeddings=False),
                      "gelu": dict(activation_function="gelu")},
    "MarianModel": {"default": {}, "unshared": dict(share_encoder_decoder_embeddings=False)},
    "BartForConditionalGeneration": {"default": {}, "scaled-relu": dict(scale_embedding=True, activation_function="relu")},
    "BartForSequenceClassification": {"default": {}, "labels-5": dict(num_labels=5)},
    "BartModel": {"default": {}},
}


def stages(config, cls: str) -> int:
    """What the twin records: per stack 3 embedding steps (BART: 4, with layernorm_embedding); 15 per
    encoder layer, 24 per decoder layer (its cross-attention's 9 more); the head's."""
    embed = 4 if cls.startswith("Bart") else 3
    head = {"MTModel": 2, "ForConditionalGeneration": 2, "ForSequenceClassification": 4, "Model": 0}
    return 2 * embed + 15 * config.encoder_layers + 24 * config.decoder_layers + head[cls.removeprefix("Marian").removeprefix("Bart")]


def build(cls: str, seed: int = 0, **overrides):
    hf_cls, config_cls, twin_cls, settings = CLASSES[cls]
    torch.manual_seed(seed)
    hf = hf_cls(config_cls(**{**settings, **overrides}, attn_implementation="eager")).eval()
    with torch.no_grad():
        if hasattr(hf, "final_logits_bias"):
            hf.final_logits_bias.normal_()  # zeros at init: a bias that adds nothing would hide a missing add
    return hf, twin_cls.from_hf(hf)


def batch(config, cls: str) -> dict[str, torch.Tensor]:
    """Two sources, the second right-padded, each ending with </s>; the target as teacher forcing feeds it."""
    pad, eos = config.pad_token_id, config.eos_token_id
    ids = torch.tensor([[5, 6, 7, 8, 9, eos], [10, 11, eos, pad, pad, pad]])
    inputs = dict(input_ids=ids, attention_mask=(ids != pad).long())
    if cls != "BartForSequenceClassification":
        labels = torch.tensor([[12, 13, 14, eos], [15, eos, -100, -100]])
        inputs["decoder_input_ids"] = shift_tokens_right(labels, pad, config.decoder_start_token_id)
    return inputs


CASES = [pytest.param(cls, variant, id=f"{cls}-{variant}") for cls, variants in VARIANTS.items() for variant in variants]


@pytest.mark.parametrize("cls, variant", CASES)
def test_every_stage_bit_identical(cls, variant):
    hf, twin = build(cls, **VARIANTS[cls][variant])
    inputs = batch(hf.config, cls)
    expected = stages(hf.config, cls)
    assert assert_states_equal(hf, twin, **inputs) == expected
    one = {k: v[:1] for k, v in inputs.items()}  # one unpadded source, with its mask and without
    assert assert_states_equal(hf, twin, **one) == expected
    assert assert_states_equal(hf, twin, **{k: v for k, v in one.items() if k != "attention_mask"}) == expected


def test_target_padding_mask():
    """decoder_attention_mask: target padding hidden from the decoder's self-attention, as transformers hides it."""
    hf, twin = build("MarianMTModel")
    inputs = batch(hf.config, "MarianMTModel")
    inputs["decoder_attention_mask"] = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    keep_self = torch.ones(4, 4, dtype=torch.bool).tril()[None, None] & inputs["decoder_attention_mask"][:, None, None, :].bool()
    source = inputs["attention_mask"][:, None, None, :].bool()

    def keep(name: str) -> torch.Tensor:
        return keep_self if name.startswith("model.decoder.") and ".self_attn." in name else source

    assert assert_states_equal(hf, twin, keep=keep, **inputs) == stages(hf.config, "MarianMTModel")


@pytest.mark.parametrize("cls", ["MarianMTModel", "BartForConditionalGeneration", "BartForSequenceClassification"])
@pytest.mark.parametrize("layerdrop", [0.0, 0.3])
def test_train_mode_loss_and_every_gradient_bit_identical(cls, layerdrop):
    """Dropout everywhere, LayerDrop, labels: the same loss and every parameter's gradient, after the same seed,
    then the same weights after two AdamW steps."""
    drop = dict(dropout=0.2, attention_dropout=0.15, activation_dropout=0.1, encoder_layerdrop=layerdrop, decoder_layerdrop=layerdrop)
    hf, twin = build(cls, **drop, **({"classifier_dropout": 0.25} if cls.startswith("Bart") else {}))
    inputs = batch(hf.config, cls)
    inputs.pop("decoder_input_ids", None)
    inputs["labels"] = torch.tensor([2, 0]) if cls == "BartForSequenceClassification" else torch.tensor([[12, 13, 14, 2], [15, 2, -100, -100]])
    hf.train(), twin.train()
    hf_params = dict(hf.named_parameters())
    opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-2)
    opt_twin = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    for step in range(2):
        with torch.enable_grad():  # (the suite runs without gradients unless a test asks: tests/conftest.py)
            torch.manual_seed(step)
            hf_out = hf(**inputs)
            torch.manual_seed(step)
            out = twin(**inputs)
        assert torch.equal(out.logits, hf_out.logits) and torch.equal(out.loss, hf_out.loss)
        hf_out.loss.backward()
        out.loss.backward()
        compared = 0
        for name, p in twin.named_parameters():
            theirs = hf_params.get(name)
            if theirs is None:  # 4.57 names a tied table once
                continue
            assert (p.grad is None) == (theirs.grad is None), name
            if p.grad is not None:
                assert torch.equal(p.grad, theirs.grad), name
                compared += 1
        assert compared > 20
        opt_hf.step(), opt_twin.step()
        opt_hf.zero_grad(), opt_twin.zero_grad()
    for name, p in twin.named_parameters():
        if name in hf_params:
            assert torch.equal(p, hf_params[name]), name


def test_sinusoids_are_frozen_and_computed_as_transformers_computes_them(tmp_path):
    """Marian's positions: not trained, not saved by transformers, computed on loading as transformers
    computes them at init; a file that stores them (older opus-mt) loads its own values."""
    hf, twin = build("MarianMTModel")
    assert not twin.model.encoder.embed_positions.weight.requires_grad
    assert torch.equal(twin.model.decoder.embed_positions.weight, hf.model.decoder.embed_positions.weight)
    hf.save_pretrained(tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert not any("embed_positions" in key for key in stored)  # transformers leaves them out
    del stored["final_logits_bias"]
    save_file(stored, tmp_path / "model.safetensors")
    loaded = reimpl.from_pretrained(tmp_path)
    assert torch.equal(loaded.model.encoder.embed_positions.weight, hf.model.encoder.embed_positions.weight)
    assert torch.equal(loaded.final_logits_bias, torch.zeros_like(loaded.final_logits_bias))  # zeros, as transformers fills it
    again = transformers.MarianMTModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    inputs = batch(hf.config, "MarianMTModel")
    assert assert_states_equal(again, loaded, **inputs) == stages(hf.config, "MarianMTModel")


@pytest.mark.parametrize("cls", list(CLASSES))
def test_save_pretrained_loads_as_its_class(cls, tmp_path):
    hf, _ = build(cls)
    hf.save_pretrained(tmp_path)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin).__name__ == cls
    assert assert_states_equal(hf, twin, **batch(hf.config, cls)) == stages(hf.config, cls)


def hub_snapshot(cache, repo_id: str, files: dict) -> None:
    """A hub cache folder holding ``files`` (name -> bytes), as huggingface_hub lays it out."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("b" * 40)


@pytest.mark.parametrize("repo_id, hf_cls, overrides", [
    # opus-mt-en-de's config.json, as the hub has it: the paper's Transformer-base, 58101 shared tokens
    ("Helsinki-NLP/opus-mt-en-de", transformers.MarianMTModel,
     dict(vocab_size=58101, decoder_vocab_size=58101, d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
          decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512, scale_embedding=True,
          activation_function="swish", pad_token_id=58100, decoder_start_token_id=58100, eos_token_id=0, static_position_embeddings=True)),
    # facebook/bart-base's
    ("facebook/bart-base", transformers.BartForConditionalGeneration,
     dict(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
          encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024, activation_function="gelu", pad_token_id=1,
          bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=0, normalize_before=False)),
])
def test_hub_layouts_at_real_size(repo_id, hf_cls, overrides, tmp_path, monkeypatch):
    """A released checkpoint's layout and size (random weights), resolved by its hub id from the local
    HF cache: every stage bit-identical to transformers' model of the same files."""
    from huggingface_hub import constants

    config_cls = transformers.MarianConfig if hf_cls is transformers.MarianMTModel else transformers.BartConfig
    torch.manual_seed(0)
    hf = hf_cls(config_cls(**overrides, attn_implementation="eager")).eval()
    saved = tmp_path / "saved"
    hf.save_pretrained(saved)
    hub_snapshot(tmp_path / "hub", repo_id, {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(reimpl.loading, "_hub_reachable", lambda: pytest.fail("the network was asked"))
    twin = reimpl.from_pretrained(repo_id)
    assert type(twin).__name__ == hf_cls.__name__
    cls = hf_cls.__name__
    assert assert_states_equal(hf, twin, **batch(hf.config, cls)) == stages(hf.config, cls)


@pytest.mark.parametrize("cls, overrides, message", [
    ("MarianMTModel", dict(activation_function="xielu"), "xielu"),
    ("MarianMTModel", dict(d_model=30), "d_model 30 is not a multiple of encoder_attention_heads 4"),
    ("MarianMTModel", dict(tie_word_embeddings=False), "tie_word_embeddings=False with shared embeddings is not supported"),
    *([("MarianMTModel", dict(share_encoder_decoder_embeddings=False, decoder_vocab_size=120), "decoder_vocab_size 120 other than")]
      if versions.V4 else []),
    ("BartForConditionalGeneration", dict(tie_word_embeddings=False), "tie_word_embeddings=False is not supported"),
])
def test_unsupported_configs_refused(cls, overrides, message, tmp_path):
    hf_cls, config_cls, _, settings = CLASSES[cls]
    config = config_cls(**{**settings, **overrides}).to_dict()
    config["architectures"] = [cls]
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        reimpl.from_pretrained(tmp_path)


def test_marian_needs_a_target_and_bart_shifts_its_source():
    hf, twin = build("MarianMTModel")
    with pytest.raises(ValueError, match="decoder_input_ids are required"):
        twin(input_ids=torch.tensor([[5, 0]]))
    hf, twin = build("BartModel")
    ids = torch.tensor([[0, 5, 6, 2]])
    assert assert_states_equal(hf, twin, input_ids=ids) == stages(hf.config, "BartModel")  # the decoder reads the source shifted


def test_bart_classifier_refuses_unequal_eos_counts():
    hf, twin = build("BartForSequenceClassification")
    ids = torch.tensor([[5, 2, 6, 2], [5, 6, 7, 2]])
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        hf(input_ids=ids)
    with pytest.raises(ValueError, match="same number of <eos> tokens"):
        twin(input_ids=ids)


def test_twin_follows_the_installed_layerdrop_draws():
    """transformers 4.57 draws LayerDrop's random number in training even at p = 0 (moving every later
    dropout mask); 5.x draws only when p > 0. The twin follows the installed one (reimpl/versions.py)."""
    hf, twin = build("MarianMTModel", dropout=0.3)
    hf.train(), twin.train()
    inputs = batch(hf.config, "MarianMTModel")
    torch.manual_seed(0)
    hf_logits = hf(**inputs).logits
    torch.manual_seed(0)
    assert torch.equal(twin(**inputs).logits, hf_logits)
    with versions.following(5 if versions.V4 else 4):
        torch.manual_seed(0)
        assert not torch.equal(twin(**inputs).logits, hf_logits)
