"""Optimizer and learning-rate schedule of the standard recipe.

Weight decay applies to weight matrices and conv kernels only: norms and biases (1-D tensors), the
ACmix mixing rates (rate1, rate2) and Swin's relative_position_bias_table are excluded, since
decaying them only pulls the model towards an arbitrary point (zero mixing, zero position bias).
The schedule is per step: linear warm-up from lr / (warm-up steps) to lr, then cosine to min_lr.
Its only state is the step counter, saved in checkpoints for exact resume.
"""

from __future__ import annotations

import math
import torch
import torch.nn as nn

from acmix_deploy.errors import AcmixError

NO_DECAY_NAMES = ("rate1", "rate2", "relative_position_bias_table", "absolute_pos_embed")
OPTIMIZERS = ("sgd", "adamw")


def decays(name: str, param: torch.Tensor) -> bool:
    """True for parameters that get weight decay (see module docstring)."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim > 1 and leaf not in NO_DECAY_NAMES


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if decays(name, param) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    raise AcmixError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class WarmupCosine:
    """Per-step learning rate: linear warm-up, then half a cosine down to `min_lr`."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
    ):
        if total_steps < 1:
            raise AcmixError("the schedule needs at least one training step")
        self.optimizer, self.lr, self.min_lr = optimizer, lr, min_lr
        self.total_steps, self.warmup_steps = total_steps, min(warmup_steps, total_steps)
        self.step_count = 0

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def apply(self) -> float:
        """Set the lr for the next optimizer step; call once before each step, then `advance`."""
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def advance(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
