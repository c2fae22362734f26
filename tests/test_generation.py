"""reimpl/generation.py's sampling against transformers' ``generate``, token for token, and
``annotate generate`` (annotate/watch.py) run in-process.

Each logits processor alone equals its transformers counterpart on random scores (ties and -inf
included); ``generate(do_sample=True)`` after ``torch.manual_seed`` gives transformers' tokens for
temperature, top-k, top-p and all three, several seeds, left-padded batches, eos and pad; every
refusal has its message. The CLI matches transformers loaded from the same checkpoint, repeats
itself with ``--seed``, stays within 80 columns, and says one line for each kind of bad input.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from rich.cells import cell_len
from transformers import GenerationConfig
from transformers.generation import logits_process as hf_process

from reimpl import GPT2LMHeadModel
from reimpl import generation, versions
from reimpl.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, checkpoint_settings
from annotate.examples import EOT, gpt2_tokenizer, write_bert
from tests import conftest

V = 101
NEW = 24


# --- models and inputs -------------------------------------------------------------------------


def sampling_gpt2(seed: int = 0) -> transformers.GPT2LMHeadModel:
    """A transformers GPT2LMHeadModel, eager: matrices from N(0, 0.3), LayerNorms and biases at HF's
    1 and 0. Its next-token distributions are neither flat nor one-hot (the likeliest token has
    ~0.2-0.4), so top-k and top-p cut something and sampling has choices."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model


@pytest.fixture(scope="module")
def models() -> tuple[transformers.GPT2LMHeadModel, GPT2LMHeadModel]:
    hf = sampling_gpt2()
    return hf, GPT2LMHeadModel.from_hf(hf)


def prompt(B: int = 3, T: int = 9, left_padded: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): row 1 left-padded by half, row 2 by one token (as a tokenizer pads for generation)."""
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, T, dtype=torch.long)
    if left_padded:
        mask[1, : T // 2] = 0
        mask[2 % B, :1] = 0
    return ids, mask


def theirs(hf, ids, mask, seed: int, **settings) -> torch.Tensor:
    torch.manual_seed(seed)
    return hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, **settings)


def ours(twin, ids, mask, seed: int, **settings) -> torch.Tensor:
    torch.manual_seed(seed)
    return twin.generate(ids, NEW, mask, **settings)


def random_scores(B: int = 4, V: int = 1000, seed: int = 0) -> torch.Tensor:
    """(B, V) logits with ties (rounded to 1/4) and some -inf (already filtered) entries."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.round(torch.randn(B, V, generator=generator) * 3 * 4) / 4
    scores[torch.rand(B, V, generator=generator) < 0.05] = -float("inf")
    return scores


# --- each processor alone ---------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1e-3, 0.5, 0.7, 1.3, 2.0, 50.0])
def test_temperature_equals_transformers(temperature):
    scores = random_scores()
    expected = hf_process.TemperatureLogitsWarper(temperature)(None, scores)
    assert torch.equal(TemperatureLogitsWarper(temperature)(scores), expected)


@pytest.mark.parametrize("top_k", [1, 2, 5, 50, 999, 1000, 5000])
@pytest.mark.parametrize("min_tokens_to_keep", [1, 3])
def test_top_k_equals_transformers(top_k, min_tokens_to_keep):
    for seed in range(3):
        scores = random_scores(seed=seed)
        expected = hf_process.TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
        got = TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep)(scores)
        assert torch.equal(got, expected)
    if top_k == 5:  # ties at the k-th score are kept, as in transformers
        assert ((got > -float("inf")).sum(-1) > 5).any()


