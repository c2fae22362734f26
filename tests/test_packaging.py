"""annotate as a user installs it: a wheel built from the working tree, installed into a fresh
virtualenv and run from a folder outside the checkout (issue 23). The command runs; the guides,
in both languages, the exercises and the data sets are inside the package; the distribution is
``annotate-transformers`` (PyPI's ``annotate`` is another project), the command and the import
package ``annotate``. And, in the checkout: ``annotate guide list``, ``annotate notebook N``.

The fresh virtualenv gets no copies of torch and transformers: a .pth file puts this
environment's site-packages after its own (a .pth line adds a folder to sys.path; the .pth files
inside that folder, such as the editable install's, are not run), so ``import annotate`` finds
the wheel's copy, and the dependencies are the ones the rest of the suite runs with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from annotate import guides
from tests.conftest import MINILM, run, run_json

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("pyproject.toml", "README.md", "annotate", "reimpl", "guides")  # what a wheel is built from


def numbered(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.md") if p.name[:2].isdigit())


# ----------------------------------------------------------------------------- from a wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build a wheel from a copy of the working tree (not the checkout itself: setuptools would
    leave build/ there, and a stale build/lib could hide a file missing from the configuration),
    install it with no dependencies into a new virtualenv, and return the paths."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    source.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, source / name)
    here = ["--no-build-isolation"] if _importable("setuptools") else []  # build with this setuptools, else one from the index
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", *here, "--quiet", "-w", str(work / "dist"), str(source)])
    wheel = next((work / "dist").glob("*.whl"))
    venv = work / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _check([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet", str(wheel)])
    purelib = Path(_check([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "zz_dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    outside = work / "elsewhere"  # the commands' working directory: no annotate/ in it
    outside.mkdir()
    return {"wheel": wheel, "venv": venv, "python": python, "purelib": purelib, "cwd": outside}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _check(argv: list[str], cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def annotate(installed: dict, *args: str) -> str:
    """The installed ``annotate`` command, run outside the checkout."""
    return _check([str(installed["venv"] / "bin" / "annotate"), *args], cwd=installed["cwd"])


def test_the_wheel_holds_every_module_guide_exercise_and_data_file(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert installed["wheel"].name.startswith("annotate_transformers-")
    for package in ("annotate", "reimpl"):  # every module of the checkout, subpackages too (annotate/models)
        for path in (ROOT / package).rglob("*.py"):
            assert path.relative_to(ROOT).as_posix() in names, f"{path.relative_to(ROOT)} is not in the wheel"
    for folder, inside in ((ROOT / "guides", "annotate/_guides"), (ROOT / "guides" / "zh-CN", "annotate/_guides/zh-CN")):
        for name in [p.name for p in folder.glob("*.md")]:
            assert f"{inside}/{name}" in names, f"{folder.relative_to(ROOT)}/{name} is not in the wheel"
    for path in (ROOT / "annotate").rglob("*"):  # and every other file of the package: the explorers' scripts and styles, the data sets
        if path.is_file() and "__pycache__" not in path.parts:
            assert path.relative_to(ROOT).as_posix() in names, f"{path.relative_to(ROOT)} is not in the wheel (pyproject.toml's package-data)"
    assert {"annotate/explorer.js", "annotate/explorer.css"} <= names


def test_installed_metadata_name_command_and_import_package(installed):
    code = ("import annotate, importlib.metadata as m; "
            "print(annotate.__file__); print(m.version('annotate-transformers')); print(m.distribution('annotate-transformers').entry_points['annotate'].value)")
    where, version, entry = _check([str(installed["python"]), "-c", code], cwd=installed["cwd"]).splitlines()
    assert Path(where).is_relative_to(installed["purelib"])  # the wheel's copy, not the checkout's
    assert version == annotate_version()
    assert entry == "annotate.cli:main"


def annotate_version() -> str:
    import annotate as ours

    return ours.__version__


def test_installed_guide_list_has_both_languages(installed):
    listed = json.loads(annotate(installed, "guide", "list", "--json"))
    for lang, folder in (("en", ROOT / "guides"), ("zh-CN", ROOT / "guides" / "zh-CN")):
        mine = [g for g in listed if g["lang"] == lang]
        assert [Path(g["path"]).name for g in mine] == numbered(folder)
        assert [g["number"] for g in mine] == [int(name[:2]) for name in numbered(folder)]
        assert all(Path(g["path"]).is_relative_to(installed["purelib"]) and g["title"] for g in mine)
    assert next(g for g in listed if g["lang"] == "zh-CN" and g["number"] == 3)["title"] == "缩放点积注意力与多头注意力"
    table = annotate(installed, "guide", "list")
    assert "Scaled dot-product and multi-head attention" in table and "缩放点积注意力与多头注意力" in table


def test_installed_notebook_by_number_in_both_languages(installed):
    out = installed["cwd"] / "notebooks"
    assert annotate(installed, "notebook", "03", "-o", str(out)).strip() == str(out / "03-attention.ipynb")
    assert annotate(installed, "notebook", "3", "--lang", "zh-CN", "-o", str(out)).strip() == str(out / "03-attention.zh-CN.ipynb")
    for name, heading in (("03-attention.ipynb", "# 3. Scaled dot-product"), ("03-attention.zh-CN.ipynb", "# 3. 缩放点积注意力")):
        notebook = json.loads((out / name).read_text(encoding="utf-8"))
        assert notebook["nbformat"] == 4 and notebook["metadata"]["annotate"]["guide"] == "03-attention.md"
        assert any(heading in "".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown")
        assert sum(cell["cell_type"] == "code" for cell in notebook["cells"]) > 5
    assert annotate(installed, "exercise", "start", "1", str(installed["cwd"] / "exercises")).startswith("copied to")
    assert (installed["cwd"] / "exercises" / "01_attention.py").read_text().count("TODO") > 0


def test_installed_main_command(installed):
    """The README's first command, from the wheel: the packaged MiniLM traced with --diff, every stage bit-identical."""
    trace = json.loads(annotate(installed, "trace", MINILM, "The cat sat on the mat.", "--diff", "--json"))
    assert trace["model_class"] == "BertModel" and len(trace["stages"]) > 90
    assert {s["verdict"] for s in trace["stages"]} == {"equal"}


