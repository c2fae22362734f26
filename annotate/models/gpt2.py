"""What annotate knows of GPT-2 (reimpl/gpt2.py, transformers' models/gpt2/modeling_gpt2.py).

Notation as annotate/models/bert.py's; LN_1, LN_2, LN_f GPT-2's three LayerNorms (pre-LN: each
branch opens with one, and one follows the last block).
"""

from __future__ import annotations

from annotate.models import INPUT_IDS, Box, Chart, Head, Output, Twin, anchors, at, step

STEPS = {
    "wte": step("lookup", "E_tok = W_te[input_ids]", at("GPT2Model.forward", "inputs_embeds = self.wte(input_ids)")),
    "wpe": step("lookup", "E_pos = W_pe[position_ids]", at("GPT2Model.forward", "position_embeds = self.wpe(position_ids)")),
    "token_type_embeds": step(
        "lookup", "E_seg = W_te[token_type_ids] (token types are looked up in the token table)",
        at("GPT2Model.forward", "token_type_embeds = self.wte(token_type_ids)"),
    ),
    "sum": step(
        "sum", "X_0 = E_tok + E_pos (+ E_seg)",
        at("GPT2Model.forward", "hidden_states = inputs_embeds + position_embeds", "hidden_states = hidden_states + token_type_embeds"),
    ),
    "h.N": step("layer", "X_(l+1) = Block_l(X_l)", at("GPT2Model.forward", "hidden_states = block(")),
    "ln_1": step("norm", "LN_1(X)", at("GPT2Block.forward", "hidden_states = self.ln_1(hidden_states)")),
    "attn.query": step(
        "query", "Q = LN_1(X) W_Q + b_Q (c_attn's first C columns), split into h heads of d_k",
        at("GPT2Attention.forward", "= self.c_attn(hidden_states).split(", "query_states = query_states.view(shape_q).transpose(1, 2)"),
    ),
    "attn.key": step(
        "key", "K = LN_1(X) W_K + b_K (c_attn's next C columns), split into heads; with a cache, the cached keys first",
        at("GPT2Attention.forward", "= self.c_attn(hidden_states).split(", "key_states = key_states.view(shape_kv).transpose(1, 2)",
           "key_states, value_states = curr_cache.update("),
    ),
    "attn.value": step(
        "value", "V = LN_1(X) W_V + b_V (c_attn's last C columns), split into heads; with a cache, the cached values first",
        at("GPT2Attention.forward", "= self.c_attn(hidden_states).split(", "value_states = value_states.view(shape_kv).transpose(1, 2)",
           "key_states, value_states = curr_cache.update("),
    ),
    "attn.scores": step(
        "scores", "S = Q K^T / sqrt(d_k)", at("eager_attention_forward", "attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling")
    ),
    "attn.probs": step(
        "probs", "P = softmax(S + M) (M: the future and padding)",
        at("eager_attention_forward", "attn_weights = attn_weights + attention_mask", "attn_weights = nn.functional.softmax(attn_weights, dim=-1)",
           "attn_weights = attn_weights.type(value.dtype)"),
    ),
    "attn.context": step(
        "context", "A = P V, the heads side by side: Concat(head_1, ..., head_h)",
        at("eager_attention_forward", "attn_output = torch.matmul(attn_weights, value)", "attn_output = attn_output.transpose(1, 2)"),
        at("GPT2Attention.forward", "attn_output = attn_output.reshape(*attn_output.shape[:-2], -1).contiguous()"),
    ),
    "attn.c_proj": step("projection", "Attn(LN_1(X)) = A W_O + b_O", at("GPT2Attention.forward", "attn_output = self.c_proj(attn_output)")),
    "attn.residual": step("residual", "X' = X + Attn(LN_1(X))", at("GPT2Block.forward", "hidden_states = attn_output + residual")),
    "ln_2": step("norm", "LN_2(X')", at("GPT2Block.forward", "hidden_states = self.ln_2(hidden_states)")),
    "mlp.c_fc": step("mlp", "H = LN_2(X') W_1 + b_1", at("GPT2MLP.forward", "hidden_states = self.c_fc(hidden_states)")),
    "mlp.act": step("activation", "GELU_tanh(H)", at("GPT2MLP.forward", "hidden_states = self.act(hidden_states)")),
    "mlp.c_proj": step("mlp", "MLP(LN_2(X')) = GELU_tanh(H) W_2 + b_2", at("GPT2MLP.forward", "hidden_states = self.c_proj(hidden_states)")),
    "mlp.residual": step("residual", "X_(l+1) = X' + MLP(LN_2(X'))", at("GPT2Block.forward", "hidden_states = residual + feed_forward_hidden_states")),
    "ln_f": step("norm", "H = LN_f(X_L)", at("GPT2Model.forward", "hidden_states = self.ln_f(hidden_states)")),
    "lm_head": step(
        "head", "logits = H W_te^T (tied to the token embeddings)",
        at("GPT2LMHeadModel.forward", "hidden_states = slice_logits_to_keep(hidden_states, logits_to_keep)", "logits = self.lm_head(hidden_states)"),
    ),
    "score": step(
        "head", "logits = H W_s, read at each row's last token that is not padding",
        at("GPT2ForSequenceClassification.forward", "logits = self.score(hidden_states)"),
    ),
    "last_hidden_state": step(
        "output", "H = LN_f(X_L)", at("GPT2Model.forward", "hidden_states = self.ln_f(hidden_states)", "hidden_states = hidden_states.view(output_shape)")
    ),
}

