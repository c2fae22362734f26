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
import functools
import json
from pathlib import Path
from typing import Any

import torch

from annotate import align, models, stats
from annotate import lens as logit_lens
from annotate.errors import UserError
from annotate.i18n import t
from reimpl import loading, registry
from reimpl.architecture import Architecture
from reimpl.states import recording

@dataclasses.dataclass
class Stage:
    name: str  # the twin's recorded name: transformers' module path + step
    layer: int | None  # None for embeddings, pooler, final norm
    shape: tuple[int, ...]
    stats: dict[str, float]  # mean, std (population, so a single value has std 0), min, max
    max_abs_diff: float | None = None  # max |twin - transformers|; None without --diff
    verdict: str | None = None  # --diff: "equal", "rounding", "math" or "absent" (annotate/compare.py); None without --diff
    grad_stats: dict[str, float] | None = None  # --grad: mean, std, min, max of d loss / d stage
    grad_max_abs_diff: float | None = None  # --grad --diff: max |twin's gradient - transformers'|


@dataclasses.dataclass
class Prediction:
    id: int
    token: str  # the vocabulary's string ("Ġcat")
    text: str  # what it decodes to (" cat")
    prob: float
    display: str  # as the terminal shows it ("␣cat", "<e6 88>")


@dataclasses.dataclass
class LayerSummary:
    """One layer in a line: what the compact view prints."""

    layer: int | None  # None: the embeddings
    norm: float  # mean over tokens of |h|, the L2 norm of each token's vector after this layer
    change: float | None  # mean over tokens of |h_out - h_in| / |h_in|; None for the embeddings
    attends_to: list[tuple[str, float]]  # the two tokens receiving the most attention, averaged over heads and queries
    max_abs_diff: float | None  # the largest max|twin - transformers| of the layer's stages; None without --diff


@dataclasses.dataclass
class MaskPrediction:
    position: int  # the [MASK] / <mask> token's index in the text's tokens
    top: list[Prediction]


@dataclasses.dataclass
class Replaced:
    position: int
    token: str
    prob: float  # sigmoid of the discriminator's logit: how sure it is that this token was replaced


@dataclasses.dataclass
class Label:
    label: str  # config.id2label's name
    prob: float


