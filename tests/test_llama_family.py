"""reimpl/qwen2.py, qwen3.py and mistral.py against transformers' Qwen2, Qwen3 and Mistral, eager
attention, fp32 on CPU: bit for bit.

Random-weight models for the settings that change the math, each family member's own and Llama's
that it inherits (key/value groups of 1, 3 and one per head; biases; tied and untied heads; a
rope type), and above all the sliding window: shorter than the text, on every layer (Mistral) or on
some (Qwen's ``layer_types``), with left and right padding. For every class: every stage, train mode
(dropout and every gradient), decoding step by step with transformers' own cache
(``DynamicCache(config=config)``, whose sliding layers keep only the last ``sliding_window - 1``
keys) until well past the window, and ``generate``, greedy and sampled. Then the configs refused.

The scores: transformers' are caught as softmax's input (scores + mask) and compare where a key is
kept. A sliding layer keeps fewer keys than the causal triangle, so the keep mask here is the
window's; where layers differ (Qwen's full and sliding layers) each layer's scores compare where
its own mask keeps them (``assert_layers_equal``).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers

import reimpl
from annotate import align
from annotate.capture import hf_states
from reimpl import KVCache, recording, versions
from reimpl.mistral import MistralConfig
from reimpl.qwen2 import Qwen2Config
from reimpl.qwen3 import Qwen3Config
from tests.parity import assert_states_equal, random_weights

SMALL = dict(vocab_size=101, hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=6,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
WINDOW = 4  # shorter than every text here (6 to 32 tokens)
causal_keep = align.keep_mask  # padding and the future hidden (what the parity helpers keep)


@dataclasses.dataclass(frozen=True)
class Member:
    """One architecture of the family: its small config and the settings that change its math."""

    model_type: str
    prefix: str  # transformers' class names: Qwen2ForCausalLM, ...
    hf_config: type
    small: dict  # on top of SMALL: the window shorter than the text
    variants: dict[str, dict]  # name -> overrides of ``small``
    steps_per_layer: int  # the stages each layer records, its output included

    def classes(self) -> list[str]:
        return [f"{self.prefix}ForCausalLM", f"{self.prefix}ForSequenceClassification", f"{self.prefix}Model"]


_SHARED = {
    "gqa-3": {},  # 6 query heads, 2 key/value heads: 3 share each
    "mqa": dict(num_key_value_heads=1),
    "mha": dict(num_key_value_heads=6),
    "tied": dict(tie_word_embeddings=True),
    "rope-linear": dict(rope_scaling={"rope_type": "linear", "factor": 4.0}),
}
MEMBERS = {
    "mistral": Member("mistral", "Mistral", transformers.MistralConfig, dict(sliding_window=WINDOW), {
        **_SHARED,
        "no-window": dict(sliding_window=None),  # Mistral v0.2 on: plain Llama attention
        "head-dim-12": dict(head_dim=12),
        "window-1": dict(sliding_window=1),  # each token sees itself only
    }, 19),
    "qwen2": Member("qwen2", "Qwen2", transformers.Qwen2Config,
                    dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1), {
        **_SHARED,  # layer 0 full, layers 1 and 2 slide (max_window_layers=1)
        "all-sliding": dict(max_window_layers=0),
        "layer-types": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
        "no-window": dict(use_sliding_window=False),  # Qwen2.5's configs: a sliding_window, unused
    }, 19),
    "qwen3": Member("qwen3", "Qwen3", transformers.Qwen3Config,
                    dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, head_dim=8), {
        **_SHARED,
        "attention-bias": dict(attention_bias=True),  # on q, k, v and o_proj
        "head-dim-12": dict(head_dim=12),  # not C / nh = 8
        "all-sliding": dict(max_window_layers=0),
        "no-window": dict(use_sliding_window=False),
        "eps-1e-3": dict(rms_norm_eps=1e-3),  # q_norm and k_norm's too
    }, 21),
}


def hf_config(member: Member, cls: str | None = None, **overrides):
    """transformers' config, eager; rope settings in the installed release's own form."""
    settings = {**SMALL, **member.small, **overrides}
    if cls is not None and cls.endswith("SequenceClassification"):
        settings.setdefault("num_labels", 3)
    theta, scaling = settings.pop("rope_theta", 10000.0), settings.pop("rope_scaling", None)
    if versions.V4:
        settings.update(rope_theta=theta, rope_scaling=scaling)
    else:
        settings["rope_parameters"] = {"rope_type": "default", "rope_theta": theta, **(scaling or {})}
    return member.hf_config(**settings, attn_implementation="eager")


def random_model(member: Member, cls: str | None = None, seed: int = 0, **overrides):
    cls = cls or f"{member.prefix}ForCausalLM"
    torch.manual_seed(seed)
    return random_weights(getattr(transformers, cls)(hf_config(member, cls, **overrides)), seed=seed)


def batch(padding: str = "left", B: int = 2, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, SMALL["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(B, T, dtype=torch.long)
    if padding == "left":
        mask[1, :3] = 0
    elif padding == "right":
        mask[1, -3:] = 0
    ids[mask == 0] = SMALL["pad_token_id"]
    return {"input_ids": ids, "attention_mask": mask}


def window_keep(inputs: dict, window: int | None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1, T, T): True where a sliding layer's query sees a key (padding, the future and the
    window hidden; packed sequences: other sequences hidden too)."""
    ids = inputs["input_ids"]
    keep = causal_keep(ids, inputs.get("attention_mask"), True)
    T = ids.shape[1]
    if window is not None:
        slots = torch.arange(T)
        keep = keep & (slots[None, :] > slots[:, None] - window)
    if position_ids is not None:
        sequence = (torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1) != 1).cumsum(-1)  # (B, T)
        keep = keep & (sequence[:, None, :, None] == sequence[:, None, None, :])
    return keep


