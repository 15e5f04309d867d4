"""The LightningDataModule: examples around training coordinates, and held-out ones to validate.

Validation coordinates come from their own file when given, else a seeded ``val_fraction`` of the
training file is held out (those coordinates are never trained on). Training examples are
shuffled, or, with ``hard_examples``, drawn weighted towards the coordinates a given segmentation
gets wrong (``ffnops/training/hard_examples.py``). Loaders yield single examples
(``batch_size=None``): the module assembles FOV batches from its slots.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, WeightedRandomSampler

from ffnops.data.coordinate_file import load_coordinates
from ffnops.data.dataset import Dataset
from ffnops.data.examples import Augmentation, FovExamples, as_is, validate_training_data
from ffnops.ffn.coordinates import CoordinateTable
from ffnops.ffn.geometry import Vec3
from ffnops.processes import die_with_parent
from ffnops.training.hard_examples import HardExamples, draw_weights, hard_coordinates


def split_coordinates(
    table: CoordinateTable, val_fraction: float, seed: int, max_val: int
) -> tuple[CoordinateTable, CoordinateTable]:
    """(train, validation): a seeded random ``val_fraction`` (at most ``max_val``) held out."""
    n_val = min(round(len(table) * val_fraction), max_val, len(table) - 1)
    order = np.random.default_rng(seed).permutation(len(table))
    return table.subset(np.sort(order[n_val:])), table.subset(np.sort(order[:n_val]))


def start_worker(parent: int, rank: int, worker_id: int) -> None:
    """A DataLoader worker's start: it dies with its parent (also on ``kill -9``), and is seeded
    as Lightning seeds workers after ``seed_everything(workers=True)`` (which setting our own
    ``worker_init_fn`` would otherwise turn off)."""
    die_with_parent(parent)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank)


class FFNDataModule(pl.LightningDataModule):
    """Training and validation examples for :class:`ffnops.training.module.FFNTrainingModule`."""

    def __init__(
        self,
        coordinates: str,
        datasets: Mapping[str, Dataset],
        patch_size: Vec3,
        augmentation: Augmentation,
        val_coordinates: str | None = None,
        val_fraction: float = 0.02,
        max_val_examples: int = 64,
        num_workers: int = 1,
        seed: int = 0,
        hard_examples: HardExamples | None = None,
    ) -> None:
        super().__init__()
        self.coordinates_path = coordinates
        self.val_coordinates_path = val_coordinates
        self.datasets = dict(datasets)
        self.patch_size = patch_size
        self.augmentation = augmentation
        self.val_fraction = val_fraction
        self.max_val_examples = max_val_examples
        self.num_workers = num_workers
        self.seed = seed
        self.hard_examples = hard_examples
        self.train_weights: np.ndarray | None = None  # None: Google's shuffle
        self.train_set: FovExamples | None = None
        self.val_set: FovExamples | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return  # already set up (the train command checks its data before fitting)
        table = load_coordinates(self.coordinates_path)
        if self.val_coordinates_path:
            train, val = table, load_coordinates(self.val_coordinates_path)
            val = val.subset(slice(0, self.max_val_examples))
        elif self.val_fraction > 0:
            train, val = split_coordinates(
                table, self.val_fraction, self.seed, self.max_val_examples
            )
        else:
            train, val = table, table.subset(slice(0, 0))
        validate_training_data(self.datasets, train, self.patch_size)
        validate_training_data(self.datasets, val, self.patch_size)
        if self.hard_examples is not None:
            hard = self.hard_examples  # checked by check_hard_examples before any work
            found = hard_coordinates(train, self.datasets, hard.segmentations)
            self.train_weights = draw_weights(found, hard.weight)
            print(
                f"hard examples: {int(found.sum())} of {len(train)} training coordinates "
                f"({found.mean():.0%}) lie in pieces the given segmentation gets wrong; drawn "
                f"{hard.weight:g} times as often"
            )
        self.train_set = FovExamples(
            train, self.datasets, self.patch_size, self.augmentation, self.seed
        )
        self.val_set = FovExamples(val, self.datasets, self.patch_size, None, self.seed)

    def _loader(
        self,
        examples: FovExamples | None,
        shuffle: bool,
        weights: np.ndarray | None = None,
    ) -> DataLoader[Any]:
        assert examples is not None, "setup() runs before the loaders are asked for"
        sampler = None
        if weights is not None:  # hard examples: a weighted draw instead of the shuffle
            generator = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(
                torch.as_tensor(weights),  # type: ignore[arg-type]  # torch takes a tensor too
                len(weights),
                replacement=True,
                generator=generator,
            )
        return DataLoader(
            examples,
            batch_size=None,
            collate_fn=as_is,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=partial(
                start_worker, os.getpid(), self.trainer.global_rank if self.trainer else 0
            ),
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train_set, shuffle=True, weights=self.train_weights)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val_set, shuffle=False)
