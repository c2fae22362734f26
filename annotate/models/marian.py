"""What annotate knows of Marian (reimpl/marian.py, transformers' models/marian/modeling_marian.py):
the paper's encoder-decoder.

Notation as annotate/models/bert.py's, and: X the source's states (S tokens), Y the target's (T
tokens); E the encoder's output; PE the sinusoid table; M_pad the source's padding mask, M_causal
the target's (a token sees itself and earlier ones). Each sublayer is post-LN, as in the paper:
x = LayerNorm(x + Sublayer(x)).
"""

from __future__ import annotations

from annotate.models import Head, Output, Twin, anchors, at, step

_ATTN = "MarianAttention.forward"
_ENC = "MarianEncoder.forward"
_DEC = "MarianDecoder.forward"
_ENC_LAYER = "MarianEncoderLayer.forward"
_DEC_LAYER = "MarianDecoderLayer.forward"
_RESIDUAL = "hidden_states = residual + hidden_states"
_FC1 = "hidden_states = self.activation_fn(self.fc1(hidden_states))"  # one line, two steps


def attention(prefix: str, formula_q: str, source: str, mask: str, reads: str) -> dict:
    """The steps of one attention: ``prefix`` its path ("encoder.layers.N.self_attn"); Q from
    ``formula_q``, K and V from ``source``, masked by ``mask``."""
    return {
        f"{prefix}.q_proj": step("query", f"Q = {formula_q} W_Q + b_Q, h heads of d_k",
                                 at(_ATTN, "query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)")),
        f"{prefix}.k_proj": step("key", f"K = {source} W_K + b_K", at(_ATTN, "key_states = self.k_proj(current_states)")),
        f"{prefix}.v_proj": step("value", f"V = {source} W_V + b_V", at(_ATTN, "value_states = self.v_proj(current_states)")),
        f"{prefix}.scores": step("scores", f"S = Q K^T / sqrt(d_k): {reads}",
                                 at("eager_attention_forward", "attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling")),
        f"{prefix}.probs": step("probs", f"P = softmax(S + {mask})",
                                at("eager_attention_forward", "attn_weights = attn_weights + attention_mask",
                                   "attn_weights = nn.functional.softmax(attn_weights, dim=-1)")),
        f"{prefix}.context": step("context", "A = P V, the heads side by side",
                                  at("eager_attention_forward", "attn_output = torch.matmul(attn_weights, value)",
                                     "attn_output = attn_output.transpose(1, 2).contiguous()"),
                                  at(_ATTN, "attn_output = attn_output.reshape(*input_shape, -1).contiguous()")),
        f"{prefix}.out_proj": step("projection", "MultiHead = A W_O + b_O", at(_ATTN, "attn_output = self.out_proj(attn_output)")),
    }


def feed_forward(prefix: str, layer: str, x: str) -> dict:
    """fc1, the activation, fc2, the residual and the final LayerNorm of a layer at ``prefix``."""
    return {
        f"{prefix}.fc1": step("mlp", f"H = {x} W_1 + b_1", at(layer, _FC1)),
        f"{prefix}.activation_fn": step("activation", "act(H) (opus-mt: swish, x sigmoid(x); the paper: ReLU)", at(layer, _FC1)),
        f"{prefix}.fc2": step("mlp", "FFN = act(H) W_2 + b_2", at(layer, "hidden_states = self.fc2(hidden_states)")),
        f"{prefix}.fc2.residual": step("residual", f"{x} + FFN({x})", at(layer, "hidden_states = self.fc2(hidden_states)", _RESIDUAL)),
        f"{prefix}.final_layer_norm": step("norm", f"LayerNorm({x} + FFN({x})): the layer's output",
                                           at(layer, "hidden_states = self.final_layer_norm(hidden_states)")),
    }