def assert_layers_equal(hf, twin, **inputs) -> int:
    """``assert_states_equal`` for a model whose layers mask differently (tests/parity.py takes one
    keep mask for all): every output and stage ``torch.equal``, each layer's scores where its own
    mask keeps a key (transformers' softmax input above the mask's minimum). The probabilities,
    compared everywhere, say the masks are the same. Returns how many stages were compared."""
    with torch.no_grad(), hf_states(hf) as theirs:
        hf_out = hf(**inputs, use_cache=False)
    with torch.no_grad(), recording() as ours:
        out = twin(**inputs)
    for field, value in out._asdict().items():
        seen = getattr(hf_out, field, None)
        assert seen is None if value is None else torch.equal(value, seen), f"output {field} differs"
    compared = 0
    for name, value in ours.items():
        seen = theirs.get(name)
        if name.endswith(".scores"):
            softmax_input = theirs[name + "+mask"]
            keep = softmax_input > torch.finfo(softmax_input.dtype).min / 2
            value, seen = value[keep], softmax_input[keep]
        assert seen is not None, f"no transformers value caught for {name}"
        value, seen = align.layout(name, value), align.layout(name, seen)
        assert torch.equal(value, seen), f"{name} differs: max |diff| {(value - seen).abs().max():.3g}"
        compared += 1
    return compared


def assert_every_stage(hf, twin, **inputs) -> int:
    """Every stage ``torch.equal``: the scores where each layer's mask keeps a key."""
    types = {twin.config.layer_type(i) for i in range(twin.config.num_hidden_layers)}
    if len(types) == 2:
        return assert_layers_equal(hf, twin, **inputs)
    window = twin.config.sliding_window if types == {"sliding_attention"} else None
    return assert_states_equal(hf, twin, keep=window_keep(inputs, window), **inputs)


def twin_of(hf):
    return reimpl.registry.twin_class(type(hf).__name__).from_hf(hf)


CASES = [(m, v) for m, member in MEMBERS.items() for v in member.variants]


# --- every setting that changes the math, every class ----------------------------------------


