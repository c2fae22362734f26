"""What ``annotate trace`` computes for an encoder-decoder (Marian, BART): the source through the
encoder, a target through the decoder, every named stage, and where each target token looked in
the source.

The target is either given (``--target``: teacher forcing, the decoder reads it shifted right,
the start token first, as in training) or the model's own greedy translation (reimpl/seq2seq.py,
the settings of the checkpoint's generation_config.json but one beam), which is then read back
the same way, so that each position's stages are those that chose its next token.

The checkpoint's tokenizer is transformers' (AutoTokenizer: Marian's sentencepiece models have no
tokenizer.json). No rendering here (annotate/render_translate.py).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from annotate import align, models, stats
from annotate.errors import UserError
from annotate.i18n import t
from annotate.tracer import Prediction, Stage
from reimpl import registry
from reimpl.marian import shift_tokens_right
from reimpl.states import recording


@dataclasses.dataclass
class Translation:
    model: str  # as given on the command line
    model_type: str  # "marian", "bart"
    model_class: str  # "MarianMTModel"
    folder: Path
    source: str
    given_target: bool  # True: --target, teacher forcing; False: the greedy translation
    translation: str  # the target as text (given, or the model's)
    source_tokens: list[str]
    source_ids: list[int]
    target_tokens: list[str]  # what the decoder read: the start token, then the target but its last token
    target_ids: list[int]
    next_tokens: list[Prediction]  # per decoder position: the token the model ranks first next
    stages: list[Stage]  # forward order: the encoder's, the decoder's, the head's scores
    states: dict[str, torch.Tensor]
    encoder_layers: int
    decoder_layers: int
    num_heads: int
    prefix: str  # the base model's key prefix in stage names: "model." for the heads, "" for a base model
    paths: dict[str, str]  # where each stack's layers are, inside the base model: {"encoder": "encoder.layers", "decoder": ...}
    self_attention: str  # inside a layer, its self-attention ("self_attn")
    cross: str  # inside a decoder layer, its attention over the source ("encoder_attn")
    comparison: Any = None  # --diff: annotate.compare.Comparison
    logits_max_abs_diff: float | None = None
    diffed: bool = False

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def layer(self, stack: str, layer: int) -> str:
        """The stage name of ``stack`` ("encoder", "decoder")'s layer ``layer``: its output."""
        return f"{self.prefix}{self.paths[stack]}.{layer}"

    def embedded(self, stack: str) -> str:
        """The stage that enters ``stack``'s first layer: its embeddings' last step."""
        names = list(self.states)
        first = next(i for i, name in enumerate(names) if name.startswith(self.layer(stack, 0) + "."))
        return names[first - 1]

    def attention(self, stack: str, layer: int, cross: bool = False) -> torch.Tensor:
        """(nh, T, K) probabilities of ``stack``'s layer ``layer``: its self-attention, or with
        ``cross`` the decoder's attention over the source ((nh, T, S))."""
        return self.states[f"{self.layer(stack, layer)}.{self.cross if cross else self.self_attention}.probs"][0].double()

    def cross_attention(self, layer: int) -> torch.Tensor:
        """(T, S): where each target position looked in the source, averaged over heads."""
        return self.attention("decoder", layer, cross=True).mean(0)

    def first_math(self) -> str | None:
        return next((s.name for s in self.stages if s.verdict == "math"), None)

    def to_json(self) -> str:
        stages = [dict(name=s.name, shape=list(s.shape), **s.stats, max_abs_diff=s.max_abs_diff, verdict=s.verdict) for s in self.stages]
        cross = [{"layer": L, "weights": self.cross_attention(L).tolist()} for L in range(self.decoder_layers)]
        out = {
            "model": self.model, "model_type": self.model_type, "model_class": self.model_class,
            "source": {"text": self.source, "tokens": self.source_tokens, "ids": self.source_ids},
            "target": {"given": self.given_target, "text": self.translation, "decoder_tokens": self.target_tokens,
                       "decoder_ids": self.target_ids},
            "next_tokens": [dataclasses.asdict(p) for p in self.next_tokens],
            "stages": stages,
            "cross_attention": cross,
        }
        if self.diffed:
            out["diff"] = {"logits_max_abs_diff": self.logits_max_abs_diff, "first_math": self.first_math(),
                           "against": self.comparison.b}
        return json.dumps(out, ensure_ascii=False, indent=1)


def _tokenizer(folder: Path):
    from annotate.compare import quiet_transformers

    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer recommends sacremoses, which it uses for nothing here
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(folder)
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(t("transformers could not load a tokenizer from {folder!r}: {reason}", folder=str(folder), reason=reason)) from None


