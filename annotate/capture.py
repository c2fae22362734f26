"""Transformers' own intermediate values, caught under the twin's stage names.

``hf_states(hf)`` puts forward hooks on a live transformers model that a twin mirrors (eager
attention), where annotate/models/<model_type>.py's ``catch_hf`` says each step is computed, and
fills a dict as it runs, keyed by the names the twin records
(reimpl/states.py): ``encoder.layer.3.attention.self.query``, ``transformer.h.0.mlp.act``. Then
``differences`` lines the two up step by step, in the same layout, for ``annotate trace --diff``
and for the parity tests.

Most steps are a module's output. The others are caught where they next appear:

- residual sums: the input of the LayerNorm (or module) that follows them;
- Q/K/V: transformers keeps them as Linear (BERT) or c_attn (GPT-2) outputs, (B, T, C); the twin
  records them split into heads, (B, nh, T, hs); annotate.align puts both in one layout;
- scaled scores: they never leave ``eager_attention_forward``; they are caught as softmax's input,
  which is scores + mask, under ``<name>+mask``. The mask adds exactly 0 where a key is kept, so
  the scores compare exactly there and nowhere else.

In training, the dropout modules' outputs are caught under their paths (``embeddings.dropout``),
as the twins record them, and the attention's returned weights (after dropout) under the
attention's dropout name; its probabilities before dropout are softmax's output. With
``grads=True`` every caught tensor also gets a hook, and ``backward`` fills ``caught.grads``
under the same names (the gradient of softmax's input is the scores' gradient: adding the mask
passes it through unchanged).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from annotate import align
from annotate.align import heads_merged  # noqa: F401 (the guides import it from here)
from reimpl.states import Recording


class Hooks:
    """Forward hooks that store into ``caught`` under the twin's names, removed together.

    A name is the HF module's path in the model (the twin's modules have the same paths), plus a
    step where the value is not the module's own output: ``on(layer.attention.self, "probs",
    index=1)`` catches ``encoder.layer.0.attention.self.probs``. Names are looked up at each call,
    so a module that ``numbered`` renames per application is caught under each call's name.
    """

    def __init__(self, model: nn.Module, caught: Recording):
        self.caught = caught
        self.model = model
        self.paths = {module: path for path, module in model.named_modules()}
        self.handles = []
        self.replaced: dict[str, tuple[object, object]] = {}  # module-level functions replaced by ``returned``
        self.calling: list[tuple[nn.Module, tuple[str, ...]]] = []  # the modules whose ``returned`` function may run now
        # Per attention call, in the order they ran: the name of its scores (softmax's input) and,
        # in training, of its probabilities (softmax's output); see ``scores``.
        self.attention_order: list[tuple[str, str | None]] = []
        self.softmax_output: torch.Tensor | None = None  # the last attention softmax's output (4.x, ``probs``)
        self.dropout_pending: list[tuple[str, str | None]] = []  # ``dropout_input``'s names for the next dropout call

    def name(self, module: nn.Module, step: str | None = None) -> str:
        path = self.paths[module]
        return ".".join(part for part in (path, step) if part)

    def keep(self, name: str, tensor: torch.Tensor | None) -> None:
        """``tensor`` is ``name`` (and, under ``grads=True``, its gradient is too). None (the sdpa
        path returns no attention weights) leaves the name uncaught."""
        if tensor is not None:
            self.caught.keep(name, tensor)

    def on(self, module: nn.Module, step: str | None = None, index: int | None = None) -> None:
        """The module's output (or one element of its output tuple) is ``<module path>.<step>``."""

        def hook(module, args, output):
            if index is None and isinstance(output, tuple):  # transformers 4.x: a layer returns (hidden_states,)
                output = output[0]
            self.keep(self.name(module, step), output if index is None else output[index])

        self.handles.append(module.register_forward_hook(hook))

    def calls(self, module: nn.Module, owner: nn.Module, steps: tuple[str, ...]) -> None:
        """The module's n-th output in one forward of ``owner`` is ``<owner's path>.<steps[n]>``
        (GPT-2's wte looks up the tokens, then the token types)."""
        count = 0

        def start(module, args):
            nonlocal count
            count = 0

        def hook(module, args, output):
            nonlocal count
            if count < len(steps):
                self.keep(self.name(owner, steps[count]), output)
            count += 1

        self.handles.append(owner.register_forward_pre_hook(start))
        self.handles.append(module.register_forward_hook(hook))

    def returned(self, function: str, within: nn.Module, steps: tuple[str, ...]) -> None:
        """The values a module-level ``function`` of the model's modeling file returns, when
        ``within`` calls it, are ``<within's path>.<steps[i]>`` (Llama's ``apply_rotary_pos_emb``
        returns the rotated Q and K). The function is replaced while the hooks are on; transformers'
        forward looks it up by name at each call, so the replacement is what runs."""
        namespace = sys.modules[type(self.model).__module__]
        if function not in self.replaced:
            original = getattr(namespace, function)
            self.replaced[function] = (namespace, original)

            def spy(*args, **kwargs):
                out = original(*args, **kwargs)
                if self.calling:
                    owner, names = self.calling[-1]
                    for step, value in zip(names, out):
                        self.keep(self.name(owner, step), value)
                return out

            setattr(namespace, function, spy)

        def enter(module, args, kwargs):
            self.calling.append((module, steps))

        def leave(module, args, kwargs, output):
            self.calling.pop()

        self.handles.append(within.register_forward_pre_hook(enter, with_kwargs=True))
        self.handles.append(within.register_forward_hook(leave, with_kwargs=True))

    def inside(self, module: nn.Module, owner: nn.Module, step: str) -> None:
        """The module's output, while ``owner`` runs, is ``<owner's path>.<step>``: for a module
        that several owners call (4.57's Marian encoder and decoder share one embedding module)."""
        running = False

        def enter(owner, args):
            nonlocal running
            running = True

        def leave(owner, args, output):
            nonlocal running
            running = False

        def hook(module, args, output):
            if running:
                self.keep(self.name(owner, step), output)

        self.handles.append(owner.register_forward_pre_hook(enter))
        self.handles.append(owner.register_forward_hook(leave))
        self.handles.append(module.register_forward_hook(hook))

    def dropout_input(self, owner: nn.Module, step: str) -> None:
        """The input of the first ``nn.functional.dropout`` that ``owner``'s forward calls is
        ``<owner's path>.<step>`` (Marian's embeddings sum: no module takes it in); in training its
        output is ``<owner's path>.dropout``, as the twin's Dropout records it. Caught by the
        dropout spy of ``hf_states``."""

        def enter(owner, args):
            self.dropout_pending.append((self.name(owner, step), self.name(owner, "dropout") if owner.training else None))

        self.handles.append(owner.register_forward_pre_hook(enter))

    def before(self, module: nn.Module, owner: nn.Module, step: str) -> None:
        """The module's first input is ``<owner's path>.<step>`` (a residual sum, the value before a norm)."""

        def hook(module, args):
            self.keep(self.name(owner, step), args[0])

        self.handles.append(module.register_forward_pre_hook(hook))

    def split(self, module: nn.Module, owner: nn.Module, steps: tuple[str, ...], size: int) -> None:
        """The module's output split in chunks of ``size`` on the last dimension, one per step
        (GPT-2's c_attn output is [Q | K | V]). Gradients: the output's, split the same way (the
        chunks made here take no part in transformers' graph)."""

        def hook(module, args, output):
            names = [self.name(owner, step) for step in steps]
            self.caught.update((name, chunk.detach()) for name, chunk in zip(names, output.split(size, dim=-1)))
            if self.caught.hooks is not None and output.requires_grad:
                output.register_hook(lambda grad: self.caught.grads.update(zip(names, grad.split(size, dim=-1))))

        self.handles.append(module.register_forward_hook(hook))

    def scores(self, attention: nn.Module) -> None:
        """The attention module's softmax input is ``<path>.scores+mask``: the scaled scores never leave
        eager_attention_forward, so they are caught by the softmax spy in ``hf_states`` while this
        module runs. In training, so are the probabilities, softmax's output: what transformers
        returns is the probabilities after dropout (``probs``, below)."""

        def hook(module, args):
            probs = self.name(attention, "probs") if attention.training else None
            self.attention_order.append((self.name(attention, "scores+mask"), probs))

        self.handles.append(attention.register_forward_pre_hook(hook))

    def probs(self, attention: nn.Module, dropout: str) -> None:
        """The attention weights the module returns (``output[1]``): the probabilities in eval mode;
        in training, the probabilities after dropout, named as the twin names its dropout there
        (``<path>.<dropout>``, transformers' attribute: ``dropout``, ``attn_dropout``)."""

        def hook(module, args, output):
            if len(output) > 1:
                self.keep(self.name(module, dropout if module.training else "probs"), output[1])
            elif not module.training:
                # transformers 4.x: ALBERT's and DistilBERT's attention return (output,) unless asked
                # for output_attentions; their probabilities are then softmax's output (the spy's).
                self.keep(self.name(module, "probs"), self.softmax_output)

        self.handles.append(attention.register_forward_hook(hook))
        if isinstance(getattr(attention, dropout, None), nn.Module):
            # transformers 4.x calls the attention's dropout module (5.x keeps it for its p and calls
            # nn.functional.dropout): in training, its output is the weights after dropout.
            def after_dropout(module, args, output):
                if module.training:
                    self.keep(self.name(attention, dropout), output)

            self.handles.append(getattr(attention, dropout).register_forward_hook(after_dropout))

    def dropout(self, module: nn.Module) -> None:
        """A dropout module's output, in training only (in eval mode it returns its input, and the
        twins record nothing for it)."""

        def hook(module, args, output):
            if module.training:
                self.keep(self.name(module), output)

        self.handles.append(module.register_forward_hook(hook))

    def numbered(self, modules: Iterable[nn.Module], within: nn.Module, step: str) -> None:
        """Number the calls of ``modules`` in order, 0, 1, ..., from each call of ``within``; during
        call n the called module and its submodules are named as if at ``<within's path>.<step>.n``.

        For modules applied several times in one forward (ALBERT's shared layer groups, called by
        the encoder's loop): under their own paths each call would overwrite the last; numbered,
        transformers' calls get the names the twin records (reimpl.states.applied_as).
        """
        calls = 0

        def start(module, args):
            nonlocal calls
            calls = 0

        def rename(module, args):
            nonlocal calls
            path = self.name(within, f"{step}.{calls}")
            calls += 1
            for sub_path, sub in module.named_modules():
                self.paths[sub] = f"{path}.{sub_path}" if sub_path else path

        self.handles.append(within.register_forward_pre_hook(start))
        for module in modules:  # prepend: renamed before any other hook on the module reads its name
            self.handles.append(module.register_forward_pre_hook(rename, prepend=True))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        for function, (namespace, original) in self.replaced.items():
            setattr(namespace, function, original)


