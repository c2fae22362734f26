"""reimpl GPT-2 against transformers at gpt2 (124M) size, random weights: forward time and greedy generation speed.

Measured in one run, same weights and inputs, against transformers with eager attention (the
path the twin is bit-identical to). Forward: batch 1 and 8 x 128 tokens, each
twin call against its bit-identical transformers call (no cache vs ``use_cache=False``; a fresh
KVCache vs the default call, which builds a DynamicCache). Generation: greedy, 32 new tokens after
a 32-token prompt (batch 8 left-padded), with the cache, tokens/s. Targets: forward <= 1.05x
transformers eager's time; generation >= 0.95x its speed. Calls are interleaved and the median
taken, but other processes on the machine still add noise: the load average is printed.

    python bench/bench_gpt2.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import reimpl  # noqa: E402
from bench.common import print_table, time_interleaved  # noqa: E402

T_FORWARD, T_PROMPT, NEW_TOKENS = 128, 32, 32


def inputs(B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 50257, (B, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1::2, : T // 4] = 0  # half the batch left-padded, as for generation (none at batch 1)
    return ids, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    torch.manual_seed(0)
    eager = transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="eager")).eval()
    eager.generation_config.eos_token_id = None  # no early stop: every call makes exactly NEW_TOKENS tokens
    eager.generation_config.pad_token_id = None
    twin = reimpl.GPT2LMHeadModel.from_hf(eager)

    rows = []
    for B in (1, 8):
        ids, mask = inputs(B, T_FORWARD)
        t = time_interleaved(
            {
                "eager nocache": lambda: eager(ids, attention_mask=mask, use_cache=False),
                "twin nocache": lambda: twin(ids, mask),
                "eager cache": lambda: eager(ids, attention_mask=mask),
                "twin cache": lambda: twin(ids, mask, reimpl.KVCache()),
            },
            repeats=args.repeats,
        )
        for mode in ("nocache", "cache"):
            rows.append((
                f"forward {B} x {T_FORWARD}, {'no cache' if mode == 'nocache' else 'KVCache / DynamicCache'}",
                f"{t[f'eager {mode}'] * 1e3:.1f} ms",
                f"{t[f'twin {mode}'] * 1e3:.1f} ms",
                f"{t[f'twin {mode}'] / t[f'eager {mode}']:.3f}x time",
            ))
    for B in (1, 8):
        ids, mask = inputs(B, T_PROMPT)
        with torch.inference_mode():
            same = torch.equal(
                twin.generate(ids, NEW_TOKENS, mask),
                eager.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False),
            )
        t = time_interleaved(
            {
                "eager": lambda: eager.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False),
                "twin": lambda: twin.generate(ids, NEW_TOKENS, mask),
            },
            repeats=args.repeats,
        )
        tokens = B * NEW_TOKENS
        rows.append((
            f"generate {B} x {T_PROMPT} + {NEW_TOKENS} (same tokens: {same})",
            f"{tokens / t['eager']:.1f} tok/s",
            f"{tokens / t['twin']:.1f} tok/s",
            f"{t['eager'] / t['twin']:.3f}x speed",
        ))
    print_table(
        "GPT-2 124M (random weights), median of repeats; ratio = twin vs transformers eager "
        "(targets: forward <= 1.05x time, generate >= 0.95x speed)",
        rows,
        ("what", "transformers eager", "twin", "ratio"),
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
