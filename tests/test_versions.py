"""transformers 4.57 and 5.x: reimpl/versions.py, the places the twins follow the installed version,
and what a reader of the other version's code meets (annotate source, from_hf on 4.x classes).

The parity suites (test_bert.py, test_gpt2.py, ...) prove the twins bit-identical to whichever
version is installed; CI runs them under both (README's test command).
"""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

import pytest
import torch
import transformers

import reimpl
from annotate.cli import main
from reimpl import BertSelfAttention, versions
from reimpl.loading import packaged_dir
from tests.parity import config_on_every_module

ROOT = Path(__file__).resolve().parent.parent
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def source(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["source", *argv])
    return code, out.getvalue(), err.getvalue()


# --- the version, read once ---------------------------------------------------------------------


def test_the_version_is_the_installed_one():
    assert versions.TRANSFORMERS == transformers.__version__
    assert versions.V4 == transformers.__version__.startswith("4.")
    assert versions.MAJOR in (4, 5)


def test_following_switches_and_restores():
    installed = versions.V4
    with versions.following(4):
        assert versions.V4
        with versions.following(5):
            assert not versions.V4
        assert versions.V4
    assert versions.V4 == installed
    with pytest.raises(ValueError, match="transformers 4 .4.57. or 5, not 3"):
        with versions.following(3):
            pass


