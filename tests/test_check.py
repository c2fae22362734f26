"""``annotate check`` and ``annotate exercise``: a learner's own module graded against the twins.

- Implementations written from the papers with their own names and structure
  (tests/check_solutions/paper_*.py) get equal or rounding at every step, exit 0.
- Each mistake of the issue, made alone (one edit of such an implementation), is diagnosed by name
  at the first step it changes.
- Every bad input is one line on stderr and exit 2; `record` does nothing outside a grading run;
  --json, --list, the Python API and its HTML.
- Each exercise: unsolved, it says which TODO and exits 1; solved (tests/check_solutions/exercise_answers.py), it passes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import annotate
from annotate import grader
from tests import conftest
from tests.check_solutions.exercise_answers import solve

SOLUTIONS = Path(__file__).parent / "check_solutions"
CJK = re.compile(r"[\u4e00-\u9fff]")


def run(*argv: str) -> tuple[int, str, str]:
    return conftest.run("check", *argv)


def run_json(*argv: str) -> tuple[int, dict]:
    return conftest.run_json("check", *argv)


def model_for(kind: str, gpt2_dir: Path) -> list[str]:
    return ["--model", str(gpt2_dir)] if kind.startswith("gpt2") else []


# ----------------------------------------------------------------------------- correct implementations

PAPER = [  # (file, class, kind, how many steps it records at least)
    ("paper_bert_attention.py", "MultiHeadSelfAttention", "bert-attention", 6),
    ("paper_bert_layer.py", "EncoderLayer", "bert-layer", 11),
    ("paper_gpt2_attention.py", "CausalSelfAttention", "gpt2-attention", 7),
    ("paper_gpt2_block.py", "Block", "gpt2-block", 14),
    ("paper_bert_embeddings.py", "Embeddings", "bert-embeddings", 5),
    ("paper_gpt2_cache.py", "CachedAttention", "gpt2-cache", 3),
    ("paper_llama_attention.py", "RotaryAttention", "llama-attention", 9),
    ("paper_llama_layer.py", "DecoderLayer", "llama-layer", 13),
    ("paper_sampling.py", "Warper", "sampling", 3),
    ("paper_marian_cross_attention.py", "EncoderDecoderAttention", "marian-cross-attention", 7),
    ("paper_marian_decoder_layer.py", "DecoderLayer", "marian-decoder-layer", 23),
    ("paper_marian_encoder_layer.py", "EncoderLayer", "marian-encoder-layer", 11),
]


@pytest.mark.parametrize("file, cls, kind, steps", PAPER, ids=[p[2] for p in PAPER])
def test_a_correct_implementation_from_the_paper_passes(file, cls, kind, steps, gpt2_dir):
    code, report = run_json(f"{SOLUTIONS / file}::{cls}", "--as", kind, *model_for(kind, gpt2_dir))
    assert code == 0, report
    assert report["verdict"] in ("equal", "rounding") and report["first_math"] is None and report["diagnosis"] is None
    assert len(report["steps"]) >= steps
    assert all(s["verdict"] in ("equal", "rounding") for s in report["steps"]), report["steps"]
    assert report["not_compared"] == []


# ----------------------------------------------------------------------------- the mistakes

BERT_ATT = ("paper_bert_attention.py", "MultiHeadSelfAttention", "bert-attention")
BERT_LAYER = ("paper_bert_layer.py", "EncoderLayer", "bert-layer")
GPT2_ATT = ("paper_gpt2_attention.py", "CausalSelfAttention", "gpt2-attention")
GPT2_BLOCK = ("paper_gpt2_block.py", "Block", "gpt2-block")
CACHE = ("paper_gpt2_cache.py", "CachedAttention", "gpt2-cache")
SAMPLING = ("paper_sampling.py", "Warper", "sampling")
EMBEDDINGS = ("paper_bert_embeddings.py", "Embeddings", "bert-embeddings")
LLAMA_LAYER = ("paper_llama_layer.py", "DecoderLayer", "llama-layer")
CROSS = ("paper_marian_cross_attention.py", "EncoderDecoderAttention", "marian-cross-attention")
DECODER = ("paper_marian_decoder_layer.py", "DecoderLayer", "marian-decoder-layer")
ENCODER = ("paper_marian_encoder_layer.py", "EncoderLayer", "marian-encoder-layer")

MISTAKES = [  # (diagnosis id, base implementation, the one mistake as edits (old, new), the first math step)
    ("not-scaled", BERT_ATT, [(" / math.sqrt(self.d_k)", "")], "scores"),
    ("scaled-twice", BERT_ATT, [(" / math.sqrt(self.d_k)", " / math.sqrt(self.d_k) / math.sqrt(self.d_k)")], "scores"),
    ("softmax-axis", BERT_ATT, [("torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=-2)")], "probs"),
    ("padding-mask-ignored", BERT_ATT, [('scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))', "pass")], "probs"),
    ("padding-mask-ignored", GPT2_ATT, [(" & mask[:, None, None, :].bool()", "")], "probs"),
    ("causal-mask-ignored", GPT2_ATT, [("torch.tril(torch.ones(T, T, dtype=torch.bool))", "torch.ones(T, T, dtype=torch.bool)")], "probs"),
    ("heads-split-without-transpose", BERT_ATT,
     [("return x.view(B, T, self.h, self.d_k).permute(0, 2, 1, 3)", "return x.reshape(B, self.h, T, self.d_k)")], "query"),
    ("heads-merged-without-transpose", BERT_ATT,
     [("out = out.permute(0, 2, 1, 3).reshape(B, T, self.d_model)", "out = out.reshape(B, T, self.d_model)")], "context"),
    ("query-key-swapped", BERT_ATT,
     [("Q = self.heads(self.W_q(x))\n        K = self.heads(self.W_k(x))", "Q = self.heads(self.W_k(x))\n        K = self.heads(self.W_q(x))")], "query"),
    ("query-key-swapped", GPT2_ATT, [("q, k, v = self.qkv(x).split(C, dim=2)", "k, q, v = self.qkv(x).split(C, dim=2)")], "query"),
    ("bias-missing", BERT_ATT, [("self.W_q = nn.Linear(self.d_model, self.d_model)", "self.W_q = nn.Linear(self.d_model, self.d_model, bias=False)"),
                                (' "W_q.bias": "query.bias",', "")], "query"),
    ("bias-missing", GPT2_BLOCK, [("self.down = nn.Linear(4 * C, C)", "self.down = nn.Linear(4 * C, C, bias=False)"),
                                  (', "down.bias": "mlp.c_proj.bias"', "")], "mlp.c_proj"),
    ("norm-eps", BERT_LAYER, [("self.norm_1 = Norm(d, eps)", "self.norm_1 = Norm(d, 1e-5)"), ("self.norm_2 = Norm(d, eps)", "self.norm_2 = Norm(d, 1e-5)")],
     "attention.output.LayerNorm"),
    ("pre-norm", BERT_LAYER, [("a = self.w_o(self.attention(x, mask))", "a = self.w_o(self.attention(self.norm_1(x), mask))"),
                              ('record("attention.output.residual", x)\n        x = self.norm_1(x)', 'record("attention.output.residual", x)'),
                              ("h = self.w_1(x)", "h = self.w_1(self.norm_2(x))"),
                              ('record("output.residual", x)\n        x = self.norm_2(x)', 'record("output.residual", x)')], "attention.self.scores"),
    ("post-norm", GPT2_BLOCK, [('h = self.norm_1(x)\n        record("ln_1", h)\n        a = self.attention(h, mask)', "a = self.attention(x, mask)"),
                               ("x = x + a\n", 'x = self.norm_1(x + a)\n        record("ln_1", x)\n'),
                               ('h = self.norm_2(x)\n        record("ln_2", h)\n        h = self.up(h)', "h = self.up(x)"),
                               ("x = x + h\n", "x = self.norm_2(x + h)\n")], "ln_1"),
    ("residual-missing", BERT_LAYER, [("x = x + a\n", "x = a\n")], "attention.output.residual"),
    ("residual-missing", GPT2_BLOCK, [("x = x + h\n", "x = h\n")], "mlp.residual"),
    ("activation-gelu_new", BERT_LAYER, [("h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))",
                                          "h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))")],
     "intermediate.intermediate_act_fn"),
    ("activation-gelu", GPT2_BLOCK, [("h = gelu_tanh(h)", "h = torch.nn.functional.gelu(h)")], "mlp.act"),
    ("activation-gelu", LLAMA_LAYER, [("F.silu(self.w_gate(h))", "F.gelu(self.w_gate(h))")], "mlp.gated"),
    ("norm-eps", LLAMA_LAYER, [("RMSNorm(C, eps), RMSNorm(C, eps)", "RMSNorm(C, 1e-6), RMSNorm(C, 1e-6)")], "input_layernorm"),
    ("dropout-on", BERT_ATT, [("nn.functional.dropout(weights, self.p, training=self.training)", "nn.functional.dropout(weights, self.p)")], "context"),
    ("positions-from-1", EMBEDDINGS, [("where = torch.arange(T)", "where = torch.arange(1, T + 1)")], "position_embeddings"),
    ("cache-unused", CACHE, [("        if past is not None:\n            k = torch.cat([past[0], k], dim=2)\n            v = torch.cat([past[1], v], dim=2)\n", ""),
                             ("mask[:, None, None, :]", "mask[:, None, None, -S:]")], "c_proj"),
    ("cache-causal-mask-not-shifted", CACHE, [(".tril(S - T)", ".tril()")], "c_proj"),
    ("cache-order-reversed", CACHE, [("torch.cat([past[0], k], dim=2)", "torch.cat([k, past[0]], dim=2)"),
                                     ("torch.cat([past[1], v], dim=2)", "torch.cat([v, past[1]], dim=2)")], "key"),
    ("temperature-multiplied", SAMPLING, [("scores = scores / self.temperature", "scores = scores * self.temperature")], "temperature"),
    ("top-k-off-by-one", SAMPLING, [("min(self.top_k, scores.shape[-1])", "min(self.top_k + 1, scores.shape[-1])")], "top_k"),
    ("top-p-drops-crossing-token", SAMPLING, [("drop = before >= self.top_p", "drop = probs.cumsum(-1) > self.top_p\n            drop[:, 0] = False")], "top_p"),
    ("fill-value", SAMPLING, [('scores = scores.masked_fill(scores < kth, float("-inf"))', "scores = scores.masked_fill(scores < kth, -1e9)")], "top_k"),
    # the encoder-decoder's pieces, on the packaged translator (a padded batch of two sources and their targets, S = T)
    ("source-mask-ignored", CROSS, [('torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)', "torch.softmax(scores, dim=-1)")], "probs"),
    ("not-scaled", CROSS, [(" / math.sqrt(self.d_k)", "")], "scores"),
    ("cross-kv-from-decoder", CROSS, [("k = self.to_k(memory)", "k = self.to_k(x)"), ("v = self.to_v(memory)", "v = self.to_v(x)")], "k_proj"),
    ("query-key-swapped", CROSS, [("q = self.to_q(x)", "q = self.to_k(x)"), ("k = self.to_k(memory)", "k = self.to_q(memory)")], "q_proj"),
    ("softmax-axis", CROSS, [("dim=-1)", "dim=-2)")], "probs"),
    ("causal-mask-ignored", DECODER, [("torch.ones(T, T, dtype=torch.bool).tril()[None, None]", "torch.ones(T, T, dtype=torch.bool)[None, None]")],
     "self_attn.probs"),
    ("source-mask-ignored", DECODER, [("source_mask[:, None, None, :].bool())", "torch.ones_like(source_mask)[:, None, None, :].bool())")],
     "encoder_attn.probs"),
    ("target-mask-in-cross-attention", DECODER, [("source_mask[:, None, None, :].bool())", "mask[:, None, None, :].bool())")], "encoder_attn.probs"),
    ("cross-kv-from-decoder", DECODER, [("self.source(x, memory,", "self.source(x, x,")], "encoder_attn.k_proj"),
    ("residual-missing", DECODER, [("x = x + self.source(x, memory", "x = self.source(x, memory")], "encoder_attn.residual"),
    ("norm-eps", DECODER, [("nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)", "nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)")],
     "self_attn_layer_norm"),
    ("padding-mask-ignored", ENCODER, [('F.softmax(scores.masked_fill(padding, float("-inf")), dim=-1)', "F.softmax(scores, dim=-1)")], "self_attn.probs"),
]


def broken(tmp_path: Path, base: str, edits) -> Path:
    text = (SOLUTIONS / base).read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"{base} has no single {old!r}"
        text = text.replace(old, new)
    path = tmp_path / base
    path.write_text(text)
    for layer, attention in (("paper_gpt2_block.py", "paper_gpt2_attention.py"), ("paper_llama_layer.py", "paper_llama_attention.py")):
        if base == layer:  # it imports its attention from beside it
            shutil.copy(SOLUTIONS / attention, tmp_path)
    return path


@pytest.mark.parametrize("mistake, base, edits, step", MISTAKES, ids=[f"{m[0]}-{m[1][2]}" for m in MISTAKES])
def test_each_mistake_is_diagnosed_by_name_at_its_step(mistake, base, edits, step, tmp_path, gpt2_dir):
    file, cls, kind = base
    model = str(gpt2_dir) if kind.startswith("gpt2") or kind == "sampling" else None
    report = grader.check_file(f"{broken(tmp_path, file, edits)}::{cls}", kind, model=model)
    assert report.verdict == "math" and report.exit_code == 1
    assert report.first_math == step, [(s.name, s.verdict) for s in report.steps]
    assert report.diagnosis is not None and report.diagnosis.id == mistake, report.diagnosis
    d = report.diagnosis.to_dict()
    assert d["en"] and CJK.search(d["zh-CN"])


def test_the_cli_gives_the_diagnosis_and_exit_1(tmp_path):
    path = broken(tmp_path, BERT_ATT[0], MISTAKES[0][2])
    code, report = run_json(f"{path}::MultiHeadSelfAttention", "--as", "bert-attention")
    assert code == 1
    assert set(report) >= {"verdict", "steps", "first_math", "diagnosis"}
    assert report["verdict"] == "math" and report["first_math"] == "scores"
    assert report["diagnosis"]["id"] == "not-scaled" and "√d_k" in report["diagnosis"]["en"] and "√d_k" in report["diagnosis"]["zh-CN"]
    assert all(set(s) >= {"name", "verdict", "max_abs_diff"} for s in report["steps"])
    code, out, err = run(f"{path}::MultiHeadSelfAttention", "--as", "bert-attention")
    assert code == 1 and err == ""
    assert "first math step" in out and "not divided by √d_k" in out and "诊断" in out


def test_where_no_mistake_matches_the_numbers_are_described(tmp_path):
    scaled = broken(tmp_path, BERT_ATT[0], [("record(\"scores\", scores)", "scores = scores * 2\n        record(\"scores\", scores)")])
    report = grader.check_file(f"{scaled}::MultiHeadSelfAttention", "bert-attention")
    assert report.first_math == "scores" and report.diagnosis.id == "unexplained"
    assert "constant factor, 2" in report.diagnosis.en and "常数倍" in report.diagnosis.zh
    flipped = broken(tmp_path, BERT_ATT[0], [('record("query", Q)', 'record("query", -Q)')])
    report = grader.check_file(f"{flipped}::MultiHeadSelfAttention", "bert-attention")
    assert report.first_math == "query" and "sign flipped" in report.diagnosis.en
    shuffled = broken(tmp_path, BERT_ATT[0], [('record("value", V)', 'record("value", V.flip(1))')])
    report = grader.check_file(f"{shuffled}::MultiHeadSelfAttention", "bert-attention")
    assert "same values" in report.diagnosis.en and "along the heads axis" in report.diagnosis.en


# ----------------------------------------------------------------------------- recording, layouts, names


def test_record_does_nothing_outside_a_grading_run():
    from annotate import check, record, recorder

    assert callable(check)
    assert record("scores", torch.ones(2)) is None and recorder._steps is None
    with recorder.recording() as steps:
        x = torch.zeros(2)
        record("scores", x)
        x.add_(1)  # recorded as it was
    assert steps[0][0] == "scores" and torch.equal(steps[0][1], torch.zeros(2))


def test_other_layouts_are_named_and_compared_and_unknown_names_listed(tmp_path):
    path = broken(tmp_path, BERT_ATT[0], [('record("query", Q)', 'record("query", self.W_q(x))\n        record("my_q", Q)')])
    report = grader.check_file(f"{path}::MultiHeadSelfAttention", "bert-attention")
    query = next(s for s in report.steps if s.name == "query")
    assert query.verdict == "equal" and "compared split into 12 heads" in query.note
    assert [name for name, _ in report.not_compared] == ["my_q"] and "not a step of bert-attention" in report.not_compared[0][1]
    assert report.verdict in ("equal", "rounding")


def test_a_module_that_cannot_run_in_float64_is_graded_by_a_tolerance(tmp_path):
    path = broken(tmp_path, BERT_ATT[0], [("self.p = config.attention_probs_dropout_prob",
                                           "self.p = config.attention_probs_dropout_prob\n        self.eye = torch.eye(self.d_model)"),
                                          ("Q = self.heads(self.W_q(x))", "Q = self.heads(self.W_q(x) @ self.eye)")])
    report = grader.check_file(f"{path}::MultiHeadSelfAttention", "bert-attention")
    assert report.verdict in ("equal", "rounding") and any("could not run in float64" in note for note in report.notes)
    unscaled = broken(tmp_path, "paper_bert_attention.py", [("self.p = config.attention_probs_dropout_prob",
                                                              "self.p = config.attention_probs_dropout_prob\n        self.eye = torch.eye(self.d_model)"),
                                                             ("Q = self.heads(self.W_q(x))", "Q = self.heads(self.W_q(x) @ self.eye)"),
                                                             (" / math.sqrt(self.d_k)", "")])
    report = grader.check_file(f"{unscaled}::MultiHeadSelfAttention", "bert-attention")
    assert report.first_math == "scores" and report.diagnosis.id == "not-scaled"


def test_short_names_are_the_next_step_of_that_name(gpt2_dir):
    """A GPT-2 block recording through its attention class: c_proj is the attention's, then the MLP's."""
    report = grader.check_file(f"{SOLUTIONS / 'paper_gpt2_block.py'}::Block", "gpt2-block", model=str(gpt2_dir))
    names = [s.name for s in report.steps]
    assert "attn.c_proj" in names and "mlp.c_proj" in names and "attn.query" in names


def test_the_python_api_and_its_page(gpt2_dir, monkeypatch):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("paper_gpt2_attention", SOLUTIONS / "paper_gpt2_attention.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "paper_gpt2_attention", module)
    spec.loader.exec_module(module)
    report = annotate.check(module.CausalSelfAttention, "gpt2-attention", model=str(gpt2_dir))  # WEIGHTS from its module
    assert isinstance(report, grader.Report) and report.verdict in ("equal", "rounding") and report.to_dict()["verdict"] == report.verdict
    instance = module.CausalSelfAttention(report_config(gpt2_dir))
    assert annotate.check(instance, "gpt2-attention", model=str(gpt2_dir), weights=module.WEIGHTS).verdict == report.verdict
    report.not_compared.append(("<script>", "a <b> name"))
    page = report._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page and "GPT2Attention" in page


def report_config(folder):
    import transformers

    return transformers.AutoConfig.from_pretrained(folder)


# ----------------------------------------------------------------------------- bad input: one line, exit 2

ATTENTION = """\
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.query, self.key, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def forward(self, x, mask):
        return self.query(x)
