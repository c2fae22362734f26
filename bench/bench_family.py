"""The BERT family's twins (RoBERTa, XLM-RoBERTa, DistilBERT, ALBERT, ELECTRA) and the heads:
forward time as a ratio to transformers' eager path, measured in the same run.

Random weights at the real checkpoints' sizes (roberta-base, xlm-roberta-base with a smaller
vocabulary, distilbert-base, albert-base-v2, electra-base-discriminator; a few heads), batch
8 x 128 tokens with half the rows padded. Target: twin <= 1.05x transformers eager.

    python bench/bench_family.py [--repeats 10]
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

B, T = 8, 128
BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
MODELS = [  # (label, transformers class, config)
    ("roberta-base", "RobertaModel", transformers.RobertaConfig(**BASE, vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)),
    ("xlm-roberta-base (vocab 50k)", "XLMRobertaModel", transformers.XLMRobertaConfig(**BASE, vocab_size=50000, max_position_embeddings=514, type_vocab_size=1)),
    ("distilbert-base", "DistilBertModel", transformers.DistilBertConfig()),
    ("albert-base-v2", "AlbertModel", transformers.AlbertConfig(embedding_size=128, **BASE)),
    ("electra-base", "ElectraModel", transformers.ElectraConfig(embedding_size=768, **BASE)),
    ("electra-small", "ElectraModel", transformers.ElectraConfig()),
    ("bert-base + MLM head", "BertForMaskedLM", transformers.BertConfig()),
    ("roberta-base + classifier", "RobertaForSequenceClassification", transformers.RobertaConfig(**BASE, vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, batch {B} x {T}")
    rows = []
    for label, cls, config in MODELS:
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        hf = getattr(transformers, cls)(config).eval()
        twin = getattr(reimpl, cls).from_hf(hf)
        ids = torch.randint(5, config.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
        mask = torch.ones(B, T, dtype=torch.long)
        mask[1::2, T * 3 // 4 :] = 0  # half the batch padded, as a tokenizer would
        with torch.inference_mode():
            assert all(torch.equal(a, b) for a, b in zip(twin(input_ids=ids, attention_mask=mask), hf(input_ids=ids, attention_mask=mask).values()) if a is not None)
        t = time_interleaved(
            {"eager": lambda: hf(input_ids=ids, attention_mask=mask), "twin": lambda: twin(input_ids=ids, attention_mask=mask)},
            repeats=args.repeats,
        )
        rows.append((label, f"{t['eager'] * 1e3:.0f} ms", f"{t['twin'] * 1e3:.0f} ms", f"{t['twin'] / t['eager']:.3f}x"))
        print(rows[-1], flush=True)
    print_table("forward, twin vs transformers eager (target <= 1.05x)", rows, ("model", "eager", "twin", "twin / eager"))


if __name__ == "__main__":
    main()