@pytest.mark.parametrize("top_p", [0.0, 0.05, 0.3, 0.5, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("min_tokens_to_keep", [1, 3])
def test_top_p_equals_transformers(top_p, min_tokens_to_keep):
    for seed in range(3):
        scores = random_scores(seed=seed)
        expected = hf_process.TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
        got = TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep)(scores)
        assert torch.equal(got, expected)
    kept = (got > -float("inf")).sum(-1)
    if 0 < top_p < 1:
        assert (kept < (scores > -float("inf")).sum(-1)).all()  # something was cut


def test_filter_value_as_transformers():
    scores = random_scores()
    assert torch.equal(TopKLogitsWarper(5, filter_value=-7.0)(scores), hf_process.TopKLogitsWarper(5, filter_value=-7.0)(None, scores))
    assert torch.equal(TopPLogitsWarper(0.5, filter_value=-7.0)(scores), hf_process.TopPLogitsWarper(0.5, filter_value=-7.0)(None, scores))


SETTINGS = {
    "defaults (top-k 50)": {},
    "temperature only": dict(temperature=0.7, top_k=0),
    "hot temperature only": dict(temperature=1.8, top_k=None),
    "top-k only": dict(top_k=5),
    "top-p only": dict(top_p=0.8, top_k=0),
    "all three": dict(temperature=1.3, top_k=20, top_p=0.9),
    "all three, cold": dict(temperature=0.6, top_k=8, top_p=0.7),
    "top-p 0": dict(top_p=0.0),
    "nothing": dict(temperature=None, top_k=None, top_p=None),
}


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_processors_and_order_as_transformers_builds_them(models, settings):
    """The list _get_logits_processor builds for the same settings (global defaults below them):
    the same classes in the same order, and the same scores out."""
    hf, _ = models
    # 5.x keeps the global defaults apart (unset fields are None); 4.57's GenerationConfig() holds them
    defaults = {} if versions.V4 else GenerationConfig._get_default_generation_params()
    config = GenerationConfig(**{**defaults, "do_sample": True, **settings})
    expected = hf._get_logits_processor(config, input_ids_seq_length=9, device="cpu")
    got = generation.logits_processors(True, **{"temperature": 1.0, "top_k": 50, "top_p": 1.0, **settings})
    assert [type(p).__name__ for p in got] == [type(p).__name__ for p in expected]
    scores = random_scores(V=V)
    out = scores
    for p in got:
        out = p(out)
    assert torch.equal(out, expected(None, scores))
    assert generation.logits_processors(False, **settings) == []  # greedy: no warpers


# --- generate: the same tokens ----------------------------------------------------------------


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_sampling_matches_transformers_left_padded_batch(models, settings):
    hf, twin = models
    ids, mask = prompt()
    runs = []
    for seed in (0, 1, 2):
        expected = theirs(hf, ids, mask, seed, do_sample=True, **settings)
        got = ours(twin, ids, mask, seed, do_sample=True, **settings)
        assert got.shape == (3, 9 + NEW)
        assert torch.equal(got, expected), f"seed {seed}"
        runs.append(got)
    if settings != {"top_p": 0.0}:  # (top-p 0 keeps one token: greedy, whatever the seed)
        assert not torch.equal(runs[0], runs[1]) and not torch.equal(runs[1], runs[2])  # the seed matters
        assert len(set(runs[0][:, 9:].flatten().tolist())) > 10
    else:
        assert torch.equal(runs[0], twin.generate(ids, NEW, mask))


@pytest.mark.parametrize("settings", [SETTINGS["all three"], SETTINGS["top-p only"]], ids=["all three", "top-p only"])
def test_sampling_matches_transformers_without_padding(models, settings):
    hf, twin = models
    ids, mask = prompt(B=2, T=6, left_padded=False)
    for seed in (3, 4):
        assert torch.equal(ours(twin, ids, None, seed, do_sample=True, **settings), theirs(hf, ids, mask, seed, do_sample=True, **settings))


def test_single_row_matches_transformers(models):
    hf, twin = models
    ids, mask = prompt(B=1, T=4, left_padded=False)
    for seed in range(5):
        assert torch.equal(ours(twin, ids, mask, seed, do_sample=True, top_p=0.9), theirs(hf, ids, mask, seed, do_sample=True, top_p=0.9))


def test_processors_really_cut(models):
    """The settings above are a real test: top-k and top-p leave a few of the 101 tokens."""
    _, twin = models
    ids, mask = prompt()
    for settings, most in ((dict(top_k=5), 5), (dict(top_k=0, top_p=0.5), 30)):
        kept = []
        twin.generate(ids, NEW, mask, do_sample=True, on_step=lambda s: kept.append((s.scores > -float("inf")).sum(-1)), **settings)
        kept = torch.stack(kept)  # (steps, B)
        assert kept.max() <= most and kept.min() >= 1
        assert len(set(kept.flatten().tolist())) > 1 or settings.get("top_k") == 5


def test_eos_pads_finished_rows_and_stops_like_transformers(models):
    hf, twin = models
    ids, mask = prompt()
    free = ours(twin, ids, mask, 0, do_sample=True, top_p=0.9)
    eos = int(free[0, 9 + 3])  # a token row 0 draws at its fourth step
    for pad in (None, 7):
        expected = theirs(hf, ids, mask, 0, do_sample=True, top_p=0.9, eos_token_id=eos, pad_token_id=pad)
        got = ours(twin, ids, mask, 0, do_sample=True, top_p=0.9, eos_token_id=eos, pad_token_id=pad)
        assert torch.equal(got, expected)
        row = got[0, 9:].tolist()
        after = row[row.index(eos) + 1 :]
        assert after and set(after) == {eos if pad is None else pad}  # finished: pad from then on
    # One row alone stops as soon as it draws eos.
    one = ours(twin, ids[:1], None, 0, do_sample=True, top_p=0.9)
    eos = int(one[0, 9 + 2])
    expected = theirs(hf, ids[:1], torch.ones_like(ids[:1]), 0, do_sample=True, top_p=0.9, eos_token_id=eos)
    got = ours(twin, ids[:1], None, 0, do_sample=True, top_p=0.9, eos_token_id=eos)
    assert got.shape[1] < 9 + NEW and torch.equal(got, expected)


def test_steps_report_transformers_logits_and_scores(models):
    """on_step sees what transformers' output_logits / output_scores return, and the chosen ids;
    watching does not change the tokens."""
    hf, twin = models
    ids, mask = prompt()
    settings = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.9)
    torch.manual_seed(5)
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, return_dict_in_generate=True, output_scores=True, output_logits=True, **settings)
    steps = []
    got = ours(twin, ids, mask, 5, on_step=steps.append, **settings)
    assert torch.equal(got, out.sequences) and torch.equal(got, ours(twin, ids, mask, 5, **settings))
    assert len(steps) == len(out.scores) == NEW
    for i, step in enumerate(steps):
        assert step.index == i
        assert torch.equal(step.logits, out.logits[i]) and torch.equal(step.scores, out.scores[i])
        assert torch.equal(step.probs, torch.softmax(out.scores[i], dim=-1))
        assert torch.equal(step.next_tokens, got[:, 9 + i])


