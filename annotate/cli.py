"""The `annotate` command: parse, call the library, render. Nothing else lives here.

Imports of torch and transformers happen inside the commands, so `annotate --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from annotate import __version__

EXAMPLES = """\
examples:
  annotate trace sentence-transformers/all-MiniLM-L6-v2 "The cat sat on the mat." --diff
  annotate trace bert-base-uncased "Paris is the capital of [MASK]." --layers 0,11 --grid 11.3
  annotate trace gpt2 "The meaning of life is" --stages probs,c_proj --json
  annotate trace SmolLM2-135M-Instruct.Q4_1.gguf "The capital of France is" --lens
  annotate trace sentence-transformers/all-MiniLM-L6-v2 "The cat sat." --diff --against sdpa --dtype bf16
  annotate diff bert-base-uncased ./my-port "Paris is the capital of [MASK]."
  annotate source BertSelfAttention
  annotate check my_attention.py::MyAttention --as bert-attention
  annotate exercise start 1 my-exercises
  annotate guide list
  annotate notebook 03 --lang zh-CN -o notebooks
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="annotate",
        description="Read transformers' BERT and GPT-2 beside readable, bit-exact twins: trace what happens inside.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"annotate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_trace, _add_diff, _add_source, _add_generate, _add_guide, _add_notebook, _add_check, _add_exercise):  # in --help's order
        add(commands)
    return parser


def _add_trace(commands) -> None:
    trace = commands.add_parser(
        "trace",
        help="print, layer by layer, what the model computes for a text",
        description="Run the reimplementation on TEXT and print each stage: shape and statistics, "
        "attention per head, and for GPT-2 the predicted next tokens.",
    )
    trace.add_argument("model", help="hub id (bert-base-uncased, gpt2), local checkpoint directory, "
                       "or sentence-transformers/all-MiniLM-L6-v2 (packaged, offline)")
    trace.add_argument("text", help="the input text")
    trace.add_argument("--diff", action="store_true", help="also run transformers (eager, fp32) and print max |twin - transformers| per stage, with a verdict on "
                       "each difference: rounding or math (both re-run in float64); exit 1 only for math")
    trace.add_argument("--layers", metavar="SPEC", help="layers to show, e.g. 0,3-5 (default: all)")
    trace.add_argument("--heads", metavar="SPEC", help="heads to describe, e.g. 0-2 (default: all)")
    trace.add_argument("--stages", metavar="NAMES", help="stages to show by step name, e.g. query,probs,LayerNorm")
    trace.add_argument("--grid", metavar="LAYER.HEAD", help="print one head's attention matrix as a colored grid, e.g. 3.7")
    trace.add_argument("--top-k", type=int, metavar="N", help="how many predicted tokens to list (next token, [MASK], and per position in --lens's JSON; default 5)")
    trace.add_argument("--lens", action="store_true", help="the logit lens: each layer's output put through the model's final norm and LM head, "
                       "the top token per position after each layer (a causal LM: its next-token guess; a masked LM: what its whole "
                       "MLM head, transform and decoder, would put at each position); the last layer's is the model's own prediction")
    trace.add_argument("--full", action="store_true", help="every stage, and per head the tokens each token attends to most")
    trace.add_argument("--explain", action="store_true", help="beside each stage: its formula, and the lines of transformers and of the twin that compute it")
    trace.add_argument("--json", action="store_true", help="print the trace as one JSON object (every stage, or those --layers/--stages keep)")
    trace.add_argument("--attention", action="store_true", help="with --json: add the attention weights of the layers and heads shown")
    trace.add_argument("--save", metavar="FILE.safetensors", help="write every recorded tensor under its stage name")
    trace.add_argument("--grad", action="store_true", help="backpropagate the head's loss (GPT-2: the text's LM loss; masked LM: --target at each mask; "
                       "classifier: --label) and show each stage's gradient; with --diff, against transformers' gradients")
    trace.add_argument("--target", metavar="TEXT", help="an encoder-decoder (Marian, BART): the target the decoder reads (teacher forcing; default: its "
                       "greedy translation); with --grad, a masked LM: the word whose cross-entropy to take at each mask (default: the top prediction)")
    trace.add_argument("--label", metavar="LABEL", help="with --grad, a classifier: the label (name or number) to score (default: the predicted one)")
    trace.add_argument("--against", choices=("eager", "sdpa"), help="with --diff: transformers' attention path to compare with (default eager)")
    trace.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="with --diff: run transformers in this dtype, against the fp32 twin (default fp32)")
    trace.add_argument("--device", choices=("cpu", "cuda"), help="with --diff: run transformers on this device (default cpu)")
    trace.add_argument("--lang", choices=("en", "zh-CN"), help="the language of the view's headings, legends and hints (default: the locale's; zh_CN chooses zh-CN)")
    trace.add_argument("--html", metavar="FILE", help="also write the explorer: one self-contained, offline web page of the trace (flow chart, stages with their code, every head's attention)")
    trace.set_defaults(run=run_trace)