ENCODER = {
    "encoder.embed_tokens": step("lookup", "W_tok[source ids]", at(_ENC, "inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale")),
    "encoder.embed_positions": step("lookup", "PE[0..S-1]: sin in the first half of each row, cos in the second",
                                    at(_ENC, "embed_pos = self.embed_positions(inputs_embeds.shape[:-1])"),
                                    at("MarianSinusoidalPositionalEmbedding.create_weight", "out[:, 0:sentinel] = torch.FloatTensor(np.sin(position_enc[:, 0::2]))",
                                       "out[:, sentinel:] = torch.FloatTensor(np.cos(position_enc[:, 1::2]))")),
    "encoder.sum": step("sum", "X_0 = W_tok[ids] sqrt(d_model) + PE (the paper's 3.4: embeddings times sqrt(d_model))",
                        at(_ENC, "inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale", "hidden_states = inputs_embeds + embed_pos")),
    **attention("encoder.layers.N.self_attn", "X", "X", "M_pad", "every source token against every other"),
    "encoder.layers.N.self_attn.residual": step("residual", "X + MultiHead(X)", at(_ENC_LAYER, _RESIDUAL)),
    "encoder.layers.N.self_attn_layer_norm": step("norm", "X' = LayerNorm(X + MultiHead(X))",
                                                  at(_ENC_LAYER, "hidden_states = self.self_attn_layer_norm(hidden_states)")),
    **feed_forward("encoder.layers.N", _ENC_LAYER, "X'"),
    "encoder.layers.N": step("layer", "X_(l+1) = EncoderLayer_l(X_l); the last is E, what the decoder attends to",
                             at(_ENC, "hidden_states = encoder_layer(")),
}

DECODER = {
    "decoder.embed_tokens": step("lookup", "W_tok[target ids so far] (the start token first)", at(_DEC, "inputs_embeds = self.embed_tokens(input_ids)")),
    "decoder.embed_positions": step("lookup", "PE[past..past+T-1]: positions after the cached tokens",
                                    at(_DEC, "position_ids = self.embed_positions((batch_size, seq_length), cache_length, position_ids=position_ids)")),
    "decoder.sum": step("sum", "Y_0 = W_tok[ids] sqrt(d_model) + PE",
                        at(_DEC, "inputs_embeds = inputs_embeds * self.embed_scale", "hidden_states = inputs_embeds + position_ids")),
    **attention("decoder.layers.N.self_attn", "Y", "Y", "M_causal", "each target token against itself and the earlier ones"),
    "decoder.layers.N.self_attn.residual": step("residual", "Y + MaskedMultiHead(Y)", at(_DEC_LAYER, _RESIDUAL)),
    "decoder.layers.N.self_attn_layer_norm": step("norm", "Y' = LayerNorm(Y + MaskedMultiHead(Y))",
                                                  at(_DEC_LAYER, "hidden_states = self.self_attn_layer_norm(hidden_states)")),
    **attention("decoder.layers.N.encoder_attn", "Y'", "E", "M_pad",
                "cross-attention, each target token against every source token (K, V from the encoder's output)"),
    "decoder.layers.N.encoder_attn.residual": step("residual", "Y' + MultiHead(Y', E)", at(_DEC_LAYER, "= self.encoder_attn(", _RESIDUAL)),
    "decoder.layers.N.encoder_attn_layer_norm": step("norm", "Y'' = LayerNorm(Y' + MultiHead(Y', E))",
                                                     at(_DEC_LAYER, "hidden_states = self.encoder_attn_layer_norm(hidden_states)")),
    **feed_forward("decoder.layers.N", _DEC_LAYER, "Y''"),
    "decoder.layers.N": step("layer", "Y_(l+1) = DecoderLayer_l(Y_l, E)", at(_DEC, "hidden_states = decoder_layer(")),
}

STEPS = {
    **ENCODER,
    **DECODER,
    "lm_head": step("head", "Y_L W_tok^T: a score per target token (lm_head is the embedding table when tied)",
                    at("MarianMTModel.forward", "lm_logits = self.lm_head(outputs[0]) + self.final_logits_bias")),
    "logits": step("head", "logits = Y_L W_tok^T + final_logits_bias", at("MarianMTModel.forward", "lm_logits = self.lm_head(outputs[0]) + self.final_logits_bias")),
    "last_hidden_state": step("output", "Y_L, the last decoder layer's output", at("MarianModel.forward", "last_hidden_state=decoder_outputs.last_hidden_state")),
}