def test_greedy_steps_and_ignored_sampling_settings(models):
    hf, twin = models
    ids, mask = prompt()
    steps = []
    got = twin.generate(ids, NEW, mask, on_step=steps.append)
    assert torch.equal(got, hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False))
    assert all(torch.equal(s.scores, s.logits) and torch.equal(s.next_tokens, s.logits.argmax(-1)) for s in steps)
    # transformers ignores sampling settings when greedy (and says so); so does the twin.
    with pytest.warns(UserWarning, match="only apply with do_sample=True"):
        ignored = twin.generate(ids, NEW, mask, temperature=0.5, top_k=3)
    assert torch.equal(ignored, got)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin.generate(ids, 2, mask)  # the defaults: no warning


# --- refusals ----------------------------------------------------------------------------------

# (settings, message fragment, whether transformers refuses them too)
REFUSED = [
    (dict(temperature=0.0), r"`temperature` \(=0.0\) has to be a strictly positive float.*set `do_sample=False`", True),
    (dict(temperature=-1.0), r"`temperature` \(=-1.0\) has to be a strictly positive", True),
    (dict(temperature=float("nan")), r"`temperature` \(=nan\)", True),
    (dict(temperature="hot"), r"`temperature` \(=hot\)", True),
    (dict(top_k=-1), r"`top_k` has to be a strictly positive integer, but is -1", True),
    (dict(top_k=2.5), r"`top_k` has to be a strictly positive integer, but is 2.5", True),
    (dict(top_k=True), r"`top_k` has to be a strictly positive integer, but is True", True),  # (transformers: a TypeError in topk)
    (dict(top_p=-0.1), r"`top_p` has to be a number between 0 and 1.*-0.1", True),
    (dict(top_p=1.5), r"`top_p` has to be a number between 0 and 1.*1.5", False),  # transformers: no filtering, silently
    (dict(top_p=float("nan")), r"`top_p` has to be a number between 0 and 1.*nan", False),  # likewise
    (dict(do_sample=1), r"`do_sample` must be True or False, not 1", False),  # transformers: sampling, yet "greedy" mode
]