@dataclasses.dataclass
class Trace:
    model: str  # as given on the command line
    text: str  # the input text
    model_type: str  # config.json's: "bert", "gpt2", ...
    model_class: str  # the twin's class, named as transformers names it: "BertModel", "BertForMaskedLM"
    folder: Path  # where the checkpoint's files are
    tokens: list[str]  # the vocabulary's strings ("Ġcat", "##ing", "[CLS]")
    ids: list[int]
    display_tokens: list[str]  # what to show: byte-level BPE tokens decoded (" cat" as "␣cat"), others as they are
    unknown: list[int]  # positions of the tokenizer's unknown token ([UNK]), if any
    characters: list[tuple[int, int, str]]  # byte tokens that together spell a character: (first, last, text)
    stages: list[Stage]  # forward order, ending with the final hidden state
    states: dict[str, torch.Tensor]  # every recorded tensor by name (stages, and the logits "lm_head")
    num_layers: int
    num_heads: int
    layers_path: str  # where the layers' stage names start: "encoder.layer", "bert.encoder.layer", "transformer.h"
    attention_path: str  # inside a layer, where "probs" is recorded: "attention.self", "attn"
    causal: bool  # a decoder (GPT-2): each token sees only the tokens before it
    predictions: list[Prediction] | None = None  # a causal LM: the next token after the last position
    lens: Any = None  # --lens: annotate.lens.Lens, per layer its top tokens per position
    mask_predictions: list[MaskPrediction] | None = None  # a masked LM: the top tokens at each mask
    labels: list[Label] | None = None  # a classifier: every label with its probability
    replaced: list[Replaced] | None = None  # a replaced-token detector (ELECTRA's discriminator): per token
    logits_max_abs_diff: float | None = None  # a head with --diff: its scores (not a stage)
    diffed: bool = False
    comparison: Any = None  # --diff: annotate.compare.Comparison (what was compared with, the verdicts)
    # --grad (annotate/gradients.py): the loss, each stage's gradient by name, and under --diff the
    # largest difference of any parameter's gradient from transformers', over how many parameters.
    loss: Any = None  # annotate.gradients.Loss
    grads: dict[str, torch.Tensor] | None = None
    param_grad_max_abs_diff: float | None = None
    param_grads_compared: int = 0

    def first_grad_divergence(self) -> str | None:
        """The stage nearest the loss (backward order: gradients flow from the loss to the input)
        whose gradient differs from transformers' at all."""
        for stage in reversed(self.stages):
            if stage.grad_max_abs_diff is not None and stage.grad_max_abs_diff != 0.0:
                return stage.name
        return None

    def first_math(self) -> str | None:
        """The first stage whose difference is "math" (not rounding): where the two runs start to compute different things."""
        return next((s.name for s in self.stages if s.verdict == "math"), None)

    def first_divergence(self) -> str | None:
        """The first stage, in forward order, whose value differs from transformers' at all."""
        for stage in self.stages:
            if stage.max_abs_diff is not None and stage.max_abs_diff != 0.0:
                return stage.name
        return None

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def __getitem__(self, name: str) -> torch.Tensor:
        """A recorded tensor by its stage name: ``trace["encoder.layer.0.attention.self.probs"]``."""
        if name not in self.states:
            raise KeyError(f"no stage {name!r}; trace.stages lists them (e.g. {next(iter(self.states))!r})")
        return self.states[name]

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 30 else self.text[:29] + "…"
        return f"<Trace {self.model_class} {text!r}: {len(self.tokens)} tokens, {len(self.stages)} stages>"

    def _repr_html_(self) -> str:
        """Jupyter shows the trace as the explorer (annotate/explorer.py), in an iframe."""
        from annotate import explorer

        return explorer.notebook(self)

    def layer_summary(self) -> list[LayerSummary]:
        """The embeddings, then one LayerSummary per layer (see LayerSummary)."""
        first = next(i for i, s in enumerate(self.stages) if s.layer is not None)
        h = self.states[self.entering()][0]  # (T, C)
        embeddings = [s for s in self.stages[:first]]
        out = [LayerSummary(None, h.double().norm(dim=-1).mean().item(), None, [], _max_diff(embeddings, self.diffed))]
        for layer in range(self.num_layers):
            stages = [s for s in self.stages if s.layer == layer]
            h_out = self.states.get(f"{self.layers_path}.{layer}", self.states[stages[-1].name])[0]  # (T, C)
            h_in, h_out = h.double(), h_out.double()
            change = ((h_out - h_in).norm(dim=-1) / h_in.norm(dim=-1)).mean().item()
            received = self.attention(layer).double().mean(dim=(0, 1))  # (T,): weight each key gets, on average
            top = received.topk(min(2, received.numel()))
            attends = [(self.display_tokens[j], w) for j, w in zip(top.indices.tolist(), top.values.tolist())]
            out.append(LayerSummary(layer, h_out.norm(dim=-1).mean().item(), change, attends, _max_diff(stages, self.diffed)))
            h = h_out
        return out

    def entering(self) -> str:
        """The stage whose value enters layer 0: the last one before it of the stream's shape (the
        embeddings' output; not RoPE's cos and sin, which enter every layer's attention)."""
        first = next(i for i, s in enumerate(self.stages) if s.layer is not None)
        width = self.states[f"{self.layers_path}.0"].shape if f"{self.layers_path}.0" in self.states else None
        entering = [s for s in self.stages[:first] if width is None or self.states[s.name].shape == width]
        return (entering or self.stages[:first])[-1].name

    def attention(self, layer: int) -> torch.Tensor:
        """(nh, T, T) attention probabilities of one layer (row: query token, column: key token)."""
        return self.states[f"{self.layers_path}.{layer}.{self.attention_path}.probs"][0]

    def to_dict(self, view=None, attention: bool = False) -> dict[str, Any]:
        """Plain data. ``view`` (annotate.render.View, or anything with shows_layer / shows_stage /
        shows_head) keeps the stages and heads it shows; ``attention`` adds the attention weights
        of the shown layers and heads: ``[{"layer", "head", "weights": [[query][key]]}]``."""
        stages = [s for s in self.stages if view is None or (view.shows_layer(s.layer) and view.shows_stage(s.name))]
        out: dict[str, Any] = {
            "model": self.model,
            "model_type": self.model_type,
            "model_class": self.model_class,
            "tokens": list(self.tokens),
            "stages": [
                {
                    "name": s.name,
                    "layer": s.layer,
                    "shape": list(s.shape),
                    "stats": dict(s.stats),
                    "max_abs_diff": s.max_abs_diff,
                    **({"verdict": s.verdict} if self.diffed else {}),
                    **({"grad_stats": s.grad_stats} if self.loss is not None else {}),
                    **({"grad_max_abs_diff": s.grad_max_abs_diff} if self.loss is not None and self.diffed else {}),
                }
                for s in stages
            ],
            "ids": list(self.ids),
            "display_tokens": list(self.display_tokens),
        }
        if attention:
            out["attention"] = [
                {"layer": layer, "head": head, "weights": self.attention(layer)[head].tolist()}
                for layer in range(self.num_layers)
                if view is None or view.shows_layer(layer)
                for head in range(self.num_heads)
                if view is None or view.shows_head(head)
            ]
        if self.predictions is not None:
            out["predictions"] = [dataclasses.asdict(p) for p in self.predictions]
        if self.mask_predictions is not None:
            out["mask_predictions"] = [dataclasses.asdict(m) for m in self.mask_predictions]
        if self.labels is not None:
            out["labels"] = [dataclasses.asdict(label) for label in self.labels]
        if self.replaced is not None:
            out["replaced"] = [dataclasses.asdict(r) for r in self.replaced]
        if self.lens is not None:
            out["lens"] = [entry for entry in self.lens.to_list() if view is None or view.shows_layer(entry["layer"])]
        if self.loss is not None:
            from annotate import gradients

            out.update(gradients.to_dict(self))
        if self.diffed and self.logits_max_abs_diff is not None:
            out["logits_max_abs_diff"] = self.logits_max_abs_diff
        if self.diffed and self.comparison is not None:  # annotate/compare.py
            from annotate.compare import ROUNDING_BOUND

            c = self.comparison
            out.update(compared=[c.a, c.b], first_math=self.first_math(), rounding_bound=ROUNDING_BOUND)
            if c.logits_diff is not None:
                out["logits_verdict"] = c.logits_verdict
            if any(s.verdict == "absent" for s in stages):
                out["why_absent"] = f"{c.b} {c.absent or 'has no such stages'}"
        return out

    def to_json(self, view=None, attention: bool = False) -> str:
        return json.dumps(self.to_dict(view, attention))


