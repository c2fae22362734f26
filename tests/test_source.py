"""`annotate source`: names resolve to the installed transformers' real file and lines, with the twin beside them."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from annotate import source
from annotate.cli import main
from annotate.errors import UserError

MODELING_BERT = "transformers/models/bert/modeling_bert.py"
MODELING_GPT2 = "transformers/models/gpt2/modeling_gpt2.py"

# name, extra CLI args, the file it must come from, its class/def line, the twin's qualname (None: no twin)
KNOWN = [
    ("BertSelfAttention", [], MODELING_BERT, "class BertSelfAttention(nn.Module):", "reimpl.bert.BertSelfAttention"),
    ("BertSelfAttention.forward", [], MODELING_BERT, "def forward(", "reimpl.bert.BertSelfAttention.forward"),
    ("BertEmbeddings", [], MODELING_BERT, "class BertEmbeddings(nn.Module):", "reimpl.bert.BertEmbeddings"),
    ("BertModel.forward", [], MODELING_BERT, "def forward(", "reimpl.bert.BertModel.forward"),
    ("BertSelfOutput", [], MODELING_BERT, "class BertSelfOutput(nn.Module):", "reimpl.bert.BertLayer.forward"),
    ("BertIntermediate", [], MODELING_BERT, "class BertIntermediate(nn.Module):", "reimpl.bert.BertLayer.forward"),
    ("eager_attention_forward", [], MODELING_BERT, "def eager_attention_forward(", "reimpl.bert.BertSelfAttention.forward"),
    ("eager_attention_forward", ["--model", "gpt2"], MODELING_GPT2, "def eager_attention_forward(", "reimpl.gpt2.GPT2Attention.forward"),
    ("modeling_gpt2.GPT2Attention", [], MODELING_GPT2, "class GPT2Attention(nn.Module):", "reimpl.gpt2.GPT2Attention"),
    ("transformers.models.gpt2.modeling_gpt2.GPT2Block.forward", [], MODELING_GPT2, "def forward(", "reimpl.gpt2.GPT2Block.forward"),
    ("GPT2LMHeadModel", [], MODELING_GPT2, "class GPT2LMHeadModel(", "reimpl.gpt2.GPT2LMHeadModel"),
    ("Conv1D", [], "transformers/pytorch_utils.py", "class Conv1D(nn.Module):", "reimpl.gpt2.Conv1D"),
    ("eager_mask", [], "transformers/masking_utils.py", "def eager_mask(", "reimpl.bert.additive_mask"),
    ("eager_mask", ["--model", "gpt2"], "transformers/masking_utils.py", "def eager_mask(", "reimpl.gpt2.causal_mask"),
    ("create_causal_mask", [], "transformers/masking_utils.py", "def create_causal_mask(", "reimpl.gpt2.causal_mask"),
    ("create_bidirectional_mask", [], "transformers/masking_utils.py", "def create_bidirectional_mask(", "reimpl.bert.additive_mask"),
    ("DynamicLayer.update", [], "transformers/cache_utils.py", "def update(", "reimpl.gpt2.KVCache.update"),
    ("DynamicCache", [], "transformers/cache_utils.py", "class DynamicCache(Cache):", "reimpl.gpt2.KVCache"),
    ("NewGELUActivation", [], "transformers/activations.py", "class NewGELUActivation(nn.Module):", "reimpl.activations.gelu_new"),
    ("GELUActivation", [], "transformers/activations.py", "class GELUActivation(nn.Module):", "reimpl.activations.ACT2FN"),
    ("ALL_ATTENTION_FUNCTIONS", [], "transformers/modeling_utils.py", "class AttentionInterface(GeneralInterface):", None),
    ("sdpa_attention_forward", [], "transformers/integrations/sdpa_attention.py", "def sdpa_attention_forward(", None),
]


def _gutter(number: int, text: str) -> re.Pattern:
    """A printed code line: rich's gutter (an optional ❱ and the line number), then the text."""
    return re.compile(rf"^[ ❱]*{number} +{re.escape(text)}", re.MULTILINE)


@pytest.mark.parametrize(("name", "args", "file", "def_text", "twin"), KNOWN, ids=[" ".join([k[0], *k[1]]) for k in KNOWN])
def test_known_names_resolve_to_the_installed_file_and_lines(name, args, file, def_text, twin):
    model = args[1] if args else None
    found = source.find(name, model=model)
    code = found.code
    assert code.path.as_posix().endswith(file)
    # The installed file, read fresh: the shown text is its lines first..last, and the def line is where we say.
    lines = code.path.read_text().splitlines()
    assert "\n".join(lines[code.first_line - 1 : code.last_line]) == code.text
    assert lines[code.def_line - 1].strip().startswith(def_text)
    assert code.first_line == code.def_line or lines[code.first_line - 1].lstrip().startswith("@")
    assert (found.twin.qualname if found.twin else None) == twin


