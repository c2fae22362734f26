"""BERT's input embeddings (the paper's figure 2: token + segment + position, then LayerNorm), with
its own names, graded by tests/test_check.py as bert-embeddings: equal or rounding at every step."""

import torch
from torch import nn

from annotate import record

WEIGHTS = {
    "tokens.weight": "word_embeddings.weight", "segments.weight": "token_type_embeddings.weight",
    "positions.weight": "position_embeddings.weight", "norm.weight": "LayerNorm.weight", "norm.bias": "LayerNorm.bias",
}


class Embeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.tokens = nn.Embedding(config.vocab_size, C)
        self.segments = nn.Embedding(config.type_vocab_size, C)
        self.positions = nn.Embedding(config.max_position_embeddings, C)
        self.norm = nn.LayerNorm(C, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        T = input_ids.shape[1]
        where = torch.arange(T)
        words, segments, positions = self.tokens(input_ids), self.segments(token_type_ids), self.positions(where)
        record("word_embeddings", words)
        record("token_type_embeddings", segments)
        record("position_embeddings", positions)
        e = words + segments + positions
        record("sum", e)
        return self.norm(e)