def _max_diff(stages: list[Stage], diffed: bool) -> float | None:
    if not diffed:
        return None
    known = [s.max_abs_diff for s in stages if s.max_abs_diff is not None]
    return max(known) if known else None


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
                raise UserError(t("could not read {file!r}: {e}", file=str(file), e=e)) from None
            # sentence-transformers' tokenizer.json truncates to 128 and pads: the trace wants the
            # text as it is (too long is an error, below), as AutoTokenizer gives it by default.
            self.fast.no_truncation()
            self.fast.no_padding()
            return
        if not any((folder / name).is_file() for name in ("vocab.txt", "vocab.json")):
            # (AutoTokenizer would not refuse: it builds an empty tokenizer that gives made-up ids.)
            raise UserError(t("{folder!r} has no tokenizer.json (nor vocab.txt or vocab.json + merges.txt)", folder=str(folder)))
        try:
            from transformers import AutoTokenizer

            self.auto = AutoTokenizer.from_pretrained(folder)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(t("{folder!r} has no tokenizer.json, and transformers could not load a tokenizer from it: {reason}",
                               folder=str(folder), reason=reason)) from None

    def encode(self, text: str) -> tuple[list[int], list[str], list[int]]:
        """ids, token strings and token type ids, special tokens added as the model expects."""
        if self.fast is not None:
            enc = self.fast.encode(text)
            return list(enc.ids), list(enc.tokens), list(enc.type_ids)
        enc = self.auto(text)
        ids = list(enc["input_ids"])
        return ids, self.auto.convert_ids_to_tokens(ids), list(enc.get("token_type_ids", [0] * len(ids)))

    def mask_token_id(self, folder: Path) -> int | None:
        """The id of the mask token ([MASK], <mask>) as tokenizer_config.json names it, or None."""
        if self.auto is not None:
            return self.auto.mask_token_id
        name = None
        config = folder / "tokenizer_config.json"
        if config.is_file():
            try:
                name = json.loads(config.read_text()).get("mask_token")
            except (OSError, json.JSONDecodeError):
                name = None
            if isinstance(name, dict):  # {"content": "<mask>", ...} in older files
                name = name.get("content")
        for candidate in (name, "[MASK]", "<mask>"):
            if candidate and (id := self.fast.token_to_id(candidate)) is not None:
                return id
        return None

    def unknown_token(self) -> str | None:
        """The vocabulary's unknown token ([UNK]); None for a byte-level BPE, which has none."""
        if self.fast is not None:
            return getattr(self.fast.model, "unk_token", None)
        return self.auto.unk_token if getattr(self.auto, "unk_token_id", None) is not None else None

    @functools.cached_property
    def byte_level(self) -> bool:
        """A byte-level BPE (GPT-2's bytes spelled as symbols): its decoder is ByteLevel, or a
        sequence of decoders holding one (transformers 4.57's conversion of a GGUF file: byte
        fallback, fuse, "▁" as a space, then ByteLevel)."""
        if self.fast is None:
            return False
        kind = type(self.fast.decoder).__name__
        if kind == "Sequence":
            decoders = json.loads(self.fast.to_str()).get("decoder", {}).get("decoders", [])
            return any(d.get("type") == "ByteLevel" for d in decoders)
        return kind == "ByteLevel"

    def display(self, ids: list[int], tokens: list[str]) -> list[str]:
        """Tokens as a reader should see them. A byte-level BPE (GPT-2) spells bytes as symbols
        ("Ġcat" is " cat"): decode each, showing spaces at its ends as ␣ and newlines as ↵, and a
        piece of a multi-byte character as its bytes (<e4 bd>). Others (WordPiece's "##ing",
        SentencePiece's "▁word") are readable as they are."""
        if not self.byte_level:
            return list(tokens)
        out = []
        for id, token in zip(ids, tokens):
            text = self.fast.decode([id], skip_special_tokens=False)
            if "\ufffd" in text:
                out.append("<" + " ".join(f"{b:02x}" for b in _byte_level_bytes(token)) + ">")
                continue
            core = text.strip(" \n")
            lead, trail = text[: len(text) - len(text.lstrip(" \n"))], text[len(text.rstrip(" \n")) :]
            out.append(_visible(lead) + core + _visible(trail) if core else _visible(text))
        return out

    def characters(self, ids: list[int], display: list[str]) -> list[tuple[int, int, str]]:
        """Runs of byte tokens (shown as <e6>) that together spell characters: (first, last, text).
        A byte-level BPE without a token for 我 writes its three UTF-8 bytes as three tokens."""
        out, start = [], None
        for i, shown in enumerate(display + [""]):
            # A piece of a character is a token that decodes, alone, to the replacement character
            # (a special token such as RoBERTa's <s> is shown in brackets too, but is not one).
            if i < len(ids) and shown.startswith("<") and "\ufffd" in self.fast.decode([ids[i]], skip_special_tokens=False):
                start = i if start is None else start
                text = self.fast.decode(ids[start : i + 1], skip_special_tokens=False)
                if "\ufffd" not in text:
                    out.append((start, i, text.strip()))
                    start = None
            else:
                start = None
        return out

    def token(self, id: int) -> str:
        if self.fast is not None:
            return self.fast.id_to_token(id) or ""
        return self.auto.convert_ids_to_tokens(id)

    def decode(self, id: int) -> str:
        if self.fast is not None:
            return self.fast.decode([id], skip_special_tokens=False)
        return self.auto.decode([id])


