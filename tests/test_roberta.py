"""What RoBERTa and XLM-RoBERTa do that BERT does not, against transformers (eager, fp32, CPU):
positions counted from the padding index, as given, and as transformers computes them; and
roberta-base's file layout (a pooler in a masked LM's file, the old position_ids buffer).

Every class, every config setting, the refusals, from_hf, checkpoints, training and
``annotate trace --diff``: tests/test_conformance.py (its RoBERTa and XLM-RoBERTa fixtures).
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import reimpl
from reimpl import recording, versions
from reimpl.roberta import RobertaConfig, RobertaEmbeddings, RobertaForMaskedLM, RobertaModel
from tests.parity import assert_states_equal, hf_from_pretrained
from tests.test_conformance import ROBERTA, XLM_ROBERTA

FIXTURES = {"roberta": ROBERTA, "xlm-roberta": XLM_ROBERTA}


@pytest.mark.parametrize("model_type, cls", [("roberta", "RobertaForMaskedLM"), ("xlm-roberta", "XLMRobertaForSequenceClassification")])
def test_explicit_position_ids_are_used_as_given(model_type, cls):
    """Given position ids are the rows looked up: not counted from pad_token_id + 1."""
    fx = FIXTURES[model_type]
    twin = fx.twin_class(cls).from_hf(fx.model(cls))
    inputs = fx.inputs(twin.config)
    T = inputs["input_ids"].shape[1]
    with recording() as states:
        twin(**inputs, position_ids=torch.arange(T)[None])
    assert torch.equal(states["roberta.embeddings.position_embeddings"][0], twin.roberta.embeddings.position_embeddings.weight[:T])


def test_pad_token_inside_the_mask_still_gets_the_padding_position():
    """Positions are found by token id, not by the attention mask: a pad id the mask keeps is
    still position pad_token_id, and the tokens after it are counted without it."""
    hf = ROBERTA.model("RobertaForMaskedLM")
    twin = RobertaForMaskedLM.from_hf(hf)
    enc = ROBERTA.inputs(hf.config)
    enc["input_ids"][0, 4] = hf.config.pad_token_id  # kept by the mask
    assert assert_states_equal(hf, twin, **enc) == ROBERTA.expected(hf.config, "RobertaForMaskedLM")


@pytest.mark.parametrize("pad", [0, 1, 7])
def test_position_ids_match_transformers(pad):
    config = RobertaConfig.from_dict({**ROBERTA.small, "pad_token_id": pad})
    ids = ROBERTA.inputs(config)["input_ids"]
    ours = RobertaEmbeddings(config).create_position_ids(ids)
    modeling = transformers.models.roberta.modeling_roberta
    # 4.57: a module-level function; 5.x: RobertaEmbeddings' static method
    create = modeling.create_position_ids_from_input_ids if versions.V4 else modeling.RobertaEmbeddings.create_position_ids_from_input_ids
    theirs = create(ids, pad)
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    assert ours[0].tolist() == list(range(pad + 1, pad + 12))  # no padding: pad + 1, pad + 2, ...
    assert ours[2].tolist() == [pad] * 3 + list(range(pad + 1, pad + 9))  # left padding: counted from the first token


def test_recorded_names_in_forward_order():
    twin = reimpl.RobertaForSequenceClassification.from_hf(ROBERTA.model("RobertaForSequenceClassification"))
    with recording() as states:
        twin(**ROBERTA.inputs(twin.config))
    assert list(states)[:3] == [
        "roberta.embeddings.word_embeddings",
        "roberta.embeddings.token_type_embeddings",
        "roberta.embeddings.position_embeddings",
    ]
    assert list(states)[-3:] == ["classifier.dense", "classifier.tanh", "classifier.out_proj"]


def test_roberta_base_file_layout(tmp_path):
    """As roberta-base's pytorch_model.bin: RobertaForMaskedLM's keys plus a pooler, the old
    position_ids buffer and the decoder weight stored (equal to the word embeddings). The masked LM
    ignores the pooler; the base model, built when config.json names no class, keeps it."""
    hf = ROBERTA.model("RobertaForMaskedLM")
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    pooler = ROBERTA.model("RobertaModel", seed=4).pooler
    state |= {f"roberta.pooler.{k}": v.clone() for k, v in pooler.state_dict().items()}
    state["roberta.embeddings.position_ids"] = torch.arange(hf.config.max_position_embeddings)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    config = {**hf.config.to_dict(), "architectures": ["RobertaForMaskedLM"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is RobertaForMaskedLM
    assert twin.lm_head.decoder.weight is twin.roberta.embeddings.word_embeddings.weight
    enc = ROBERTA.inputs(hf.config)
    theirs = hf_from_pretrained("RobertaForMaskedLM", tmp_path)
    assert assert_states_equal(theirs, twin, **enc) == ROBERTA.expected(hf.config, "RobertaForMaskedLM")
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": None}))
    base = reimpl.from_pretrained(tmp_path)
    assert type(base) is RobertaModel and base.pooler is not None
    theirs = hf_from_pretrained("RobertaModel", tmp_path, **base.hf_kwargs())
    assert assert_states_equal(theirs, base, **enc) == ROBERTA.expected(hf.config, "RobertaModel")
