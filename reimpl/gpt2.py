"""GPT-2, written to be read beside transformers' models/gpt2/modeling_gpt2.py.

Twins of Conv1D (pytorch_utils.py), GPT2Attention, GPT2MLP, GPT2Block, GPT2Model (wte, wpe, h,
ln_f) and GPT2LMHeadModel (transformer, and lm_head tied to transformer.wte), with a key/value
cache and greedy ``generate``. Classes and attributes have HF's names, so HF's state-dict keys
load as they are, and with the same weights and input every step is bit-identical
(``torch.equal``) to transformers' eager attention path in fp32: without a cache to HF called with
``use_cache=False``, with a ``KVCache`` to HF's default call (which uses a DynamicCache); see
GPT2Attention for why those two differ in the last bit.

Left out, because GPT-2's language model does not need them: dropout (the twins are
inference-only), cross-attention (``add_cross_attention``), ``token_type_ids`` and
``inputs_embeds``, packed sequences (HF's block-diagonal mask when ``position_ids`` restart and
there is no attention mask), gradient checkpointing, the attention backends (sdpa, flash, flex):
this is ``eager_attention_forward``; the heads other than the LM head (double heads,
classification, QA), the loss, and every decoding strategy but greedy.

Shape legend: B batch, T tokens in this call, S tokens attended to (the cache's and this call's),
C hidden size, nh heads, hs head size, I the MLP's inner width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .activations import get_activation
from .loading import twin_of
from .states import name_modules, record


@dataclasses.dataclass
class GPT2Config:
    """The GPT2Config fields that change the math, with transformers' names and defaults."""

    model_type: ClassVar[str] = "gpt2"  # config.json's, as in transformers' GPT2Config

    vocab_size: int = 50257  # V: byte-level BPE, 50,000 merges + 256 bytes + <|endoftext|>
    n_positions: int = 1024  # learned positions: the longest sequence, cache included
    n_embd: int = 768  # C
    n_layer: int = 12
    n_head: int = 12  # nh; hs = C // nh
    n_inner: int | None = None  # I; None means 4 * C
    activation_function: str = "gelu_new"  # the tanh approximation of GELU, not BERT's exact erf form
    layer_norm_epsilon: float = 1e-5  # PyTorch's default, far larger than BERT's 1e-12
    scale_attn_weights: bool = True  # divide the scores by sqrt(hs); False leaves them unscaled
    scale_attn_by_inverse_layer_idx: bool = False  # also divide by layer index + 1 (Stanford CRFM's Mistral)
    reorder_and_upcast_attn: bool = False  # scores through fp32 baddbmm with the scale inside (Megatron-LM)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPT2Config":
        """From config.json (or a transformers GPT2Config's to_dict()); refuses what the twin can't compute."""
        if d.get("add_cross_attention"):
            raise ValueError("GPT-2 with cross-attention (add_cross_attention) is not supported")
        if not d.get("tie_word_embeddings", True):
            raise ValueError("GPT-2 with an untied LM head (tie_word_embeddings=False) is not supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        get_activation(config.activation_function)  # fail now, with the supported list, not mid-forward
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} is not a multiple of n_head {config.n_head}")
        return config


class KVCache:
    """The keys and values of every token seen so far, per layer: what makes decoding one token
    at a time cost one token's work. The twin of transformers' DynamicCache (cache_utils.py).

    ``update`` appends with ``torch.cat``, as DynamicLayer.update does, so attention always gets
    fresh contiguous K/V tensors; that layout is part of the arithmetic (see GPT2Attention).
    """

    def __init__(self):
        self.keys: list[torch.Tensor] = []  # per layer: (B, nh, S, hs)
        self.values: list[torch.Tensor] = []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many tokens this layer has seen: where the next token's position starts."""
        return self.keys[layer_idx].shape[2] if layer_idx < len(self.keys) else 0

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this call's (B, nh, T, hs) keys and values; return the layer's (B, nh, S, hs) ones so far."""
        while len(self.keys) <= layer_idx:  # the layer's first tokens: start from empty, as DynamicLayer does
            self.keys.append(key[:, :, :0])
            self.values.append(value[:, :, :0])
        self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key], dim=2)  # (B, nh, S, hs), a contiguous copy
        self.values[layer_idx] = torch.cat([self.values[layer_idx], value], dim=2)  # (B, nh, S, hs)
        return self.keys[layer_idx], self.values[layer_idx]


def causal_mask(
    attention_mask: torch.Tensor | None, T: int, past: int, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Which keys each query may see, as an additive bias for the scores: (B, 1, T, S), or (1, 1, T, S) without padding.

    Query i (at position past + i) may attend to key j iff j <= past + i (causal) and key j is not
    padding (``attention_mask[b, j] == 1``; the mask covers the cached tokens and this call's, S in
    all). transformers' masking_utils.eager_mask builds the same booleans and turns them into 0
    (allowed) or the dtype's most negative finite value (not allowed), so softmax gives exactly 0.

    A query on a left-padding token sees no key at all: its row is ``score + finfo.min`` everywhere,
    which rounds to finfo.min everywhere, and softmax spreads it evenly over all S keys. That row is
    garbage, as in HF, and no real token ever reads it (real tokens never attend to padding).
    """
    S = past + T
    query_positions = torch.arange(T, device=device) + past  # (T,): where this call's tokens sit
    key_positions = torch.arange(S, device=device)  # (S,)
    allowed = key_positions[None, :] <= query_positions[:, None]  # (T, S): the causal triangle
    allowed = allowed[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        if attention_mask.shape[-1] != S:
            raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} tokens; cache + input have {S}")
        allowed = allowed & attention_mask[:, None, None, :].bool()  # (B, 1, T, S): and not padding
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=device), torch.finfo(dtype).min)


