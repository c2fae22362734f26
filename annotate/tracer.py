"""What ``annotate trace`` computes: the twin run on one text, every named stage with its statistics.

``trace(model, text)`` loads the checkpoint straight into its twin (reimpl.loading: no
transformers model is built), tokenizes with the checkpoint's tokenizer.json through the
``tokenizers`` library (transformers is not imported on this path: importing it costs more than
the trace itself), runs the twin once under ``recording()``, and summarises each
recorded state. With ``diff=True`` it also builds transformers' own model (eager attention, fp32),
runs it on the same token ids, catches its intermediate values with annotate.capture, and keeps
max |twin - transformers| per stage.

No rendering here (that is annotate/render.py); the Trace is plain data plus the tensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import torch

from annotate.errors import UserError
from reimpl import loading
from reimpl.states import recording

# Per architecture: the prefix of its layers' stage names, the recorded states that are the model's
# head rather than a stage (kept out of the stage list), the config fields that count layers and
# heads and bound the input length, and transformers' class for --diff.
ARCHITECTURES = {
    "bert": dict(
        layers="encoder.layer", head=(), num_layers="num_hidden_layers", num_heads="num_attention_heads",
        max_positions="max_position_embeddings", hf_class="BertModel",
    ),
    "gpt2": dict(
        layers="transformer.h", head=("lm_head",), num_layers="n_layer", num_heads="n_head",
        max_positions="n_positions", hf_class="GPT2LMHeadModel",
    ),
}
_LAYER = re.compile(r"^(?:encoder\.layer|transformer\.h)\.(\d+)(?:\.|$)")


@dataclasses.dataclass
class Stage:
    name: str  # the twin's recorded name: transformers' module path + step
    layer: int | None  # None for embeddings, pooler, final norm
    shape: tuple[int, ...]
    stats: dict[str, float]  # mean, std (population, so a single value has std 0), min, max
    max_abs_diff: float | None = None  # max |twin - transformers|; None without --diff


@dataclasses.dataclass
class Prediction:
    id: int
    token: str  # the vocabulary's string ("Ġcat")
    text: str  # what it decodes to (" cat")
    prob: float


@dataclasses.dataclass
class Trace:
    model: str  # as given on the command line
    model_type: str  # "bert" or "gpt2"
    folder: Path  # where the checkpoint's files are
    tokens: list[str]
    ids: list[int]
    stages: list[Stage]  # forward order, ending with the final hidden state
    states: dict[str, torch.Tensor]  # every recorded tensor by name (stages, and the logits "lm_head")
    num_layers: int
    num_heads: int
    predictions: list[Prediction] | None = None  # GPT-2: next token after the last position
    logits_max_abs_diff: float | None = None  # GPT-2 with --diff: the logits (not a stage)
    diffed: bool = False

    def first_divergence(self) -> str | None:
        """The first stage, in forward order, whose value differs from transformers' at all."""
        for stage in self.stages:
            if stage.max_abs_diff is not None and stage.max_abs_diff != 0.0:
                return stage.name
        return None

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def attention(self, layer: int) -> torch.Tensor:
        """(nh, T, T) attention probabilities of one layer (row: query token, column: key token)."""
        step = "attention.self.probs" if self.model_type == "bert" else "attn.probs"
        return self.states[f"{ARCHITECTURES[self.model_type]['layers']}.{layer}.{step}"][0]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "model_type": self.model_type,
            "tokens": list(self.tokens),
            "stages": [
                {
                    "name": s.name,
                    "layer": s.layer,
                    "shape": list(s.shape),
                    "stats": dict(s.stats),
                    "max_abs_diff": s.max_abs_diff,
                }
                for s in self.stages
            ],
            "ids": list(self.ids),
        }
        if self.predictions is not None:
            out["predictions"] = [dataclasses.asdict(p) for p in self.predictions]
            if self.diffed:
                out["logits_max_abs_diff"] = self.logits_max_abs_diff
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


# ---------------------------------------------------------------------------------------------
# Tokenizing.