@pytest.mark.parametrize("padding", ["none", "left", "right"])
@pytest.mark.parametrize("model_type, variant", CASES)
def test_every_stage_bit_identical(model_type, variant, padding):
    member = MEMBERS[model_type]
    hf = random_model(member, **member.variants[variant])
    twin = twin_of(hf)
    n = assert_every_stage(hf, twin, **batch(padding))
    assert n == 3 + member.steps_per_layer * SMALL["num_hidden_layers"] + 2  # embed_tokens, cos, sin; the layers; norm, lm_head


@pytest.mark.parametrize("model_type", MEMBERS)
def test_every_class(model_type):
    member = MEMBERS[model_type]
    for cls in member.classes():
        hf = random_model(member, cls)
        twin = twin_of(hf)
        assert type(twin).__name__ == cls and type(twin).__module__ == f"reimpl.{model_type}"
        assert list(twin.state_dict()) == list(hf.state_dict())
        n = assert_every_stage(hf, twin, **batch("left"))
        assert n == 3 + member.steps_per_layer * SMALL["num_hidden_layers"] + (2 if "For" in cls else 1)


def test_the_sliding_layers_are_transformers():
    """Which layers slide, from max_window_layers or layer_types, as transformers decides."""
    for model_type in ("qwen2", "qwen3"):
        member = MEMBERS[model_type]
        for variant in ("gqa-3", "all-sliding", "layer-types", "no-window"):
            if variant not in member.variants:
                continue
            hf = random_model(member, **member.variants[variant])
            twin = twin_of(hf)
            assert [twin.config.layer_type(i) for i in range(3)] == hf.config.layer_types, (model_type, variant)
            theirs = [layer.self_attn.sliding_window for layer in hf.model.layers]
            assert [layer.self_attn.sliding_window for layer in twin.model.layers] == theirs
    twin = twin_of(random_model(MEMBERS["qwen2"]))
    assert [layer.attention_type for layer in twin.model.layers] == ["full_attention", "sliding_attention", "sliding_attention"]


def test_the_window_changes_the_numbers():
    """The window is not a no-op on these texts: the same weights without it give other logits."""
    member = MEMBERS["mistral"]
    inputs = batch("left")
    windowed = twin_of(random_model(member))(**inputs).logits
    full = twin_of(random_model(member, sliding_window=None))(**inputs).logits
    assert torch.equal(windowed[0, :WINDOW], full[0, :WINDOW])  # no padding: the first W tokens see all they would
    assert not torch.equal(windowed[0, WINDOW:], full[0, WINDOW:])


def test_packed_sequences_with_the_window():
    """Several sequences in one row (position ids restart, no mask): each token sees its own
    sequence only, and its window inside it (5.x counts the window in positions, 4.57 in slots: the same here)."""
    member = MEMBERS["mistral"]
    hf = random_model(member)
    twin = twin_of(hf)
    ids = batch("none", B=1, T=13)["input_ids"]
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6]])
    keep = window_keep({"input_ids": ids}, WINDOW, position_ids)
    assert assert_states_equal(hf, twin, keep=keep, input_ids=ids, position_ids=position_ids) > 50


# --- training: dropout, gradients ----------------------------------------------------------


