"""What annotate knows of Qwen2 (reimpl/qwen2.py, transformers' models/qwen2/modeling_qwen2.py).

Llama's steps under Qwen2's names (annotate/models/llama.py, its notation): Q, K and V carry biases
(b_Q, b_K, b_V; o_proj none), and the layers layer_types names "sliding_attention" read Mistral's
windowed mask (annotate/models/mistral.py), the others the full one.
"""

from __future__ import annotations

from annotate.models import at, renamed
from annotate.models import llama, mistral

_MASKS = at("Qwen2Model.forward", '"full_attention": create_causal_mask(**mask_kwargs)',
            'causal_mask_mapping["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)')

STEPS = mistral.family("Qwen2", _MASKS)

# transformers 4.57: Llama's 4.57 lines, under Qwen2's names (the masks are built in the same lines).
STEPS_4_57 = mistral.windowed(renamed(llama.STEPS_4_57, "Llama", "Qwen2"), _MASKS)

HEADS = {name.replace("Llama", "Qwen2"): head for name, head in llama.HEADS.items()}


def catch_hf(hf, hooks) -> None:
    """Llama's hooks: transformers' Qwen2 has Llama's modules, under the same paths."""
    llama.catch_hf(hf, hooks)


TWINS = {**mistral.family_twins("modeling_qwen2", "Qwen2"), **mistral.WINDOW_TWINS}

CALL_PATH = ("Qwen2Attention", "Qwen2DecoderLayer", "Qwen2Model", "Qwen2MLP", "Qwen2RMSNorm",
             "Qwen2RotaryEmbedding", "apply_rotary_pos_emb", "repeat_kv", "Qwen2ForCausalLM")
