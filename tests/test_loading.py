"""reimpl.from_pretrained on BERT checkpoints as they are found in the wild, written to disk here.

Layouts: sentence-transformers (no prefix, safetensors), bert-base-uncased's own (``bert.``
prefix, LayerNorm gamma/beta, ``cls.*`` heads, pytorch_model.bin), sharded safetensors and .bin,
a hub cache folder, and the errors for what is missing, mis-shaped or not BERT at all.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import reimpl
from reimpl import CheckpointError
from tests.test_bert import assert_states_equal, random_bert, random_inputs


def write_config(folder: Path, hf) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**hf.config.to_dict(), "model_type": "bert"}))


def bert_base_layout(hf) -> dict[str, torch.Tensor]:
    """Keys as in bert-base-uncased's pytorch_model.bin (saved from BertForPreTraining, TF names)."""
    C, V = hf.config.hidden_size, hf.config.vocab_size
    state = {}
    for key, tensor in hf.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state["bert." + key] = tensor
    state["bert.embeddings.position_ids"] = torch.arange(hf.config.max_position_embeddings)[None]
    state["cls.predictions.bias"] = torch.zeros(V)
    state["cls.predictions.transform.dense.weight"] = torch.zeros(C, C)
    state["cls.predictions.transform.LayerNorm.gamma"] = torch.ones(C)
    state["cls.predictions.decoder.weight"] = torch.zeros(V, C)
    state["cls.seq_relationship.weight"] = torch.zeros(2, C)
    return state


def write_sharded(folder: Path, state: dict[str, torch.Tensor], fmt: str) -> None:
    keys = sorted(state)
    halves = {f"model-0000{i + 1}-of-00002.{fmt}": keys[i::2] for i in range(2)}
    weight_map = {}
    for file, names in halves.items():
        part = {k: state[k].contiguous() for k in names}
        save_file(part, folder / file) if fmt == "safetensors" else torch.save(part, folder / file)
        weight_map.update({k: file for k in names})
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def hf():
    return random_bert(seed=3)


@pytest.mark.parametrize("layout", ["sentence-transformers", "bert-base-bin", "sharded-safetensors", "sharded-bin"])
def test_layouts_load_and_match(tmp_path, hf, layout):
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    write_config(tmp_path, hf)
    if layout == "sentence-transformers":
        save_file(state, tmp_path / "model.safetensors")
    elif layout == "bert-base-bin":
        torch.save(bert_base_layout(hf), tmp_path / "pytorch_model.bin")
    elif layout == "sharded-safetensors":
        write_sharded(tmp_path, state, "safetensors")
    else:
        write_sharded(tmp_path, bert_base_layout(hf), "bin")
    twin = reimpl.from_pretrained(tmp_path)
    assert isinstance(twin, reimpl.BertModel) and twin.pooler is not None
    assert_states_equal(hf, twin, random_inputs(hf.config))


def test_checkpoint_without_pooler(tmp_path):
    hf = random_bert(add_pooling_layer=False)
    write_config(tmp_path, hf)
    save_file(hf.state_dict(), tmp_path / "model.safetensors")
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.pooler is None
    assert_states_equal(hf, twin, random_inputs(hf.config))


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
    assert_states_equal(hf, twin, random_inputs(hf.config))


def test_missing_tensor_names_key_and_shape(tmp_path, hf):
    write_config(tmp_path, hf)
    state = dict(hf.state_dict())
    del state["encoder.layer.1.attention.self.key.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"no tensor 'encoder.layer.1.attention.self.key.weight' \(the model needs shape \(32, 32\)\)"):
        reimpl.from_pretrained(tmp_path)


def test_misshaped_tensor_names_key_and_both_shapes(tmp_path, hf):
    write_config(tmp_path, hf)
    state = dict(hf.state_dict())
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(36, 32)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'encoder.layer.0.intermediate.dense.weight' has shape \(36, 32\) in the checkpoint; the model needs \(37, 32\)"):
        reimpl.from_pretrained(tmp_path)


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
        (lambda d: (d / "config.json").write_text('{"model_type": "t5"}'), "model_type 't5' is not supported; supported: albert, bert, distilbert, electra, gpt2, roberta, xlm-roberta"),
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
