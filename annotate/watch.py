"""What ``annotate generate`` does and shows: a prompt continued by the twin, one token per step,
with what each step chose and from what.

``Watch(model, prompt, ...)`` loads the checkpoint into its twin (reimpl.registry, no transformers
model), tokenizes with annotate.tracer.Tokenizer, and settles the settings as transformers'
``generate`` would: its global defaults, then the checkpoint's generation_config.json (or
config.json: eos_token_id, ...), then the command line. ``run()`` decodes with
reimpl.generation.generate and keeps, per step, the chosen token, its probability after the
logits processors (temperature, top-k, top-p), its probability under the model alone, how many
tokens the processors left possible, and the likeliest alternatives. ``show()`` prints that as it
happens, within 80 columns.

``run(attention=True)`` (``annotate generate --html``) also keeps what each step looked at: the
twin runs inside reimpl.states.recording(), and after each forward the attention probabilities of
its last position (the query that chooses the next token) in every layer and head, over every key
in the cache, and the cache's size (``Watch.looked``, one ``Looked`` per step). Without it the twin
is called as it is: the plain path records nothing. annotate/explorer_generate.py draws the page.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from annotate import i18n, models
from annotate.errors import UserError
from annotate.i18n import t
from annotate.render import _lines, styled

WIDTH = 80
DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "eos_token_id": None, "pad_token_id": None}  # transformers' global ones


@dataclasses.dataclass
class Candidate:
    id: int
    token: str  # the vocabulary's string ("Ġcat")
    text: str  # what it decodes to (" cat")
    prob: float  # after the logits processors: what the sampler drew from
    model_prob: float  # the model's own softmax, before any processor


@dataclasses.dataclass
class Choice:
    index: int  # 0 for the first new token
    chosen: Candidate
    kept: int  # tokens the processors left possible (score not -inf); the whole vocabulary when greedy
    top: list[Candidate]  # the likeliest after the processors, best first (the chosen one among them if it is)


@dataclasses.dataclass
class Generation:
    model: str  # as given on the command line
    model_class: str
    prompt: str
    chat: bool  # the prompt was put through the chat template (the prompt ids are the template's)
    prompt_ids: list[int]
    settings: dict[str, Any]  # do_sample, temperature, top_k, top_p, eos_token_id, pad_token_id: as generate gets them
    max_new_tokens: int
    seed: int | None
    vocab_size: int
    processors: list[str]  # the processors that apply, in transformers' order: "temperature 0.7", "top-k 50", ...
    steps: list[Choice] = dataclasses.field(default_factory=list)
    ids: list[int] = dataclasses.field(default_factory=list)  # prompt and new tokens
    text: str = ""  # the new tokens decoded together

    @property
    def stopped_at_eos(self) -> bool:
        eos = self.settings["eos_token_id"]
        return eos is not None and bool(self.steps) and self.steps[-1].chosen.id == eos

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stopped_at_eos"] = self.stopped_at_eos
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclasses.dataclass
class Looked:
    """What one step's query looked at (``run(attention=True)``)."""

    attention: Any  # torch.Tensor (layers, heads, keys), fp32: the last position's attention probabilities in every layer
    keys: int  # how many keys it attended to: the cache after this step's forward (the prompt, then one more per step)
    cache_bytes: int  # the cache's keys and values, all layers, in bytes


class _Recorded:
    """The twin as reimpl.generation.generate calls it, each forward inside a recording: after it,
    every layer's attention probabilities of the last position, (layers, heads, keys), and the
    cache's size, appended to ``looked``. The tokens are the same: a recording only keeps tensors."""

    def __init__(self, twin, looked: list[Looked]):
        from reimpl import registry

        arch = registry.architecture_of(twin)
        layers = f"{twin.base_model_prefix}.{arch.layers}"
        self.names = [f"{layers}.{i}.{arch.attention}.probs" for i in range(twin.config.num_hidden_layers)]
        self.twin, self.looked = twin, looked

    def __call__(self, input_ids, attention_mask=None, cache=None, *args, **kwargs):
        import torch

        from reimpl.states import recording

        with recording() as states:
            out = self.twin(input_ids, attention_mask, cache, *args, **kwargs)
        rows = torch.stack([states[name][0, :, -1, :].float() for name in self.names])  # (L, nh, keys): the last query's rows
        size = sum(x.numel() * x.element_size() for x in [*getattr(cache, "keys", []), *getattr(cache, "values", [])])
        self.looked.append(Looked(rows, rows.shape[-1], size))
        return out


