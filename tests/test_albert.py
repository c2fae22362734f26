"""reimpl/albert.py against transformers' ALBERT, eager attention, fp32 on CPU: bit for bit.

Random-weight models (tests.parity.random_weights) for every AlbertConfig setting that changes the
math: shared groups (num_hidden_groups 1, 2, 3 and more groups than layers), several layers per
group (inner_group_num), an embedding size other than the hidden size, activations, epsilons,
head sizes, segment vocabularies; each twin class, base and heads, with padding in the batch.
Every state the twin records is compared with the value caught inside transformers' modules, and
the number compared is asserted, so a silently skipped stage fails. Then checkpoints on disk,
what is refused, and ``annotate trace --diff``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import reimpl
from annotate.capture import hf_states
from reimpl import recording, versions
from reimpl.albert import (
    AlbertAttention,
    AlbertConfig,
    AlbertForMaskedLM,
    AlbertForPreTraining,
    AlbertForSequenceClassification,
    AlbertLayer,
    AlbertModel,
)
from reimpl.loading import packaged_dir
from tests.conftest import hub_cached
from tests.parity import RETURN_PROBS, assert_states_equal, config_on_every_module, hf_encoder_mask, layer_output, random_weights

SMALL = dict(
    vocab_size=99,
    embedding_size=16,  # E != C: the factorized embedding and embedding_hidden_mapping_in matter
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)
VARIANTS = {
    "default": {},  # one group of one layer, applied twice (as every released checkpoint), gelu_new
    "groups-2-of-4": dict(num_hidden_layers=4, num_hidden_groups=2),  # steps run groups 0 0 1 1
    "groups-3-of-4": dict(num_hidden_layers=4, num_hidden_groups=3),  # 0 0 1 2: transformers' float formula
    "groups-4-of-2": dict(num_hidden_layers=2, num_hidden_groups=4),  # 0 2: groups 1 and 3 never run
    "inner-2": dict(inner_group_num=2),
    "groups-2-inner-2": dict(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2),
    "one-layer": dict(num_hidden_layers=1),
    "embedding-equals-hidden": dict(embedding_size=32),
    "embedding-wider": dict(embedding_size=48),
    **{f"act-{a}": dict(hidden_act=a) for a in (
        "gelu", "relu", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "quick_gelu", "silu", "tanh", "linear",
    )},
    "eps-1e-5": dict(layer_norm_eps=1e-5),
    "head-size-20": dict(hidden_size=60, num_attention_heads=3),
    "type-vocab-1": dict(type_vocab_size=1),
    "type-vocab-3": dict(type_vocab_size=3),
    "labels-3": dict(num_labels=3),  # the classifier and the sentence-order head have num_labels outputs
}
CLASSES = ["AlbertModel", "AlbertForMaskedLM", "AlbertForPreTraining", "AlbertForSequenceClassification"]
TWINS = {cls.__name__: cls for cls in (AlbertModel, AlbertForMaskedLM, AlbertForPreTraining, AlbertForSequenceClassification)}


def random_hf(name: str = "AlbertModel", seed: int = 0, **overrides) -> torch.nn.Module:
    """A transformers ALBERT class, eager, every parameter redrawn (LayerNorm 1/0 would hide bugs)."""
    torch.manual_seed(seed)
    config = transformers.AlbertConfig(**{**SMALL, **overrides}, attn_implementation="eager")
    return random_weights(getattr(transformers, name)(config), seed=seed)


def random_inputs(config, B: int = 3, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2 :] = 0  # right padding, as ALBERT's tokenizer pads
    mask[-1, :3] = 0  # and left padding
    return dict(
        input_ids=torch.randint(0, config.vocab_size, (B, T), generator=g),
        attention_mask=mask,
        token_type_ids=torch.randint(0, config.type_vocab_size, (B, T), generator=g),
    )


def expected_states(config, name: str) -> int:
    """How many states the twin records: embeddings (5), the mapping E -> C, per step of the
    encoder's loop 14 per layer of its group (9 in the attention, 5 in the feed-forward) and the
    step's output, the pooler (2) unless masked LM, and the head's."""
    per_step = 14 * config.inner_group_num + 1
    pooler = 0 if name == "AlbertForMaskedLM" else 2
    head = {"AlbertModel": 0, "AlbertForMaskedLM": 4, "AlbertForPreTraining": 5, "AlbertForSequenceClassification": 1}[name]
    return 5 + 1 + config.num_hidden_layers * per_step + pooler + head


# --- every config setting, every class -----------------------------------------------------------


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_every_step_bit_identical(variant, name):
    hf = random_hf(name, **VARIANTS[variant])
    twin = TWINS[name].from_hf(hf)
    enc = random_inputs(hf.config)
    if versions.V4 and variant == "groups-4-of-2":
        # More groups than layers: transformers 4.57 slices head_mask into int(2 / 4) = 0 entries per
        # group and AlbertLayerGroup indexes it: IndexError. 5.x runs it; so does the twin.
        with pytest.raises(IndexError):
            hf(**enc)
        assert twin(**enc)[0].isfinite().all()
        return
    assert assert_states_equal(hf, twin, **enc) == expected_states(hf.config, name)
    assert assert_states_equal(hf, twin, **{k: v[:1] for k, v in enc.items()})  # one unpadded sentence


def test_without_token_types_or_mask():
    """token_type_ids default to segment A, the mask to all tokens, as in transformers."""
    hf = random_hf("AlbertForPreTraining")
    twin = AlbertForPreTraining.from_hf(hf)
    enc = random_inputs(hf.config)
    assert assert_states_equal(hf, twin, input_ids=enc["input_ids"]) == expected_states(hf.config, "AlbertForPreTraining")


def test_position_ids():
    hf = random_hf("AlbertModel")
    twin = AlbertModel.from_hf(hf)
    enc = random_inputs(hf.config)
    position_ids = torch.arange(3, 3 + enc["input_ids"].shape[1])[None].expand(3, -1)  # (B, T), shifted
    assert assert_states_equal(hf, twin, **enc, position_ids=position_ids) == expected_states(hf.config, "AlbertModel")
    # Without token types, transformers gathers its zero buffer at the position ids: zeros all the same.
    del enc["token_type_ids"]
    assert assert_states_equal(hf, twin, **enc, position_ids=position_ids) == expected_states(hf.config, "AlbertModel")


def test_albert_base_size_bit_identical():
    """albert-base-v2's sizes (E 128, C 768, 12 steps of one shared layer, 12 heads, I 3072, V 30000)."""
    torch.manual_seed(0)
    config = transformers.AlbertConfig(
        vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, attn_implementation="eager",
    )
    hf = random_weights(transformers.AlbertForMaskedLM(config), std=0.05)  # 0.3 would saturate tanh/softmax at this width
    enc = random_inputs(config, B=2, T=32)
    assert assert_states_equal(hf, AlbertForMaskedLM.from_hf(hf), **enc) == expected_states(config, "AlbertForMaskedLM")


