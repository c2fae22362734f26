"""What annotate knows of BERT (reimpl/bert.py, transformers' models/bert/modeling_bert.py).

Notation (Vaswani et al. 2017, Devlin et al. 2019): X a layer's input (B, T, C), h heads of d_k each,
W and b a layer's weight and bias, M the additive mask (0 where a key may be seen, the dtype's
minimum where not), l a layer's index, L the number of layers.
"""

from __future__ import annotations

from annotate.models import INPUT_IDS, Box, Chart, Head, Output, Twin, anchors, at, step

# The encoder: embeddings, every layer, its output. RoBERTa and ELECTRA reuse it under their names.
ENCODER = {
    "embeddings.word_embeddings": step("lookup", "E_tok = W_tok[input_ids]", at("BertEmbeddings.forward", "inputs_embeds = self.word_embeddings(input_ids)")),
    "embeddings.token_type_embeddings": step(
        "lookup", "E_seg = W_seg[token_type_ids]", at("BertEmbeddings.forward", "token_type_embeddings = self.token_type_embeddings(token_type_ids)")
    ),
    "embeddings.position_embeddings": step(
        "lookup", "E_pos = W_pos[position_ids]", at("BertEmbeddings.forward", "position_embeddings = self.position_embeddings(position_ids)")
    ),
    "embeddings.sum": step(
        "sum", "E = (E_tok + E_seg) + E_pos",
        at("BertEmbeddings.forward", "embeddings = inputs_embeds + token_type_embeddings", "embeddings = embeddings + position_embeddings"),
    ),
    "embeddings.LayerNorm": step("norm", "X_0 = LayerNorm(E)", at("BertEmbeddings.forward", "embeddings = self.LayerNorm(embeddings)")),
    "attention.self.query": step("query", "Q = X W_Q + b_Q, split into h heads of d_k", at("BertSelfAttention.forward", "query_layer = self.query(hidden_states)")),
    "attention.self.key": step("key", "K = X W_K + b_K, split into h heads of d_k", at("BertSelfAttention.forward", "key_layer = self.key(hidden_states)")),
    "attention.self.value": step("value", "V = X W_V + b_V, split into h heads of d_k", at("BertSelfAttention.forward", "value_layer = self.value(hidden_states)")),
    "attention.self.scores": step(
        "scores", "S = Q K^T / sqrt(d_k)", at("eager_attention_forward", "attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling")
    ),
    "attention.self.probs": step(
        "probs", "P = softmax(S + M)",
        at("eager_attention_forward", "attn_weights = attn_weights + attention_mask", "attn_weights = nn.functional.softmax(attn_weights, dim=-1)"),
    ),
    "attention.self.context": step(
        "context", "A = P V, the heads side by side: Concat(head_1, ..., head_h)",
        at("eager_attention_forward", "attn_output = torch.matmul(attn_weights, value)", "attn_output = attn_output.transpose(1, 2)"),
        at("BertSelfAttention.forward", "attn_output = attn_output.reshape(*input_shape, -1).contiguous()"),
    ),
    "attention.output.dense": step("projection", "A W_O + b_O", at("BertSelfOutput.forward", "hidden_states = self.dense(hidden_states)")),
    "attention.output.residual": step("residual", "X + (A W_O + b_O)", at("BertSelfOutput.forward", "self.LayerNorm(hidden_states + input_tensor)")),
    "attention.output.LayerNorm": step("norm", "X' = LayerNorm(X + MultiHead(X))", at("BertSelfOutput.forward", "self.LayerNorm(hidden_states + input_tensor)")),
    "intermediate.dense": step("mlp", "H = X' W_1 + b_1", at("BertIntermediate.forward", "hidden_states = self.dense(hidden_states)")),
    "intermediate.intermediate_act_fn": step("activation", "GELU(H)", at("BertIntermediate.forward", "hidden_states = self.intermediate_act_fn(hidden_states)")),
    "output.dense": step("mlp", "FFN(X') = GELU(H) W_2 + b_2", at("BertOutput.forward", "hidden_states = self.dense(hidden_states)")),
    "output.residual": step("residual", "X' + FFN(X')", at("BertOutput.forward", "self.LayerNorm(hidden_states + input_tensor)")),
    "output.LayerNorm": step("norm", "X_(l+1) = LayerNorm(X' + FFN(X'))", at("BertOutput.forward", "self.LayerNorm(hidden_states + input_tensor)")),
    "encoder.layer.N": step("layer", "X_(l+1) = Layer_l(X_l)", at("BertEncoder.forward", "hidden_states = layer_module(")),
    "last_hidden_state": step("output", "H = X_L, the last layer's output", at("BertModel.forward", "sequence_output = encoder_outputs.last_hidden_state")),
}

