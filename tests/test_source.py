"""`annotate source`: names resolve to the installed transformers' real file and lines, with the twin beside them.

The command reads files and never imports transformers, torch or reimpl; these tests do import
them, to check what it reads against what Python runs (``inspect.getsourcelines``, ``recording()``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from annotate import models, source, stages
from annotate.cli import main
from annotate.errors import UserError
from reimpl import versions

# Names and lines that only transformers 5 has (eager_attention_forward in modeling_bert, the
# masking_utils builders, 5.x's decorators and line texts): on 4.57 these cases do not apply.
# The 4.x names (transpose_for_scores, BertSdpaSelfAttention, ...) are tested in test_versions.py;
# everything else here runs on both versions.
ONLY_5X = pytest.mark.skipif(versions.V4, reason="a transformers 5 name or line, absent from 4.57")


def five_only(*values, when=True):
    if when:
        return pytest.param(*values, marks=ONLY_5X)
    return values[0] if len(values) == 1 else values

ROOT = Path(__file__).resolve().parent.parent

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
    five_only("eager_attention_forward", [], MODELING_BERT, "def eager_attention_forward(", "reimpl.bert.BertSelfAttention.forward"),
    ("eager_attention_forward", ["--model", "gpt2"], MODELING_GPT2, "def eager_attention_forward(", "reimpl.gpt2.GPT2Attention.forward"),
    ("modeling_gpt2.GPT2Attention", [], MODELING_GPT2, "class GPT2Attention(nn.Module):", "reimpl.gpt2.GPT2Attention"),
    ("transformers.models.gpt2.modeling_gpt2.GPT2Block.forward", [], MODELING_GPT2, "def forward(", "reimpl.gpt2.GPT2Block.forward"),
    ("GPT2LMHeadModel", [], MODELING_GPT2, "class GPT2LMHeadModel(", "reimpl.gpt2.GPT2LMHeadModel"),
    ("Conv1D", [], "transformers/pytorch_utils.py", "class Conv1D(nn.Module):", "reimpl.gpt2.Conv1D"),
    ("eager_mask", [], "transformers/masking_utils.py", "def eager_mask(", "reimpl.bert.additive_mask"),
    ("eager_mask", ["--model", "gpt2"], "transformers/masking_utils.py", "def eager_mask(", "reimpl.gpt2.causal_mask"),
    ("create_causal_mask", [], "transformers/masking_utils.py", "def create_causal_mask(", "reimpl.gpt2.causal_mask"),
    five_only("create_bidirectional_mask", [], "transformers/masking_utils.py", "def create_bidirectional_mask(", "reimpl.bert.additive_mask"),
    ("DynamicLayer.update", [], "transformers/cache_utils.py", "def update(", "reimpl.cache.KVCache.update"),
    ("DynamicCache", [], "transformers/cache_utils.py", "class DynamicCache(Cache):", "reimpl.cache.KVCache"),
    ("NewGELUActivation", [], "transformers/activations.py", "class NewGELUActivation(nn.Module):", "reimpl.activations.gelu_new"),
    ("GELUActivation", [], "transformers/activations.py", "class GELUActivation(nn.Module):", "reimpl.activations.ACT2FN"),
    ("ALL_ATTENTION_FUNCTIONS", [], "transformers/modeling_utils.py", "class AttentionInterface(GeneralInterface):", None),
    ("sdpa_attention_forward", [], "transformers/integrations/sdpa_attention.py", "def sdpa_attention_forward(", None),
]


def _gutter(number: int, text: str) -> re.Pattern:
    """A printed code line: rich's gutter (an optional ❱ and the line number), then the text."""
    return re.compile(rf"^[ ❱]*{number} +{re.escape(text)}", re.MULTILINE)


@pytest.mark.parametrize(("name", "args", "file", "def_text", "twin"), KNOWN, ids=[" ".join([k.values[0] if hasattr(k, "values") else k[0], *(k.values[1] if hasattr(k, "values") else k[1])]) for k in KNOWN])
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


@pytest.mark.parametrize(("name", "args", "file", "def_text", "twin"), KNOWN, ids=[" ".join([k.values[0] if hasattr(k, "values") else k[0], *(k.values[1] if hasattr(k, "values") else k[1])]) for k in KNOWN])
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


