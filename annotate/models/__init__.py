"""What annotate knows of each architecture, one file per model type: annotate/models/<model_type>.py.

reimpl/ holds the twins (the model, nothing else) and their records (reimpl/architecture.py: the
config, the classes, where the layers are). Everything annotate adds to a model lives in one file
here, named by its ``model_type`` (``-`` written ``_``: xlm-roberta is ``xlm_roberta.py``):

- ``STEPS``: per step of the forward (a stage name without the base model's prefix and without the
  layer path and number: ``attention.self.probs``, ``mlp.act``, ``encoder.layer.N``), what the step
  *is* (``kind``, one of ``KINDS``: the explorer and the diagrams read it instead of matching names),
  its formula in the paper's notation, and where transformers' modeling file computes it (the
  function and the text of its lines: line numbers are looked up in the installed file each time);
- ``STEPS_4_57``: the anchors that differ under transformers 4.57 (the same math, other lines);
- ``HEADS``: per *For* class of the twins, which output holds its scores, which argument takes its
  labels, how its predictions read and, for scores over the vocabulary, the modules that compute
  them (``Head``); the tracer, ``--grad``, the logit lens and the explorer ask it;
- ``catch_hf(hf, hooks)``: where transformers computes each step the twin records, as forward hooks
  on transformers' model (annotate.capture's ``Hooks``);
- ``CHART``, if it has one: its flow chart for the guides (annotate/diagrams.py draws it from a trace);
- ``GRADED``, if it has any: the modules ``annotate check`` grades a learner's own code as (``Graded``:
  where the module sits, its arguments, its steps and their layouts, where its attention, its
  projections and its activation are, its residual sublayers), read by annotate/grader.py and
  annotate/diagnosis.py;
- ``TWINS``, ``RENAMED`` (``RENAMED_4_57``) and ``CALL_PATH`` for ``annotate source``: the
  transformers names whose math the twin writes elsewhere (the shared pieces' too: the mask it
  builds, its cache), the names that moved between versions, and the classes a reader meets first.

A family member imports its parent's file and overrides what differs (``renamed`` gives BERT's
steps with RoBERTa's class names), as transformers' modular files do. Nothing else in annotate/
names a model type: it asks ``get(model_type)``.

A leaf module: it imports no torch, no transformers and no other part of annotate (but
annotate.i18n's ``N_``, which marks its prose for the message catalogue), so that
``annotate source`` (which reads files, never imports them) stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from types import ModuleType

from annotate.i18n import N_

# What a step is. The explorer sorts stages into the residual stream and its branches by these.
KINDS = (
    "lookup",  # an embedding table read by index (tokens, positions, segments)
    "sum",  # embeddings added together
    "norm",  # LayerNorm (or RMSNorm)
    "query", "key", "value",  # the attention's projections, split into heads
    "rotary",  # rotary position embeddings: the angles' cos and sin, or Q and K turned by them
    "scores",  # Q K^T scaled, before the mask
    "probs",  # softmax(scores + mask)
    "context",  # P V, the heads side by side again
    "projection",  # a linear layer that is not the feed-forward's (attention output, embedding projection)
    "residual",  # the residual stream plus a branch
    "mlp",  # a linear layer of the feed-forward
    "activation",  # a nonlinearity (GELU, ReLU, tanh)
    "layer",  # a whole layer's output
    "pool",  # a pooler: one token's vector for the whole text
    "head",  # a head's transform or its scores
    "output",  # the base model's last hidden state
)


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str  # one of KINDS
    formula: str  # the paper's notation, plain text
    hf: tuple[tuple[str, tuple[str, ...]], ...]  # (function in the modeling file, the text of its lines that compute it)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown step kind {self.kind!r}; one of {', '.join(KINDS)}")


def step(kind: str, formula: str, *parts: tuple[str, tuple[str, ...]]) -> Step:
    return Step(kind, formula, parts)


def at(function: str, *anchors: str) -> tuple[str, tuple[str, ...]]:
    """``function``'s lines containing each anchor, in order (each anchor is searched after the previous one)."""
    return function, anchors