@pytest.mark.parametrize(("name", "args", "file", "def_text", "twin"), KNOWN, ids=[" ".join([k[0], *k[1]]) for k in KNOWN])
def test_cli_prints_the_real_lines_with_their_numbers(name, args, file, def_text, twin, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    found = source.find(name, model=args[1] if args else None)
    assert main(["source", name, *args]) == 0
    out = capsys.readouterr().out
    assert f"{file}:{found.code.first_line}-{found.code.last_line}" in out  # the file path header
    first_text = found.code.text.splitlines()[0].strip()
    assert _gutter(found.code.first_line, first_text).search(out)  # the first printed line, numbered as in the file
    assert _gutter(found.code.def_line, def_text).search(out)  # the class/def line
    if twin is None:
        assert "twin: reimpl" not in out and found.twin_note in out
    else:
        assert f"twin: {twin} (" in out
        twin_file = twin.split(".")[1]
        assert f"reimpl/{twin_file}.py:{found.twin.first_line}-{found.twin.last_line}" in out
        assert _gutter(found.twin.def_line, found.twin.text.splitlines()[found.twin.def_line - found.twin.first_line].strip()).search(out)


def test_the_twin_is_the_reimpl_source_and_focus_marks_the_corresponding_lines():
    found = source.find("BertSelfOutput")
    import reimpl.bert

    lines, first = inspect.getsourcelines(reimpl.bert.BertLayer.forward)
    assert found.twin.first_line == first and found.twin.text == "".join(lines).rstrip("\n")
    start, end = found.twin.highlight
    file_lines = found.twin.path.read_text().splitlines()
    assert file_lines[start - 1].strip().startswith("# BertSelfOutput")
    assert 'record(attention, "LayerNorm"' in file_lines[end - 1]


def test_marked_lines_are_printed_with_the_marker(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["source", "eager_attention_forward"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^❱ +\d+ +scores = torch\.matmul\(q, k\.transpose\(2, 3\)\) \* self\.scaling", out, re.MULTILINE)
    assert re.search(r"^  +\d+ +q = self\.query", out, re.MULTILINE)  # outside the focus: no marker


@pytest.mark.parametrize("key", sorted(source.TWINS), ids=lambda k: ".".join(k))
def test_every_twin_table_entry_resolves(key):
    """The mapping can't rot: every HF name in it exists, and every twin target and focus is in reimpl/."""
    module, qualname = key
    entry = source.TWINS[key]
    found = source.find(f"{module}.{qualname}")
    assert found.module == module
    for model, twin in (entry.items() if isinstance(entry, dict) else [(None, entry)]):
        if twin.target is None:
            continue
        module_name, attr = twin.target.split(":")
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        code = source.find(f"{module}.{qualname}", model=model).twin
        assert code is not None and code.qualname == f"{module_name}.{attr}"
        if twin.focus is not None:
            assert code.highlight is not None, f"focus {twin.focus[0]!r} not found in {twin.target}"
            first, last = code.highlight
            text = code.path.read_text().splitlines()
            assert twin.focus[0] in text[first - 1] and twin.focus[1] in text[last - 1]


def test_a_name_in_both_modeling_files_defaults_to_bert_and_names_the_other(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["source", "eager_attention_forward"]) == 0
    out = capsys.readouterr().out
    assert "modeling_bert.eager_attention_forward" in out
    assert "also defined: modeling_gpt2.eager_attention_forward (annotate source eager_attention_forward --model gpt2)" in out
    found = source.find("eager_attention_forward", model="gpt2")
    assert found.code.path.as_posix().endswith(MODELING_GPT2)
    assert found.also == ["modeling_bert.eager_attention_forward (annotate source eager_attention_forward --model bert)"]


def test_a_module_prefix_picks_the_file_without_model():
    assert source.find("modeling_gpt2.eager_attention_forward").code.path.as_posix().endswith(MODELING_GPT2)
    assert source.find("modeling_gpt2.eager_attention_forward").also == []


def test_inherited_methods_say_where_they_are_defined():
    found = source.find("DynamicCache.update")
    assert found.note == "DynamicCache.update is inherited: defined as Cache.update"
    assert found.code.text.lstrip().startswith("def update(")


def test_imports_are_not_names_of_the_importing_module():
    """modeling_gpt2 imports Conv1D; its source is pytorch_utils'."""
    assert "Conv1D" not in source.index()["modeling_gpt2"]
    with pytest.raises(UserError):
        source.find("modeling_gpt2.Conv1D")


def test_no_twin_option_prints_transformers_only(capsys):
    assert main(["source", "BertSelfAttention", "--no-twin"]) == 0
    out = capsys.readouterr().out
    assert "class BertSelfAttention(nn.Module):" in out and "twin:" not in out and "reimpl/" not in out


def test_names_without_a_twin_say_why(capsys):
    assert main(["source", "BertForQuestionAnswering"]) == 0
    assert "no twin: reimpl/ has the heads real checkpoints carry" in capsys.readouterr().out
    found = source.find("BertModel.get_input_embeddings")
    assert found.twin is None and found.twin_note == "no twin of BertModel.get_input_embeddings: reimpl's BertModel has no get_input_embeddings"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("BertSelfAtention", "BertSelfAttention"),
        ("bertselfattention", "BertSelfAttention"),
        ("GPT2Atention.forward", "GPT2Attention.forward"),
        ("eager_atention_forward", "eager_attention_forward"),
        ("conv1d", "Conv1D"),
        ("forward", "BertSelfAttention.forward"),
        ("feed_forward_chunk", "BertLayer.feed_forward_chunk"),
    ],
)
def test_unknown_names_exit_2_with_close_matches(name, suggestion, capsys):
    assert main(["source", name]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith(f"annotate: error: unknown name {name!r}")
    assert "did you mean:" in err and suggestion in err.split("did you mean: ")[1].split(", ")
    assert len(err.splitlines()) == 1


def test_unknown_attribute_lists_the_methods(capsys):
    assert main(["source", "BertSelfAttention.frward"]) == 2
    assert capsys.readouterr().err.strip() == (
        "annotate: error: BertSelfAttention has no attribute 'frward'; its methods: __init__, forward"
    )


def test_nothing_like_a_known_name(capsys):
    assert main(["source", "Zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "unknown name 'Zzzzzz'" in err and "try e.g. BertSelfAttention" in err


def test_the_paths_are_the_imported_modules_files():
    import transformers.models.bert.modeling_bert as modeling_bert

    found = source.find("BertSelfAttention")
    assert found.code.path == Path(inspect.getsourcefile(modeling_bert))
