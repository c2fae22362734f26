"""The inputs, dtypes and checkpoints that used to be silently different: each now matches
transformers bit for bit or is refused by name. GPT-2's classifier without a pad token, its token
types looked up in wte, its packed sequences, its half precision and a stored LM head of its own
(tied or kept as each transformers version does); BERT in bf16 and its padding row; and the
tracer's predictions of a head on the real MiniLM.

Every head of every architecture at every step, loading by config.json's ``architectures``, tied
and untied heads: tests/test_conformance.py.
"""

from __future__ import annotations


import pytest
import torch
import transformers
from safetensors.torch import save_file

import reimpl
from reimpl import versions
from tests.conftest import run, run_json
from tests.parity import assert_states_equal, minilm_with_head, random_model
from tests.test_conformance import BERT, GPT2


# --- GPT-2's heads and inputs ------------------------------------------------------------------


def test_gpt2_sequence_classification_without_pad_token():
    hf = GPT2.model("GPT2ForSequenceClassification", pad_token_id=None)
    twin = reimpl.GPT2ForSequenceClassification.from_hf(hf)
    ids = torch.randint(1, 101, (1, 6), generator=torch.Generator().manual_seed(3))
    assert_states_equal(hf, twin, input_ids=ids)
    with pytest.raises(ValueError, match="no padding token is defined"):
        twin(torch.ones(2, 6, dtype=torch.long))


def test_gpt2_token_type_ids_are_looked_up_in_wte_as_in_transformers():
    hf = GPT2.model("GPT2LMHeadModel")
    twin = reimpl.GPT2LMHeadModel.from_hf(hf)
    ids = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(4))
    assert_states_equal(hf, twin, input_ids=ids, token_type_ids=(ids * 7) % 101)


# --- never silently different -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reorder", [False, True])
def test_gpt2_half_precision_from_hf_keeps_the_dtype_and_matches(dtype, reorder):
    """from_hf keeps the module's dtype; reorder_and_upcast_attn computes the scores in fp32 and
    casts the probabilities back to V's dtype, as transformers does."""
    hf = random_model(transformers.GPT2LMHeadModel, GPT2.config(reorder_and_upcast_attn=reorder), std=0.1).to(dtype)
    twin = reimpl.GPT2LMHeadModel.from_hf(hf)
    assert all(p.dtype == dtype for p in twin.parameters())
    ids = torch.randint(0, 101, (2, 6), generator=torch.Generator().manual_seed(5))
    assert_states_equal(hf, twin, input_ids=ids, attention_mask=torch.ones_like(ids))


def test_bert_from_hf_keeps_bf16():
    hf = BERT.model("BertModel").to(torch.bfloat16)
    twin = reimpl.BertModel.from_hf(hf)
    assert all(p.dtype == torch.bfloat16 for p in twin.parameters())
    assert_states_equal(hf, twin, **BERT.inputs(hf.config))


def test_gpt2_packed_sequences_get_a_block_diagonal_mask():
    """Position ids that restart, without an attention mask or a cache: transformers treats the
    row as several packed sequences, each attending only to itself (find_packed_sequence_indices)."""
    hf = GPT2.model("GPT2LMHeadModel")
    twin = reimpl.GPT2LMHeadModel.from_hf(hf)
    ids = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(6))
    packed = torch.tensor([[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 3, 4]])
    sequence = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    keep = torch.ones(7, 7, dtype=torch.bool).tril() & (sequence[:, :, None] == sequence[:, None, :])  # (B, T, T)
    assert_states_equal(hf, twin, keep=keep[:, None], input_ids=ids, position_ids=packed)
    # The second sequence of row 0 sees nothing of the first.
    with torch.no_grad(), reimpl.recording() as states:
        twin(ids, position_ids=packed)
    probs = states["transformer.h.0.attn.probs"]
    assert torch.all(probs[0, :, 3:, :3] == 0) and torch.all(probs[1, :, 2:, :2] == 0)


def test_word_embedding_has_transformers_padding_idx():
    """padding_idx changes no value, only the gradient: the pad row gets none, as in transformers."""
    hf = transformers.BertModel(BERT.config(pad_token_id=3))
    twin = reimpl.BertModel.from_hf(hf)
    assert twin.embeddings.word_embeddings.padding_idx == hf.embeddings.word_embeddings.padding_idx == 3


# --- checkpoints: a stored head of its own -----------------------------------------------------


def test_gpt2_stored_lm_head_different_from_wte_kept_or_tied_as_transformers_does(tmp_path):
    hf = GPT2.model("GPT2LMHeadModel")
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] = torch.randn_like(state["lm_head.weight"])
    save_file(state, tmp_path / "model.safetensors")
    hf.config.save_pretrained(tmp_path)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    twin = reimpl.from_pretrained(tmp_path)
    if versions.V4:  # transformers 4.57 ties it anyway: the stored head is dropped
        assert theirs.lm_head.weight is theirs.transformer.wte.weight
        assert twin.lm_head.weight is twin.transformer.wte.weight
    else:  # 5.x keeps it
        assert not torch.equal(theirs.lm_head.weight, theirs.transformer.wte.weight)
        assert twin.lm_head.weight is not twin.transformer.wte.weight
    assert_states_equal(theirs, twin, input_ids=torch.randint(0, 101, (2, 6)))


# --- the tracer shows what the head predicts ----------------------------------------------------


def test_trace_masked_lm_predicts_at_every_mask(tmp_path):
    folder = minilm_with_head(tmp_path, "BertForMaskedLM")
    code, trace = run_json("trace", str(folder), "Paris is the capital of [MASK]. The [MASK] sat.", "--diff", "--top-k", "3")
    assert code == 0
    assert trace["model_class"] == "BertForMaskedLM"
    masks = [i for i, t in enumerate(trace["tokens"]) if t == "[MASK]"]
    assert [m["position"] for m in trace["mask_predictions"]] == masks and len(masks) == 2
    hf = transformers.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = hf(torch.tensor([trace["ids"]])).logits[0]
    for m in trace["mask_predictions"]:
        probs = torch.softmax(logits[m["position"]].double(), dim=-1)
        top = torch.topk(probs, 3)
        assert [t["id"] for t in m["top"]] == top.indices.tolist()
        assert [t["prob"] for t in m["top"]] == top.values.tolist()
        assert {"id", "token", "text", "prob"} <= set(m["top"][0])
    assert trace["logits_max_abs_diff"] == 0.0
    assert all(s["max_abs_diff"] == 0.0 for s in trace["stages"])


def test_trace_classifier_shows_every_label(tmp_path):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    folder = minilm_with_head(tmp_path, "BertForSequenceClassification", id2label=labels, label2id={v: k for k, v in labels.items()})
    code, trace = run_json("trace", str(folder), "What a lovely day.", "--diff")
    assert code == 0
    assert [label["label"] for label in trace["labels"]] == ["negative", "neutral", "positive"]
    assert abs(sum(label["prob"] for label in trace["labels"]) - 1) < 1e-12
    assert trace["logits_max_abs_diff"] == 0.0
    code, out, _ = run("trace", str(folder), "What a lovely day.")
    assert code == 0 and "positive" in out and "neutral" in out
