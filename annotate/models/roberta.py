"""What annotate knows of RoBERTa (reimpl/roberta.py, transformers' models/roberta/modeling_roberta.py).

RoBERTa's encoder is BERT's, line for line under its own class names: BERT's steps with
``Roberta`` for ``Bert``. Its heads are its own (RobertaLMHead, RobertaClassificationHead).
"""

from __future__ import annotations

from annotate.models import Head, Output, at, bert, renamed, step

STEPS = {
    **renamed({**bert.ENCODER, **bert.POOLER}, "Bert", "Roberta"),
    # RobertaLMHead (RobertaForMaskedLM's lm_head): BERT's MLM head in one flat module.
    "lm_head.dense": step("head", "H W_d + b_d", at("RobertaLMHead.forward", "x = self.dense(features)")),
    "lm_head.gelu": step(
        "head", "GELU(H W_d + b_d): the exact erf GELU, whatever hidden_act says", at("RobertaLMHead.forward", "x = gelu(x)")
    ),
    "lm_head.layer_norm": step("norm", "H_t = LayerNorm(GELU(H W_d + b_d))", at("RobertaLMHead.forward", "x = self.layer_norm(x)")),
    "lm_head.decoder": step(
        "head", "logits = H_t W_tok^T + b (W_tok: the word embeddings, tied; b its own)", at("RobertaLMHead.forward", "x = self.decoder(x)")
    ),
    # RobertaClassificationHead: a pooler of its own on the <s> token, trained with the task, then the scores.
    "classifier.dense": step(
        "head", "h_<s> W_d + b_d (h_<s>: the first token's row of H)",
        at("RobertaClassificationHead.forward", "x = features[:, 0, :]", "x = self.dense(x)"),
    ),
    "classifier.tanh": step("head", "tanh(h_<s> W_d + b_d)", at("RobertaClassificationHead.forward", "x = torch.tanh(x)")),
    "classifier.out_proj": step("head", "logits = tanh(h_<s> W_d + b_d) W_o + b_o", at("RobertaClassificationHead.forward", "x = self.out_proj(x)")),
}
# transformers 4.57: the heads' lines are 5.x's; only the encoder's differ (BERT's, renamed).
STEPS_4_57 = renamed({k: v for k, v in bert.STEPS_4_57.items() if k in STEPS}, "Bert", "Roberta")

HEADS = {
    "RobertaForMaskedLM": Head("masked-lm", "lm_head.decoder", (Output("logits", "masked-tokens", through=("lm_head",)),)),
    "RobertaForSequenceClassification": Head("sequence-classification", "classifier.out_proj", (Output("logits", "labels"),)),
}


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' RobertaModel or one of its heads that the twin has (XLM-RoBERTa's
    too: the same attribute names). Embeddings and layers are laid out as BERT's."""
    bert.catch_encoder(getattr(hf, "roberta", hf), hooks)
    lm_head = getattr(hf, "lm_head", None)
    if lm_head is not None:
        hooks.on(lm_head.dense)
        hooks.before(lm_head.layer_norm, lm_head, "gelu")  # HF's gelu is a module-level function, not a submodule
        hooks.on(lm_head.layer_norm)
        hooks.on(lm_head.decoder)
    classifier = getattr(hf, "classifier", None)
    if classifier is not None:
        hooks.on(classifier.dense)
        # torch.tanh's output is the input of the dropout's second call (which overwrites the first's).
        hooks.before(classifier.dropout, classifier, "tanh")
        hooks.dropout(classifier.dropout)
        hooks.on(classifier.out_proj)