def _add_diff(commands) -> None:
    diff = commands.add_parser(
        "diff",
        help="compare two checkpoints of one architecture stage by stage, with a verdict on each difference",
        description="Run the twins of MODEL_A and MODEL_B on TEXT (MODEL_A's tokenizer) and print max |A - B| per "
        "stage. Each difference gets a verdict: both are re-run in float64, and where they then agree (to 2^-36 of "
        "the stage's scale) it is rounding, else math; the first math stage is named. Exit 1 only when some "
        "verdict is math. For a port, a conversion, a fine-tune.",
    )
    diff.add_argument("model_a", metavar="MODEL_A", help="hub id, checkpoint directory or packaged model")
    diff.add_argument("model_b", metavar="MODEL_B", help="another checkpoint of the same architecture and class")
    diff.add_argument("text", help="the input text")
    diff.add_argument("--layers", metavar="SPEC", help="layers to show, e.g. 0,3-5 (default: all)")
    diff.add_argument("--stages", metavar="NAMES", help="stages to show by step name, e.g. query,probs,LayerNorm")
    diff.add_argument("--full", action="store_true", help="every stage, with its statistics and max |A - B|")
    diff.add_argument("--explain", action="store_true", help="beside each stage: its formula, and the lines that compute it")
    diff.add_argument("--json", action="store_true", help="print the comparison as one JSON object, each stage with its verdict")
    diff.add_argument("--lang", choices=("en", "zh-CN"), help="the language of the view's headings, legends and hints (default: the locale's; zh_CN chooses zh-CN)")
    diff.set_defaults(run=run_diff)


def _add_source(commands) -> None:
    source = commands.add_parser(
        "source",
        help="print the installed transformers source of a class, function or stage, beside its twin in reimpl/",
        description="Print the source of NAME from the installed transformers, with file and line "
        "numbers, and the matching code in reimpl/ where there is one. NAME may also be a stage "
        "name as `annotate trace` prints it: its formula, and the lines of both that compute it. "
        "The files are read, not imported.",
    )
    source.add_argument("name", help="e.g. BertSelfAttention, eager_attention_forward, GPT2Attention.forward, Conv1D, "
                        "encoder.layer.0.attention.self.probs, transformer.h.3.mlp.act")
    source.add_argument("--model", metavar="MODEL_TYPE", help="which modeling file (bert, gpt2, ...), when NAME is in several; a stage's architecture")
    source.add_argument("--no-twin", action="store_true", help="print transformers' source only")
    source.add_argument("--lang", choices=("en", "zh-CN"), help="the language of the view's headings, legends and hints (default: the locale's; zh_CN chooses zh-CN)")
    source.set_defaults(run=run_source)


