"""Which transformers the twins follow: the installed one, 4.57 (the last 4.x) or 5.x.

The twins are bit-identical to the *installed* transformers' eager path. A few ops changed
between 4.57 and 5.x; at each, the twin has one line ``if versions.V4:`` whose comment says what
changed, so a reader of a 4.x tutorial learns why their numbers moved. Every difference found by
running the parity tests under both (and where the twin follows it):

The arithmetic
- Attention scale, BERT family: 4.57 divides Q K^T by ``math.sqrt(hs)``; 5.x multiplies it by
  the float ``hs ** -0.5``. Equal only when sqrt(hs) is a power of two (hs = 64: bert-base,
  gpt2); MiniLM's hs = 32 differs in the last bit of most scores. reimpl/bert.py
  BertSelfAttention.forward (RoBERTa, XLM-R, ELECTRA and ALBERT inherit it).
- Attention scale, DistilBERT: 4.57 divides Q by sqrt(hs) *before* the product.
  reimpl/distilbert.py DistilBertSelfAttention.forward.
- Attention scale, GPT-2: 4.57 divides by a 0-d tensor of sqrt(hs), then, under
  ``scale_attn_by_inverse_layer_idx``, by layer + 1 (two roundings); 5.x multiplies once by one
  float that folds both. The upcast path's baddbmm alpha is computed in another order too.
  reimpl/gpt2.py GPT2Attention.forward and GPT2Attention.alpha.
- GPT-2's causal mask: 4.57 first fills the future with finfo.min from its ``attn.bias`` buffer,
  then adds the mask, which hides the future again (finfo.min + finfo.min = -inf). Real tokens'
  probabilities are the same; a query on left padding (which sees no key, a garbage row in both)
  spreads over the keys up to it instead of all keys. GPT2Attention.forward.

- LayerDrop (Marian, BART): 4.57 draws its random number in training for every layer even when
  the probability is 0, which moves every later dropout mask; 5.x draws only when it is above 0.
  reimpl/marian.py layerdrop.

Generation (encoder-decoders, reimpl/seq2seq.py)
- No attention mask given: 4.57 infers the source's from its padding (where pad appears and is
  not eos); 5.x attends to every token.
- A multi-token bad word: 4.57 skips it while it is longer than the ids so far; 5.x while its
  prefix is.
- ``max_length`` 20 in a generation config: 4.57 takes it for unset (20 new tokens); 5.x as given.

Loading and parameters
- A tied head stored with other values (a GPT-2 ``lm_head.weight`` unlike ``wte``): 4.57 ties it
  anyway, 5.x keeps it. reimpl/loading.py load_weights.
- Parameter order (clip_grad_norm_ sums the gradients' norms in it): 4.57's RobertaEmbeddings
  keeps BERT's order (word, position, token type), 5.x registers positions last
  (reimpl/roberta.py RobertaEmbeddings); 4.57's XLM-R heads register ``roberta`` first, 5.x's the
  head first (reimpl/xlm_roberta.py head_first).
- Marian without shared embeddings: 4.57 copies the source's table for the decoder (vocab_size
  rows), 5.x sizes it decoder_vocab_size: the twin refuses another decoder_vocab_size under 4.57
  (reimpl/marian.py MarianConfig.check). With shared embeddings and tie_word_embeddings=False, 5.x
  gives the encoder, the decoder and ``shared`` three tables, 4.57 one: refused under both.
- A class renamed: 4.57's DistilBERT attention is ``MultiHeadSelfAttention`` (``RENAMED_IN_5``).

Not the twins' math (annotate.capture and the tests read both)
- Modules return tuples in 4.x (``(hidden_states,)``; ALBERT's and DistilBERT's attention
  ``(output,)`` unless asked for ``output_attentions``), and call their dropout modules; 4.57's
  BertSelfAttention and BertLayer keep no ``config``.
- Masks: 4.57 builds BERT's with ``get_extended_attention_mask`` (the same 0 / finfo.min) even
  without padding; ``create_causal_mask`` also takes ``cache_position``.
- The cache keyword: ``past_key_values``, renamed ``cache`` in 5.24 (``CACHE_KEYWORD``).
- Inputs and configs 4.57 does not take or cannot run: DistilBERT's ``position_ids`` (5.x added
  them; the twin takes them, as 5.x), ALBERT with more groups than layers (4.57 raises an
  IndexError; the twin computes 5.x's result); generation defaults live in 4.57's
  GenerationConfig() (5.x leaves unset fields None).

This module reads the version from the package's metadata (importlib.metadata), once, without
importing transformers (that import costs seconds; the tracer avoids it). ``following(4)`` and
``following(5)`` make the twins compute as either version does, whatever is installed: to see
what the version change alone does to the numbers (guide 7).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version


def _parse(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


try:
    TRANSFORMERS = version("transformers")  # "4.57.6", "5.24.0"
except PackageNotFoundError:  # the twins run without transformers; they then follow 5.x
    TRANSFORMERS = "5"
MAJOR, MINOR = _parse(TRANSFORMERS) if TRANSFORMERS != "5" else (5, 0)
V4 = MAJOR < 5  # transformers 4.57.x: the twins follow its ops wherever they differ from 5.x
LABEL = f"transformers {TRANSFORMERS}"

# The keyword transformers' decoder forward takes a key/value cache by: 5.24 renamed it.
CACHE_KEYWORD = "past_key_values" if V4 or (MAJOR, MINOR) < (5, 24) else "cache"


# transformers 4.57 class names that 5.x renamed; the twins carry 5.x's, and take either.
RENAMED_IN_5 = {"MultiHeadSelfAttention": "DistilBertSelfAttention"}


@contextmanager
def following(major: int) -> Iterator[None]:
    """Inside the block the twins compute as transformers ``major`` (4 or 5) does, whatever is
    installed: to see what the version change alone does to the numbers (guide 7). Parity with
    transformers holds for the installed version only."""
    global V4
    if major not in (4, 5):
        raise ValueError(f"the twins follow transformers 4 (4.57) or 5, not {major}")
    saved, V4 = V4, major == 4
    try:
        yield
    finally:
        V4 = saved