@pytest.mark.parametrize("settings, message, hf_refuses", REFUSED, ids=[str(s) for s, _, _ in REFUSED])
def test_refusals(models, settings, message, hf_refuses):
    hf, twin = models
    ids, mask = prompt()
    settings = {"do_sample": True, **settings}
    with pytest.raises(ValueError, match=message):
        twin.generate(ids, 3, mask, **settings)
    try:
        hf.generate(ids, attention_mask=mask, max_new_tokens=3, **settings)
        refused = False
    except (ValueError, TypeError):
        refused = True
    assert refused == hf_refuses


@pytest.mark.parametrize("n", [0, -1])
def test_max_new_tokens_must_be_positive(models, n):
    _, twin = models
    with pytest.raises(ValueError, match=f"`max_new_tokens` must be greater than 0, but is {n}"):
        twin.generate(prompt()[0], n)


def test_processor_constructors_refuse_as_transformers():
    with pytest.raises(ValueError, match="`top_k` has to be a strictly positive integer, but is 0"):
        TopKLogitsWarper(0)
    with pytest.raises(ValueError, match="`top_p` has to be a float > 0 and < 1, but is 1.5"):
        TopPLogitsWarper(1.5)
    with pytest.raises(ValueError, match="`min_tokens_to_keep` has to be a positive integer, but is 0"):
        TopPLogitsWarper(0.5, min_tokens_to_keep=0)
    assert TemperatureLogitsWarper(2).temperature == 2  # an int: transformers refuses it, it divides the same
    scores = random_scores()
    assert torch.equal(TemperatureLogitsWarper(2)(scores), hf_process.TemperatureLogitsWarper(2.0)(None, scores))


# --- a checkpoint's own settings -----------------------------------------------------------------


def eot_id() -> int:
    return gpt2_tokenizer().token_to_id(EOT)


def copy_checkpoint(src: Path, dst: Path, generation_config: dict | None = None, **config) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    if config:
        (dst / "config.json").write_text(json.dumps({**json.loads((src / "config.json").read_text()), **config}))
    if generation_config is not None:
        (dst / "generation_config.json").write_text(json.dumps(generation_config))
    return dst


def hf_from(folder: Path) -> transformers.GPT2LMHeadModel:
    return transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()


def test_checkpoint_settings_from_config_json(gpt2_dir):
    settings = checkpoint_settings(gpt2_dir)
    assert settings == {"eos_token_id": eot_id()}
    hf = hf_from(gpt2_dir).generation_config
    assert hf.eos_token_id == eot_id() and hf.pad_token_id is None
    assert hf.do_sample is (False if versions.V4 else None)  # unset: 4.57 fills in its default, 5.x leaves None


