"""What annotate knows of ALBERT (reimpl/albert.py, transformers' models/albert/modeling_albert.py).

Notation as annotate/models/bert.py's (Lan et al. 2020 for what ALBERT adds): E the embedding size
(128 in the released checkpoints), C the hidden size; e the embeddings, E wide, mapped up to C once
(the factorized embedding); l a step of the encoder's loop, L the number of steps, G the number of
layer groups: every step applies a shared group, so W and b carry no l. The steps inside a layer
are its group's layer ``albert_layers.j``, the same weights at every step.
"""

from __future__ import annotations

from annotate.models import Head, Output, anchors, at, bert, step

STEPS = {
    "embeddings.word_embeddings": step(
        "lookup", "e_tok = W_tok[input_ids], E wide", at("AlbertEmbeddings.forward", "inputs_embeds = self.word_embeddings(input_ids)")
    ),
    "embeddings.token_type_embeddings": step(
        "lookup", "e_seg = W_seg[token_type_ids], E wide",
        at("AlbertEmbeddings.forward", "token_type_embeddings = self.token_type_embeddings(token_type_ids)"),
    ),
    "embeddings.position_embeddings": step(
        "lookup", "e_pos = W_pos[position_ids], E wide",
        at("AlbertEmbeddings.forward", "position_embeddings = self.position_embeddings(position_ids)"),
    ),
    "embeddings.sum": step(
        "sum", "e = (e_tok + e_seg) + e_pos",
        at("AlbertEmbeddings.forward", "embeddings = inputs_embeds + token_type_embeddings", "embeddings = embeddings + position_embeddings"),
    ),
    "embeddings.LayerNorm": step("norm", "LayerNorm(e), E wide", at("AlbertEmbeddings.forward", "embeddings = self.LayerNorm(embeddings)")),
    "encoder.embedding_hidden_mapping_in": step(
        "projection", "X_0 = LayerNorm(e) W_in + b_in: E -> C, once (the factorized embedding)",
        at("AlbertTransformer.forward", "hidden_states = self.embedding_hidden_mapping_in(hidden_states)"),
    ),
    "albert_layers.N.attention.query": step(
        "query", "Q = X W_Q + b_Q, split into h heads of d_k", at("AlbertAttention.forward", "query_layer = self.query(hidden_states)")
    ),
    "albert_layers.N.attention.key": step(
        "key", "K = X W_K + b_K, split into h heads of d_k", at("AlbertAttention.forward", "key_layer = self.key(hidden_states)")
    ),
    "albert_layers.N.attention.value": step(
        "value", "V = X W_V + b_V, split into h heads of d_k", at("AlbertAttention.forward", "value_layer = self.value(hidden_states)")
    ),
    "albert_layers.N.attention.scores": step(
        "scores", "S = Q K^T / sqrt(d_k)", at("eager_attention_forward", "attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling")
    ),
    "albert_layers.N.attention.probs": step(
        "probs", "P = softmax(S + M)",
        at("eager_attention_forward", "attn_weights = attn_weights + attention_mask", "attn_weights = nn.functional.softmax(attn_weights, dim=-1)"),
    ),
    "albert_layers.N.attention.context": step(
        "context", "A = P V, the heads side by side: Concat(head_1, ..., head_h)",
        at("eager_attention_forward", "attn_output = torch.matmul(attn_weights, value)", "attn_output = attn_output.transpose(1, 2)"),
        at("AlbertAttention.forward", "attn_output = attn_output.reshape(*input_shape, -1).contiguous()"),
    ),
    "albert_layers.N.attention.dense": step("projection", "A W_O + b_O", at("AlbertAttention.forward", "attn_output = self.dense(attn_output)")),
    "albert_layers.N.attention.residual": step(
        "residual", "X + (A W_O + b_O)", at("AlbertAttention.forward", "attn_output = self.LayerNorm(hidden_states + attn_output)")
    ),
    "albert_layers.N.attention.LayerNorm": step(
        "norm", "X' = LayerNorm(X + MultiHead(X))", at("AlbertAttention.forward", "attn_output = self.LayerNorm(hidden_states + attn_output)")
    ),
    "albert_layers.N.ffn": step("mlp", "H = X' W_1 + b_1", at("AlbertLayer.ff_chunk", "ffn_output = self.ffn(attention_output)")),
    "albert_layers.N.activation": step(
        "activation", "GELU_tanh(H) (hidden_act, gelu_new in the released checkpoints)",
        at("AlbertLayer.ff_chunk", "ffn_output = self.activation(ffn_output)"),
    ),
    "albert_layers.N.ffn_output": step(
        "mlp", "FFN(X') = GELU_tanh(H) W_2 + b_2",
        at("AlbertLayer.ff_chunk", "ffn_output = self.ffn_output(ffn_output)"),
    ),
    "albert_layers.N.residual": step(
        "residual", "FFN(X') + X'", at("AlbertLayer.forward", "hidden_states = self.full_layer_layer_norm(ffn_output + attention_output)")
    ),
    "albert_layers.N.full_layer_layer_norm": step(
        "norm", "LayerNorm(FFN(X') + X'), the layer's output",
        at("AlbertLayer.forward", "hidden_states = self.full_layer_layer_norm(ffn_output + attention_output)"),
    ),
    "encoder.layer.N": step(
        "layer", "X_(l+1) = Group_g(X_l), g = int(l / (L / G)): the same shared group at every step",
        at("AlbertTransformer.forward", "group_idx = int(i / (", "hidden_states = self.albert_layer_groups[group_idx]("),
    ),
    "last_hidden_state": step("output", "H = X_L, the last step's output", at("AlbertModel.forward", "sequence_output = encoder_outputs[0]")),
    "pooler": step(
        "pool", "h_[CLS] W_p + b_p", at("AlbertModel.forward", "pooled_output = self.pooler_activation(self.pooler(sequence_output[:, 0]))")
    ),
    "pooler_activation": step(
        "pool", "pooled = tanh(h_[CLS] W_p + b_p)",
        at("AlbertModel.forward", "pooled_output = self.pooler_activation(self.pooler(sequence_output[:, 0]))"),
    ),
    "predictions.dense": step("head", "X_L W_t + b_t: C -> E", at("AlbertMLMHead.forward", "hidden_states = self.dense(hidden_states)")),
    "predictions.activation": step("head", "GELU_tanh(X_L W_t + b_t)", at("AlbertMLMHead.forward", "hidden_states = self.activation(hidden_states)")),
    "predictions.LayerNorm": step(
        "norm", "H_t = LayerNorm(GELU_tanh(X_L W_t + b_t)), E wide", at("AlbertMLMHead.forward", "hidden_states = self.LayerNorm(hidden_states)")
    ),
    "predictions.decoder": step(
        "head", "logits = H_t W_tok^T + b (W_tok: the word embeddings, E wide)",
        at("AlbertMLMHead.forward", "hidden_states = self.decoder(hidden_states)"),
    ),
    "sop_classifier.classifier": step(
        "head", "SOP logits = pooled W_sop + b_sop", at("AlbertSOPHead.forward", "logits = self.classifier(dropout_pooled_output)")
    ),
    "classifier": step("head", "logits = pooled W_c + b_c", at("AlbertForSequenceClassification.forward", "logits = self.classifier(pooled_output)")),
}

