"""reimpl/bert.py against transformers' BertModel, eager attention, fp32 on CPU: bit for bit.

Real weights (the packaged all-MiniLM-L6-v2) and random-weight models for every BertConfig
setting that changes the math. Each intermediate state the twin records is compared with the
same value caught inside transformers' modules by hooks, so a difference is pinned to a step.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import reimpl
from annotate import align
from annotate.capture import hf_states
from reimpl import BertLayer, BertModel, BertSelfAttention, recording
from tests.conftest import hub_cached
from tests.parity import config_on_every_module, hf_encoder_mask, layer_output

SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need, said the paper, and the field listened.",
    "Short one.",
]


def assert_states_equal(hf: torch.nn.Module, twin: BertModel, enc: dict[str, torch.Tensor]) -> int:
    """Run both on ``enc``; every state the twin records must equal transformers' bit for bit."""
    with hf_states(hf) as theirs:
        hf_out = hf(**enc)
    with recording() as ours:
        out = twin(enc["input_ids"], enc.get("attention_mask"), enc.get("token_type_ids"))
    assert torch.equal(out.last_hidden_state, hf_out.last_hidden_state)
    if hf.pooler is not None:
        assert torch.equal(out.pooler_output, hf_out.pooler_output)
    else:
        assert out.pooler_output is None and hf_out.pooler_output is None

    mask = enc.get("attention_mask")
    keep = align.keep_mask(enc["input_ids"], mask, causal=False)
    compared = 0
    for name, value, seen in align.pairs(ours, theirs, keep):  # softmax saw scores + mask: compared where a key is kept
        assert seen is not None, f"no transformers value caught for {name}"
        assert torch.equal(value, seen), f"{name} differs: max |diff| {(value - seen).abs().max():.3g}"
        if name.endswith(".scores"):  # and where it is not, the mask's minimum
            masked = theirs[name + "+mask"][~keep.expand_as(theirs[name + "+mask"])]
            assert (masked < -1e38).all(), name
        compared += 1
    return compared


# --- real weights: all-MiniLM-L6-v2 --------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return reimpl.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")


def test_minilm_single_sentence_every_step_bit_identical(minilm_hf, minilm, minilm_tokenizer):
    enc = minilm_tokenizer(SENTENCES[1], return_tensors="pt")
    n = assert_states_equal(minilm_hf, minilm, dict(enc))
    assert n == 5 + 6 * 15 + 2  # embeddings, 15 steps in each of 6 layers, pooler: all compared


def test_minilm_padded_batch_every_step_bit_identical(minilm_hf, minilm, minilm_tokenizer):
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert not enc["attention_mask"].all()  # the batch really has padding
    assert_states_equal(minilm_hf, minilm, dict(enc))


def test_minilm_padded_rows_equal_unpadded_sentences(minilm, minilm_tokenizer):
    """Padding changes nothing for the real tokens but the last bits: row i of the batch is sentence i alone."""
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    batch = minilm(enc["input_ids"], enc["attention_mask"]).last_hidden_state
    for i, sentence in enumerate(SENTENCES):
        alone = minilm_tokenizer(sentence, return_tensors="pt")
        T = alone["input_ids"].shape[1]
        single = minilm(alone["input_ids"]).last_hidden_state
        # Not bitwise: a (T, T) and a (T, T_max) matmul may sum in other blocks. Measured: 1.4e-6,
        # 0 and 1.9e-6 for the three sentences (outputs up to ~6); the bound is ~5x the largest.
        assert (batch[i, :T] - single[0]).abs().max() < 1e-5


def test_minilm_components_from_hf(minilm_hf, minilm_tokenizer):
    """from_hf on single transformers modules, fed the same input, gives the same output."""
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    config_on_every_module(minilm_hf)
    mask4d = hf_encoder_mask(minilm_hf, enc["attention_mask"])
    hidden = minilm_hf.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
    for hf_layer in minilm_hf.encoder.layer:
        hf_context, hf_probs = hf_layer.attention.self(hidden, attention_mask=mask4d)
        context, probs = BertSelfAttention.from_hf(hf_layer.attention.self)(hidden, enc["attention_mask"])
        assert torch.equal(context, hf_context) and torch.equal(probs, hf_probs)
        hf_next = layer_output(hf_layer(hidden, attention_mask=mask4d))
        assert torch.equal(BertLayer.from_hf(hf_layer)(hidden, enc["attention_mask"]), hf_next)
        hidden = hf_next


def test_from_hf_copies_weights(minilm_hf):
    twin = BertModel.from_hf(minilm_hf)
    with torch.no_grad():
        twin.encoder.layer[0].attention.self.query.weight.zero_()
    assert minilm_hf.encoder.layer[0].attention.self.query.weight.abs().sum() > 0


def test_minilm_sdpa_bound(minilm_dir, minilm, minilm_tokenizer):
    """transformers' default (sdpa) is not the eager path: torch's fused CPU kernel computes
    softmax(Q K^T) V blockwise with an online softmax, summing in another order. Measured on this
    batch (outputs up to ~6 in magnitude): 2.3e-6 at real tokens, 4.1e-5 at padding positions,
    whose rows attend to nothing real. Transformers' own eager vs sdpa differ by exactly as much.
    Bounds: ~4x the measurements."""
    sdpa = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="sdpa").eval()
    enc = minilm_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    diff = (sdpa(**enc).last_hidden_state - minilm(enc["input_ids"], enc["attention_mask"]).last_hidden_state).abs()
    real = enc["attention_mask"].bool()
    assert diff[real].max() < 1e-5, f"sdpa vs twin at real tokens: {diff[real].max():.3g}"
    assert diff.max() < 2e-4, f"sdpa vs twin at padding: {diff.max():.3g}"


