"""Training, bit for bit: train-mode forwards (dropout), the heads' losses, the gradient at every
recorded stage and of every parameter, and AdamW steps, against transformers (eager, fp32, CPU).

Each check runs transformers' model and the twin after the same ``torch.manual_seed``: dropout
draws one Bernoulli per value from torch's random stream, so equal masks need the same draws in
the same order on tensors of the same shapes, and the random stream must end in the same state.
transformers' values and gradients are caught under the twin's stage names
(``annotate.capture.hf_states(hf, grads=True)``), so a difference is pinned to a stage.

Like with like. Both sides must hold their weights the same way: transformers' model and the twin
are both loaded from the same files (``from_pretrained`` on both sides, so the weights sit where
the safetensors file puts them, 24 mod 64 bytes for MiniLM), or the twin is ``from_hf``'s copy,
which keeps its source's offset modulo 64 bytes (reimpl.loading.copy_aligned_as). A kernel may
split its work by address, and then a tensor and its 64-byte-aligned ``clone`` need not give the
same last bits; on the machine this was written on none did (guide 7 measures it), but a test
that compared a file-loaded model with an aligned copy would be testing the allocator, not the twin.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import pytest
import torch
import transformers

import reimpl
from annotate import align
from annotate.capture import hf_states
from annotate.cli import main
from reimpl import recording, training
from reimpl.registry import architecture_of
from annotate.examples import write_gpt2
from tests.conftest import MINILM
from tests.parity import minilm_with_head, random_weights

# --- models, inputs and labels -----------------------------------------------------------------

# Dropout probabilities all different and far from 0, so that a dropout applied with another
# module's p, or not at all, changes the result.
DROPOUT = dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, **DROPOUT, classifier_dropout=0.25)
CONFIGS = {
    "bert": lambda **kw: transformers.BertConfig(**BERT, **kw),
    "roberta": lambda **kw: transformers.RobertaConfig(**BERT, **kw),
    "xlm-roberta": lambda **kw: transformers.XLMRobertaConfig(**BERT, **kw),
    "electra": lambda **kw: transformers.ElectraConfig(**{**BERT, "embedding_size": 16}, **kw),  # E != C: embeddings_project
    "albert": lambda **kw: transformers.AlbertConfig(**{**BERT, "embedding_size": 16, "num_hidden_layers": 3, "num_hidden_groups": 2},
                                                     classifier_dropout_prob=0.25, **kw),  # shared groups: gradients add up
    "distilbert": lambda **kw: transformers.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64,
                                                             dropout=0.2, attention_dropout=0.3, seq_classif_dropout=0.25, **kw),
    "gpt2": lambda **kw: transformers.GPT2Config(vocab_size=99, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=None,
                                                 eos_token_id=None, resid_pdrop=0.2, embd_pdrop=0.25, attn_pdrop=0.3, **kw),
}


def batch(config, B: int = 3, T: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ids, row 1 right-padded with the pad token (so the word embedding's padding row is used)."""
    generator = torch.Generator().manual_seed(seed)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.randint(pad + 1, config.vocab_size, (B, T), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, T // 2 :], mask[1, T // 2 :] = pad, 0
    inputs = dict(input_ids=ids, attention_mask=mask)
    if getattr(config, "type_vocab_size", 1) > 1:
        inputs["token_type_ids"] = (torch.arange(T) >= T // 3).long().expand(B, T)
    return inputs


def labels_for(task: str, config, inputs, seed: int = 2) -> dict[str, torch.Tensor]:
    """The ``labels`` (and second labels) a head's loss takes, as transformers documents them."""
    generator = torch.Generator().manual_seed(seed)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    B = ids.shape[0]
    masked = torch.where((torch.rand(ids.shape, generator=generator) < 0.4) & mask.bool(), ids, -100)  # -100: not scored
    two_classes = torch.randint(0, 2, (B,), generator=generator)
    return {
        "masked-lm": lambda: dict(labels=masked),
        "pretraining": lambda: dict(labels=masked, next_sentence_label=two_classes),
        "albert-pretraining": lambda: dict(labels=masked, sentence_order_label=two_classes),
        "next-sentence": lambda: dict(labels=two_classes),
        "single-label": lambda: dict(labels=torch.randint(0, config.num_labels, (B,), generator=generator)),
        "regression": lambda: dict(labels=torch.randn(B, generator=generator)),
        "multi-label": lambda: dict(labels=(torch.rand(B, config.num_labels, generator=generator) < 0.5).float()),
        "causal-lm": lambda: dict(labels=torch.where(mask.bool(), ids, -100)),
        "replaced": lambda: dict(labels=(torch.rand(ids.shape, generator=generator) < 0.3).long()),
    }[task]()


def hf_and_twin(model_type: str, cls: str, seed: int = 0, **config):
    hf = random_weights(getattr(transformers, cls)(CONFIGS[model_type](attn_implementation="eager", **config)), seed=seed)
    return hf, getattr(reimpl, cls).from_hf(hf)


# --- one check: everything equal after a forward and backward --------------------------------------


def run(model: torch.nn.Module, inputs: dict, seed: int, capture):
    """Seed, forward with labels, backward; returns (output, the caught values and gradients)."""
    torch.manual_seed(seed)
    with torch.enable_grad(), capture as caught:
        out = model(**inputs)
        out.loss.backward()
    return out, caught


def assert_training_equal(hf, twin, inputs: dict, train: bool = True, seed: int = 0) -> dict[str, int]:
    """transformers and the twin, both in train (or eval) mode, after the same seed: the loss, every
    output field, the random stream's state afterwards, every recorded stage's value and gradient,
    and every parameter's gradient are equal bit for bit. Returns what was compared."""
    hf.train(train)
    twin.train(train)
    hf.zero_grad(set_to_none=True)
    twin.zero_grad(set_to_none=True)
    causal = architecture_of(twin).causal
    hf_out, theirs = run(hf, {**inputs, **({"use_cache": False} if causal else {})}, seed, hf_states(hf, grads=True))
    after_hf = torch.get_rng_state()
    out, ours = run(twin, inputs, seed, recording(grads=True))
    assert torch.equal(torch.get_rng_state(), after_hf), "the twin drew another number of random values"
    for field, value in out._asdict().items():
        assert torch.equal(value, getattr(hf_out, field)), f"output {field} differs"

    keep = align.keep_mask(inputs["input_ids"], inputs.get("attention_mask"), causal)
    for name, value, seen in align.pairs(ours, theirs, keep):  # scores: where keys are kept (elsewhere the mask's -3.4e38)
        assert seen is not None, f"no transformers value caught for {name}"
        assert torch.equal(value, seen), f"{name} differs: max |diff| {(value - seen).abs().max():.3g}"
    # Every stage has a gradient, except those that depend on no parameter (RoPE's cos and sin):
    # exactly where transformers' has none either.
    without = {name for name in ours if name not in theirs.grads and name + "+mask" not in theirs.grads}
    assert set(ours) - set(ours.grads) == without, f"stages without a gradient: {sorted(set(ours) - set(ours.grads))}"
    assert len(without) <= 2, without
    for name, grad, seen in align.pairs(ours.grads, theirs.grads):  # the scores' gradient is softmax's input's: compared everywhere
        assert seen is not None, f"no transformers gradient caught for {name}"
        assert torch.equal(grad, seen), f"d loss / d {name} differs: max |diff| {(grad - seen).abs().max():.3g}"
    params = dict(twin.named_parameters())
    assert list(params) == [name for name, _ in hf.named_parameters()]  # the same order: clip_grad_norm_ sums in it
    for name, p in hf.named_parameters():
        if p.grad is None:
            assert params[name].grad is None, name
        else:
            assert torch.equal(params[name].grad, p.grad), f"{name}.grad differs: max |diff| {(params[name].grad - p.grad).abs().max():.3g}"
    return {"stages": len(ours), "dropout": sum(name.endswith("dropout") or name.endswith(".drop") for name in ours), "params": len(params)}


# --- every head of every twin, in train mode ----------------------------------------------------

CASES = [
    ("bert", "BertForMaskedLM", "masked-lm", {}),
    ("bert", "BertForSequenceClassification", "single-label", {"num_labels": 3}),
    ("bert", "BertForSequenceClassification", "regression", {"num_labels": 1}),
    ("bert", "BertForSequenceClassification", "multi-label", {"num_labels": 3}),
    ("bert", "BertForPreTraining", "pretraining", {}),
    ("bert", "BertForNextSentencePrediction", "next-sentence", {}),
    ("roberta", "RobertaForMaskedLM", "masked-lm", {}),
    ("roberta", "RobertaForSequenceClassification", "single-label", {"num_labels": 3}),
    ("xlm-roberta", "XLMRobertaForSequenceClassification", "single-label", {"num_labels": 3}),
    ("gpt2", "GPT2LMHeadModel", "causal-lm", {}),
    ("gpt2", "GPT2ForSequenceClassification", "single-label", {"num_labels": 3, "pad_token_id": 0}),
    ("distilbert", "DistilBertForMaskedLM", "masked-lm", {}),
    ("distilbert", "DistilBertForSequenceClassification", "single-label", {"num_labels": 3}),
    ("albert", "AlbertForMaskedLM", "masked-lm", {}),
    ("albert", "AlbertForPreTraining", "albert-pretraining", {}),
    ("albert", "AlbertForSequenceClassification", "multi-label", {"num_labels": 3}),
    ("electra", "ElectraForPreTraining", "replaced", {}),
    ("electra", "ElectraForMaskedLM", "masked-lm", {}),
    ("electra", "ElectraForSequenceClassification", "regression", {"num_labels": 1}),
]


@pytest.mark.parametrize("model_type, cls, task, config", CASES, ids=[f"{c[1]}-{c[2]}" for c in CASES])
def test_train_mode_forward_and_gradients_bit_identical(model_type, cls, task, config):
    hf, twin = hf_and_twin(model_type, cls, **config)
    inputs = batch(hf.config)
    n = assert_training_equal(hf, twin, {**inputs, **labels_for(task, hf.config, inputs)})
    assert n["dropout"] >= 2 * hf.config.num_hidden_layers  # every layer's dropouts were recorded and compared
    if task in ("single-label", "regression", "multi-label"):  # the problem type, inferred as transformers infers it
        expected = {"single-label": "single_label_classification", "regression": "regression", "multi-label": "multi_label_classification"}
        assert twin.config.problem_type == hf.config.problem_type == expected[task]


@pytest.mark.parametrize("model_type, cls, task", [("bert", "BertForMaskedLM", "masked-lm"), ("gpt2", "GPT2LMHeadModel", "causal-lm"),
                                                   ("roberta", "RobertaForSequenceClassification", "single-label")])
def test_eval_mode_gradients_bit_identical(model_type, cls, task):
    """Eval mode: no dropout, no random draws; the gradients are still equal at every stage."""
    hf, twin = hf_and_twin(model_type, cls)
    inputs = batch(hf.config)
    n = assert_training_equal(hf, twin, {**inputs, **labels_for(task, hf.config, inputs)}, train=False)
    assert n["dropout"] == 0


def test_padding_rows_get_no_gradient():
    """padding_idx: the pad token's embedding row (and RoBERTa's padding position's) gets a zero
    gradient from the embedding lookup, in transformers and in the twin. (A masked LM's decoder is
    the same matrix, and there the pad row does get a gradient: the pad token's logit.)"""
    for model_type, cls, pad_rows in (("bert", "BertForSequenceClassification", ["bert.embeddings.word_embeddings.weight"]),
                                      ("roberta", "RobertaForSequenceClassification", ["roberta.embeddings.word_embeddings.weight",
                                                                                       "roberta.embeddings.position_embeddings.weight"])):
        hf, twin = hf_and_twin(model_type, cls)
        inputs = batch(hf.config)
        assert_training_equal(hf, twin, {**inputs, **labels_for("single-label", hf.config, inputs)})
        pad = hf.config.pad_token_id
        for name in pad_rows:
            grad = twin.get_parameter(name).grad
            assert torch.all(grad[pad] == 0) and grad.abs().sum() > 0, name


def test_eval_mode_is_unchanged_and_draws_nothing():
    """Eval mode records no dropout stage and leaves the random stream alone; train mode differs from it."""
    hf, twin = hf_and_twin("bert", "BertForSequenceClassification")
    inputs = batch(hf.config)
    state = torch.get_rng_state()
    with recording() as states:
        evaluated = twin(**inputs).logits
    assert torch.equal(torch.get_rng_state(), state)
    assert not any(name.endswith("dropout") for name in states)
    assert torch.equal(evaluated, hf.eval()(**inputs).logits)
    trained = twin.train()(**inputs).logits
    assert not torch.equal(trained, evaluated)


def test_losses_mirror_transformers_rules():
    """The loss is the first field when labels are given (transformers' ModelOutput rule), absent
    otherwise; -100 labels take no part; the problem type, once inferred, stays."""
    hf, twin = hf_and_twin("bert", "BertForMaskedLM")
    inputs = batch(hf.config)
    out = twin(**inputs)
    assert out._fields == ("logits",) and out[0] is out.logits and out.loss is None
    labels = labels_for("masked-lm", hf.config, inputs)["labels"]
    out = twin(**inputs, labels=labels)
    assert out._fields == ("loss", "logits") and out[0] is out.loss and out.loss.shape == ()
    assert torch.equal(out.loss, hf(**inputs, labels=labels).loss)
    only_first = torch.full_like(labels, -100)
    only_first[0, 0] = labels[0, 0] if labels[0, 0] != -100 else 5
    single = torch.nn.functional.cross_entropy(out.logits[0, 0], only_first[0, 0])
    assert torch.equal(twin(**inputs, labels=only_first).loss, single)
    hf, twin = hf_and_twin("bert", "BertForSequenceClassification", num_labels=3)
    hf.eval()
    assert torch.equal(twin(**inputs, labels=torch.tensor([0, 1, 2])).loss, hf(**inputs, labels=torch.tensor([0, 1, 2])).loss)
    assert twin.config.problem_type == hf.config.problem_type == "single_label_classification"
    multi_hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # multi-label labels, too late:
    for model in (twin, hf):  # the problem type stays single-label, whose loss flattens them to 9 class ids
        with pytest.raises(ValueError, match="batch_size"):
            model(**inputs, labels=multi_hot)


# --- real weights: MiniLM with a random head, both sides loaded from the same files ------------------


@pytest.fixture(scope="module")
def minilm_classifier(tmp_path_factory):
    return minilm_with_head(tmp_path_factory.mktemp("cls"), "BertForSequenceClassification", num_labels=2)


@pytest.fixture(scope="module")
def minilm_masked_lm(tmp_path_factory):
    return minilm_with_head(tmp_path_factory.mktemp("mlm"), "BertForMaskedLM")


def minilm_batch(folder, masks: bool = False) -> dict[str, torch.Tensor]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    texts = ["The cat sat on the [MASK].", "Attention is all you need, said the [MASK], and the field listened."]
    return dict(tokenizer(texts if masks else [t.replace("[MASK]", "mat") for t in texts], padding=True, return_tensors="pt"))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_minilm_classifier_from_the_same_files(minilm_classifier, train):
    hf = transformers.BertForSequenceClassification.from_pretrained(minilm_classifier, attn_implementation="eager")
    twin = reimpl.from_pretrained(minilm_classifier)
    # Both hold the weights where the file puts them (an offset the header's length decides, not 64-byte aligned).
    assert [p.data_ptr() % 64 for p in twin.parameters()] == [p.data_ptr() % 64 for p in hf.parameters()] != [0] * 105
    inputs = minilm_batch(minilm_classifier)
    n = assert_training_equal(hf, twin, {**inputs, "labels": torch.tensor([1, 0])}, train=train)
    assert n["params"] == 105 and n["stages"] == 5 + 6 * 15 + 2 + 1 + (1 + 6 * 3 + 1 if train else 0)  # dropouts: embeddings, 3 per layer, classifier


def test_minilm_masked_lm_from_the_same_files(minilm_masked_lm):
    hf = transformers.BertForMaskedLM.from_pretrained(minilm_masked_lm, attn_implementation="eager")
    twin = reimpl.from_pretrained(minilm_masked_lm)
    inputs = minilm_batch(minilm_masked_lm, masks=True)
    labels = torch.where(inputs["input_ids"] == 103, 2000, -100)  # [MASK] -> "the"
    assert_training_equal(hf, twin, {**inputs, "labels": labels})


def test_from_hf_copies_keep_the_sources_alignment(minilm_classifier):
    """from_hf copies every weight to the same address modulo 64 bytes as its source (a plain clone
    would be 64-byte aligned), so the twin of a file-loaded model holds its weights as that model
    does; its training step is then compared like with like."""
    hf = transformers.BertForSequenceClassification.from_pretrained(minilm_classifier, attn_implementation="eager")
    twin = reimpl.BertForSequenceClassification.from_hf(hf)
    for (name, theirs), ours in zip(hf.named_parameters(), twin.parameters()):
        assert ours.data_ptr() % 64 == theirs.data_ptr() % 64 and ours.data_ptr() != theirs.data_ptr(), name
    inputs = minilm_batch(minilm_classifier)
    assert_training_equal(hf, twin, {**inputs, "labels": torch.tensor([1, 0])})
    copied = copy.deepcopy(hf)  # both copied: deepcopy's tensors and a twin of them
    assert {p.data_ptr() % 64 for p in copied.parameters()} == {0}
    assert_training_equal(copied, reimpl.BertForSequenceClassification.from_hf(copied), {**inputs, "labels": torch.tensor([0, 0])})


# --- optimizer steps: AdamW, clipping, linear warmup, dropout on ------------------------------------


def trainer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """transformers' Trainer's two groups: no weight decay for biases and LayerNorm weights."""
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n and "layer_norm" not in n and "ln_" not in n]
    rest = [p for n, p in model.named_parameters() if all(p is not q for q in decay)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def assert_steps_equal(hf, twin, batches: list[dict], lr: float = 1e-2, warmup: int = 2) -> list[float]:
    """N steps of each: transformers' model with torch's AdamW, clip_grad_norm_ and transformers'
    get_linear_schedule_with_warmup; the twin with reimpl.training's. Every parameter equal after
    every step. Returns the gradient norms before clipping (to show that clipping was active)."""
    hf.train()
    twin.train()
    steps = len(batches)
    hf_opt = torch.optim.AdamW(trainer_groups(hf, 0.01), lr=lr)
    hf_schedule = transformers.get_linear_schedule_with_warmup(hf_opt, warmup, steps)
    opt = training.AdamW(trainer_groups(twin, 0.01), lr=lr)
    schedule = training.LinearWarmup(opt, warmup, steps)
    norms = []
    for step, inputs in enumerate(batches):
        extra = {"use_cache": False} if architecture_of(twin).causal else {}
        with torch.enable_grad():
            torch.manual_seed(100 + step)
            hf(**inputs, **extra).loss.backward()
            torch.manual_seed(100 + step)
            twin(**inputs).loss.backward()
        hf_norm = torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        norm = training.clip_grad_norm_(twin.parameters(), 1.0)
        assert torch.equal(norm, hf_norm), f"step {step}: gradient norm differs"
        hf_opt.step()
        opt.step()
        hf_schedule.step()
        schedule.step()
        assert schedule.get_last_lr() == hf_schedule.get_last_lr()
        hf_opt.zero_grad()
        opt.zero_grad()
        for (name, theirs), ours in zip(hf.named_parameters(), twin.parameters()):
            assert torch.equal(ours, theirs), f"step {step}: {name} differs: max |diff| {(ours - theirs).abs().max():.3g}"
        norms.append(float(norm))
    return norms


@pytest.mark.parametrize("model_type, cls, task, config", [
    ("bert", "BertForSequenceClassification", "single-label", {"num_labels": 3}),
    ("roberta", "RobertaForMaskedLM", "masked-lm", {}),
    ("gpt2", "GPT2LMHeadModel", "causal-lm", {}),
], ids=["bert-classifier", "roberta-mlm", "gpt2-lm"])
def test_adamw_steps_keep_every_weight_equal(model_type, cls, task, config):
    hf, twin = hf_and_twin(model_type, cls, **config)
    batches = []
    for seed in range(5):
        inputs = batch(hf.config, seed=seed)
        batches.append({**inputs, **labels_for(task, hf.config, inputs, seed=seed)})
    norms = assert_steps_equal(hf, twin, batches)
    assert max(norms) > 1.0  # the clipping really scaled the gradients down


def test_minilm_fine_tuning_steps_from_the_same_files(minilm_classifier):
    hf = transformers.BertForSequenceClassification.from_pretrained(minilm_classifier, attn_implementation="eager")
    twin = reimpl.from_pretrained(minilm_classifier)
    inputs = minilm_batch(minilm_classifier)
    assert_steps_equal(hf, twin, [{**inputs, "labels": torch.tensor([1, 0])}, {**inputs, "labels": torch.tensor([0, 0])}], lr=1e-4, warmup=1)


# --- checkpoints: a trained twin saved as transformers saves a model ---------------------------------


@pytest.mark.parametrize("cls", ["GPT2LMHeadModel", "BertForMaskedLM", "RobertaForSequenceClassification"])
def test_save_pretrained_loads_in_transformers_and_the_twin(cls, tmp_path):
    model_type = {"GPT2LMHeadModel": "gpt2", "BertForMaskedLM": "bert", "RobertaForSequenceClassification": "roberta"}[cls]
    hf, twin = hf_and_twin(model_type, cls)
    reimpl.save_pretrained(twin, tmp_path)
    theirs = getattr(transformers, cls).from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = reimpl.from_pretrained(tmp_path)
    assert type(ours) is type(twin)
    for (name, p), q, r in zip(twin.named_parameters(), theirs.parameters(), ours.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r), name
    for target, source in twin._tied_weights_keys.items():  # saved once, tied again on both sides
        assert ours.get_parameter(target) is ours.get_parameter(source)
    inputs = batch(hf.config)
    assert torch.equal(ours.eval()(**inputs).logits, theirs(**inputs).logits)


def test_a_trained_gpt2_saved_is_traced_and_diffed(tmp_path):
    folder = write_gpt2(tmp_path / "start")
    twin = reimpl.from_pretrained(folder)
    opt = training.AdamW(twin.parameters(), lr=1e-2)
    ids = torch.randint(0, twin.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    twin.train()
    with torch.enable_grad():
        for _ in range(3):
            twin(ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    saved = reimpl.save_pretrained(twin.eval(), tmp_path / "trained", tokenizer_from=folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["trace", str(saved), "The cat sat", "--diff", "--grad", "--json"])
    assert code == 0, err.getvalue()
    trace = json.loads(out.getvalue())
    assert all(s["max_abs_diff"] == 0.0 and s["grad_max_abs_diff"] == 0.0 for s in trace["stages"])


# --- annotate trace --grad ----------------------------------------------------------------------


def trace_json(*args: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["trace", *args, "--json"])
    return code, (json.loads(out.getvalue()) if code in (0, 1) else None), err.getvalue()


def test_grad_diff_is_zero_at_every_stage_on_minilm_with_a_head(minilm_classifier, minilm_masked_lm):
    code, trace, _ = trace_json(str(minilm_classifier), "What a lovely day.", "--grad", "--diff", "--label", "LABEL_1")
    assert code == 0
    assert trace["loss"]["target"] == "LABEL_1"
    for stage in trace["stages"]:
        assert stage["grad_max_abs_diff"] == 0.0, stage["name"]
        assert set(stage["grad_stats"]) == {"mean", "std", "min", "max"}
    assert trace["param_grad_max_abs_diff"] == 0.0
    code, trace, _ = trace_json(str(minilm_masked_lm), "Paris is the capital of [MASK].", "--grad", "--diff")
    assert code == 0 and all(s["grad_max_abs_diff"] == 0.0 for s in trace["stages"])
    top = trace["mask_predictions"][0]["top"][0]["token"]
    assert trace["loss"]["target"] == top  # the default target: the top prediction at the mask


def test_grad_diff_is_zero_at_every_stage_on_gpt2(tmp_path):
    folder = write_gpt2(tmp_path)
    code, trace, _ = trace_json(str(folder), "The cat sat on the mat.", "--grad", "--diff")
    assert code == 0
    assert trace["loss"]["kind"] == "causal-lm"
    assert len(trace["stages"]) > 30 and all(s["grad_max_abs_diff"] == 0.0 for s in trace["stages"])
    # The loss is transformers': the mean cross-entropy of each next token.
    model = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
    ids = torch.tensor([trace["ids"]])
    assert trace["loss"]["value"] == model(ids, labels=ids, use_cache=False).loss.item()


def test_grad_diff_names_the_first_divergent_gradient(minilm_classifier, monkeypatch):
    """A twin whose forward is untouched but whose backward is off at one place (a hook scales the
    gradient entering layer 3's last LayerNorm): --diff names that stage, the nearest to the loss
    that differs, and exits 1."""
    from annotate import tracer

    real_load = tracer.load

    def load(model):
        folder, twin = real_load(model)
        norm = twin.bert.encoder.layer[3].output.LayerNorm
        norm.register_full_backward_hook(lambda module, grad_in, grad_out: (grad_in[0] * 1.5,))
        return folder, twin

    monkeypatch.setattr(tracer, "load", load)
    code, trace, _ = trace_json(str(minilm_classifier), "What a lovely day.", "--grad", "--diff")
    assert code == 1
    assert trace["first_grad_divergence"] == "bert.encoder.layer.3.output.residual"
    assert all(s["max_abs_diff"] == 0.0 for s in trace["stages"])  # the values are untouched
    after = [s for s in trace["stages"] if s["layer"] in (4, 5) or s["name"].startswith("bert.pooler")]
    assert after and all(s["grad_max_abs_diff"] == 0.0 for s in after)
    assert trace["param_grad_max_abs_diff"] > 0


def test_grad_target_and_label_choose_the_loss(minilm_classifier, minilm_masked_lm):
    _, cat, _ = trace_json(str(minilm_masked_lm), "The [MASK] sat on the mat.", "--grad", "--target", "cat")
    _, dog, _ = trace_json(str(minilm_masked_lm), "The [MASK] sat on the mat.", "--grad", "--target", "dog")
    assert cat["loss"]["target"] == "cat" and dog["loss"]["target"] == "dog"
    assert cat["loss"]["value"] != dog["loss"]["value"]
    assert cat["stages"][-1]["grad_stats"] != dog["stages"][-1]["grad_stats"]
    _, one, _ = trace_json(str(minilm_classifier), "Fine.", "--grad", "--label", "1")
    _, zero, _ = trace_json(str(minilm_classifier), "Fine.", "--grad", "--label", "LABEL_0")
    assert one["loss"]["target"] == "LABEL_1" and zero["loss"]["target"] == "LABEL_0"


@pytest.mark.parametrize("config, args, target, description", [
    ({"num_labels": 1}, ["--label", "0.5"], "0.5", "squared error to 0.5"),
    ({"num_labels": 3, "problem_type": "multi_label_classification"}, ["--label", "LABEL_0,LABEL_2"], "LABEL_0,LABEL_2",
     "binary cross-entropy of each label against {LABEL_0,LABEL_2}"),
], ids=["regression", "multi-label"])
def test_grad_regression_and_multi_label_heads(tmp_path, config, args, target, description):
    folder = minilm_with_head(tmp_path, "BertForSequenceClassification", **config)
    code, trace, _ = trace_json(str(folder), "Fine.", "--grad", "--diff", *args)
    assert code == 0 and trace["loss"]["target"] == target and trace["loss"]["description"] == description
    assert all(s["grad_max_abs_diff"] == 0.0 for s in trace["stages"]) and trace["param_grad_max_abs_diff"] == 0.0
    if config["num_labels"] == 1:
        code, _, err = trace_json(str(folder), "Fine.", "--grad")
        assert code == 2 and "needs the value to score against: --label VALUE" in err


@pytest.mark.parametrize("args, message", [
    (["--target", "cat"], "--target needs --grad"),
    (["--grad", "--label", "LABEL_1"], "--label is for a classifier"),
    (["--grad", "--target", "notawordpiece"], "'notawordpiece' is 4 tokens"),
])
def test_grad_refusals_on_a_masked_lm(minilm_masked_lm, args, message):
    code, _, err = trace_json(str(minilm_masked_lm), "The [MASK] sat.", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_grad_refusals(minilm_classifier, minilm_masked_lm):
    code, _, err = trace_json(MINILM, "The cat sat.", "--grad")
    assert code == 2 and "BertModel has no head" in err and "BertForSequenceClassification" in err
    code, _, err = trace_json(str(minilm_masked_lm), "No mask here.", "--grad")
    assert code == 2 and "[MASK]" in err
    code, _, err = trace_json(str(minilm_classifier), "Fine.", "--grad", "--label", "LABEL_7")
    assert code == 2 and "LABEL_0, LABEL_1" in err


def test_grad_in_the_terminal(minilm_classifier):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["trace", str(minilm_classifier), "What a lovely day.", "--grad", "--diff"])
    text = out.getvalue()
    assert code == 0
    assert "gradients of the loss" in text and "|∇h|" in text
    assert "all 97 stage gradients and 105 parameter gradients are bit-identical to transformers" in text
