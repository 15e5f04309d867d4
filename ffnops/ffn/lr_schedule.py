"""The learning rate over training steps (``training.lr_schedule``), built from torch's own
schedulers and stepped once per optimizer step.

google/ffn's TF1 ``train.py`` trains at a constant rate (``ffn/training/optimizer.py`` defines
decay flags it never reads); its JAX trainer (``ffn/jax/``) takes constant, linear or cosine
schedules from its config. A fine-tune of a trained model is the usual reason to want one:
a short warmup keeps Adam's first, badly estimated steps small, and a decay ends the run on
small steps (docs/training.md, "Learning-rate schedule").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler

from ffnops.errors import FfnopsError

NAMES = ("constant", "linear", "cosine", "exponential")
SPAN_MAX_STEPS = ("linear", "cosine")  # end at trainer.max_steps: a resume cannot change it


@dataclass
class LRSchedule:
    """``training.lr_schedule``. ``name``: ``constant`` (Google's), ``linear`` or ``cosine``
    (from the optimizer's lr to ``min_lr`` at ``trainer.max_steps``), ``exponential`` (lr times
    ``decay_factor`` every ``decay_steps`` steps, smoothly, as TF's ``exponential_decay``).
    ``warmup_steps``: the rate rises linearly from near 0 to lr first; the decay follows."""

    name: str = "constant"
    warmup_steps: int = 0
    min_lr: float = 0.0
    decay_factor: float = 0.94  # the value of google/ffn's (unread) --learning_rate_decay_factor
    decay_steps: int = 1000

    def check(self, lr: float, max_steps: int) -> None:
        """One line naming the key, before any run is made."""
        if self.name not in NAMES:
            raise FfnopsError(
                f"training.lr_schedule.name={self.name!r}: expected one of {', '.join(NAMES)}"
            )
        if not 0 <= self.warmup_steps < max_steps:
            raise FfnopsError(
                f"training.lr_schedule.warmup_steps={self.warmup_steps}: expected 0 up to "
                f"trainer.max_steps - 1 ({max_steps - 1})"
            )
        if self.name in SPAN_MAX_STEPS and not 0 <= self.min_lr < lr:
            raise FfnopsError(
                f"training.lr_schedule.min_lr={self.min_lr}: expected at least 0 and below "
                f"optimizer.lr ({lr})"
            )
        if self.name == "exponential" and (self.decay_steps < 1 or self.decay_factor <= 0):
            raise FfnopsError(
                f"training.lr_schedule: decay_steps={self.decay_steps}, "
                f"decay_factor={self.decay_factor}: expected decay_steps >= 1 and decay_factor > 0"
            )

    def scheduler(
        self, optimizer: torch.optim.Optimizer, max_steps: int
    ) -> lr_scheduler.LRScheduler:
        """The scheduler for ``optimizer`` over ``max_steps`` steps (stepped after each)."""
        lr = optimizer.param_groups[0]["lr"]
        steps = max_steps - self.warmup_steps  # those the decay spans
        decay: lr_scheduler.LRScheduler
        if self.name == "constant":
            decay = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        elif self.name == "linear":
            decay = lr_scheduler.LinearLR(
                optimizer, start_factor=1.0, end_factor=self.min_lr / lr, total_iters=steps
            )
        elif self.name == "cosine":
            decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=self.min_lr)
        else:
            gamma = self.decay_factor ** (1.0 / self.decay_steps)
            decay = lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
        if not self.warmup_steps:
            return decay
        warmup = lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / (self.warmup_steps + 1), total_iters=self.warmup_steps
        )
        return lr_scheduler.SequentialLR(optimizer, [warmup, decay], [self.warmup_steps])