# --- random weights: every config setting that changes the math ---------------------------------

SMALL = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)
VARIANTS = {
    **{f"act-{a}": dict(hidden_act=a) for a in (
        "gelu", "relu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "gelu_python_tanh",
        "quick_gelu", "silu", "swish", "tanh", "sigmoid", "linear",
    )},
    "eps-1e-5": dict(layer_norm_eps=1e-5),
    "eps-1e-3": dict(layer_norm_eps=1e-3),
    "head-size-24": dict(hidden_size=48, num_attention_heads=2),
    "head-size-80": dict(hidden_size=80, num_attention_heads=1),
    "head-size-20": dict(hidden_size=60, num_attention_heads=3),
    "type-vocab-1": dict(type_vocab_size=1),
    "type-vocab-3": dict(type_vocab_size=3),
    "vocab-1000-positions-300": dict(vocab_size=1000, max_position_embeddings=300),
    "deeper-4": dict(num_hidden_layers=4),
}


def random_bert(seed: int = 0, add_pooling_layer: bool = True, **overrides) -> transformers.BertModel:
    """A transformers BertModel with every parameter random (not HF's init: LayerNorm 1/0 would hide bugs)."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(**{**SMALL, **overrides}, attn_implementation="eager")
    model = transformers.BertModel(config, add_pooling_layer=add_pooling_layer).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    return model


def random_inputs(config, B: int = 3, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T // 2 :] = 0  # right padding, as BERT's tokenizer pads
    mask[-1, :3] = 0  # and left padding
    return dict(
        input_ids=torch.randint(0, config.vocab_size, (B, T), generator=g),
        attention_mask=mask,
        token_type_ids=torch.randint(0, config.type_vocab_size, (B, T), generator=g),
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_every_step_bit_identical(variant):
    hf = random_bert(**VARIANTS[variant])
    twin = BertModel.from_hf(hf)
    enc = random_inputs(hf.config)
    assert_states_equal(hf, twin, enc)
    assert_states_equal(hf, twin, {k: v[:1] for k, v in enc.items()})  # one unpadded sentence


def test_bert_base_size_bit_identical():
    hf = random_bert(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512,
    )
    enc = random_inputs(hf.config, B=2, T=64)
    assert_states_equal(hf, BertModel.from_hf(hf), enc)


def test_bert_base_size_sdpa_bound():
    """transformers' sdpa vs the twin at bert-base size with HF's own init: measured 2.9e-6 on
    outputs of magnitude ~4 (transformers' own eager vs sdpa differ by the same). Bound: ~3x that."""
    torch.manual_seed(0)
    config = transformers.BertConfig(attn_implementation="sdpa")
    hf = transformers.BertModel(config).eval()
    enc = random_inputs(config, B=2, T=64)
    twin = BertModel.from_hf(hf)
    diff = (hf(**enc).last_hidden_state - twin(**enc).last_hidden_state).abs().max()
    assert diff < 1e-5, f"sdpa vs twin: {diff:.3g}"


def test_no_pooler():
    hf = random_bert(add_pooling_layer=False)
    twin = BertModel.from_hf(hf)
    assert twin.pooler is None
    assert_states_equal(hf, twin, random_inputs(hf.config))


# --- configs the twin refuses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_act="xielu"), "activation 'xielu' is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type"),
        (dict(is_decoder=True), "decoder"),
        (dict(hidden_size=30, num_attention_heads=4), "not a multiple"),
    ],
)
def test_unsupported_configs_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        reimpl.bert.BertConfig.from_dict({**SMALL, **overrides})


# --- recording ---------------------------------------------------------------------------------


def test_recording_off_keeps_nothing(minilm, minilm_tokenizer):
    from reimpl import states as rec_module

    enc = minilm_tokenizer(SENTENCES[0], return_tensors="pt")
    minilm(enc["input_ids"])
    assert rec_module._states is None
    with recording() as outer:
        with recording() as inner:
            minilm(enc["input_ids"])
        assert outer == {} and len(inner) > 0
    assert rec_module._states is None


def test_recorded_names_follow_hf_module_paths(minilm, minilm_hf, minilm_tokenizer):
    enc = minilm_tokenizer(SENTENCES[0], return_tensors="pt")
    with recording() as states:
        minilm(enc["input_ids"])
    hf_paths = {name for name, _ in minilm_hf.named_modules()}
    for name in states:
        module_path = name.rsplit(".", 1)[0] if name not in hf_paths else name
        assert module_path in hf_paths, f"{name}: {module_path!r} is not a transformers module path"
    assert list(states)[:5] == [
        "embeddings.word_embeddings",
        "embeddings.token_type_embeddings",
        "embeddings.position_embeddings",
        "embeddings.sum",
        "embeddings.LayerNorm",
    ]
    assert states["encoder.layer.5.attention.self.probs"].shape == (1, 12, enc["input_ids"].shape[1], enc["input_ids"].shape[1])


# --- hub -----------------------------------------------------------------------------------------


@pytest.mark.hub
def test_bert_base_uncased_from_hub_cache():
    if not hub_cached("bert-base-uncased"):
        pytest.skip("bert-base-uncased is not in the local Hugging Face cache")
    hf = transformers.BertModel.from_pretrained("bert-base-uncased", attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained("bert-base-uncased")
    twin = reimpl.from_pretrained("bert-base-uncased")
    assert_states_equal(hf, twin, dict(tok(SENTENCES, padding=True, return_tensors="pt")))
