"""The update half of training, spelled out: gradient clipping, AdamW, and transformers' linear
warmup schedule, each the same arithmetic as the code transformers' Trainer calls, so that a
twin trained with these stays bit-identical (``torch.equal``) to transformers' model trained with
``torch.nn.utils.clip_grad_norm_``, ``torch.optim.AdamW`` and
``transformers.get_linear_schedule_with_warmup``, step after step.

One training step, as Trainer's inner loop runs it (trainer.py, ``_inner_training_loop``)::

    loss = model(**batch, labels=labels).loss  # forward, dropout on (model.train())
    loss.backward()                            # every parameter's .grad
    clip_grad_norm_(model.parameters(), 1.0)   # scale all gradients down if their joint norm exceeds 1
    optimizer.step()                           # AdamW: move each parameter
    scheduler.step()                           # the next step's learning rate
    optimizer.zero_grad()

Left out: AMSGrad, ``maximize``, complex parameters, the foreach and fused kernels (on CPU torch's
AdamW takes the one-tensor-at-a-time path written here), norms other than L2.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Twin of ``torch.nn.utils.clip_grad_norm_`` (L2): the norm of all gradients taken together,
    and, if it exceeds ``max_norm``, every gradient scaled by max_norm / norm. Returns the norm.

    The norm of the concatenation is computed as torch does: one norm per gradient, then the norm
    of those norms (not the square root of one sum of squares: another order of additions)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = [torch.linalg.vector_norm(g, 2.0) for g in grads]  # torch._foreach_norm on CPU: these same norms
    total_norm = torch.linalg.vector_norm(torch.stack(norms), 2.0)  # () tensor
    clip_coef = max_norm / (total_norm + 1e-6)  # 1e-6: no division by zero
    clip_coef_clamped = torch.clamp(clip_coef, max=1.0)  # only ever scale down
    for g in grads:
        g.mul_(clip_coef_clamped)
    return total_norm


class AdamW:
    """Twin of ``torch.optim.AdamW`` (torch/optim/adam.py, ``_single_tensor_adam`` with decoupled
    weight decay), the optimizer transformers' Trainer uses.

    For each parameter p with gradient g, at step t (from 1):

        p  <- p * (1 - lr * weight_decay)            decoupled weight decay (Loshchilov & Hutter)
        m  <- m + (g - m) * (1 - beta1)              running mean of g (torch's lerp_)
        v  <- v * beta2 + g * g * (1 - beta2)        running mean of g^2
        p  <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The two (1 - beta^t) undo the bias of m and v, which start at 0. ``params``: tensors, or groups
    ``{"params": [...], "weight_decay": ...}`` as torch takes them (Trainer puts biases and
    LayerNorm weights in a group without weight decay); each group's ``lr`` is what a scheduler sets.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.param_groups = [{**defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: dict[torch.Tensor, dict] = {}  # per parameter: step, exp_avg (m), exp_avg_sq (v)

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p not in self.state:  # m and v start at zero, shaped and laid out as p
                    self.state[p] = {
                        "step": 0.0,
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
                state = self.state[p]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1.0  # torch counts in a float tensor and reads it back with .item()
                step = state["step"]
                if weight_decay != 0:
                    p.mul_(1 - lr * weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step  # Python floats, as in torch
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                bias_correction2_sqrt = bias_correction2**0.5
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)

    def zero_grad(self) -> None:
        """Forget the gradients (set them to None, as torch's default ``set_to_none=True``)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


class LinearWarmup:
    """Twin of ``transformers.get_linear_schedule_with_warmup`` (optimization.py): the learning rate
    rises linearly from 0 to each group's initial lr over ``num_warmup_steps``, then falls linearly
    to 0 at ``num_training_steps``. As torch's LambdaLR, it sets step 0's rate when created, and
    ``step()`` (after each optimizer step) sets the next one."""

    def __init__(self, optimizer, num_warmup_steps: int, num_training_steps: int):
        self.optimizer = optimizer
        self.num_warmup_steps = num_warmup_steps
        self.num_training_steps = num_training_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = -1  # LambdaLR's name for the step count
        self.step()

    def lr_lambda(self, current_step: int) -> float:
        """The factor of step ``current_step``: transformers' _get_linear_schedule_with_warmup_lr_lambda."""
        if current_step < self.num_warmup_steps:
            return float(current_step) / float(max(1, self.num_warmup_steps))
        return max(0.0, float(self.num_training_steps - current_step) / float(max(1, self.num_training_steps - self.num_warmup_steps)))

    def step(self) -> None:
        self.last_epoch += 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * self.lr_lambda(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]
