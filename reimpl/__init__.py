"""Readable, bit-exact twins of transformers' BERT and GPT-2, and the loader that feeds them real checkpoints."""

from .bert import BertEmbeddings, BertLayer, BertModel, BertSelfAttention
from .loading import CheckpointError, from_pretrained
from .states import recording

__all__ = [
    "BertEmbeddings",
    "BertLayer",
    "BertModel",
    "BertSelfAttention",
    "CheckpointError",
    "from_pretrained",
    "recording",
]