class Watch:
    """One prompt, one model, settled settings; ``run`` generates (see the module docstring).

    Settings left as None take the checkpoint's value, else transformers' default. ``seed``:
    when sampling without one, a seed is drawn and kept (and shown), so any run can be repeated.
    ``top``: how many likeliest tokens each step keeps. ``chat``: the prompt is a user's message,
    put through the checkpoint's chat template as ``apply_chat_template(..., add_generation_prompt=True)``
    does (the assistant's turn opened, for the model to fill).
    """

    def __init__(self, model: str, prompt: str, *, max_new_tokens: int = 20, do_sample: bool | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, top: int = 5, chat: bool = False):
        from annotate import tracer
        from reimpl import generation, loading, registry

        if max_new_tokens < 1:
            raise UserError(t("--max-new-tokens must be at least 1, not {max_new_tokens}", max_new_tokens=max_new_tokens))
        self.folder = loading.resolve(model)
        if tracer.encoder_decoder(str(self.folder)):
            raise UserError(t("{model} is an encoder-decoder: annotate generate shows a decoder alone's steps (annotate trace {model} TEXT translates)", model=model))
        try:
            settings = {**DEFAULTS, **generation.checkpoint_settings(self.folder)}
        except ValueError as e:
            raise UserError(f"{model}: {e}") from None
        given = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        if do_sample:
            settings["do_sample"] = True
        if not settings["do_sample"] and any(v is not None for v in given.values()):
            flags = ", ".join(f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None)
            raise UserError(t("{flags}: sampling settings, but sampling is off; add --do-sample (without it, each step takes the likeliest token)", flags=flags))
        settings.update({k: v for k, v in given.items() if v is not None})
        try:
            processors = generation.logits_processors(settings["do_sample"], settings["temperature"], settings["top_k"], settings["top_p"])
        except ValueError as e:
            raise UserError(t("bad sampling setting: {error}", error=e)) from None
        if settings["do_sample"] and seed is None:
            seed = random.SystemRandom().randrange(2**31)

        self.twin = registry.from_pretrained(self.folder)
        head = models.head_of(self.twin)
        if head is None or head.reading("next-token") is None:
            causal = ", ".join(models.heads_reading("next-token")) or t("none yet")
            raise UserError(t("{model} loads as {cls}, which has no language-model head to generate with (a causal LM such as {causal} does)",
                              model=model, cls=type(self.twin).__name__, causal=causal))
        self.tokenizer = tracer.Tokenizer(self.folder)
        ids = chat_ids(self.folder, prompt, model) if chat else self.tokenizer.encode(prompt)[0]
        config = self.twin.config
        if not ids:
            raise UserError(t("the prompt gives no tokens; generation needs at least one to continue from"))
        if max(ids) >= config.vocab_size:
            raise UserError(t("the tokenizer gave id {id}, but the model's vocabulary has {size} entries", id=max(ids), size=config.vocab_size))
        if len(ids) + max_new_tokens > config.max_position_embeddings:
            raise UserError(t("the prompt is {n} tokens and {new} new ones would make {total}; {model} takes at most {limit} positions",
                              n=len(ids), new=max_new_tokens, total=len(ids) + max_new_tokens, model=model, limit=config.max_position_embeddings))
        self.generation = Generation(
            model=model, model_class=type(self.twin).__name__, prompt=prompt, chat=chat, prompt_ids=ids, settings=settings,
            max_new_tokens=max_new_tokens, seed=seed, vocab_size=config.vocab_size, processors=[_describe(p) for p in processors],
        )
        self.top = top
        self.looked: list[Looked] = []  # run(attention=True): per step, what its query looked at

    def run(self, on_choice: Callable[[Choice], None] | None = None, attention: bool = False) -> Generation:
        """Generate; ``on_choice`` is called with each step's Choice as it is made. ``attention``:
        also keep each step's attention and cache size in ``self.looked`` (for the page)."""
        import torch

        from reimpl.generation import generate

        gen = self.generation
        self.looked = []
        model = _Recorded(self.twin, self.looked) if attention else self.twin

        def on_step(step) -> None:
            choice = self._choice(step)
            gen.steps.append(choice)
            if on_choice is not None:
                on_choice(choice)

        if gen.seed is not None:
            torch.manual_seed(gen.seed)
        input_ids = torch.tensor([gen.prompt_ids])  # (1, T)
        settings = dict(gen.settings)
        if not settings["do_sample"]:  # a checkpoint's sampling values, unused: not passed (generate would warn)
            settings.update((k, DEFAULTS[k]) for k in ("temperature", "top_k", "top_p"))
        out = generate(model, input_ids, gen.max_new_tokens, torch.ones_like(input_ids), on_step=on_step, **settings)
        gen.ids = out[0].tolist()
        gen.text = _decode(self.tokenizer, gen.ids[len(gen.prompt_ids):])
        return gen

    def _choice(self, step) -> Choice:
        import torch

        probs = step.probs[0]  # (V,) after the processors
        model_probs = torch.softmax(step.logits[0], dim=-1)  # (V,) the model's own
        top = torch.topk(probs, min(self.top, probs.numel())).indices.tolist()

        def candidate(i: int) -> Candidate:
            return Candidate(i, self.tokenizer.token(i), self.tokenizer.decode(i), probs[i].item(), model_probs[i].item())

        kept = int((step.scores[0] > float("-inf")).sum())
        return Choice(step.index, candidate(int(step.next_tokens[0])), kept, [candidate(i) for i in top])