# --- one name per application of a shared layer --------------------------------------------------


def test_each_application_has_its_own_names():
    """Groups 0 0 1 1, two layers each: every (step, layer) pair is recorded, the two runs of one
    group's weights keep their own values, and transformers' hooks use the same names."""
    hf = random_hf(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2)
    twin = AlbertModel.from_hf(hf)
    enc = random_inputs(hf.config)
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
    hf = random_hf(num_hidden_layers=3)
    enc = random_inputs(hf.config)
    with hf_states(hf) as once:
        hf(**enc)
    with hf_states(hf) as twice:
        hf(**enc)
        hf(**{k: v[:1] for k, v in enc.items()})
    assert set(once) == set(twice)
    assert twice["encoder.layer.2"].shape[0] == 1


def test_recorded_names_in_forward_order():
    hf = random_hf("AlbertForSequenceClassification")
    with recording() as states:
        AlbertForSequenceClassification.from_hf(hf)(**random_inputs(hf.config))
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


# --- components ------------------------------------------------------------------------------------


def test_components_from_hf():
    """from_hf on single transformers modules, fed the same input, gives the same output."""
    hf = config_on_every_module(random_hf(inner_group_num=2))
    enc = random_inputs(hf.config)
    mask4d = hf_encoder_mask(hf, enc["attention_mask"])
    hidden = hf.encoder.embedding_hidden_mapping_in(hf.embeddings(enc["input_ids"], enc["token_type_ids"]))
    for hf_layer in hf.encoder.albert_layer_groups[0].albert_layers:
        hf_out, hf_probs = hf_layer.attention(hidden, mask4d, **RETURN_PROBS)
        out, probs = AlbertAttention.from_hf(hf_layer.attention)(hidden, enc["attention_mask"])
        assert torch.equal(out, hf_out) and torch.equal(probs, hf_probs)
        hf_next = layer_output(hf_layer(hidden, mask4d))
        assert torch.equal(AlbertLayer.from_hf(hf_layer)(hidden, enc["attention_mask"]), hf_next)
        hidden = hf_next