def renamed(steps: dict[str, Step], old: str, new: str) -> dict[str, Step]:
    """A family member's steps: the parent's, with its class prefix in function names replaced
    (``BertSelfOutput.forward`` -> ``RobertaSelfOutput.forward``; ``eager_attention_forward`` stays)."""

    def rename(function: str) -> str:
        return new + function[len(old):] if function.startswith(old) else function

    return {name: dataclasses.replace(s, hf=tuple((rename(f), a) for f, a in s.hf)) for name, s in steps.items()}


def anchors(anchored: dict[str, tuple[tuple[str, tuple[str, ...]], ...]], steps: dict[str, Step]) -> dict[str, Step]:
    """Another version's lines for the same steps: ``{step: (at(...), ...)}`` over ``steps``' kinds and formulas."""
    return {name: dataclasses.replace(steps[name], hf=parts) for name, parts in anchored.items()}


@dataclasses.dataclass(frozen=True)
class Output:
    """One of a head's outputs: a field of scores, how they read, and the argument of its labels."""

    field: str  # the output's field: "logits", "prediction_logits", "seq_relationship_logits"
    reads: str  # "next-token" (a causal LM), "masked-tokens", "labels" (one label per text), "replaced-tokens"
    labels: str = "labels"  # the forward's argument that takes its labels: "labels", "next_sentence_label"
    names: dict[int, str] | None = None  # what each label means, where config.id2label does not say (NSP, SOP)
    # Scores over the vocabulary (next-token, masked-tokens): the twin's modules (or activation
    # functions) that turn the base model's last hidden state into them, called in order (GPT-2's
    # ("lm_head",), BERT's whole MLM head ("cls.predictions",)). The logit lens (annotate/lens.py)
    # sends every layer's output through them, after the base model's final norm if it has one
    # (found by its step kind). None named: the lens refuses the model.
    through: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Head:
    """A *For* class: what it is trained for, the recorded name of its main scores (shown as
    predictions, not as a stage), and its outputs in the order the twin returns them."""

    task: str  # "causal-lm", "masked-lm", "pretraining", "next-sentence", "sequence-classification", "replaced-token-detection"
    stage: str  # "cls.predictions.decoder", "lm_head", "classifier.out_proj"
    outputs: tuple[Output, ...]

    def reading(self, reads: str) -> Output | None:
        """Its output that reads as ``reads`` ("masked-tokens", "labels", ...), or None."""
        return next((o for o in self.outputs if o.reads == reads), None)


@dataclasses.dataclass(frozen=True)
class Twin:
    """Where in reimpl/ the math of a transformers name lives, for ``annotate source``.

    ``target``: "module:qualname" (None: no twin, ``note`` says why). ``focus``: the first and last
    line of the part that corresponds, as text the lines contain (None: all of it)."""

    target: str | None
    note: str
    focus: tuple[str, str] | None = None


INPUT_IDS = "input_ids"  # a chart's first box: not a recorded stage, the tokens' ids, shape (1, T)


@dataclasses.dataclass(frozen=True)
class Box:
    """One node of a chart."""

    id: str  # the mermaid node id
    label: str  # what the step computes; "{...}" fields are filled from the trace (see _facts)
    stage: str | None = None  # the stage whose shape the box shows ("{layer}": the first layer); None: no shape
    kind: str = "box"  # "box", "norm" (a LayerNorm, highlighted), "add" (a residual addition), "io" (a layer's input)


@dataclasses.dataclass(frozen=True)
class Chart:
    name: str
    title: str  # the subgraph's title; "{...}" fields filled from the trace
    before: tuple[Box, ...]  # above the repeated layer
    layer: tuple[Box, ...]  # one layer, drawn once (the title says how many)
    after: tuple[Box, ...]  # after the last layer
    edges: tuple[tuple[str, str, str], ...]  # (from, to, label): an arrow, labelled unless label is ""
    residuals: tuple[tuple[str, str], ...]  # (from, to): a residual connection, drawn dotted
    trace: Callable  # (text) -> annotate.tracer.Trace: the run the chart is read from

    @property
    def boxes(self) -> tuple[Box, ...]:
        return (*self.before, *self.layer, *self.after)

    def stages(self) -> dict[str, str]:
        """Node id -> the stage whose shape it shows, for the boxes that show one."""
        return {box.id: box.stage for box in self.boxes if box.stage is not None}