@pytest.mark.parametrize("model_type, variant, cls", [
    ("mistral", "gqa-3", "MistralForCausalLM"), ("mistral", "tied", "MistralForSequenceClassification"),
    ("qwen2", "gqa-3", "Qwen2ForCausalLM"), ("qwen2", "mqa", "Qwen2ForSequenceClassification"),
    ("qwen3", "attention-bias", "Qwen3ForCausalLM"), ("qwen3", "tied", "Qwen3ForSequenceClassification"),
])
def test_train_mode_forward_and_gradients_bit_identical(model_type, variant, cls, monkeypatch):
    """Dropout on the attention probabilities, the loss, and every stage's and parameter's gradient.
    The scores compare inside every layer's window (a subset of a full layer's keys); their
    gradients, and every other stage, everywhere."""
    from tests.test_training import assert_training_equal

    member = MEMBERS[model_type]
    hf = random_model(member, cls, attention_dropout=0.1, **member.variants[variant])
    twin = twin_of(hf)
    monkeypatch.setattr(align, "keep_mask", lambda ids, mask, causal: window_keep({"input_ids": ids, "attention_mask": mask}, WINDOW)
                        if causal else causal_keep(ids, mask, causal))
    inputs = batch("left")
    if cls.endswith("CausalLM"):
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    else:
        labels = torch.tensor([2, 0])
    with torch.enable_grad():
        compared = assert_training_equal(hf, twin, {**inputs, "labels": labels})
    assert compared["params"] == len(dict(hf.named_parameters()))


# --- the cache and generation --------------------------------------------------------------


def hf_cache(hf):
    """transformers' cache as its forward (``use_cache=True``) and ``generate`` make it: sliding layers keep W - 1 keys."""
    from transformers import DynamicCache

    return DynamicCache(config=hf.config)


# A prompt longer than the window, then one token at a time and a few at once, to 32 tokens: from
# 16 keys on, a row of softmax or P V summed over more keys (masked ones) rounds otherwise.
STEPS = ((0, 6), (6, 7), (7, 8), (8, 12), *((i, i + 1) for i in range(12, 24)), (24, 28), (28, 29), (29, 32))


@pytest.mark.parametrize("model_type, variant", [("mistral", "gqa-3"), ("mistral", "mqa"), ("qwen2", "gqa-3"),
                                                 ("qwen2", "layer-types"), ("qwen3", "gqa-3"), ("qwen3", "mha")])
def test_incremental_decoding_matches_dynamic_cache(model_type, variant):
    """A prompt, then one token at a time, then a few at once, with the cache: each step's logits
    and every stage equal transformers' with its DynamicCache, far past the window; and a sliding
    layer is handed only the keys transformers' sliding cache keeps."""
    member = MEMBERS[model_type]
    hf = random_model(member, **member.variants[variant])
    twin = twin_of(hf)
    inputs = batch("left", T=32)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    theirs_cache, cache = hf_cache(hf), KVCache()
    for start, stop in STEPS:
        step = ids[:, start:stop]
        with hf_states(hf) as theirs:
            hf_logits = hf(step, attention_mask=mask[:, :stop], **{versions.CACHE_KEYWORD: theirs_cache}, use_cache=True).logits
        with recording() as ours:
            logits = twin(step, mask[:, :stop], cache).logits
        assert torch.equal(logits, hf_logits), (start, stop)
        for name, value in ours.items():
            seen = theirs.get(name)
            if name.endswith(".scores"):
                softmax_input = theirs[name + "+mask"]
                assert value.shape == softmax_input.shape, (start, stop, name, "other keys than transformers' cache gives")
                keep = softmax_input > torch.finfo(softmax_input.dtype).min / 2
                value, seen = value[keep], softmax_input[keep]
            assert seen is not None, (start, stop, name)
            value, seen = align.layout(name, value), align.layout(name, seen)
            assert torch.equal(value, seen), (start, stop, name)
        sliding = [i for i in range(3) if twin.config.layer_type(i) == "sliding_attention"]
        probs = {i: ours[f"model.layers.{i}.self_attn.probs"].shape[-1] for i in range(3)}
        assert all(probs[i] == min(start, WINDOW - 1) + stop - start for i in sliding), (start, probs)
        assert all(probs[i] == stop for i in set(range(3)) - set(sliding))


@pytest.mark.parametrize("model_type, variant", [("mistral", "gqa-3"), ("mistral", "tied"), ("qwen2", "gqa-3"),
                                                 ("qwen2", "all-sliding"), ("qwen3", "gqa-3"), ("qwen3", "attention-bias")])
