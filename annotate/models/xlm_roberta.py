"""What annotate knows of XLM-RoBERTa (reimpl/xlm_roberta.py, transformers' models/xlm_roberta/modeling_xlm_roberta.py).

RoBERTa's model under another vocabulary: RoBERTa's steps with ``XLMRoberta`` for ``Roberta``,
and RoBERTa's hooks (transformers' XLM-RoBERTa modules have the same attributes).
"""

from __future__ import annotations

from annotate.models import Head, roberta, renamed

STEPS = renamed(roberta.STEPS, "Roberta", "XLMRoberta")
STEPS_4_57 = renamed(roberta.STEPS_4_57, "Roberta", "XLMRoberta")

HEADS = {name.replace("Roberta", "XLMRoberta"): head for name, head in roberta.HEADS.items()}

catch_hf = roberta.catch_hf