class Knowledge:
    """One architecture's file, read with defaults for what it leaves out."""

    def __init__(self, model_type: str, module: ModuleType):
        self.model_type = model_type
        self.module = module

    def steps(self, transformers_version: str = "5") -> dict[str, Step]:
        """The steps, with the anchors of the installed transformers (4.57's where they differ)."""
        steps = self.module.STEPS
        if transformers_version.startswith("4."):
            steps = {**steps, **getattr(self.module, "STEPS_4_57", {})}
        return steps

    def kind(self, step_name: str) -> str | None:
        s = self.module.STEPS.get(step_name)
        return s.kind if s is not None else None

    @property
    def heads(self) -> dict[str, Head]:
        return getattr(self.module, "HEADS", {})

    def head(self, class_name: str) -> Head | None:
        """The head interface of a twin class (None for a base model)."""
        return self.heads.get(class_name)

    @property
    def twins(self) -> dict[tuple[str, str], Twin]:
        return getattr(self.module, "TWINS", {})

    def renamed_names(self, transformers_version: str = "5") -> dict[str, tuple[str, str | None, str]]:
        """Names of the other major version: name -> (what to show instead, its --model, what changed)."""
        names = getattr(self.module, "RENAMED", {})
        if transformers_version.startswith("4."):
            names = {**names, **getattr(self.module, "RENAMED_4_57", {})}
        return names

    @property
    def call_path(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "CALL_PATH", ()))

    @property
    def chart(self) -> Chart | None:
        """Its flow chart for the guides (annotate/diagrams.py), if it has one."""
        return getattr(self.module, "CHART", None)

    def catch_hf(self, hf, hooks) -> None:
        self.module.catch_hf(hf, hooks)


def head_of(model) -> Head | None:
    """The head interface of a twin (or of a transformers model of a twin's class); None for a base model."""
    return get(model.config.model_type).head(type(model).__name__)


def heads_reading(reads: str) -> list[str]:
    """The twin classes, over every architecture with a file here, that have an output reading as
    ``reads`` ("next-token": the causal LMs)."""
    import pkgutil

    names = []
    for info in pkgutil.iter_modules(__path__):
        heads = getattr(importlib.import_module(f"{__name__}.{info.name}"), "HEADS", {})
        names += [name for name, head in heads.items() if head.reading(reads) is not None]
    return names


def module_name(model_type: str) -> str:
    return f"{__name__}.{model_type.replace('-', '_')}"


@functools.cache
def get(model_type: str) -> Knowledge:
    """What annotate knows of ``model_type``; a LookupError if annotate/models/ has no file for it."""
    try:
        module = importlib.import_module(module_name(model_type))
    except ModuleNotFoundError as e:
        if e.name != module_name(model_type):
            raise
        raise LookupError(f"annotate/models/ has no file for model_type {model_type!r}") from None
    return Knowledge(model_type, module)


# ---------------------------------------------------------------------------------------------
# annotate check: the modules of transformers a learner can write and have graded against their
# twin (annotate/grader.py). Each architecture's file lists its own in ``GRADED``.

# What each argument of a graded module's forward is (``Graded.call`` for the twin's module,
# ``Graded.args`` for the learner's), by role.
ROLES = {
    "x": N_("hidden states (B, T, C): the module's input, from the real model run up to it"),
    "mask": N_("the tokenizer's mask (B, T): 1 for a real token, 0 for padding"),
    "mask4d": N_("the additive mask (B, 1, T, S): 0 where a query sees a key, the dtype's minimum where not"),
    "rope": N_("position_embeddings: (cos, sin) of each position's rotary angles, each (1, T, hs)"),
    "ids": N_("the token ids (B, T)"),
    "types": N_("the token type ids (B, T): all 0, one segment"),
    "positions": N_("the position ids (1, T); None: the module counts them itself"),
    "past": N_("the cache: None at the first token, then the (key, value) the previous call returned"),
    "memory": N_("the encoder's output (B, S, C): the source run through the real encoder, what cross-attention reads keys and values from"),
    "source_mask": N_("the source's tokenizer mask (B, S): 1 for a real source token, 0 for padding"),
    "source_mask4d": N_("the source's additive mask (B, 1, 1, S): 0 for a real source token, the dtype's minimum for padding"),
}


