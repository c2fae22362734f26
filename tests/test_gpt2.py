"""reimpl/gpt2.py against transformers' GPT2LMHeadModel, eager attention, fp32 on CPU: bit for bit,
with and without its cache.

Two reference calls matter: without a cache the twin must equal HF called with
``use_cache=False``; with a KVCache it must equal HF's default call, which runs through a
DynamicCache (see reimpl.gpt2.GPT2Attention). Here: every config variant with the cache (and the
scores compared everywhere, the mask included), the attention, block and MLP on their own,
incremental decoding, generation, the real gpt2 size (124M: cache, generation, sdpa), the
recorded names, and a Conv1D weight stored in nn.Linear's layout.

Every class without a cache, every config setting, the refusals, from_hf, checkpoints (the hub's
layout among them), training and ``annotate trace --diff``: tests/test_conformance.py (its
GPT-2 fixture).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import save_file
from transformers import DynamicCache

from annotate import align
from annotate.capture import hf_states
import reimpl
from reimpl import GPT2Attention, GPT2Block, GPT2LMHeadModel, GPT2MLP, KVCache, recording, versions
from reimpl.gpt2 import causal_mask
from tests.conftest import hub_cached
from tests.parity import hf_causal_mask, layer_output, write_config
from tests.test_conformance import GPT2


# --- models and inputs -------------------------------------------------------------------------

VARIANTS = GPT2.variants
GPT2_SIZE = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)


def random_gpt2(seed: int = 0, **overrides) -> transformers.GPT2LMHeadModel:
    """The conformance suite's small GPT2LMHeadModel (tests/test_conformance.py), every parameter
    redrawn (not HF's init: LayerNorm 1/0 and tiny weights would hide bugs), in eval mode."""
    return GPT2.model("GPT2LMHeadModel", seed=seed, **overrides)


def talkative_gpt2(seed: int = 0) -> transformers.GPT2LMHeadModel:
    """For generation: matrices redrawn with std 0.15, LayerNorms and biases left at HF's 1 and 0.
    Random LayerNorm weights squash the residual stream and greedy decoding repeats one token."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(GPT2.config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
    return model


def padding_mask(B: int, T: int, kind: str) -> torch.Tensor | None:
    """None, or a (B, T) 1/0 mask: row 1 right-padded, or rows 1 and 2 left-padded (as for generation)."""
    if kind == "none":
        return None
    mask = torch.ones(B, T, dtype=torch.long)
    if kind == "right":
        mask[1, T // 2 :] = 0
    elif kind == "left":
        mask[1, : T // 2] = 0
        mask[2 % B, :1] = 0
    return mask


def random_ids(vocab_size: int, B: int = 3, T: int = 11, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def assert_states_equal(hf, twin, input_ids, attention_mask=None, use_cache=False) -> int:
    """Run both; every state the twin records must equal transformers' bit for bit. Returns how many."""
    with hf_states(hf) as theirs:
        hf_logits = hf(input_ids, attention_mask=attention_mask, use_cache=use_cache).logits
    with recording() as ours:
        logits = twin(input_ids, attention_mask, KVCache() if use_cache else None).logits
    assert torch.equal(logits, hf_logits), f"logits differ: max |diff| {(logits - hf_logits).abs().max():.3g}"
    mask = causal_mask(attention_mask, input_ids.shape[1], 0, torch.float32)
    compared = 0
    for name, value in ours.items():
        value = align.layout(name, value)
        if name.endswith(".scores"):  # compared everywhere: the twin's scores plus the same mask
            if versions.V4:  # 4.57 fills the future with finfo.min before adding the mask (reimpl/gpt2.py)
                T = input_ids.shape[1]
                value = value.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), torch.finfo(value.dtype).min)
            name, value = name + "+mask", value + mask  # softmax saw scores + mask: add the same mask
        assert name in theirs, f"no transformers value caught for {name}"
        assert value.shape == theirs[name].shape, name
        assert torch.equal(value, theirs[name]), f"{name} differs: max |diff| {(value - theirs[name]).abs().max():.3g}"
        compared += 1
    return compared


# --- every config setting that changes the math ------------------------------------------------