def test_checkpoint_settings_from_generation_config_json(gpt2_dir, tmp_path):
    folder = copy_checkpoint(gpt2_dir, tmp_path / "g", {"do_sample": True, "top_k": 7, "temperature": 0.8, "eos_token_id": [5],
                                                        "max_length": 50, "transformers_version": "4.26.0", "repetition_penalty": 1.0})
    assert checkpoint_settings(folder) == {"do_sample": True, "top_k": 7, "temperature": 0.8, "eos_token_id": 5}
    hf = hf_from(folder).generation_config
    assert (hf.do_sample, hf.top_k, hf.temperature, hf.eos_token_id) == (True, 7, 0.8, [5])


@pytest.mark.parametrize("generation_config, fragment", [
    ({"repetition_penalty": 1.2}, "generation_config.json sets repetition_penalty=1.2, which this generate does not implement"),
    ({"num_beams": 4}, "sets num_beams=4"),
    ({"min_p": 0.1}, "sets min_p=0.1"),
    ({"no_repeat_ngram_size": 3}, "sets no_repeat_ngram_size=3"),
    ({"eos_token_id": [3, 4]}, "sets eos_token_id=[3, 4]: more than one id is not supported"),
])
def test_checkpoint_settings_refused(gpt2_dir, tmp_path, generation_config, fragment):
    folder = copy_checkpoint(gpt2_dir, tmp_path / "g", generation_config)
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        checkpoint_settings(folder)
    code, _, err = run(str(folder), "The cat")
    assert code == 2 and err.startswith("annotate: error: ") and fragment in err and err.count("\n") == 1


# --- annotate generate -------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    """``annotate generate ARGS`` in-process: exit code, stdout, stderr."""
    return conftest.run("generate", *args)


def run_json(*args: str) -> dict:
    code, out = conftest.run_json("generate", *args)
    assert code == 0
    return out


PROMPT = "The cat sat on the"
CLI_SETTINGS = [
    ([], dict(do_sample=False)),
    (["--do-sample", "--seed", "3"], dict(do_sample=True)),
    (["--do-sample", "--temperature", "0.7", "--top-k", "0", "--seed", "4"], dict(do_sample=True, temperature=0.7, top_k=0)),
    (["--do-sample", "--top-k", "5", "--seed", "5"], dict(do_sample=True, top_k=5)),
    (["--do-sample", "--top-p", "0.5", "--top-k", "0", "--seed", "6"], dict(do_sample=True, top_p=0.5, top_k=0)),
    (["--do-sample", "--temperature", "1.5", "--top-k", "40", "--top-p", "0.9", "--seed", "7"], dict(do_sample=True, temperature=1.5, top_k=40, top_p=0.9)),
]


@pytest.mark.parametrize("options, settings", CLI_SETTINGS, ids=[" ".join(o) or "greedy" for o, _ in CLI_SETTINGS])
def test_cli_matches_transformers(gpt2_dir, options, settings):
    """The CLI's ids are transformers' for the same checkpoint (its eos from config.json), prompt and seed."""
    out = run_json(str(gpt2_dir), PROMPT, "--max-new-tokens", "24", *options)
    hf = hf_from(gpt2_dir)
    ids = transformers.AutoTokenizer.from_pretrained(gpt2_dir)(PROMPT, return_tensors="pt")["input_ids"]
    assert out["prompt_ids"] == ids[0].tolist()
    if out["seed"] is not None:
        torch.manual_seed(out["seed"])
    expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, **settings)
    assert out["ids"] == expected[0].tolist()
    assert len(out["steps"]) == len(out["ids"]) - len(out["prompt_ids"])
    assert [s["chosen"]["id"] for s in out["steps"]] == out["ids"][len(out["prompt_ids"]):]
    assert out["settings"] == {"do_sample": settings["do_sample"], "temperature": settings.get("temperature", 1.0),
                               "top_k": settings.get("top_k", 50), "top_p": settings.get("top_p", 1.0),
                               "eos_token_id": eot_id(), "pad_token_id": None}