def _add_generate(commands) -> None:
    generate = commands.add_parser(
        "generate",
        help="continue a prompt token by token, showing each step's choice and alternatives",
        description="Continue PROMPT with the twin of a causal language model (GPT-2, Llama), as transformers' "
        "generate does (same seed, same tokens), and show each step: the chosen token, its probability "
        "after temperature / top-k / top-p, its probability under the model alone, and the next likeliest "
        "tokens. Unset options take the checkpoint's generation_config.json, else transformers' defaults.",
    )
    generate.add_argument("model", help="hub id (gpt2), local checkpoint directory of a causal LM, a .gguf file, "
                          "or SmolLM2-135M-Instruct.Q4_1.gguf (packaged, offline)")
    generate.add_argument("prompt", help="the text to continue (with --chat: the user's message)")
    generate.add_argument("--chat", action="store_true", help="put PROMPT through the checkpoint's chat template as a user's message, "
                          "the assistant's turn opened (apply_chat_template(..., add_generation_prompt=True))")
    generate.add_argument("--max-new-tokens", type=int, metavar="N", help="how many tokens to add (default 20; an encoder-decoder: "
                          "its generation_config.json's max_length)")
    generate.add_argument("--num-beams", type=int, metavar="N", help="an encoder-decoder (Marian, BART): beam search with N beams "
                          "(default: its generation_config.json's; 1: greedy)")
    generate.add_argument("--do-sample", action="store_true", default=None, help="sample instead of taking the likeliest token")
    generate.add_argument("--temperature", type=float, metavar="T", help="with --do-sample: divide the logits by T (default 1.0)")
    generate.add_argument("--top-k", type=int, metavar="K", help="with --do-sample: keep the K likeliest tokens (default 50; 0: all)")
    generate.add_argument("--top-p", type=float, metavar="P", help="with --do-sample: keep the likeliest tokens up to probability P (default 1.0: all)")
    generate.add_argument("--seed", type=int, metavar="S", help="torch.manual_seed(S) first, as for transformers; sampling without it draws one and shows it")
    generate.add_argument("--lang", choices=("en", "zh-CN"), help="the language of the view's headings, legends and hints (default: the locale's; zh_CN chooses zh-CN)")
    generate.add_argument("--json", action="store_true", help="print the steps as one JSON object instead of a table")
    generate.add_argument("--html", metavar="FILE", help="also write the explorer of the generation: one self-contained, offline web page (each step's "
                          "choice and alternatives, its attention over the prompt and the tokens so far per layer and head, the cache growing); a decoder only")
    generate.set_defaults(run=run_generate)


def _add_guide(commands) -> None:
    guide = commands.add_parser(
        "guide",
        help="list the guides (a reading path from the paper to transformers' code to the twins'), in English and Chinese",
        description="The guides ship with annotate: list them with their numbers, titles and files; "
        "annotate notebook N [--lang zh-CN] writes one as a Jupyter notebook.",
    )
    actions = guide.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every guide: number, title, file (English, then Simplified Chinese)")
    listing.add_argument("--lang", choices=("en", "zh-CN"), help="one language only")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    guide.set_defaults(run=run_guide)


def _add_notebook(commands) -> None:
    notebook = commands.add_parser(
        "notebook",
        help="write a guide as a Jupyter notebook",
        description="Write GUIDE as a Jupyter notebook: its prose as Markdown cells, its python blocks as code "
        "cells, its annotate commands as !annotate cells. Blocks written for the other major version of "
        "transformers, or for a hub model that is not in the cache, stay as text. GUIDE is a guide's number "
        "(annotate guide list), all, or a guide's .md file.",
    )
    notebook.add_argument("guide", nargs="+", help="e.g. 3, 03, all, or guides/03-attention.md guides/zh-CN/03-attention.md")
    notebook.add_argument("--lang", choices=("en", "zh-CN"), help="with numbers: the guides in this language (default en)")
    notebook.add_argument("-o", "--output", metavar="DIR", default=".", help="folder to write NAME.ipynb into, made if missing (default: the current one)")
    notebook.set_defaults(run=run_notebook)


