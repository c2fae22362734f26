"""Exercise 5: a GPT-2 block.
练习 5：一个 GPT-2 块。

    X' = X + Attention(LN_1(X))        X_next = X' + MLP(LN_2(X')),   MLP(h) = GELU_tanh(h W_fc + b) W_proj + b

GPT-2 is pre-LN: each sublayer reads a normalised copy of the residual stream and adds its output
back to the stream itself, which is never normalised inside the block. The causal attention is
written for you (exercise 3); fill in `forward`, then grade it on a GPT-2 checkpoint:
GPT-2 是前置层归一化（pre-LN）：每个子层读取残差流归一化后的副本，再把输出加回残差流本身，
残差流在块内从不被归一化。因果注意力已经写好（练习 3）；补完 `forward`，然后在一个 GPT-2 检查点上评分：

    annotate exercise check 5 DIR [--model GPT2_CHECKPOINT]

Graded as `gpt2-block` (transformers' GPT2Block). GPT-2's activation is GELU's tanh approximation
("gelu_new"), its LayerNorms' epsilon config.layer_norm_epsilon.
按 `gpt2-block`（transformers 的 GPT2Block）评分。GPT-2 的激活函数是 GELU 的 tanh 近似
（"gelu_new"），层归一化的 epsilon 是 config.layer_norm_epsilon。
"""

import math

import torch
from torch import nn

from annotate import record

# ln_1 and ln_2 carry transformers' names; the rest is mapped (nn.Linear's weights are Conv1D's transposed).
# ln_1 与 ln_2 沿用 transformers 的名字；其余的在这里映射（nn.Linear 的权重是 Conv1D 权重的转置）。
WEIGHTS = {
    "attn.qkv.weight": "attn.c_attn.weight.T", "attn.qkv.bias": "attn.c_attn.bias",
    "attn.proj.weight": "attn.c_proj.weight.T", "attn.proj.bias": "attn.c_proj.bias",
    "fc.weight": "mlp.c_fc.weight.T", "fc.bias": "mlp.c_fc.bias", "proj.weight": "mlp.c_proj.weight.T", "proj.bias": "mlp.c_proj.bias",
}


def todo(what):
    raise NotImplementedError(f"TODO {what}")


class CausalSelfAttention(nn.Module):
    """Exercise 3, solved: (B, T, C) -> (B, T, C), after the output projection. 练习 3 的答案。"""

    def __init__(self, config):
        super().__init__()
        self.h, C = config.n_head, config.n_embd
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in self.qkv(x).split(C, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.h)
        seen = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :].bool()
        probs = scores.masked_fill(~seen, float("-inf")).softmax(dim=-1)
        record("probs", probs)
        return self.proj((probs @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        C, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.fc = nn.Linear(C, 4 * C)
        self.proj = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        # TODO 1: normalise a copy of the stream for the attention (LN_1). 为注意力归一化残差流的一个副本（LN_1）。
        h = todo("1: LN_1 of the stream")
        record("ln_1", h)
        # TODO 2: the attention on it, added back to the stream. 对它做注意力，并加回残差流。
        x = todo("2: the stream plus the attention's output")
        record("attn.residual", x)
        # TODO 3: LN_2, then the MLP: fc, GELU (tanh form), proj; record each as named.
        # TODO 3：LN_2，然后是 MLP：fc、GELU（tanh 形式）、proj；按给出的名字分别记录。
        h = todo("3a: LN_2 of the stream")
        record("ln_2", h)
        h = todo("3b: fc")
        record("mlp.c_fc", h)
        h = todo("3c: GELU, tanh form")
        record("mlp.act", h)
        h = todo("3d: proj")
        record("mlp.c_proj", h)
        # TODO 4: add the MLP's output to the stream, and return it. 把 MLP 的输出加回残差流并返回。
        return todo("4: the stream plus the MLP's output")
