"""The logit lens (annotate/lens.py, `annotate trace --lens`): every layer's output read through the
model's own final norm and LM head. The last layer's lens is the model's logits bit for bit
(``torch.equal``): for every LM head of every architecture on random weights (as tests/parity.py
builds them), for a masked LM with the real MiniLM body, and for the real SmolLM2. Then the JSON,
the table at 80 and 120 columns, and the refusal for a model without an LM head.
"""

from __future__ import annotations

import re

import pytest
import torch
import transformers
from rich.cells import cell_len

import reimpl
from annotate import lens, models, tracer
from reimpl import recording
from tests.conftest import run, run_json
from tests.parity import minilm_with_head
from tests.test_conformance import FIXTURES

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"

LM_HEADS = [  # every class whose head scores the vocabulary through modules it names (Output.through)
    (model_type, cls)
    for model_type, fx in FIXTURES.items()
    for cls in fx.classes
    if (head := models.get(model_type).head(cls)) is not None and any(o.reads in lens.VOCABULARY and o.through for o in head.outputs)
]


def test_the_lm_heads_name_their_modules():
    """The lens asks the head interface which modules make the scores, never guesses: every causal
    and masked LM head here names them (one whose scores are not a chain of modules is refused)."""
    named = {model_type for model_type, _ in LM_HEADS}
    assert {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "gpt2", "llama", "mistral", "qwen2", "qwen3"} <= named


@pytest.mark.parametrize("model_type, cls", LM_HEADS)
def test_last_layer_is_the_models_logits_bit_for_bit(model_type, cls):
    """Random weights, a padded batch: each layer read through the final norm and the head; the
    last layer's lens equals the twin's logits and transformers' (torch.equal), the others don't."""
    fx = FIXTURES[model_type]
    hf = fx.model(cls)
    twin = fx.twin_class(cls).from_hf(hf)
    inputs = fx.inputs(hf.config)
    output = lens.lm_output(twin)
    with torch.no_grad(), recording() as states:
        ours = getattr(twin(**inputs), output.field)
        theirs = getattr(hf(**inputs, **({"use_cache": False} if fx.arch.causal else {})), output.field)
    found = list(lens.logits(twin, dict(states)))
    assert [layer for layer, _ in found] == list(range(twin.config.num_hidden_layers))
    last = found[-1][1]
    assert torch.equal(last, ours) and torch.equal(last, theirs)
    assert not any(torch.equal(x, ours) for _, x in found[:-1])


def test_gpt2_lens_reads_through_ln_f_then_lm_head(gpt2_dir):
    t = tracer.trace(str(gpt2_dir), "The cat sat on the mat", progress=False, lens=True, top_k=3)
    twin = reimpl.from_pretrained(gpt2_dir)
    assert lens.modules(twin, t.states) == ["transformer.ln_f", "lm_head"]  # the final norm found by its step kind
    assert torch.equal(list(lens.logits(twin, t.states))[-1][1], t.states["lm_head"])
    assert t.lens.reads == "next-token" and [e.layer for e in t.lens.layers] == [0, 1, 2]
    assert [p.id for p in t.lens.layers[-1].top[-1]] == [p.id for p in t.predictions]  # the model's own next token


def test_masked_lm_lens_goes_through_the_whole_mlm_head(tmp_path):
    """The real MiniLM body with a random MLM head: the lens is the transform (dense, activation,
    LayerNorm) and the decoder, after each layer; the last layer's is transformers' logits."""
    folder = minilm_with_head(tmp_path, "BertForMaskedLM")
    text = "Paris is the capital of [MASK]."
    t = tracer.trace(str(folder), text, progress=False, lens=True, top_k=4)
    twin = reimpl.from_pretrained(folder)
    assert lens.modules(twin, t.states) == ["cls.predictions"]  # BERT has no final norm: post-LN
    hf = transformers.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = hf(torch.tensor([t.ids]), attention_mask=torch.ones(1, len(t.ids), dtype=torch.long)).logits
    assert torch.equal(list(lens.logits(twin, t.states))[-1][1], theirs)
    mask = t.mask_predictions[0]
    assert [p.id for p in t.lens.layers[-1].top[mask.position]] == [p.id for p in mask.top]
    assert [p.prob for p in t.lens.layers[-1].top[mask.position]] == [p.prob for p in mask.top]
    assert t.lens.reads == "masked-tokens" and len(t.lens.layers) == 6


