"""The heads (what a model predicts), and the inputs, configs and checkpoints that used to be
silently different: each now matches transformers bit for bit or is refused by name.

BERT's masked-LM, pre-training, next-sentence and classification heads and GPT-2's LM and
classification heads, against transformers' *For* classes at every recorded step
(tests/parity.py); loading by config.json's ``architectures``; tied and untied heads as
transformers 5 loads them; the tracer's predictions.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import save_file

import reimpl
from annotate.cli import main
from reimpl import versions
from reimpl.loading import packaged_dir
from tests.conftest import MINILM
from tests.parity import assert_states_equal, random_weights

BERT = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, attn_implementation="eager")
GPT2 = dict(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None,
            attn_implementation="eager")
BERT_HEADS = ["BertForMaskedLM", "BertForPreTraining", "BertForNextSentencePrediction", "BertForSequenceClassification"]


def batch(vocab_size: int, B: int = 3, T: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ids with row 1 right-padded, and alternating token types."""
    ids = torch.randint(1, vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, T // 2 :] = 0
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=(torch.arange(T) >= T // 3).long().expand(B, T))


# --- every head, every step ----------------------------------------------------------------------


@pytest.mark.parametrize("hidden_act", ["gelu", "relu", "gelu_new"])
@pytest.mark.parametrize("cls", BERT_HEADS)
def test_bert_heads_every_step_bit_identical(cls, hidden_act):
    config = transformers.BertConfig(**BERT, hidden_act=hidden_act, num_labels=3)
    hf = random_weights(getattr(transformers, cls)(config))
    twin = getattr(reimpl, cls).from_hf(hf)
    n = assert_states_equal(hf, twin, **batch(config.vocab_size))
    base = 5 + 15 * config.num_hidden_layers
    pooler, mlm, nsp = 2, 4, 1
    assert n == {
        "BertForMaskedLM": base + mlm,  # HF's masked LM has no pooler
        "BertForPreTraining": base + pooler + mlm + nsp,
        "BertForNextSentencePrediction": base + pooler + nsp,
        "BertForSequenceClassification": base + pooler + 1,
    }[cls]


@pytest.mark.parametrize("padding", ["right", "left"])
def test_gpt2_sequence_classification_reads_the_last_real_token(padding):
    config = transformers.GPT2Config(**GPT2, pad_token_id=0, num_labels=4)
    hf = random_weights(transformers.GPT2ForSequenceClassification(config))
    twin = reimpl.GPT2ForSequenceClassification.from_hf(hf)
    ids = torch.randint(1, 101, (3, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    if padding == "right":
        ids[1, 5:], mask[1, 5:] = 0, 0
    else:
        ids[1, :3], mask[1, :3] = 0, 0
    assert assert_states_equal(hf, twin, input_ids=ids, attention_mask=mask) == 4 + 15 * 2 + 1


def test_gpt2_sequence_classification_without_pad_token():
    config = transformers.GPT2Config(**GPT2, pad_token_id=None, num_labels=2)
    hf = random_weights(transformers.GPT2ForSequenceClassification(config))
    twin = reimpl.GPT2ForSequenceClassification.from_hf(hf)
    ids = torch.randint(1, 101, (1, 6), generator=torch.Generator().manual_seed(3))
    assert_states_equal(hf, twin, input_ids=ids)
    with pytest.raises(ValueError, match="no padding token is defined"):
        twin(torch.ones(2, 6, dtype=torch.long))


def test_gpt2_token_type_ids_are_looked_up_in_wte_as_in_transformers():
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)))
    twin = reimpl.GPT2LMHeadModel.from_hf(hf)
    ids = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(4))
    assert_states_equal(hf, twin, input_ids=ids, token_type_ids=(ids * 7) % 101)


