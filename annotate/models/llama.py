"""What annotate knows of Llama (reimpl/llama.py, transformers' models/llama/modeling_llama.py).

Notation as annotate/models/bert.py's, and: RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g; R_p the
rotation of position p (each pair of dimensions (i, i + d_k/2) of a head turned by the angle
p * theta^(-2i/d_k)); h query heads sharing g key/value heads (grouped-query attention, each K/V
head repeated h/g times); SwiGLU(x) = (silu(x W_gate) * (x W_up)) W_down.
"""

from __future__ import annotations

from annotate.models import Head, Output, Twin, anchors, at, step

_ATTN = "LlamaAttention.forward"
_LAYER = "LlamaDecoderLayer.forward"
_MODEL = "LlamaModel.forward"
_MLP = at("LlamaMLP.forward", "down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))")  # one line, five steps

STEPS = {
    "embed_tokens": step("lookup", "X_0 = W_tok[input_ids] (no position table: positions enter as rotations)",
                         at(_MODEL, "inputs_embeds: torch.Tensor = self.embed_tokens(input_ids)")),
    "rotary_emb.cos": step("rotary", "cos(p * theta^(-2i/d_k)), each angle twice (the two halves rotate_half pairs)",
                           at("LlamaRotaryEmbedding.forward", "freqs = position_ids[..., None].float() * self.inv_freq",
                              "emb = torch.cat((freqs, freqs), dim=-1)", "cos = emb.cos() * self.attention_scaling")),
    "rotary_emb.sin": step("rotary", "sin(p * theta^(-2i/d_k))",
                           at("LlamaRotaryEmbedding.forward", "freqs = position_ids[..., None].float() * self.inv_freq",
                              "emb = torch.cat((freqs, freqs), dim=-1)", "sin = emb.sin() * self.attention_scaling")),
    "input_layernorm": step("norm", "RMSNorm_1(X)", at(_LAYER, "hidden_states = self.input_layernorm(hidden_states)")),
    "self_attn.q_proj": step("query", "Q = RMSNorm_1(X) W_Q (+ b_Q), h heads of d_k",
                             at(_ATTN, "query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)")),
    "self_attn.k_proj": step("key", "K = RMSNorm_1(X) W_K (+ b_K), g key/value heads of d_k",
                             at(_ATTN, "key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)")),
    "self_attn.v_proj": step("value", "V = RMSNorm_1(X) W_V (+ b_V), g key/value heads of d_k",
                             at(_ATTN, "value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)")),
    "self_attn.q_rope": step("rotary", "Q_p R_p = Q_p cos + rotate_half(Q_p) sin: each query turned by its position",
                             at(_ATTN, "query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)"),
                             at("apply_rotary_pos_emb", "q_embed = (q * cos) + (rotate_half(q) * sin)")),
    "self_attn.k_rope": step("rotary", "K_p R_p: each key turned by its position, so Q_m R_m (K_n R_n)^T depends on m - n only",
                             at(_ATTN, "query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)"),
                             at("apply_rotary_pos_emb", "k_embed = (k * cos) + (rotate_half(k) * sin)")),
    "self_attn.scores": step("scores", "S = Q (K repeated h/g times)^T / sqrt(d_k); with a cache, the cached keys first",
                             at(_ATTN, "key_states, value_states = cache.update("),
                             at("eager_attention_forward", "key_states = repeat_kv(key, module.num_key_value_groups)",
                                "attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling")),
    "self_attn.probs": step("probs", "P = softmax(S + M) in fp32 (M: the future and padding)",
                            at("eager_attention_forward", "attn_weights = attn_weights + attention_mask",
                               "attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)")),
    "self_attn.context": step("context", "A = P (V repeated h/g times), the heads side by side",
                              at("eager_attention_forward", "value_states = repeat_kv(value, module.num_key_value_groups)",
                                 "attn_output = torch.matmul(attn_weights, value_states)", "attn_output = attn_output.transpose(1, 2).contiguous()"),
                              at(_ATTN, "attn_output = attn_output.reshape(*input_shape, -1).contiguous()")),
    "self_attn.o_proj": step("projection", "Attn(RMSNorm_1(X)) = A W_O", at(_ATTN, "attn_output = self.o_proj(attn_output)")),
    "self_attn.residual": step("residual", "X' = X + Attn(RMSNorm_1(X))", at(_LAYER, "hidden_states = residual + hidden_states")),
    "post_attention_layernorm": step("norm", "RMSNorm_2(X')", at(_LAYER, "hidden_states = self.post_attention_layernorm(hidden_states)")),
    "mlp.gate_proj": step("mlp", "G = RMSNorm_2(X') W_gate", _MLP),
    "mlp.act_fn": step("activation", "silu(G) = G sigmoid(G)", _MLP),
    "mlp.up_proj": step("mlp", "U = RMSNorm_2(X') W_up", _MLP),
    "mlp.gated": step("mlp", "silu(G) * U: the gate decides how much of each unit of U passes", _MLP),
    "mlp.down_proj": step("mlp", "SwiGLU(RMSNorm_2(X')) = (silu(G) * U) W_down", _MLP),
    "mlp.residual": step("residual", "X_(l+1) = X' + SwiGLU(RMSNorm_2(X'))",
                         at(_LAYER, "hidden_states = self.mlp(hidden_states)", "hidden_states = residual + hidden_states")),
    "layers.N": step("layer", "X_(l+1) = Layer_l(X_l)", at(_MODEL, "hidden_states = decoder_layer(")),
    "norm": step("norm", "H = RMSNorm_f(X_L)", at(_MODEL, "hidden_states = self.norm(hidden_states)")),
    "lm_head": step("head", "logits = H W_lm^T (W_lm: embed_tokens when tied)",
                    at("LlamaForCausalLM.forward", "hidden_states = slice_logits_to_keep(hidden_states, logits_to_keep)",
                       "logits = self.lm_head(hidden_states)")),
    "score": step("head", "logits = H W_s, read at each row's last token that is not padding",
                  at("LlamaForSequenceClassification.forward", "logits = self.score(hidden_states)")),
    "last_hidden_state": step("output", "H = RMSNorm_f(X_L)", at(_MODEL, "hidden_states = self.norm(hidden_states)", "last_hidden_state=hidden_states")),
}

