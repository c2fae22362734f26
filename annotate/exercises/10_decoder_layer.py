"""Exercise 10: a decoder layer of the paper's Transformer (post-LN).
练习 10：论文中 Transformer 的一个解码器层（post-LN）。

    Y'   = LayerNorm(Y + MaskedSelfAttention(Y))              (causal + the target's padding)
    Y''  = LayerNorm(Y' + CrossAttention(Y', memory))          (the source's padding)
    Y_next = LayerNorm(Y'' + act(Y'' W_1 + b_1) W_2 + b_2)

Three sublayers, each added to its input and then normalised, as the paper writes it (section
3.1) and Marian computes it. The attention class is written for you (exercise 9's, with a mask
given as booleans); build the masks and put the layer together, then grade it on the packaged
translator:
三个子层，每个都加上它的输入再做层归一化，和论文（3.1 节）写的、Marian 算的一样。注意力类已经写好
（练习 9 的那个，掩码以布尔值传入）；构造掩码并把这一层拼起来，然后在随包附带的翻译模型上评分：

    annotate exercise check 10 DIR

Graded as `marian-decoder-layer` (transformers' MarianDecoderLayer) on marian-numbers-en-zh:
forward(x, mask, memory, source_mask), mask being the target's (B, T) padding mask and the causal
mask yours to build. Its LayerNorms keep nn.LayerNorm's default epsilon (1e-5); its activation is
config.activation_function, "swish" for this translator: x * sigmoid(x) (F.silu; the paper's is ReLU).
按 `marian-decoder-layer`（transformers 的 MarianDecoderLayer）在 marian-numbers-en-zh 上评分：
forward(x, mask, memory, source_mask)，mask 是目标序列 (B, T) 的填充掩码，因果掩码由你来构造。
它的层归一化使用 nn.LayerNorm 默认的 epsilon（1e-5）；激活函数是 config.activation_function，
这个翻译模型用的是 "swish"：x * sigmoid(x)（F.silu；论文用的是 ReLU）。
"""

import math

import torch
from torch import nn

from annotate import record


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class Attention(nn.Module):
    """softmax(Q K^T / sqrt(d_k)) V W^O: queries from x, keys and values from kv (x itself for
    self-attention, the memory for cross-attention); seen: booleans broadcastable to (B, h, T, S).
    查询来自 x，键和值来自 kv（自注意力时就是 x，交叉注意力时是 memory）；seen：可广播到 (B, h, T, S) 的布尔值。"""

    def __init__(self, config):
        super().__init__()
        C = config.d_model
        self.h = config.decoder_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def forward(self, x, kv, seen):
        B, T, C = x.shape
        d_k = C // self.h
        q, k, v = self.q_proj(x), self.k_proj(kv), self.v_proj(kv)
        q, k, v = (t.view(B, t.shape[1], self.h, d_k).transpose(1, 2) for t in (q, k, v))
        probs = (q @ k.transpose(-2, -1) / math.sqrt(d_k)).masked_fill(~seen, float("-inf")).softmax(dim=-1)
        record("probs", probs)
        return self.out_proj((probs @ v).transpose(1, 2).reshape(B, T, C))


class DecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.d_model
        self.self_attn, self.encoder_attn = Attention(config), Attention(config)
        self.self_attn_layer_norm, self.encoder_attn_layer_norm, self.final_layer_norm = nn.LayerNorm(C), nn.LayerNorm(C), nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, config.decoder_ffn_dim)  # W_1: C -> F
        self.fc2 = nn.Linear(config.decoder_ffn_dim, C)  # W_2: F -> C

    def forward(self, x, mask, memory, source_mask):
        """x: (B, T, C) the target's states; mask: (B, T) the target's padding mask; memory: (B, S, C) the
        encoder's output; source_mask: (B, S) the source's padding mask. Returns (B, T, C).
        x：(B, T, C) 目标序列的隐藏状态；mask：(B, T) 目标序列的填充掩码；memory：(B, S, C) 编码器的输出；
        source_mask：(B, S) 源序列的填充掩码。返回 (B, T, C)。"""
        T = x.shape[1]
        # TODO 1: the masked self-attention's booleans, (B, 1, T, T): key j seen by query i if j <= i and j is real.
        # TODO 1：带掩码自注意力的布尔值，(B, 1, T, T)：当 j <= i 且 j 是真实词元时，查询 i 能看到键 j。
        causal = todo("1: the causal and padding mask, (B, 1, T, T)")
        summed = x + self.self_attn(x, x, causal)
        record("self_attn.residual", summed)
        x = self.self_attn_layer_norm(summed)
        record("self_attn_layer_norm", x)
        # TODO 2: cross-attention over the memory (the source's real tokens seen), its residual sum, its LayerNorm.
        # TODO 2：对 memory 的交叉注意力（看得到源序列的真实词元）、它的残差和、它的层归一化。
        summed = todo("2a: x plus the cross-attention's output")
        record("encoder_attn.residual", summed)
        x = todo("2b: the cross-attention's LayerNorm")
        record("encoder_attn_layer_norm", x)
        # TODO 3: the feed-forward: fc1, swish (x * sigmoid(x)), fc2; record each as named.
        # TODO 3：前馈网络：fc1、swish（x * sigmoid(x)）、fc2；按给出的名字分别记录。
        hidden = todo("3a: fc1")
        record("fc1", hidden)
        hidden = todo("3b: swish")
        record("activation_fn", hidden)
        out = todo("3c: fc2")
        record("fc2", out)
        # TODO 4: the last residual sum and LayerNorm: the layer's output. TODO 4：最后的残差和与层归一化：该层的输出。
        summed = todo("4a: the feed-forward's residual sum")
        record("fc2.residual", summed)
        return todo("4b: the final LayerNorm")