def _visible(space: str) -> str:
    return space.replace(" ", "␣").replace("\n", "↵")


def _byte_level_bytes(token: str) -> bytes:
    """The bytes a byte-level BPE token stands for: GPT-2's bytes_to_unicode table read backwards
    (printable bytes are themselves; the others were moved to 256 + n)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in printable]
    to_byte = {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(moved)}
    return bytes(to_byte.get(ch, ord("?")) for ch in token)


# ---------------------------------------------------------------------------------------------
# Tracing.


@contextlib.contextmanager
def working(message: str, progress: bool):
    """A spinner with ``message`` on the terminal while the block runs (nothing when ``progress`` is
    off: --json, a notebook); the encoder-decoder's trace and the CLI use it too."""
    if not progress:
        yield
        return
    from annotate.render import status  # rich lives in render.py

    with status(message):
        yield


def load(model: str):
    """(folder, twin) for a hub id, local directory or packaged model. The name is resolved here,
    once; the folder is what the tokenizer, the comparison and the gradients read after that
    (from_pretrained takes a folder as it is). The checkpoint's tensors are kept with the twin
    (annotate/shared_weights.py): under --diff transformers' model is built from the same ones,
    one copy of the weights for both; ``shared_weights.forget(twin)`` lets them go."""
    from annotate import shared_weights

    folder = loading.resolve(model)
    registry.architecture(loading.read_config(folder).get("model_type"))  # an unsupported model refused by its type, before its weights are read
    state = loading.read_state_dict(folder)
    twin = registry.from_pretrained(folder, state=state)
    shared_weights.keep(twin, state)
    return folder, twin