def chat_ids(folder, message: str, model: str) -> list[int]:
    """The ids of ``message`` as a user's turn, through the checkpoint's chat template, the
    assistant's turn opened: transformers' ``apply_chat_template(..., add_generation_prompt=True)``
    itself (the template is Jinja code that only transformers renders as the model's authors meant)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(t("--chat: {model} has no chat template (its tokenizer files name none); give the prompt as plain text", model=model))
    ids = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def _describe(processor) -> str:
    from reimpl import generation

    if isinstance(processor, generation.TemperatureLogitsWarper):
        return f"temperature {processor.temperature}"
    if isinstance(processor, generation.TopKLogitsWarper):
        return f"top-k {processor.top_k}"
    return f"top-p {processor.top_p}"


def _decode(tokenizer, ids: list[int]) -> str:
    """Several ids decoded together (a character may span byte-level tokens)."""
    if tokenizer.fast is not None:
        return tokenizer.fast.decode(ids, skip_special_tokens=False)
    return tokenizer.auto.decode(ids)


# ---------------------------------------------------------------------------------------------
# In a terminal.

STEP, TOKEN, PROB = 4, 14, 7  # column widths


def console() -> Console:
    """stdout, at most WIDTH columns wide."""
    return Console(width=min(WIDTH, Console().width))


def _p(x: float) -> str:
    """A probability in at most 7 characters, never cut: 0.412, 1.000, 3.2e-05, 0."""
    return "0" if x == 0 else f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _shown(text: str, token: str = "") -> str:
    """A token's text in quotes, with its spaces and newlines visible: " cat", "\\n". A piece of a
    character (byte-level BPE splits some characters into several tokens, which decode alone to
    "\ufffd") shows as its bytes: b'\\xe2\\x80'."""
    if "\ufffd" in text and token and all(ch in BYTE_LEVEL for ch in token):
        return repr(bytes(BYTE_LEVEL[ch] for ch in token))
    return json.dumps(text, ensure_ascii=False)


def _byte_level() -> dict[str, int]:
    """GPT-2's byte-level alphabet (tokenizers' ByteLevel): the printable character standing for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


BYTE_LEVEL = _byte_level()


def _pad(value: str, width: int, left: bool = False) -> str:
    gap = " " * max(0, width - cell_len(value))
    return value + gap if left else gap + value


def _clip(text: str, width: int) -> str:
    """A token's text (never a number) cut to ``width`` columns, with an ellipsis."""
    if cell_len(text) <= width:
        return text
    while cell_len(text) > width - 1:
        text = text[:-1]
    return text + "…"


def _listed(items) -> str:
    """Items of a list, joined as the language joins them (Chinese: the enumeration comma 、)."""
    return ("、" if i18n.current() == "zh-CN" else ", ").join(items)


def _processor(described: str) -> str:
    """A processor as Generation.processors names it ("temperature 0.7", "top-k 50"), for the view."""
    if described.startswith("temperature "):
        return t("temperature {value}", value=described.removeprefix("temperature "))
    return described  # top-k, top-p: their own names in both languages


