"""The encoder-decoder's views: ``annotate trace`` (annotate/translate.py, render_translate.py),
``annotate generate`` (watch_translate.py) and the explorer page (explorer_translate.py), on a
Marian with random weights and the packaged translator's tokenizer (sentencepiece models in the
opus-mt layout). The trained translator itself: tests/test_translator.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from rich.cells import cell_len

from annotate import explorer_translate, translate, tracer
from tests.conftest import run, run_json
from tests.test_seq2seq import stages

PACKAGED = Path(__file__).resolve().parents[1] / "annotate" / "data" / "marian-numbers-en-zh"
SOURCE = "one hundred and twenty-three thousand, four hundred and fifty-six"
TARGET = "十二万三千四百五十六"


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> Path:
    """A random MarianMTModel (2 + 2 layers) with the packaged tokenizer and an opus-mt-like generation_config.json."""
    folder = tmp_path_factory.mktemp("marian")
    for name in ("source.spm", "target.spm", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(PACKAGED / name, folder / name)
    vocab = json.loads((folder / "vocab.json").read_text())
    pad = vocab["<pad>"]
    config = transformers.MarianConfig(vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                       decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
                                       pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0, scale_embedding=True,
                                       activation_function="swish")
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)  # sharper than transformers' init: attention that picks, beams that part
        model.final_logits_bias.normal_()
    model.save_pretrained(folder)
    settings = {"num_beams": 4, "max_length": 16, "bad_words_ids": [[pad]], "forced_eos_token_id": 0,
                "decoder_start_token_id": pad, "pad_token_id": pad, "eos_token_id": 0}
    (folder / "generation_config.json").write_text(json.dumps(settings))
    return folder


def test_trace_diff_every_stage_equal(marian):
    code, out = run_json("trace", str(marian), SOURCE, "--diff")
    assert code == 0
    config = transformers.MarianConfig.from_pretrained(marian)
    assert len(out["stages"]) == stages(config, "MarianMTModel") - 1  # the scores ("logits") compared as the head's output
    assert {s["verdict"] for s in out["stages"]} == {"equal"} and out["diff"]["logits_max_abs_diff"] == 0.0
    assert out["diff"]["first_math"] is None
    assert out["source"]["tokens"][-1] == "</s>" and out["target"]["given"] is False
    assert out["target"]["decoder_tokens"][0] == "<pad>"  # Marian's decoder starts from the pad token
    T, S = len(out["target"]["decoder_ids"]), len(out["source"]["ids"])
    assert len(out["cross_attention"]) == 2 and all(len(L["weights"]) == T and len(L["weights"][0]) == S for L in out["cross_attention"])
    for L in out["cross_attention"]:
        assert all(abs(sum(row) - 1) < 1e-6 for row in L["weights"])  # each target position's weights over the source sum to 1


def test_greedy_translation_is_transformers_greedy_generate(marian):
    """Without --target the decoder reads the model's greedy translation: transformers' generate with one beam."""
    code, out = run_json("trace", str(marian), SOURCE)
    tok = transformers.AutoTokenizer.from_pretrained(marian)
    hf = transformers.MarianMTModel.from_pretrained(marian)
    ids = hf.generate(**tok(SOURCE, return_tensors="pt"), num_beams=1)[0]
    assert out["target"]["text"] == tok.decode(ids, skip_special_tokens=True)
    assert out["target"]["decoder_ids"] == ids[:-1].tolist()  # the last token is read by nobody


def test_teacher_forcing_reads_the_target_shifted_right(marian):
    code, out = run_json("trace", str(marian), SOURCE, "--target", TARGET)
    tok = transformers.AutoTokenizer.from_pretrained(marian)
    labels = tok(text_target=TARGET)["input_ids"]
    assert code == 0 and out["target"]["given"] and out["target"]["text"] == TARGET
    assert out["target"]["decoder_ids"] == [tok.pad_token_id] + labels[:-1]
    assert "".join(out["target"]["decoder_tokens"][1:]).replace("▁", "") == TARGET


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("extra", [(), ("--target", TARGET), ("--diff",), ("--full",)])
def test_terminal_view_fits(marian, width, extra, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = run("trace", str(marian), SOURCE, *extra)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= width, max(lines, key=cell_len)
    assert any(line.startswith("── where each target token looked") for line in lines) != ("--full" in extra)
    assert TARGET in out if extra[:1] == ("--target",) else True


def test_generate_json_ids_are_transformers_generate(marian):
    tok = transformers.AutoTokenizer.from_pretrained(marian)
    hf = transformers.MarianMTModel.from_pretrained(marian)
    batch = tok(SOURCE, return_tensors="pt")
    for beams in (None, "1", "2"):
        code, out = run_json("generate", str(marian), SOURCE, *(("--num-beams", beams) if beams else ()))
        want = hf.generate(**batch, **({"num_beams": int(beams)} if beams else {}))[0].tolist()  # the shipped generation_config
        assert code == 0 and out["ids"] == want and out["source_ids"] == batch["input_ids"][0].tolist()
        assert out["text"] == tok.decode(want, skip_special_tokens=True)
        k = int(beams) if beams else 4
        assert all(len(step["beams"]) == k for step in out["steps"]) and len(out["steps"]) >= len(want) - 2
        assert all(abs(sum(w for _, w in b["looked"])) <= 1 for s in out["steps"] for b in s["beams"])


@pytest.mark.parametrize("width", [80, 120])
def test_generate_view_fits(marian, width, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = run("generate", str(marian), SOURCE, "--max-new-tokens", "4")
    assert code == 0 and err == ""
    assert max(cell_len(line) for line in out.splitlines()) <= width
    assert "── step 0 " in out and "── result " in out


@pytest.mark.parametrize("argv, message", [
    (("trace", "{m}", SOURCE, "--grad"), "--grad is not available for an encoder-decoder's trace"),
    (("trace", "{m}", SOURCE, "--lens"), "--lens is not available for an encoder-decoder's trace"),
    (("trace", "{m}", " "), "the source text is empty"),
    (("generate", "{m}", SOURCE, "--chat"), "--chat is not available for an encoder-decoder"),
    (("generate", "{m}", SOURCE, "--num-beams", "0"), "--num-beams must be at least 1"),
])
def test_bad_input_one_line_exit_2(marian, argv, message):
    code, out, err = run(*(a.format(m=marian) for a in argv))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_num_beams_refused_for_a_decoder(gpt2_dir):
    code, out, err = run("generate", str(gpt2_dir), "The cat", "--num-beams", "2")
    assert code == 2 and "--num-beams is for an encoder-decoder" in err


def test_views_that_show_one_stack_refuse_an_encoder_decoder(marian):
    folder, twin = tracer.load(str(marian))
    with pytest.raises(Exception, match="shows one stack of layers"):
        tracer.one_stack(twin, "the layer view")


# --- the explorer page -------------------------------------------------------------------------


def test_explorer_page(marian, chrome, tmp_path):
    folder, twin = tracer.load(str(marian))
    t = translate.trace(str(marian), folder, twin, SOURCE, TARGET, diff=True, progress=False)
    path = tmp_path / "page.html"
    explorer_translate.write(t, path)
    chrome.requests.clear(), chrome.errors.clear()
    page = chrome.page()
    chrome.load(page, path)
    assert chrome.foreign_requests(path) == [] and chrome.errors == []
    S, T = len(t.source_tokens), len(t.target_tokens)
    assert page.locator('[data-grid="cross"] td').count() == T * S  # every target position against every source token
    assert page.locator("[data-looked] tr").count() == T
    assert page.locator("[data-verdict]").get_attribute("data-verdict") == "equal"
    assert page.locator(".translation").inner_text() == TARGET
    page.select_option('[data-pick="head"]', "1")  # one head instead of the average: redrawn
    assert page.locator('[data-grid="cross"] td').count() == T * S
    page.click('[data-tab="decoder"]')
    blocked = page.locator('[data-grid="decoder"] td.blocked').count()
    assert blocked == T * (T - 1) // 2  # the causal mask: the future of every position
    page.click('[data-tab="masks"]')
    assert page.locator('[data-grid="mask-causal"] td.kept').count() == T * (T + 1) // 2
    assert page.locator('[data-grid="mask-padded"] td.blocked').count() == (S + 2) * 2  # the batch example's padding columns
    assert page.locator('[data-grid="mask-cross"] td.kept').count() == T * S
    page.click('[data-tab="stages"]')
    assert page.locator("[data-stage]").count() == len(t.stages)
    assert chrome.errors == []


def test_explorer_page_in_chinese(marian, chrome, tmp_path):
    """Written in zh-CN (annotate.i18n.using): <html lang="zh-CN">, the tabs, explanations, headings
    and verdict in Chinese; the tabs' names (data-tab) and the stages' verdicts stay as they are."""
    import re

    from annotate import i18n

    cjk = re.compile(r"[\u3400-\u9fff]")
    folder, twin = tracer.load(str(marian))
    tr = translate.trace(str(marian), folder, twin, SOURCE, TARGET, diff=True, progress=False)
    path = tmp_path / "page-zh.html"
    with i18n.using("zh-CN"):
        explorer_translate.write(tr, path)
    assert '<html lang="zh-CN">' in path.read_text(encoding="utf-8")
    chrome.requests.clear(), chrome.errors.clear()
    page = chrome.page()
    chrome.load(page, path)
    tabs = page.locator("[data-tab]")
    assert tabs.evaluate_all("els => els.map(e => e.dataset.tab)") == ["cross-attention", "encoder", "decoder", "masks", "stages"]
    assert tabs.all_inner_texts() == ["交叉注意力", "编码器", "解码器", "掩码", "阶段"]
    assert page.locator("[data-verdict]").inner_text() == "每个阶段都与 transformers 逐位一致"
    assert all(cjk.search(label) for label in page.locator(".pair > span:nth-child(odd)").all_inner_texts())
    assert cjk.search(page.inner_text(".explain"))
    assert page.locator('[data-pick="head"] option').first.inner_text() == "各头平均"
    page.click('[data-tab="masks"]')
    headings = page.locator("main h3").all_inner_texts()
    assert len(headings) == 4 and all(cjk.search(h) for h in headings), headings
    page.click('[data-tab="stages"]')
    assert page.locator("[data-stage]").count() == len(tr.stages) and cjk.search(page.inner_text(".explain"))
    assert chrome.foreign_requests(path) == [] and chrome.errors == []
