"""Readable, bit-exact twins of transformers' BERT family (BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ALBERT, ELECTRA), GPT-2 and the Llama family, and the loader that feeds them real checkpoints."""

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
from .albert import AlbertForMaskedLM, AlbertForPreTraining, AlbertForSequenceClassification, AlbertModel
from .distilbert import DistilBertForMaskedLM, DistilBertForSequenceClassification, DistilBertModel
from .electra import ElectraForMaskedLM, ElectraForPreTraining, ElectraForSequenceClassification, ElectraModel
from .cache import KVCache
from .gpt2 import GPT2Attention, GPT2Block, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2MLP, GPT2Model
from .llama import LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel
from .loading import CheckpointError, save_pretrained
from .mistral import MistralForCausalLM, MistralForSequenceClassification, MistralModel
from .qwen2 import Qwen2ForCausalLM, Qwen2ForSequenceClassification, Qwen2Model
from .qwen3 import Qwen3ForCausalLM, Qwen3ForSequenceClassification, Qwen3Model
from .registry import ARCHITECTURES, architecture, from_pretrained
from .roberta import RobertaForMaskedLM, RobertaForSequenceClassification, RobertaModel
from .xlm_roberta import XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification, XLMRobertaModel
from .states import recording
from . import training

__all__ = [
    "ARCHITECTURES",
    "AlbertForMaskedLM",
    "AlbertForPreTraining",
    "AlbertForSequenceClassification",
    "AlbertModel",
    "BertEmbeddings",
    "BertForMaskedLM",
    "BertForNextSentencePrediction",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertLayer",
    "BertModel",
    "BertSelfAttention",
    "CheckpointError",
    "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification",
    "DistilBertModel",
    "ElectraForMaskedLM",
    "ElectraForPreTraining",
    "ElectraForSequenceClassification",
    "ElectraModel",
    "GPT2Attention",
    "GPT2Block",
    "GPT2ForSequenceClassification",
    "GPT2LMHeadModel",
    "GPT2MLP",
    "GPT2Model",
    "KVCache",
    "LlamaForCausalLM",
    "LlamaForSequenceClassification",
    "LlamaModel",
    "MistralForCausalLM",
    "MistralForSequenceClassification",
    "MistralModel",
    "Qwen2ForCausalLM",
    "Qwen2ForSequenceClassification",
    "Qwen2Model",
    "Qwen3ForCausalLM",
    "Qwen3ForSequenceClassification",
    "Qwen3Model",
    "RobertaForMaskedLM",
    "RobertaForSequenceClassification",
    "RobertaModel",
    "XLMRobertaForMaskedLM",
    "XLMRobertaForSequenceClassification",
    "XLMRobertaModel",
    "architecture",
    "from_pretrained",
    "recording",
    "save_pretrained",
    "training",
]
