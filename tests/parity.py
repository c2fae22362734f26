"""One parity check for every twin: run transformers' model and the twin on the same inputs, and
compare every recorded state and every output field bit for bit (``torch.equal``).

transformers' values are caught by annotate.capture under the twin's names, where the
architecture's record says each step is computed, so a difference is pinned to a step.
"""

from __future__ import annotations

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
    elsewhere transformers' softmax input holds the mask's ~-3.4e38. ``keep``: (B, 1, T, T) booleans,
    True where a query sees a key; by default from the attention mask (and causality).
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

    if keep is None:
        keep = align.keep_mask(inputs["input_ids"], inputs.get("attention_mask"), arch.causal)
    compared = 0
    for name, value, seen in align.pairs(ours, theirs, keep):  # scores: where keys are kept
        assert seen is not None, f"no transformers value caught for {name} (or of another shape)"
        assert torch.equal(value, seen), f"{name} differs: max |diff| {(value - seen).abs().max():.3g}"
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