# transformers 4.57: the same math on other lines.
STEPS_4_57 = anchors({
    "encoder.embed_positions": (at(_ENC, "embed_pos = self.embed_positions(input_shape)"),
                                at("MarianSinusoidalPositionalEmbedding._init_weight", "out[:, 0:sentinel] = torch.FloatTensor(np.sin(position_enc[:, 0::2]))",
                                   "out[:, sentinel:] = torch.FloatTensor(np.cos(position_enc[:, 1::2]))")),
    "decoder.embed_tokens": (at(_DEC, "inputs_embeds = self.embed_tokens(input)"),),
    "decoder.embed_positions": (at(_DEC, "position_ids = self.embed_positions("),),
    **{f"{stack}.{attn}.q_proj": (at(_ATTN, "query_states = self.q_proj(hidden_states).view(*q_input_shape).transpose(1, 2)"),)
       for stack, attn in (("encoder.layers.N", "self_attn"), ("decoder.layers.N", "self_attn"), ("decoder.layers.N", "encoder_attn"))},
    **{f"{stack}.{attn}.context": (at("eager_attention_forward", "attn_output = torch.matmul(attn_weights, value)",
                                      "attn_output = attn_output.transpose(1, 2).contiguous()"),
                                   at(_ATTN, "attn_output = attn_output.reshape(bsz, tgt_len, -1).contiguous()"))
       for stack, attn in (("encoder.layers.N", "self_attn"), ("decoder.layers.N", "self_attn"), ("decoder.layers.N", "encoder_attn"))},
    "encoder.layers.N": (at(_ENC, "layer_outputs = encoder_layer("),),
    "decoder.layers.N": (at(_DEC, "layer_outputs = decoder_layer("),),
    "last_hidden_state": (at("MarianModel.forward", "last_hidden_state=decoder_outputs.last_hidden_state"),),
}, STEPS)

HEADS = {
    "MarianMTModel": Head("translation", "logits", (Output("logits", "next-token"),)),
}


def catch_attention(attn, hooks) -> None:
    hooks.on(attn.q_proj)
    hooks.on(attn.k_proj)
    hooks.on(attn.v_proj)
    hooks.scores(attn)
    hooks.probs(attn, "dropout")
    hooks.before(attn.out_proj, attn, "context")
    hooks.on(attn.out_proj)


def catch_layer(layer, hooks) -> None:
    """One encoder or decoder layer: its attentions, each residual as the next LayerNorm's input, the feed-forward."""
    catch_attention(layer.self_attn, hooks)
    hooks.before(layer.self_attn_layer_norm, layer.self_attn, "residual")
    hooks.on(layer.self_attn_layer_norm)
    if hasattr(layer, "encoder_attn"):
        catch_attention(layer.encoder_attn, hooks)
        hooks.before(layer.encoder_attn_layer_norm, layer.encoder_attn, "residual")
        hooks.on(layer.encoder_attn_layer_norm)
    hooks.on(layer.fc1)
    hooks.on(layer.activation_fn)  # a module in transformers (ACT2FN gives instances)
    hooks.on(layer.fc2)
    hooks.before(layer.final_layer_norm, layer.fc2, "residual")
    hooks.on(layer.final_layer_norm)
    hooks.on(layer)


def catch_stack(stack, hooks) -> None:
    """The encoder or the decoder: the raw token lookup (4.57's encoder and decoder call one shared
    module: caught while each runs), the positions, their sum (the input of the dropout that follows)."""
    hooks.inside(stack.embed_tokens, stack, "embed_tokens")
    hooks.on(stack.embed_positions)
    hooks.dropout_input(stack, "sum")
    for layer in stack.layers:
        catch_layer(layer, hooks)


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' MarianModel or MarianMTModel (``hooks``: annotate.capture.Hooks)."""
    model = getattr(hf, "model", hf)
    catch_stack(model.encoder, hooks)
    catch_stack(model.decoder, hooks)
    if hasattr(hf, "lm_head"):
        hooks.on(hf.lm_head)
        hooks.on(hf, "logits", index="logits")