# transformers 4.57: the lines of the steps whose code differs from 5.x's (the same math).
STEPS_4_57 = anchors({
    "h.N": (at("GPT2Model.forward", "outputs = block(", "hidden_states = outputs[0]"),),
    "attn.key": (
        at("GPT2Attention.forward", "= self.c_attn(hidden_states).split(", "key_states = key_states.view(shape_kv).transpose(1, 2)",
           "key_states, value_states = curr_past_key_value.update("),
    ),
    "attn.value": (
        at("GPT2Attention.forward", "= self.c_attn(hidden_states).split(", "value_states = value_states.view(shape_kv).transpose(1, 2)",
           "key_states, value_states = curr_past_key_value.update("),
    ),
    "attn.scores": (
        at("eager_attention_forward", "attn_weights = torch.matmul(query, key.transpose(-1, -2))", "attn_weights = attn_weights / torch.full(",
           "attn_weights = attn_weights / float(module.layer_idx + 1)"),
    ),
    "attn.probs": (
        at("eager_attention_forward", "attn_weights = torch.where(causal_mask, attn_weights.to(attn_weights.dtype), mask_value)",
           "attn_weights = attn_weights + causal_mask", "attn_weights = nn.functional.softmax(attn_weights, dim=-1)",
           "attn_weights = attn_weights.type(value.dtype)"),
    ),
    "lm_head": (
        at("GPT2LMHeadModel.forward", "slice_indices = slice(-logits_to_keep, None)", "logits = self.lm_head(hidden_states[:, slice_indices, :])"),
    ),
}, STEPS)

HEADS = {
    "GPT2LMHeadModel": Head("causal-lm", "lm_head", (Output("logits", "next-token", through=("lm_head",)),)),
    "GPT2ForSequenceClassification": Head("sequence-classification", "score", (Output("logits", "labels"),)),
}


def catch_hf(hf, hooks) -> None:
    """Hooks on transformers' GPT2Model or one of its heads that the twin has (``hooks``: annotate.capture.Hooks)."""
    t = getattr(hf, "transformer", hf)
    hooks.calls(t.wte, t, ("wte", "token_type_embeds"))  # wte runs twice when token types are given
    hooks.on(t.wpe)
    hooks.before(t.drop, t, "sum")  # words + positions, dropout's input
    hooks.dropout(t.drop)
    for block in t.h:
        attn = block.attn
        hooks.on(block.ln_1)
        hooks.split(attn.c_attn, attn, ("query", "key", "value"), t.config.n_embd)  # [Q | K | V]
        hooks.scores(attn)
        hooks.probs(attn, "attn_dropout")  # in training, the weights after dropout
        hooks.before(attn.c_proj, attn, "context")
        hooks.on(attn.c_proj)
        hooks.dropout(attn.resid_dropout)
        hooks.before(block.ln_2, attn, "residual")
        hooks.on(block.ln_2)
        hooks.on(block.mlp.c_fc)
        hooks.before(block.mlp.c_proj, block.mlp, "act")
        hooks.on(block.mlp.c_proj)
        hooks.dropout(block.mlp.dropout)
        hooks.on(block, "mlp.residual")  # the block ends with that sum
        hooks.on(block)
    hooks.on(t.ln_f)
    for head in ("lm_head", "score"):
        if hasattr(hf, head):
            hooks.on(getattr(hf, head))


# ---------------------------------------------------------------------------------------------
# For ``annotate source`` (see annotate/models/bert.py).

