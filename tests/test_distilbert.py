"""reimpl/distilbert.py against transformers' DistilBERT, eager attention, fp32 on CPU: bit for bit.

Random-weight models (tests.parity.random_weights: LayerNorms not 1/0) for every DistilBertConfig
setting that changes the math, each twin class (the base model and both heads) compared at every
recorded step (tests.parity.assert_states_equal) on a batch with right and left padding, with
the number of compared states asserted so that a silently skipped stage fails. Then what
``sinusoidal_pos_embds`` does (transformers 5.24 uses it at init only), checkpoints on disk in
the layouts transformers writes, each refusal by its message, and ``annotate trace --diff``.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import reimpl
from annotate.cli import main
from reimpl.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    DistilBertModel,
    DistilBertSelfAttention,
    TransformerBlock,
)
from reimpl import versions
from reimpl.loading import packaged_dir
from tests.conftest import MINILM, hub_cached
from tests.parity import assert_states_equal, hf_encoder_mask, random_weights

SMALL = dict(
    vocab_size=99,
    dim=32,
    n_layers=2,
    n_heads=4,
    hidden_dim=37,
    max_position_embeddings=64,
    attn_implementation="eager",
)
VARIANTS = {
    "default": {},
    **{f"act-{a}": dict(activation=a) for a in ("relu", "gelu_new", "gelu_pytorch_tanh", "silu", "quick_gelu", "tanh")},
    "head-size-24": dict(dim=48, n_heads=2),
    "head-size-20": dict(dim=60, n_heads=3),
    "head-size-1": dict(dim=8, n_heads=8),
    "one-head": dict(dim=40, n_heads=1),
    "deeper-3": dict(n_layers=3),
    "hidden-dim-128": dict(hidden_dim=128),
    "sinusoidal": dict(sinusoidal_pos_embds=True),
    "pad-token-5": dict(pad_token_id=5),
    "vocab-1000-positions-300": dict(vocab_size=1000, max_position_embeddings=300),
}
CLASSES = ["DistilBertModel", "DistilBertForMaskedLM", "DistilBertForSequenceClassification"]
HEAD_STATES = {"DistilBertModel": 0, "DistilBertForMaskedLM": 4, "DistilBertForSequenceClassification": 3}


def n_states(cls: str, n_layers: int) -> int:
    """Embeddings (4), 15 steps in each layer, and the head's."""
    return 4 + 15 * n_layers + HEAD_STATES[cls]


def random_model(cls: str = "DistilBertModel", seed: int = 0, **overrides) -> torch.nn.Module:
    config = transformers.DistilBertConfig(**{**SMALL, **overrides})
    return random_weights(getattr(transformers, cls)(config), seed=seed)


