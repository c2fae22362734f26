"""What annotate knows of ELECTRA (reimpl/electra.py, transformers' models/electra/modeling_electra.py).

ELECTRA's encoder is BERT's under its own class names: BERT's steps with ``Electra`` for ``Bert``;
the embedding projection and the heads are its own.
"""

from __future__ import annotations

from annotate.models import Head, Output, anchors, at, bert, renamed, step

STEPS = {
    **renamed(bert.ENCODER, "Bert", "Electra"),
    "embeddings_project": step(
        "projection", "X_0 = LayerNorm(E_tok + E_seg + E_pos) W_p + b_p: width E up to C (only where E != C)",
        at("ElectraModel.forward", "embedding_output = self.embeddings_project(embedding_output)"),
    ),
    # No pooler and no sequence_output: ElectraModel.forward returns the encoder's last hidden state as it is.
    "last_hidden_state": step(
        "output", "H = X_L, the last layer's output", at("ElectraModel.forward", "last_hidden_state=encoder_outputs.last_hidden_state")
    ),
    # ElectraForPreTraining: the discriminator, one logit per token (was it replaced?).
    "discriminator_predictions.dense": step(
        "head", "H W_d + b_d", at("ElectraDiscriminatorPredictions.forward", "hidden_states = self.dense(discriminator_hidden_states)")
    ),
    "discriminator_predictions.activation": step(
        "head", "act(H W_d + b_d), act the config's hidden_act (GELU)",
        at("ElectraDiscriminatorPredictions.forward", "hidden_states = self.activation(hidden_states)"),
    ),
    "discriminator_predictions.dense_prediction": step(
        "head", "logits = act(H W_d + b_d) w + b: one per token, > 0 where it reads as replaced",
        at("ElectraDiscriminatorPredictions.forward", "logits = self.dense_prediction(hidden_states).squeeze(-1)"),
    ),
    # ElectraForMaskedLM: the generator, a masked-LM head at width E.
    "generator_predictions.dense": step(
        "head", "H W_g + b_g: width C down to E", at("ElectraGeneratorPredictions.forward", "hidden_states = self.dense(generator_hidden_states)")
    ),
    "generator_predictions.activation": step(
        "head", "GELU(H W_g + b_g): the exact GELU, whatever hidden_act says",
        at("ElectraGeneratorPredictions.forward", "hidden_states = self.activation(hidden_states)"),
    ),
    "generator_predictions.LayerNorm": step(
        "norm", "H_g = LayerNorm(GELU(H W_g + b_g)), width E",
        at("ElectraGeneratorPredictions.forward", "hidden_states = self.LayerNorm(hidden_states)"),
    ),
    "generator_lm_head": step(
        "head", "logits = H_g W_tok^T + b (W_tok: the word embeddings, E wide, tied; b its own)",
        at("ElectraForMaskedLM.forward", "prediction_scores = self.generator_lm_head(prediction_scores)"),
    ),
    # ElectraClassificationHead: dense, GELU (where BERT's pooler has tanh), out_proj on the first token.
    "classifier.dense": step(
        "head", "h_[CLS] W_d + b_d (h_[CLS]: the first token's row of H)",
        at("ElectraClassificationHead.forward", "x = features[:, 0, :]", "x = self.dense(x)"),
    ),
    "classifier.activation": step(
        "head", "GELU(h_[CLS] W_d + b_d): the exact GELU, fixed (not hidden_act)", at("ElectraClassificationHead.forward", "x = self.activation(x)")
    ),
    "classifier.out_proj": step(
        "head", "logits = GELU(h_[CLS] W_d + b_d) W_o + b_o", at("ElectraClassificationHead.forward", "x = self.out_proj(x)")
    ),
}
# transformers 4.57: BERT's encoder lines renamed, and ElectraModel.forward's own (the heads' are 5.x's).
STEPS_4_57 = {
    **renamed({k: v for k, v in bert.STEPS_4_57.items() if k in STEPS}, "Bert", "Electra"),
    **anchors({
        "embeddings_project": (at("ElectraModel.forward", "hidden_states = self.embeddings_project(hidden_states)"),),
        # the encoder's output (a BaseModelOutput) is returned whole
        "last_hidden_state": (at("ElectraModel.forward", "hidden_states = self.encoder(", "return hidden_states"),),
    }, STEPS),
}

HEADS = {
    "ElectraForPreTraining": Head("replaced-token-detection", "discriminator_predictions.dense_prediction", (Output("logits", "replaced-tokens"),)),
    "ElectraForMaskedLM": Head(
        "masked-lm", "generator_lm_head", (Output("logits", "masked-tokens", through=("generator_predictions", "generator_lm_head")),)
    ),
    "ElectraForSequenceClassification": Head("sequence-classification", "classifier.out_proj", (Output("logits", "labels"),)),
}


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' ElectraModel or one of its heads that the twin has."""
    base = getattr(hf, "electra", hf)
    bert.catch_embeddings(base.embeddings, hooks)  # BERT's layout, at width E
    if hasattr(base, "embeddings_project"):
        hooks.on(base.embeddings_project)
    for layer in base.encoder.layer:
        bert.catch_layer(layer, hooks)
    if hasattr(hf, "discriminator_predictions"):
        d = hf.discriminator_predictions
        hooks.on(d.dense)
        hooks.on(d.activation)  # a module in HF (ACT2FN gives instances)
        hooks.on(d.dense_prediction)
    if hasattr(hf, "generator_predictions"):
        g = hf.generator_predictions
        hooks.on(g.dense)
        hooks.on(g.activation)
        hooks.on(g.LayerNorm)
        hooks.on(hf.generator_lm_head)
    if hasattr(hf, "classifier"):
        c = hf.classifier
        hooks.on(c.dense)
        hooks.on(c.activation)
        hooks.dropout(c.dropout)  # applied twice; the second call (out_proj's input) overwrites the first
        hooks.on(c.out_proj)