# transformers 4.57: the lines of the steps whose code differs from 5.x's (the same math). Its
# AlbertAttention is the eager path itself (no eager_attention_forward).
STEPS_4_57 = anchors({
    "embeddings.sum": (at("AlbertEmbeddings.forward", "embeddings = inputs_embeds + token_type_embeddings", "embeddings += position_embeddings"),),
    "albert_layers.N.attention.query": (
        at("AlbertAttention.forward", "query_layer = self.query(hidden_states)", "query_layer = query_layer.view("),
    ),
    "albert_layers.N.attention.key": (at("AlbertAttention.forward", "key_layer = self.key(hidden_states)", "key_layer = key_layer.view("),),
    "albert_layers.N.attention.value": (
        at("AlbertAttention.forward", "value_layer = self.value(hidden_states)", "value_layer = value_layer.view("),
    ),
    "albert_layers.N.attention.scores": (
        at("AlbertAttention.forward", "attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))",
           "attention_scores = attention_scores / math.sqrt(self.attention_head_size)"),
    ),
    "albert_layers.N.attention.probs": (
        at("AlbertAttention.forward", "attention_scores = attention_scores + attention_mask",
           "attention_probs = nn.functional.softmax(attention_scores, dim=-1)"),
    ),
    "albert_layers.N.attention.context": (
        at("AlbertAttention.forward", "context_layer = torch.matmul(attention_probs, value_layer)",
           "context_layer = context_layer.transpose(2, 1).flatten(2)"),
    ),
    "albert_layers.N.attention.dense": (at("AlbertAttention.forward", "projected_context_layer = self.dense(context_layer)"),),
    "albert_layers.N.attention.residual": (
        at("AlbertAttention.forward", "layernormed_context_layer = self.LayerNorm(hidden_states + projected_context_layer_dropout)"),
    ),
    "albert_layers.N.attention.LayerNorm": (
        at("AlbertAttention.forward", "layernormed_context_layer = self.LayerNorm(hidden_states + projected_context_layer_dropout)"),
    ),
    "albert_layers.N.residual": (at("AlbertLayer.forward", "hidden_states = self.full_layer_layer_norm(ffn_output + attention_output[0])"),),
    "albert_layers.N.full_layer_layer_norm": (
        at("AlbertLayer.forward", "hidden_states = self.full_layer_layer_norm(ffn_output + attention_output[0])"),
    ),
    "encoder.layer.N": (
        at("AlbertTransformer.forward", "group_idx = int(i / (", "layer_group_output = self.albert_layer_groups[group_idx](",
           "hidden_states = layer_group_output[0]"),
    ),
}, STEPS)