"""


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    def file(name: str, text: str) -> str:
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    good = file("good.py", ATTENTION)
    return [
        ([str(tmp_path / "missing.py") + "::Attention", "--as", "bert-attention"], "no such file"),
        ([good + "::Nope", "--as", "bert-attention"], "has no class 'Nope' (it defines Attention)"),
        ([good + "::Attention", "--as", "bert-everything"], "no such kind"),
        ([good + "::Attention"], "--as KIND"),
        ([good + "::Attention", "--as", "gpt2-attention"], "needs --model"),
        ([good + "::Attention", "--as", "bert-attention", "--layer", "9"], "its layers are 0 to 5"),
        ([file("syntax.py", "def f(:\n"), "--as", "bert-attention"], "syntax.py:1: SyntaxError"),
        ([file("imports.py", "import no_such_module_here\n"), "--as", "bert-attention"], "ModuleNotFoundError"),
        ([file("raises.py", ATTENTION.replace("return self.query(x)", "return x @ torch.ones(3, 3)")) + "::Attention", "--as", "bert-attention"],
         "Attention.forward raised RuntimeError"),
        ([file("args.py", ATTENTION.replace("def forward(self, x, mask):", "def forward(self, x):")) + "::Attention", "--as", "bert-attention"],
         "calls forward(x, mask)"),
        ([file("shape.py", ATTENTION.replace("return self.query(x)", "return self.query(x)[:, :1]")) + "::Attention", "--as", "bert-attention"],
         "returned a tensor of shape (2, 1, 384)"),
        ([file("notensor.py", ATTENTION.replace("return self.query(x)", "return 'context'")) + "::Attention", "--as", "bert-attention"],
         "returned a str"),
        ([file("extra.py", ATTENTION.replace("nn.Linear(C, C)\n", "nn.Linear(C, C)\n        self.gate = nn.Linear(C, C)\n", 1)) + "::Attention",
          "--as", "bert-attention"], "weight 'gate.weight': BertSelfAttention has no weight 'gate.weight'"),
        ([file("wide.py", ATTENTION.replace("self.query, self.key", "self.query = nn.Linear(C, 2 * C)\n        _, self.key")) + "::Attention",
          "--as", "bert-attention"], "weight 'query.weight' is (768, 384); BertSelfAttention's query.weight is (384, 384)"),
        ([file("mapped.py", ATTENTION + "\nWEIGHTS = {'querry.weight': 'query.weight'}\n") + "::Attention", "--as", "bert-attention"],
         "WEIGHTS maps 'querry.weight', which is no parameter"),
        ([file("ctor.py", ATTENTION.replace("C = config.hidden_size", "C = config.no_such_field")) + "::Attention", "--as", "bert-attention"],
         "Attention(config) raised AttributeError"),
        ([good + "::Attention", "--as", "gpt2-block", "--model", conftest.MINILM], "grades a module of a gpt2 model"),
    ]


def test_every_bad_input_is_one_line_and_exit_2(tmp_path):
    for argv, says in bad_inputs(tmp_path):
        code, out, err = run(*argv)
        assert code == 2, (argv, out, err)
        assert says in err, (says, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == "", err


def test_a_transposed_weight_is_named_with_the_fix(tmp_path, gpt2_dir):
    text = (SOLUTIONS / "paper_gpt2_attention.py").read_text().replace('"qkv.weight": "c_attn.weight.T"', '"qkv.weight": "c_attn.weight"')
    (tmp_path / "t.py").write_text(text)
    code, out, err = run(f"{tmp_path / 't.py'}::CausalSelfAttention", "--as", "gpt2-attention", "--model", str(gpt2_dir))
    assert code == 2 and "map it as 'c_attn.weight.T' in WEIGHTS" in err and "(in, out)" in err


def test_list_says_each_kind_its_inputs_outputs_and_steps():
    code, out, err = run("--list")
    assert code == 0 and err == ""
    for kind in ("bert-attention", "bert-layer", "gpt2-attention", "gpt2-block", "gpt2-cache", "llama-attention", "llama-layer",
                 "bert-embeddings", "sampling", "marian-cross-attention", "marian-decoder-layer", "marian-encoder-layer"):
        assert kind in out
    assert "attention.output.LayerNorm" in out and "BertSelfAttention" in out and "the tokenizer's mask (B, T)" in out


def test_list_as_json_is_english_data_and_the_view_speaks_chinese():
    """--list --json: the kinds as data (English, whatever --lang); --lang zh-CN: what each input and
    output is, in Chinese (annotate/models' N_ prose, through the catalogue)."""
    code, out, _ = run("--list", "--json", "--lang", "zh-CN")
    listed = json.loads(out)
    assert code == 0 and [entry["kind"] for entry in listed] == list(grader.kinds())
    assert not re.search(r"[\u4e00-\u9fff]", out) and "x: hidden states (B, T, C)" in listed[1]["inputs"][0]
    code, out, _ = run("--list", "--lang", "zh-CN")
    assert code == 0 and "分词器给出的掩码 (B, T)：真实词元为 1，填充为 0" in out and "the tokenizer's mask" not in out


def test_every_kind_names_steps_of_its_architecture():
    """Each kind's steps are steps of its architecture (annotate/models/<type>.py STEPS, named
    without the layer's path), and its output and layouts are among them."""
    from annotate import models

    for kind in models.graded().values():
        steps = models.get(kind.model_type).module.STEPS
        inside = kind.where.split("{layer}")[-1].lstrip(".")
        whole = kind.where.replace("{layer}", "N")  # an encoder-decoder's steps keep their stack's path (encoder., decoder.)
        for step in kind.steps:
            assert (f"{inside}.{step}" if inside else step) in steps or f"{whole}.{step}" in steps, (kind.kind, step)
        assert kind.output in kind.steps and set(kind.layouts) <= set(kind.steps)


# ----------------------------------------------------------------------------- exercises


def test_exercise_list_and_start(tmp_path):
    code, out, err = conftest.run("exercise", "list")
    assert code == 0 and "scaled dot-product attention" in out and "缩放点积注意力" in out and "gpt2-cache" in out
    code, out, err = conftest.run("exercise", "start", "1", str(tmp_path / "mine"))
    assert code == 0 and (tmp_path / "mine" / "01_attention.py").is_file()
    code, out, err = conftest.run("exercise", "start", "1", str(tmp_path / "mine"))
    assert code == 2 and "already there" in err
    code, out, err = conftest.run("exercise", "start", "99", str(tmp_path))
    assert code == 2 and "no exercise '99'" in err
    code, out, err = conftest.run("exercise", "check", "2", str(tmp_path / "mine"))
    assert code == 2 and "annotate exercise start 2" in err


def test_every_skeleton_has_english_and_chinese_comments_and_todos():
    from annotate import exercise

    for e in exercise.EXERCISES:
        text = e.skeleton.read_text()
        assert "TODO" in text and CJK.search(text) and f"annotate exercise check {e.number} DIR" in text
        assert "todo(" in text


@pytest.mark.parametrize("number", range(1, 11))
def test_an_exercise_unsolved_says_which_todo_and_solved_passes(number, tmp_path, gpt2_dir):
    from annotate import exercise

    folder = tmp_path / "work"
    assert conftest.run("exercise", "start", str(number), str(folder))[0] == 0
    model = ["--model", str(gpt2_dir)] if exercise.get(number).kind.startswith("gpt2") else []
    code, out, err = conftest.run("exercise", "check", str(number), str(folder), *model)
    assert code == 1 and err == ""
    flat = " ".join(out.split())  # as wrapped at 80 columns
    assert f"exercise {number} (" in flat and "is not finished" in flat and "还没有完成" in flat
    assert re.search(rf"{number:02d}_\w+\.py:\d+: TODO \d", out)
    path = folder / exercise.get(number).file
    path.write_text(solve(path.read_text(), number))
    code, out, err = conftest.run("exercise", "check", str(number), str(folder), *model, "--json")
    report = json.loads(out)
    assert code == 0, report
    assert report["verdict"] in ("equal", "rounding") and report["kind"] == exercise.get(number).kind


def test_a_gpt2_exercise_without_a_model_writes_a_random_gpt2(tmp_path):
    folder = tmp_path / "work"
    conftest.run("exercise", "start", "3", str(folder))
    path = folder / "03_masks.py"
    path.write_text(solve(path.read_text(), 3))
    code, out, err = conftest.run("exercise", "check", "3", str(folder))
    assert code == 0, out + err
    assert (folder / "gpt2-random" / "config.json").is_file() and "gpt2-random" in out


# ----------------------------------------------------------------------------- the encoder-decoder's pieces


def test_the_cross_attention_runs_on_real_sources_and_their_targets():
    """The translator's real input: two English sources, padded, through the real encoder (the
    memory), and their Chinese targets under teacher forcing, padded too; S = T, so that keys and
    values taken from the decoder run (and are diagnosed) instead of failing on a shape."""
    s = grader.setting(grader.kind_of("marian-cross-attention"), None)
    B, S = s.source_ids.shape
    assert (B, S) == tuple(s.ids.shape) and not s.source_mask.all() and not s.mask.all()
    assert s.ids[0, 0] == s.twin.config.decoder_start_token_id  # the decoder's input starts with the start token
    memory = s.twin.model.encoder(s.source_ids, s.source_mask)[0]
    assert torch.equal(s.roles["memory"], memory) and s.roles["x"].shape == (B, S, s.config.d_model)
    assert s.roles["source_mask4d"].shape == (B, 1, 1, S)
    assert "2 sources" in s.describe() and "teacher forcing" in s.describe() and "padding tokens at the end" in s.describe()
    assert s.keep_of("cross-probs").shape == (B, 1, S, S) and torch.equal(s.rows_of("memory"), s.source_mask.bool())


def test_the_cli_grades_a_cross_attention_exit_0_and_its_mistake_exit_1(tmp_path):
    code, out, err = run(f"{SOLUTIONS / CROSS[0]}::{CROSS[1]}", "--as", "marian-cross-attention")
    assert code == 0 and err == "" and "MarianAttention" in out and "teacher forcing" in out
    path = broken(tmp_path, CROSS[0], [("k = self.to_k(memory)", "k = self.to_k(x)"), ("v = self.to_v(memory)", "v = self.to_v(x)")])
    code, out, err = run(f"{path}::{CROSS[1]}", "--as", "marian-cross-attention")
    flat = " ".join(out.split())
    assert code == 1 and err == "" and "first math step" in out and "诊断" in out
    assert "keys and values are computed from the decoder's own states" in flat
    code, report = run_json(f"{path}::{CROSS[1]}", "--as", "marian-cross-attention")
    assert code == 1 and report["first_math"] == "k_proj" and report["diagnosis"]["id"] == "cross-kv-from-decoder"
    assert CJK.search(report["diagnosis"]["zh-CN"]) and report["layer"] == 0


def test_list_says_the_encoder_decoder_kinds_inputs():
    code, out, err = run("--list")
    flat = " ".join(out.split())
    assert code == 0 and "MarianDecoderLayer" in out and "forward(x, memory, source_mask)" in flat
    assert "forward(x, mask, memory, source_mask)" in flat and "the encoder's output (B, S, C)" in flat
    assert "the source's tokenizer mask (B, S)" in flat and "encoder_attn.k_proj" in flat and "marian-numbers-en-zh" in flat


def test_bad_input_for_the_encoder_decoder_kinds_is_one_line_and_exit_2(tmp_path):
    no_mask = (SOLUTIONS / CROSS[0]).read_text().replace("def forward(self, x, memory, source_mask):", "def forward(self, x, memory):")
    (tmp_path / "no_mask.py").write_text(no_mask)
    for argv, says in [
        ([f"{SOLUTIONS / CROSS[0]}::{CROSS[1]}", "--as", "marian-cross-attention", "--layer", "3"], "its layers are 0 to 2"),
        ([f"{SOLUTIONS / CROSS[0]}::{CROSS[1]}", "--as", "marian-cross-attention", "--model", conftest.MINILM],
         "grades a module of a marian model"),
        ([f"{tmp_path / 'no_mask.py'}::{CROSS[1]}", "--as", "marian-cross-attention"], "calls forward(x, memory, source_mask)"),
    ]:
        code, out, err = run(*argv)
        assert code == 2 and says in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == "", err


def test_exercise_list_shows_the_encoder_decoder_exercises():
    code, out, err = conftest.run("exercise", "list")
    assert code == 0 and "09_cross_attention.py" in out and "10_decoder_layer.py" in out
    assert "marian-cross-attention" in out and "marian-decoder-layer" in out and "交叉注意力" in out
