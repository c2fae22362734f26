"""``annotate trace --diff`` holds one copy of the weights (annotate/shared_weights.py, issue 23):
transformers' model is built from the very tensors the twin was loaded from, the file's keys and
values, and only where they are still the file's bytes; the stages stay bit-identical.
bench/bench_memory.py measures it at gpt2-large and gpt2-xl sizes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from annotate import compare, shared_weights, tracer
from bench.bench_memory import peak_rss, write_checkpoint
from tests.conftest import MINILM, run_json


def pointers(model: torch.nn.Module) -> dict[str, int]:
    return {name: tensor.data_ptr() for name, tensor in model.state_dict().items()}


def verdicts(data: dict) -> set[str]:
    return {s["verdict"] for s in data["stages"]} | ({data["logits_verdict"]} if "logits_verdict" in data else set())


@pytest.mark.parametrize("which", ["minilm", "gpt2"])
def test_transformers_model_is_built_on_the_twins_tensors(which, gpt2_dir):
    folder, twin = tracer.load(MINILM if which == "minilm" else str(gpt2_dir))
    hf = compare.load_transformers(folder, twin, "eager", torch.float32)
    ours, theirs = pointers(twin), pointers(hf)
    assert {name: theirs.get(name) for name in ours} == ours  # every weight: the same memory
    assert hf.config._attn_implementation == "eager" and not hf.training
    if which == "gpt2":  # the hub's layout has no lm_head: transformers tied it itself, to the shared wte
        assert hf.lm_head.weight is hf.transformer.wte.weight
    sdpa = compare.load_transformers(folder, twin, "sdpa", torch.float32)
    assert sdpa.config._attn_implementation == "sdpa" and pointers(sdpa) == theirs
    wide = compare.load_transformers(folder, twin, "eager", torch.float64)  # the verdict's float64 run: its own copy
    assert all(p.dtype == torch.float64 for p in wide.parameters())
    assert all(torch.equal(wide.state_dict()[name].float(), twin.state_dict()[name]) for name in ours)


def test_a_weight_edited_in_place_is_not_shared(gpt2_dir):
    """A twin whose weight changed after loading (the page written is the process's own copy):
    transformers loads the folder itself, and the diff finds the edit."""
    folder, twin = tracer.load(str(gpt2_dir))
    with torch.no_grad():
        twin.transformer.h[1].mlp.c_fc.weight.view(-1)[0] += 1e-3
    assert shared_weights.state_dict_for(twin, folder, torch.float32) is None
    hf = compare.load_transformers(folder, twin, "eager", torch.float32)
    assert not set(pointers(hf).values()) & set(pointers(twin).values())
    stored = load_file(folder / "model.safetensors")["h.1.mlp.c_fc.weight"]
    assert torch.equal(hf.transformer.h[1].mlp.c_fc.weight, stored)


def test_a_bf16_checkpoint_gives_transformers_the_twins_converted_tensors(tmp_path, gpt2_dir):
    """The twin runs in fp32: each stored bf16 tensor is given to transformers as the twin's fp32
    tensor, checked bit for bit to be the stored one converted; a bf16 run converts its own copy."""
    folder = tmp_path / "gpt2-bf16"
    shutil.copytree(gpt2_dir, folder)
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(gpt2_dir / "model.safetensors").items()}, folder / "model.safetensors")
    _, twin = tracer.load(str(folder))
    assert next(twin.parameters()).dtype == torch.float32
    state = shared_weights.state_dict_for(twin, folder, torch.float32)
    assert state is not None and all(t.dtype == torch.float32 for t in state.values())
    hf = compare.load_transformers(folder, twin, "eager", torch.float32)
    ours, theirs = pointers(twin), pointers(hf)
    assert {name: theirs.get(name) for name in ours} == ours
    half = compare.load_transformers(folder, twin, "eager", torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert not set(pointers(half).values()) & set(ours.values())
    code, data = run_json("trace", str(folder), "The cat sat on the mat.", "--diff")
    assert code == 0 and verdicts(data) == {"equal"}


def test_converted_compares_bits_chunk_by_chunk():
    stored = torch.zeros(10, dtype=torch.bfloat16)
    assert shared_weights.converted(stored, stored.float())
    assert not shared_weights.converted(stored, -stored.float())  # -0.0 == 0.0, but not the same bits
    nan = torch.full((3,), float("nan"), dtype=torch.bfloat16)
    assert shared_weights.converted(nan, nan.float())
    long = torch.randn(1000, dtype=torch.bfloat16)
    mine = long.float()
    mine[-1] += 1
    assert shared_weights.converted(long, long.float(), chunk=64) and not shared_weights.converted(long, mine, chunk=64)


def test_a_bin_checkpoint_is_loaded_from_the_folder(tmp_path, gpt2_dir):
    """A .bin checkpoint is read into memory, not mapped: nothing proves its tensors are the file's
    bytes, so transformers reads the file itself (two copies, as before), and the diff is equal."""
    folder = tmp_path / "gpt2-bin"
    shutil.copytree(gpt2_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    _, twin = tracer.load(str(folder))
    assert shared_weights.state_dict_for(twin, folder, torch.float32) is None
    code, data = run_json("trace", str(folder), "The cat sat on the mat.", "--diff")
    assert code == 0 and verdicts(data) == {"equal"}


def test_sharded_checkpoint_is_shared(tmp_path, gpt2_dir):
    folder = tmp_path / "gpt2-sharded"
    shutil.copytree(gpt2_dir, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, folder / name)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: name for name, part in shards.items() for k in part}}))
    _, twin = tracer.load(str(folder))
    hf = compare.load_transformers(folder, twin, "eager", torch.float32)
    ours, theirs = pointers(twin), pointers(hf)
    assert {name: theirs.get(name) for name in ours} == ours


def test_diff_peak_memory_is_about_one_copy(tmp_path):
    """A 0.4 GB random GPT-2 (GPT-2's vocabulary, 4 layers 1024 wide): --diff's peak resident
    memory exceeds the twin's own trace by transformers' code and its model's bookkeeping, well
    under half the checkpoint (two copies of the weights would add all of it)."""
    size = write_checkpoint(tmp_path, n_embd=1024, n_layer=4, n_head=16)
    argv = [sys.executable, "-m", "annotate", "trace", str(tmp_path), "The cat sat on the mat.", "--json"]
    alone, code, _, _ = peak_rss(argv)
    assert code == 0
    both, code, out, _ = peak_rss([*argv, "--diff"])
    assert code == 0 and verdicts(json.loads(out)) == {"equal"}
    assert both - alone < 0.5 * size, f"--diff peaks {(both - alone) / 1e6:.0f} MB above the trace alone; the checkpoint is {size / 1e6:.0f} MB"
