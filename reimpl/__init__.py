"""Readable, bit-exact twins of transformers' BERT family and GPT-2, and the loader that feeds them real checkpoints."""

from .bert import (
    BertEmbeddings,
    BertForMaskedLM,
    BertForNextSentencePrediction,
    BertForPreTraining,
    BertForSequenceClassification,
    BertLayer,
    BertModel,
    BertSelfAttention,
)
from .gpt2 import GPT2Attention, GPT2Block, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2MLP, GPT2Model, KVCache
from .loading import CheckpointError
from .registry import ARCHITECTURES, architecture, from_pretrained
from .states import recording

__all__ = [
    "ARCHITECTURES",
    "BertEmbeddings",
    "BertForMaskedLM",
    "BertForNextSentencePrediction",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertLayer",
    "BertModel",
    "BertSelfAttention",
    "CheckpointError",
    "GPT2Attention",
    "GPT2Block",
    "GPT2ForSequenceClassification",
    "GPT2LMHeadModel",
    "GPT2MLP",
    "GPT2Model",
    "KVCache",
    "architecture",
    "from_pretrained",
    "recording",
]
