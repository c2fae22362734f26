"""What annotate knows of BART (reimpl/bart.py, transformers' models/bart/modeling_bart.py).

Marian's encoder-decoder (annotate/models/marian.py), its steps under BART's class names, with
BART's own embeddings: learned positions (read at position + 2), the token embedding scaled
inside its module (by 1 in BART's checkpoints), and a LayerNorm after their sum. Its heads:
BartForConditionalGeneration (Marian's lm_head and final_logits_bias) and
BartForSequenceClassification (the decoder's state at the source's last </s>, then a small head).
"""

from __future__ import annotations

from annotate.models import Head, Output, Twin, anchors, at, marian, renamed, step

_ENC = "BartEncoder.forward"
_DEC = "BartDecoder.forward"
_HEAD = "BartClassificationHead.forward"
_LOGITS = "BartForConditionalGeneration.forward"


def embeddings(stack: str, function: str, lookup: str, positions: str, total: str) -> dict:
    return {
        f"{stack}.embed_tokens": step("lookup", "W_tok[ids] * embed_scale (BartScaledWordEmbedding; 1 unless scale_embedding)", at(function, lookup)),
        f"{stack}.embed_positions": step("lookup", "P[positions + 2]: learned rows, offset by 2", at(function, positions)),
        f"{stack}.sum": step("sum", "W_tok[ids] + P", at(function, total)),
        f"{stack}.layernorm_embedding": step("norm", "X_0 = LayerNorm(W_tok[ids] + P)", at(function, "hidden_states = self.layernorm_embedding(hidden_states)")),
    }


_MARIAN = renamed({k: v for k, v in marian.STEPS.items() if not k.startswith(("encoder.embed", "encoder.sum", "decoder.embed", "decoder.sum"))},
                  "Marian", "Bart")

STEPS = {
    **embeddings("encoder", _ENC, "inputs_embeds = self.embed_tokens(input_ids)", "embed_pos = self.embed_positions(inputs_embeds[:, :, -1])",
                 "hidden_states = inputs_embeds + embed_pos"),
    **embeddings("decoder", _DEC, "inputs_embeds = self.embed_tokens(input_ids)",
                 "positions = self.embed_positions(input_ids, cache_length, position_ids=position_ids)", "hidden_states = inputs_embeds + positions"),
    **_MARIAN,
    "lm_head": step("head", "Y_L W_tok^T (lm_head is the shared table)", at(_LOGITS, "lm_logits = self.lm_head(outputs[0])")),
    "logits": step("head", "logits = Y_L W_tok^T + final_logits_bias", at(_LOGITS, "lm_logits = lm_logits + self.final_logits_bias.to(lm_logits.device)")),
    "last_hidden_state": step("output", "Y_L, the last decoder layer's output", at("BartModel.forward", "last_hidden_state=decoder_outputs.last_hidden_state")),
    "sentence_representation": step("pool", "h_</s>: the decoder's state at the source's last </s>",
                                    at("BartForSequenceClassification.forward", "eos_mask = input_ids.eq(self.config.eos_token_id).to(hidden_states.device)",
                                       "sentence_representation = selected.view(hidden_states.size(0), -1, hidden_states.size(-1))[:, -1, :]")),
    "classification_head.dense": step("head", "h_</s> W_d + b_d", at(_HEAD, "hidden_states = self.dense(hidden_states)")),
    "classification_head.tanh": step("head", "tanh(h_</s> W_d + b_d)", at(_HEAD, "hidden_states = torch.tanh(hidden_states)")),
    "classification_head.out_proj": step("head", "logits = tanh(h_</s> W_d + b_d) W_o + b_o", at(_HEAD, "hidden_states = self.out_proj(hidden_states)")),
}

STEPS_4_57 = anchors({
    **{k: parts.hf for k, parts in renamed({k: v for k, v in marian.STEPS_4_57.items() if k in _MARIAN}, "Marian", "Bart").items()},
    "encoder.embed_positions": (at(_ENC, "embed_pos = self.embed_positions(input)"),),
    "decoder.embed_tokens": (at(_DEC, "inputs_embeds = self.embed_tokens(input)"),),
    "decoder.embed_positions": (at(_DEC, "positions = self.embed_positions(input, past_key_values_length, position_ids=cache_position)"),),
    "sentence_representation": (at("BartForSequenceClassification.forward", "eos_mask = input_ids.eq(self.config.eos_token_id).to(hidden_states.device)",
                                   "sentence_representation = hidden_states[eos_mask, :].view(hidden_states.size(0), -1, hidden_states.size(-1))["),),
}, STEPS)

HEADS = {
    "BartForConditionalGeneration": Head("translation", "logits", (Output("logits", "next-token"),)),
    "BartForSequenceClassification": Head("sequence-classification", "classification_head.out_proj", (Output("logits", "labels"),)),
}


def catch_stack(stack, hooks) -> None:
    hooks.on(stack.embed_tokens)  # BartScaledWordEmbedding: the scaled lookup, its own module in each stack
    hooks.on(stack.embed_positions)
    hooks.before(stack.layernorm_embedding, stack, "sum")
    hooks.on(stack.layernorm_embedding)
    for layer in stack.layers:
        marian.catch_layer(layer, hooks)


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' BartModel or one of its heads that the twin has."""
    model = getattr(hf, "model", hf)
    catch_stack(model.encoder, hooks)
    catch_stack(model.decoder, hooks)
    if hasattr(hf, "lm_head"):
        hooks.on(hf.lm_head)
        hooks.on(hf, "logits", index="logits")
    if hasattr(hf, "classification_head"):
        head = hf.classification_head
        hooks.before(head, hf, "sentence_representation")
        hooks.on(head.dense)
        hooks.before(head.out_proj, head, "tanh")  # (eval: the dropout between is the identity)
        hooks.on(head.out_proj)


# For ``annotate source``: BART's eager attention is the one the Marian twin writes inline.
TWINS = {
    ("modeling_bart", "eager_attention_forward"): Twin(
        "reimpl.marian:MarianAttention.forward", "BartAttention is MarianAttention; the twin writes eager_attention_forward's lines inline there",
        ("scores = torch.matmul", "context = context.transpose"),
    ),
    ("modeling_bart", "BartPreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
}
CALL_PATH = ("BartAttention", "BartEncoderLayer", "BartDecoderLayer", "BartEncoder", "BartDecoder", "BartLearnedPositionalEmbedding",
             "BartScaledWordEmbedding", "BartModel", "BartForConditionalGeneration", "BartClassificationHead", "shift_tokens_right")
