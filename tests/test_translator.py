"""The translator trained here (scripts/train_translator.py) and shipped in the package,
``marian-numbers-en-zh``: a real MarianMTModel that turns English number words into Chinese
numerals. Loaded by name, offline; every stage, forward and backward, bit-identical to
transformers; the twin's greedy and beam search token-equal to transformers' generate; its
accuracy on held-out numbers as transformers' own generate gives it.

The expected translations are tests/data/numbers-held-out.tsv, written by num2words and cn2an
(the tools that made the training data), never by annotate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import reimpl
from reimpl import seq2seq
from tests.conftest import run, run_json
from tests.parity import assert_states_equal
from tests.test_seq2seq import stages

NAME = "marian-numbers-en-zh"
HELD_OUT = Path(__file__).parent / "data" / "numbers-held-out.tsv"


def held_out() -> list[tuple[int, str, str]]:
    rows = [line.split("\t") for line in HELD_OUT.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return [(int(n), english, chinese) for n, english, chinese in rows]


@pytest.fixture(scope="module")
def folder() -> Path:
    return reimpl.loading.resolve(NAME)  # the package's folder: no network, no cache


@pytest.fixture(scope="module")
def tokenizer(folder):
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def hf(folder):
    return transformers.MarianMTModel.from_pretrained(folder, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def twin():
    return reimpl.from_pretrained(NAME)


def test_it_is_a_marian_checkpoint_transformers_loads(folder, tokenizer, hf, twin):
    assert type(twin).__name__ == "MarianMTModel" and type(tokenizer).__name__ == "MarianTokenizer"
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 20e6  # the bound for shipping it
    config = hf.config
    assert config.scale_embedding and config.share_encoder_decoder_embeddings and config.decoder_start_token_id == config.pad_token_id
    assert tokenizer.decode(tokenizer(text_target="十二万三千四百五十六")["input_ids"], skip_special_tokens=True) == "十二万三千四百五十六"


def test_every_stage_bit_identical_on_a_padded_batch(tokenizer, hf, twin):
    rows = held_out()[:4]
    batch = tokenizer([english for _, english, _ in rows], text_target=[chinese for *_, chinese in rows], padding=True, return_tensors="pt")
    labels = batch.pop("labels")
    labels[labels == hf.config.pad_token_id] = -100
    batch["decoder_input_ids"] = reimpl.marian.shift_tokens_right(labels, hf.config.pad_token_id, hf.config.decoder_start_token_id)
    assert not batch["attention_mask"].all()  # the batch really has padding
    assert assert_states_equal(hf, twin, **batch) == stages(hf.config, "MarianMTModel")


def test_training_step_bit_identical(tokenizer, hf, twin):
    """Train mode (dropout 0.1), labels, the loss and every gradient: the twin and transformers after the same seed."""
    rows = held_out()[4:8]
    batch = tokenizer([e for _, e, _ in rows], text_target=[c for *_, c in rows], padding=True, return_tensors="pt")
    batch["labels"][batch["labels"] == hf.config.pad_token_id] = -100
    hf.train(), twin.train()
    try:
        with torch.enable_grad():
            torch.manual_seed(0)
            ours = twin(**batch)
            torch.manual_seed(0)
            theirs = hf(**batch)
            assert torch.equal(ours.loss, theirs.loss) and torch.equal(ours.logits, theirs.logits)
            ours.loss.backward(), theirs.loss.backward()
        params = dict(hf.named_parameters())
        compared = [name for name, p in twin.named_parameters() if p.grad is not None]
        assert len(compared) > 60
        for name in compared:
            assert torch.equal(twin.get_parameter(name).grad, params[name].grad), name
    finally:
        hf.eval(), twin.eval()
        hf.zero_grad(), twin.zero_grad()


SETTINGS = {
    "greedy": dict(num_beams=1),
    "shipped": {},  # generation_config.json's: 4 beams, <pad> banned, </s> forced, renormalized
    "beams-2-short": dict(num_beams=2, length_penalty=0.6, max_new_tokens=6),  # cut before the end: the max-length path
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_twin_generate_token_equal_to_transformers(setting, folder, tokenizer, hf, twin):
    import json

    rows = held_out()[8:28]  # 20 sources, in two padded batches
    shipped = seq2seq.settings_from(json.loads((folder / "generation_config.json").read_text()))
    for start in (0, 10):
        batch = tokenizer([e for _, e, _ in rows[start : start + 10]], padding=True, return_tensors="pt")
        theirs = hf.generate(**batch, **SETTINGS[setting])
        ours = twin.generate(batch["input_ids"], batch["attention_mask"], **(shipped | SETTINGS[setting]))
        assert torch.equal(ours, theirs), (ours, theirs)


def test_held_out_accuracy_with_transformers_generate(tokenizer, hf):
    """Exact match on held-out numbers with transformers' own generate and the shipped generation
    config (the training script's --evaluate measures all 1,000; here every fourth, to stay quick)."""
    rows = held_out()[::4]
    right = 0
    for start in range(0, len(rows), 50):
        chunk = rows[start : start + 50]
        batch = tokenizer([e for _, e, _ in chunk], padding=True, return_tensors="pt")
        out = tokenizer.batch_decode(hf.generate(**batch), skip_special_tokens=True)
        right += sum(got == chinese for got, (_, _, chinese) in zip(out, chunk))
    assert right / len(rows) >= 0.99, f"{right}/{len(rows)}"


def test_trace_diff_and_generate(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    source = "one hundred and twenty-three thousand, four hundred and fifty-six"
    code, out = run_json("trace", NAME, source, "--diff")
    assert code == 0 and out["target"]["text"] == "十二万三千四百五十六"
    assert {s["verdict"] for s in out["stages"]} == {"equal"}
    code, out = run_json("generate", NAME, source)
    assert code == 0 and out["text"] == "十二万三千四百五十六" and len(out["steps"][0]["beams"]) == 4
    code, text, err = run("trace", NAME, source)
    assert code == 0 and "十二万三千四百五十六" in text


def test_cross_attention_aligns_words_with_characters(twin, folder):
    """Where the last decoder layer looked when it chose each character: digits from their words
    (二 from "twenty", 五 from "fifty", 六 from "six"), as a learner expects of an alignment."""
    from annotate import translate

    t = translate.trace(NAME, folder, twin, "one hundred and twenty-three thousand, four hundred and fifty-six", progress=False)
    cross = t.cross_attention(t.decoder_layers - 1)  # (T, S)
    looked = {p.token: t.source_tokens[int(cross[i].argmax())] for i, p in enumerate(t.next_tokens)}
    assert looked["二"] == "▁twenty" and looked["五"] == "▁fifty" and looked["六"] == "six" and looked["四"] == "▁four"


def test_readme_sample_is_real_output(monkeypatch):
    """The README's cross-attention picture is what `annotate trace marian-numbers-en-zh ... --diff` prints at 80 columns."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("四 from \"four\", 百 from the second \"hundred\", 五 from \"fifty\":\n\n```text\n")[1].split("```")[0]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run("trace", NAME, "one hundred and twenty-three thousand, four hundred and fifty-six", "--diff")
    assert code == 0
    printed = out.splitlines()
    for line in block.splitlines():
        assert line in printed, line
