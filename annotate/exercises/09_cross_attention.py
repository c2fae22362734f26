"""Exercise 9: cross-attention, the decoder looking at the source.
练习 9：交叉注意力，解码器看向源序列。

    CrossAttention(x, memory) = softmax(Q K^T / sqrt(d_k) + M_src) V W^O,
    Q = x W^Q (the decoder's tokens), K = memory W^K, V = memory W^V (the encoder's output)

In an encoder-decoder (the paper's Transformer, a translator), each decoder layer attends twice:
to the target so far (masked self-attention), then to the source (section 3.2.3: "the queries come
from the previous decoder layer, and the memory keys and values come from the output of the
encoder"). So Q has the target's T rows while K and V have the source's S rows: the scores are
(B, h, T, S), and the mask that matters is the source's padding mask, on the keys' axis. No causal
mask here: every target token may read the whole source.
在编码器-解码器（论文中的 Transformer，一个翻译模型）中，每个解码器层做两次注意力：先对目前为止的目标
序列（带掩码的自注意力），再对源序列（论文 3.2.3 节："查询来自前一个解码器层，记忆的键和值来自编码器
的输出"）。所以 Q 有目标序列的 T 行，而 K 和 V 有源序列的 S 行：分数的形状是 (B, h, T, S)，起作用的是
源序列的填充掩码，作用在键的维度上。这里没有因果掩码：每个目标词元都可以看整个源序列。

    annotate exercise check 9 DIR

Graded as `marian-cross-attention` (transformers' MarianAttention, the first decoder layer's
encoder_attn) on the packaged translator marian-numbers-en-zh (English number words to Chinese
numerals; d_model 192, 4 heads): x is the decoder's states for two Chinese targets under teacher
forcing, memory the encoder's output for their two English sources, source_mask the sources'
padding mask. Your parameters have transformers' names (q_proj, k_proj, v_proj, out_proj), so no
WEIGHTS are needed.
按 `marian-cross-attention`（transformers 的 MarianAttention，即第一个解码器层的 encoder_attn）在随包
附带的翻译模型 marian-numbers-en-zh 上评分（把英文数字词翻译成中文数字；d_model 192，4 个头）：x 是
解码器在教师强制（teacher forcing）下对两个中文目标的隐藏状态，memory 是编码器对两个英文源句的输出，
source_mask 是源句的填充掩码。你的参数名与 transformers 相同（q_proj、k_proj、v_proj、out_proj），
所以不需要 WEIGHTS。
"""

import math

from torch import nn

from annotate import record


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class CrossAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.d_model
        self.h = config.decoder_attention_heads
        self.d_k = C // self.h
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def split(self, t):
        """(B, n, C) -> (B, h, n, d_k): n is T for the queries, S for the keys and values. n 对查询是 T，对键和值是 S。"""
        B, n, C = t.shape
        return t.view(B, n, self.h, self.d_k).transpose(1, 2)

    def forward(self, x, memory, source_mask):
        """x: (B, T, C) the decoder's states; memory: (B, S, C) the encoder's output; source_mask: (B, S), 1 for a
        real source token, 0 for padding. Returns (B, T, C).
        x：(B, T, C) 解码器的隐藏状态；memory：(B, S, C) 编码器的输出；source_mask：(B, S)，真实源词元为 1，
        填充为 0。返回 (B, T, C)。"""
        B, T, C = x.shape
        q = self.q_proj(x)
        record("q_proj", q)
        # TODO 1: the keys and the values: from the encoder's output, not from x.
        # TODO 1：键和值：来自编码器的输出，而不是 x。
        k = todo("1a: the keys, from the memory")
        v = todo("1b: the values, from the memory")
        record("k_proj", k)
        record("v_proj", v)
        q, k, v = self.split(q), self.split(k), self.split(v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, h, T, S)
        record("scores", scores)
        # TODO 2: which keys each query may see, (B, 1, 1, S) booleans: the real source tokens.
        # TODO 2：每个查询能看到哪些键，(B, 1, 1, S) 的布尔值：真实的源词元。
        seen = todo("2: the source's real tokens, (B, 1, 1, S)")
        probs = scores.masked_fill(~seen, float("-inf")).softmax(dim=-1)
        record("probs", probs)
        context = (probs @ v).transpose(1, 2).reshape(B, T, C)
        record("context", context)
        out = self.out_proj(context)
        record("out_proj", out)
        return out