@pytest.mark.parametrize("padding", ["none", "right", "left"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_with_and_without_cache_every_step_bit_identical(variant, padding):
    """Every step with a KVCache (HF's default call) and without (use_cache=False), the scores
    compared everywhere: where the mask hides a key too, the twin's plus the same mask."""
    hf = random_gpt2(**VARIANTS[variant])
    twin = GPT2LMHeadModel.from_hf(hf)
    ids = random_ids(hf.config.vocab_size)
    mask = padding_mask(*ids.shape, padding)
    for use_cache in (False, True):
        assert assert_states_equal(hf, twin, ids, mask, use_cache=use_cache) == GPT2.expected(hf.config, "GPT2LMHeadModel")


@pytest.mark.parametrize("T", [1, 2, 5, 7, 16, 33])
def test_cache_and_no_cache_each_match_their_hf_call(T):
    """Whether HF's cached and uncached calls differ depends on the shapes (on this machine,
    T = 7 differs in the last bit, T = 16 does not); the twin matches each at every length."""
    hf = random_gpt2()
    twin = GPT2LMHeadModel.from_hf(hf)
    ids = random_ids(hf.config.vocab_size, T=T)
    for mask in (None, padding_mask(3, T, "left")):
        assert torch.equal(twin(ids, mask).logits, hf(ids, attention_mask=mask, use_cache=False).logits)
        assert torch.equal(twin(ids, mask, KVCache()).logits, hf(ids, attention_mask=mask).logits)  # HF's default call


# --- components, fed the same input ------------------------------------------------------------


ATTENTION_VARIANTS = ["default", "no-scale", "inverse-layer-idx", "reorder-upcast", "reorder-upcast+inverse-layer-idx"]


@pytest.mark.parametrize("padding", ["none", "right", "left"])
@pytest.mark.parametrize("variant", ATTENTION_VARIANTS)
def test_attention_from_hf(variant, padding):
    hf = random_gpt2(**VARIANTS[variant])
    B, T, C = 3, 9, hf.config.n_embd
    mask = causal_mask(padding_mask(B, T, padding), T, 0, torch.float32)  # (B or 1, 1, T, T)
    hidden = torch.randn(B, T, C, generator=torch.Generator().manual_seed(2))
    for hf_attn in (block.attn for block in hf.transformer.h):
        attn = GPT2Attention.from_hf(hf_attn)
        assert attn.layer_idx == hf_attn.layer_idx
        if not versions.V4:  # 5.x keeps one scaling float; 4.57 divides in eager_attention_forward
            assert attn.scaling == hf_attn.scaling
        hf_out, hf_probs = hf_attn(hidden, attention_mask=mask)
        out, probs = attn(hidden, mask)
        assert torch.equal(out, hf_out) and torch.equal(probs, hf_probs)
        hf_out, hf_probs = hf_attn(hidden, **{versions.CACHE_KEYWORD: DynamicCache()}, attention_mask=mask)
        out, probs = attn(hidden, mask, KVCache())
        assert torch.equal(out, hf_out) and torch.equal(probs, hf_probs)


@pytest.mark.parametrize("padding", ["none", "right", "left"])
@pytest.mark.parametrize("variant", ["default", "inverse-layer-idx", "reorder-upcast", "n_inner-37", "act-relu", "eps-1e-3"])
def test_block_from_hf(variant, padding):
    """The twin block takes the tokenizer's (B, T) mask and builds the causal mask itself."""
    hf = random_gpt2(**VARIANTS[variant])
    B, T, C = 3, 9, hf.config.n_embd
    mask2d = padding_mask(B, T, padding)
    mask4d = hf_causal_mask(hf.config, B, T, mask2d)
    hidden = torch.randn(B, T, C, generator=torch.Generator().manual_seed(2))
    for hf_block in hf.transformer.h:
        block = GPT2Block.from_hf(hf_block)
        assert torch.equal(block(hidden, mask2d), layer_output(hf_block(hidden, attention_mask=mask4d)))
        hf_cached = hf_block(hidden, **{versions.CACHE_KEYWORD: DynamicCache()}, attention_mask=mask4d)
        assert torch.equal(block(hidden, mask2d, KVCache()), layer_output(hf_cached))


@pytest.mark.parametrize("variant", ["default", "n_inner-37", "act-gelu", "act-gelu_pytorch_tanh", "act-quick_gelu"])
def test_mlp_from_hf(variant):
    hf = random_gpt2(**VARIANTS[variant])
    x = torch.randn(2, 5, hf.config.n_embd, generator=torch.Generator().manual_seed(2))
    for hf_block in hf.transformer.h:  # HF's GPT2MLP carries no config: take the twin's from its block
        mlp = GPT2Block.from_hf(hf_block).mlp
        assert isinstance(mlp, GPT2MLP) and torch.equal(mlp(x), hf_block.mlp(x))


def test_conv1d_is_addmm_with_in_out_weight():
    from transformers.pytorch_utils import Conv1D as HFConv1D

    torch.manual_seed(0)
    hf = HFConv1D(nf=12, nx=5)
    conv = reimpl.gpt2.Conv1D(12, 5)
    conv.load_state_dict(hf.state_dict())
    assert conv.weight.shape == (5, 12)  # (in, out): the transpose of nn.Linear(5, 12).weight
    x = torch.randn(2, 3, 5)
    assert torch.equal(conv(x), hf(x))


@pytest.mark.parametrize("past", [0, 4])
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_causal_mask_matches_transformers(padding, past):
    config = GPT2.config()
    B, T, nh, hs = 3, 5, 4, 8
    cache = DynamicCache()
    if past:
        cache.update(torch.zeros(B, nh, past, hs), torch.zeros(B, nh, past, hs), 0)
    mask2d = padding_mask(B, past + T, padding)
    theirs = hf_causal_mask(config, B, T, mask2d, cache, past)
    ours = causal_mask(mask2d, T, past, torch.float32)
    assert torch.equal(ours.expand(B, 1, T, past + T), theirs)


def test_mask_must_cover_cache_and_input():
    twin = GPT2LMHeadModel.from_hf(random_gpt2())
    cache = KVCache()
    twin(random_ids(101, T=4), cache=cache)
    with pytest.raises(ValueError, match="covers 1 tokens; cache \\+ input have 5"):
        twin(random_ids(101, T=1), torch.ones(3, 1, dtype=torch.long), cache)


def test_gpt2model_from_hf():
    hf = random_gpt2()
    ids, mask = random_ids(101), padding_mask(3, 11, "left")
    model = reimpl.GPT2Model.from_hf(hf.transformer)
    assert torch.equal(model(ids, mask).last_hidden_state, hf.transformer(ids, attention_mask=mask, use_cache=False).last_hidden_state)
    assert torch.equal(model(ids, mask, KVCache()).last_hidden_state, hf.transformer(ids, attention_mask=mask).last_hidden_state)


def test_fully_masked_rows_match_hf():
    """Left padding: a query on a padding token sees no key. HF 5.x's row is uniform over all keys
    (every score + finfo.min rounds to finfo.min); 4.57's over the keys up to the query (the future
    is finfo.min twice: -inf). The twin's is the installed version's, bit for bit."""
    hf = random_gpt2()
    twin = GPT2LMHeadModel.from_hf(hf)
    ids = random_ids(hf.config.vocab_size, B=2, T=6)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    with recording() as states:
        logits = twin(ids, mask).logits
    probs = states["transformer.h.0.attn.probs"]
    if versions.V4:  # query 0 sees only key 0 once the future is -inf
        assert torch.equal(probs[0, :, 0], torch.eye(6)[0].expand_as(probs[0, :, 0]))
    else:
        assert torch.equal(probs[0, :, 0], torch.full_like(probs[0, :, 0], 1 / 6))
    assert torch.equal(logits, hf(ids, attention_mask=mask, use_cache=False).logits)


# --- incremental decoding and generation -------------------------------------------------------


@pytest.mark.parametrize("padding", ["none", "left"])
def test_incremental_decoding_matches_dynamic_cache(padding):
    """A prompt, then tokens fed 1, 1, 3, 1 and 2 at a time against the cache: each call's logits
    equal HF's with its DynamicCache, bit for bit."""
    hf = random_gpt2()
    twin = GPT2LMHeadModel.from_hf(hf)
    ids = random_ids(hf.config.vocab_size, T=13)
    mask = padding_mask(3, 13, padding)
    hf_cache, cache, start = DynamicCache(), KVCache(), 0
    for n in (5, 1, 1, 3, 1, 2):
        chunk, seen = ids[:, start : start + n], None if mask is None else mask[:, : start + n]
        theirs = hf(chunk, attention_mask=seen, past_key_values=hf_cache, use_cache=True).logits
        ours = twin(chunk, seen, cache).logits
        assert torch.equal(ours, theirs), f"tokens {start}..{start + n}"
        start += n
    assert cache.get_seq_length() == hf_cache.get_seq_length() == 13
    for layer in range(hf.config.n_layer):
        assert torch.equal(cache.keys[layer], hf_cache.layers[layer].keys)
        assert torch.equal(cache.values[layer], hf_cache.layers[layer].values)


@pytest.mark.parametrize("padding", ["none", "left"])
def test_generate_matches_hf_greedy(padding):
    hf = talkative_gpt2()
    twin = GPT2LMHeadModel.from_hf(hf)
    ids = random_ids(hf.config.vocab_size, B=3, T=9)
    mask = padding_mask(3, 9, padding)
    theirs = hf.generate(ids, attention_mask=torch.ones_like(ids) if mask is None else mask, max_new_tokens=24, do_sample=False)
    ours = twin.generate(ids, 24, mask)
    assert ours.shape == (3, 9 + 24)
    assert torch.equal(ours, theirs)
    assert len(set(ours[:, 9:].flatten().tolist())) > 5  # a real test: the model says more than one word


def test_generate_eos_pads_finished_rows_and_stops_like_hf():
    hf = talkative_gpt2()
    twin = GPT2LMHeadModel.from_hf(hf)
    ids = random_ids(hf.config.vocab_size, B=3, T=9)
    mask = padding_mask(3, 9, "left")
    free = twin.generate(ids, 24, mask)
    eos = int(free[0, 9 + 3])  # a token row 0 produces at its fourth step
    for pad in (None, 7):
        theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=24, do_sample=False, eos_token_id=eos, pad_token_id=pad)
        ours = twin.generate(ids, 24, mask, eos_token_id=eos, pad_token_id=pad)
        assert torch.equal(ours, theirs)
    # One row alone stops as soon as it says eos.
    theirs = hf.generate(ids[:1], max_new_tokens=24, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    ours = twin.generate(ids[:1], 24, eos_token_id=eos)
    assert ours.shape[1] < 9 + 24 and torch.equal(ours, theirs)


# --- the real gpt2 size (124M), random weights -------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_size():
    torch.manual_seed(0)
    config = transformers.GPT2Config(**GPT2_SIZE, attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(config).eval()  # HF's own init: std 0.02, nearly flat logits, many near-ties
    return hf, GPT2LMHeadModel.from_hf(hf)


def test_gpt2_size_every_step_bit_identical(gpt2_size):
    hf, twin = gpt2_size
    ids = random_ids(50257, B=3, T=20)
    for padding in ("none", "left", "right"):
        mask = padding_mask(3, 20, padding)
        assert assert_states_equal(hf, twin, ids, mask, use_cache=False) == 5 + 15 * 12
        assert_states_equal(hf, twin, ids, mask, use_cache=True)


def test_gpt2_size_generate_matches_hf_greedy(gpt2_size):
    hf, twin = gpt2_size
    ids = random_ids(50257, B=3, T=8)
    mask = padding_mask(3, 8, "left")
    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=None)
    assert torch.equal(twin.generate(ids, 20, mask), theirs)


def test_gpt2_size_sdpa_bound(gpt2_size):
    """transformers' default attention (sdpa) is not the eager path: torch's fused CPU kernel
    computes softmax(Q K^T) V blockwise with an online softmax, summing in another order, so it
    can't be bit-identical. Measured on this batch (logits up to ~3 in magnitude): 2.1e-6 at real
    tokens (2.4e-6 at T = 128); transformers' own eager vs sdpa differ by exactly as much. Rows of
    left-padding queries attend to nothing real and are garbage in both, different garbage (they
    differ by ~2): left out. Bound: ~4x the measurement."""
    hf, twin = gpt2_size
    ids = random_ids(50257, B=3, T=20)
    mask = padding_mask(3, 20, "left")
    hf.set_attn_implementation("sdpa")
    try:
        sdpa = hf(ids, attention_mask=mask).logits
    finally:
        hf.set_attn_implementation("eager")
    diff = (sdpa - twin(ids, mask, KVCache()).logits).abs()
    real = mask.bool()
    assert diff[real].max() < 1e-5, f"sdpa vs twin at real tokens: {diff[real].max():.3g}"


# --- recording -----------------------------------------------------------------------------------


def test_recorded_names_in_forward_order():
    hf = random_gpt2(n_layer=2)
    twin = GPT2LMHeadModel.from_hf(hf)
    with recording() as states:
        twin(random_ids(hf.config.vocab_size, B=1, T=4))
    block = [
        "ln_1", "attn.query", "attn.key", "attn.value", "attn.scores", "attn.probs", "attn.context",
        "attn.c_proj", "attn.residual", "ln_2", "mlp.c_fc", "mlp.act", "mlp.c_proj", "mlp.residual",
    ]
    expected = ["transformer.wte", "transformer.wpe", "transformer.sum"]
    for i in range(2):
        expected += [f"transformer.h.{i}.{step}" for step in block] + [f"transformer.h.{i}"]
    expected += ["transformer.ln_f", "lm_head"]
    assert list(states) == expected
    assert states["transformer.h.1.attn.probs"].shape == (1, 4, 4, 4)


def test_recording_with_cache_keeps_all_keys():
    twin = GPT2LMHeadModel.from_hf(random_gpt2())
    cache = KVCache()
    twin(random_ids(101, B=1, T=5), cache=cache)
    with recording() as states:
        twin(random_ids(101, B=1, T=1), cache=cache)
    assert states["transformer.h.0.attn.query"].shape == (1, 4, 1, 8)
    assert states["transformer.h.0.attn.key"].shape == (1, 4, 6, 8)  # (B, nh, S, hs): cache + new
    assert states["transformer.h.0.attn.scores"].shape == (1, 4, 1, 6)


# --- checkpoints on disk -----------------------------------------------------------------------


def test_checkpoint_linear_layout_weight_is_refused_with_shapes(tmp_path):
    """c_attn stored as nn.Linear would store it, (out, in): the Conv1D layout is (in, out)."""
    hf = random_gpt2()
    state = {k: v.clone() for k, v in hf.transformer.state_dict().items()}
    state["h.0.attn.c_attn.weight"] = state["h.0.attn.c_attn.weight"].T.contiguous()
    save_file(state, tmp_path / "model.safetensors")
    write_config(tmp_path, hf)
    with pytest.raises(reimpl.CheckpointError, match=r"'transformer\.h\.0\.attn\.c_attn\.weight' has shape \(96, 32\).*needs \(32, 96\)"):
        reimpl.from_pretrained(tmp_path)


# --- real weights from the local Hugging Face cache ---------------------------------------------

PROMPTS = ["The meaning of life is", "Hello, my dog is cute and"]


@pytest.mark.hub
@pytest.mark.parametrize("repo_id", ["gpt2", "distilgpt2"])
def test_real_checkpoint_with_cache_and_generate_from_hub_cache(repo_id):
    """Without a cache: tests/test_conformance.py. Here each call of the twin against its own call of
    transformers' (the scores compared everywhere), and greedy generation."""
    if not hub_cached(repo_id):
        pytest.skip(f"{repo_id} is not in the local Hugging Face cache")
    hf = transformers.GPT2LMHeadModel.from_pretrained(repo_id, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(repo_id, padding_side="left")
    tok.pad_token = tok.eos_token
    twin = reimpl.from_pretrained(repo_id)
    enc = tok(PROMPTS, padding=True, return_tensors="pt")
    assert_states_equal(hf, twin, enc["input_ids"], enc["attention_mask"], use_cache=False)
    assert_states_equal(hf, twin, enc["input_ids"], enc["attention_mask"], use_cache=True)
    theirs = hf.generate(**enc, max_new_tokens=20, do_sample=False, pad_token_id=tok.eos_token_id)
    ours = twin.generate(enc["input_ids"], 20, enc["attention_mask"], eos_token_id=tok.eos_token_id)
    assert torch.equal(ours, theirs)
