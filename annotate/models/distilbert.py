"""What annotate knows of DistilBERT (reimpl/distilbert.py, transformers' models/distilbert/modeling_distilbert.py).

Notation as annotate/models/bert.py's (Sanh et al. 2019: BERT's post-LN layer, half the layers):
no token types, so e = e_tok + e_pos; Q, K and V are recorded as q_lin, k_lin and v_lin give them,
(B, T, C), before the split into h heads of d_k; transformers adds each branch to its input
(branch + X), the other order from BERT's X + branch.
"""

from __future__ import annotations

from annotate.models import Head, Output, anchors, at, step

STEPS = {
    "embeddings.word_embeddings": step(
        "lookup", "e_tok = W_tok[input_ids]",
        at("Embeddings.forward", "inputs_embeds = self.word_embeddings(input_ids)"),
    ),
    "embeddings.position_embeddings": step(
        "lookup", "e_pos = W_pos[position_ids] (learned, or a fixed sin/cos table with sinusoidal_pos_embds)",
        at("Embeddings.forward", "position_embeddings = self.position_embeddings(position_ids)"),
    ),
    "embeddings.sum": step("sum", "e = e_tok + e_pos (no token types)", at("Embeddings.forward", "embeddings = inputs_embeds + position_embeddings")),
    "embeddings.LayerNorm": step("norm", "X_0 = LayerNorm(e)", at("Embeddings.forward", "embeddings = self.LayerNorm(embeddings)")),
    "attention.q_lin": step(
        "query", "Q = X W_Q + b_Q (then split into h heads of d_k)",
        at("DistilBertSelfAttention.forward", "query_layer = self.q_lin(hidden_states).view(*hidden_shape).transpose(1, 2)"),
    ),
    "attention.k_lin": step(
        "key", "K = X W_K + b_K (then split into h heads of d_k)",
        at("DistilBertSelfAttention.forward", "key_layer = self.k_lin(hidden_states).view(*hidden_shape).transpose(1, 2)"),
    ),
    "attention.v_lin": step(
        "value", "V = X W_V + b_V (then split into h heads of d_k)",
        at("DistilBertSelfAttention.forward", "value_layer = self.v_lin(hidden_states).view(*hidden_shape).transpose(1, 2)"),
    ),
    "attention.scores": step(
        "scores", "S = Q K^T / sqrt(d_k)", at("eager_attention_forward", "attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling")
    ),
    "attention.probs": step(
        "probs", "P = softmax(S + M)",
        at("eager_attention_forward", "attn_weights = attn_weights + attention_mask", "attn_weights = nn.functional.softmax(attn_weights, dim=-1)"),
    ),
    "attention.context": step(
        "context", "A = P V, the heads side by side: Concat(head_1, ..., head_h)",
        at("eager_attention_forward", "attn_output = torch.matmul(attn_weights, value)", "attn_output = attn_output.transpose(1, 2)"),
        at("DistilBertSelfAttention.forward", "attn_output = attn_output.reshape(*input_shape, -1).contiguous()"),
    ),
    "attention.out_lin": step(
        "projection", "MultiHead(X) = A W_O + b_O",
        at("DistilBertSelfAttention.forward", "attn_output = self.out_lin(attn_output)"),
    ),
    "attention.residual": step(
        "residual", "MultiHead(X) + X", at("TransformerBlock.forward", "attention_output = self.sa_layer_norm(attention_output + hidden_states)")
    ),
    "sa_layer_norm": step(
        "norm", "X' = LayerNorm(MultiHead(X) + X)",
        at("TransformerBlock.forward", "attention_output = self.sa_layer_norm(attention_output + hidden_states)"),
    ),
    "ffn.lin1": step("mlp", "H = X' W_1 + b_1", at("FFN.ff_chunk", "x = self.lin1(input)")),
    "ffn.activation": step("activation", "GELU(H) (config.activation)", at("FFN.ff_chunk", "x = self.activation(x)")),
    "ffn.lin2": step("mlp", "FFN(X') = GELU(H) W_2 + b_2", at("FFN.ff_chunk", "x = self.lin2(x)")),
    "ffn.residual": step(
        "residual", "FFN(X') + X'",
        at("TransformerBlock.forward", "ffn_output = self.output_layer_norm(ffn_output + attention_output)"),
    ),
    "output_layer_norm": step(
        "norm", "X_(l+1) = LayerNorm(FFN(X') + X')",
        at("TransformerBlock.forward", "ffn_output = self.output_layer_norm(ffn_output + attention_output)"),
    ),
    "transformer.layer.N": step("layer", "X_(l+1) = Layer_l(X_l)", at("Transformer.forward", "hidden_states = layer_module(")),
    "last_hidden_state": step(
        "output", "H = X_L, the last layer's output (no pooler)", at("Transformer.forward", "return BaseModelOutput(last_hidden_state=hidden_states)")
    ),
    "vocab_transform": step(
        "head", "X_L W_t + b_t", at("DistilBertForMaskedLM.forward", "prediction_logits = self.vocab_transform(hidden_states)")
    ),
    "activation": step("head", "GELU(X_L W_t + b_t)", at("DistilBertForMaskedLM.forward", "prediction_logits = self.activation(prediction_logits)")),
    "vocab_layer_norm": step(
        "norm", "H_t = LayerNorm(GELU(X_L W_t + b_t))",
        at("DistilBertForMaskedLM.forward", "prediction_logits = self.vocab_layer_norm(prediction_logits)"),
    ),
    "vocab_projector": step(
        "head", "logits = H_t W_tok^T + b (W_tok: the word embeddings)",
        at("DistilBertForMaskedLM.forward", "prediction_logits = self.vocab_projector(prediction_logits)"),
    ),
    "pre_classifier": step(
        "head", "h_[CLS] W_pre + b_pre (where BERT has its pooler)",
        at("DistilBertForSequenceClassification.forward", "pooled_output = hidden_state[:, 0]", "pooled_output = self.pre_classifier(pooled_output)"),
    ),
    "relu": step(
        "head", "pooled = ReLU(h_[CLS] W_pre + b_pre) (BERT's pooler has tanh)",
        at("DistilBertForSequenceClassification.forward", "pooled_output = nn.ReLU()(pooled_output)"),
    ),
    "classifier": step(
        "head", "logits = pooled W_c + b_c",
        at("DistilBertForSequenceClassification.forward", "logits = self.classifier(pooled_output)"),
    ),
}