def encoder_decoder(model: str) -> bool:
    """Whether ``model`` is an encoder-decoder (Marian, BART), from its config.json alone: its trace
    takes a source and a target (annotate/translate.py)."""
    config = loading.read_config(loading.resolve(model))
    model_type = config.get("model_type")
    return model_type in registry.ARCHITECTURES and registry.architecture(model_type).encoder is not None


def one_stack(twin, what: str) -> None:
    """Refuse an encoder-decoder where a view shows one stack of layers."""
    if registry.architecture_of(twin).encoder:
        raise UserError(t("{what} shows one stack of layers; {cls} is an encoder-decoder (annotate trace shows it)",
                           what=what, cls=type(twin).__name__))


def _top(probs: torch.Tensor, k: int, tokenizer: Tokenizer) -> list[Prediction]:
    top = torch.topk(probs, min(k, probs.numel()))
    out = []
    for i, p in zip(top.indices.tolist(), top.values.tolist()):
        token = tokenizer.token(i)
        out.append(Prediction(i, token, tokenizer.decode(i), p, tokenizer.display([i], [token])[0]))
    return out


def _predictions(result: Trace, twin, out, ids: list[int], top_k: int, tokenizer: Tokenizer, folder: Path) -> None:
    """What the head predicts, output by output, as its head interface says each one reads
    (annotate/models): next tokens, [MASK] answers, replaced tokens, or labels."""
    head = models.head_of(twin)
    for o in head.outputs if head is not None else ():
        logits = getattr(out, o.field)[0].double()  # the text's row
        if o.reads == "next-token":
            result.predictions = _top(torch.softmax(logits[-1], dim=-1), top_k, tokenizer)  # (V,): after the last token
        elif o.reads == "masked-tokens":
            mask_id = tokenizer.mask_token_id(folder)
            positions = [i for i, id in enumerate(ids) if id == mask_id]
            result.mask_predictions = [MaskPrediction(i, _top(torch.softmax(logits[i], dim=-1), top_k, tokenizer)) for i in positions]
        elif o.reads == "replaced-tokens":
            probs = torch.sigmoid(logits).tolist()  # (T,)
            result.replaced = [Replaced(i, result.display_tokens[i], p) for i, p in enumerate(probs)]
        elif o.reads == "labels":
            names = o.names or twin.config.id2label
            result.labels = [Label(names[i], p) for i, p in enumerate(torch.softmax(logits, dim=-1).tolist())]


