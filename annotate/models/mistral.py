"""What annotate knows of Mistral (reimpl/mistral.py, transformers' models/mistral/modeling_mistral.py).

Llama's steps under Mistral's names (annotate/models/llama.py, its notation), with the mask that
hides, besides the future and padding, every key W = sliding_window or more slots back: a query
sees itself and the W - 1 keys before it.
"""

from __future__ import annotations

import dataclasses

from annotate.models import Twin, at, renamed
from annotate.models import llama

_WINDOW = " (a sliding layer: the last W - 1 cached keys, as transformers' sliding cache keeps them)"


def windowed(steps: dict, model_mask: tuple) -> dict:
    """A family member's steps with the window: the scores' formula says which keys a sliding
    layer gets from the cache; the probabilities' mask is the model's (``model_mask``: where its
    forward builds it) and hides the keys outside the window too."""
    probs = steps["self_attn.probs"]
    return {
        **steps,
        "self_attn.scores": dataclasses.replace(steps["self_attn.scores"], formula=steps["self_attn.scores"].formula + _WINDOW),
        "self_attn.probs": dataclasses.replace(
            probs, formula="P = softmax(S + M) in fp32 (M: the future, padding, and keys W = sliding_window or more slots back)",
            hf=(model_mask, *probs.hf)),
    }


def family(prefix: str, model_mask: tuple) -> dict:
    """Llama's steps under a family member's class names, windowed; its model's embedding line
    (Llama's annotates the variable's type, the generated files of its family do not)."""
    steps = renamed(llama.STEPS, "Llama", prefix)
    steps["embed_tokens"] = dataclasses.replace(
        steps["embed_tokens"], hf=(at(f"{prefix}Model.forward", "inputs_embeds = self.embed_tokens(input_ids)"),))
    return windowed(steps, model_mask)


_MASK = at("MistralModel.forward", "mask_function = create_causal_mask if self.config.sliding_window is None else create_sliding_window_causal_mask",
           "causal_mask = mask_function(")

STEPS = family("Mistral", _MASK)

# transformers 4.57: Llama's 4.57 lines, under Mistral's names (its model builds the mask in the same lines).
STEPS_4_57 = windowed(renamed(llama.STEPS_4_57, "Llama", "Mistral"), _MASK)

HEADS = {name.replace("Llama", "Mistral"): head for name, head in llama.HEADS.items()}


def catch_hf(hf, hooks) -> None:
    """Llama's hooks: transformers' Mistral has Llama's modules, under the same paths."""
    llama.catch_hf(hf, hooks)


def family_twins(module: str, prefix: str) -> dict[tuple[str, str], Twin]:
    """transformers' names in a Llama family member's modeling file that the twin inherits from reimpl/llama.py."""
    return {
        (module, "eager_attention_forward"): llama.TWINS[("modeling_llama", "eager_attention_forward")],
        (module, f"{prefix}PreTrainedModel"): llama.TWINS[("modeling_llama", "LlamaPreTrainedModel")],
        (module, f"{prefix}RMSNorm"): Twin("reimpl.llama:LlamaRMSNorm", "Llama's RMSNorm, inherited unchanged"),
        (module, f"{prefix}MLP"): Twin("reimpl.llama:LlamaMLP", "Llama's SwiGLU MLP, inherited unchanged"),
        (module, f"{prefix}RotaryEmbedding"): Twin("reimpl.llama:LlamaRotaryEmbedding", "Llama's rotary embedding, inherited unchanged"),
        (module, "apply_rotary_pos_emb"): Twin("reimpl.llama:apply_rotary_pos_emb", "Llama's rotation"),
        (module, "rotate_half"): Twin("reimpl.llama:rotate_half", "Llama's"),
        (module, "repeat_kv"): Twin("reimpl.llama:repeat_kv", "Llama's grouped-query sharing"),
    }


# For ``annotate source``: the window's mask and cache are written once, in reimpl/mistral.py.
WINDOW_TWINS = {
    ("masking_utils", "create_sliding_window_causal_mask"): Twin(
        "reimpl.mistral:MistralModel.mask", "Llama's causal mask, and the window: one mask per kind of layer"),
    ("masking_utils", "sliding_window_causal_mask_function"): Twin(
        "reimpl.mistral:sliding_window_mask", "the causal rule and the window's, on Llama's mask"),
    ("masking_utils", "sliding_window_overlay"): Twin(
        "reimpl.mistral:sliding_window_mask", "kv_idx > q_idx - sliding_window, for all positions at once",
        ("query_positions =", "allowed = key_positions")),
    ("cache_utils", "DynamicSlidingWindowLayer"): Twin(
        "reimpl.mistral:SlidingWindowLayer", "the KVCache keeps every token; the layer is handed what transformers keeps"),
    ("cache_utils", "DynamicSlidingWindowLayer.update"): Twin(
        "reimpl.mistral:SlidingWindowLayer.update", "the last sliding_window - 1 cached keys and values, and this call's"),
}

TWINS = {**family_twins("modeling_mistral", "Mistral"), **WINDOW_TWINS}

CALL_PATH = ("MistralAttention", "MistralDecoderLayer", "MistralModel", "MistralMLP", "MistralRMSNorm",
             "MistralRotaryEmbedding", "apply_rotary_pos_emb", "repeat_kv", "MistralForCausalLM")