class Tokenizer:
    """The checkpoint's tokenizer: tokenizer.json through ``tokenizers`` (milliseconds), or, for a
    checkpoint with only vocab.txt / vocab.json + merges.txt, transformers' AutoTokenizer (which
    costs the transformers import)."""

    def __init__(self, folder: Path):
        file = folder / "tokenizer.json"
        self.fast = None
        self.auto = None
        if file.is_file():
            from tokenizers import Tokenizer as FastTokenizer

            try:
                self.fast = FastTokenizer.from_file(str(file))
            except Exception as e:
                raise UserError(f"could not read {str(file)!r}: {e}") from None
            # sentence-transformers' tokenizer.json truncates to 128 and pads: the trace wants the
            # text as it is (too long is an error, below), as AutoTokenizer gives it by default.
            self.fast.no_truncation()
            self.fast.no_padding()
            return
        if not any((folder / name).is_file() for name in ("vocab.txt", "vocab.json")):
            # (AutoTokenizer would not refuse: it builds an empty tokenizer that gives made-up ids.)
            raise UserError(f"{str(folder)!r} has no tokenizer.json (nor vocab.txt or vocab.json + merges.txt)")
        try:
            from transformers import AutoTokenizer

            self.auto = AutoTokenizer.from_pretrained(folder)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{str(folder)!r} has no tokenizer.json, and transformers could not load a tokenizer from it: {reason}") from None

    def encode(self, text: str) -> tuple[list[int], list[str], list[int]]:
        """ids, token strings and token type ids, special tokens added as the model expects."""
        if self.fast is not None:
            enc = self.fast.encode(text)
            return list(enc.ids), list(enc.tokens), list(enc.type_ids)
        enc = self.auto(text)
        ids = list(enc["input_ids"])
        return ids, self.auto.convert_ids_to_tokens(ids), list(enc.get("token_type_ids", [0] * len(ids)))

    def token(self, id: int) -> str:
        if self.fast is not None:
            return self.fast.id_to_token(id) or ""
        return self.auto.convert_ids_to_tokens(id)

    def decode(self, id: int) -> str:
        if self.fast is not None:
            return self.fast.decode([id], skip_special_tokens=False)
        return self.auto.decode([id])


# ---------------------------------------------------------------------------------------------
# Tracing.


def _stats(x: torch.Tensor) -> dict[str, float]:
    x = x.double()  # summaries in float64: the mean of 1e5 fp32 values shouldn't depend on summation order
    return {
        "mean": x.mean().item(),
        "std": x.std(correction=0).item(),
        "min": x.min().item(),
        "max": x.max().item(),
    }