def _greedy(twin, folder: Path, source: dict[str, torch.Tensor]) -> torch.Tensor:
    """(1, n) the greedy translation, start token first, with the checkpoint's generation settings but one beam."""
    from reimpl import seq2seq

    path = folder / "generation_config.json"
    generation_config = json.loads(path.read_text()) if path.is_file() else None
    config = json.loads((folder / "config.json").read_text())
    try:
        settings = seq2seq.settings_from(generation_config, config)
    except ValueError as e:
        raise UserError(str(e)) from None
    settings.update(num_beams=1, num_return_sequences=1)
    return seq2seq.generate(twin, source["input_ids"], source["attention_mask"], **settings)


def trace(model: str, folder: Path, twin, text: str, target: str | None = None, *, diff: bool = False,
          progress: bool = True, against: str = "eager", dtype: str = "fp32", device: str = "cpu") -> Translation:
    """The twin run on ``text`` and ``target`` (None: its greedy translation), every stage summarised;
    with ``diff``, each against transformers' model of ``folder`` (annotate/compare.py)."""
    from annotate.tracer import working

    arch = registry.architecture_of(twin)
    if not text.strip():
        raise UserError(t("the source text is empty"))
    tokenizer = _tokenizer(folder)
    source = tokenizer(text, return_tensors="pt")
    limit = twin.config.max_position_embeddings
    if source["input_ids"].shape[1] > limit:
        raise UserError(t("the source is {n} tokens long; {model} takes at most {limit} positions", n=source["input_ids"].shape[1], model=model, limit=limit))
    config = twin.config
    if target is not None:
        labels = tokenizer(text_target=target, return_tensors="pt")["input_ids"]  # (1, T): the target, </s> last
        decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)  # (1, T)
        translation = target
    else:
        with working(t("translating with {model}", model=model), progress):
            generated = _greedy(twin, folder, source)  # (1, n): the start token, then the translation
        decoder_input_ids = generated[:, :-1] if generated.shape[1] > 1 else generated  # its last token is read by nobody
        translation = tokenizer.decode(generated[0], skip_special_tokens=True)
    if decoder_input_ids.shape[1] > limit:
        raise UserError(t("the target is {n} tokens long; {model} takes at most {limit} positions", n=decoder_input_ids.shape[1], model=model, limit=limit))
    inputs = dict(input_ids=source["input_ids"], attention_mask=source["attention_mask"], decoder_input_ids=decoder_input_ids)
    head = models.head_of(twin)
    if head is not None and head.reading("next-token") is None:
        raise UserError(t("{model} is a {cls}, which scores labels: annotate trace shows the encoder-decoders that write a target", model=model, cls=type(twin).__name__))
    with torch.inference_mode(), recording() as states:
        out = twin(**inputs)
    states = dict(states)
    head_stage = "logits" if "logits" in states else None
    if head_stage is None:  # a base model: its output is the last stage
        states["last_hidden_state"] = out.last_hidden_state
    comparison = None
    if diff:
        from annotate import compare

        keep = align.seq2seq_keep(inputs["attention_mask"], inputs["input_ids"].shape[1], decoder_input_ids.shape[1])
        with working(t("running transformers ({against}, {dtype}) for --diff", against=against, dtype=dtype), progress):
            comparison = compare.against_transformers(folder, twin, inputs, states, out, against=against, dtype=dtype,
                                                      device=device, causal=True, keep=keep)
        comparison.diffs.pop(head_stage, None)
    diffs = comparison.diffs if comparison is not None else {}
    verdicts = comparison.verdicts if comparison is not None else {}
    stages = [Stage(name, None, tuple(x.shape), stats.summary(x), diffs.get(name), verdicts.get(name))
              for name, x in states.items() if name != head_stage]
    source_ids = source["input_ids"][0].tolist()
    target_ids = decoder_input_ids[0].tolist()
    next_tokens = []
    if head_stage is not None:
        probs = torch.softmax(states[head_stage][0].double(), dim=-1)  # (T, V)
        for row in probs:
            p, i = row.max(dim=-1)
            token = tokenizer.convert_ids_to_tokens(int(i))
            next_tokens.append(Prediction(int(i), token, tokenizer.decode([int(i)]), p.item(), token))
    prefix = f"{twin.base_model_prefix}." if hasattr(twin, twin.base_model_prefix) else ""
    return Translation(
        model=model, model_type=arch.model_type, model_class=type(twin).__name__, folder=folder, source=text,
        given_target=target is not None, translation=translation,
        source_tokens=tokenizer.convert_ids_to_tokens(source_ids), source_ids=source_ids,
        target_tokens=tokenizer.convert_ids_to_tokens(target_ids), target_ids=target_ids,
        next_tokens=next_tokens, stages=stages, states=states,
        encoder_layers=config.encoder_layers, decoder_layers=config.decoder_layers, num_heads=config.decoder_attention_heads,
        prefix=prefix, paths={"encoder": arch.encoder, "decoder": arch.layers}, self_attention=arch.attention,
        cross=arch.cross_attention, comparison=comparison, logits_max_abs_diff=comparison.logits_diff if comparison is not None else None,
        diffed=comparison is not None,
    )