def batch(vocab_size: int, B: int = 3, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ids; row 1 right-padded (as DistilBERT's tokenizer pads), row 2 left-padded."""
    ids = torch.randint(0, vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, T // 2 :] = 0
    mask[2 % B, :3] = 0
    return dict(input_ids=ids, attention_mask=mask)


# --- every config setting that changes the math, every twin class -------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_every_step_bit_identical(variant):
    hf = random_model(**VARIANTS[variant])
    twin = DistilBertModel.from_hf(hf)
    inputs = batch(hf.config.vocab_size)
    assert assert_states_equal(hf, twin, **inputs) == n_states("DistilBertModel", hf.config.n_layers)
    assert_states_equal(hf, twin, input_ids=inputs["input_ids"][:1])  # one sentence, no mask


@pytest.mark.parametrize("activation", ["gelu", "relu", "gelu_new"])
@pytest.mark.parametrize("cls", CLASSES)
def test_every_class_every_step_bit_identical(cls, activation):
    hf = random_model(cls, activation=activation, num_labels=3)
    twin = getattr(reimpl.distilbert, cls).from_hf(hf)
    assert type(twin).__name__ == cls
    assert assert_states_equal(hf, twin, **batch(99)) == n_states(cls, 2)


def test_untied_masked_lm_keeps_its_own_projector():
    hf = random_model("DistilBertForMaskedLM", tie_word_embeddings=False)
    assert not torch.equal(hf.vocab_projector.weight, hf.distilbert.embeddings.word_embeddings.weight)
    twin = DistilBertForMaskedLM.from_hf(hf)
    assert twin.vocab_projector.weight is not twin.distilbert.embeddings.word_embeddings.weight
    assert assert_states_equal(hf, twin, **batch(99)) == n_states("DistilBertForMaskedLM", 2)


def test_masked_lm_projector_is_the_word_embedding():
    twin = DistilBertForMaskedLM.from_hf(random_model("DistilBertForMaskedLM"))
    assert twin.vocab_projector.weight is twin.distilbert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("cls", CLASSES)
def test_position_ids_as_given(cls):
    """position_ids change the math (which rows of the table are added): (1, T) and (B, T)."""
    hf = random_model(cls)
    twin = getattr(reimpl.distilbert, cls).from_hf(hf)
    inputs = batch(99)
    if versions.V4:  # transformers 4.57's DistilBERT takes no position_ids (5.x added them): always 0..T-1
        with pytest.raises(TypeError, match="position_ids"):
            hf(**inputs, position_ids=torch.arange(11)[None])
        return
    for positions in (torch.arange(11).flip(0)[None], torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(2))):
        assert assert_states_equal(hf, twin, **inputs, position_ids=positions) == n_states(cls, 2)


def test_distilbert_base_size_bit_identical():
    """distilbert-base-uncased's shape (dim 768, 6 layers, 12 heads, V 30522), random weights."""
    hf = random_weights(
        transformers.DistilBertModel(transformers.DistilBertConfig(attn_implementation="eager")), std=0.05
    )
    twin = DistilBertModel.from_hf(hf)
    assert assert_states_equal(hf, twin, **batch(30522, B=2, T=48)) == n_states("DistilBertModel", 6)


# --- components, fed the same input ------------------------------------------------------------


def test_components_from_hf():
    hf = random_model()
    inputs = batch(99)
    hidden = hf.embeddings(inputs["input_ids"])
    for hf_layer in hf.transformer.layer:
        if versions.V4:  # 4.57: MultiHeadSelfAttention(query, key, value, mask) takes the (B, T) mask itself
            mask = inputs["attention_mask"]
            hf_output, hf_probs = hf_layer.attention(hidden, hidden, hidden, mask, output_attentions=True)
            hf_next = hf_layer(hidden, attn_mask=mask)[0]
        else:
            mask4d = hf_encoder_mask(hf, inputs["attention_mask"])
            hf_output, hf_probs = hf_layer.attention(hidden, attention_mask=mask4d)
            hf_next = hf_layer(hidden, attention_mask=mask4d)
        output, probs = DistilBertSelfAttention.from_hf(hf_layer.attention)(hidden, inputs["attention_mask"])
        assert torch.equal(output, hf_output) and torch.equal(probs, hf_probs)
        assert torch.equal(TransformerBlock.from_hf(hf_layer)(hidden, inputs["attention_mask"]), hf_next)
        hidden = hf_next


def test_from_hf_copies_weights():
    hf = random_model()
    twin = DistilBertModel.from_hf(hf)
    with torch.no_grad():
        twin.transformer.layer[0].attention.q_lin.weight.zero_()
    assert hf.transformer.layer[0].attention.q_lin.weight.abs().sum() > 0


@pytest.mark.parametrize(
    "twin_cls, module, given",
    [
        (DistilBertModel, lambda: transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)), "BertModel"),
        (DistilBertForMaskedLM, lambda: random_model("DistilBertModel"), "DistilBertModel"),
        (DistilBertForSequenceClassification, lambda: random_model("DistilBertForMaskedLM"), "DistilBertForMaskedLM"),
        (DistilBertModel, lambda: random_model("DistilBertForSequenceClassification"), "DistilBertForSequenceClassification"),
        (TransformerBlock, lambda: random_model().transformer, "Transformer"),
        (DistilBertSelfAttention, lambda: random_model().transformer.layer[0], "TransformerBlock"),
    ],
)
def test_from_hf_refuses_a_module_of_another_class(twin_cls, module, given):
    with pytest.raises(TypeError, match=f"{twin_cls.__name__}.from_hf was given a {given};"):
        twin_cls.from_hf(module())


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
    hf = transformers.DistilBertModel(transformers.DistilBertConfig(**SMALL, sinusoidal_pos_embds=sinusoidal)).eval()
    table = hf.embeddings.position_embeddings.weight
    is_sinusoidal = (table.double() - sinusoidal_table(64, 32)).abs().max() < 1e-6
    assert bool(is_sinusoidal) == sinusoidal
    twin = DistilBertModel.from_hf(hf)
    assert torch.equal(twin.embeddings.position_embeddings.weight, table)
    assert assert_states_equal(hf, twin, **batch(99)) == n_states("DistilBertModel", 2)


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_sinusoidal_checkpoint_table_is_used_as_stored(sinusoidal, tmp_path):
    """A checkpoint that stores position_embeddings.weight (random here, not sin/cos) is loaded as
    stored by transformers whatever the flag; so by the twin."""
    hf = random_model(sinusoidal_pos_embds=sinusoidal)
    stored = hf.embeddings.position_embeddings.weight.detach().clone()
    assert (stored.double() - sinusoidal_table(64, 32)).abs().max() > 0.1
    hf.save_pretrained(tmp_path)
    theirs = transformers.DistilBertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert torch.equal(theirs.embeddings.position_embeddings.weight, stored)
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.config.sinusoidal_pos_embds is sinusoidal
    assert torch.equal(twin.embeddings.position_embeddings.weight, stored)
    assert assert_states_equal(theirs, twin, **batch(99)) == n_states("DistilBertModel", 2)


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_checkpoint_without_position_table_is_refused(sinusoidal, tmp_path):
    """transformers would make one up (sin/cos, or N(0, 0.02)); the twin names what is missing."""
    hf = random_model(sinusoidal_pos_embds=sinusoidal)
    hf.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["embeddings.position_embeddings.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(reimpl.CheckpointError, match=r"no tensor 'embeddings\.position_embeddings\.weight'.*\(64, 32\)"):
        reimpl.from_pretrained(tmp_path)


# --- configs and inputs the twin refuses, and config names ---------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(activation="xielu"), "activation 'xielu' is not supported"),
        (dict(dim=30, n_heads=4), "dim 30 is not a multiple of n_heads 4"),
        (dict(chunk_size_feed_forward=4), "chunk_size_feed_forward=4 is not supported"),
    ],
)
def test_unsupported_configs_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        DistilBertConfig.from_dict({**transformers.DistilBertConfig(**SMALL).to_dict(), **overrides})