def test_smollm2_lens_is_its_logits_and_finds_paris_late():
    """The real SmolLM2 (Llama): RMSNorm then lm_head; its last layer says Paris, its early ones don't."""
    t = tracer.trace(SMOLLM2, "The capital of France is", progress=False, lens=True)
    twin = reimpl.from_pretrained(reimpl.loading.resolve(SMOLLM2))
    assert lens.modules(twin, t.states) == ["model.norm", "lm_head"]
    assert torch.equal(list(lens.logits(twin, t.states))[-1][1], t.states["lm_head"])
    guesses = [entry.top[-1][0].text for entry in t.lens.layers]
    assert len(guesses) == 30 and guesses[-1] == " Paris" and " Paris" not in guesses[:20]


def test_json_one_entry_per_layer(gpt2_dir):
    code, data = run_json("trace", str(gpt2_dir), "The cat sat", "--lens", "--top-k", "2")
    assert code == 0
    T = len(data["tokens"])
    assert [e["layer"] for e in data["lens"]] == [0, 1, 2]
    for entry in data["lens"]:
        assert set(entry) == {"layer", "top"} and len(entry["top"]) == T
        assert all(len(row) == 2 and set(row[0]) == {"id", "token", "prob"} and row[0]["prob"] >= row[1]["prob"] for row in entry["top"])
    assert [p["id"] for p in data["lens"][-1]["top"][-1]] == [p["id"] for p in data["predictions"]]
    code, data = run_json("trace", str(gpt2_dir), "The cat sat", "--lens", "--layers", "1")
    assert [e["layer"] for e in data["lens"]] == [1]  # as the view keeps the stages


@pytest.mark.parametrize("columns", [80, 120])
def test_table_fits_the_terminal_and_groups_the_bytes_of_a_character(monkeypatch, gpt2_dir, columns):
    """Position × layer, the top token and its probability; a byte-level BPE's pieces of one
    character headed by the character (which piece of how many), as the token line groups them."""
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run("trace", str(gpt2_dir), "The cat sat on the mat, 我爱", "--lens")
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(cell_len, lines)) <= columns
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("── logit lens: each layer's likeliest next token")) :]
    headers = [line for line in table if line.startswith("layer  0:The ")]
    assert headers and re.search(r"\b\d+:我 1/3 ", out) and re.search(r"\b\d+:爱 3/3", out)  # the token line's "i:token", the piece
    rows = [line for line in table if line[:5].strip().isdigit()]
    assert [int(line[:5]) for line in rows[:3]] == [0, 1, 2]
    assert "the last layer's row is the model's logits, bit for bit" in " ".join(table)


def test_masked_lm_table_says_what_the_lens_means_there(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    folder = minilm_with_head(tmp_path, "BertForMaskedLM")
    code, out, _ = run("trace", str(folder), "Paris is the capital of [MASK].", "--lens")
    assert code == 0
    assert "── logit lens: each layer's likeliest token at each position" in out
    legend = " ".join(out.split("── logit lens")[1].split())
    assert "through the whole MLM head, cls.predictions: its transform (dense, activation, LayerNorm), then its decoder." in legend
    assert "final norm" not in legend  # post-LN BERT has none


@pytest.mark.parametrize("which", ["base", "classifier"])
def test_refused_without_an_lm_head(tmp_path, which):
    if which == "base":
        model, name = MINILM, "BertModel"
    else:
        model, name = str(minilm_with_head(tmp_path, "BertForSequenceClassification")), "BertForSequenceClassification"
    code, out, err = run("trace", model, "The cat sat.", "--lens")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"annotate: error: --lens: {name} has no LM head")