# transformers 4.57: the lines of the steps whose code differs from 5.x's. Its MultiHeadSelfAttention
# is the eager path itself (no eager_attention_forward), called with query = key = value = x.
STEPS_4_57 = {
    **anchors({
        "embeddings.word_embeddings": (at("Embeddings.forward", "input_embeds = self.word_embeddings(input_ids)"),),
        "embeddings.sum": (at("Embeddings.forward", "embeddings = input_embeds + position_embeddings"),),
        "attention.q_lin": (at("MultiHeadSelfAttention.forward", "q = shape(self.q_lin(query))"),),
        "attention.k_lin": (at("MultiHeadSelfAttention.forward", "k = shape(self.k_lin(key))"),),
        "attention.v_lin": (at("MultiHeadSelfAttention.forward", "v = shape(self.v_lin(value))"),),
        "attention.context": (at("MultiHeadSelfAttention.forward", "context = torch.matmul(weights, v)", "context = unshape(context)"),),
        "attention.out_lin": (at("MultiHeadSelfAttention.forward", "context = self.out_lin(context)"),),
        "attention.residual": (at("TransformerBlock.forward", "sa_output = self.sa_layer_norm(sa_output + x)"),),
        "sa_layer_norm": (at("TransformerBlock.forward", "sa_output = self.sa_layer_norm(sa_output + x)"),),
        "ffn.residual": (at("TransformerBlock.forward", "ffn_output: torch.Tensor = self.output_layer_norm(ffn_output + sa_output)"),),
        "output_layer_norm": (at("TransformerBlock.forward", "ffn_output: torch.Tensor = self.output_layer_norm(ffn_output + sa_output)"),),
        "transformer.layer.N": (at("Transformer.forward", "layer_outputs = layer_module(", "hidden_state = layer_outputs[-1]"),),
        "last_hidden_state": (at("Transformer.forward", "last_hidden_state=hidden_state, hidden_states=all_hidden_states"),),
    }, STEPS),
    # Not only other lines: 4.57 scales Q before the product (5.x scales the product), and sets the
    # padding keys' scores to the dtype's minimum (5.x adds the mask): the same values in exact arithmetic.
    "attention.scores": step(
        "scores", "S = (Q / sqrt(d_k)) K^T: Q scaled before the product",
        at("MultiHeadSelfAttention.forward", "q = q / math.sqrt(dim_per_head)", "scores = torch.matmul(q, k.transpose(2, 3))"),
    ),
    "attention.probs": step(
        "probs", "P = softmax(S, the padding keys' scores set to the dtype's minimum)",
        at("MultiHeadSelfAttention.forward", "mask = (mask == 0).view(mask_reshp).expand_as(scores)", "scores = scores.masked_fill(",
           "weights = nn.functional.softmax(scores, dim=-1)"),
    ),
}

