"""The exercises' TODOs filled in: per exercise, (the skeleton's line, the answer). tests/test_check.py
applies them to a fresh copy of each skeleton: solved, it passes; unsolved, it says which TODO."""

ANSWERS = {
    1: [
        ('scores = todo("1: scores = Q K^T / sqrt(d_k)")', "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)"),
        ('probs = todo("2: probs = softmax(scores) over the keys")', "probs = scores.softmax(dim=-1)"),
        ('return todo("3: the weighted sum P V")', "return probs @ v"),
    ],
    2: [
        ('return todo("1: split (B, T, C) into (B, h, T, d_k)")', "return x.view(B, T, self.h, C // self.h).transpose(1, 2)"),
        ('return todo("2: merge (B, h, T, d_k) into (B, T, C)")', "return x.transpose(1, 2).reshape(B, T, h * d_k)"),
    ],
    3: [
        ('causal = todo("1: the causal (T, T) lower triangle")', "causal = torch.ones(T, T, dtype=torch.bool).tril()"),
        ('real_keys = todo("2: the real keys, (B, 1, 1, T)")', "real_keys = mask[:, None, None, :].bool()"),
    ],
    4: [
        ('summed = todo("1: the attention\'s residual sum")', "summed = x + projected"),
        ('x = todo("2: the attention\'s LayerNorm")', "x = self.attention_norm(summed)"),
        ('hidden = todo("3a: up to the inner width")', "hidden = self.up(x)"),
        ('hidden = todo("3b: the GELU")', "hidden = torch.nn.functional.gelu(hidden)"),
        ('out = todo("3c: down to the model width")', "out = self.down(hidden)"),
        ('summed = todo("4a: the feed-forward\'s residual sum")', "summed = x + out"),
        ('return todo("4b: the feed-forward\'s LayerNorm")', "return self.output_norm(summed)"),
    ],
    5: [
        ('h = todo("1: LN_1 of the stream")', "h = self.ln_1(x)"),
        ('x = todo("2: the stream plus the attention\'s output")', "x = x + self.attn(h, mask)"),
        ('h = todo("3a: LN_2 of the stream")', "h = self.ln_2(x)"),
        ('h = todo("3b: fc")', "h = self.fc(h)"),
        ('h = todo("3c: GELU, tanh form")', "h = torch.nn.functional.gelu(h, approximate='tanh')"),
        ('h = todo("3d: proj")', "h = self.proj(h)"),
        ('return todo("4: the stream plus the MLP\'s output")', "return x + h"),
    ],
    6: [
        ('k = todo("1a: the cached keys, then the new key")', "k = torch.cat([past[0], k], dim=2)"),
        ('v = todo("1b: the cached values, then the new value")', "v = torch.cat([past[1], v], dim=2)"),
        ('seen = todo("2: the (B, 1, T, S) booleans")',
         "seen = torch.ones(T, S, dtype=torch.bool).tril(S - T)[None, None] & mask[:, None, None, :].bool()"),
    ],
    7: [
        ('scores = todo("1: divide by the temperature")', "scores = scores / self.temperature"),
        ('scores = todo("2: top-k")',
         "kth = scores.topk(min(self.top_k, scores.shape[-1])).values[:, -1:]\n"
         "            scores = scores.masked_fill(scores < kth, float('-inf'))"),
        ('scores = todo("3: top-p")',
         "probs, order = scores.softmax(-1).sort(dim=-1, descending=True)\n"
         "            drop = probs.cumsum(-1) - probs >= self.top_p\n"
         "            scores = scores.masked_fill(drop.scatter(-1, order, drop), float('-inf'))"),
    ],
    8: [
        ('return todo("1: rotate_half")', "first, second = x.chunk(2, dim=-1)\n    return torch.cat((-second, first), dim=-1)"),
        ('q = todo("2a: q turned")', "q = q * cos[:, None] + rotate_half(q) * sin[:, None]"),
        ('k = todo("2b: k turned")', "k = k * cos[:, None] + rotate_half(k) * sin[:, None]"),
        ('k = todo("3a: k repeated to h heads")', "k = k.repeat_interleave(self.h // self.h_kv, dim=1)"),
        ('v = todo("3b: v repeated to h heads")', "v = v.repeat_interleave(self.h // self.h_kv, dim=1)"),
    ],
    9: [
        ('k = todo("1a: the keys, from the memory")', "k = self.k_proj(memory)"),
        ('v = todo("1b: the values, from the memory")', "v = self.v_proj(memory)"),
        ('seen = todo("2: the source\'s real tokens, (B, 1, 1, S)")', "seen = source_mask[:, None, None, :].bool()"),
    ],
    10: [
        ('causal = todo("1: the causal and padding mask, (B, 1, T, T)")',
         "causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :].bool()"),
        ('summed = todo("2a: x plus the cross-attention\'s output")',
         "summed = x + self.encoder_attn(x, memory, source_mask[:, None, None, :].bool())"),
        ('x = todo("2b: the cross-attention\'s LayerNorm")', "x = self.encoder_attn_layer_norm(summed)"),
        ('hidden = todo("3a: fc1")', "hidden = self.fc1(x)"),
        ('hidden = todo("3b: swish")', "hidden = hidden * torch.sigmoid(hidden)"),
        ('out = todo("3c: fc2")', "out = self.fc2(hidden)"),
        ('summed = todo("4a: the feed-forward\'s residual sum")', "summed = x + out"),
        ('return todo("4b: the final LayerNorm")', "return self.final_layer_norm(summed)"),
    ],
}


def solve(text: str, number: int) -> str:
    for old, new in ANSWERS[number]:
        assert text.count(old) == 1, f"exercise {number}: the skeleton has no line {old!r}"
        text = text.replace(old, new)
    return text
