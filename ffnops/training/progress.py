"""A progress bar that counts FOV steps, not DataLoader batches (which slots pull irregularly)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar
from tqdm import tqdm


class StepProgressBar(ProgressBar):
    """Steps done / max_steps with rate and ETA, plus the loss and examples finished."""

    def __init__(self) -> None:
        super().__init__()
        self._bar: tqdm | None = None
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        self._bar = tqdm(
            total=trainer.max_steps if trainer.max_steps > 0 else None,
            initial=trainer.global_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._bar is None:
            return
        self._bar.update(trainer.global_step - self._bar.n)
        metrics = trainer.callback_metrics
        postfix: dict[str, object] = {"examples": int(getattr(pl_module, "examples_done", 0))}
        if "train/loss" in metrics:
            postfix["loss"] = f"{float(metrics['train/loss']):.4f}"
        if "val/f1" in metrics:
            postfix["val_f1"] = f"{float(metrics['val/f1']):.3f}"
        self._bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