def test_forward_takes_transformers_keyword_names():
    hf = random_weights(transformers.BertForMaskedLM(transformers.BertConfig(**BERT)))
    twin = reimpl.BertForMaskedLM.from_hf(hf)
    inputs = batch(30522)
    positions = torch.arange(9).flip(0)[None]  # any position ids, as given
    assert_states_equal(hf, twin, **inputs, position_ids=positions)
    assert twin(**inputs).logits.shape == (3, 9, 30522)


# --- never silently different -------------------------------------------------------------------


def test_gpt2_head_size_1():
    """transformers calls .contiguous() on the merged heads; without it Conv1D's .view fails."""
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**GPT2, "n_embd": 8, "n_head": 8})))
    assert_states_equal(hf, reimpl.GPT2LMHeadModel.from_hf(hf), input_ids=torch.randint(0, 101, (2, 5)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reorder", [False, True])
def test_gpt2_half_precision_from_hf_keeps_the_dtype_and_matches(dtype, reorder):
    """from_hf keeps the module's dtype; reorder_and_upcast_attn computes the scores in fp32 and
    casts the probabilities back to V's dtype, as transformers does."""
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2, reorder_and_upcast_attn=reorder)), std=0.1)
    hf = hf.to(dtype)
    twin = reimpl.GPT2LMHeadModel.from_hf(hf)
    assert all(p.dtype == dtype for p in twin.parameters())
    ids = torch.randint(0, 101, (2, 6), generator=torch.Generator().manual_seed(5))
    assert_states_equal(hf, twin, input_ids=ids, attention_mask=torch.ones_like(ids))


def test_bert_from_hf_keeps_bf16():
    hf = random_weights(transformers.BertModel(transformers.BertConfig(**BERT))).to(torch.bfloat16)
    twin = reimpl.BertModel.from_hf(hf)
    assert all(p.dtype == torch.bfloat16 for p in twin.parameters())
    assert_states_equal(hf, twin, **batch(30522))


def test_gpt2_packed_sequences_get_a_block_diagonal_mask():
    """Position ids that restart, without an attention mask or a cache: transformers treats the
    row as several packed sequences, each attending only to itself (find_packed_sequence_indices)."""
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)))
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


def test_from_hf_refuses_a_module_of_another_class():
    roberta = transformers.RobertaModel(transformers.RobertaConfig(**{**BERT, "vocab_size": 100}))
    with pytest.raises(TypeError, match="BertModel.from_hf was given a RobertaModel"):
        reimpl.BertModel.from_hf(roberta)
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(**GPT2))
    with pytest.raises(TypeError, match="GPT2LMHeadModel.from_hf was given a GPT2Model"):
        reimpl.GPT2LMHeadModel.from_hf(gpt2)


def test_bert_feed_forward_chunking_is_refused():
    with pytest.raises(ValueError, match="chunk_size_feed_forward=4 is not supported"):
        reimpl.bert.BertConfig.from_dict({**transformers.BertConfig(**BERT).to_dict(), "chunk_size_feed_forward": 4})


def test_word_embedding_has_transformers_padding_idx():
    """padding_idx changes no value, only the gradient: the pad row gets none, as in transformers."""
    hf = transformers.BertModel(transformers.BertConfig(**BERT, pad_token_id=3))
    twin = reimpl.BertModel.from_hf(hf)
    assert twin.embeddings.word_embeddings.padding_idx == hf.embeddings.word_embeddings.padding_idx == 3


# --- checkpoints: which class, tied or not ------------------------------------------------------


def save(model, folder, architectures=None):
    model.save_pretrained(folder)
    if architectures is not None:
        config = json.loads((folder / "config.json").read_text())
        config["architectures"] = architectures
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("cls", BERT_HEADS)
def test_from_pretrained_builds_the_class_config_names(cls, tmp_path):
    hf = random_weights(getattr(transformers, cls)(transformers.BertConfig(**BERT)))
    twin = reimpl.from_pretrained(save(hf, tmp_path))
    assert type(twin).__name__ == cls
    loaded = getattr(transformers, cls).from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert_states_equal(loaded, twin, **batch(30522))