def _add_check(commands) -> None:
    check = commands.add_parser(
        "check",
        help="grade your own module against transformers, step by step, on real weights, with a diagnosis",
        description="Build your class as CLASS(config) with transformers' config of MODEL, give it the checkpoint's weights "
        "(by transformers' names inside that module, or as FILE's WEIGHTS = {'your.name': 'transformers.name'} maps them), "
        "run it on the module's real input (a padded batch of two texts, run through the model up to it) and compare "
        "every step you name with annotate.record(name, tensor), and the output, with transformers': equal, rounding "
        "(the float64 reruns agree) or math. The first math step gets a diagnosis, in English and Chinese. Exit 0 for "
        "equal or rounding, 1 for math, 2 for bad input.",
    )
    check.add_argument("target", nargs="?", metavar="FILE.py::CLASS", help="your module's file and class (the class may be left out when the file defines one)")
    check.add_argument("--as", dest="kind", metavar="KIND", help="what it is: bert-attention, bert-layer, gpt2-attention, gpt2-block, ... (--list)")
    check.add_argument("--model", metavar="MODEL", help="the checkpoint (default: the kind's packaged real model; GPT-2 kinds need one)")
    check.add_argument("--layer", type=int, default=0, metavar="N", help="which layer's module (default 0)")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.add_argument("--list", action="store_true", help="list the kinds: what forward takes and returns, and the step names")
    check.add_argument("--lang", choices=("en", "zh-CN"), help="the language of the view's headings, legends and hints (default: the locale's; zh_CN chooses zh-CN)")
    check.set_defaults(run=run_check)


def _add_exercise(commands) -> None:
    exercise = commands.add_parser(
        "exercise",
        help="write parts of a Transformer yourself (attention, heads, masks, layers, the cache, sampling), graded by annotate check",
        description="Skeletons with TODOs, commented in English and Chinese: list them, copy one into a folder, fill it in, "
        "and grade it against transformers on real weights.",
    )
    actions = exercise.add_subparsers(dest="action", metavar="ACTION", required=True)
    listed = actions.add_parser("list", help="the exercises")
    start = actions.add_parser("start", help="copy exercise N's skeleton into DIR")
    check = actions.add_parser("check", help="grade DIR's copy of exercise N")
    for action in (listed, start, check):
        action.add_argument("--lang", choices=("en", "zh-CN"), help="the language of the view's headings and hints (default: the locale's; zh_CN chooses zh-CN)")
    for action in (start, check):
        action.add_argument("number", metavar="N")
        action.add_argument("folder", metavar="DIR")
    check.add_argument("--model", metavar="MODEL", help="the checkpoint (GPT-2 exercises: default a random GPT-2 written to DIR/gpt2-random)")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    exercise.set_defaults(run=run_exercise)


def run_check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from annotate import grader
    from annotate.errors import UserError
    from annotate.i18n import t

    if args.list:
        if args.json:  # data: the English of every entry (grader.Words is a str)
            print(json.dumps(grader.listing(), ensure_ascii=False, indent=1))
        else:
            grader.render_listing(Console(highlight=False))
        return 0
    if args.target is None or args.kind is None:
        raise UserError(t("give FILE.py::CLASS --as KIND (annotate check --list lists the kinds)"))
    report = grader.check_file(args.target, args.kind, model=args.model, layer=args.layer)
    if args.json:
        print(report.to_json())
    else:
        report.render(Console(highlight=False))
    return report.exit_code