def test_chunked_feed_forward_model_is_refused_by_from_hf():
    hf = random_model(chunk_size_feed_forward=1)
    with pytest.raises(ValueError, match="chunk_size_feed_forward=1 is not supported"):
        DistilBertModel.from_hf(hf)


def test_config_defaults_match_transformers():
    assert DistilBertConfig.from_dict(transformers.DistilBertConfig().to_dict()) == DistilBertConfig()


def test_config_takes_transformers_attribute_map_names():
    """hidden_size / num_attention_heads / num_hidden_layers set dim / n_heads / n_layers, as in
    transformers (where hidden_size wins over dim); the twin's config reads them back the same way."""
    d = {"dim": 32, "hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 3}
    theirs = transformers.DistilBertConfig.from_dict(d)
    ours = DistilBertConfig.from_dict(d)
    assert (ours.dim, ours.n_heads, ours.n_layers) == (theirs.dim, theirs.n_heads, theirs.n_layers) == (64, 8, 3)
    assert (ours.hidden_size, ours.num_attention_heads, ours.num_hidden_layers) == (64, 8, 3)
    assert ours.max_position_embeddings == 512


def test_refused_inputs():
    twin = DistilBertModel.from_hf(random_model())
    ids = torch.randint(0, 99, (2, 5))
    with pytest.raises(ValueError, match="attention_mask must be the tokenizer's"):
        twin(ids, torch.ones(2, 1, 5, 5))
    with pytest.raises(ValueError, match="input has 65 tokens; the model has 64 positions"):
        twin(torch.zeros(1, 65, dtype=torch.long))
    # Left out, as in reimpl/bert.py: embeddings given instead of ids. (The losses are in: tests/test_training.py.)
    with pytest.raises(TypeError, match="inputs_embeds"):
        twin(ids, inputs_embeds=torch.zeros(2, 5, 32))


# --- recording -----------------------------------------------------------------------------------


def test_recorded_names_in_forward_order():
    hf = random_model("DistilBertForMaskedLM", n_layers=2)
    twin = DistilBertForMaskedLM.from_hf(hf)
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
    hf_paths = {name for name, _ in hf.named_modules()}
    for name in states:  # every name is a transformers module path, or one plus a step
        assert name in hf_paths or name.rsplit(".", 1)[0] in hf_paths, name
    assert states["distilbert.transformer.layer.1.attention.probs"].shape == (1, 4, 4, 4)


def test_architecture_record():
    arch = reimpl.architecture("distilbert")
    assert arch.base is DistilBertModel and arch.default is DistilBertModel
    assert arch.heads == (DistilBertForMaskedLM, DistilBertForSequenceClassification)
    assert (arch.causal, arch.token_types, arch.layers, arch.attention) == (False, False, "transformer.layer", "attention")
    assert arch.hf_module == "transformers.models.distilbert.modeling_distilbert"
    assert DistilBertModel.base_model_prefix == DistilBertForMaskedLM.base_model_prefix == "distilbert"


# --- checkpoints on disk -----------------------------------------------------------------------


def save(model, folder, architectures=None, bin: bool = False):
    """transformers' save_pretrained; ``bin``: the same tensors as pytorch_model.bin instead."""
    model.save_pretrained(folder)
    if bin:
        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    if architectures is not None:
        config = json.loads((folder / "config.json").read_text())
        config["architectures"] = architectures
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("bin", [False, True], ids=["safetensors", "bin"])
@pytest.mark.parametrize("cls", CLASSES)
def test_from_pretrained_builds_the_class_config_names(cls, bin, tmp_path):
    hf = random_model(cls, num_labels=3)
    twin = reimpl.from_pretrained(save(hf, tmp_path, bin=bin))
    assert type(twin).__name__ == cls
    theirs = getattr(transformers, cls).from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert assert_states_equal(theirs, twin, **batch(99)) == n_states(cls, 2)
    if cls == "DistilBertForMaskedLM" and not bin:  # transformers writes no vocab_projector.weight: it is the word embedding
        assert "vocab_projector.weight" not in load_file(tmp_path / "model.safetensors")
    if cls == "DistilBertForMaskedLM":
        assert twin.vocab_projector.weight is twin.distilbert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("bin", [False, True], ids=["safetensors", "bin"])
def test_bare_keys_of_the_base_model_load_into_it(bin, tmp_path):
    """Saved from DistilBertModel: keys without ``distilbert.``."""
    hf = random_model("DistilBertModel")
    save(hf, tmp_path, bin=bin)
    state = torch.load(tmp_path / "pytorch_model.bin") if bin else load_file(tmp_path / "model.safetensors")
    assert not any(key.startswith("distilbert.") for key in state)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is DistilBertModel
    theirs = transformers.DistilBertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert_states_equal(theirs, twin, **batch(99))


def test_untied_masked_lm_checkpoint(tmp_path):
    hf = random_model("DistilBertForMaskedLM", tie_word_embeddings=False)
    twin = reimpl.from_pretrained(save(hf, tmp_path))
    assert twin.vocab_projector.weight is not twin.distilbert.embeddings.word_embeddings.weight
    theirs = transformers.DistilBertForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert_states_equal(theirs, twin, **batch(99))


def test_prefixed_checkpoint_loads_into_the_base_model(tmp_path):
    """A classifier's file (``distilbert.`` keys) named as DistilBertModel: the body, as transformers loads it."""
    hf = random_model("DistilBertForSequenceClassification")
    twin = reimpl.from_pretrained(save(hf, tmp_path, architectures=["DistilBertModel"]))
    assert type(twin) is DistilBertModel
    theirs = transformers.DistilBertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert_states_equal(theirs, twin, **batch(99))


def test_a_head_the_twin_lacks_falls_back_to_the_base_model(tmp_path):
    hf = random_model("DistilBertForQuestionAnswering")
    twin = reimpl.from_pretrained(save(hf, tmp_path))
    assert type(twin) is DistilBertModel
    theirs = transformers.DistilBertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert_states_equal(theirs, twin, **batch(99))


def test_a_base_checkpoint_named_as_a_head_lacks_the_head(tmp_path):
    hf = random_model("DistilBertModel")
    with pytest.raises(reimpl.CheckpointError, match="no tensor 'pre_classifier.weight'"):
        reimpl.from_pretrained(save(hf, tmp_path, architectures=["DistilBertForSequenceClassification"]))


def test_checkpoint_with_refused_config(tmp_path):
    hf = random_model("DistilBertModel")
    save(hf, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "chunk_size_feed_forward": 2}))
    with pytest.raises(reimpl.CheckpointError, match="distilbert config .* is not supported: chunk_size_feed_forward=2"):
        reimpl.from_pretrained(tmp_path)