def test_generate_greedy_and_sampled_match_transformers(model_type, variant):
    """20 new tokens after a left-padded 6-token prompt: the window slides 22 times."""
    member = MEMBERS[model_type]
    hf = random_model(member, **member.variants[variant])
    twin = twin_of(hf)
    inputs = batch("left", T=6)
    theirs = hf.generate(**inputs, max_new_tokens=20, do_sample=False, pad_token_id=0, eos_token_id=None)
    ours = twin.generate(inputs["input_ids"], 20, inputs["attention_mask"], pad_token_id=0)
    assert torch.equal(ours, theirs)
    settings = dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8)
    torch.manual_seed(3)
    theirs = hf.generate(**inputs, max_new_tokens=20, pad_token_id=0, eos_token_id=None, **settings)
    torch.manual_seed(3)
    ours = twin.generate(inputs["input_ids"], 20, inputs["attention_mask"], pad_token_id=0, **settings)
    assert torch.equal(ours, theirs)


# --- loading -------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MEMBERS)
def test_saved_checkpoint_loads_as_its_class(model_type, tmp_path):
    """transformers' save_pretrained (its config.json, as the installed release writes it) into the twin."""
    member = MEMBERS[model_type]
    hf = random_model(member, tie_word_embeddings=True)
    hf.save_pretrained(tmp_path)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin).__name__ == f"{member.prefix}ForCausalLM" and twin.lm_head.weight is twin.model.embed_tokens.weight
    assert twin.config.sliding_window == WINDOW
    assert assert_every_stage(hf, twin, **batch("left")) > 50
    # and back: the twin's save_pretrained, read by transformers
    reimpl.save_pretrained(twin, tmp_path / "twin")
    again = getattr(transformers, f"{member.prefix}ForCausalLM").from_pretrained(tmp_path / "twin", attn_implementation="eager").eval()
    assert again.config.sliding_window == WINDOW
    assert getattr(again.config, "layer_types", None) == getattr(hf.config, "layer_types", None)
    assert assert_every_stage(again, twin, **batch("right")) > 50


def test_qwen25_style_config_has_no_window():
    """Qwen2.5's config.json: a sliding_window, use_sliding_window false: no layer slides (as transformers reads it)."""
    d = {**SMALL, "sliding_window": 131072, "use_sliding_window": False, "max_window_layers": 1, "rope_theta": 1000000.0}
    config = Qwen2Config.from_dict(d)
    assert config.sliding_window is None and config.layer_types == ["full_attention"] * 3
    assert transformers.Qwen2Config(**d).layer_types == config.layer_types
    assert Qwen3Config.from_dict({**d, "head_dim": 8}).layer_types == config.layer_types


def test_configs_from_both_releases_json():
    """config.json as transformers 5 writes it (rope_parameters) and as 4.57 does (rope_theta)."""
    five = {**SMALL, "sliding_window": 7, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}
    four = {**SMALL, "sliding_window": 7, "rope_theta": 1000000.0}
    for cls in (MistralConfig, Qwen2Config, Qwen3Config):
        a, b = cls.from_dict({**five, "use_sliding_window": True}), cls.from_dict({**four, "use_sliding_window": True})
        assert (a.rope_theta, a.sliding_window) == (b.rope_theta, b.sliding_window) == (1000000.0, 7)