def test_installing_keeps_a_4_57():
    """pyproject's requirement admits 4.57, so pip keeps a user's 4.57 instead of upgrading it."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("transformers"))
    assert spec == "transformers>=4.57,<6"


def test_ci_runs_the_suite_under_both_versions():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- ci: tests -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert command.count("-m pytest") == 2
    assert "transformers==4.57.6" in command and ".venv457/bin/python -m pytest" in command
    assert ".venv457/" in (ROOT / ".gitignore").read_text().splitlines()


def test_every_listed_difference_has_its_marked_line():
    """versions.py lists where each twin follows the installed version; each place has its `if versions.V4`."""
    doc = versions.__doc__
    for path in ("reimpl/bert.py", "reimpl/distilbert.py", "reimpl/gpt2.py", "reimpl/loading.py", "reimpl/roberta.py", "reimpl/xlm_roberta.py"):
        assert path in doc, path
        assert re.search(r"(if|or|elif) (not )?versions\.V4", (ROOT / path).read_text()), path


# --- the arithmetic that changed, on MiniLM (hs = 32) -------------------------------------------


def test_the_scale_is_where_4_57_and_5_part():
    twin = reimpl.from_pretrained(MINILM)
    ids = torch.tensor([[101, 1996, 4937, 2938, 2006, 1996, 13523, 1012, 102]])
    runs = {}
    for major in (4, 5):
        with torch.no_grad(), versions.following(major), reimpl.recording() as states:
            twin(ids)
        runs[major] = states
    first = next(name for name in runs[4] if not torch.equal(runs[4][name], runs[5][name]))
    assert first == "encoder.layer.0.attention.self.scores"
    gap = (runs[4][first] - runs[5][first]).abs().max()
    assert 0 < gap < 1e-5  # the last bit of a few scores (values up to ~10)


# --- a 4.x reader's names -------------------------------------------------------------------------


@pytest.mark.parametrize("name, shown, note", [
    ("transpose_for_scores", "bert.modeling_bert.BertSelfAttention.forward", "transpose_for_scores was BertSelfAttention's method"),
    ("GPT2Attention._attn", "gpt2.modeling_gpt2.eager_attention_forward", "GPT2Attention._attn (4.x tutorials)"),
    ("_split_heads", "gpt2.modeling_gpt2.GPT2Attention.forward", "GPT2Attention._split_heads (4.x tutorials)"),
    ("_merge_heads", "gpt2.modeling_gpt2.GPT2Attention.forward", "GPT2Attention._merge_heads (4.x tutorials)"),
])
def test_names_gone_before_4_57_say_what_replaced_them(name, shown, note):
    """Gone from the PyTorch files by 4.57 (only its TF and Flax files keep them): on both versions,
    the code that does their work now, and a note saying so."""
    code, out, err = source(name, "--no-twin")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == f"transformers {transformers.__version__}: transformers.models.{shown}"
    assert note in " ".join(out.split())


@pytest.mark.parametrize("name", ["BertSdpaSelfAttention", "MultiHeadSelfAttention", "BERT_SELF_ATTENTION_CLASSES"])
def test_4_x_classes_are_shown_on_4_57_and_replaced_on_5(name):
    code, out, err = source(name, "--no-twin")
    assert code == 0 and err == ""
    first = out.splitlines()[0]
    if versions.V4:  # 4.57 still has them (the dict: where BertAttention picks from it)
        assert first.endswith(".BertAttention.__init__" if name == "BERT_SELF_ATTENTION_CLASSES" else f".{name}")
    else:
        replaced = {"BertSdpaSelfAttention": "BertSelfAttention.forward", "MultiHeadSelfAttention": "DistilBertSelfAttention",
                    "BERT_SELF_ATTENTION_CLASSES": "BertSelfAttention.forward"}[name]
        assert first.endswith(f".{replaced}")
        assert f"{name} is transformers 4.x's" in " ".join(out.split())


@pytest.mark.parametrize("name, on_4_57", [
    ("DistilBertSelfAttention", "MultiHeadSelfAttention"),
    ("BertCrossAttention", "BertLayer.__init__"),
    ("create_bidirectional_mask", "BertModel.forward"),
])
def test_5_x_names_under_4_57(name, on_4_57):
    code, out, err = source(name, "--no-twin")
    assert code == 0 and err == ""
    first = out.splitlines()[0]
    assert first.endswith(f".{on_4_57}" if versions.V4 else f".{name}")
    if versions.V4:
        assert f"{name} is transformers 5.x's" in " ".join(out.split())


def test_an_unknown_name_is_still_an_error():
    code, out, err = source("transpose_for_keys")
    assert code == 2 and out == "" and err.startswith("annotate: error: unknown name 'transpose_for_keys'")


# --- twins from 4.x modules -------------------------------------------------------------------------


def test_from_hf_takes_the_sdpa_class_of_4_x():
    """4.57's default BertSelfAttention is a BertSdpaSelfAttention (5.x: one class for every backend);
    its weights are the same, and the twin computes the eager path from them."""
    hf = config_on_every_module(transformers.BertModel.from_pretrained(packaged_dir(MINILM), attn_implementation="sdpa").eval())
    module = hf.encoder.layer[0].attention.self
    assert type(module).__name__ == ("BertSdpaSelfAttention" if versions.V4 else "BertSelfAttention")
    twin = BertSelfAttention.from_hf(module)
    assert torch.equal(twin.query.weight, module.query.weight)


def test_from_hf_still_refuses_another_model():
    hf = transformers.RobertaModel(transformers.RobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
                                                              num_attention_heads=4, intermediate_size=37))
    with pytest.raises(TypeError, match=r"BertModel\.from_hf was given a RobertaModel"):
        reimpl.BertModel.from_hf(hf)


# --- the code that ran: the other version's branch is folded, never shown as what ran -------------


def _switch_lines(path: Path, lines) -> list[str]:
    text = path.read_text(encoding="utf-8").splitlines()
    return [text[n - 1].strip() for n in lines]


@pytest.mark.parametrize("step", ["scores", "probs"])
def test_the_twins_lines_are_the_installed_versions(step):
    """GPT-2's attention switches on versions.V4 twice (the scale, 4.57's future mask): the lines
    shown as computing a stage are those that ran here; the other branch is kept aside, labelled."""
    from annotate import stages

    e = stages.explain("gpt2", f"transformer.h.0.attn.{step}", "GPT2LMHeadModel")
    shown = _switch_lines(e.twin.path, e.twin.lines)
    folded = _switch_lines(e.twin.path, e.twin.folded)
    if not (versions.V4 and step == "probs"):  # 4.57's future mask has no 5.x branch to fold
        assert folded, "the other version's branch lies inside this snippet: it is folded, not dropped silently"
        assert e.twin.folded_for == ("transformers 5.x" if versions.V4 else "transformers 4.57")
    if versions.V4:
        assert "elif versions.V4:" in shown or "if versions.V4:" in shown  # 4.57's own branch ran
        assert not any("* self.scaling" in line for line in shown)  # 5.x's product did not
        assert any("* self.scaling" in line for line in folded) or step == "probs"
    else:
        assert not any("versions.V4" in line for line in shown)
        assert any("versions.V4" in line for line in folded)
        if step == "scores":
            assert any("* self.scaling" in line for line in shown)
    _, out, _ = source(f"transformer.h.0.attn.{step}", "--model", "gpt2")
    twin_part = out[out.index("twin: "):]
    marked = [line for line in twin_part.splitlines() if line.startswith("❱")]
    assert not any(("versions.V4" in line) != versions.V4 and "versions.V4" in line for line in marked)
    if not versions.V4:
        assert not any("versions.V4" in line for line in twin_part.splitlines()), twin_part
        assert "transformers 4.57 only, not run here" in twin_part


def test_the_version_switch_is_read_from_the_code():
    """Which lines are the other version's is read from the if-tests (stages.other_version_lines), for
    each shape of switch: if / elif / else, `not versions.V4`, `versions.V4 and ...`."""
    import ast
    import textwrap

    from annotate import stages

    code = textwrap.dedent('''
        def f(x):
            if a:
                y = 1
            elif versions.V4:
                y = 2
            else:
                y = 3
            if not versions.V4:
                z = 1
            else:
                z = 2
            if versions.V4 and x:
                w = 1
            else:
                w = 2
            return y
    ''')
    function = ast.parse(code).body[0]
    with versions.following(5):
        assert stages.other_version_lines(function) == {5, 6, 11, 12, 13, 14, 15}  # 15: an "else:" whose body runs here
    with versions.following(4):
        assert stages.other_version_lines(function) == {7, 8, 9, 10, 11}  # "versions.V4 and x" may be false: 15-16 may run
