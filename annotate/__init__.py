"""annotate: read transformers' BERT family and GPT-2 beside readable, bit-exact twins, and trace them.

In Python (a notebook)::

    import annotate
    t = annotate.trace("sentence-transformers/all-MiniLM-L6-v2", "The cat sat on the mat.")
    t                                          # <Trace BertModel 'The cat sat on the mat.': 9 tokens, 98 stages>
    t.stages[0].name, t.stages[0].stats        # every stage in forward order, with mean/std/min/max
    t["encoder.layer.0.attention.self.probs"]  # any recorded tensor by its stage name
    t.layer_summary()                          # one line per layer, as the terminal's default view
    t.to_dict()                                # plain data, as `annotate trace --json`

Grading your own module against transformers (annotate/grader.py)::

    from annotate import check, record         # record("scores", s) inside your forward names a step
    check(MyAttention, "bert-attention")       # a report: a verdict per step, a diagnosis (a page in a notebook)
"""

__version__ = "0.1.0"

from annotate.i18n import use as use_language  # noqa: E402  (annotate.use_language("zh-CN"): the views in Chinese)
from annotate.recorder import record  # noqa: E402  (a leaf module: no torch import)


def trace(model: str, text: str, *, diff: bool = False, top_k: int = 5):
    """Run the twin of ``model`` (hub id, directory, or packaged model) on ``text``: an
    annotate.tracer.Trace. ``diff``: also run transformers and keep max |twin - transformers| per
    stage. (Imported on call: ``import annotate`` stays free of torch.)"""
    from annotate.tracer import trace as run

    return run(model, text, diff=diff, top_k=top_k, progress=False)


def check(module_or_class, kind: str, *, model: str | None = None, layer: int = 0, weights: dict[str, str] | None = None):
    """Grade your own module (a class, built as ``CLASS(config)``, or a module, whose copy is given
    the weights) as ``kind`` against transformers, step by step, on real weights: an
    annotate.grader.Report (a page in a notebook; ``to_dict()``). The steps you name with
    ``annotate.record(name, tensor)`` in its forward are compared; ``annotate check --list`` lists
    the kinds. ``weights``: your parameter names -> transformers' (default: ``WEIGHTS`` of the class or its module)."""
    from annotate.grader import check as grade

    return grade(module_or_class, kind, model=model, layer=layer, weights=weights)