# ----------------------------------------------------------------------------- in the checkout


def test_guide_list_names_every_guide_with_its_title():
    code, listed = run_json("guide", "list")
    assert code == 0
    for lang, folder in (("en", ROOT / "guides"), ("zh-CN", ROOT / "guides" / "zh-CN")):
        assert [Path(g["path"]).name for g in listed if g["lang"] == lang] == numbered(folder)
    first = listed[0]
    assert (first["number"], first["lang"], first["title"]) == (1, "en", "The map")
    assert Path(first["path"]) == guides.folder() / "01-map.md"
    code, only = run_json("guide", "list", "--lang", "zh-CN")
    assert code == 0 and {g["lang"] for g in only} == {"zh-CN"}
    code, out, _ = run("guide", "list")
    lines = out.splitlines()
    assert lines[0] == "English (annotate notebook N):" and "简体中文 (annotate notebook N --lang zh-CN):" in lines
    zh = [line for line in lines if line.endswith(".md") and "/zh-CN/" in line]
    starts = {_columns(line[: line.index(str(guides.folder()))]) for line in zh}
    assert len(starts) == 1  # the files line up: a Chinese character is two columns


def _columns(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def test_notebook_by_number_all_and_path(tmp_path):
    code, out, _ = run("notebook", "3", "12", "-o", str(tmp_path))
    assert code == 0 and out.split() == [str(tmp_path / "03-attention.ipynb"), str(tmp_path / "12-family.ipynb")]
    code, out, _ = run("notebook", "all", "--lang", "zh-CN", "-o", str(tmp_path / "zh"))
    assert code == 0 and sorted(Path(line).name for line in out.split()) == [n.replace(".md", ".zh-CN.ipynb") for n in numbered(ROOT / "guides" / "zh-CN")]
    code, out, _ = run("notebook", str(ROOT / "guides" / "zh-CN" / "01-map.md"), "-o", str(tmp_path))  # a path, as before
    assert code == 0 and out.strip() == str(tmp_path / "01-map.zh-CN.ipynb")
    for argv, says in [
        (["notebook", "99"], "no guide '99' in English: they are 1, 2,"),
        (["notebook", str(ROOT / "guides" / "zh-CN" / "01-map.md"), "--lang", "en"], "--lang chooses the language of guides given by number"),
        (["notebook", str(ROOT / "guides" / "01-map.md"), "--lang", "zh-CN"], "--lang 只为按编号给出的指南选择语言"),  # asked in Chinese, said in Chinese
    ]:
        code, _, err = run(*argv, "-o", str(tmp_path))
        assert code == 2 and says in err, err