def run_exercise(args: argparse.Namespace) -> int:
    from rich.console import Console

    from annotate import exercise
    from annotate.i18n import t

    console = Console(highlight=False)
    if args.action == "list":
        exercise.render_listing(console)
        return 0
    if args.action == "start":
        path = exercise.start(args.number, args.folder)
        console.print(t("copied to {path}", path=path))
        console.print(t("fill in its TODOs, then: annotate exercise check {n} {folder}", n=args.number, folder=args.folder))
        return 0
    result = exercise.check(args.number, args.folder, model=args.model)
    if isinstance(result, exercise.Unfinished):
        if args.json:
            print(json.dumps({"verdict": "unfinished", "where": result.where, "todo": result.todo}))
        else:
            exercise.render_unfinished(result, console, args.folder)
        return 1
    if args.json:
        print(result.to_json())
    else:
        result.render(console)
    return result.exit_code


def run_trace(args: argparse.Namespace) -> int:
    import gc

    from rich.console import Console

    from annotate import render, tracer
    from annotate.errors import UserError
    from annotate.i18n import t

    if tracer.encoder_decoder(args.model):  # a source and a target: annotate/translate.py
        return run_translation(args)
    for given, message in (
        (args.grid is not None and args.json, t("--grid prints a picture; --json --attention gives the weights")),
        (args.full and args.json, t("--full is for the tables; --json always has every stage")),
        (args.explain and args.json, t("--explain is for the tables")),
        (args.html is not None and args.json, t("--html writes a page; --json prints data (use one of them)")),
        (args.attention and not args.json, t("--attention needs --json (the tables show attention with --full and --grid)")),
        (args.heads is not None and not (args.full or args.grid or args.attention), t("--heads needs --full, or --json --attention")),
        (args.target is not None and not args.grad, t("--target needs --grad (it chooses the loss), or an encoder-decoder (the target it reads)")),
        (args.label is not None and not args.grad, t("--label needs --grad (it chooses the loss)")),
    ):
        if given:
            raise UserError(message)
    if args.html:
        from annotate import explorer

        explorer.check_target(args.html)  # before the trace: a path that can't be written costs no trace
    if not gc.get_freeze_count():  # once per process (main() may run many times in one, as in the tests)
        gc.freeze()  # torch's ~10^6 import-time objects: out of every later full collection (~0.1 s each)
    console = Console()
    view = render.View.parse(layers=args.layers, heads=args.heads, stages=args.stages, grid=args.grid, full=args.full, explain=args.explain)
    result = tracer.trace(args.model, args.text, diff=args.diff, top_k=args.top_k or 5, progress=not args.json,
                          grad=args.grad, target=args.target, label=args.label, lens=args.lens, **_comparison(args))
    if args.top_k is not None and result.predictions is None and result.mask_predictions is None:
        raise UserError(t("--top-k: {cls} predicts no tokens (labels only, or no head)", cls=result.model_class))
    view.check(result)  # the layers, heads and stages asked for exist in this model (also for --json)
    if args.save:
        tracer.save(result, args.save)
    if args.json:
        print(result.to_json(view, attention=args.attention))
    else:
        render.render(result, view, console, explain=render.explainer(result) if args.explain else None)
    if args.html:
        size = explorer.write(result, args.html)
        console.print(t("explorer: {path} ({size:.1f} MB, works offline)", path=args.html, size=size / 1e6), style="dim", highlight=False, soft_wrap=True)
    # Values: only a difference in the math fails (annotate/compare.py); rounding is reported, not failed.
    diverged = (result.comparison is not None and result.comparison.has_math()) or (args.grad and result.first_grad_divergence() is not None)
    return 1 if args.diff and diverged else 0


