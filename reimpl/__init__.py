"""Readable, bit-exact twins of transformers' BERT and GPT-2, and the loader that feeds them real checkpoints."""

from .bert import BertEmbeddings, BertLayer, BertModel, BertSelfAttention
from .gpt2 import GPT2Attention, GPT2Block, GPT2LMHeadModel, GPT2MLP, GPT2Model, KVCache
from .loading import CheckpointError, from_pretrained
from .states import recording

__all__ = [
    "BertEmbeddings",
    "BertLayer",
    "BertModel",
    "BertSelfAttention",
    "CheckpointError",
    "GPT2Attention",
    "GPT2Block",
    "GPT2LMHeadModel",
    "GPT2MLP",
    "GPT2Model",
    "KVCache",
    "from_pretrained",
    "recording",
]
