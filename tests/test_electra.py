"""What ELECTRA does that BERT does not, against transformers (eager, fp32, CPU): the embeddings
projected up to the encoder's width only when they differ (in the model, in a checkpoint, in a
trace), the discriminator's one logit per token, and why a chunked feed-forward is refused.

Every class, every config setting, the refusals, from_hf, checkpoints, training and
``annotate trace --diff``: tests/test_conformance.py (its ELECTRA fixture).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import reimpl
from reimpl import CheckpointError, recording
from reimpl.electra import ElectraForPreTraining, ElectraModel
from tests.conftest import run_json
from tests.parity import assert_states_equal, copy_minilm_tokenizer, hf_from_pretrained, random_weights, save
from tests.test_conformance import ELECTRA


@pytest.mark.parametrize("embedding_size", [16, 32])
def test_embeddings_project_only_when_widths_differ(embedding_size):
    hf = ELECTRA.model("ElectraModel", embedding_size=embedding_size)
    twin = ElectraModel.from_hf(hf)
    assert hasattr(hf, "embeddings_project") == (twin.embeddings_project is not None) == (embedding_size != 32)
    assert set(twin.state_dict()) == set(hf.state_dict())
    assert twin.pooler is None and twin.embeddings.word_embeddings.weight.shape == (99, embedding_size)
    with recording() as states:
        twin(torch.tensor([[1, 2, 3]]))
    assert ("embeddings_project" in states) == (embedding_size != 32)


def test_equal_widths_checkpoint_has_no_embeddings_project(tmp_path):
    """E == C (as ELECTRA-base): saved without embeddings_project, loaded without it, traced without that stage."""
    copy_minilm_tokenizer(tmp_path)
    hf = ELECTRA.model("ElectraForPreTraining", seed=5, vocab_size=30522, embedding_size=32)
    save(hf, tmp_path)
    assert not any("embeddings_project" in key for key in load_file(tmp_path / "model.safetensors"))
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.electra.embeddings_project is None
    theirs = hf_from_pretrained("ElectraForPreTraining", tmp_path)
    assert assert_states_equal(theirs, twin, **ELECTRA.inputs(hf.config)) == ELECTRA.expected(hf.config, "ElectraForPreTraining")
    code, trace = run_json("trace", str(tmp_path), "The cat sat on the mat.", "--diff")
    assert code == 0 and all(stage["max_abs_diff"] == 0.0 for stage in trace["stages"]) and trace["logits_max_abs_diff"] == 0.0
    assert len(trace["stages"]) == ELECTRA.expected(hf.config, "ElectraForPreTraining") - 1  # the logits are shown as predictions
    assert "electra.embeddings_project" not in [stage["name"] for stage in trace["stages"]]


def test_missing_embeddings_project_is_named(tmp_path):
    """A checkpoint whose config says E != C but whose file lacks embeddings_project."""
    save(ELECTRA.model("ElectraModel", seed=10), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["embeddings_project.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="no tensor 'embeddings_project.weight'.*shape \\(32, 16\\)"):
        reimpl.from_pretrained(tmp_path)


def test_discriminator_logits_one_per_token():
    hf = ELECTRA.model("ElectraForPreTraining")
    twin = ElectraForPreTraining.from_hf(hf)
    inputs = ELECTRA.inputs(hf.config)
    out = twin(**inputs)
    assert out.logits.shape == inputs["input_ids"].shape and out._fields == ("logits",)
    assert torch.equal(out.logits, hf(**inputs).logits)


def test_chunked_feed_forward_really_differs():
    """Why chunk_size_feed_forward is refused: at ELECTRA-small's width, transformers' chunked
    feed-forward is not bit-identical to its unchunked one (measured: chunks of 1 to 4 tokens differ)."""
    torch.manual_seed(0)
    settings = dict(vocab_size=99, embedding_size=16, hidden_size=256, num_hidden_layers=1, num_attention_heads=4, intermediate_size=1024)
    plain = random_weights(transformers.ElectraModel(transformers.ElectraConfig(**settings, attn_implementation="eager")))
    chunked = transformers.ElectraModel(transformers.ElectraConfig(**settings, chunk_size_feed_forward=2, attn_implementation="eager")).eval()
    chunked.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 99, (3, 12), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(plain(ids).last_hidden_state, chunked(ids).last_hidden_state)