def trace(
    model: str, text: str, *, diff: bool = False, top_k: int = 5, progress: bool = True,
    grad: bool = False, target: str | None = None, label: str | None = None,
    against: str = "eager", dtype: str = "fp32", device: str = "cpu", other: str | None = None, lens: bool = False,
) -> Trace:
    """Run the twin of ``model`` on ``text`` and summarise every recorded stage (see the module docstring).
    ``grad``: also backpropagate the head's loss (``target``: a masked LM's word, ``label``: a
    classifier's label) and give each stage its gradient's statistics (annotate/gradients.py).
    ``lens``: also each layer's output read through the final norm and the LM head, its ``top_k``
    tokens per position (annotate/lens.py); refused for a model without an LM head."""
    if top_k < 1:
        raise UserError(t("--top-k must be at least 1, not {top_k}", top_k=top_k))
    with working(t("loading {model}", model=model), progress):
        folder, twin = load(model)  # the name resolved once: everything after reads the folder
        tokenizer = Tokenizer(folder)
    if not diff or other is not None:  # no transformers' model to share the checkpoint's tensors with
        from annotate import shared_weights

        shared_weights.forget(twin)
    if lens:
        logit_lens.lm_output(twin)  # refused before anything runs
    arch, head = registry.architecture_of(twin), models.head_of(twin)
    ids, tokens, type_ids = _encode(tokenizer, text, model, arch, twin.config)
    inputs = _inputs(ids, type_ids, arch)
    out, states = _run(twin, inputs, head)
    comparison = None
    if diff:  # annotate/compare.py: max |a - b| per stage, and a verdict on each difference
        comparison = _compare(model, folder, twin, arch, head, inputs, states, out, progress,
                              against=against, dtype=dtype, device=device, other=other)
    result = _result(model, text, folder, twin, arch, head, tokenizer, ids, tokens, states, comparison)
    _predictions(result, twin, out, ids, top_k, tokenizer, folder)
    if lens:
        result.lens = logit_lens.lens(twin, states, lambda probs: _top(probs, top_k, tokenizer))
    if grad:
        _gradients(result, twin, inputs, tokenizer, diff=diff, target=target, label=label, progress=progress)
    return result


def _encode(tokenizer: Tokenizer, text: str, model: str, arch: Architecture, config) -> tuple[list[int], list[str], list[int]]:
    """The text's ids, token strings and token type ids; refused where the model can't take them."""
    ids, tokens, type_ids = tokenizer.encode(text)
    limit = config.max_position_embeddings
    if not ids:
        raise UserError(t("the text gives no tokens, and {model_type} needs at least one to predict from", model_type=arch.model_type))
    if len(ids) > limit:
        raise UserError(t("the text is {n} tokens long; {model} takes at most {limit} positions", n=len(ids), model=model, limit=limit))
    if max(ids) >= config.vocab_size:
        raise UserError(t("the tokenizer gave id {id}, but the model's vocabulary has {size} entries", id=max(ids), size=config.vocab_size))
    return ids, tokens, type_ids


def _inputs(ids: list[int], type_ids: list[int], arch: Architecture) -> dict[str, torch.Tensor]:
    """The twin's keyword arguments for one text, as a tokenizer returns them."""
    input_ids = torch.tensor([ids])  # (1, T)
    inputs = dict(input_ids=input_ids)
    if not arch.causal:  # an encoder is called with its mask, as a tokenizer returns it
        inputs["attention_mask"] = torch.ones_like(input_ids)
    if arch.token_types:
        inputs["token_type_ids"] = torch.tensor([type_ids])
    return inputs


def _run(twin, inputs: dict[str, torch.Tensor], head) -> tuple[Any, dict[str, torch.Tensor]]:
    """The twin, once, under recording(): its output, and every recorded state in forward order."""
    with torch.inference_mode(), recording() as states:
        out = twin(**inputs)
        if not head:
            states["last_hidden_state"] = out.last_hidden_state  # the model's output: the last stage
    return out, dict(states)