@ONLY_5X
def test_marked_lines_are_printed_with_the_marker(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["source", "eager_attention_forward"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^❱ +\d+ +scores = torch\.matmul\(q, k\.transpose\(2, 3\)\)", out, re.MULTILINE)
    assert re.search(r"^  +\d+ +q = self\.query", out, re.MULTILINE)  # outside the focus: no marker


FIVE_ONLY_TWINS = {("masking_utils", "bidirectional_mask_function"), ("masking_utils", "create_bidirectional_mask"),
                   ("masking_utils", "sdpa_mask"), ("modeling_bert", "BertCrossAttention"),
                   ("modeling_bert", "BertModel._create_attention_masks"), ("modeling_bert", "eager_attention_forward")}


def _twin_entries():
    """(model_type or None for the shared table, (module, qualname)) for every entry of every twin table."""
    entries = [(t, key) for t in source.order() for key in models.get(t).twins]
    return entries + [(None, key) for key in source.SHARED_TWINS]


@pytest.mark.parametrize("model, key", [five_only(*e, when=e[1] in FIVE_ONLY_TWINS) for e in _twin_entries()],
                         ids=lambda e: f"{e}" if isinstance(e, str) or e is None else ".".join(e))
def test_every_twin_table_entry_resolves(model, key):
    """The mapping can't rot: every HF name in it exists, and every twin target and focus is in reimpl/."""
    module, qualname = key
    entry = (models.get(model).twins if model else source.SHARED_TWINS)[key]
    found = source.find(f"{module}.{qualname}")
    assert found.module == module
    for model, twin in [(model, entry)]:
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


@ONLY_5X
def test_a_name_in_both_modeling_files_defaults_to_bert_and_names_the_other(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["source", "eager_attention_forward"]) == 0
    out = capsys.readouterr().out
    assert "modeling_bert.eager_attention_forward" in out
    assert "also defined: modeling_gpt2.eager_attention_forward (annotate source eager_attention_forward --model gpt2)" in out
    found = source.find("eager_attention_forward", model="gpt2")
    assert found.code.path.as_posix().endswith(MODELING_GPT2)
    # Every architecture's modeling file defines one; each is named with how to ask for it.
    assert "modeling_bert.eager_attention_forward (annotate source eager_attention_forward --model bert)" in found.also
    assert not any(a.startswith("modeling_gpt2.") for a in found.also)


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


# ---------------------------------------------------------------------------------------------
# Read, not imported: the same lines as inspect gives for the imported object.


def _imported(module: str, qualname: str):
    """The object Python has for ``module``'s ``qualname``, unwrapped as inspect.getsourcelines would see it."""
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, property):
        obj = obj.fget
    if type(obj).__name__ == "Func" and callable(getattr(type(obj), "forward", None)):
        # transformers 5 with the kernels package: use_kernel_forward_from_hub puts a module in a
        # function's place, which calls the function it closes over
        obj = next(c.cell_contents for c in type(obj).forward.__closure__ or () if inspect.isfunction(c.cell_contents))
    return inspect.unwrap(obj)


@pytest.mark.parametrize("short", sorted(source.KNOWN_MODULES))
def test_every_listed_name_has_the_lines_inspect_gives(short):
    """Every class, function and method of every known file (decorated ones too: the listing starts at the
    first decorator, as inspect's does), read with ast, is the text and line numbers of the imported object."""
    module = source.KNOWN_MODULES[short]
    entries = source.index()[short]
    names = [n for n in entries if (short, n) not in source.VALUES and (short, n) not in source.INSTANCES]
    names += [f"{n}.{m}" for n in list(names) if isinstance(entries[n].node, ast.ClassDef) and short != "modeling_utils"
              for m in source.methods_of(entries[n].node)]
    checked, wrong = 0, []
    for name in names:
        obj = _imported(module, name)
        if getattr(obj, "__module__", module) != module and "." not in name:
            continue  # functools.wraps(lru_cache) gives it functools' name: inspect can't find its source
        try:
            lines, first = inspect.getsourcelines(obj)
        except (OSError, TypeError):
            continue  # generated (a dataclass's __eq__): nothing to compare
        if Path(inspect.getsourcefile(obj)).resolve() != source.module_file(module).resolve():
            continue  # a class decorator put a function of another file in its place (5.x's use_kernelized_func wraps __init__)
        code = source.find(f"{short}.{name}").code
        checked += 1
        if (code.first_line, code.text) != (first, "".join(lines).rstrip("\n")):
            wrong.append(f"{name}: ours {code.first_line}-{code.last_line}, inspect's {first}-{first + len(lines) - 1}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 0.9 * len(names)  # all but generated methods and wraps()-renamed functions


@pytest.mark.parametrize(
    ("name", "first_text"),
    [
        five_only("BertModel.forward", "@merge_with_config_defaults"),  # four decorators above the def
        ("GPT2Model", "@auto_docstring"),
        ("BertPreTrainedModel", "@auto_docstring"),
        ("BertSelfAttention.forward", "@deprecate_kwarg("),
    ],
)
def test_decorated_definitions_start_at_their_first_decorator(name, first_text):
    found = source.find(name)
    assert found.code.text.splitlines()[0].strip().startswith(first_text)
    obj = _imported(found.code.qualname.rsplit("." + name, 1)[0], name)
    assert inspect.getsourcelines(obj)[1] == found.code.first_line


def test_the_records_read_from_the_twin_files_are_the_registry_records():
    """annotate.source reads each ARCHITECTURE = Architecture(...) with ast; the registry imports them."""
    from reimpl.registry import ARCHITECTURES

    read = source.records()
    for model_type, arch in ARCHITECTURES.items():
        record = read[model_type]
        assert (record.hf_file, record.hf_module, record.base, record.heads, record.default, record.layers, record.attention) == (
            arch.hf_file, arch.hf_module, arch.base.__name__, tuple(h.__name__ for h in arch.heads),
            arch.default.__name__, arch.layers, arch.attention,
        )
        assert record.twin_module == arch.base.__module__  # the file that holds the record, and the base twin
    assert set(ARCHITECTURES) <= set(read)
    assert source.MODEL_FILES["bert"] == "modeling_bert" and source.TWIN_MODULES["modeling_gpt2"] == "reimpl.gpt2"


def test_the_version_is_the_installed_one():
    import importlib.metadata

    import transformers

    assert source.transformers_version() == transformers.__version__ == importlib.metadata.version("transformers")


def _run_isolated(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


NO_HEAVY_IMPORTS = """
import contextlib, io, sys
from annotate.cli import build_parser
from annotate.errors import UserError
for argv in {argvs!r}:
    args = build_parser().parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            args.run(args)
        except UserError:
            pass
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"transformers", "torch", "reimpl", "numpy"}})
print("imported:", heavy)
"""


def test_the_source_command_imports_neither_transformers_nor_torch():
    """A class, a method, a stage of each kind, a family's stage, and an unknown name (suggestions): all read files."""
    argvs = [
        ["source", "BertSelfAttention"],
        ["source", "DynamicCache.update"],
        ["source", "encoder.layer.0.attention.self.probs"],
        ["source", "transformer.h.3.mlp.act"],
        ["source", "roberta.encoder.layer.1.output.LayerNorm", "--model", "roberta"],
        ["source", "lm_head"],
        ["source", "BertSelfAtention"],
        ["source", "encoder.layer.0.attention.self.prob"],
    ]
    assert _run_isolated(NO_HEAVY_IMPORTS.format(argvs=argvs)).strip() == "imported: []"


def test_the_console_command_imports_neither_transformers_nor_torch():
    code = ("import sys, contextlib, io\nfrom annotate.cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['source', 'BertSelfAttention'])\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'torch'}))")
    assert _run_isolated(code).strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Width: piped output keeps code lines whole.


def test_piped_output_keeps_long_code_lines_whole(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["source", "GPT2Attention.forward"]) == 0
    out = capsys.readouterr().out
    code = source.find("GPT2Attention.forward").code
    longest = max(code.text.splitlines(), key=len)
    assert len(longest) > 100
    assert _gutter(code.first_line + code.text.splitlines().index(longest), longest.strip()).search(out)
    assert max(len(line) for line in out.splitlines()) <= source.MAX_WIDTH


def test_piped_width_is_the_longest_line_capped(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert source.console_for([("x = 1", 10)]).width == 80  # never narrower than rich's default
    assert source.console_for([("y" * 120, 1234)]).width == 120 + 4 + 4  # the line, the gutter (marker, number)
    assert source.console_for([("z" * 400, 10)]).width == source.MAX_WIDTH
    monkeypatch.setenv("COLUMNS", "100")
    assert source.console_for([("z" * 400, 10)]).width == 100  # asked for


# ---------------------------------------------------------------------------------------------
# Stages: every name the twins record goes to the lines that compute it.


def _tiny_bert():
    from reimpl.bert import BertConfig

    return BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                      max_position_embeddings=16, num_labels=3)


def _tiny_gpt2():
    from reimpl.gpt2 import GPT2Config

    return GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4, num_labels=3)


def _recorded(model, **inputs) -> list[str]:
    import torch

    from reimpl.states import recording

    with torch.no_grad(), recording() as states:
        model(torch.tensor([[1, 5, 7, 9, 2]]), **inputs)
    return list(states)


def _twin_models():
    """(model_type, twin class name, recorded stage names) for every architecture's twins: the
    base model and every head (GPT-2 with token types, so that its token_type_embeds are recorded too)."""
    import torch

    from reimpl.registry import ARCHITECTURES

    types = torch.tensor([[0, 0, 0, 1, 1]])
    out = []
    for model_type, arch in ARCHITECTURES.items():
        config = _tiny_gpt2() if model_type == "gpt2" else _tiny(arch)
        for cls in arch.classes:
            inputs = {"token_type_ids": types} if arch.token_types or model_type == "gpt2" else {}
            if arch.encoder:  # an encoder-decoder: a target too (BART's classifier reads the source's last </s>: id 2)
                inputs = {"decoder_input_ids": torch.tensor([[1, 4, 6, 8, 3]])}
            out.append((model_type, cls.__name__, _recorded(cls(config).eval(), **inputs)))
    return out


@pytest.fixture(scope="module")
def twin_stages():
    return _twin_models()


def test_the_twins_record_what_the_static_walk_finds(twin_stages):
    """The module tree followed through the twin files gives every recorded name, and nothing they never record."""
    for model_type, cls, names in twin_stages:
        assert names and all(stages.matching(model_type, name) for name in names), (cls, [n for n in names if not stages.matching(model_type, n)])
        patterns = {r.pattern for r in stages.recorded(model_type) if r.root == cls}
        seen = {r.pattern for name in names for r in stages.matching(model_type, name) if r.root == cls}
        assert seen <= patterns
    by_class = {cls: names for _, cls, names in twin_stages}
    for name in ("cls.predictions.decoder", "cls.seq_relationship", "bert.encoder.layer.1.output.residual", "bert.pooler.activation"):
        assert name in by_class["BertForPreTraining"]
    assert "classifier" in by_class["BertForSequenceClassification"] and "lm_head" in by_class["GPT2LMHeadModel"]
    assert "transformer.token_type_embeds" in by_class["GPT2LMHeadModel"] and "score" in by_class["GPT2ForSequenceClassification"]


def _steps(model_type: str) -> dict:
    return models.get(model_type).steps(source.transformers_version())


def _check_explanation(e: stages.Explanation, name: str) -> None:
    # transformers: each part's anchors are in the installed file at the printed lines, inside that
    # function as Python has it (the file read fresh, the function imported).
    entry = _steps(e.model_type)[e.step]
    assert e.formula == entry.formula and len(e.hf) == len(entry.hf), (name, e.note)
    module = source.records()[e.model_type].hf_module
    for snippet, (function, anchors) in zip(e.hf, entry.hf):
        obj = _imported(module, function)
        lines, first = inspect.getsourcelines(obj)
        assert snippet.path == Path(inspect.getsourcefile(obj))
        assert first <= snippet.first_line <= snippet.last_line < first + len(lines), (name, function)
        text = snippet.path.read_text().splitlines()
        assert snippet.text == "\n".join(text[n - 1] for n in snippet.lines)
        at = 0
        for anchor in anchors:  # in order
            at = next((n for n in snippet.lines if n > at and anchor in text[n - 1]), None)
            assert at is not None, f"{name}: {function} has no line with {anchor!r} among {snippet.lines}"
    # The twin: reimpl's file, the lines as printed, the last of them the record call that makes this name.
    twin = e.twin
    assert twin is not None and twin.path.parent.name == "reimpl", name
    text = twin.path.read_text().splitlines()
    assert twin.text == "\n".join(text[n - 1] for n in twin.lines)
    call = ast.parse(text[twin.last_line - 1].strip()).body[0].value
    assert isinstance(call, ast.Call) and call.func.id == "record", (name, text[twin.last_line - 1])
    step = stages._step_parts(call.args[1])
    assert all(p == q or (q == "*" and p.isdigit()) for p, q in zip(name.split(".")[-len(step):], step)), (name, step)


def test_every_recorded_stage_maps_to_lines_of_both(twin_stages):
    """Every stage of every twin class (base models and every head, every architecture) has a
    formula, transformers' true lines in the installed release, and the twin's: never unknown."""
    checked = set()
    for model_type, cls, names in twin_stages:
        for name in names:
            _check_explanation(stages.explain(model_type, name, cls), name)
            checked.add((model_type, stages.step_of(model_type, name)))
    # every step of every architecture's file but last_hidden_state (not recorded: the tracer adds it)
    assert checked == {(t, step) for t in source.records() for step in _steps(t) if step != "last_hidden_state"}


def test_every_table_step_is_a_recorded_step():
    for model_type in source.records():
        steps = {stages.step_of(model_type, ".".join("0" if p == "*" else p for p in r.pattern)) for r in stages.recorded(model_type)}
        assert set(_steps(model_type)) - {"last_hidden_state"} == steps, model_type


def test_the_head_that_ran_picks_its_record_call():
    nsp = stages.explain("bert", "cls.seq_relationship", "BertForNextSentencePrediction")
    pre = stages.explain("bert", "cls.seq_relationship", "BertForPreTraining")
    assert nsp.twin.qualname == "reimpl.bert.BertForNextSentencePrediction.forward"
    assert pre.twin.qualname == "reimpl.bert.BertForPreTraining.forward"
    assert [s.qualname.rsplit(".", 2)[-2] for s in nsp.hf] == ["BertPreTrainingHeads", "BertOnlyNSPHead"]


def test_last_hidden_state_is_what_the_base_model_returns():
    for model_type in source.records():
        e = stages.explain(model_type, "last_hidden_state")
        assert e.hf and e.twin.text.strip().startswith(("return BaseModelOutput(", "return Seq2SeqModelOutput("))


@ONLY_5X
def test_explain_gives_the_fields_the_tracer_shows():
    e = stages.explain("bert", "encoder.layer.0.attention.self.probs")
    assert e.formula == "P = softmax(S + M)" and e.step == "attention.self.probs"
    assert e.hf_path.as_posix().endswith(MODELING_BERT) and "softmax" in e.hf_text and len(e.hf_lines) == 2
    assert e.twin_path.as_posix().endswith("reimpl/bert.py") and 'record(self, "probs", probs)' in e.twin_text
    assert "torch.softmax(scores" in e.twin_text and "additive_mask" in e.twin_text  # the mask is part of it
    assert stages.explain("bert", "encoder.layer.0.attention.self.probs") is e  # cached: one parse, one lookup
    lines = ",".join(str(n) for n in e.hf_lines)
    assert e.hf_location == f"transformers/models/bert/modeling_bert.py:{lines} eager_attention_forward"
    assert e.twin_location == f"reimpl/bert.py:{e.twin.first_line}-{e.twin.last_line} BertSelfAttention.forward"
    gpt2 = stages.explain("gpt2", "transformer.h.3.attn.query")
    assert "self.c_attn(hidden_states)" in gpt2.twin_text and "qkv.split" in gpt2.twin_text  # what q is made of
    assert "B, T, C = hidden_states.shape" not in gpt2.twin_text  # shapes are not the math


@pytest.mark.parametrize(
    ("name", "model", "hf_text", "twin_text"),
    [
        five_only("encoder.layer.0.attention.self.probs", None, "nn.functional.softmax(attn_weights, dim=-1)", "torch.softmax(scores, dim=-1)"),
        ("transformer.h.3.mlp.act", None, "hidden_states = self.act(hidden_states)", "activated = self.act(up)"),
        ("embeddings.LayerNorm", None, "embeddings = self.LayerNorm(embeddings)", "embeddings = self.LayerNorm(embeddings)"),
        ("pooler.activation", None, "pooled_output = self.activation(pooled_output)", "pooled = torch.tanh(pooled)"),
        ("bert.encoder.layer.0.output.residual", None, "self.LayerNorm(hidden_states + input_tensor)", "residual = down + hidden_states"),
        ("cls.predictions.decoder", None, "hidden_states = self.decoder(hidden_states)", "logits = self.decoder(hidden_states)"),
        five_only("lm_head", None, "logits = self.lm_head(hidden_states)", "logits = self.lm_head(hidden_states"),
        five_only("transformer.h.1", "gpt2", "hidden_states = block(", "hidden_states = block(hidden_states, mask, cache)"),
        ("roberta.encoder.layer.1.attention.output.LayerNorm", "roberta", "self.LayerNorm(hidden_states + input_tensor)",
         "hidden_states = attention.LayerNorm(residual)"),
    ],
)
def test_cli_prints_a_stage_with_both_sides_numbered(name, model, hf_text, twin_text, capsys):
    assert main(["source", name, *(["--model", model] if model else [])]) == 0
    out = capsys.readouterr().out
    found = source.find(name, model)
    e = found.explanation
    assert out.startswith(f"stage {name} ({e.model_type}") and e.formula in out
    hf_line = next(n for s in e.hf for n in s.lines if hf_text in s.path.read_text().splitlines()[n - 1])
    assert re.search(rf"^❱ +{hf_line} +.*{re.escape(hf_text)}", out, re.MULTILINE)
    twin_line = next(n for n in e.twin.lines if twin_text in e.twin.path.read_text().splitlines()[n - 1])
    assert re.search(rf"^❱ +{twin_line} +.*{re.escape(twin_text)}", out, re.MULTILINE)
    assert f"{source.display_path(e.twin.path)}:{e.twin.first_line}-{e.twin.last_line}" in out


@ONLY_5X
def test_no_twin_prints_a_stage_without_the_twin(capsys):
    assert main(["source", "transformer.h.0.attn.scores", "--no-twin"]) == 0
    out = capsys.readouterr().out
    assert "attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling" in out and "twin:" not in out


def test_a_stage_of_the_wrong_architecture_says_whose_it_is(capsys):
    assert main(["source", "transformer.h.3.mlp.act", "--model", "bert"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("annotate: error: 'transformer.h.3.mlp.act' is not a stage of bert; it is a stage name of gpt2 "
                   "(annotate source transformer.h.3.mlp.act --model gpt2)")
    assert main(["source", "transformer.h.3.mlp.actt", "--model", "bert"]) == 2
    err = capsys.readouterr().err.strip()
    assert "did you mean: transformer.h.3.mlp.act," in err and err.endswith("those are stage names of gpt2, not of bert (--model gpt2)")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("encoder.layer.3.attention.self.prob", "encoder.layer.3.attention.self.probs"),  # its layer number kept
        ("transformer.h.0.mlp.acts", "transformer.h.0.mlp.act"),
        ("lm_haed", "lm_head"),
        ("attention.self.probs", "encoder.layer.0.attention.self.probs"),  # a step: the stages that end with it
        ("probs", "h.0.attn.probs"),
    ],
)
def test_unknown_stage_names_suggest_close_ones(name, suggestion, capsys):
    assert main(["source", name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"annotate: error: unknown name {name!r}") and len(err.splitlines()) == 1
    assert suggestion in err.split("did you mean: ")[1].split(", ")


def test_a_name_several_twins_record_is_bert_s_and_names_the_others():
    found = source.find("embeddings.LayerNorm")
    assert found.explanation.model_type == "bert" and "roberta" in found.also and "distilbert" in found.also
    assert source.find("embeddings.LayerNorm", model="distilbert").explanation.twin.qualname == "reimpl.distilbert.Embeddings.forward"


# ---------------------------------------------------------------------------------------------
# Families: BERT's entries where transformers' file has the same lines; unknown, and said so, elsewhere.


@ONLY_5X
def test_a_family_reuses_bert_s_entries_where_its_file_has_the_same_lines():
    e = stages.explain("roberta", "roberta.encoder.layer.0.attention.self.probs")
    assert e.formula == models.get("bert").module.STEPS["attention.self.probs"].formula
    assert e.hf_path.as_posix().endswith("transformers/models/roberta/modeling_roberta.py")
    text = e.hf_path.read_text().splitlines()
    assert "nn.functional.softmax(attn_weights, dim=-1)" in text[e.hf_lines[-1] - 1]
    assert e.hf_note == ""
    layer_norm = stages.explain("roberta", "encoder.layer.1.output.LayerNorm")
    assert layer_norm.hf[0].qualname.endswith("modeling_roberta.RobertaOutput.forward")
    assert e.twin.qualname == "reimpl.bert.BertSelfAttention.forward"  # RobertaSelfAttention(BertSelfAttention): pass


def test_a_step_the_file_lacks_has_the_twin_side_and_an_unknown_transformers_side(monkeypatch):
    """Where annotate/models/ has no step for a stage, transformers' side is unknown and the note
    says where it is missing, never guessed (tests above keep every real stage known)."""
    steps = dict(models.get("roberta").module.STEPS)
    del steps["lm_head.dense"]
    monkeypatch.setattr(models.get("roberta").module, "STEPS", steps)
    stages.hf_side.cache_clear()
    stages.explain.cache_clear()
    try:
        e = stages.explain("roberta", "lm_head.dense")
        assert e.hf == () and e.formula is None and e.hf_note == "annotate/models/roberta.py has no step 'lm_head.dense'"
        assert e.hf_location.startswith("unknown (annotate/models/roberta.py has no step")
        assert e.twin.qualname == "reimpl.roberta.RobertaLMHead.forward" and 'record(self, "dense"' in e.twin.text
    finally:
        stages.hf_side.cache_clear()
        stages.explain.cache_clear()


def _tiny(arch):
    """A tiny config for any architecture, from one dict holding every family's field names."""
    fields = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=37,
                  max_position_embeddings=20, type_vocab_size=2, embedding_size=16, num_hidden_groups=1,
                  dim=32, n_heads=4, hidden_dim=37, n_layers=2, n_embd=32, n_layer=2, n_head=4, n_positions=20,
                  pad_token_id=1, num_labels=3, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, eos_token_id=2, decoder_start_token_id=1)
    return arch.config.from_dict(fields)


@pytest.mark.parametrize("model_type", sorted(source.records()))
def test_every_architecture_s_recorded_names_have_a_twin_side(model_type):
    """For every twin file (the families too, as they are added), each name a forward records is found
    by the static walk, and its lines end with the record call; transformers' side, where given, is
    at lines of the installed file, and where not given, the note says why."""
    import torch

    from reimpl.registry import ARCHITECTURES

    if model_type not in ARCHITECTURES:
        pytest.skip(f"{model_type} is not registered in reimpl/registry.py yet")
    arch = ARCHITECTURES[model_type]
    for cls in arch.classes:
        inputs = {"token_type_ids": torch.zeros(1, 5, dtype=torch.long)} if arch.token_types else {}
        try:
            names = _recorded(cls(_tiny(arch)).eval(), **inputs)
        except Exception as e:  # the twin's own business (its config fields, a file being written): not this test's
            pytest.skip(f"{cls.__name__} can't be built and run from the tiny config here: {type(e).__name__}: {e}")
        assert names, (model_type, cls.__name__)
        for name in names:
            e = stages.explain(model_type, name, cls.__name__)
            assert e.twin is not None, (model_type, name, e.twin_note)
            assert "record(" in e.twin.text.splitlines()[-1], (model_type, name)
            text = e.hf_path.read_text().splitlines() if e.hf else []
            assert all(text[n - 1].strip() for n in e.hf_lines)
            assert e.hf or e.hf_note, (model_type, name)
