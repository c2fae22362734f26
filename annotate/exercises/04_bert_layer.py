"""Exercise 4: a BERT layer.
练习 4：一个 BERT 层。

    X' = LayerNorm(X + MultiHead(X) W^O)        X_next = LayerNorm(X' + GELU(X' W_1 + b_1) W_2 + b_2)

BERT is post-LN: each sublayer's output is added to its input (the residual) and the sum is
normalised. The attention is written for you (exercises 1 and 2); fill in the rest of `forward`,
then grade it on the real all-MiniLM-L6-v2:
BERT 是后置层归一化（post-LN）：每个子层的输出加上它的输入（残差），再对和做归一化。注意力已经写好
（练习 1 和 2）；补完 `forward` 的其余部分，然后在真实的 all-MiniLM-L6-v2 上评分：

    annotate exercise check 4 DIR

Graded as `bert-layer` (transformers' BertLayer). Its LayerNorms use the config's epsilon
(config.layer_norm_eps, 1e-12 for BERT), its activation is the exact (erf) GELU.
按 `bert-layer`（transformers 的 BertLayer）评分。层归一化使用配置中的 epsilon
（config.layer_norm_eps，BERT 是 1e-12），激活函数是精确的（erf 形式的）GELU。
"""

import math

import torch
from torch import nn

from annotate import record

# Your names -> transformers' names inside BertLayer. 你的参数名 -> BertLayer 中 transformers 的名字。
WEIGHTS = {
    "attention.query.weight": "attention.self.query.weight", "attention.query.bias": "attention.self.query.bias",
    "attention.key.weight": "attention.self.key.weight", "attention.key.bias": "attention.self.key.bias",
    "attention.value.weight": "attention.self.value.weight", "attention.value.bias": "attention.self.value.bias",
    "attention_out.weight": "attention.output.dense.weight", "attention_out.bias": "attention.output.dense.bias",
    "attention_norm.weight": "attention.output.LayerNorm.weight", "attention_norm.bias": "attention.output.LayerNorm.bias",
    "up.weight": "intermediate.dense.weight", "up.bias": "intermediate.dense.bias",
    "down.weight": "output.dense.weight", "down.bias": "output.dense.bias",
    "output_norm.weight": "output.LayerNorm.weight", "output_norm.bias": "output.LayerNorm.bias",
}


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class SelfAttention(nn.Module):
    """Exercises 1 and 2, solved: the heads' context (B, T, C). 练习 1 和 2 的答案：各个头的上下文 (B, T, C)。"""

    def __init__(self, config):
        super().__init__()
        C = config.hidden_size
        self.h = config.num_attention_heads
        self.query, self.key, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = (layer(x).view(B, T, self.h, C // self.h).transpose(1, 2) for layer in (self.query, self.key, self.value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.h)
        probs = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf")).softmax(dim=-1)
        record("probs", probs)
        return (probs @ v).transpose(1, 2).reshape(B, T, C)


class Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        C, I, eps = config.hidden_size, config.intermediate_size, config.layer_norm_eps
        self.attention = SelfAttention(config)
        self.attention_out = nn.Linear(C, C)  # W^O
        self.attention_norm = nn.LayerNorm(C, eps=eps)
        self.up = nn.Linear(C, I)  # W_1: C -> I
        self.down = nn.Linear(I, C)  # W_2: I -> C
        self.output_norm = nn.LayerNorm(C, eps=eps)

    def forward(self, x, mask):
        projected = self.attention_out(self.attention(x, mask))
        record("attention.output.dense", projected)
        # TODO 1: the residual: the layer's input plus the attention's output. 残差：层的输入加上注意力的输出。
        summed = todo("1: the attention's residual sum")
        record("attention.output.residual", summed)
        # TODO 2: normalise it (post-LN). 对它做层归一化（post-LN）。
        x = todo("2: the attention's LayerNorm")
        record("attention.output.LayerNorm", x)
        # TODO 3: the feed-forward network: up (W_1), GELU, down (W_2); record each as named.
        # TODO 3：前馈网络：升维（W_1）、GELU、降维（W_2）；按给出的名字分别记录。
        hidden = todo("3a: up to the inner width")
        record("intermediate.dense", hidden)
        hidden = todo("3b: the GELU")
        record("intermediate.intermediate_act_fn", hidden)
        out = todo("3c: down to the model width")
        record("output.dense", out)
        # TODO 4: the second residual and LayerNorm; return the layer's output (B, T, C).
        # TODO 4：第二个残差与层归一化；返回该层的输出 (B, T, C)。
        summed = todo("4a: the feed-forward's residual sum")
        record("output.residual", summed)
        return todo("4b: the feed-forward's LayerNorm")