def test_from_hf_copies_and_ties_weights():
    hf = random_hf("AlbertForMaskedLM")
    assert hf.predictions.decoder.weight is hf.albert.embeddings.word_embeddings.weight  # transformers ties
    twin = AlbertForMaskedLM.from_hf(hf)
    assert twin.predictions.decoder.weight is twin.albert.embeddings.word_embeddings.weight
    assert twin.predictions.decoder.bias is twin.predictions.bias
    with torch.no_grad():
        twin.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.query.weight.zero_()
    assert hf.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.query.weight.abs().sum() > 0


@pytest.mark.parametrize(
    "twin, hf",
    [
        (AlbertModel, lambda: random_hf("AlbertForMaskedLM")),
        (AlbertForMaskedLM, lambda: random_hf("AlbertForPreTraining")),
        (AlbertForPreTraining, lambda: random_hf("AlbertForMaskedLM")),
        (AlbertForSequenceClassification, lambda: random_hf("AlbertModel")),
        (AlbertModel, lambda: transformers.BertModel(transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37))),
        (AlbertAttention, lambda: random_hf().encoder.albert_layer_groups[0].albert_layers[0]),
        (AlbertLayer, lambda: random_hf().encoder.albert_layer_groups[0].albert_layers[0].attention),
    ],
)
def test_from_hf_refuses_another_class(twin, hf):
    module = hf()
    with pytest.raises(TypeError, match=f"{twin.__name__}.from_hf was given a {type(module).__name__}"):
        twin.from_hf(module)


# --- what the twin refuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type 'relative_key' is not supported"),
        (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size 30 is not a multiple of num_attention_heads 4"),
        (dict(num_hidden_groups=0), "at least one group of at least one layer"),
        (dict(inner_group_num=0), "at least one group of at least one layer"),
    ],
)
def test_unsupported_configs_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        AlbertConfig.from_dict({**SMALL, **overrides})


def test_config_from_hf_defaults_match():
    assert AlbertConfig.from_dict(transformers.AlbertConfig().to_dict()) == AlbertConfig()


def test_4d_attention_mask_refused():
    twin = AlbertModel.from_hf(random_hf())
    enc = random_inputs(twin.config)
    with pytest.raises(ValueError, match="attention_mask must be the tokenizer's \\(B, T\\) mask, not a 4-D tensor"):
        twin(enc["input_ids"], enc["attention_mask"][:, None, None, :])


# --- checkpoints on disk ---------------------------------------------------------------------------


