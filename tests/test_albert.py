"""ALBERT's shared layers against transformers (eager, fp32, CPU): one recorded name per
application of a shared layer (the encoder's loop steps), each run keeping its own values, and
transformers' hooks numbered per forward.

Every class, every config setting (shared groups 1, 2, 3 and more groups than layers, several
layers per group, E != C, ...), the components, the refusals, from_hf, checkpoints, training and
``annotate trace --diff``: tests/test_conformance.py (its ALBERT fixture).
"""

from __future__ import annotations

import torch

from annotate.capture import hf_states
from reimpl import recording
from reimpl.albert import AlbertForSequenceClassification, AlbertModel
from tests.test_conformance import ALBERT


# --- one name per application of a shared layer --------------------------------------------------


def test_each_application_has_its_own_names():
    """Groups 0 0 1 1, two layers each: every (step, layer) pair is recorded, the two runs of one
    group's weights keep their own values, and transformers' hooks use the same names."""
    hf = ALBERT.model("AlbertModel", num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2)
    twin = AlbertModel.from_hf(hf)
    enc = ALBERT.inputs(hf.config)
    with recording() as ours:
        twin(**enc)
    with hf_states(hf) as theirs:
        hf(**enc)
    for i in range(4):
        for j in range(2):
            assert f"encoder.layer.{i}.albert_layers.{j}.attention.probs" in ours
        assert torch.equal(ours[f"encoder.layer.{i}"], ours[f"encoder.layer.{i}.albert_layers.1.full_layer_layer_norm"])
    step0, step1 = (ours[f"encoder.layer.{i}.albert_layers.0.attention.query"] for i in (0, 1))  # group 0 twice
    assert not torch.equal(step0, step1)
    assert not any("albert_layer_groups" in name for name in ours)
    assert set(theirs) == {name + "+mask" if name.endswith(".scores") else name for name in ours}
    # Outside the recording, every module has its own path again.
    attention = twin.encoder.albert_layer_groups[1].albert_layers[0].attention
    assert attention._annotate_path == "encoder.albert_layer_groups.1.albert_layers.0.attention"


def test_hooks_number_each_forward_from_zero():
    """Two forwards in one hf_states block: the second overwrites the first under the same names."""
    hf = ALBERT.model("AlbertModel", num_hidden_layers=3)
    enc = ALBERT.inputs(hf.config)
    with hf_states(hf) as once:
        hf(**enc)
    with hf_states(hf) as twice:
        hf(**enc)
        hf(**{k: v[:1] for k, v in enc.items()})
    assert set(once) == set(twice)
    assert twice["encoder.layer.2"].shape[0] == 1


def test_recorded_names_in_forward_order():
    hf = ALBERT.model("AlbertForSequenceClassification")
    with recording() as states:
        AlbertForSequenceClassification.from_hf(hf)(**ALBERT.inputs(hf.config))
    names = list(states)
    assert names[:6] == [
        "albert.embeddings.word_embeddings",
        "albert.embeddings.token_type_embeddings",
        "albert.embeddings.position_embeddings",
        "albert.embeddings.sum",
        "albert.embeddings.LayerNorm",
        "albert.encoder.embedding_hidden_mapping_in",
    ]
    assert names[6:21] == [f"albert.encoder.layer.0.albert_layers.0.{step}" for step in (
        "attention.query", "attention.key", "attention.value", "attention.scores", "attention.probs",
        "attention.context", "attention.dense", "attention.residual", "attention.LayerNorm",
        "ffn", "activation", "ffn_output", "residual", "full_layer_layer_norm",
    )] + ["albert.encoder.layer.0"]
    assert names[-3:] == ["albert.pooler", "albert.pooler_activation", "classifier"]
    assert states["albert.embeddings.sum"].shape == (3, 11, 16)  # (B, T, E)
    assert states["albert.encoder.embedding_hidden_mapping_in"].shape == (3, 11, 32)  # (B, T, C)