def _layer(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def _status(message: str, progress: bool):
    if not progress:
        yield
        return
    from annotate.render import status  # rich lives in render.py

    with status(message):
        yield


def _keep(model_type: str, T: int) -> torch.Tensor:
    """Where a query attends to a key, (1, 1, T, T): everywhere for BERT (one text: no padding),
    the causal triangle for GPT-2."""
    keep = torch.ones(1, 1, T, T, dtype=torch.bool)
    return torch.tril(keep) if model_type == "gpt2" else keep


def _run_transformers(model_type: str, folder: Path, inputs: dict[str, torch.Tensor], twin) -> tuple[dict, torch.Tensor]:
    """transformers' own model, eager and fp32, on the same ids: its caught states and its output."""
    import transformers
    from transformers.utils import logging as hf_logging

    from annotate.capture import hf_states

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its load report and "Loading weights" bar would garble the trace
    hf_logging.disable_progress_bar()
    try:
        cls = getattr(transformers, ARCHITECTURES[model_type]["hf_class"])
        kwargs = dict(attn_implementation="eager", dtype=torch.float32)
        if model_type == "bert":
            kwargs["add_pooling_layer"] = twin.pooler is not None  # don't invent a random pooler
        try:
            hf = cls.from_pretrained(folder, **kwargs).eval()
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--diff: transformers could not load {str(folder)!r}: {reason}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    with torch.inference_mode(), hf_states(hf) as theirs:
        if model_type == "bert":
            output = hf(**inputs).last_hidden_state
        else:
            output = hf(inputs["input_ids"], use_cache=False).logits  # the twin without a cache matches use_cache=False
    return theirs, output


def load(model: str):
    """(folder, model_type, twin) for a hub id, local directory or packaged model."""
    folder = loading.resolve(model)
    twin = loading.from_pretrained(folder)
    return folder, twin.config.model_type, twin


def trace(model: str, text: str, *, diff: bool = False, top_k: int = 5, progress: bool = True) -> Trace:
    """Run the twin of ``model`` on ``text`` and summarise every recorded stage (see the module docstring)."""
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {top_k}")
    with _status(f"loading {model}", progress):
        folder, model_type, twin = load(model)
        tokenizer = Tokenizer(folder)
    arch = ARCHITECTURES[model_type]
    config = twin.config

    ids, tokens, type_ids = tokenizer.encode(text)
    limit = getattr(config, arch["max_positions"])
    if not ids:
        raise UserError(f"the text gives no tokens, and {model_type} needs at least one to predict from")
    if len(ids) > limit:
        raise UserError(f"the text is {len(ids)} tokens long; {model} takes at most {limit} ({arch['max_positions']})")
    if max(ids) >= config.vocab_size:
        raise UserError(f"the tokenizer gave id {max(ids)}, but the model's vocabulary has {config.vocab_size} entries")

    input_ids = torch.tensor([ids])  # (1, T)
    if model_type == "bert":
        inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), token_type_ids=torch.tensor([type_ids]))
    else:
        inputs = dict(input_ids=input_ids)

    with torch.inference_mode(), recording() as states:
        if model_type == "bert":
            out = twin(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
            states["last_hidden_state"] = out.last_hidden_state  # the model's output: the last stage
        else:
            twin(input_ids)
    states = dict(states)

    diffs: dict[str, float | None] = {}
    logits_diff = None
    if diff:
        from annotate.capture import differences

        with _status("running transformers (eager, fp32) for --diff", progress):
            theirs, output = _run_transformers(model_type, folder, inputs, twin)
        if model_type == "bert":
            theirs["last_hidden_state"] = output
        diffs = differences(states, theirs, _keep(model_type, len(ids)))
        logits_diff = diffs.pop("lm_head", None)

    stages = [
        Stage(name, _layer(name), tuple(x.shape), _stats(x), diffs.get(name) if diff else None)
        for name, x in states.items()
        if name not in arch["head"]
    ]
    result = Trace(
        model=model,
        model_type=model_type,
        folder=folder,
        tokens=tokens,
        ids=ids,
        stages=stages,
        states=states,
        num_layers=getattr(config, arch["num_layers"]),
        num_heads=getattr(config, arch["num_heads"]),
        logits_max_abs_diff=logits_diff,
        diffed=diff,
    )
    if model_type == "gpt2":
        probs = torch.softmax(states["lm_head"][0, -1].double(), dim=-1)  # (V,): the next token after the last
        top = torch.topk(probs, min(top_k, probs.numel()))
        result.predictions = [
            Prediction(i, tokenizer.token(i), tokenizer.decode(i), p)
            for i, p in zip(top.indices.tolist(), top.values.tolist())
        ]
    return result


def save(trace: Trace, path: str | Path) -> None:
    """Every recorded tensor under its stage name, as safetensors (contiguous copies: the twin's
    Q/K/V are strided views, and last_hidden_state is the last layer's tensor itself)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UserError(f"--save: no directory {str(path.parent)!r}")
    tensors = {name: x.clone(memory_format=torch.contiguous_format) for name, x in trace.states.items()}
    metadata = {"model": trace.model, "model_type": trace.model_type, "tokens": json.dumps(trace.tokens), "ids": json.dumps(trace.ids)}
    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError as e:
        raise UserError(f"--save: could not write {str(path)!r}: {e.strerror or e}") from None