HEADS = {
    "DistilBertForMaskedLM": Head(
        "masked-lm", "vocab_projector",
        (Output("logits", "masked-tokens", through=("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector")),),
    ),
    "DistilBertForSequenceClassification": Head("sequence-classification", "classifier", (Output("logits", "labels"),)),
}


def catch_layer(layer, hooks) -> None:
    a, ffn = layer.attention, layer.ffn
    hooks.on(a.q_lin)
    hooks.on(a.k_lin)
    hooks.on(a.v_lin)
    hooks.scores(a)
    hooks.probs(a, "dropout")  # in training, the weights after eager_attention_forward's dropout
    hooks.before(a.out_lin, a, "context")  # out_lin's input: the heads side by side
    hooks.on(a.out_lin)
    hooks.before(layer.sa_layer_norm, a, "residual")
    hooks.on(layer.sa_layer_norm)
    hooks.on(ffn.lin1)
    hooks.on(ffn.activation)  # a module in HF (get_activation gives an instance)
    hooks.on(ffn.lin2)
    hooks.dropout(ffn.dropout)
    hooks.before(layer.output_layer_norm, ffn, "residual")
    hooks.on(layer.output_layer_norm)
    hooks.on(layer)  # transformer.layer.i: the layer's output


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' DistilBertModel or one of its heads that the twin has."""
    base = getattr(hf, "distilbert", hf)
    e = base.embeddings
    hooks.on(e.word_embeddings)
    hooks.on(e.position_embeddings)
    hooks.before(e.LayerNorm, e, "sum")  # words + positions, LayerNorm's input
    hooks.on(e.LayerNorm)
    hooks.dropout(e.dropout)
    for layer in base.transformer.layer:
        catch_layer(layer, hooks)
    if hasattr(hf, "vocab_projector"):
        hooks.on(hf.vocab_transform)
        hooks.on(hf.activation)
        hooks.on(hf.vocab_layer_norm)
        hooks.on(hf.vocab_projector)
    if hasattr(hf, "pre_classifier"):
        hooks.on(hf.pre_classifier)
        hooks.before(hf.dropout, hf, "relu")  # the ReLU's output is the dropout's input
        hooks.dropout(hf.dropout)
        hooks.on(hf.classifier)


# For ``annotate source``: names of the other major version of transformers (see annotate/models/bert.py).
RENAMED = {
    "DistilBertSdpaAttention": ("DistilBertSelfAttention.forward", None,
        "DistilBertSdpaAttention is transformers 4.x's (4.57 has it); 5.x has one DistilBertSelfAttention for every backend: shown"),
    "MultiHeadSelfAttention": ("DistilBertSelfAttention", None,
        "MultiHeadSelfAttention is transformers 4.x's name (4.57 has it) for DistilBERT's attention; 5.x renamed it "
        "DistilBertSelfAttention: shown"),
    # 5.x names that 4.57 does not have
    "DistilBertSelfAttention": ("MultiHeadSelfAttention", None,
        "DistilBertSelfAttention is transformers 5.x's name; 4.57 calls it MultiHeadSelfAttention: shown"),
}