# transformers 4.57: the lines of the steps whose code differs from 5.x's (the same math: the
# rotation's angles by a (hs/2, 1) @ (1, T) product, one multiplication each, as 5.x's).
STEPS_4_57 = anchors({
    "rotary_emb.cos": (at("LlamaRotaryEmbedding.forward", "freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)",
                          "emb = torch.cat((freqs, freqs), dim=-1)", "cos = emb.cos() * self.attention_scaling"),),
    "rotary_emb.sin": (at("LlamaRotaryEmbedding.forward", "freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)",
                          "emb = torch.cat((freqs, freqs), dim=-1)", "sin = emb.sin() * self.attention_scaling"),),
    "self_attn.scores": (at(_ATTN, "key_states, value_states = past_key_values.update("),
                         at("eager_attention_forward", "key_states = repeat_kv(key, module.num_key_value_groups)",
                            "attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling")),
    "self_attn.probs": (at("eager_attention_forward", "causal_mask = attention_mask[:, :, :, : key_states.shape[-2]]",
                           "attn_weights = attn_weights + causal_mask",
                           "attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)"),),
    "lm_head": (at("LlamaForCausalLM.forward", "slice_indices = slice(-logits_to_keep, None)", "logits = self.lm_head(hidden_states[:, slice_indices, :])"),),
    "last_hidden_state": (at(_MODEL, "hidden_states = self.norm(hidden_states)", "last_hidden_state=hidden_states"),),
}, STEPS)

HEADS = {
    "LlamaForCausalLM": Head("causal-lm", "lm_head", (Output("logits", "next-token", through=("lm_head",)),)),
    "LlamaForSequenceClassification": Head("sequence-classification", "score", (Output("logits", "labels"),)),
}


