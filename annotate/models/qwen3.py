"""What annotate knows of Qwen3 (reimpl/qwen3.py, transformers' models/qwen3/modeling_qwen3.py).

Qwen2's steps under Qwen3's names (annotate/models/qwen2.py), and one more per projection of Q and
K: before the rotation, each head's query and key is RMS-normalised over its own d_k dimensions
(q_norm, k_norm: RMSNorm_q, RMSNorm_k, one (d_k,) gain shared by the heads). Biases as Llama's:
on all four projections when attention_bias.
"""

from __future__ import annotations

import dataclasses

from annotate.models import anchors, at, renamed, step
from annotate.models import llama, mistral, qwen2

_ATTN = "Qwen3Attention.forward"
_Q = "query_states = self.q_norm(self.q_proj(hidden_states).view(hidden_shape)).transpose(1, 2)"
_K = "key_states = self.k_norm(self.k_proj(hidden_states).view(hidden_shape)).transpose(1, 2)"

_STEPS = renamed(qwen2.STEPS, "Qwen2", "Qwen3")
STEPS = {
    **_STEPS,
    "self_attn.q_proj": dataclasses.replace(_STEPS["self_attn.q_proj"], hf=(at(_ATTN, "self.q_proj(hidden_states)"),)),
    "self_attn.k_proj": dataclasses.replace(_STEPS["self_attn.k_proj"], hf=(at(_ATTN, "self.k_proj(hidden_states)"),)),
    "self_attn.q_norm": step("norm", "RMSNorm_q(Q_i) per head i: Q_i / sqrt(mean(Q_i^2) + eps) * g_q, over its d_k dimensions",
                             at(_ATTN, _Q)),
    "self_attn.k_norm": step("norm", "RMSNorm_k(K_j) per key/value head j, over its d_k dimensions", at(_ATTN, _K)),
    "self_attn.q_rope": dataclasses.replace(
        _STEPS["self_attn.q_rope"], formula="RMSNorm_q(Q)_p R_p: each normalised query turned by its position"),
    "self_attn.k_rope": dataclasses.replace(
        _STEPS["self_attn.k_rope"], formula="RMSNorm_k(K)_p R_p: each normalised key turned by its position"),
}

# transformers 4.57: Qwen2's 4.57 lines, under Qwen3's names; the projections' and norms' lines are 5.x's.
STEPS_4_57 = anchors({name: s.hf for name, s in renamed(qwen2.STEPS_4_57, "Qwen2", "Qwen3").items()}, STEPS)

HEADS = {name.replace("Qwen2", "Qwen3"): head for name, head in qwen2.HEADS.items()}


def catch_hf(hf, hooks) -> None:
    """Llama's hooks, and the two norms' outputs: (B, T, nh or nkv, hs), as the twin records them."""
    llama.catch_hf(hf, hooks)
    for layer in getattr(hf, "model", hf).layers:
        hooks.on(layer.self_attn.q_norm)
        hooks.on(layer.self_attn.k_norm)


TWINS = {**mistral.family_twins("modeling_qwen3", "Qwen3"), **mistral.WINDOW_TWINS}

CALL_PATH = ("Qwen3Attention", "Qwen3DecoderLayer", "Qwen3Model", "Qwen3MLP", "Qwen3RMSNorm",
             "Qwen3RotaryEmbedding", "apply_rotary_pos_emb", "repeat_kv", "Qwen3ForCausalLM")