POOLER = {
    "pooler.dense": step(
        "pool", "h_[CLS] W_p + b_p", at("BertPooler.forward", "first_token_tensor = hidden_states[:, 0]", "pooled_output = self.dense(first_token_tensor)")
    ),
    "pooler.activation": step("pool", "pooled = tanh(h_[CLS] W_p + b_p)", at("BertPooler.forward", "pooled_output = self.activation(pooled_output)")),
}

STEPS = {
    **ENCODER,
    **POOLER,
    "cls.predictions.transform.dense": step("head", "X_L W_t + b_t", at("BertPredictionHeadTransform.forward", "hidden_states = self.dense(hidden_states)")),
    "cls.predictions.transform.transform_act_fn": step(
        "head", "GELU(X_L W_t + b_t)", at("BertPredictionHeadTransform.forward", "hidden_states = self.transform_act_fn(hidden_states)")
    ),
    "cls.predictions.transform.LayerNorm": step(
        "norm", "H_t = LayerNorm(GELU(X_L W_t + b_t))", at("BertPredictionHeadTransform.forward", "hidden_states = self.LayerNorm(hidden_states)")
    ),
    "cls.predictions.decoder": step(
        "head", "logits = H_t W_tok^T + b (W_tok: the word embeddings)", at("BertLMPredictionHead.forward", "hidden_states = self.decoder(hidden_states)")
    ),
    "cls.seq_relationship": step(
        "head", "NSP logits = pooled W_nsp + b_nsp",
        at("BertPreTrainingHeads.forward", "seq_relationship_score = self.seq_relationship(pooled_output)"),
        at("BertOnlyNSPHead.forward", "seq_relationship_score = self.seq_relationship(pooled_output)"),
    ),
    "classifier": step("head", "logits = pooled W_c + b_c", at("BertForSequenceClassification.forward", "logits = self.classifier(pooled_output)")),
}

# transformers 4.57 (the last 4.x): the lines of the steps whose code differs from 5.x's
# (reimpl/versions.py lists what changed); the same math, so the formulas are STEPS'.
STEPS_4_57 = anchors({
    "embeddings.sum": (at("BertEmbeddings.forward", "embeddings = inputs_embeds + token_type_embeddings", "embeddings += position_embeddings"),),
    "attention.self.key": (at("BertSelfAttention.forward", "key_layer = self.key(current_states)"),),
    "attention.self.value": (at("BertSelfAttention.forward", "value_layer = self.value(current_states)"),),
    "attention.self.scores": (
        at("BertSelfAttention.forward", "attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))",
           "attention_scores = attention_scores / math.sqrt(self.attention_head_size)"),
    ),
    "attention.self.probs": (
        at("BertSelfAttention.forward", "attention_scores = attention_scores + attention_mask", "attention_probs = nn.functional.softmax(attention_scores, dim=-1)"),
    ),
    "attention.self.context": (
        at("BertSelfAttention.forward", "context_layer = torch.matmul(attention_probs, value_layer)",
           "context_layer = context_layer.permute(0, 2, 1, 3).contiguous()", "context_layer = context_layer.view(new_context_layer_shape)"),
    ),
    "encoder.layer.N": (at("BertEncoder.forward", "layer_outputs = layer_module(", "hidden_states = layer_outputs[0]"),),
    "last_hidden_state": (at("BertModel.forward", "sequence_output = encoder_outputs[0]"),),
}, STEPS)

SENTENCE_LABELS = {0: "B follows A", 1: "B is random"}  # what seq_relationship_logits score
MLM_HEAD = ("cls.predictions",)  # BertLMPredictionHead: the transform (dense, activation, LayerNorm), then the decoder