TWINS = {
    ("modeling_gpt2", "eager_attention_forward"): Twin(
        "reimpl.gpt2:GPT2Attention.forward",
        "the twin writes eager_attention_forward's lines inline, in its attention's forward",
        ("scores = torch.matmul(q, k.transpose", "context = context.transpose"),
    ),
    ("modeling_gpt2", "GPT2Attention._upcast_and_reordered_attn"): Twin(
        "reimpl.gpt2:GPT2Attention._upcast_and_reordered_attn",
        "the scores only (fp32, baddbmm, the scale inside the product); the mask, softmax and P V are GPT2Attention.forward's lines",
    ),
    ("modeling_gpt2", "GPT2PreTrainedModel"): Twin(
        "reimpl.loading:build", "no weight init in the twins: they are built on the meta device and given the checkpoint's tensors"
    ),
    ("pytorch_utils", "Conv1D"): Twin("reimpl.gpt2:Conv1D", "GPT-2's linear layer, weight stored (in, out)"),
    # The causal mask, in one function of the twin.
    ("masking_utils", "eager_mask"): Twin("reimpl.gpt2:causal_mask", "GPT-2's eager mask: the causal triangle and padding (--model bert for BERT's)"),
    ("masking_utils", "sdpa_mask"): Twin(
        "reimpl.gpt2:causal_mask", "eager_mask is sdpa_mask's booleans turned into 0 / finfo.min, as here", ("allowed = key_positions", "return torch.where")
    ),
    ("masking_utils", "create_causal_mask"): Twin("reimpl.gpt2:causal_mask", "what GPT2Model builds: the future and padding hidden"),
    ("masking_utils", "causal_mask_function"): Twin(
        "reimpl.gpt2:causal_mask", "kv_idx <= q_idx, for all positions at once", ("query_positions =", "allowed = key_positions")
    ),
    ("masking_utils", "padding_mask_function"): Twin(
        "reimpl.gpt2:causal_mask", "padding keys hidden", ("if attention_mask is not None", "allowed = allowed &")
    ),
    # The key/value cache.
    ("cache_utils", "DynamicCache"): Twin("reimpl.cache:KVCache", "one list of keys and one of values, per layer"),
    ("cache_utils", "DynamicLayer"): Twin("reimpl.cache:KVCache", "one layer's keys and values: an entry of the twin's lists"),
    ("cache_utils", "DynamicLayer.update"): Twin("reimpl.cache:KVCache.update", "append with torch.cat, return the whole layer"),
    ("cache_utils", "DynamicCache.update"): Twin("reimpl.cache:KVCache.update", "append with torch.cat, return the whole layer"),
    ("cache_utils", "Cache.update"): Twin("reimpl.cache:KVCache.update", "append with torch.cat, return the whole layer"),
    ("cache_utils", "DynamicLayer.get_seq_length"): Twin("reimpl.cache:KVCache.get_seq_length", "tokens seen so far"),
    ("cache_utils", "DynamicCache.get_seq_length"): Twin("reimpl.cache:KVCache.get_seq_length", "tokens seen so far"),
    ("cache_utils", "Cache.get_seq_length"): Twin("reimpl.cache:KVCache.get_seq_length", "tokens seen so far"),
}

_ATTN = ("eager_attention_forward", "gpt2",
         "GPT2Attention._attn (4.x tutorials) computed softmax(Q K^T / sqrt(hs) + mask) V; since 4.48 that is the "
         "module-level eager_attention_forward of modeling_gpt2.py, called through the attention registry: shown")
_SPLIT = ("GPT2Attention.forward", None,
          "GPT2Attention._split_heads (4.x tutorials) viewed c_attn's Q, K, V as heads; GPT2Attention.forward now does it "
          "inline (.view(shape).transpose(1, 2)): shown")
_MERGE = ("GPT2Attention.forward", None,
          "GPT2Attention._merge_heads (4.x tutorials) put the heads side by side again; GPT2Attention.forward now reshapes "
          "inline: shown")
RENAMED = {  # names of 4.x tutorials (see annotate/models/bert.py)
    "GPT2Attention._attn": _ATTN, "_attn": _ATTN,
    "GPT2Attention._split_heads": _SPLIT, "_split_heads": _SPLIT,
    "GPT2Attention._merge_heads": _MERGE, "_merge_heads": _MERGE,
}

CALL_PATH = ("GPT2Attention", "GPT2Block", "GPT2Model", "GPT2MLP", "GPT2LMHeadModel", "Conv1D", "DynamicLayer", "DynamicCache")


# ---------------------------------------------------------------------------------------------
# The flow chart of guide 1 (annotate/diagrams.py): LayerNorm *before* each sublayer (pre-LN), the
# residual stream itself never normalised inside a block, and one last LayerNorm (ln_f) closing the
# stack. Read from the guides' small random GPT-2 (annotate.examples.write_gpt2: 2 blocks, 4 heads,
# n_embd 32, its own byte-level BPE of 400 entries).


def chart_trace(text: str):
    import tempfile

    import annotate
    from annotate.examples import write_gpt2

    with tempfile.TemporaryDirectory() as folder:
        return annotate.trace(str(write_gpt2(folder)), text)  # the twin holds its weights in memory