def catch_layer(layer, hooks) -> None:
    attn, mlp = layer.self_attn, layer.mlp
    hooks.on(layer.input_layernorm)
    hooks.on(attn.q_proj)
    hooks.on(attn.k_proj)
    hooks.on(attn.v_proj)
    hooks.returned("apply_rotary_pos_emb", attn, ("q_rope", "k_rope"))  # the rotated Q and K
    hooks.scores(attn)
    hooks.probs(attn, "attention_dropout")
    hooks.before(attn.o_proj, attn, "context")
    hooks.on(attn.o_proj)
    hooks.before(layer.post_attention_layernorm, attn, "residual")
    hooks.on(layer.post_attention_layernorm)
    hooks.on(mlp.gate_proj)
    hooks.on(mlp.act_fn)  # a module in transformers (ACT2FN gives instances)
    hooks.on(mlp.up_proj)
    hooks.before(mlp.down_proj, mlp, "gated")
    hooks.on(mlp.down_proj)
    hooks.on(layer, "mlp.residual")  # the layer ends with that sum
    hooks.on(layer)


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' LlamaModel or one of its heads that the twin has (``hooks``: annotate.capture.Hooks)."""
    model = getattr(hf, "model", hf)
    hooks.on(model.embed_tokens)
    hooks.on(model.rotary_emb, "cos", index=0)
    hooks.on(model.rotary_emb, "sin", index=1)
    for layer in model.layers:
        catch_layer(layer, hooks)
    hooks.on(model.norm)
    for head in ("lm_head", "score"):
        if hasattr(hf, head):
            hooks.on(getattr(hf, head))


# For ``annotate source``.
TWINS = {
    ("modeling_llama", "eager_attention_forward"): Twin(
        "reimpl.llama:LlamaAttention.forward", "the twin writes eager_attention_forward's lines inline, in its attention's forward",
        ("k = repeat_kv(k", "context = context.transpose"),
    ),
    ("modeling_llama", "LlamaPreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
}

CALL_PATH = ("LlamaAttention", "LlamaDecoderLayer", "LlamaModel", "LlamaMLP", "LlamaRMSNorm", "LlamaRotaryEmbedding",
             "apply_rotary_pos_emb", "repeat_kv", "LlamaForCausalLM")


# ---------------------------------------------------------------------------------------------
# annotate check (annotate/grader.py): the modules of Llama a learner can write and have graded.

from annotate.models import Graded, Sublayer  # noqa: E402  (kept beside what uses it)
from annotate.i18n import N_

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the packaged real checkpoint: the default model
_ATTN = ("q_proj", "k_proj", "v_proj", "q_rope", "k_rope", "scores", "probs", "context", "o_proj")
_LAYOUTS = {"q_rope": "heads", "k_rope": "heads", "scores": "scores", "probs": "probs"}


def _attention_branch(layer, h, args):
    return {}, layer.self_attn(h, args["rope"], args["mask4d"])[0]


def _mlp_branch(layer, h, args):
    return {}, layer.mlp(h)


GRADED = (
    Graded(
        "llama-attention", "LlamaAttention", "layers.{layer}.self_attn", call=("x", "rope", "mask4d"), args=("x", "mask", "rope"),
        returns=N_("the attention's output (B, T, C), after o_proj (or (output, probs)); the rotation, the shared key/value heads "
                   "and the causal mask are yours"),
        steps=_ATTN, output="o_proj", layouts=_LAYOUTS, causal=True, default_model=SMOLLM2, attention="",
        qkv=("q_proj", "k_proj", "v_proj"), out_proj="o_proj",
    ),
    Graded(
        "llama-layer", "LlamaDecoderLayer", "layers.{layer}", call=("x", "mask4d", "rope"), args=("x", "mask", "rope"),
        returns=N_("the layer's output (B, T, C): x + attn(RMSNorm(x)), then + mlp(RMSNorm(.)) (pre-norm, SwiGLU)"),
        steps=("input_layernorm", *(f"self_attn.{s}" for s in _ATTN), "self_attn.residual", "post_attention_layernorm",
               "mlp.gate_proj", "mlp.act_fn", "mlp.up_proj", "mlp.gated", "mlp.down_proj", "mlp.residual"),
        output="mlp.residual", layouts={f"self_attn.{k}": v for k, v in _LAYOUTS.items()}, causal=True, default_model=SMOLLM2,
        attention="self_attn", qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), out_proj="self_attn.o_proj",
        activation="mlp.act_fn",
        sublayers=(Sublayer(_attention_branch, "input_layernorm", "input_layernorm", "self_attn.residual"),
                   Sublayer(_mlp_branch, "post_attention_layernorm", "post_attention_layernorm", "mlp.residual")),
        pre_norm=True,
    ),
)
