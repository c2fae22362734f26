"""One copy of the weights for the twin and transformers' model under ``annotate trace --diff``.

The twin is loaded from the checkpoint's tensors as safetensors reads them: views of the file
mapped into memory (nothing is copied; a page is read when first used). transformers'
``from_pretrained`` of the same folder would map the file a second time, and the process would
hold every page twice (the issue measured gpt2-xl's --diff at 1.94x the checkpoint's size).
Instead ``annotate.tracer.load`` keeps the tensors the twin was loaded from (``keep``), and
``annotate.compare.load_transformers`` gives transformers those very tensors as its
``state_dict`` (``state_dict_for``): the file's own keys and values, which transformers
matches, renames and ties by its own rules, as it does loading the folder. Both models'
parameters are then views of one mapping.

Two checks keep that identical to what loading the folder gives:

- the tensors are still the file's bytes (``as_stored``): each lies in a mapping of its file at
  its own offset, and no page of those mappings has been written (a write to a mapped page makes
  a private copy of it, which /proc/self/smaps counts as ``Anonymous``). Otherwise (a twin's
  weight edited in place, a ``.bin`` checkpoint, which is read into memory, not mapped, or a
  system without /proc) transformers loads the folder itself, as before: two copies.
- a tensor stored in another dtype than the run's (a bf16 checkpoint, the fp32 run) is given as
  the twin's converted tensor only where that is bit for bit the stored one converted
  (``converted``); else transformers converts a copy of its own.

transformers writes into none of the tensors it is given: 4.57 initializes missing weights
before it loads (its own fresh tensors), 5.x initializes only what was not loaded
(``_is_hf_initialized``), and tying assigns one parameter to two names. A run in another dtype
(``--dtype bf16``, the float64 verdict) converts a copy, as it would from the folder: the twin
(fp32) and transformers' bf16 model are then two copies, one of half the size.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from pathlib import Path

import torch

# The checkpoint's tensors as read for a twin, by twin. Weak: they go when the twin goes (and a
# deepcopy of the twin, the verdict's float64 copy, takes none).
_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def keep(twin, state: Mapping[str, torch.Tensor]) -> None:
    """``state``: the tensors ``twin`` was loaded from (``reimpl.loading.read_state_dict`` of its folder)."""
    _KEPT[twin] = state


def forget(twin) -> None:
    """Let the tensors kept for ``twin`` go (those it does not hold itself: a bf16 checkpoint's,
    converted for an fp32 twin, or tensors it does not use)."""
    _KEPT.pop(twin, None)


def state_dict_for(twin, folder: Path, dtype: torch.dtype) -> dict[str, torch.Tensor] | None:
    """The ``state_dict`` to give transformers' ``from_pretrained`` for ``twin``'s checkpoint in
    ``dtype``: the kept tensors (a new dict: transformers 4.57 empties the one it is given), those
    stored in another dtype replaced by the twin's own where it is exactly them converted. None
    where none were kept or they are no longer the file's bytes: load the folder."""
    kept = _KEPT.get(twin)
    if kept is None or not as_stored(kept, Path(folder)):
        return None
    state = dict(kept)
    if all(tensor.dtype == dtype for tensor in state.values()):
        return state  # a checkpoint in the run's dtype: the twin's parameters are these tensors already
    from reimpl import loading, registry

    arch = registry.architecture_of(twin)
    # the twin's name of each stored tensor, by the twin loader's rules (reimpl/registry.py, loading.match_prefix)
    names = loading.match_prefix({name: key for key in state if (name := arch.checkpoint_key(key)) is not None}, twin)
    ours = twin.state_dict()
    for name, key in names.items():
        stored, mine = state[key], ours.get(name)
        if mine is not None and mine.dtype == dtype != stored.dtype and mine.shape == stored.shape and converted(stored, mine):
            state[key] = mine
    return state


def converted(stored: torch.Tensor, mine: torch.Tensor, chunk: int = 1 << 22) -> bool:
    """Whether ``mine`` is ``stored`` converted to its dtype, bit for bit (a chunk at a time: no
    whole copy is made; compared as integers, so that -0.0 is not 0.0 and a NaN is itself)."""
    bits = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[mine.element_size()]
    a, b = stored.reshape(-1), mine.reshape(-1)
    return all(torch.equal(a[i : i + chunk].to(b.dtype).view(bits), b[i : i + chunk].view(bits)) for i in range(0, a.numel(), chunk))


def safetensors_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files, as ``reimpl.loading.read_state_dict`` reads them (the
    shards an index names, or model.safetensors); [] for a ``.bin`` checkpoint."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / shard for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []


def as_stored(state: Mapping[str, torch.Tensor], folder: Path) -> bool:
    """Whether ``state`` is exactly the tensors of ``folder``'s safetensors files, each still the
    file's bytes in place: its memory lies in a mapping of its file, at its own offset in the file,
    and no page of the file's mappings has been written (module docstring)."""
    files = safetensors_files(folder)
    if not files:
        return False
    try:
        mappings = _mappings({str(file.resolve()) for file in files})
    except OSError:  # no /proc/self/smaps (not Linux)
        return False
    seen = set()
    for file in files:
        regions = mappings.get(str(file.resolve()), [])
        if not regions or any(region["anonymous"] for region in regions):
            return False
        with open(file, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            tensor = state.get(key)
            begin, end = entry["data_offsets"]
            if tensor is None or tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.numel() * tensor.element_size() != end - begin:
                return False
            seen.add(key)
            if end == begin:
                continue
            at, pointer = 8 + size + begin, tensor.data_ptr()  # the tensor's offset in the file, and where it is in memory
            if not any(r["start"] <= pointer and pointer + (end - begin) <= r["end"] and pointer - r["start"] + r["offset"] == at for r in regions):
                return False
    return seen == set(state)


def _mappings(paths: set[str]) -> dict[str, list[dict[str, int]]]:
    """This process's memory mappings of the files ``paths``: per file, each mapping's start and
    end address, the file offset it starts at, and its written (copy-on-write) kB."""
    out: dict[str, list[dict[str, int]]] = {}
    current = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and fields[0][0] in "0123456789abcdef" and ":" in fields[3]:
                path = line.split(None, 5)[5].strip() if len(fields) >= 6 else ""
                current = None
                if path in paths:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    current = {"start": start, "end": end, "offset": int(fields[2], 16), "anonymous": 0}
                    out.setdefault(path, []).append(current)
            elif current is not None and fields and fields[0] == "Anonymous:":
                current["anonymous"] = int(fields[1])
    return out