def test_cli_steps_describe_the_distribution(gpt2_dir):
    out = run_json(str(gpt2_dir), PROMPT, "--do-sample", "--top-k", "5", "--temperature", "0.5", "--seed", "0")
    assert out["processors"] == ["temperature 0.5", "top-k 5"]
    for step in out["steps"]:
        assert step["kept"] == 5
        probs = [c["prob"] for c in step["top"]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5  # the 5 kept carry everything
        assert step["chosen"]["id"] in [c["id"] for c in step["top"]]
        assert all(c["prob"] > c["model_prob"] for c in step["top"])  # cutting the rest renormalizes upwards
    greedy = run_json(str(gpt2_dir), PROMPT)
    for step in greedy["steps"]:
        assert step["kept"] == 400 and step["chosen"] == step["top"][0]
        assert step["chosen"]["prob"] == step["chosen"]["model_prob"]


def test_cli_seed_repeats_and_matters(gpt2_dir):
    args = (str(gpt2_dir), PROMPT, "--do-sample", "--top-p", "0.9")
    first, again, other = run_json(*args, "--seed", "11"), run_json(*args, "--seed", "11"), run_json(*args, "--seed", "12")
    assert first == again
    assert first["ids"] != other["ids"]
    drawn = run_json(*args)  # no --seed: one is drawn, and shown, so the run can be repeated
    assert isinstance(drawn["seed"], int)
    assert run_json(*args, "--seed", str(drawn["seed"]))["ids"] == drawn["ids"]


def test_cli_takes_the_checkpoint_generation_config(gpt2_dir, tmp_path):
    """Unset options come from generation_config.json, as in transformers; options override it."""
    folder = copy_checkpoint(gpt2_dir, tmp_path / "g", {"do_sample": True, "top_k": 7, "temperature": 0.8, "eos_token_id": eot_id()})
    out = run_json(str(folder), PROMPT, "--seed", "2")
    assert out["settings"]["do_sample"] and out["processors"] == ["temperature 0.8", "top-k 7"]
    hf = hf_from(folder)
    ids = torch.tensor([out["prompt_ids"]])
    torch.manual_seed(2)
    assert out["ids"] == hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20)[0].tolist()
    out = run_json(str(folder), PROMPT, "--seed", "2", "--top-k", "3")
    assert out["processors"] == ["temperature 0.8", "top-k 3"]
    torch.manual_seed(2)
    assert out["ids"] == hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, top_k=3)[0].tolist()


def test_cli_greedy_checkpoint_keeps_its_sampling_values_unused(gpt2_dir, tmp_path):
    """A generation_config.json with sampling values but do_sample false: greedy, quietly, as in transformers."""
    folder = copy_checkpoint(gpt2_dir, tmp_path / "g", {"do_sample": False, "temperature": 0.6, "top_p": 0.9})
    code, out, err = run(str(folder), PROMPT, "--json")
    assert code == 0 and err == ""
    out = json.loads(out)
    assert out["processors"] == [] and out["seed"] is None
    ids = torch.tensor([out["prompt_ids"]])
    assert out["ids"] == hf_from(folder).generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20)[0].tolist()


def test_cli_stops_at_eos_like_transformers(gpt2_dir, tmp_path):
    free = run_json(str(gpt2_dir), PROMPT, "--do-sample", "--seed", "1")
    eos = free["steps"][3]["chosen"]["id"]
    folder = copy_checkpoint(gpt2_dir, tmp_path / "g", eos_token_id=eos)
    out = run_json(str(folder), PROMPT, "--do-sample", "--seed", "1")
    hf = hf_from(folder)
    ids = torch.tensor([out["prompt_ids"]])
    torch.manual_seed(1)
    assert out["ids"] == hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=True)[0].tolist()
    assert out["stopped_at_eos"] and out["steps"][-1]["chosen"]["id"] == eos and len(out["steps"]) <= 4
    code, text, _ = run(str(folder), PROMPT, "--do-sample", "--seed", "1")
    assert code == 0 and f"stopped at the end-of-text token after {len(out['steps'])} new tokens" in text


