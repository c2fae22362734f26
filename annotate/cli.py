"""The `annotate` command: parse, call the library, render. Nothing else lives here.

Imports of torch and transformers happen inside the commands, so `annotate --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from annotate import __version__

EXAMPLES = """\
examples:
  annotate trace sentence-transformers/all-MiniLM-L6-v2 "The cat sat on the mat." --diff
  annotate trace bert-base-uncased "Paris is the capital of [MASK]." --layers 0,11 --grid 11.3
  annotate trace gpt2 "The meaning of life is" --stages probs,c_proj --json
  annotate source BertSelfAttention
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

    trace = commands.add_parser(
        "trace",
        help="print, layer by layer, what the model computes for a text",
        description="Run the reimplementation on TEXT and print each stage: shape and statistics, "
        "attention per head, and for GPT-2 the predicted next tokens.",
    )
    trace.add_argument("model", help="hub id (bert-base-uncased, gpt2), local checkpoint directory, "
                       "or sentence-transformers/all-MiniLM-L6-v2 (packaged, offline)")
    trace.add_argument("text", help="the input text")
    trace.add_argument("--diff", action="store_true", help="also run transformers (eager) and print max |reimpl - HF| per stage")
    trace.add_argument("--layers", metavar="SPEC", help="layers to show, e.g. 0,3-5 (default: all)")
    trace.add_argument("--heads", metavar="SPEC", help="heads to describe, e.g. 0-2 (default: all)")
    trace.add_argument("--stages", metavar="NAMES", help="stages to show by step name, e.g. query,probs,LayerNorm")
    trace.add_argument("--grid", metavar="LAYER.HEAD", help="print one head's attention matrix as a colored grid, e.g. 3.7")
    trace.add_argument("--top-k", type=int, default=5, metavar="N", help="GPT-2: how many next-token predictions (default 5)")
    trace.add_argument("--json", action="store_true", help="print the trace as one JSON object instead of tables")
    trace.add_argument("--save", metavar="FILE.safetensors", help="write every recorded tensor under its stage name")
    trace.set_defaults(run=run_trace)

    source = commands.add_parser(
        "source",
        help="print the installed transformers source of a class or function, beside its twin in reimpl/",
        description="Print the source of NAME from the installed transformers, with file and line "
        "numbers, and the matching code in reimpl/ where there is one.",
    )
    source.add_argument("name", help="e.g. BertSelfAttention, eager_attention_forward, GPT2Attention.forward, Conv1D")
    source.add_argument("--model", metavar="MODEL_TYPE", help="which modeling file (bert, gpt2, ...), when NAME is in several")
    source.add_argument("--no-twin", action="store_true", help="print transformers' source only")
    source.set_defaults(run=run_source)
    return parser


def run_trace(args: argparse.Namespace) -> int:
    import gc

    from rich.console import Console

    from annotate import render, tracer

    if not gc.get_freeze_count():  # once per process (main() may run many times in one, as in the tests)
        gc.freeze()  # torch's ~10^6 import-time objects: out of every later full collection (~0.1 s each)
    console = Console()
    view = render.View.parse(layers=args.layers, heads=args.heads, stages=args.stages, grid=args.grid)
    result = tracer.trace(args.model, args.text, diff=args.diff, top_k=args.top_k, progress=not args.json)
    view.check(result)  # the layers, heads and stages asked for exist in this model (also for --json)
    if args.save:
        tracer.save(result, args.save)
    if args.json:
        print(result.to_json())
    else:
        render.render(result, view, console)
    return 1 if args.diff and result.first_divergence() is not None else 0


def run_source(args: argparse.Namespace) -> int:
    from rich.console import Console

    from annotate import source

    source.render(source.find(args.name, model=args.model), Console(), twin=not args.no_twin)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from annotate.errors import UserError
    from reimpl.loading import CheckpointError

    try:
        return args.run(args)
    except (UserError, CheckpointError) as e:
        print(f"annotate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("annotate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