def save(hf: torch.nn.Module, folder, fmt: str = "safetensors", **config_overrides) -> None:
    """transformers' save_pretrained; ``bin``: the same tensors as pytorch_model.bin instead."""
    hf.save_pretrained(folder)
    if fmt == "bin":
        torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    if config_overrides:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **config_overrides}))


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("name", CLASSES)
def test_save_pretrained_loads_as_its_class(tmp_path, name, fmt):
    """Heads' saves have ``albert.``-prefixed keys and drop the tied decoder; the base model's are bare."""
    save(random_hf(name, num_hidden_layers=4, num_hidden_groups=2), tmp_path, fmt)
    keys = load_file(tmp_path / "model.safetensors") if fmt == "safetensors" else torch.load(tmp_path / "pytorch_model.bin")
    assert any(k.startswith("albert.") for k in keys) == (name != "AlbertModel")
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is TWINS[name]
    hf = getattr(transformers, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert assert_states_equal(hf, twin, **random_inputs(hf.config)) == expected_states(hf.config, name)
    if name in ("AlbertForMaskedLM", "AlbertForPreTraining"):
        assert twin.predictions.decoder.weight is twin.albert.embeddings.word_embeddings.weight


def test_unknown_head_falls_back_to_the_base_model(tmp_path):
    """A head the twin has no class for: its base model, without the head, and without a pooler the
    checkpoint doesn't have (AlbertForTokenClassification has none)."""
    save(random_hf("AlbertForTokenClassification"), tmp_path)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is AlbertModel and twin.pooler is None and twin.hf_kwargs() == {"add_pooling_layer": False}
    hf = transformers.AlbertModel.from_pretrained(tmp_path, attn_implementation="eager", **twin.hf_kwargs()).eval()
    assert assert_states_equal(hf, twin, **random_inputs(hf.config)) == expected_states(hf.config, "AlbertModel") - 2


def test_base_model_without_pooler(tmp_path):
    torch.manual_seed(0)
    config = transformers.AlbertConfig(**SMALL, attn_implementation="eager")
    save(random_weights(transformers.AlbertModel(config, add_pooling_layer=False)), tmp_path)
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.pooler is None and twin.pooler_activation is None
    hf = transformers.AlbertModel.from_pretrained(tmp_path, attn_implementation="eager", add_pooling_layer=False).eval()
    assert assert_states_equal(hf, twin, **random_inputs(config)) == expected_states(config, "AlbertModel") - 2


def test_untied_decoder(tmp_path):
    """tie_word_embeddings False: the checkpoint's own decoder weight and bias, as transformers uses them."""
    hf = random_hf("AlbertForMaskedLM", tie_word_embeddings=False)
    assert hf.predictions.decoder.weight is not hf.albert.embeddings.word_embeddings.weight
    save(hf, tmp_path)
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.predictions.decoder.weight is not twin.albert.embeddings.word_embeddings.weight
    hf = transformers.AlbertForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert assert_states_equal(hf, twin, **random_inputs(hf.config)) == expected_states(hf.config, "AlbertForMaskedLM")


def test_missing_weight_is_named(tmp_path):
    save(random_hf("AlbertForMaskedLM"), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight"]
    save_file(state, tmp_path / "model.safetensors")
    key = r"albert\.encoder\.albert_layer_groups\.0\.albert_layers\.0\.ffn\.weight"
    with pytest.raises(reimpl.CheckpointError, match=rf"no tensor '{key}'.*\(37, 32\)"):
        reimpl.from_pretrained(tmp_path)


def test_legacy_layernorm_names_load(tmp_path):
    """LayerNorm gamma/beta, as TensorFlow-era files name them: transformers renames them for every model."""
    hf = random_hf("AlbertModel")
    save(hf, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in state.items()}
    save_file(state, tmp_path / "model.safetensors")
    assert any(k.endswith("LayerNorm.gamma") for k in state)
    assert assert_states_equal(hf, reimpl.from_pretrained(tmp_path), **random_inputs(hf.config)) == expected_states(hf.config, "AlbertModel")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(chunk_size_feed_forward=2), "chunk_size_feed_forward=2 is not supported"),
        (dict(hidden_act="gelu_10"), "activation 'gelu_10' is not supported"),
    ],
)
def test_checkpoint_with_unsupported_config_refused(tmp_path, overrides, message):
    save(random_hf("AlbertForMaskedLM"), tmp_path, **overrides)
    with pytest.raises(reimpl.CheckpointError, match=f"albert config .* is not supported: .*{message}"):
        reimpl.from_pretrained(tmp_path)


# --- annotate trace --diff ---------------------------------------------------------------------------


def trace_json(folder, text: str) -> tuple[int, dict, str]:
    from annotate.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["trace", str(folder), text, "--diff", "--json"])
    return code, json.loads(out.getvalue()) if code == 0 else {}, err.getvalue()


@pytest.mark.parametrize("name", ["AlbertModel", "AlbertForMaskedLM", "AlbertForSequenceClassification"])
def test_annotate_trace_diff(tmp_path, name):
    """A saved checkpoint with a BERT WordPiece tokenizer (the packaged MiniLM's, V 30522): every
    stage the tracer shows is bit-identical to transformers', and the layers are the loop's steps."""
    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / file, tmp_path / file)
    save(random_hf(name, vocab_size=30522, num_hidden_layers=4, num_hidden_groups=2), tmp_path)
    code, trace, err = trace_json(tmp_path, "The capital of France is [MASK].")
    assert code == 0, err
    assert trace["model_class"] == name
    assert len(trace["stages"]) > 4 * 15
    for stage in trace["stages"]:
        assert stage["max_abs_diff"] == 0.0, stage["name"]
    assert {stage["layer"] for stage in trace["stages"]} == {None, 0, 1, 2, 3}
    if name != "AlbertModel":
        assert trace["logits_max_abs_diff"] == 0.0


# --- real weights from the local Hugging Face cache ----------------------------------------------------


@pytest.mark.hub
@pytest.mark.parametrize("repo_id", ["albert/albert-base-v2"])
def test_real_checkpoint_from_hub_cache(repo_id):
    if not hub_cached(repo_id):
        pytest.skip(f"{repo_id} is not in the local Hugging Face cache")
    hf = transformers.AlbertForMaskedLM.from_pretrained(repo_id, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(repo_id)
    enc = tok(["The capital of France is [MASK].", "Hello."], padding=True, return_tensors="pt")
    assert assert_states_equal(hf, reimpl.from_pretrained(repo_id), **enc) == expected_states(hf.config, "AlbertForMaskedLM")