# --- annotate trace --diff on a saved checkpoint ------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_trace_diff_is_zero_at_every_stage(cls, tmp_path, capsys):
    """A random model with BERT's WordPiece vocabulary (30,522) and the MiniLM tokenizer files."""
    minilm = packaged_dir(MINILM)
    hf = random_model(cls, vocab_size=30522, num_labels=3)
    save(hf, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / name, tmp_path / name)
    code = main(["trace", str(tmp_path), "Paris is the capital of [MASK].", "--diff", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    trace = json.loads(out)
    assert trace["model_type"] == "distilbert" and trace["model_class"] == cls
    # A head's logits are not a stage; the base model's output is one more (last_hidden_state).
    assert len(trace["stages"]) == n_states(cls, 2) + (1 if cls == "DistilBertModel" else -1)
    assert all(s["max_abs_diff"] == 0.0 for s in trace["stages"]), [s["name"] for s in trace["stages"] if s["max_abs_diff"] != 0.0]
    if cls != "DistilBertModel":
        assert trace["logits_max_abs_diff"] == 0.0
    if cls == "DistilBertForMaskedLM":
        assert [m["position"] for m in trace["mask_predictions"]] == [trace["tokens"].index("[MASK]")]
    if cls == "DistilBertForSequenceClassification":
        assert len(trace["labels"]) == 3


# --- real weights from the local Hugging Face cache ---------------------------------------------


@pytest.mark.hub
@pytest.mark.parametrize(
    "repo_id, cls",
    [
        ("distilbert-base-uncased", "DistilBertForMaskedLM"),
        ("distilbert-base-uncased-finetuned-sst-2-english", "DistilBertForSequenceClassification"),
    ],
)
def test_real_checkpoint_from_hub_cache(repo_id, cls):
    if not hub_cached(repo_id):
        pytest.skip(f"{repo_id} is not in the local Hugging Face cache")
    theirs = getattr(transformers, cls).from_pretrained(repo_id, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(repo_id)
    twin = reimpl.from_pretrained(repo_id)
    assert type(twin).__name__ == cls
    enc = tok(["The cat sat on the [MASK].", "Attention is all you need, said the paper."], padding=True, return_tensors="pt")
    assert_states_equal(theirs, twin, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