def run_translation(args: argparse.Namespace) -> int:
    """``annotate trace`` for an encoder-decoder: ``args.text`` the source, ``--target`` the target (else its greedy translation)."""
    from rich.console import Console

    from annotate import render_translate, tracer, translate
    from annotate.errors import UserError
    from annotate.i18n import t

    for option in ("grad", "lens", "grid", "save", "layers", "heads", "stages", "explain", "attention", "label", "top_k"):
        if getattr(args, option, None) not in (None, False):
            raise UserError(t("--{option} is not available for an encoder-decoder's trace (its options: --target, --full, --diff, --html, --json)", option=option.replace("_", "-")))
    if args.html:
        from annotate import explorer_translate

        explorer_translate.check_target(args.html)
    console = Console()
    with tracer.working(t("loading {model}", model=args.model), not args.json):
        folder, twin = tracer.load(args.model)
    result = translate.trace(args.model, folder, twin, args.text, args.target, diff=args.diff, progress=not args.json, **_comparison(args))
    if args.json:
        print(result.to_json())
    else:
        render_translate.render(result, console, full=args.full)
    if args.html:
        size = explorer_translate.write(result, args.html)
        console.print(t("explorer: {path} ({size:.1f} MB, works offline)", path=args.html, size=size / 1e6),
                      style="dim", highlight=False, soft_wrap=True)
    return 1 if args.diff and result.comparison.has_math() else 0


def _comparison(args: argparse.Namespace) -> dict:
    """tracer.trace's keywords for what --diff compares with (annotate/compare.py); refuses them without --diff."""
    from annotate.errors import UserError
    from annotate.i18n import t

    chosen = {k: getattr(args, k, None) for k in ("against", "dtype", "device")}
    for key, value in chosen.items():
        if value is not None and not args.diff:
            raise UserError(t("--{key} needs --diff (it chooses what the twin is compared with)", key=key))
    out = {k: v for k, v in chosen.items() if v is not None}
    if out and getattr(args, "grad", False):
        raise UserError(t("--{key} compares values; --grad's gradients are compared with transformers' eager fp32 path only", key=next(iter(out))))
    if getattr(args, "other", None) is not None:
        out["other"] = args.other
    return out


def run_diff(args: argparse.Namespace) -> int:
    """annotate diff A B TEXT: annotate trace A TEXT, compared stage by stage with B's twin."""
    trace = build_parser().parse_args(["trace", "--", args.model_a, args.text])
    for key in ("json", "full", "layers", "stages", "explain"):
        setattr(trace, key, getattr(args, key))
    trace.diff, trace.other = True, args.model_b
    return run_trace(trace)