class Conv1D(nn.Module):
    """Twin of transformers' Conv1D (pytorch_utils.py): a linear layer whose weight is stored (in, out).

    Not a convolution: OpenAI's original TensorFlow GPT-2 computed ``x @ W + b`` with W of shape
    (nx, nf), and the checkpoints keep that layout, the transpose of nn.Linear's (out, in). The
    arguments keep HF's order too: output features first.
    """

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf  # output features
        self.nx = nx  # input features
        self.weight = nn.Parameter(torch.empty(nx, nf))  # (in, out), not nn.Linear's (out, in)
        self.bias = nn.Parameter(torch.empty(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.shape[:-1] + (self.nf,)
        # One fused call: bias + x @ W over the flattened tokens. HF's exact op; F.linear with W.T
        # computes the same sum with another kernel and can differ in the last bit.
        out = torch.addmm(self.bias, x.view(-1, self.nx), self.weight)  # (B*T, nf)
        return out.view(size_out)  # (B, T, nf)


class GPT2Attention(nn.Module):
    """Twin of GPT2Attention with eager_attention_forward: softmax(Q K^T * scaling + mask) V, then c_proj.

    Returns what HF's returns: the output after c_proj, and the probabilities. ``attention_mask``
    here is the additive (B, 1, T, S) mask that ``causal_mask`` builds; without one, nothing is
    masked, not even the future (as in HF, where GPT2Model always passes one).
    Left out: cross-attention (q_attn), dropout, the attention backends.
    """

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
        self.embed_dim = config.n_embd  # C
        self.num_heads = config.n_head  # nh
        self.head_dim = self.embed_dim // self.num_heads  # hs
        self.split_size = self.embed_dim  # c_attn's output is [Q | K | V], C columns each
        self.layer_idx = layer_idx  # the cache's slot, and the divisor of scale_attn_by_inverse_layer_idx
        self.reorder_and_upcast_attn = config.reorder_and_upcast_attn
        # One Python float, computed as HF does (the order of the two divisions is part of its bits).
        self.scaling = 1.0
        if config.scale_attn_weights:
            self.scaling = self.head_dim**-0.5  # 1 / sqrt(hs)
        if config.scale_attn_by_inverse_layer_idx:
            self.scaling /= float(self.layer_idx + 1)  # deeper layers get flatter attention
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)  # Q, K and V in one matrix: (C, 3C)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)  # (C, C)

    @classmethod
    def from_hf(cls, module: nn.Module) -> "GPT2Attention":
        """The twin of a live transformers GPT2Attention: its config, layer index and a copy of its weights."""
        return twin_of(cls, GPT2Config, module, module.layer_idx)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = hidden_states.shape
        nh, hs = self.num_heads, self.head_dim
        qkv = self.c_attn(hidden_states)  # (B, T, 3C)
        query, key, value = qkv.split(self.split_size, dim=2)  # 3 x (B, T, C): views into qkv
        q = query.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs), a strided view
        k = key.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs), a strided view
        v = value.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs), a strided view
        if cache is not None:
            # The cache hands back torch.cat copies: contiguous K and V, where without a cache they
            # are strided views into qkv. On CPU, matmul over a contiguous and a strided operand
            # can pick different kernels or blockings and round differently in the last bit. HF's
            # default call (use_cache=True) always goes through its cache, so this is the line that
            # makes the twin match it; without a cache the twin matches use_cache=False.
            k, v = cache.update(self.layer_idx, k, v)  # (B, nh, S, hs), contiguous
        S = k.shape[2]
        record(self, "query", q)
        record(self, "key", k)
        record(self, "value", v)
        if self.reorder_and_upcast_attn:
            # HF's _upcast_and_reordered_attn (from Megatron-LM): fp32, heads flattened into the
            # batch, the scale applied inside the product (baddbmm's alpha) rather than after it.
            # Mirrored op for op: its rounding differs from the matmul-then-scale below.
            empty = torch.empty(B * nh, T, S, dtype=torch.float32, device=q.device)  # beta=0: its contents are ignored
            q_flat = q.reshape(-1, T, hs).float()  # (B*nh, T, hs)
            k_flat = k.transpose(-1, -2).reshape(-1, hs, S).float()  # (B*nh, hs, S)
            scores = torch.baddbmm(empty, q_flat, k_flat, beta=0, alpha=self.scaling)  # (B*nh, T, S)
            scores = scores.reshape(B, nh, T, S)  # (B, nh, T, S)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling  # (B, nh, T, S)
        record(self, "scores", scores)
        if attention_mask is not None:
            scores = scores + attention_mask  # (B, nh, T, S): the future and padding -> ~-inf
        probs = torch.softmax(scores, dim=-1)  # (B, nh, T, S), each row sums to 1
        record(self, "probs", probs)
        context = torch.matmul(probs, v)  # (B, nh, T, hs)
        context = context.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        record(self, "context", context)
        output = self.c_proj(context)  # (B, T, C)
        record(self, "c_proj", output)
        return output, probs