@pytest.mark.parametrize("options", [[], ["--do-sample", "--seed", "0"], ["--do-sample", "--temperature", "0.7", "--top-k", "9", "--top-p", "0.95", "--seed", "1"]])
def test_cli_table_within_80_columns(gpt2_dir, options):
    code, text, err = run(str(gpt2_dir), PROMPT, *options)
    assert code == 0 and err == ""
    lines = text.splitlines()
    assert all(cell_len(line) <= 80 for line in lines), max(lines, key=cell_len)
    out = run_json(str(gpt2_dir), PROMPT, *options)
    assert f'prompt: "{PROMPT}" ({len(out["prompt_ids"])} tokens)' in text
    assert ("sampling: " if options else "greedy: ") in text
    if "--seed" in options:
        assert f"seed {out['seed']}" in text
    for step in out["steps"]:  # each step's row: its number and its probability, whole
        p = step["chosen"]["prob"]
        shown = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
        assert any(line.lstrip().startswith(f"{step['index'] + 1} ") and shown in line for line in lines), step
    assert "".join((PROMPT + out["text"]).split()) in "".join(text.split())  # the whole text at the end


def test_cli_long_tokens_are_never_cut(gpt2_dir):
    from annotate import watch

    gen = watch.Generation("m", "GPT2LMHeadModel", "p", False, [1], {**watch.DEFAULTS, "do_sample": True}, 1, 0, 400, ["top-k 50"])
    long = watch.Candidate(1, "x" * 30, "x" * 30, 0.123456, 3.2e-05)
    lines = [str(t) for t in watch._step_lines(gen, watch.Choice(0, long, 50, [long]), 80)]
    assert '"' + "x" * 30 + '"' in lines[0] and "0.123" in lines[1] and "3.2e-05" in lines[1]
    assert all(cell_len(line) <= 80 for line in lines)


def test_cli_shows_pieces_of_characters_as_bytes():
    from annotate import watch

    assert watch._shown("\ufffd", "âĢ") == r"b'\xe2\x80'"
    assert watch._shown(" cat", "Ġcat") == '" cat"' and watch._shown("\n", "Ċ") == r'"\n"'


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return write_bert(tmp_path_factory.mktemp("bert"))


@pytest.mark.parametrize("options, fragment", [
    (["--temperature", "0.5"], "--temperature: sampling settings, but sampling is off; add --do-sample"),
    (["--top-k", "3", "--top-p", "0.5"], "--top-k, --top-p: sampling settings, but sampling is off"),
    (["--do-sample", "--temperature", "0"], "`temperature` (=0.0) has to be a strictly positive float"),
    (["--do-sample", "--temperature", "-2"], "`temperature` (=-2.0) has to be a strictly positive float"),
    (["--do-sample", "--top-k", "-1"], "`top_k` has to be a strictly positive integer, but is -1"),
    (["--do-sample", "--top-p", "1.5"], "`top_p` has to be a number between 0 and 1"),
    (["--do-sample", "--top-p", "-0.5"], "`top_p` has to be a number between 0 and 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, not 0"),
    (["--max-new-tokens", "60"], "would make 65; "),
])
def test_cli_bad_settings(gpt2_dir, options, fragment):
    code, out, err = run(str(gpt2_dir), PROMPT, *options)
    assert code == 2 and out == ""
    assert err.startswith("annotate: error: ") and fragment in err and err.count("\n") == 1, err


def test_cli_refuses_a_model_without_lm_head(bert_dir):
    code, _, err = run(str(bert_dir), "The cat sat.")
    assert code == 2 and err.startswith("annotate: error: ") and err.count("\n") == 1
    assert "BertModel, which has no language-model head" in err


def test_cli_refuses_an_empty_prompt(gpt2_dir):
    code, _, err = run(str(gpt2_dir), "")
    assert code == 2 and "the prompt gives no tokens" in err and err.count("\n") == 1


def test_cli_not_a_checkpoint(tmp_path):
    code, _, err = run(str(tmp_path / "nowhere"), "hi")
    assert code == 2 and err.startswith("annotate: error: ") and err.count("\n") == 1