def _compare(model: str, folder: Path, twin, arch: Architecture, head, inputs, states, out, progress: bool, *,
             against: str, dtype: str, device: str, other: str | None):
    """annotate/compare.py's Comparison of the twin's run with transformers' model of ``folder``
    (``against``, ``dtype``, ``device``), or with the twin of a second checkpoint (``other``)."""
    from annotate import compare

    keep = align.keep_mask(inputs["input_ids"], None, arch.causal)  # one text: no padding
    if other is not None:  # annotate diff: the twin of a second checkpoint
        with working(t("loading {model}", model=other), progress):
            other_twin = load(other)[1]
        comparison = compare.against_checkpoint(
            twin, other_twin, inputs, states, out, label_a=f"{model} (twin, fp32)", label=f"{other} (twin, fp32)", keep=keep
        )
    else:
        with working(t("running transformers ({against}, {dtype}) for --diff", against=against, dtype=dtype), progress):
            comparison = compare.against_transformers(
                folder, twin, inputs, states, out, against=against, dtype=dtype, device=device, causal=arch.causal, keep=keep
            )
    if head:  # the head's outputs are compared as such (logits_diff), not as a stage
        comparison.diffs.pop(head.stage, None)
    return comparison


def _result(model: str, text: str, folder: Path, twin, arch: Architecture, head, tokenizer: Tokenizer, ids: list[int],
            tokens: list[str], states: dict[str, torch.Tensor], comparison) -> Trace:
    """The Trace of one run: every state but the head's logits as a Stage, with its difference under --diff."""
    config = twin.config
    layers_path = f"{twin.base_model_prefix}.{arch.layers}" if head else arch.layers
    diffs = comparison.diffs if comparison is not None else {}
    verdicts = comparison.verdicts if comparison is not None else {}
    logits_stage = head.stage if head else None
    stages = [
        Stage(name, _layer(name, layers_path), tuple(x.shape), stats.summary(x), diffs.get(name), verdicts.get(name))
        for name, x in states.items()
        if name != logits_stage
    ]
    unk = tokenizer.unknown_token()
    return Trace(
        model=model,
        text=text,
        model_type=arch.model_type,
        model_class=type(twin).__name__,
        folder=folder,
        tokens=tokens,
        ids=ids,
        display_tokens=(display := tokenizer.display(ids, tokens)),
        characters=tokenizer.characters(ids, display) if tokenizer.fast is not None else [],
        unknown=[i for i, token in enumerate(tokens) if unk is not None and token == unk],
        stages=stages,
        states=states,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        layers_path=layers_path,
        attention_path=arch.attention,
        causal=arch.causal,
        logits_max_abs_diff=comparison.logits_diff if comparison is not None else None,
        diffed=comparison is not None,
        comparison=comparison,
    )


def _gradients(result: Trace, twin, inputs, tokenizer: Tokenizer, *, diff: bool, target: str | None,
               label: str | None, progress: bool) -> None:
    """--grad: the head's loss backpropagated (annotate/gradients.py), each stage given its gradient's statistics."""
    from annotate import gradients

    with working(t("backpropagating the loss (twin and transformers)") if diff else t("backpropagating the loss"), progress):
        found = gradients.backward(result, twin, inputs, tokenizer, diff=diff, target=target, label=label)
    result.loss, result.grads = found.loss, found.grads
    result.param_grad_max_abs_diff, result.param_grads_compared = found.param_grad_max_abs_diff, found.param_grads_compared
    for stage in result.stages:
        if stage.name in found.grads:
            stage.grad_stats = stats.summary(found.grads[stage.name])
        if found.grad_diffs is not None:
            stage.grad_max_abs_diff = found.grad_diffs.get(stage.name)


def _layer(name: str, layers_path: str) -> int | None:
    """The layer a stage belongs to ("encoder.layer.3.attention.self.query" -> 3), None outside the layers."""
    if not name.startswith(layers_path + "."):
        return None
    return int(name[len(layers_path) + 1 :].split(".")[0])


def save(trace: Trace, path: str | Path) -> None:
    """Every recorded tensor under its stage name, as safetensors (contiguous copies: the twin's
    Q/K/V are strided views, and last_hidden_state is the last layer's tensor itself)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise UserError(t("--save: no directory {folder!r}", folder=str(path.parent)))
    tensors = {name: x.clone(memory_format=torch.contiguous_format) for name, x in trace.states.items()}
    metadata = {"model": trace.model, "model_type": trace.model_type, "tokens": json.dumps(trace.tokens), "ids": json.dumps(trace.ids)}
    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError as e:
        raise UserError(t("--save: could not write {path!r}: {reason}", path=str(path), reason=e.strerror or e)) from None
