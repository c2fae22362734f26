"""Peak memory of ``annotate trace --diff`` at real sizes: the twin and transformers' model share one
copy of the weights (annotate/compare.py, ``load_transformers``), so the comparison fits wherever
the model fits once.

For each size, a GPT-2 checkpoint with random weights (gpt2-large: 774M parameters, 3.1 GB in fp32;
gpt2-xl: 1.56B, 6.2 GB) is written to a temporary folder, one tensor at a time (the writer never
holds the model), then traced in a subprocess, and the subprocess's peak resident memory
(``ru_maxrss`` from ``os.wait4``) is divided by the checkpoint's size:

- trace: ``annotate trace DIR TEXT --json`` (the twin alone), for scale;
- --diff: ``annotate trace DIR TEXT --diff --json``: the twin and transformers' model. Every
  stage's verdict must be "equal" (and the logits'): bit-identical, one copy or two.

The folder is deleted before the next size is written (the disk need hold one checkpoint).

    python bench/bench_memory.py [--sizes large,xl] [--dir /tmp] [--stored bf16]

``--stored bf16``: the checkpoint in bf16 (half the file); the twin converts it to fp32, and
transformers' fp32 model is given the twin's converted tensors (checked bit for bit): the peak is
then the fp32 size plus the file's pages, read while converting, against the file's size.

Target (issue 23): --diff's peak at most 1.15x the checkpoint's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table  # noqa: E402

SIZES = {  # GPT-2's published sizes (n_positions 1024, a vocabulary of 50257)
    "small": dict(n_embd=768, n_layer=12, n_head=12),
    "medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "large": dict(n_embd=1280, n_layer=36, n_head=20),
    "xl": dict(n_embd=1600, n_layer=48, n_head=25),
}
TEXT = "The cat sat on the mat."


def write_checkpoint(folder: Path, n_embd: int, n_layer: int, n_head: int, vocab_size: int = 50257, seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> int:
    """A random GPT-2 (``SIZES``) in the hub's gpt2 layout (GPT2Model's keys, no lm_head: it is wte),
    with annotate/examples.py's small byte-level tokenizer (its ids are below 400, inside the real
    vocabulary of 50257), its tensors stored in ``dtype`` (float32 or bfloat16). The safetensors file
    is written tensor by tensor. Returns its size in bytes."""
    import transformers

    from annotate import examples

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = examples.gpt2_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    eot = tokenizer.token_to_id(examples.EOT)
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2TokenizerFast", "eos_token": examples.EOT}))
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=1024, bos_token_id=eot, eos_token_id=eot, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    (folder / "config.json").write_text(json.dumps({**examples.config_json(config), "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, indent=1))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in transformers.GPT2Model(config).state_dict().items()}
    name, size = {torch.float32: ("F32", 4), torch.bfloat16: ("BF16", 2)}[dtype]
    header, at = {}, 0
    for key, shape in shapes.items():
        nbytes = size * torch.Size(shape).numel()
        header[key] = {"dtype": name, "shape": list(shape), "data_offsets": [at, at + nbytes]}
        at += nbytes
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the tensors start 8-byte aligned, as safetensors writes them
    generator = torch.Generator().manual_seed(seed)
    with open(folder / "model.safetensors", "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for key, shape in shapes.items():
            tensor = torch.randn(shape, generator=generator) * 0.02
            if key.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                tensor += 1.0
            f.write(tensor.to(dtype).view(torch.int16 if size == 2 else torch.int32).numpy().tobytes())
    return (folder / "model.safetensors").stat().st_size


def peak_rss(argv: list[str]) -> tuple[int, int, str, float]:
    """Run ``argv``; its peak resident memory in bytes, exit status, stdout and seconds."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return usage.ru_maxrss * 1024, process.returncode, out.read().decode(), time.perf_counter() - start


def verdicts(stdout: str) -> set[str]:
    data = json.loads(stdout)
    return {s["verdict"] for s in data["stages"]} | ({data["logits_verdict"]} if "logits_verdict" in data else set())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="large,xl", help="comma-separated: small, medium, large, xl (default large,xl)")
    parser.add_argument("--dir", default="/tmp", help="where to write each checkpoint (deleted after)")
    parser.add_argument("--stored", choices=("fp32", "bf16"), default="fp32", help="the checkpoint's dtype (the twin computes in fp32 either way; default fp32)")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"annotate-bench-gpt2-{size}-", dir=args.dir))
        try:
            nbytes = write_checkpoint(folder, **SIZES[size], dtype=torch.bfloat16 if args.stored == "bf16" else torch.float32)
            annotate = [sys.executable, "-m", "annotate", "trace", str(folder), TEXT, "--json"]
            for label, argv in (("trace", annotate), ("trace --diff", [*annotate, "--diff"])):
                peak, code, stdout, seconds = peak_rss(argv)
                found = verdicts(stdout) if code == 0 and "--diff" in argv else set()
                shown = ", ".join(sorted(found)) if found else ("-" if code == 0 else f"exit {code}")
                rows.append((f"gpt2-{size}" + (" (bf16)" if args.stored == "bf16" else ""), label, f"{nbytes / 1e9:.2f} GB", f"{peak / 1e9:.2f} GB", f"{peak / nbytes:.2f}x", f"{seconds:.0f} s", shown))
                print(*rows[-1], sep="  ", flush=True)
        finally:
            shutil.rmtree(folder)
    print_table(f"peak resident memory of annotate trace (random weights stored in {args.stored}, run in fp32, CPU)", rows,
                ("model", "command", "checkpoint", "peak RSS", "peak / checkpoint", "time", "verdicts"))


if __name__ == "__main__":
    main()