# For ``annotate source``.
TWINS = {
    ("modeling_marian", "eager_attention_forward"): Twin(
        "reimpl.marian:MarianAttention.forward", "the twin writes eager_attention_forward's lines inline, in its attention's forward",
        ("scores = torch.matmul", "context = context.transpose"),
    ),
    ("modeling_marian", "MarianPreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
}

CALL_PATH = ("MarianAttention", "MarianEncoderLayer", "MarianDecoderLayer", "MarianEncoder", "MarianDecoder",
             "MarianSinusoidalPositionalEmbedding", "MarianModel", "MarianMTModel", "shift_tokens_right")


# ---------------------------------------------------------------------------------------------
# annotate check (annotate/grader.py): the modules of Marian a learner can write and have graded.

from annotate.models import Graded, Sublayer  # noqa: E402  (kept beside what uses it)
from annotate.i18n import N_  # noqa: E402

TRANSLATOR = "marian-numbers-en-zh"  # the packaged real translator (annotate/data/): the default model
# Two English numbers and their Chinese numerals (as num2words and cn2an write them, the translator's
# own translations too). Both sides padded: the source to S = 11 tokens, the target to T = 11 (the
# first pair's lengths), so that a mask mistake shows on each side; S = T also lets keys and values
# taken from the decoder instead of the encoder run, and show as numbers.
_SOURCES = ("seven hundred and twelve thousand, four hundred and eighty", "five hundred and twelve")
_TARGETS = ("七十一万二千四百八十", "五百一十二")
_ATTENTION_STEPS = ("q_proj", "k_proj", "v_proj", "scores", "probs", "context", "out_proj")
_SELF_LAYOUTS = {"scores": "scores", "probs": "probs"}
_CROSS_LAYOUTS = {"k_proj": "memory", "v_proj": "memory", "scores": "cross-scores", "probs": "cross-probs"}
_FEED_FORWARD = ("fc1", "activation_fn", "fc2", "fc2.residual", "final_layer_norm")


def _self_attention_branch(layer, h, args):
    return {}, layer.self_attn(h, attention_mask=args["mask4d"])[0]


def _cross_attention_branch(layer, h, args):
    return {}, layer.encoder_attn(h, key_value_states=args["memory"], attention_mask=args["source_mask4d"])[0]


def _feed_forward_branch(layer, h, args):
    """fc1, the activation, fc2 on ``h`` (the layer's feed_forward records them, not the modules)."""
    up = layer.fc1(h)
    activated = layer.activation_fn(up)
    down = layer.fc2(activated)
    return {"fc1": up, "activation_fn": activated, "fc2": down}, down


_SELF_SUBLAYER = Sublayer(_self_attention_branch, "self_attn_layer_norm", "self_attn_layer_norm", "self_attn.residual")
_FF_SUBLAYER = Sublayer(_feed_forward_branch, "final_layer_norm", "final_layer_norm", "fc2.residual")
_INPUT = dict(default_model=TRANSLATOR, texts=_SOURCES, targets=_TARGETS)

GRADED = (
    Graded(
        "marian-cross-attention", "MarianAttention", "decoder.layers.{layer}.encoder_attn", call=("x", "memory", None, "source_mask4d"),
        args=("x", "memory", "source_mask"),
        returns=N_("the cross-attention's output (B, T, C), after out_proj (or (output, probs)): queries from the decoder's x, "
                   "keys and values from the memory, the source's padding masked"),
        steps=_ATTENTION_STEPS, output="out_proj", layouts=_CROSS_LAYOUTS, attention="", qkv=("q_proj", "k_proj", "v_proj"), out_proj="out_proj",
        cross={"": "key_value_states"}, **_INPUT,
    ),
    Graded(
        "marian-decoder-layer", "MarianDecoderLayer", "decoder.layers.{layer}", call=("x", "mask4d", "memory", "source_mask4d", None),
        args=("x", "mask", "memory", "source_mask"),
        returns=N_("the layer's output (B, T, C): LayerNorm(x + causal self-attention(x)), then LayerNorm(. + cross-attention(., memory)), "
                   "then LayerNorm(. + FFN(.)) (post-LN); the causal mask is yours to apply"),
        steps=(*(f"self_attn.{s}" for s in _ATTENTION_STEPS), "self_attn.residual", "self_attn_layer_norm",
               *(f"encoder_attn.{s}" for s in _ATTENTION_STEPS), "encoder_attn.residual", "encoder_attn_layer_norm", *_FEED_FORWARD),
        output="final_layer_norm",
        layouts={**{f"self_attn.{k}": v for k, v in _SELF_LAYOUTS.items()}, **{f"encoder_attn.{k}": v for k, v in _CROSS_LAYOUTS.items()}},
        causal=True, attention="self_attn", qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), out_proj="self_attn.out_proj",
        activation="activation_fn",
        sublayers=(_SELF_SUBLAYER,
                   Sublayer(_cross_attention_branch, "encoder_attn_layer_norm", "encoder_attn_layer_norm", "encoder_attn.residual"),
                   _FF_SUBLAYER),
        cross={"encoder_attn": "key_value_states"}, **_INPUT,
    ),
    Graded(
        "marian-encoder-layer", "MarianEncoderLayer", "encoder.layers.{layer}", call=("x", "mask4d"), args=("x", "mask"),
        returns=N_("the layer's output (B, S, C): LayerNorm(x + self-attention(x)), then LayerNorm(. + FFN(.)) (post-LN), over the source"),
        steps=(*(f"self_attn.{s}" for s in _ATTENTION_STEPS), "self_attn.residual", "self_attn_layer_norm", *_FEED_FORWARD),
        output="final_layer_norm", layouts={f"self_attn.{k}": v for k, v in _SELF_LAYOUTS.items()},
        attention="self_attn", qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), out_proj="self_attn.out_proj",
        activation="activation_fn", sublayers=(_SELF_SUBLAYER, _FF_SUBLAYER), **_INPUT,
    ),
)
