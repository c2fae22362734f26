"""reimpl.from_pretrained on BERT checkpoints as they are found in the wild, written to disk here.

bert-base-uncased's own file (``bert.`` prefix, LayerNorm gamma/beta, the position_ids buffer,
``cls.*`` heads, pytorch_model.bin) in one piece and in shards, a hub cache folder, and the errors
for folders that are not a checkpoint at all. What every architecture's checkpoints must do
(save_pretrained's files, bare keys, shards, old names, a missing or mis-shaped tensor named):
tests/test_conformance.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import reimpl
from reimpl import CheckpointError
from tests.parity import assert_states_equal, legacy_names, write_config, write_sharded
from tests.test_conformance import BERT


def bert_base_layout(hf) -> dict[str, torch.Tensor]:
    """Keys as in bert-base-uncased's pytorch_model.bin (saved from BertForPreTraining, TF names)."""
    C, V = hf.config.hidden_size, hf.config.vocab_size
    state = {"bert." + key: tensor for key, tensor in legacy_names(hf.state_dict()).items()}
    state["bert.embeddings.position_ids"] = torch.arange(hf.config.max_position_embeddings)[None]
    state["cls.predictions.bias"] = torch.zeros(V)
    state["cls.predictions.transform.dense.weight"] = torch.zeros(C, C)
    state["cls.predictions.transform.LayerNorm.gamma"] = torch.ones(C)
    state["cls.predictions.decoder.weight"] = torch.zeros(V, C)
    state["cls.seq_relationship.weight"] = torch.zeros(2, C)
    return state


@pytest.fixture(scope="module")
def hf():
    return BERT.model("BertModel", seed=3)


@pytest.mark.parametrize("layout", ["bert-base-bin", "bert-base-sharded-bin"])
def test_bert_base_layout_loads_and_matches(tmp_path, hf, layout):
    write_config(tmp_path, hf)
    if layout == "bert-base-bin":
        torch.save(bert_base_layout(hf), tmp_path / "pytorch_model.bin")
    else:
        write_sharded(tmp_path, bert_base_layout(hf), "bin")
    twin = reimpl.from_pretrained(tmp_path)
    assert isinstance(twin, reimpl.BertModel) and twin.pooler is not None
    assert assert_states_equal(hf, twin, **BERT.inputs(hf.config)) == BERT.expected(hf.config, "BertModel")


def test_hub_cache_folder(tmp_path, hf, monkeypatch):
    """A hub id resolves through the local HF cache without touching the network."""
    from huggingface_hub import constants

    snapshot = tmp_path / "models--someone--tiny-bert" / "snapshots" / ("a" * 40)
    write_config(snapshot, hf)
    save_file(hf.state_dict(), snapshot / "model.safetensors")
    (tmp_path / "models--someone--tiny-bert" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-bert" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(reimpl.loading, "_hub_reachable", lambda: pytest.fail("the network was asked"))
    twin = reimpl.from_pretrained("someone/tiny-bert")
    assert_states_equal(hf, twin, **BERT.inputs(hf.config))


def test_bin_is_data_only(tmp_path, hf):
    """A .bin whose pickle would run code is refused by torch.load(weights_only=True)."""

    class Payload:
        def __reduce__(self):
            return (Path("pwned").touch, ())

    write_config(tmp_path, hf)
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(CheckpointError, match="could not read the weights"):
        reimpl.from_pretrained(tmp_path)
    assert not Path("pwned").exists()


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "has no config.json"),
        (lambda d: (d / "config.json").write_text('{"model_type": "bert"}'), "has no model.safetensors or pytorch_model.bin"),
        (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"model_type": "t5"}'), "model_type 't5' is not supported; supported: albert, bart, bert, distilbert, electra, gpt2, llama, marian, mistral, qwen2, qwen3, roberta, xlm-roberta"),
        (lambda d: (d / "config.json").write_text('{"model_type": "bert", "hidden_act": "xielu"}'), "activation 'xielu' is not supported"),
    ],
)
def test_bad_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        reimpl.from_pretrained(tmp_path)


def test_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        reimpl.from_pretrained(tmp_path / "nowhere")


def test_unreachable_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=r"not in the local Hugging Face cache, and the hub can't be reached \(HF_HUB_OFFLINE is set\)"):
        reimpl.from_pretrained("someone/not-cached")
