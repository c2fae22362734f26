"""Train, from scratch, the small transformers ``MarianMTModel`` shipped in
``annotate/data/marian-numbers-en-zh/``: it translates English number words into Chinese
numerals, "one hundred and twenty-three thousand, four hundred and fifty-six" -> "十二万三千四百五十六".

Data. Every n in 0..999,999: the source is exactly ``num2words.num2words(n)``, the target exactly
``cn2an.an2cn(n)`` (the two packages make the data here, nothing at runtime needs them). 1,000
held-out numbers, ``random.Random(0).sample(range(1_000_000), 1000)``, and 500 validation numbers
(``random.Random(1)``, held-out ones skipped) are never trained on; batches are drawn from the other
998,500, each number weighted 2 ** (its zero digits, written with six digits), so that small numbers
and the zeros that 零 stands for come up more often than uniformly.

Tokenizer, in the Helsinki-NLP/opus-mt layout: ``source.spm`` is a sentencepiece unigram model trained
on the English side (whole words: "▁hundred", "▁twenty", "-", "three", ",", "▁and"), ``target.spm`` a
sentencepiece char model trained on the Chinese side (one piece a character, no "▁"), ``vocab.json``
the joint vocabulary (``</s>`` 0, ``<unk>`` 1, ``<pad>`` the last id), read by ``MarianTokenizer``.

Model: the paper's Transformer skeleton as opus-mt configures it (post-norm, sinusoidal positions,
embeddings scaled by sqrt(d_model) and shared by encoder, decoder and output layer, swish), small
(``CONFIG`` below): d_model 192, 3 encoder and 3 decoder layers, 4 heads, ffn 768, 78 tokens; 3.15 M
parameters, a 12.5 MB float32 model.safetensors. Training: cross-entropy with label smoothing 0.1,
Adam (0.9, 0.98, 1e-9), 100 warmup steps to 1e-3 then cosine decay, dropout 0.1, 800 steps of 256
pairs; seeded (``torch.manual_seed``; a seeded ``torch.Generator`` draws every batch up front), two
threads: a rerun writes the same bytes. The step with the best greedy validation accuracy is saved
(float32 safetensors, ``save_pretrained``), with an opus-mt-like ``generation_config.json``
(4 beams, max_length 32, <pad> banned, </s> forced at the end).

Run (from the repository root; training needs transformers 5.x, sentencepiece, num2words, cn2an):

    nice -n 5 .venv/bin/python scripts/train_translator.py             # train, save the folder
    .venv/bin/python scripts/train_translator.py --evaluate            # held-out accuracy, 5.x
    .venv457/bin/python scripts/train_translator.py --evaluate         # the same under 4.57

``--evaluate`` makes the references with num2words and cn2an too: where they are not installed
(.venv457), ``pip install --target /tmp/n2w num2words cn2an`` and put ``PYTHONPATH=/tmp/n2w`` in
front. It loads the saved folder with transformers' own ``AutoTokenizer.from_pretrained`` and
``MarianMTModel.from_pretrained``, checks the tokenizer (a MarianTokenizer; Chinese through
target.spm, one character a token; decode gives back the strings), and runs
``model.generate(**batch)`` with the shipped generation config on the 1,000 held-out numbers, in
padded batches of 100, printing the exact-match accuracy, examples and every error.

Time and result (2 CPU cores, torch 2.13): making the pairs, the tokenizer and the encoded tensors
takes 1-3 min; a training step 0.35-0.5 s when the two cores are free, so 800 steps take 5-7 min.
Two runs here, on cores shared with other jobs (load 4-7), took 24 and 46 min of training, step for
step the same losses and the same model.safetensors. Greedy validation accuracy: 100% (500/500)
from step 200 on; the loss ends at 0.752, about the floor that label smoothing 0.1 leaves.
Held-out exact match, 4 beams: 100.0% (1000/1000) under transformers 5.25.0 and 100.0% under 4.57.6,
no errors.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "annotate" / "data" / "marian-numbers-en-zh"

N = 1_000_000
SEED = 0
N_VALID = 500

CONFIG = dict(
    d_model=192,
    encoder_layers=3,
    decoder_layers=3,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=768,
    decoder_ffn_dim=768,
    max_position_embeddings=64,
    activation_function="swish",
    dropout=0.1,
    attention_dropout=0.0,
    activation_dropout=0.0,
)

# Training schedule (a fixed number of steps, so that a run is reproducible).
STEPS = 800
BATCH = 256
PEAK_LR = 1e-3
WARMUP = 100
FINAL_LR_FRACTION = 0.02
LABEL_SMOOTHING = 0.1
LOG_EVERY = 50
VALID_EVERY = 200
THREADS = 2

GENERATION = dict(num_beams=4, max_length=32)


def held_out_numbers() -> list[int]:
    return random.Random(0).sample(range(N), 1000)


def validation_numbers() -> list[int]:
    held = set(held_out_numbers())
    return [n for n in random.Random(1).sample(range(N), 2 * N_VALID) if n not in held][:N_VALID]


def make_pairs(numbers) -> tuple[list[str], list[str]]:
    try:
        import cn2an
        import num2words
    except ImportError:
        sys.exit("the sources and targets are made with num2words and cn2an: pip install num2words cn2an")
    return [num2words.num2words(n) for n in numbers], [cn2an.an2cn(n) for n in numbers]


# ---------------------------------------------------------------------------------------------- tokenizer


def build_tokenizer(sources: list[str], targets: list[str], folder: Path) -> dict[str, int]:
    """Train source.spm and target.spm, write vocab.json and the tokenizer configs; return the vocab."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    common = dict(
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, character_coverage=1.0, hard_vocab_limit=False,
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2,
    )  # every sentence, in order, one thread: the same .spm bytes every run
    # English: unigram; "-" and "," are pieces of their own, and "▁and", "▁zero" are declared
    # because unigram would otherwise cut "▁and" into "▁" + "and" and spell out the one "zero".
    english = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sources), model_writer=english, model_type="unigram", vocab_size=64,
        user_defined_symbols=["-", ",", "▁and", "▁zero"], **common,
    )
    # Chinese: one piece a character, and no "▁" in front of the first one.
    chinese = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(targets), model_writer=chinese, model_type="char", vocab_size=16,
        add_dummy_prefix=False, normalization_rule_name="identity", **common,
    )
    (folder / "source.spm").write_bytes(english.getvalue())
    (folder / "target.spm").write_bytes(chinese.getvalue())

    vocab = {"</s>": 0, "<unk>": 1}
    for side in ("source", "target"):
        sp = spm.SentencePieceProcessor(model_file=str(folder / f"{side}.spm"))
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if not sp.is_unknown(i) and piece not in vocab:
                vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    tokenizer_config = {
        "tokenizer_class": "MarianTokenizer",
        "source_lang": "en",
        "target_lang": "zh",
        "separate_vocabs": False,
        "model_max_length": CONFIG["max_position_embeddings"],
        **specials,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
    return vocab


def encode_all(texts: list[str], spm_file: Path, vocab: dict[str, int]) -> list[list[int]]:
    """What MarianTokenizer gives (pieces -> vocab ids, then </s>), fast: sentencepiece in batch."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    unk = vocab["<unk>"]
    return [[vocab.get(p, unk) for p in pieces] + [vocab["</s>"]] for pieces in sp.encode(texts, out_type=str)]


def padded(rows: list[list[int]], fill: int) -> torch.Tensor:
    width = max(map(len, rows))
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


# ---------------------------------------------------------------------------------------------- training


def lr_at(step: int) -> float:
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return PEAK_LR * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def greedy_accuracy(model, src: torch.Tensor, targets: list[str], id_to_piece: dict[int, str], pad: int):
    model.eval()
    hits, wrong = 0, []
    for start in range(0, len(src), 250):
        ids = src[start : start + 250]
        ids = ids[:, : int(ids.ne(pad).sum(1).max())]
        out = model.generate(input_ids=ids, attention_mask=ids.ne(pad).long(), num_beams=1, max_length=32)
        for row, want in zip(out.tolist(), targets[start : start + 250]):
            got = "".join(id_to_piece[i] for i in row if i not in (0, pad))
            hits += got == want
            if got != want:
                wrong.append((want, got))
    model.train()
    return hits / len(targets), wrong


def train() -> None:
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    torch.manual_seed(SEED)
    random.seed(SEED)
    torch.set_num_threads(THREADS)
    t0 = time.time()

    held, valid = held_out_numbers(), validation_numbers()
    excluded = set(held) | set(valid)
    sources, targets = make_pairs(range(N))
    print(f"made {N:,} pairs in {time.time() - t0:.0f} s", flush=True)

    train_numbers = [n for n in range(N) if n not in excluded]
    vocab = build_tokenizer([sources[n] for n in train_numbers], [targets[n] for n in train_numbers], OUT)
    pad, eos = vocab["<pad>"], vocab["</s>"]
    id_to_piece = {i: p for p, i in vocab.items()}
    print(f"tokenizer: {len(vocab)} tokens (pad {pad}) in {time.time() - t0:.0f} s", flush=True)

    src_rows = encode_all(sources, OUT / "source.spm", vocab)
    tgt_rows = encode_all(targets, OUT / "target.spm", vocab)
    check_against_marian_tokenizer(valid + held[:200], sources, targets, src_rows, tgt_rows)
    src = padded(src_rows, pad)  # (N, longest source + </s>)
    labels = padded(tgt_rows, -100)  # (N, longest target + </s>)
    shifted = labels[:, :-1].masked_fill(labels[:, :-1].eq(-100), pad)
    dec_in = torch.cat([torch.full((N, 1), pad), shifted], 1)  # labels shifted right, <pad> first
    src_len, tgt_len = src.ne(pad).sum(1), labels.ne(-100).sum(1)
    print(f"encoded: sources ≤ {src.shape[1]} tokens, targets ≤ {labels.shape[1]} ({time.time() - t0:.0f} s)")

    # Batches: numbers drawn (with replacement) in proportion to 2 ** zero digits, never an excluded one.
    zeros = torch.tensor([f"{n:06d}".count("0") for n in range(N)], dtype=torch.float64)
    weights = 2.0**zeros
    weights[list(excluded)] = 0
    generator = torch.Generator().manual_seed(SEED)
    order = torch.multinomial(weights, STEPS * BATCH, replacement=True, generator=generator).view(STEPS, BATCH)

    config = MarianConfig(
        vocab_size=len(vocab),
        decoder_vocab_size=len(vocab),
        **CONFIG,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        normalize_before=False,  # recorded as opus-mt does: post-norm, the only kind Marian has
        pad_token_id=pad,
        eos_token_id=eos,
        decoder_start_token_id=pad,
        forced_eos_token_id=eos,
        architectures=["MarianMTModel"],
    )
    model = MarianMTModel(config)
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]],
        decoder_start_token_id=pad,
        eos_token_id=eos,
        forced_eos_token_id=eos,
        pad_token_id=pad,
        renormalize_logits=True,
        **GENERATION,
    )
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, {json.dumps(CONFIG)}")

    optimizer = torch.optim.Adam(model.parameters(), lr=PEAK_LR, betas=(0.9, 0.98), eps=1e-9)
    valid_src = src[valid]
    valid_targets = [targets[n] for n in valid]
    best = (-1.0, None, -1)
    model.train()
    t_train = time.time()
    running, seen = 0.0, 0
    for step in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        idx = order[step]
        s_len, t_len = int(src_len[idx].max()), int(tgt_len[idx].max())
        ids = src[idx, :s_len]
        logits = model(
            input_ids=ids, attention_mask=ids.ne(pad).long(), decoder_input_ids=dec_in[idx, :t_len]
        ).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[idx, :t_len].reshape(-1),
            ignore_index=-100, label_smoothing=LABEL_SMOOTHING,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        seen += 1
        done = step + 1
        if done % LOG_EVERY == 0 or done == STEPS:
            elapsed = time.time() - t_train
            print(
                f"step {done:5d}/{STEPS}  loss {running / seen:.4f}  lr {lr_at(step):.2e}  "
                f"{elapsed / 60:5.1f} min  eta {elapsed / done * (STEPS - done) / 60:4.1f} min",
                flush=True,
            )
            running, seen = 0.0, 0
        if done % VALID_EVERY == 0 or done == STEPS:
            acc, wrong = greedy_accuracy(model, valid_src, valid_targets, id_to_piece, pad)
            print(f"  validation (greedy, {len(valid)}): {acc:.2%}  e.g. {wrong[:3]}", flush=True)
            if acc >= best[0]:
                best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()}, done)

    train_minutes = (time.time() - t_train) / 60
    print(f"trained {STEPS} steps in {train_minutes:.1f} min; best validation {best[0]:.2%} at step {best[2]}")
    model.load_state_dict(best[1])
    model.eval()
    model.save_pretrained(OUT)
    size = sum(f.stat().st_size for f in OUT.iterdir()) / 1e6
    print(f"saved {OUT.relative_to(ROOT)} ({size:.1f} MB) after {(time.time() - t0) / 60:.1f} min in all")


def check_against_marian_tokenizer(numbers, sources, targets, src_rows, tgt_rows) -> None:
    """The fast encoding used for training is exactly what the saved MarianTokenizer gives."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(OUT)
    for n in numbers:
        enc = tok(sources[n], text_target=targets[n])
        assert enc["input_ids"] == src_rows[n], (sources[n], enc["input_ids"], src_rows[n])
        assert enc["labels"] == tgt_rows[n], (targets[n], enc["labels"], tgt_rows[n])


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate() -> None:
    import transformers
    from transformers import AutoTokenizer, MarianMTModel, MarianTokenizer

    torch.set_num_threads(THREADS)
    held = held_out_numbers()
    sources, targets = make_pairs(held)
    tok = AutoTokenizer.from_pretrained(OUT)
    model = MarianMTModel.from_pretrained(OUT).eval()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {type(tok).__name__}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    print(f"generation config: {model.generation_config.to_diff_dict()}")

    # The tokenizer: MarianTokenizer, Chinese through target.spm one character a token, round trips.
    assert isinstance(tok, MarianTokenizer), type(tok)
    labels = tok(text_target="一万零一十")["input_ids"]
    assert tok.convert_ids_to_tokens(labels) == ["一", "万", "零", "一", "十", "</s>"], tok.convert_ids_to_tokens(labels)
    assert tok.decode(labels, skip_special_tokens=True) == "一万零一十"
    for text in sources[:50]:
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text, text
    print("tokens:", tok.tokenize(sources[0]), "->", tok.convert_ids_to_tokens(tok(text_target=targets[0])["input_ids"]))

    start = time.time()
    predictions = []
    with torch.no_grad():
        for i in range(0, len(held), 100):
            batch = tok(sources[i : i + 100], return_tensors="pt", padding=True)
            out = model.generate(**batch)
            predictions += tok.batch_decode(out, skip_special_tokens=True)
    hits = [p == t for p, t in zip(predictions, targets)]
    for n, s, p, ok in list(zip(held, sources, predictions, hits))[:8]:
        print(f"  {n:>7,}  {s}  ->  {p}  {'ok' if ok else 'WRONG, want ' + targets[held.index(n)]}")
    errors = [(n, s, p, t) for n, s, p, t, ok in zip(held, sources, predictions, targets, hits) if not ok]
    for n, s, p, t in errors:
        print(f"  error: {n:,}  {s}  ->  {p}  (want {t})")
    print(f"exact match on the {len(held)} held-out numbers: {sum(hits) / len(held):.1%} "
          f"({sum(hits)}/{len(held)}), {model.generation_config.num_beams} beams, {time.time() - start:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluate", action="store_true", help="evaluate the saved folder on the held-out numbers")
    args = parser.parse_args()
    evaluate() if args.evaluate else train()