HEADS = {
    "BertForMaskedLM": Head("masked-lm", "cls.predictions.decoder", (Output("logits", "masked-tokens", through=MLM_HEAD),)),
    "BertForPreTraining": Head(
        "pretraining",
        "cls.predictions.decoder",
        (Output("prediction_logits", "masked-tokens", through=MLM_HEAD), Output("seq_relationship_logits", "labels", "next_sentence_label", SENTENCE_LABELS)),
    ),
    "BertForNextSentencePrediction": Head("next-sentence", "cls.seq_relationship", (Output("logits", "labels", "labels", SENTENCE_LABELS),)),
    "BertForSequenceClassification": Head("sequence-classification", "classifier", (Output("logits", "labels"),)),
}


# ---------------------------------------------------------------------------------------------
# Where transformers computes each recorded step (``hooks``: annotate.capture.Hooks).


def catch_embeddings(e, hooks) -> None:
    hooks.on(e.word_embeddings)
    hooks.on(e.token_type_embeddings)
    hooks.on(e.position_embeddings)
    hooks.before(e.LayerNorm, e, "sum")  # words + types + positions, LayerNorm's input
    hooks.on(e.LayerNorm)
    hooks.dropout(e.dropout)


def catch_layer(layer, hooks) -> None:
    s, out = layer.attention.self, layer.attention.output
    hooks.on(s.query)
    hooks.on(s.key)
    hooks.on(s.value)
    hooks.scores(s)
    hooks.on(s, "context", index=0)
    hooks.probs(s, "dropout")  # in training, the weights after eager_attention_forward's dropout
    hooks.on(out.dense)
    hooks.dropout(out.dropout)
    hooks.before(out.LayerNorm, out, "residual")
    hooks.on(out.LayerNorm)
    hooks.on(layer.intermediate.dense)
    hooks.on(layer.intermediate, "intermediate_act_fn")
    hooks.on(layer.output.dense)
    hooks.dropout(layer.output.dropout)
    hooks.before(layer.output.LayerNorm, layer.output, "residual")
    hooks.on(layer.output.LayerNorm)
    hooks.on(layer)  # encoder.layer.i: the layer's output


def catch_encoder(base, hooks) -> None:
    """Embeddings, layers and pooler of a BERT-shaped base model (RoBERTa's, ELECTRA's too)."""
    catch_embeddings(base.embeddings, hooks)
    for layer in base.encoder.layer:
        catch_layer(layer, hooks)
    if getattr(base, "pooler", None) is not None:
        hooks.on(base.pooler.dense)
        hooks.on(base.pooler, "activation")


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' BertModel or one of its heads that the twin has."""
    catch_encoder(getattr(hf, "bert", hf), hooks)
    if hasattr(hf, "classifier"):
        hooks.dropout(hf.dropout)
        hooks.on(hf.classifier)
    predictions = getattr(getattr(hf, "cls", None), "predictions", None)
    if predictions is not None:
        hooks.on(predictions.transform.dense)
        hooks.on(predictions.transform.transform_act_fn)  # a module in HF (ACT2FN gives instances)
        hooks.on(predictions.transform.LayerNorm)
        hooks.on(predictions.decoder)
    if hasattr(getattr(hf, "cls", None), "seq_relationship"):
        hooks.on(hf.cls.seq_relationship)


# ---------------------------------------------------------------------------------------------
# For ``annotate source``: transformers names whose math the twin writes elsewhere (HF's five
# classes per layer are one forward in the twin), names that moved between versions, and the
# classes a reader meets first.

_LAYER = "reimpl.bert:BertLayer.forward"