@contextlib.contextmanager
def hf_states(hf: nn.Module, grads: bool = False) -> Iterator[Recording]:
    """Hooks on a transformers model that the twins mirror (BertModel, BertForMaskedLM,
    GPT2LMHeadModel, ...; eager attention) that catch, under the twin's names, what each step
    produced. The dict is complete when the block exits; with ``grads``, ``.grads`` is filled by
    the ``backward`` that follows (inside the block or after it).

    Q/K/V are in HF's (B, T, C) layout (see ``heads_merged``); the scores are softmax's input, so
    they are caught as ``<name>.scores+mask``.
    """
    from annotate import models
    from reimpl.registry import ARCHITECTURES, twin_class

    if twin_class(type(hf).__name__) is None or getattr(hf.config, "model_type", None) not in ARCHITECTURES:
        raise TypeError(f"no twin of {type(hf).__name__}, so no hooks for it")
    caught = Recording(grads)
    hooks = Hooks(hf, caught)
    models.get(hf.config.model_type).catch_hf(hf, hooks)

    # The scores never leave eager_attention_forward: catch them as softmax's input, one call per
    # attention module run. (HF calls nn.functional.softmax by attribute, so replacing it reaches it.)
    seen = 0
    real_softmax = F.softmax

    def spy(x, *args, **kwargs):
        nonlocal seen
        y = real_softmax(x, *args, **kwargs)
        if seen < len(hooks.attention_order):  # the first softmax in each attention call
            scores, probs = hooks.attention_order[seen]
            seen += 1
            hooks.keep(scores, x)
            hooks.softmax_output = y
            if probs is not None:  # training: the probabilities before dropout
                hooks.keep(probs, y)
        return y

    real_dropout = F.dropout

    def dropout_spy(x, *args, **kwargs):
        y = real_dropout(x, *args, **kwargs)
        if hooks.dropout_pending:  # the first dropout of a forward that ``dropout_input`` watches
            before, after = hooks.dropout_pending.pop()
            hooks.keep(before, x)
            if after is not None:
                hooks.keep(after, y)
        return y

    F.softmax = spy
    F.dropout = dropout_spy
    try:
        yield caught
    finally:
        F.softmax = real_softmax
        F.dropout = real_dropout
        hooks.remove()


def differences(
    ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], keep: torch.Tensor | None
) -> dict[str, float | None]:
    """max |twin - HF| per twin stage, compared in the same layout (annotate.align); None where HF's
    value wasn't caught. ``keep``: booleans broadcastable to the scores (B, nh, T, S), True where a
    key is attended to; None for all (gradients)."""
    return align.max_diffs(ours, theirs, keep)
