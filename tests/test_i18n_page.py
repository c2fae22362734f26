"""The Chinese pages drawn: every Chinese character of a zh-CN page is a glyph, not a box.

A machine without a CJK font draws Chinese as empty boxes ("tofu"), each the same box: so the
test draws each distinct character the page shows, in the page's own font, on a canvas, and asks
that no two characters look alike and none is blank. .ci/run installs fonts-noto-cjk.
"""

from __future__ import annotations

import re

import annotate
from annotate import explorer, i18n
from tests import conftest
from tests.test_cli import MINILM

run = conftest.run

CJK = re.compile(r"[\u3400-\u9fff]")

# Each distinct character, drawn alone in the font of an element that shows it: its pixels.
DRAWN = """(chars) => {
  const el = [...document.querySelectorAll("body *")].find(e => /[\\u3400-\\u9fff]/.test(e.textContent) && !e.children.length) || document.body;
  const font = "32px " + getComputedStyle(el).fontFamily;
  const canvas = document.createElement("canvas"); canvas.width = 40; canvas.height = 40;
  const g = canvas.getContext("2d", { willReadFrequently: true });
  return chars.map(c => {
    g.clearRect(0, 0, 40, 40); g.font = font; g.fillStyle = "#000"; g.textBaseline = "top"; g.fillText(c, 2, 2);
    const px = g.getImageData(0, 0, 40, 40).data;
    let ink = 0, key = "";
    for (let i = 3; i < px.length; i += 4) { if (px[i] > 0) ink++; key += px[i] > 127 ? "1" : "0"; }
    return [ink, key];
  });
}"""


def drawn_as_glyphs(b, path) -> str:
    """The page's visible text, after checking that its Chinese is drawn as distinct glyphs."""
    page = b.page()
    b.load(page, path)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    text = page.inner_text("body")
    chars = sorted(set(CJK.findall(text)))
    assert len(chars) >= 20, f"a zh-CN page shows little Chinese: {''.join(chars)}"
    drawn = page.evaluate(DRAWN, chars[:60])
    blank = [c for c, (ink, _) in zip(chars, drawn) if ink == 0]
    assert not blank, f"drawn blank: {''.join(blank)}"
    shapes = {}
    for c, (_, key) in zip(chars, drawn):
        shapes.setdefault(key, []).append(c)
    alike = [group for group in shapes.values() if len(group) > 1]
    assert not alike, f"characters drawn as the same shape (a box: no CJK font): {alike}"
    return text


def test_trace_page_in_chinese_draws_its_characters(chrome, tmp_path):
    trace = annotate.trace(MINILM, "The cat sat on the mat.", diff=True)
    path = tmp_path / "zh.html"
    with i18n.using("zh-CN"):
        explorer.write(trace, path)
    text = drawn_as_glyphs(chrome, path)
    assert "注意力" in text and "阶段" in text


def test_translation_page_in_chinese_draws_its_characters(chrome, tmp_path):
    path = tmp_path / "translate.html"
    code, _, err = run("trace", "marian-numbers-en-zh", "three thousand and five", "--html", str(path), "--lang", "zh-CN")
    assert code == 0, err
    drawn_as_glyphs(chrome, path)


def test_generation_page_in_chinese_draws_its_characters(chrome, tmp_path):
    path = tmp_path / "generate.html"
    code, _, err = run("generate", "SmolLM2-135M-Instruct.Q4_1.gguf", "The capital of France is", "--max-new-tokens", "3",
                       "--html", str(path), "--lang", "zh-CN")
    assert code == 0, err
    drawn_as_glyphs(chrome, path)
