"""reimpl/bert.py against transformers' BertModel on real weights (the packaged all-MiniLM-L6-v2),
eager attention, fp32 on CPU: bit for bit at every step, the padded batch against its sentences,
the components on real weights, sdpa's bounds, and what ``recording`` keeps.

Random-weight models for every BertConfig setting that changes the math, every head, the
refusals, checkpoints and training: tests/test_conformance.py (its BERT fixture).
"""

from __future__ import annotations

import pytest
import torch
import transformers

import reimpl
from reimpl import recording
from tests.parity import assert_states_equal
from tests.test_conformance import BERT, assert_components_equal

SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need, said the paper, and the field listened.",
    "Short one.",
]


# --- real weights: all-MiniLM-L6-v2 --------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return reimpl.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")


def test_minilm_single_sentence_every_step_bit_identical(minilm_hf, minilm, minilm_tokenizer):
    enc = minilm_tokenizer(SENTENCES[1], return_tensors="pt")
    n = assert_states_equal(minilm_hf, minilm, **enc)
    assert n == 5 + 6 * 15 + 2  # embeddings, 15 steps in each of 6 layers, pooler: all compared


def test_minilm_padded_batch_every_step_bit_identical(minilm_hf, minilm, minilm_tokenizer):
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert not enc["attention_mask"].all()  # the batch really has padding
    assert_states_equal(minilm_hf, minilm, **enc)


def test_minilm_padded_rows_equal_unpadded_sentences(minilm, minilm_tokenizer):
    """Padding changes nothing for the real tokens but the last bits: row i of the batch is sentence i alone."""
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    batch = minilm(enc["input_ids"], enc["attention_mask"]).last_hidden_state
    for i, sentence in enumerate(SENTENCES):
        alone = minilm_tokenizer(sentence, return_tensors="pt")
        T = alone["input_ids"].shape[1]
        single = minilm(alone["input_ids"]).last_hidden_state
        # Not bitwise: a (T, T) and a (T, T_max) matmul may sum in other blocks. Measured: 1.4e-6,
        # 0 and 1.9e-6 for the three sentences (outputs up to ~6); the bound is ~5x the largest.
        assert (batch[i, :T] - single[0]).abs().max() < 1e-5


def test_minilm_components_from_hf(minilm_hf, minilm_tokenizer):
    """from_hf on single transformers modules (each layer, its attention), fed the same input, gives the same output."""
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert_components_equal(BERT, minilm_hf, dict(enc))


def test_minilm_sdpa_bound(minilm_dir, minilm, minilm_tokenizer):
    """transformers' default (sdpa) is not the eager path: torch's fused CPU kernel computes
    softmax(Q K^T) V blockwise with an online softmax, summing in another order. Measured on this
    batch (outputs up to ~6 in magnitude): 2.3e-6 at real tokens, 4.1e-5 at padding positions,
    whose rows attend to nothing real. Transformers' own eager vs sdpa differ by exactly as much.
    Bounds: ~4x the measurements."""
    sdpa = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    diff = (sdpa(**enc).last_hidden_state - minilm(enc["input_ids"], enc["attention_mask"]).last_hidden_state).abs()
    real = enc["attention_mask"].bool()
    assert diff[real].max() < 1e-5, f"sdpa vs twin at real tokens: {diff[real].max():.3g}"
    assert diff.max() < 2e-4, f"sdpa vs twin at padding: {diff.max():.3g}"


# --- sdpa at bert-base size ---------------------------------------------------------------------


def test_bert_base_size_sdpa_bound():
    """transformers' sdpa vs the twin at bert-base size with HF's own init: measured 2.9e-6 on
    outputs of magnitude ~4 (transformers' own eager vs sdpa differ by the same). Bound: ~3x that."""
    torch.manual_seed(0)
    config = transformers.BertConfig(attn_implementation="sdpa")
    hf = transformers.BertModel(config).eval()
    enc = BERT.inputs(config, B=2, T=64)
    twin = reimpl.BertModel.from_hf(hf)
    diff = (hf(**enc).last_hidden_state - twin(**enc).last_hidden_state).abs().max()
    assert diff < 1e-5, f"sdpa vs twin: {diff:.3g}"


# --- recording ---------------------------------------------------------------------------------


def test_recording_off_keeps_nothing(minilm, minilm_tokenizer):
    from reimpl import states as rec_module

    enc = minilm_tokenizer(SENTENCES[0], return_tensors="pt")
    minilm(enc["input_ids"])
    assert rec_module._states is None
    with recording() as outer:
        with recording() as inner:
            minilm(enc["input_ids"])
        assert outer == {} and len(inner) > 0
    assert rec_module._states is None


def test_recorded_names_in_forward_order(minilm, minilm_tokenizer):
    enc = minilm_tokenizer(SENTENCES[0], return_tensors="pt")
    with recording() as states:
        minilm(enc["input_ids"])
    assert list(states)[:5] == [
        "embeddings.word_embeddings",
        "embeddings.token_type_embeddings",
        "embeddings.position_embeddings",
        "embeddings.sum",
        "embeddings.LayerNorm",
    ]
    assert states["encoder.layer.5.attention.self.probs"].shape == (1, 12, enc["input_ids"].shape[1], enc["input_ids"].shape[1])
