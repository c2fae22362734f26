"""What DistilBERT does that the others don't, against transformers (eager, fp32, CPU): what
``sinusoidal_pos_embds`` does (transformers 5.24 uses it at init only), a checkpoint without its
position table, the config's attribute_map names, the chunked feed-forward refused by from_hf,
the input length, and the recorded names in order.

Every class, every config setting, position ids (4.57's DistilBERT takes none: the fixture's
``hf_position_ids``), the refusals, from_hf, checkpoints, training and ``annotate trace --diff``:
tests/test_conformance.py (its DistilBERT fixture).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import reimpl
from reimpl.distilbert import DistilBertConfig, DistilBertForMaskedLM, DistilBertModel
from tests.parity import assert_states_equal, hf_from_pretrained
from tests.test_conformance import DISTILBERT


# --- sinusoidal_pos_embds: transformers 5.24 uses it at init only -------------------------------


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """The table of the paper ("Attention is all you need", 3.5), in float64."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    j = torch.arange(dim)
    angle = pos / torch.pow(10000.0, (2 * (j // 2) / dim).double())
    return torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_sinusoidal_at_init(sinusoidal):
    """transformers' _init_weights fills a new model's table with sin/cos when the flag is set
    (computed in numpy float64, then cast); the twin of that model has the same table, bit for bit,
    and equals it at every step. The table is still a parameter in both."""
    torch.manual_seed(0)
    hf = transformers.DistilBertModel(DISTILBERT.config(sinusoidal_pos_embds=sinusoidal)).eval()
    table = hf.embeddings.position_embeddings.weight
    is_sinusoidal = (table.double() - sinusoidal_table(64, 32)).abs().max() < 1e-6
    assert bool(is_sinusoidal) == sinusoidal
    twin = DistilBertModel.from_hf(hf)
    assert torch.equal(twin.embeddings.position_embeddings.weight, table)
    assert assert_states_equal(hf, twin, **DISTILBERT.inputs(hf.config)) == DISTILBERT.expected(hf.config, "DistilBertModel")


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_sinusoidal_checkpoint_table_is_used_as_stored(sinusoidal, tmp_path):
    """A checkpoint that stores position_embeddings.weight (random here, not sin/cos) is loaded as
    stored by transformers whatever the flag; so by the twin."""
    hf = DISTILBERT.model("DistilBertModel", sinusoidal_pos_embds=sinusoidal)
    stored = hf.embeddings.position_embeddings.weight.detach().clone()
    assert (stored.double() - sinusoidal_table(64, 32)).abs().max() > 0.1
    hf.save_pretrained(tmp_path)
    theirs = hf_from_pretrained("DistilBertModel", tmp_path)
    assert torch.equal(theirs.embeddings.position_embeddings.weight, stored)
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.config.sinusoidal_pos_embds is sinusoidal
    assert torch.equal(twin.embeddings.position_embeddings.weight, stored)
    assert assert_states_equal(theirs, twin, **DISTILBERT.inputs(hf.config)) == DISTILBERT.expected(hf.config, "DistilBertModel")


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_checkpoint_without_position_table_is_refused(sinusoidal, tmp_path):
    """transformers would make one up (sin/cos, or N(0, 0.02)); the twin names what is missing."""
    hf = DISTILBERT.model("DistilBertModel", sinusoidal_pos_embds=sinusoidal)
    hf.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["embeddings.position_embeddings.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(reimpl.CheckpointError, match=r"no tensor 'embeddings\.position_embeddings\.weight'.*\(64, 32\)"):
        reimpl.from_pretrained(tmp_path)


# --- configs and inputs the twin refuses, and config names ---------------------------------------


def test_chunked_feed_forward_model_is_refused_by_from_hf():
    hf = DISTILBERT.model("DistilBertModel", chunk_size_feed_forward=1)
    with pytest.raises(ValueError, match="chunk_size_feed_forward=1 is not supported"):
        DistilBertModel.from_hf(hf)


def test_config_takes_transformers_attribute_map_names():
    """hidden_size / num_attention_heads / num_hidden_layers set dim / n_heads / n_layers, as in
    transformers (where hidden_size wins over dim); the twin's config reads them back the same way."""
    d = {"dim": 32, "hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 3}
    theirs = transformers.DistilBertConfig.from_dict(d)
    ours = DistilBertConfig.from_dict(d)
    assert (ours.dim, ours.n_heads, ours.n_layers) == (theirs.dim, theirs.n_heads, theirs.n_layers) == (64, 8, 3)
    assert (ours.hidden_size, ours.num_attention_heads, ours.num_hidden_layers) == (64, 8, 3)
    assert ours.max_position_embeddings == 512


def test_input_longer_than_the_position_table_refused():
    twin = DistilBertModel.from_hf(DISTILBERT.model("DistilBertModel"))
    with pytest.raises(ValueError, match="input has 65 tokens; the model has 64 positions"):
        twin(torch.zeros(1, 65, dtype=torch.long))


# --- recording -----------------------------------------------------------------------------------


def test_recorded_names_in_forward_order():
    twin = DistilBertForMaskedLM.from_hf(DISTILBERT.model("DistilBertForMaskedLM", n_layers=2))
    with reimpl.recording() as states:
        twin(torch.randint(0, 99, (1, 4)))
    layer = [
        "attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.scores", "attention.probs",
        "attention.context", "attention.out_lin", "attention.residual", "sa_layer_norm",
        "ffn.lin1", "ffn.activation", "ffn.lin2", "ffn.residual", "output_layer_norm",
    ]
    expected = [f"distilbert.embeddings.{s}" for s in ("word_embeddings", "position_embeddings", "sum", "LayerNorm")]
    for i in range(2):
        expected += [f"distilbert.transformer.layer.{i}.{step}" for step in layer] + [f"distilbert.transformer.layer.{i}"]
    expected += ["vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"]
    assert list(states) == expected
    assert states["distilbert.transformer.layer.1.attention.probs"].shape == (1, 4, 4, 4)