def test_a_head_the_twin_lacks_falls_back_to_the_base_model(tmp_path):
    hf = random_weights(transformers.BertForQuestionAnswering(transformers.BertConfig(**BERT)))
    twin = reimpl.from_pretrained(save(hf, tmp_path))
    assert type(twin).__name__ == "BertModel"
    assert torch.equal(twin.embeddings.word_embeddings.weight, hf.bert.embeddings.word_embeddings.weight)


def test_a_base_checkpoint_named_as_a_head_lacks_the_head(tmp_path):
    hf = random_weights(transformers.BertModel(transformers.BertConfig(**BERT)))
    with pytest.raises(reimpl.CheckpointError, match="no tensor 'cls.predictions"):
        reimpl.from_pretrained(save(hf, tmp_path, architectures=["BertForMaskedLM"]))


def test_masked_lm_decoder_is_the_word_embedding(tmp_path):
    hf = random_weights(transformers.BertForMaskedLM(transformers.BertConfig(**BERT)))
    twin = reimpl.from_pretrained(save(hf, tmp_path))
    assert twin.cls.predictions.decoder.weight is twin.bert.embeddings.word_embeddings.weight
    assert twin.cls.predictions.decoder.bias is twin.cls.predictions.bias


def test_gpt2_stored_lm_head_different_from_wte_kept_or_tied_as_transformers_does(tmp_path):
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)))
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


def test_gpt2_untied_config_loads_its_own_head(tmp_path):
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2, tie_word_embeddings=False)))
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    twin = reimpl.from_pretrained(save(hf, tmp_path))
    assert_states_equal(hf, twin, input_ids=torch.randint(0, 101, (2, 6)))


def test_gpt2_hub_layout_ties_the_head(tmp_path):
    """The hub's gpt2: saved from GPT2Model, no lm_head.weight, no prefix: the head is wte itself."""
    hf = random_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)))
    save_file({k: v.contiguous() for k, v in hf.transformer.state_dict().items()}, tmp_path / "model.safetensors")
    save(hf, tmp_path / "config")
    shutil.copy(tmp_path / "config" / "config.json", tmp_path / "config.json")
    twin = reimpl.from_pretrained(tmp_path)
    assert twin.lm_head.weight is twin.transformer.wte.weight


# --- the tracer shows what the head predicts ----------------------------------------------------


def minilm_with_head(folder, cls, **config):
    """The real MiniLM body with a random head of ``cls`` (its tokenizer, so [MASK] is a real token)."""
    minilm = packaged_dir(MINILM)
    hf = getattr(transformers, cls).from_pretrained(minilm, attn_implementation="eager", **config)
    head = [n for n, _ in hf.named_parameters() if not n.startswith("bert.")]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in head:
            p = hf.get_parameter(name)
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    hf.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm / name, folder / name)
    return folder


def run_json(capsys, *args):
    code = main(["trace", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out)


def test_trace_masked_lm_predicts_at_every_mask(tmp_path, capsys):
    folder = minilm_with_head(tmp_path, "BertForMaskedLM")
    code, trace = run_json(capsys, str(folder), "Paris is the capital of [MASK]. The [MASK] sat.", "--diff", "--top-k", "3")
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


def test_trace_classifier_shows_every_label(tmp_path, capsys):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    folder = minilm_with_head(tmp_path, "BertForSequenceClassification", id2label=labels, label2id={v: k for k, v in labels.items()})
    code, trace = run_json(capsys, str(folder), "What a lovely day.", "--diff")
    assert code == 0
    assert [label["label"] for label in trace["labels"]] == ["negative", "neutral", "positive"]
    assert abs(sum(label["prob"] for label in trace["labels"]) - 1) < 1e-12
    assert trace["logits_max_abs_diff"] == 0.0
    code = main(["trace", str(folder), "What a lovely day."])
    out = capsys.readouterr().out
    assert code == 0 and "positive" in out and "neutral" in out
