"""Training examples: image and soft-label patches around the coordinates of a coordinate table.

Patches are read through the volume API (any data-source plugin); each DataLoader worker opens
its own handles on first use. Augmentation follows the reference
(``ffn/training/augmentation.py``): an optional permutation of ``permutable_axes`` (default y, x:
a random xy transpose), then a flip of each of ``reflectable_axes`` with p = 0.5, applied
identically to image and labels, before normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import get_worker_info

from ffnops.data.dataset import IMAGE_DTYPES, LABEL_DTYPES, Dataset
from ffnops.errors import FfnopsError
from ffnops.ffn.coordinates import CoordinateTable
from ffnops.ffn.geometry import Vec3
from ffnops.ffn.training_moves import soften_labels
from ffnops.volume import BBox, Volume
from ffnops.volumes import open_volume


@dataclass
class Augmentation:
    """Which axes (0 = z, 1 = y, 2 = x) may be permuted among themselves or reflected."""

    permutable_axes: list[int] = field(default_factory=lambda: [1, 2])
    reflectable_axes: list[int] = field(default_factory=lambda: [0, 1, 2])
    enabled: bool = True

    def draw(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """One random (axis order, axes to flip) for an example."""
        order = [0, 1, 2]
        if self.enabled and len(self.permutable_axes) > 1:
            shuffled = list(rng.permutation(self.permutable_axes))
            for axis, new in zip(sorted(self.permutable_axes), shuffled, strict=True):
                order[axis] = int(new)
        flips = [a for a in self.reflectable_axes if self.enabled and rng.random() < 0.5]
        return order, flips


def apply_augmentation(array: np.ndarray, order: Sequence[int], flips: Sequence[int]) -> np.ndarray:
    """Permute, then reflect (the reference's order); odd patch sizes keep the centre fixed."""
    out = np.transpose(array, order)
    if flips:
        out = np.flip(out, axis=tuple(flips))
    return np.ascontiguousarray(out)


def validate_training_data(
    datasets: Mapping[str, Dataset], table: CoordinateTable, patch_size: Vec3
) -> None:
    """Fails before training starts, naming what is wrong: an unknown volume name, image and
    labels of different shapes, or a coordinate whose patch leaves its volume."""
    unknown = sorted(set(table.names) - set(datasets))
    if unknown:
        raise FfnopsError(
            f"the coordinate file names volume(s) {unknown}, but data.volumes has only "
            f"{sorted(datasets)}; give each a dataset (e.g. +dataset@data.volumes.NAME=...)"
        )
    half = np.asarray(patch_size) // 2
    for index, name in enumerate(table.names):
        dataset = datasets[name]
        with dataset.open_image() as image, dataset.open_labels() as labels:
            region = dataset.region()
            if region is None and image.shape != labels.shape:
                raise FfnopsError(
                    f"volume {name!r}: image {image.uri} has shape {image.shape} but labels "
                    f"{labels.uri} have shape {labels.shape}; they must cover the same voxels "
                    "(or set the dataset's bbox to the part both cover)"
                )
            region = region or BBox.from_shape(image.shape)
            if not (region.inside(image.shape) and region.inside(labels.shape)):
                raise FfnopsError(
                    f"volume {name!r}: bbox [{region}] is not inside both the image "
                    f"{image.shape} and the labels {labels.shape}"
                )
        low, shape = np.asarray(region.start), np.asarray(region.stop)
        if (np.asarray(patch_size) > shape - low).any():
            raise FfnopsError(
                f"volume {name!r} of shape {tuple(shape)} is smaller than the training patch "
                f"{patch_size} (FOV + 2 x deltas x moves); use a smaller FOV or a larger volume"
            )
        centres = table.zyx[table.volume == index]
        bad = ((centres - half) < low).any(axis=1) | ((centres + half) >= shape).any(axis=1)
        if bad.any():
            first = tuple(int(c) for c in centres[np.argmax(bad)])
            raise FfnopsError(
                f"{int(bad.sum())} coordinate(s) of volume {name!r} (first: z, y, x = {first}) "
                f"lie within {tuple(int(h) for h in half)} of the faces of [{region}], "
                f"so their {patch_size} patches leave it; rebuild the coordinates with "
                f"margin >= {[int(h) for h in half]}"
            )


def as_is(item: Any) -> Any:
    """A DataLoader ``collate_fn`` that keeps examples as numpy (see ``FovExamples``)."""
    return item


class FovExamples(TorchDataset[dict[str, Any]]):
    """Item i: the patch around coordinate i as arrays ``image`` and ``labels`` (1, z, y, x).

    ``image`` is normalised float32; ``labels`` holds the soft targets (0.95 object / 0.05 not).
    """

    def __init__(
        self,
        coordinates: CoordinateTable,
        datasets: Mapping[str, Dataset],
        patch_size: Vec3,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.coordinates = coordinates
        self.datasets = dict(datasets)
        self.patch_size = patch_size
        self.augmentation = augmentation or Augmentation(enabled=False)
        self.seed = seed
        self._volumes: dict[str, tuple[Volume, Volume]] = {}
        self._pid = -1
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.coordinates)

    def _open(self, name: str) -> tuple[Volume, Volume]:
        if self._pid != os.getpid():  # a new worker process: its own handles and RNG stream
            self._volumes = {}
            self._pid = os.getpid()
            info = get_worker_info()
            self._rng = np.random.default_rng(self.seed if info is None else info.seed)
        if name not in self._volumes:
            dataset = self.datasets[name]
            self._volumes[name] = (
                open_volume(dataset.image, dtypes=IMAGE_DTYPES),
                open_volume(dataset.labels or "", dtypes=LABEL_DTYPES),
            )
        return self._volumes[name]

    def patch_box(self, centre: Sequence[int]) -> BBox:
        """The patch around ``centre``: start = centre - (size - 1) // 2, so centre = size // 2."""
        start = tuple(int(c) - (s - 1) // 2 for c, s in zip(centre, self.patch_size, strict=True))
        return BBox(start, self.patch_size)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.coordinates.names[int(self.coordinates.volume[index])]
        centre = self.coordinates.zyx[index]
        image_volume, label_volume = self._open(name)
        box = self.patch_box(centre)
        if not box.inside(image_volume.shape):
            raise FfnopsError(
                f"coordinate {index} (z, y, x = {tuple(int(c) for c in centre)}) of volume "
                f"{name!r}: its {self.patch_size} patch [{box}] leaves the volume of shape "
                f"{image_volume.shape}; rebuild the coordinates with a margin of at least "
                f"{tuple(s // 2 for s in self.patch_size)}"
            )
        image = image_volume.read(box).astype(np.float32)
        labels = soften_labels(label_volume.read(box))
        order, flips = self.augmentation.draw(self._rng)
        image = apply_augmentation(image, order, flips)
        labels = apply_augmentation(labels, order, flips)
        dataset = self.datasets[name]
        image = (image - dataset.image_mean) / dataset.image_stddev
        # numpy, not tensors: DataLoader workers pass numpy by value, which is much cheaper for
        # small patches than sharing each tensor's storage through a file descriptor.
        return {
            "image": image[None],
            "labels": labels[None],
            "centre": np.asarray(centre, dtype=np.int64),
            "volume": name,
        }
