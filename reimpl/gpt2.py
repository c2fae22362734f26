"""GPT-2, written to be read beside transformers' models/gpt2/modeling_gpt2.py.

Twins of Conv1D (pytorch_utils.py), GPT2Attention, GPT2MLP, GPT2Block, GPT2Model (wte, wpe, h,
ln_f), GPT2LMHeadModel (transformer, and lm_head, tied to transformer.wte unless the checkpoint
says otherwise) and GPT2ForSequenceClassification (score, read at each row's last real token),
with a key/value cache and ``generate`` (reimpl/generation.py). Classes and attributes have HF's names, so HF's state-dict keys
load as they are, and with the same weights and input every step is bit-identical
(``torch.equal``) to transformers' eager attention path in fp32: without a cache to HF called with
``use_cache=False``, with a ``KVCache`` to HF's default call (which uses a DynamicCache); see
GPT2Attention for why those two differ in the last bit.

Training: dropout where transformers has it (``drop`` after the embeddings, ``attn_dropout`` on the
attention probabilities, ``resid_dropout`` and the MLP's ``dropout`` before each residual sum),
drawing from torch's random stream in transformers' order, so that after the same
``torch.manual_seed`` a ``.train()`` forward and its gradients are bit-identical; ``labels=`` gives
the head's loss as transformers computes it (reimpl/losses.py), returned first, as ``loss``.

Left out, because GPT-2's language model does not need them: cross-attention
(``add_cross_attention``, refused), ``inputs_embeds``, gradient checkpointing, the attention
backends (sdpa, flash, flex): this is ``eager_attention_forward``; the heads without checkpoints
in the wild (double heads, token classification, QA).

Shape legend: B batch, T tokens in this call, S tokens attended to (the cache's and this call's),
C hidden size, nh heads, hs head size, I the MLP's inner width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from . import versions
from .activations import get_activation
from .architecture import Architecture, ClassifierConfig
from .cache import KVCache
from .loading import Twin, twin_of
from .losses import causal_lm_loss, sequence_classification_loss
from .generation import GenerationMixin
from .outputs import BaseModelOutput, CausalLMOutput, SequenceClassifierOutput, last_token_logits
from .states import Dropout, name_modules, record


@dataclasses.dataclass
class GPT2Config(ClassifierConfig):
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
    tie_word_embeddings: bool = True  # lm_head is wte (False: the checkpoint stores its own lm_head)
    pad_token_id: int | None = None  # the classification head reads each row's last token that is not this
    resid_pdrop: float = 0.1  # training only: dropout on each sublayer's output, before its residual sum
    embd_pdrop: float = 0.1  # training only: dropout on the embeddings' sum
    attn_pdrop: float = 0.1  # training only: dropout on the attention probabilities

    # transformers' GPT2Config.attribute_map: the names other configs use for the same fields.
    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layer

    @property
    def num_attention_heads(self) -> int:
        return self.n_head

    @property
    def max_position_embeddings(self) -> int:
        return self.n_positions

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPT2Config":
        """From config.json (or a transformers GPT2Config's to_dict()); refuses what the twin can't compute."""
        if d.get("add_cross_attention"):
            raise ValueError("GPT-2 with cross-attention (add_cross_attention) is not supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in fields})
        get_activation(config.activation_function)  # fail now, with the supported list, not mid-forward
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} is not a multiple of n_head {config.n_head}")
        return config


def causal_mask(
    attention_mask: torch.Tensor | None,
    T: int,
    past: int,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    packed_position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which keys each query may see, as an additive bias for the scores: (B, 1, T, S), or (1, 1, T, S) without padding.

    Query i (at position past + i) may attend to key j iff j <= past + i (causal) and key j is not
    padding (``attention_mask[b, j] == 1``; the mask covers the cached tokens and this call's, S in
    all). transformers' masking_utils.eager_mask builds the same booleans and turns them into 0
    (allowed) or the dtype's most negative finite value (not allowed), so softmax gives exactly 0.

    A query on a left-padding token sees no key at all: its row is ``score + finfo.min`` everywhere,
    which rounds to finfo.min everywhere, and softmax spreads it evenly over all S keys. That row is
    garbage, as in HF, and no real token ever reads it (real tokens never attend to padding).

    ``packed_position_ids``: (1 or B, T) position ids of several sequences packed in one row
    (``0 1 2 0 1``), given when there is no attention mask and no cache: then, as
    masking_utils.find_packed_sequence_indices does, a token also sees only keys of its own
    sequence (a new sequence starts wherever the position does not go up by one).
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
    if packed_position_ids is not None:
        first = packed_position_ids[:, :1] - 1  # so that the first token counts as "up by one"
        starts = torch.diff(packed_position_ids, prepend=first, dim=-1) != 1  # (B, T): a sequence starts here
        sequence = starts.cumsum(-1)  # (B, T): 0 0 0 1 1 for positions 0 1 2 0 1
        allowed = allowed & (sequence[:, None, :, None] == sequence[:, None, None, :])  # (B, 1, T, T): same sequence
    return torch.where(allowed, torch.zeros((), dtype=dtype, device=device), torch.finfo(dtype).min)


class Conv1D(nn.Module):
    """Twin of transformers' Conv1D (pytorch_utils.py): a linear layer whose weight is stored (in, out).

    A width-1 convolution (OpenAI's code named it so), which is ``x @ W + b`` with W of shape
    (nx, nf); the checkpoints keep that layout, the transpose of nn.Linear's (out, in). The
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
    Left out: cross-attention (q_attn), the attention backends.
    """

    def __init__(self, config: GPT2Config, layer_idx: int = 0):
        super().__init__()
        self.embed_dim = config.n_embd  # C
        self.num_heads = config.n_head  # nh
        self.head_dim = self.embed_dim // self.num_heads  # hs
        self.split_size = self.embed_dim  # c_attn's output is [Q | K | V], C columns each
        self.layer_idx = layer_idx  # the cache's slot, and the divisor of scale_attn_by_inverse_layer_idx
        self.reorder_and_upcast_attn = config.reorder_and_upcast_attn
        self.scale_attn_weights = config.scale_attn_weights  # (read by transformers 4.57's path, below)
        self.scale_attn_by_inverse_layer_idx = config.scale_attn_by_inverse_layer_idx
        # One Python float, computed as HF does (the order of the two divisions is part of its bits).
        self.scaling = 1.0
        if config.scale_attn_weights:
            self.scaling = self.head_dim**-0.5  # 1 / sqrt(hs)
        if config.scale_attn_by_inverse_layer_idx:
            self.scaling /= float(self.layer_idx + 1)  # deeper layers get flatter attention
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)  # Q, K and V in one matrix: (C, 3C)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)  # (C, C)
        self.attn_dropout = Dropout(config.attn_pdrop)
        self.resid_dropout = Dropout(config.resid_pdrop)

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
        record(self, "query", q)
        record(self, "key", k)
        record(self, "value", v)
        if self.reorder_and_upcast_attn:
            scores = self._upcast_and_reordered_attn(q, k)  # (B, nh, T, S), fp32: the scale inside the product
        elif versions.V4:
            scores = self._scores_4_57(q, k)  # (B, nh, T, S): divided, not multiplied
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling  # (B, nh, T, S)
        record(self, "scores", scores)
        if versions.V4:
            scores = self._mask_future_4_57(scores)  # (B, nh, T, S): the future -> finfo.min, before the mask
        if attention_mask is not None:
            scores = scores + attention_mask  # (B, nh, T, S): the future and padding -> ~-inf
        probs = torch.softmax(scores, dim=-1)  # (B, nh, T, S), each row sums to 1
        probs = probs.type(v.dtype)  # fp32 from the upcast branch back to V's dtype (else a no-op)
        record(self, "probs", probs)
        probs = self.attn_dropout(probs)  # (B, nh, T, S); training only
        context = torch.matmul(probs, v)  # (B, nh, T, hs)
        # .contiguous() as in HF: with hs = 1 the reshape is a strided view, which Conv1D's .view refuses.
        context = context.transpose(1, 2).reshape(B, T, C).contiguous()  # (B, T, C): heads side by side again
        record(self, "context", context)
        output = self.c_proj(context)  # (B, T, C)
        record(self, "c_proj", output)
        output = self.resid_dropout(output)  # (B, T, C); training only
        return output, probs

    # The scores' other paths: reorder_and_upcast_attn, and transformers 4.57's eager attention.

    def _upcast_and_reordered_attn(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The scores of HF's _upcast_and_reordered_attn (``reorder_and_upcast_attn``, from Megatron-LM):
        fp32, heads flattened into the batch, the scale applied inside the product (baddbmm's alpha)
        rather than after it. Mirrored op for op: its rounding differs from forward's matmul-then-scale.
        HF's method goes on with the mask, softmax, dropout and P V: the same ops as eager attention's,
        which forward does for both paths (recording the scores before them)."""
        B, nh, T, hs = q.shape
        S = k.shape[2]
        empty = torch.empty(B * nh, T, S, dtype=torch.float32, device=q.device)  # beta=0: its contents are ignored
        q_flat = q.reshape(-1, T, hs).float()  # (B*nh, T, hs)
        k_flat = k.transpose(-1, -2).reshape(-1, hs, S).float()  # (B*nh, hs, S)
        scores = torch.baddbmm(empty, q_flat, k_flat, beta=0, alpha=self.alpha())  # (B*nh, T, S)
        return scores.reshape(B, nh, T, S)  # (B, nh, T, S)

    def alpha(self) -> float:
        """The scale inside _upcast_and_reordered_attn's baddbmm, in the installed version's floats."""
        if not versions.V4:
            return self.scaling
        alpha = 1.0  # transformers 4.57: scale_factor = 1.0, then /= sqrt(hs), then /= layer + 1
        if self.scale_attn_weights:
            alpha /= float(self.head_dim) ** 0.5
        if self.scale_attn_by_inverse_layer_idx:
            alpha /= float(self.layer_idx + 1)
        return alpha

    def _scores_4_57(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The scores as transformers 4.57's eager_attention_forward computes them: it divides by a 0-d
        tensor of sqrt(hs), then by layer + 1, two roundings. 5.x multiplies once by hs**-0.5 / (layer + 1);
        equal only when sqrt(hs) is a power of 2."""
        scores = torch.matmul(q, k.transpose(-1, -2))  # (B, nh, T, S)
        if self.scale_attn_weights:
            scores = scores / torch.full([], self.head_dim**0.5, dtype=scores.dtype, device=scores.device)
        if self.scale_attn_by_inverse_layer_idx:
            scores = scores / float(self.layer_idx + 1)
        return scores  # (B, nh, T, S)

    def _mask_future_4_57(self, scores: torch.Tensor) -> torch.Tensor:
        """transformers 4.57 first masks the future from its attn.bias buffer (a lower triangle), then
        adds the mask, which masks it again: finfo.min + finfo.min = -inf there. Only rows that see no
        key at all (queries on left padding) then come out differently from 5.x's."""
        T, S = scores.shape[-2:]
        future = torch.ones(T, S, dtype=torch.bool, device=scores.device).tril(S - T).logical_not()  # (T, S)
        return scores.masked_fill(future, torch.finfo(scores.dtype).min)  # (B, nh, T, S)


class GPT2MLP(nn.Module):
    """Twin of GPT2MLP: up to I, the activation, back down to C."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        C = config.n_embd
        I = config.n_inner if config.n_inner is not None else 4 * C  # HF's GPT2Block computes this and passes it in
        self.c_fc = Conv1D(I, C)  # (C, I)
        self.c_proj = Conv1D(C, I)  # (I, C)
        self.act = get_activation(config.activation_function)  # gelu_new for every OpenAI checkpoint
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        up = self.c_fc(hidden_states)  # (B, T, I)
        record(self, "c_fc", up)
        activated = self.act(up)  # (B, T, I)
        record(self, "act", activated)
        down = self.c_proj(activated)  # (B, T, C)
        record(self, "c_proj", down)
        down = self.dropout(down)  # (B, T, C); training only
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


class GPT2Model(Twin):
    """Twin of GPT2Model: token + position embeddings, the stack of blocks, the final LayerNorm."""

    config_class = GPT2Config
    base_model_prefix = "transformer"  # the attribute the *For* classes keep this model under, and its keys' prefix

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # word (token) embeddings, also the LM head
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)  # learned position embeddings
        self.drop = Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, layer_idx=i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)  # pre-LN needs one at the end
        name_modules(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be the tokenizer's (B, S) mask, not a {attention_mask.dim()}-D tensor")
        B, T = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0  # tokens already in the cache
        # Given position ids without a mask or a cache may pack several sequences in a row (HF's
        # training-time format): the mask then keeps each sequence to itself (see causal_mask).
        packed = position_ids if attention_mask is None and cache is None else None
        if position_ids is None:
            # Positions continue after the cache. HF does not shift them for left padding in a
            # plain forward: a left-padded row's first real token is not at position 0.
            # (generate does shift them, and passes its own: see reimpl/generation.py.)
            position_ids = (torch.arange(T, device=input_ids.device) + past)[None]  # (1, T)
        words = self.wte(input_ids)  # (B, T, C)
        record(self, "wte", words)
        positions = self.wpe(position_ids)  # (1, T, C), broadcast over the batch; (B, T, C) from generate
        record(self, "wpe", positions)
        hidden_states = words + positions  # (B, T, C)
        if token_type_ids is not None:
            # GPT-2 has no segment table: HF looks token types up in the *token* table and adds them.
            types = self.wte(token_type_ids)  # (B, T, C)
            record(self, "token_type_embeds", types)
            hidden_states = hidden_states + types  # (B, T, C)
        record(self, "sum", hidden_states)
        hidden_states = self.drop(hidden_states)  # (B, T, C); training only
        # (B, 1, T, S), built once for all blocks
        mask = causal_mask(attention_mask, T, past, hidden_states.dtype, hidden_states.device, packed)
        for i, block in enumerate(self.h):
            hidden_states = block(hidden_states, mask, cache)  # (B, T, C)
            record(self, f"h.{i}", hidden_states)  # "transformer.h.i": the block's output
        hidden_states = self.ln_f(hidden_states)  # (B, T, C)
        record(self, "ln_f", hidden_states)
        return BaseModelOutput(hidden_states)


class GPT2PreTrainedModel(Twin):
    """What the heads share: GPT2Model under ``transformer``."""

    base_class = GPT2Model
    config_class = GPT2Config
    base_model_prefix = "transformer"


class GPT2LMHeadModel(GPT2PreTrainedModel, GenerationMixin):
    """Twin of GPT2LMHeadModel: GPT2Model, then logits over the vocabulary.

    The LM head is the token embedding: logits are each position's dot product with every
    embedding row, one (V, C) tensor stored once. The loader ties them as transformers 5 does
    (``_tied_weights_keys``): unless the config says ``tie_word_embeddings=False`` or the
    checkpoint stores an ``lm_head.weight`` of its own with other values, which then is kept.
    """

    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # (V, C), usually wte itself
        name_modules(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """Logits (B, T, V) for the next token after each input token.

        ``attention_mask``: the tokenizer's (B, S) 1/0 mask, covering the cached tokens and these
        (left padding included). ``cache``: a KVCache, empty or filled by earlier calls; this call's
        keys and values are appended to it. Without one the result is bit-identical to HF called
        with ``use_cache=False``; with one, to HF's default call. ``position_ids``: (B, T) or (1, T);
        by default the cache's length onwards. ``logits_to_keep``: only the last N positions'
        logits (generation asks for 1); 0 keeps all. ``token_type_ids``: looked up in wte and added.
        ``labels``: (B, T), usually the input ids themselves (shifted inside: position t is scored on
        token t + 1), -100 where not to score.
        """
        hidden_states = self.transformer(input_ids, attention_mask, cache, position_ids, token_type_ids).last_hidden_state  # (B, T, C)
        logits = self.lm_head(hidden_states[:, -logits_to_keep:, :])  # (B, T or N, V); -0: all
        record(self, "lm_head", logits)
        loss = causal_lm_loss(logits, labels, self.config.vocab_size) if labels is not None else None
        return CausalLMOutput(loss=loss, logits=logits)


class GPT2ForSequenceClassification(GPT2PreTrainedModel):
    """Twin of GPT2ForSequenceClassification: a score per label at every position, read at each
    row's last token that is not ``pad_token_id`` (the only one that has seen the whole text)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels  # L
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)  # (L, C)
        name_modules(self)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        hidden_states = self.transformer(input_ids, attention_mask, None, position_ids, token_type_ids).last_hidden_state  # (B, T, C)
        logits = self.score(hidden_states)  # (B, T, L)
        record(self, "score", logits)
        pooled = last_token_logits(logits, input_ids, self.config.pad_token_id)  # (B, L): the rightmost token that is not padding
        loss = sequence_classification_loss(pooled, labels, self.config, self.num_labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=pooled)


# ---------------------------------------------------------------------------------------------
# The record.


def checkpoint_key(key: str) -> str | None:
    """GPT-2 checkpoints as found: the hub's ``gpt2`` carries each layer's causal-mask buffer
    ``h.N.attn.bias`` (older saves also ``h.N.attn.masked_bias``, the -1e4 fill value), which
    transformers 5 no longer uses: the mask is built per call. Dropped here (``attn.c_attn.bias`` is
    a weight and stays). Prefixes (``transformer.``) are matched by the loader."""
    if key.split(".")[-2:] in (["attn", "bias"], ["attn", "masked_bias"]):
        return None
    return key


ARCHITECTURE = Architecture(
    model_type="gpt2",
    config=GPT2Config,
    base=GPT2Model,
    heads=(GPT2LMHeadModel, GPT2ForSequenceClassification),
    default=GPT2LMHeadModel,  # every GPT-2 checkpoint has its LM head: it is wte
    hf_file="models/gpt2/modeling_gpt2.py",
    layers="h",
    attention="attn",
    causal=True,
    token_types=False,
    checkpoint_key=checkpoint_key,
)