TWINS = {
    ("modeling_bert", "eager_attention_forward"): Twin(
        "reimpl.bert:BertSelfAttention.forward",
        "the twin writes eager_attention_forward's lines inline, in its attention's forward",
        ("scores = torch.matmul", "context = context.transpose"),
    ),
    ("modeling_bert", "BertAttention"): Twin(
        _LAYER, "BertAttention = BertSelfAttention, then BertSelfOutput: the first half of the twin's BertLayer.forward",
        ("context, _ = self.attention.self", 'record(attention, "LayerNorm"'),
    ),
    ("modeling_bert", "BertSelfOutput"): Twin(
        _LAYER, "BertSelfOutput's projection, residual and LayerNorm are these lines of the twin's BertLayer.forward",
        ("# BertSelfOutput", 'record(attention, "LayerNorm"'),
    ),
    ("modeling_bert", "BertIntermediate"): Twin(
        _LAYER, "BertIntermediate's dense and activation are these lines of the twin's BertLayer.forward",
        ("# BertIntermediate", 'record(ffn_in, "intermediate_act_fn"'),
    ),
    ("modeling_bert", "BertOutput"): Twin(
        _LAYER, "BertOutput's projection, residual and LayerNorm are these lines of the twin's BertLayer.forward",
        ("# BertOutput", 'record(ffn_out, "LayerNorm"'),
    ),
    ("modeling_bert", "BertLayer.feed_forward_chunk"): Twin(
        _LAYER, "the feed-forward (BertIntermediate, then BertOutput); the twin never chunks it",
        ("# BertIntermediate", 'record(ffn_out, "LayerNorm"'),
    ),
    ("modeling_bert", "BertEncoder"): Twin(
        "reimpl.bert:BertModel.forward", "the encoder is the loop over the layers in the twin's BertModel.forward",
        ("for i, layer in enumerate", "record(self.encoder"),
    ),
    ("modeling_bert", "BertPooler"): Twin(
        "reimpl.bert:BertModel.forward", "the pooler is the tail of the twin's BertModel.forward",
        ("if self.pooler is not None", 'record(self.pooler, "activation"'),
    ),
    ("modeling_bert", "BertModel._create_attention_masks"): Twin(
        "reimpl.bert:additive_mask", "an encoder's mask hides padding keys only: create_bidirectional_mask -> eager_mask"
    ),
    ("modeling_bert", "BertPreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
    ("modeling_bert", "BertPredictionHeadTransform"): Twin(
        "reimpl.bert:BertLMPredictionHead.forward", "the transform is the first lines of the twin's BertLMPredictionHead.forward",
        ("t = self.transform", 'record(t, "LayerNorm"'),
    ),
    ("modeling_bert", "BertOnlyMLMHead"): Twin("reimpl.bert:BertLMPredictionHead", "BertOnlyMLMHead only holds `predictions`: the twin's cls is a Namespace"),
    ("modeling_bert", "BertOnlyNSPHead"): Twin(
        "reimpl.bert:BertForNextSentencePrediction.forward", "one linear layer on the pooled [CLS]: cls.seq_relationship"
    ),
    ("modeling_bert", "BertPreTrainingHeads"): Twin(
        "reimpl.bert:BertForPreTraining.forward", "both heads, called from the twin's BertForPreTraining.forward"
    ),
    ("modeling_bert", "BertCrossAttention"): Twin(None, "left out: cross-attention (BERT as a decoder); see reimpl/bert.py's docstring"),
    ("modeling_bert", "BertLMHeadModel"): Twin(None, "left out: BERT as a decoder (is_decoder); see reimpl/bert.py's docstring"),
    # The mask an encoder builds: padding keys only, in one function of the twin.
    ("masking_utils", "eager_mask"): Twin("reimpl.bert:additive_mask", "BERT's eager mask: padding keys only (--model gpt2 for the causal one)"),
    ("masking_utils", "sdpa_mask"): Twin(
        "reimpl.bert:additive_mask", "eager_mask is sdpa_mask's booleans turned into 0 / finfo.min, as here", ("keep =", "return torch.where")
    ),
    ("masking_utils", "create_bidirectional_mask"): Twin("reimpl.bert:additive_mask", "what BertModel builds: padding keys hidden"),
    ("masking_utils", "bidirectional_mask_function"): Twin("reimpl.bert:additive_mask", "every key allowed, except padding"),
    ("masking_utils", "padding_mask_function"): Twin("reimpl.bert:additive_mask", "padding keys hidden", ("keep =", "keep =")),
}

# Names of the other major version of transformers (reimpl/versions.py): name -> (what to show
# instead, its --model, what changed). A 4.x tutorial's names under 5.x, 5.x's names under 4.57.
RENAMED = {
    "transpose_for_scores": ("BertSelfAttention.forward", None,
        "transpose_for_scores was BertSelfAttention's method in 4.x tutorials: split the heads, view to (B, T, nh, hs) and "
        "transpose to (B, nh, T, hs); by 4.57 that is written inline in BertSelfAttention.forward, as in 5.x: shown"),
    "BertSdpaSelfAttention": ("BertSelfAttention.forward", None,
        "BertSdpaSelfAttention is transformers 4.x's (4.57 has it): a subclass per backend, picked from "
        "BERT_SELF_ATTENTION_CLASSES. 5.x has one BertSelfAttention that asks ALL_ATTENTION_FUNCTIONS for the function "
        "named by config._attn_implementation (sdpa: sdpa_attention_forward): shown"),
    "BERT_SELF_ATTENTION_CLASSES": ("BertSelfAttention.forward", None,
        "BERT_SELF_ATTENTION_CLASSES is transformers 4.x's (4.57 has it): a dict from backend name to attention class. "
        "5.x picks a function instead, in BertSelfAttention.forward: shown"),
    "get_extended_attention_mask": ("create_bidirectional_mask", None,
        "get_extended_attention_mask is transformers 4.x's (4.57 has it, on every model): BERT's additive mask, "
        "(1 - mask) * finfo.min. 5.x builds it in masking_utils: shown"),
    # 5.x names that 4.57 does not have
    "create_bidirectional_mask": ("BertModel.forward", None,
        "create_bidirectional_mask is transformers 5.x's; 4.57 builds BERT's mask in BertModel.forward with "
        "get_extended_attention_mask (the same 0 / finfo.min values): shown"),
    "BertCrossAttention": ("BertLayer.__init__", None,
        "BertCrossAttention is transformers 5.x's; 4.57 builds cross-attention as a second BertAttention, "
        "BertLayer.crossattention: shown"),
}
RENAMED["BertSelfAttention.transpose_for_scores"] = RENAMED["transpose_for_scores"]
RENAMED_4_57 = {  # where 4.57 has the name, but where the finder does not index it
    "get_extended_attention_mask": ("PreTrainedModel.get_extended_attention_mask", None,
        "get_extended_attention_mask is a method every 4.57 model inherits (ModuleUtilsMixin); 5.x builds "
        "the mask in masking_utils (create_bidirectional_mask): shown"),
    "BERT_SELF_ATTENTION_CLASSES": ("BertAttention.__init__", None,
        "BERT_SELF_ATTENTION_CLASSES is a dict, which the finder does not list; BertAttention.__init__ picks "
        "the attention class from it by config._attn_implementation: shown"),
}

CALL_PATH = ("BertSelfAttention", "BertLayer", "BertModel", "BertEmbeddings", "BertAttention", "BertSelfOutput",
             "BertIntermediate", "BertOutput", "BertEncoder")


# ---------------------------------------------------------------------------------------------
# The flow chart of guide 1 (annotate/diagrams.py): LayerNorm *after* each residual addition
# (post-LN), so the stream between layers is normalised. Read from the real all-MiniLM-L6-v2
# (6 layers, hidden 384, 12 heads of 32, feed-forward 1536).


def chart_trace(text: str):
    import annotate

    return annotate.trace("sentence-transformers/all-MiniLM-L6-v2", text)


L = "encoder.layer.{layer}"
CHART = Chart(
    name="bert",
    title="BertLayer × {layers}, post-LN",
    before=(
        Box("ids", "input_ids: {tokens}", INPUT_IDS),
        Box("emb", "word + token type + position embeddings", "embeddings.sum"),
        Box("emb_ln", "LayerNorm", "embeddings.LayerNorm", "norm"),
    ),
    layer=(
        Box("x", "layer input", kind="io"),
        Box("qkv", "query, key, value: {heads} heads × {head_size}", f"{L}.attention.self.query"),
        Box("probs", "softmax(Q·Kᵀ / √{head_size} + mask)", f"{L}.attention.self.probs"),
        Box("ctx", "probs · V, heads concatenated", f"{L}.attention.self.context"),
        Box("proj", "attention.output.dense", f"{L}.attention.output.dense"),
        Box("add1", "+", f"{L}.attention.output.residual", "add"),
        Box("ln1", "attention.output.LayerNorm", f"{L}.attention.output.LayerNorm", "norm"),
        Box("up", "intermediate.dense, GELU", f"{L}.intermediate.intermediate_act_fn"),
        Box("down", "output.dense", f"{L}.output.dense"),
        Box("add2", "+", f"{L}.output.residual", "add"),
        Box("ln2", "output.LayerNorm", f"{L}.output.LayerNorm", "norm"),
    ),
    after=(
        Box("out", "last_hidden_state", "last_hidden_state"),
        Box("pool", "pooler: dense, tanh, on [CLS]'s vector", "pooler.activation"),
    ),
    edges=(
        ("ids", "emb", ""),
        ("emb", "emb_ln", ""),
        ("emb_ln", "x", ""),
        ("x", "qkv", ""),
        ("qkv", "probs", ""),
        ("probs", "ctx", ""),
        ("ctx", "proj", ""),
        ("proj", "add1", ""),
        ("add1", "ln1", ""),
        ("ln1", "up", ""),
        ("up", "down", ""),
        ("down", "add2", ""),
        ("add2", "ln2", ""),
        ("ln2", "out", "after layer {layers}"),
        ("out", "pool", ""),
    ),
    residuals=(("x", "add1"), ("ln1", "add2")),
    trace=chart_trace,
)


# ---------------------------------------------------------------------------------------------
# annotate check (annotate/grader.py): the modules of BERT a learner can write and have graded.

from annotate.models import Graded, Sublayer  # noqa: E402  (kept beside what uses it)
from annotate.i18n import N_

MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # the packaged real checkpoint: the default model
_SELF = ("query", "key", "value", "scores", "probs", "context")
_LAYOUTS = {"query": "heads", "key": "heads", "value": "heads", "scores": "scores", "probs": "probs"}


def _attention_branch(layer, h, args):
    """BertAttention's branch on ``h``: self-attention, then the output projection."""
    context, _ = layer.attention.self(h, args["mask"])
    dense = layer.attention.output.dense(context)
    return {"attention.output.dense": dense}, dense


def _feed_forward_branch(layer, h, args):
    """BertIntermediate and BertOutput's dense on ``h``: up, the activation, down."""
    up = layer.intermediate.dense(h)
    activated = layer.intermediate_act_fn(up)
    down = layer.output.dense(activated)
    return {"intermediate.dense": up, "intermediate.intermediate_act_fn": activated, "output.dense": down}, down


GRADED = (
    Graded(
        "bert-embeddings", "BertEmbeddings", "embeddings", call=("ids", "types", "positions"), args=("ids", "types"),
        returns=N_("the embeddings (B, T, C): word + token type + position embeddings, then LayerNorm; the positions are yours to count"),
        steps=("word_embeddings", "token_type_embeddings", "position_embeddings", "sum", "LayerNorm"), output="LayerNorm",
        layouts={"position_embeddings": "positions"}, default_model=MINILM,
    ),
    Graded(
        "bert-attention", "BertSelfAttention", "encoder.layer.{layer}.attention.self", call=("x", "mask"), args=("x", "mask"),
        returns=N_("the heads' context (B, T, C), before the output projection (or (context, probs), as transformers returns)"),
        steps=_SELF, output="context", layouts=_LAYOUTS, default_model=MINILM, attention="", qkv=("query", "key", "value"),
    ),
    Graded(
        "bert-layer", "BertLayer", "encoder.layer.{layer}", call=("x", "mask"), args=("x", "mask"),
        returns=N_("the layer's output (B, T, C): attention and feed-forward, each with its residual and LayerNorm (post-LN)"),
        steps=(*(f"attention.self.{s}" for s in _SELF), "attention.output.dense", "attention.output.residual", "attention.output.LayerNorm",
               "intermediate.dense", "intermediate.intermediate_act_fn", "output.dense", "output.residual", "output.LayerNorm"),
        output="output.LayerNorm", layouts={f"attention.self.{k}": v for k, v in _LAYOUTS.items()}, default_model=MINILM,
        attention="attention.self", qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
        out_proj="attention.output.dense", activation="intermediate_act_fn",
        sublayers=(Sublayer(_attention_branch, "attention.output.LayerNorm", "attention.output.LayerNorm", "attention.output.residual"),
                   Sublayer(_feed_forward_branch, "output.LayerNorm", "output.LayerNorm", "output.residual")),
    ),
)