class GPT2MLP(nn.Module):
    """Twin of GPT2MLP: up to I, the activation, back down to C."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        C = config.n_embd
        I = config.n_inner if config.n_inner is not None else 4 * C  # HF's GPT2Block computes this and passes it in
        self.c_fc = Conv1D(I, C)  # (C, I)
        self.c_proj = Conv1D(C, I)  # (I, C)
        self.act = get_activation(config.activation_function)  # gelu_new for every OpenAI checkpoint

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        up = self.c_fc(hidden_states)  # (B, T, I)
        record(self, "c_fc", up)
        activated = self.act(up)  # (B, T, I)
        record(self, "act", activated)
        down = self.c_proj(activated)  # (B, T, C)
        record(self, "c_proj", down)
        return down


class GPT2Block(nn.Module):
    """Twin of GPT2Block: pre-LayerNorm. Each sublayer reads a normalised copy of the residual
    stream and adds its output back; the stream itself is normalised only once, by ln_f at the top.
    (BERT is post-LN: it normalises the stream after every sublayer.)
    """

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
        C = config.n_embd
        self.ln_1 = nn.LayerNorm(C, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(C, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    @classmethod
    def from_hf(cls, module: nn.Module) -> "GPT2Block":
        """The twin of a live transformers GPT2Block: its config, layer index and a copy of its weights."""
        return twin_of(cls, GPT2Config, module, module.attn.layer_idx)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """``attention_mask``: the tokenizer's (B, S) 1/0 padding mask or None, from which the causal
        mask is built here; or a (B, 1, T, S) mask already built, as GPT2Model passes (built once for
        all blocks; HF's create_causal_mask likewise takes a 4D mask as it is)."""
        if attention_mask is None or attention_mask.dim() == 2:
            past = cache.get_seq_length(self.attn.layer_idx) if cache is not None else 0
            T, dtype, device = hidden_states.shape[1], hidden_states.dtype, hidden_states.device
            attention_mask = causal_mask(attention_mask, T, past, dtype, device)
        residual = hidden_states  # (B, T, C)
        hidden_states = self.ln_1(hidden_states)  # (B, T, C)
        record(self, "ln_1", hidden_states)
        attn_output, _ = self.attn(hidden_states, attention_mask, cache)  # (B, T, C)
        hidden_states = attn_output + residual  # (B, T, C): back onto the residual stream
        record(self.attn, "residual", hidden_states)
        residual = hidden_states
        hidden_states = self.ln_2(hidden_states)  # (B, T, C)
        record(self, "ln_2", hidden_states)
        feed_forward = self.mlp(hidden_states)  # (B, T, C)
        hidden_states = residual + feed_forward  # (B, T, C)
        record(self.mlp, "residual", hidden_states)
        return hidden_states


class GPT2Model(nn.Module):
    """Twin of GPT2Model: token + position embeddings, the stack of blocks, the final LayerNorm."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # word (token) embeddings, also the LM head
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # learned position embeddings
        self.h = nn.ModuleList(GPT2Block(config, layer_idx=i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)  # pre-LN needs one at the end
        name_modules(self)

    @classmethod
    def from_hf(cls, model: nn.Module) -> "GPT2Model":
        """The twin of a live transformers GPT2Model: its config and a copy of its weights."""
        return twin_of(cls, GPT2Config, model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0  # tokens already in the cache
        if position_ids is None:
            # Positions continue after the cache. HF does not shift them for left padding in a
            # plain forward: a left-padded row's first real token is not at position 0.
            # (generate does shift them, and passes its own: see GPT2LMHeadModel.generate.)
            position_ids = (torch.arange(T, device=input_ids.device) + past)[None]  # (1, T)
        words = self.wte(input_ids)  # (B, T, C)
        record(self, "wte", words)
        positions = self.wpe(position_ids)  # (1, T, C), broadcast over the batch; (B, T, C) from generate
        record(self, "wpe", positions)
        hidden_states = words + positions  # (B, T, C)
        record(self, "sum", hidden_states)
        mask = causal_mask(attention_mask, T, past, hidden_states.dtype, hidden_states.device)  # (B, 1, T, S), once for all blocks
        for i, block in enumerate(self.h):
            hidden_states = block(hidden_states, mask, cache)  # (B, T, C)
            record(self, f"h.{i}", hidden_states)  # "transformer.h.i": the block's output
        hidden_states = self.ln_f(hidden_states)  # (B, T, C)
        record(self, "ln_f", hidden_states)
        return hidden_states


class GPT2LMHeadModel(nn.Module):
    """Twin of GPT2LMHeadModel: GPT2Model, then logits over the vocabulary from the tied embedding."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # (V, C), the same tensor as wte
        self.tie_weights()
        name_modules(self)

    def tie_weights(self) -> None:
        """The LM head is the token embedding: logits are each token's dot product with every
        embedding row. One (V, C) tensor, stored once; loading with assign=True unties, so the
        loader calls this again."""
        self.lm_head.weight = self.transformer.wte.weight

    @classmethod
    def from_hf(cls, model: nn.Module) -> "GPT2LMHeadModel":
        """The twin of a live transformers GPT2LMHeadModel: its config and a copy of its weights."""
        return twin_of(cls, GPT2Config, model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) for the next token after each input token.

        ``attention_mask``: the tokenizer's (B, S) 1/0 mask, covering the cached tokens and these
        (left padding included). ``cache``: a KVCache, empty or filled by earlier calls; this call's
        keys and values are appended to it. Without one the result is bit-identical to HF called
        with ``use_cache=False``; with one, to HF's default call. ``position_ids``: (B, T) or (1, T);
        by default the cache's length onwards.
        """
        hidden_states = self.transformer(input_ids, attention_mask, cache, position_ids)  # (B, T, C)
        logits = self.lm_head(hidden_states)  # (B, T, V)
        record(self, "lm_head", logits)
        return logits

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        attention_mask: torch.Tensor | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
    ) -> torch.Tensor:
        """Greedy decoding with the cache: the (B, T + new) ids of HF's ``generate(do_sample=False)``
        called with the same ``eos_token_id`` and ``pad_token_id``.

        The prompt goes through once, then one token per step against the cache. As in HF: a
        left-padded prompt's positions count from its first real token (padding slots get 0);
        only the last position's logits are computed; with ``eos_token_id``, a row that has
        produced it gets ``pad_token_id`` (default: eos) from then on, and decoding stops early
        once every row has. Without ``eos_token_id`` it always runs ``max_new_tokens`` steps.
        """
        B, T = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if pad_token_id is None:
            pad_token_id = eos_token_id
        # GenerationMixin._prepare_position_ids_for_generation: 0, 1, 2, ... from the first real token.
        position_ids = attention_mask.long().cumsum(-1) - 1  # (B, T)
        position_ids = position_ids.masked_fill(attention_mask == 0, 0)  # (B, T)
        unfinished = torch.ones(B, dtype=torch.long, device=input_ids.device)  # (B,): 1 until eos
        cache = KVCache()
        new_ids = input_ids  # the whole prompt first, then only the newest token
        for _ in range(max_new_tokens):
            hidden_states = self.transformer(new_ids, attention_mask, cache, position_ids)  # (B, T or 1, C)
            # HF's generate asks for the last position only (logits_to_keep=1): a (B, 1, C) product.
            logits = self.lm_head(hidden_states[:, -1:, :])  # (B, 1, V)
            record(self, "lm_head", logits)
            next_tokens = torch.argmax(logits[:, -1], dim=-1)  # (B,)
            if eos_token_id is not None:
                next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)  # finished rows: pad
            input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)  # (B, T + steps)
            if eos_token_id is not None:
                unfinished = unfinished & (next_tokens != eos_token_id).long()
                if not unfinished.any():
                    break
            new_ids = next_tokens[:, None]  # (B, 1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=-1)  # (B, S + 1)
            position_ids = position_ids[:, -1:] + 1  # (B, 1)
        return input_ids