def test_defaults_are_transformers():
    """A config.json that leaves a field out gets transformers' default (Mistral: 8 key/value heads, a window of 4096)."""
    bare = dict(hidden_size=64, num_attention_heads=32, num_hidden_layers=2)  # 32: a multiple of both defaults (8, 32)
    for cls, hf_cls in ((MistralConfig, transformers.MistralConfig), (Qwen2Config, transformers.Qwen2Config),
                        (Qwen3Config, transformers.Qwen3Config)):
        ours, theirs = cls.from_dict(bare), hf_cls(**bare)
        for field in ("vocab_size", "intermediate_size", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps",
                      "sliding_window", "tie_word_embeddings", "hidden_act", "attention_dropout"):
            assert getattr(ours, field) == getattr(theirs, field), (cls.__name__, field)
        assert ours.head_dim == (getattr(theirs, "head_dim", None) or 64 // 32), cls.__name__
    assert Qwen3Config.from_dict(bare).head_dim == 128 and MistralConfig.from_dict(bare).num_key_value_heads == 8


# --- refusals ------------------------------------------------------------------------------

REFUSALS = [
    # inherited from Llama
    (MistralConfig, dict(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "rope_type 'yarn' is not supported"),
    (Qwen2Config, dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "rope_type 'dynamic' is not supported"),
    (Qwen3Config, dict(rope_scaling={"rope_type": "longrope", "factor": 2.0}), "rope_type 'longrope' is not supported"),
    (Qwen2Config, dict(num_key_value_heads=4), "num_attention_heads 6 is not a multiple of num_key_value_heads 4"),
    (MistralConfig, dict(num_key_value_heads=8), "num_attention_heads 6 is not a multiple of num_key_value_heads 8"),
    # the window
    (Qwen2Config, dict(use_sliding_window=True, sliding_window=None), "use_sliding_window=True without a sliding_window"),
    (Qwen3Config, dict(use_sliding_window=True, sliding_window=None), "use_sliding_window=True without a sliding_window"),
    (Qwen2Config, dict(layer_types=["full_attention", "chunked_attention", "full_attention"]), "layer_types chunked_attention"),
    (Qwen2Config, dict(layer_types=["full_attention"] * 2), "layer_types has 2 entries for 3 layers"),
    (Qwen2Config, dict(layer_types=["sliding_attention"] * 3), "sliding_attention layers but no window"),
    (Qwen3Config, dict(use_sliding_window=False, layer_types=["full_attention", "sliding_attention", "full_attention"]),
     "sliding_attention layers but no window"),
    (MistralConfig, dict(sliding_window=0), "sliding_window 0 is not supported"),
    (MistralConfig, dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]), "layer_types .* is not supported"),
    (MistralConfig, dict(sliding_window=None, layer_types=["sliding_attention"] * 3), "layer_types .* is not supported"),
    # biases transformers' class does not have, set on the twin's config directly (config.json's are ignored, as transformers ignores them)
    (Qwen2Config, dict(attention_bias=True), "attention_bias=True is not a qwen2 setting"),
    (Qwen3Config, dict(mlp_bias=True), "mlp_bias=True is not a qwen3 setting"),
    (MistralConfig, dict(mlp_bias=True), "mlp_bias=True is not a mistral setting"),
    # transformers 5's bidirectional decoder
    (Qwen3Config, dict(is_causal=False), "is_causal=False"),
    (MistralConfig, dict(is_causal=False), "is_causal=False"),
]


@pytest.mark.parametrize(("cls", "overrides", "message"), REFUSALS, ids=[f"{c.model_type}-{'-'.join(o)}" for c, o, _ in REFUSALS])
def test_unsupported_configs_refused(cls, overrides, message):
    d = {**SMALL, **overrides}
    if any(name in overrides for name in cls.ignored):  # not read from config.json: refused where the twin's config is made directly
        with pytest.raises(ValueError, match=message):
            fields = {f.name for f in dataclasses.fields(cls)}
            cls(**{k: v for k, v in d.items() if k in fields}).check()
        assert not getattr(cls.from_dict(d), next(iter(overrides)))  # from config.json: dropped, as transformers ignores it
        return
    with pytest.raises(ValueError, match=message):
        cls.from_dict(d)


def test_from_pretrained_names_the_refused_field(tmp_path):
    hf = random_model(MEMBERS["qwen2"])
    hf.save_pretrained(tmp_path)
    import json

    config = json.loads((tmp_path / "config.json").read_text())
    config["layer_types"] = ["full_attention", "chunked_attention", "full_attention"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(reimpl.CheckpointError, match="qwen2 config .* layer_types chunked_attention is not supported"):
        reimpl.from_pretrained(tmp_path)
