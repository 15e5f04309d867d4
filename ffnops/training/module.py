"""The LightningModule that trains an FFN with a moving FOV.

``training_step`` receives the DataLoader's iterator (Lightning's ``dataloader_iter`` mode) and
pulls a new example only for slots whose example is finished, so every step is exactly one FOV
per slot and one optimiser step, on every DDP rank alike. Loss: binary cross-entropy of the new
logits against the soft labels over the FOV (mean), as the reference's sigmoid cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from ffnops.ffn.lr_schedule import LRSchedule
from ffnops.ffn.training_moves import TrainingGeometry, fixed_shifts
from ffnops.training.fov_slots import FovStepper, MaskCounts, Slot

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class FFNTrainingModule(pl.LightningModule):
    """Holds the network, the batch slots and the training/validation logic."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        geometry: TrainingGeometry,
        batch_size: int = 4,
        threshold: float = 0.9,
        seed_pad: float = 0.05,
        shuffle_moves: bool = True,
        move_seed: int = 0,
        channels_last: bool = False,
        lr_schedule: LRSchedule | None = None,
        max_steps: int = 1,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.geometry = geometry
        self.batch_size = batch_size
        shifts = fixed_shifts(geometry.deltas, shuffle_moves, move_seed)
        self.stepper = FovStepper(geometry, shifts, threshold, seed_pad)
        self.slots: list[Slot | None] = [None] * batch_size
        self.train_counts = MaskCounts()
        self.val_counts = MaskCounts()
        self.examples_done = 0
        self._loss_sum = torch.zeros(())
        self._loss_steps = 0
        self.preview: dict[str, np.ndarray] | None = None
        self.channels_last = channels_last
        self.lr_schedule = lr_schedule or LRSchedule()
        self.max_steps = max_steps
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
        return self.model(inputs)  # type: ignore[no-any-return]

    # ---- training ------------------------------------------------------------------------------

    def _refill(self, dataloader_iter: Iterator[Any]) -> None:
        for i, slot in enumerate(self.slots):
            if slot is not None:
                continue
            try:
                batch, _, _ = next(dataloader_iter)
            except StopIteration:  # end of the epoch: this slot waits for the next one
                return
            self.slots[i] = self.stepper.start(batch, self.device)

    def training_step(self, dataloader_iter: Iterator[Any]) -> torch.Tensor | None:
        self._refill(dataloader_iter)
        active = [s for s in self.slots if s is not None]
        if not active:
            return None
        inputs, targets = self.stepper.inputs(active)
        logits = self(inputs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        for slot in self.stepper.advance(active, logits):
            self._finish(slot)
        self._loss_sum += loss.detach()
        self._loss_steps += 1
        return loss

    def _finish(self, slot: Slot) -> None:
        self.slots[self.slots.index(slot)] = None
        canvas, labels = self.stepper.eval_region(slot)
        self.train_counts.add(canvas, labels, self.stepper.threshold)
        self.examples_done += 1
        self.preview = _centre_slices(slot)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Logs every ``log_every_n_steps`` (logging each step costs as much as a small step)."""
        every = max(int(getattr(self.trainer, "log_every_n_steps", 1)), 1)
        if self.global_step % every or not self._loss_steps:
            return
        self.log("train/loss", self._loss_sum / self._loss_steps, prog_bar=True, batch_size=1)
        self.log("train/examples", float(self.examples_done), batch_size=1)
        self._loss_sum, self._loss_steps = torch.zeros((), device=self.device), 0
        if self.examples_done:
            for key, value in self.train_counts.metrics().items():
                self.log(f"train/{key}", value, batch_size=1)
            self.train_counts = MaskCounts()

    # ---- validation ----------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Runs one held-out example through all its moves and scores its final canvas."""
        slot = self.stepper.start(batch, self.device)
        steps = 0
        while True:
            inputs, _ = self.stepper.inputs([slot])
            logits = self(inputs)
            steps += 1
            if self.stepper.advance([slot], logits):
                break
        canvas, labels = self.stepper.eval_region(slot)
        loss = F.binary_cross_entropy_with_logits(canvas, labels)
        self.val_counts.add(canvas, labels, self.stepper.threshold)
        self.log("val/patch_loss", loss, batch_size=1, sync_dist=True)
        self.log("val/fov_steps", float(steps), batch_size=1, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        counts = torch.tensor(
            [self.val_counts.tp, self.val_counts.fp, self.val_counts.fn, self.val_counts.tn],
            device=self.device,
        )
        gathered = self.all_gather(counts)
        assert isinstance(gathered, torch.Tensor)
        counts = gathered.reshape(-1, 4).sum(0)  # every rank's examples
        total = MaskCounts(*(float(c) for c in counts))
        for key, value in total.metrics().items():
            self.log(f"val/{key}", value, sync_dist=True)  # equal on every rank already
        self.val_counts = MaskCounts()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = self.optimizer_factory(self.model.parameters())
        scheduler = self.lr_schedule.scheduler(optimizer, self.max_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _centre_slices(slot: Slot) -> dict[str, np.ndarray]:
    """xy, xz and yz centre slices of image, target and prediction, for the picture."""
    c = slot.centre
    out: dict[str, np.ndarray] = {}
    volumes = {
        "image": slot.image,
        "target": slot.labels,
        "prediction": torch.sigmoid(slot.canvas),
    }
    for name, volume in volumes.items():
        v = volume.detach().float().cpu().numpy()
        out[f"{name}/xy"] = v[c[0]]
        out[f"{name}/xz"] = v[:, c[1]]
        out[f"{name}/yz"] = v[:, :, c[2]]
    out["volume"] = np.asarray(slot.volume)
    return out