def run_source(args: argparse.Namespace) -> int:
    from annotate import source  # reads the files: imports neither transformers nor torch

    source.render(source.find(args.name, model=args.model), twin=not args.no_twin)  # piped: as wide as the code
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from annotate import tracer, watch
    from annotate.errors import UserError
    from annotate.i18n import t

    if args.html is not None:
        from annotate import explorer

        if args.json:
            raise UserError(t("--html writes a page; --json prints data (use one of them)"))
        if tracer.encoder_decoder(args.model):
            raise UserError(t("--html: the generation's page is for a decoder (GPT-2, Llama); {model} is an encoder-decoder: "
                              "annotate trace {model} SOURCE --html FILE draws its translation's attention", model=args.model))
        explorer.check_target(args.html)  # before generating: a path that can't be written costs no run
    if tracer.encoder_decoder(args.model):  # a source to translate: annotate/watch_translate.py
        from annotate import watch_translate

        for option in ("chat", "do_sample", "temperature", "top_k", "top_p", "seed"):
            if getattr(args, option) not in (None, False):
                raise UserError(t("--{option} is not available for an encoder-decoder (its options: --num-beams, --max-new-tokens, --json)", option=option.replace("_", "-")))
        result = watch_translate.run(args.model, args.prompt, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
        if args.json:
            print(result.to_json())
        else:
            watch_translate.show(result, watch.console())
        return 0
    if args.num_beams is not None:
        raise UserError(t("--num-beams is for an encoder-decoder (Marian, BART); a decoder's generate here is greedy or sampled"))
    settings = dict(do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    max_new_tokens = args.max_new_tokens if args.max_new_tokens is not None else 20
    session = watch.Watch(args.model, args.prompt, max_new_tokens=max_new_tokens, seed=args.seed, chat=args.chat, **settings)
    if args.json:
        print(session.run().to_json())
    else:
        watch.show(session, watch.console(), attention=args.html is not None)
    if args.html is not None:
        from annotate import explorer_generate

        size = explorer_generate.write(session, args.html)
        watch.console().print(t("explorer: {path} ({size:.1f} MB, works offline)", path=args.html, size=size / 1e6),
                              style="dim", highlight=False, soft_wrap=True)
    return 0


def run_notebook(args: argparse.Namespace) -> int:
    from pathlib import Path

    from annotate import guides
    from annotate.errors import UserError
    from annotate.i18n import t

    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise UserError(t("{folder} is not a folder", folder=folder))
    paths = []
    for guide in args.guide:
        if guide == "all":  # every guide of the language
            paths += [g.path for g in guides.index(args.lang or "en")]
        elif guide.isdigit():  # a guide's number: the installed guides (annotate guide list)
            paths.append(guides.find(guide, args.lang or "en"))
        elif args.lang is not None:
            raise UserError(t("--lang chooses the language of guides given by number; {guide} is a file (its folder says its language)", guide=guide))
        else:
            paths.append(Path(guide))
    for guide in paths:
        if not guide.is_file() or guide.suffix != ".md":
            raise UserError(t("{guide} is not a guide's .md file", guide=guide))
    names = [guides.notebook_name(guide) for guide in paths]
    if len(set(names)) < len(names):
        raise UserError(t("two guides would both be written as {name}: give them one at a time with -o", name=next(n for n in names if names.count(n) > 1)))
    folder.mkdir(parents=True, exist_ok=True)
    for guide, name in zip(paths, names):
        try:
            print(guides.write_notebook(guide, folder / name))
        except ValueError as e:  # a malformed guide (an ```output block after no ```python block)
            raise UserError(str(e)) from None
    return 0


def run_guide(args: argparse.Namespace) -> int:
    """annotate guide list: the installed guides (annotate/guides.py), a line each: number, title, file."""
    import unicodedata

    from annotate import guides
    from annotate.i18n import t

    found = guides.index(args.lang)
    if args.json:
        print(json.dumps([{"number": g.number, "lang": g.lang, "title": g.title, "path": str(g.path)} for g in found], ensure_ascii=False))
        return 0

    def width(text: str) -> int:  # columns in a terminal: a CJK character takes two
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    for lang, name in guides.LANGUAGES.items():
        rows = [g for g in found if g.lang == lang]
        if not rows:
            continue
        print(t("{language} (annotate notebook N{option}):", language=name, option=" --lang " + lang if lang != "en" else ""))
        widest = max(width(g.title) for g in rows)
        for g in rows:
            print(f"  {g.number:>2}  {g.title}{' ' * (widest - width(g.title))}  {g.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        hint = ""
        if args.command == "trace" and not any(e.startswith("-") for e in extra):
            hint = f' (if they are part of the text, quote it: annotate trace MODEL "{args.text} {" ".join(extra)}")'
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    from annotate.errors import UserError

    from annotate import i18n

    lang = getattr(args, "lang", None)
    try:
        with i18n.using(lang):
            return args.run(args)
    except BrokenPipeError:  # the reader left (| head): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 141
    except Exception as e:
        # reimpl's CheckpointError, without importing reimpl (it imports torch: `annotate source`
        # must stay fast); if reimpl.loading was never imported, none can have been raised.
        loading = sys.modules.get("reimpl.loading")
        if not isinstance(e, UserError) and not (loading is not None and isinstance(e, loading.CheckpointError)):
            raise
        with i18n.using(lang):  # the message was written in --lang's language (raised inside the block): its prefix too
            print(i18n.t("annotate: error: {message}", message=e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with i18n.using(lang):
            print(i18n.t("annotate: interrupted"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
