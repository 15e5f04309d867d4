"""Batch slots that each walk one example's FOV moves (google/ffn's ``ffn/training/examples.py``).

A training step takes one FOV from each of ``batch_size`` slots; a slot whose example has run out
of moves takes the next example, so slots advance through different examples at different moves,
as in the reference. The canvas is plain data: no gradient flows between steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ffnops.ffn.geometry import Vec3
from ffnops.ffn.logit import logit
from ffnops.ffn.training_moves import (
    TrainingGeometry,
    fixed_policy,
    fov_slices,
    initial_canvas,
    max_pred_moves_policy,
)


@dataclass(eq=False)  # slots are compared by identity
class Slot:
    """One example in flight: its patches, canvas, remaining moves and current offset."""

    image: torch.Tensor  # (P, P, P) normalised
    labels: torch.Tensor  # (P, P, P) soft labels
    canvas: torch.Tensor  # (P, P, P) logits
    moves: Iterator[Vec3]
    offset: Vec3
    volume: str
    steps: int = 0

    @property
    def centre(self) -> list[int]:
        return [n // 2 for n in self.canvas.shape]


@dataclass
class MaskCounts:
    """Voxel counts for the reference's mask metrics (prediction = logit >= logit(0.9))."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0

    def add(self, canvas: torch.Tensor, labels: torch.Tensor, threshold: float) -> None:
        pred = canvas >= threshold
        true = labels > 0.5
        self.tp += float((pred & true).sum())
        self.fp += float((pred & ~true).sum())
        self.fn += float((~pred & true).sum())
        self.tn += float((~pred & ~true).sum())

    def metrics(self) -> dict[str, float]:
        total = self.tp + self.fp + self.fn + self.tn
        precision = self.tp / max(self.tp + self.fp, 1)
        recall = self.tp / max(self.tp + self.fn, 1)
        return {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-12),
            "accuracy": (self.tp + self.tn) / max(total, 1),
        }


class FovStepper:
    """Builds slots from examples and runs their FOV steps through a model."""

    def __init__(
        self,
        geometry: TrainingGeometry,
        shifts: Sequence[Vec3],
        threshold: float = 0.9,
        seed_pad: float = 0.05,
    ) -> None:
        self.geometry = geometry
        self.shifts = list(shifts)
        self.threshold = logit(threshold)
        self.seed_pad = seed_pad

    def start(self, example: dict[str, Any], device: torch.device) -> Slot:
        """A slot for a new example (a dict from :class:`ffnops.data.examples.FovExamples`)."""
        image = torch.as_tensor(example["image"]).to(device, non_blocking=True)
        image = image.reshape(image.shape[-3:])
        labels = (
            torch.as_tensor(example["labels"]).to(device, non_blocking=True).reshape(image.shape)
        )
        canvas = initial_canvas(image.shape, self.seed_pad, device)
        if self.geometry.policy == "fixed":
            moves = fixed_policy(canvas, self.shifts, self.threshold)
        else:
            moves = max_pred_moves_policy(canvas, labels, self.geometry, self.threshold)
        volume = example.get("volume", "")
        slot = Slot(image, labels, canvas, moves, (0, 0, 0), str(volume))
        slot.offset = next(moves)  # the centre is always valid: it starts at logit(0.95)
        return slot

    def inputs(self, slots: Sequence[Slot]) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input (B, 2, f, f, f), soft targets (B, 1, f, f, f)) at each slot's offset."""
        fov = self.geometry.fov_size
        crops, targets = [], []
        for slot in slots:
            box = fov_slices(slot.centre, slot.offset, fov)
            crops.append(torch.stack([slot.image[box], slot.canvas[box]]))
            targets.append(slot.labels[box][None])
        return torch.stack(crops), torch.stack(targets)

    def advance(self, slots: Sequence[Slot], logits: torch.Tensor) -> list[Slot]:
        """Writes each FOV's logits into its canvas, moves on; returns the slots now finished."""
        finished = []
        fov = self.geometry.fov_size
        for slot, out in zip(slots, logits.detach().float(), strict=True):
            slot.canvas[fov_slices(slot.centre, slot.offset, fov)] = out[0]
            slot.steps += 1
            try:
                slot.offset = next(slot.moves)
            except StopIteration:
                finished.append(slot)
        return finished

    def eval_region(self, slot: Slot) -> tuple[torch.Tensor, torch.Tensor]:
        """(canvas, labels) cropped to the region the reference scores after an example."""
        box = fov_slices(slot.centre, (0, 0, 0), self.geometry.eval_size)
        return slot.canvas[box], slot.labels[box]
