"""annotate: read transformers' BERT and GPT-2 beside readable, bit-exact twins, and trace them."""

__version__ = "0.1.0"
