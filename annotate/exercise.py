"""``annotate exercise``: write parts of a Transformer yourself, graded by ``annotate check``.

Each exercise is a skeleton in annotate/exercises/ (shipped with the package): a module with TODOs,
its comments in English and Chinese, whose forward records its steps with ``annotate.record``.
``start N DIR`` copies it into DIR; ``check N DIR`` grades DIR's copy as its kind
(annotate/grader.py), against the twin of a real model: the reference answers are the twins.
A TODO not yet filled in raises NotImplementedError("TODO ..."): ``check`` then says which one, and
where, and exits 1.

The GPT-2 exercises need a GPT-2 checkpoint (``--model``); without one, a GPT-2 with random weights
in the real checkpoint layout (annotate/examples.py) is written once into DIR/gpt2-random.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from annotate.errors import UserError
from annotate.i18n import t

SKELETONS = Path(__file__).resolve().parent / "exercises"


@dataclasses.dataclass(frozen=True)
class Exercise:
    number: int
    file: str  # in annotate/exercises/
    cls: str  # the class graded
    kind: str  # annotate check's kind
    title: str
    title_zh: str

    @property
    def skeleton(self) -> Path:
        return SKELETONS / self.file


EXERCISES = (
    Exercise(1, "01_attention.py", "SelfAttention", "bert-attention", "scaled dot-product attention", "缩放点积注意力"),
    Exercise(2, "02_heads.py", "SelfAttention", "bert-attention", "splitting and merging the heads", "拆分与合并多头"),
    Exercise(3, "03_masks.py", "CausalSelfAttention", "gpt2-attention", "the causal and padding masks", "因果掩码与填充掩码"),
    Exercise(4, "04_bert_layer.py", "Layer", "bert-layer", "a BERT layer (post-LN)", "一个 BERT 层（post-LN）"),
    Exercise(5, "05_gpt2_block.py", "Block", "gpt2-block", "a GPT-2 block (pre-LN)", "一个 GPT-2 块（pre-LN）"),
    Exercise(6, "06_kv_cache.py", "CachedAttention", "gpt2-cache", "the key/value cache", "键/值缓存"),
    Exercise(7, "07_sampling.py", "Warper", "sampling", "sampling: temperature, top-k, top-p", "采样：温度、top-k、top-p"),
    Exercise(8, "08_rotary_attention.py", "Attention", "llama-attention", "Llama's attention: rotary positions, shared key/value heads",
             "Llama 的注意力：旋转位置编码、共享的键/值头"),
    Exercise(9, "09_cross_attention.py", "CrossAttention", "marian-cross-attention",
             "cross-attention: the decoder reading the encoder's output", "交叉注意力：解码器读取编码器的输出"),
    Exercise(10, "10_decoder_layer.py", "DecoderLayer", "marian-decoder-layer", "a Transformer decoder layer (post-LN)",
             "一个 Transformer 解码器层（post-LN）"),
)


def get(number: str | int) -> Exercise:
    try:
        n = int(number)
    except ValueError:
        n = -1
    for exercise in EXERCISES:
        if exercise.number == n:
            return exercise
    raise UserError(t("no exercise {number!r}: they are 1 to {n} (annotate exercise list)", number=number, n=len(EXERCISES)))


def listing() -> list[dict]:
    from annotate import grader

    kinds = grader.kinds()
    return [{"number": e.number, "title": e.title, "title_zh": e.title_zh, "file": e.file, "class": e.cls, "kind": e.kind,
             "against": kinds[e.kind].hf_class} for e in EXERCISES]


def start(number: str | int, folder: str | Path) -> Path:
    """Copy exercise ``number``'s skeleton into ``folder`` (made if missing); never over a file already there."""
    exercise = get(number)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(t("{folder} is not a folder", folder=folder))
    target = folder / exercise.file
    if target.exists():
        raise UserError(t("{target} is already there (your work?): check it with annotate exercise check {number} {folder}",
                          target=target, number=exercise.number, folder=folder))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exercise.skeleton, target)
    return target


@dataclasses.dataclass
class Unfinished:
    """A TODO still raising: where, and which."""

    exercise: Exercise
    where: str  # "01_attention.py:42"
    todo: str  # "TODO 1: scores = Q K^T / sqrt(d_k)"

    def message(self) -> str:
        return f"exercise {self.exercise.number} ({self.exercise.title}) is not finished: {self.where}: {self.todo}"

    def message_zh(self) -> str:
        return f"练习 {self.exercise.number}（{self.exercise.title_zh}）还没有完成：{self.where}：{self.todo}"


def check(number: str | int, folder: str | Path, model: str | None = None):
    """Grade ``folder``'s copy of exercise ``number``: an annotate.grader.Report, or Unfinished."""
    from annotate import grader

    exercise = get(number)
    path = Path(folder) / exercise.file
    if not path.is_file():
        raise UserError(t("{path}: no such file; copy the exercise first: annotate exercise start {number} {folder}",
                          path=path, number=exercise.number, folder=folder))
    kind = grader.kind_of(exercise.kind)
    if model is None and kind.default_model is None and kind.model_type == "gpt2":
        model = str(random_gpt2(Path(folder) / "gpt2-random"))
    try:
        return grader.check_file(f"{path}::{exercise.cls}", exercise.kind, model=model)
    except grader.Unfinished as e:
        return Unfinished(exercise, e.where, e.todo)


def random_gpt2(folder: Path) -> Path:
    """A small GPT-2 with random weights, in the real checkpoint layout, written once into ``folder``."""
    from annotate.examples import write_gpt2

    if not (folder / "config.json").is_file():
        write_gpt2(folder, n_layer=2, n_head=4, n_embd=64)
    return folder


def render_listing(console) -> None:
    """``annotate exercise list``."""
    from rich.table import Table
    from rich.text import Text

    from annotate import i18n

    chinese = i18n.current() == "zh-CN"  # the title in the view's language first, the other beside it
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for e in listing():
        first, second = (e["title_zh"], e["title"]) if chinese else (e["title"], e["title_zh"])
        grid.add_row(str(e["number"]), Text(first, style="bold") + Text(f"  {second}")
                     + Text("\n" + t("{file}: graded as {kind} ({against})", file=e["file"], kind=e["kind"], against=e["against"]), style="dim"))
    console.print(grid)
    console.print(Text(t("annotate exercise start N DIR copies one; annotate exercise check N DIR grades it"), style="dim"), highlight=False)


def render_unfinished(unfinished: Unfinished, console, folder: str | Path) -> None:
    """Which TODO is next, and where: the line, in both languages."""
    from rich.text import Text

    e = unfinished.exercise
    console.print(Text(f"exercise {e.number} ({e.title}) is not finished:"), highlight=False)
    console.print(Text(f"  {unfinished.where}: {unfinished.todo}", style="bold"), highlight=False)
    console.print(Text(f"练习 {e.number}（{e.title_zh}）还没有完成。"), highlight=False)
    console.print(Text(t("fill it in, then run: annotate exercise check {number} {folder}", number=e.number, folder=folder), style="dim"), highlight=False)