@dataclasses.dataclass(frozen=True)
class Sublayer:
    """One residual sublayer of a layer (its attention, its feed-forward), for the grader's
    diagnoses of a layer's structure (normalised before or after, a residual missing).

    ``branch(layer, h, args)``: the sublayer's branch computed on ``h`` from the twin layer's own
    modules (``args``: the layer's arguments by role); returns ({step: value} for the steps the
    branch's modules do not record themselves, the branch's output)."""

    branch: Callable
    norm: str  # the path of its norm module inside the layer
    norm_step: str  # the step that records the norm's output
    residual_step: str  # the step that records stream + branch


@dataclasses.dataclass(frozen=True)
class Graded:
    """A module of transformers that ``annotate check FILE::CLASS --as KIND`` grades a learner's own
    class against: the twin's module, run on the real model's input to it, is the reference answer."""

    kind: str  # "bert-attention"
    hf_class: str  # transformers' class: "BertSelfAttention"
    where: str  # its path in the twin's base model, "{layer}" for the layer's number: "encoder.layer.{layer}.attention.self"
    call: tuple[str | None, ...]  # the twin module's positional arguments, by role (ROLES; None: pass None)
    args: tuple[str, ...]  # the learner's forward's arguments, by role
    returns: str  # what forward returns, in words
    steps: tuple[str, ...]  # the steps the twin's module records, in forward order (names inside the module)
    output: str  # the step whose value forward returns
    layouts: dict[str, str] = dataclasses.field(default_factory=dict)  # step -> "heads" (B, h, T, hs), "scores" (B, nh, T, S)
    # softmax's input, compared where a key is seen), "probs" (B, nh, T, S), "positions" (1, T, C); "memory" (B, S, ...): over
    # the source's tokens (a cross-attention's keys and values), compared at the real ones; "cross-scores", "cross-probs": a
    # cross-attention's (B, nh, T, S), the keys being the source's tokens; else "tokens" (B, T, ...)
    causal: bool = False  # the learner applies the causal mask itself
    default_model: str | None = None  # None: --model is needed
    attention: str | None = None  # the path of its attention module inside it ("": itself); None: it has none
    qkv: tuple[str, str, str] | None = None  # the query, key and value projections' paths; "c_attn[1]": the second third of a fused one
    out_proj: str | None = None  # the linear layer that reads the merged heads (None: the merged heads are the output)
    activation: str | None = None  # the attribute that holds the feed-forward's activation function
    sublayers: tuple[Sublayer, ...] = ()  # its residual sublayers, in order
    pre_norm: bool = False  # each sublayer normalises its input (GPT-2) rather than its output (BERT)
    incremental: bool = False  # run token by token, the learner's forward taking and returning the cache ("past")
    # Its cross-attentions (an encoder-decoder's decoder): their paths inside it ("": itself), each with the name of its
    # forward's argument that takes the memory (the encoder's output), for the diagnosis "keys and values from the decoder".
    cross: dict[str, str] = dataclasses.field(default_factory=dict)
    # An encoder-decoder's real input: the source texts and their target texts (fed to the decoder under teacher forcing:
    # the start token, then the target shifted right). Empty: the grader's own texts (annotate/grader.py TEXTS).
    texts: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    model_type: str = ""  # the architecture whose file defines it (filled in by ``graded``)


def graded() -> dict[str, Graded]:
    """Every kind ``annotate check`` grades, over the architectures' files (their ``GRADED``), by kind."""
    import pkgutil

    kinds: dict[str, Graded] = {}
    for info in pkgutil.iter_modules(__path__):
        for kind in getattr(importlib.import_module(f"{__name__}.{info.name}"), "GRADED", ()):
            if kind.kind in kinds:
                raise ValueError(f"two architectures' files define the graded kind {kind.kind!r}")
            kinds[kind.kind] = dataclasses.replace(kind, model_type=info.name.replace("_", "-"))
    return kinds
