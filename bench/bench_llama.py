"""The Llama twin on the real SmolLM2-135M-Instruct, as ratios to transformers measured in the same run.

1. In process, interleaved repeats, medians: the twin's forward on a chat prompt against
   transformers' LlamaForCausalLM (eager), both from the converted checkpoint (reimpl/gguf.py);
   and greedy generation of 20 tokens, twin against transformers' ``generate``.
2. As fresh subprocesses (wall time and peak memory, as bench/bench_cli.py measures them):
   ``annotate trace SmolLM2-135M-Instruct.Q4_1.gguf TEXT`` (its second run: the GGUF file is
   converted once, then read from the cache) against a plain transformers script that loads the
   GGUF file (``from_pretrained(folder, gguf_file=...)``: dequantising every tensor) and runs the
   same forward. Targets: <= 0.5x the wall time, <= 1.0x the peak memory.

    python bench/bench_llama.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What is the capital of France?"
TEXT = "The capital of France is"

PLAIN_TRANSFORMERS = f"""
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from reimpl.gguf import packaged_file
gguf = packaged_file({SMOLLM2!r})
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager").eval()
with torch.inference_mode():
    out = model(**tokenizer({TEXT!r}, return_tensors="pt"), output_hidden_states=True, output_attentions=True)
assert len(out.attentions) == 30
"""


def in_process(repeats: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import reimpl
    from bench.common import print_table, time_interleaved

    folder = reimpl.loading.resolve(SMOLLM2)
    twin = reimpl.from_pretrained(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    forward = time_interleaved({
        "transformers": lambda: hf(ids, attention_mask=mask, use_cache=False),
        "twin": lambda: twin(ids, mask),
    }, repeats=repeats)
    generate = time_interleaved({
        "transformers": lambda: hf.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False),
        "twin": lambda: twin.generate(ids, 20, mask, eos_token_id=2, pad_token_id=2),
    }, repeats=max(3, repeats // 2), warmup=1)
    rows = [(what, f"{t['transformers'] * 1e3:.1f} ms", f"{t['twin'] * 1e3:.1f} ms", f"{t['twin'] / t['transformers']:.2f}x")
            for what, t in (("forward, chat prompt", forward), ("generate 20 tokens", generate))]
    print_table(f"SmolLM2-135M-Instruct (Q4_1 dequantised), {ids.shape[1]} prompt tokens, fp32, {torch.get_num_threads()} threads",
                rows, ("what", "transformers", "twin", "twin / transformers"))


def subprocesses(repeats: int) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.bench_cli import annotate_command, measure

    annotate = annotate_command()
    commands = {
        "plain transformers script (GGUF)": [sys.executable, "-c", PLAIN_TRANSFORMERS],
        "annotate trace (cached)": [*annotate, "trace", SMOLLM2, TEXT],
    }
    t = measure(commands, repeats)  # its warm-up round converts the GGUF file once, if not cached yet
    (base_wall, base_mem), (wall, mem) = t["plain transformers script (GGUF)"], t["annotate trace (cached)"]
    from bench.common import print_table

    print_table(
        "annotate trace on SmolLM2 against a plain transformers script that reads the GGUF file (subprocesses, medians)",
        [(name, f"{w:.2f} s", f"{m:.0f} MiB") for name, (w, m) in t.items()]
        + [("ratio (target <= 0.5x wall, <= 1.0x memory)", f"{wall / base_wall:.2f}x", f"{mem / base_mem:.2f}x")],
        ("command", "wall", "peak memory"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {args.repeats} repeats")
    subprocesses(args.repeats)  # first: this process must not have imported torch (a child's RSS counts shared pages)
    sys.path.insert(0, str(ROOT))
    in_process(args.repeats)


if __name__ == "__main__":
    main()