SENTENCE_LABELS = {0: "A then B, as written", 1: "B then A, swapped"}  # what sop_logits score

HEADS = {
    "AlbertForMaskedLM": Head("masked-lm", "predictions.decoder", (Output("logits", "masked-tokens", through=("predictions",)),)),
    "AlbertForPreTraining": Head(
        "pretraining",
        "predictions.decoder",
        (Output("prediction_logits", "masked-tokens", through=("predictions",)), Output("sop_logits", "labels", "sentence_order_label", SENTENCE_LABELS)),
    ),
    "AlbertForSequenceClassification": Head("sequence-classification", "classifier", (Output("logits", "labels"),)),
}


def catch_layer(layer, hooks) -> None:
    """One AlbertLayer; its names are set per call by ``hooks.numbered`` (encoder.layer.i.albert_layers.j)."""
    attention = layer.attention
    hooks.on(attention.query)
    hooks.on(attention.key)
    hooks.on(attention.value)
    hooks.scores(attention)
    hooks.before(attention.dense, attention, "context")  # the heads side by side, the projection's input
    hooks.probs(attention, "attention_dropout")  # in training, the weights after eager_attention_forward's dropout
    hooks.on(attention.dense)
    hooks.dropout(attention.output_dropout)
    hooks.before(attention.LayerNorm, attention, "residual")
    hooks.on(attention.LayerNorm)
    hooks.on(layer.ffn)
    hooks.on(layer.activation)  # a module in transformers (ACT2FN gives instances)
    hooks.on(layer.ffn_output)
    hooks.before(layer.full_layer_layer_norm, layer, "residual")
    hooks.on(layer.full_layer_layer_norm)


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' AlbertModel or one of its heads that the twin has."""
    base = getattr(hf, "albert", hf)
    bert.catch_embeddings(base.embeddings, hooks)  # the same attribute names as BERT's
    encoder = base.encoder
    hooks.on(encoder.embedding_hidden_mapping_in)
    # The groups run once per step of the encoder's loop: the i-th call is encoder.layer.i.
    hooks.numbered(encoder.albert_layer_groups, encoder, "layer")
    for group in encoder.albert_layer_groups:
        for layer in group.albert_layers:
            catch_layer(layer, hooks)
        hooks.on(group)  # encoder.layer.i: step i's output
    if base.pooler is not None:
        hooks.on(base.pooler)
        hooks.on(base.pooler_activation)
    if hasattr(hf, "classifier"):
        hooks.dropout(hf.dropout)
        hooks.on(hf.classifier)
    if hasattr(hf, "predictions"):
        hooks.on(hf.predictions.dense)
        hooks.on(hf.predictions.activation)  # a module in transformers
        hooks.on(hf.predictions.LayerNorm)
        hooks.on(hf.predictions.decoder)
    if hasattr(hf, "sop_classifier"):
        hooks.dropout(hf.sop_classifier.dropout)
        hooks.on(hf.sop_classifier.classifier)


# For ``annotate source``: names of the other major version of transformers (see annotate/models/bert.py).
RENAMED = {
    "AlbertSdpaAttention": ("AlbertAttention.forward", None,
        "AlbertSdpaAttention is transformers 4.x's (4.57 has it); 5.x has one AlbertAttention for every backend: shown"),
}