def _header(gen: Generation, width: int) -> list[Text]:
    s = gen.settings
    out = [Text.assemble(("annotate generate ", "bold"), gen.model),
           Text(t("{model_class}, a vocabulary of {n} tokens", model_class=gen.model_class, n=gen.vocab_size), style="dim")]
    if s["do_sample"]:
        how = _listed(_processor(p) for p in gen.processors) if gen.processors else t("no processors: the model's own distribution")
        out.append(Text(t("sampling: {how}; seed {seed}", how=how, seed=gen.seed)))
    else:
        out.append(Text(t("greedy: each step takes the likeliest token")))
    prompt = (_shown(gen.prompt), "bold")
    if gen.chat:
        out.append(styled(t("user: {prompt} (through the chat template: {n} tokens)", prompt="{prompt}", n=len(gen.prompt_ids)), prompt=prompt))
    else:
        out.append(styled(t("prompt: {prompt} ({n} tokens)", prompt="{prompt}", n=len(gen.prompt_ids)), prompt=prompt))
    if gen.processors:
        out.append(Text(t("p: after the processors (sampled from) · model: before them · kept: tokens left"), style="dim"))
    out.append(Text(""))
    return out


def _columns(gen: Generation) -> list[tuple[str, int]]:
    """(title, width) of the fixed columns; the alternatives take the rest."""
    cols = [(t("step"), STEP), (t("token"), TOKEN), ("p", PROB)]
    if gen.processors:
        kept = t("kept")
        cols += [(t("model"), PROB), (kept, max(4, len(str(gen.vocab_size)), cell_len(kept)))]
    return cols


def _row(cells: list[tuple[str, int]], rest: list[str], width: int, style: str = "") -> list[Text]:
    """One line of the table: step, token (left-aligned), numbers (right-aligned), then ``rest``
    (the alternatives) wrapped under their own column. A token wider than its column gets a line
    of its own, its numbers on the next: nothing is cut."""
    (step, ws), (token, wt), *numbers = cells
    out = []
    if cell_len(token) > wt:
        out.append(Text.assemble(_pad(step, ws) + " ", (token, "bold")))
        step, token = "", ""
    tail = " ".join(_pad(value, w) for value, w in numbers)
    indent = ws + 1 + wt + 1 + cell_len(tail) + 2
    lines = _lines(rest, width - indent) or [""]
    out.append(Text.assemble(_pad(step, ws) + " ", (_pad(token, wt, left=True), "bold"), " " + tail + "  " + lines[0], style=style))
    out += [Text(" " * indent + line, style="dim") for line in lines[1:]]
    return out


def _step_lines(gen: Generation, choice: Choice, width: int) -> list[Text]:
    c = choice.chosen
    cells = [(str(choice.index + 1), STEP), (_shown(c.text, c.token), TOKEN), (_p(c.prob), PROB)]
    if gen.processors:
        cells += [(_p(c.model_prob), PROB), (str(choice.kept), _columns(gen)[-1][1])]
    others = [f"{_clip(_shown(a.text, a.token), 18)} {_p(a.prob)}" for a in choice.top if a.id != c.id and a.prob > 0][:3]
    return _row(cells, others, width)


def show(watch: Watch, console: Console, attention: bool = False) -> Generation:
    """Print the header, each step as it is made, then the whole text (``attention``: see ``Watch.run``)."""
    gen = watch.generation
    width = min(WIDTH, console.width)
    for line in _header(gen, width):
        console.print(line)
    for line in _row(_columns(gen), [t("next likeliest")], width, style="bold"):
        console.print(line)
    watch.run(lambda choice: [console.print(line) for line in _step_lines(gen, choice, width)], attention=attention)
    console.print()
    n = len(gen.steps)
    end = t("stopped at the end-of-text token after {n} new tokens", n=n) if gen.stopped_at_eos else t("{n} new tokens", n=n)
    console.print(Text(end, style="dim"))
    if gen.chat:  # the template's own text is markup, not the conversation: the reply alone
        console.print(styled(t("assistant: {reply}"), style="dim", reply=(gen.text, "bold")))
    else:
        console.print(Text.assemble((gen.prompt, "dim"), (gen.text, "bold")))
    return gen