H = "transformer.h.{layer}"
CHART = Chart(
    name="gpt2",
    title="GPT2Block × {layers}, pre-LN",
    before=(
        Box("ids", "input_ids: {tokens}", INPUT_IDS),
        Box("emb", "wte + wpe: token + position embeddings", "transformer.sum"),
    ),
    layer=(
        Box("x", "block input", kind="io"),
        Box("ln1", "ln_1 (LayerNorm)", f"{H}.ln_1", "norm"),
        Box("qkv", "c_attn, split: query, key, value: {heads} heads × {head_size}", f"{H}.attn.query"),
        Box("probs", "softmax(Q·Kᵀ / √{head_size} + causal mask)", f"{H}.attn.probs"),
        Box("ctx", "probs · V, heads concatenated", f"{H}.attn.context"),
        Box("proj", "attn.c_proj", f"{H}.attn.c_proj"),
        Box("add1", "+", f"{H}.attn.residual", "add"),
        Box("ln2", "ln_2 (LayerNorm)", f"{H}.ln_2", "norm"),
        Box("up", "mlp.c_fc, gelu_new", f"{H}.mlp.act"),
        Box("down", "mlp.c_proj", f"{H}.mlp.c_proj"),
        Box("add2", "+", f"{H}.mlp.residual", "add"),
    ),
    after=(
        Box("lnf", "ln_f (LayerNorm)", "transformer.ln_f", "norm"),
        Box("head", "lm_head = wte (tied): a score per vocabulary entry", "lm_head"),
    ),
    edges=(
        ("ids", "emb", ""),
        ("emb", "x", ""),
        ("x", "ln1", ""),
        ("ln1", "qkv", ""),
        ("qkv", "probs", ""),
        ("probs", "ctx", ""),
        ("ctx", "proj", ""),
        ("proj", "add1", ""),
        ("add1", "ln2", ""),
        ("ln2", "up", ""),
        ("up", "down", ""),
        ("down", "add2", ""),
        ("add2", "lnf", "after block {layers}"),
        ("lnf", "head", ""),
    ),
    residuals=(("x", "add1"), ("add1", "add2")),
    trace=chart_trace,
)


# ---------------------------------------------------------------------------------------------
# annotate check (annotate/grader.py): the modules of GPT-2 a learner can write and have graded.

from annotate.models import Graded, Sublayer  # noqa: E402  (kept beside what uses it)
from annotate.i18n import N_

_ATTN = ("query", "key", "value", "scores", "probs", "context", "c_proj")
_LAYOUTS = {"query": "heads", "key": "heads", "value": "heads", "scores": "scores", "probs": "probs"}


def _attention_branch(block, h, args):
    return {}, block.attn(h, args["mask4d"])[0]


def _mlp_branch(block, h, args):
    return {}, block.mlp(h)


GRADED = (
    Graded(
        "gpt2-attention", "GPT2Attention", "h.{layer}.attn", call=("x", "mask4d"), args=("x", "mask"),
        returns=N_("the attention's output (B, T, C), after c_proj (or (output, probs)); the causal mask is yours to apply"),
        steps=_ATTN, output="c_proj", layouts=_LAYOUTS, causal=True, attention="",
        qkv=("c_attn[0]", "c_attn[1]", "c_attn[2]"), out_proj="c_proj",
    ),
    Graded(
        "gpt2-block", "GPT2Block", "h.{layer}", call=("x", "mask4d"), args=("x", "mask"),
        returns=N_("the block's output (B, T, C): x + attn(ln_1(x)), then + mlp(ln_2(.)) (pre-LN)"),
        steps=("ln_1", *(f"attn.{s}" for s in _ATTN), "attn.residual", "ln_2", "mlp.c_fc", "mlp.act", "mlp.c_proj", "mlp.residual"),
        output="mlp.residual", layouts={f"attn.{k}": v for k, v in _LAYOUTS.items()}, causal=True, attention="attn",
        qkv=("attn.c_attn[0]", "attn.c_attn[1]", "attn.c_attn[2]"), out_proj="attn.c_proj", activation="mlp.act",
        sublayers=(Sublayer(_attention_branch, "ln_1", "ln_1", "attn.residual"), Sublayer(_mlp_branch, "ln_2", "ln_2", "mlp.residual")),
        pre_norm=True,
    ),
    Graded(
        "gpt2-cache", "GPT2Attention", "h.{layer}.attn", call=("x", "mask4d", "past"), args=("x", "mask", "past"),
        returns=N_("(output (B, 1, C), (key, value)): one new token's output, and the cache's keys and values (B, nh, S, hs) so far"),
        steps=("key", "value", "c_proj"), output="c_proj", layouts={"key": "heads", "value": "heads"}, causal=True, incremental=True,
    ),
)
