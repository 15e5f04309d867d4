"""Balanced training coordinates (google/ffn's ``build_coordinates.py``).

Every partition value (except 255, excluded) is sampled equally: each partition's voxels are
shuffled and repeated cyclically up to the size of the largest partition, then everything is
shuffled together. Unlike the reference, the RNG is seeded (reproducible) and indices are numpy
arrays, not Python lists.

The table is saved and loaded by :mod:`ffnops.data.coordinate_file`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ffnops.ffn.geometry import as_vec3
from ffnops.ffn.partitions import EXCLUDED


@dataclass(frozen=True)
class CoordinateTable:
    """Training coordinates: record i is voxel ``zyx[i]`` of volume ``names[volume[i]]``."""

    names: tuple[str, ...]
    volume: npt.NDArray[np.uint16]
    zyx: npt.NDArray[np.int32]
    partition: npt.NDArray[np.uint8]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.zyx.shape[0])

    def counts(self) -> dict[int, int]:
        values, counts = np.unique(self.partition, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def reaching(
        self,
        volume: str,
        start: Sequence[int],
        stop: Sequence[int],
        radius: Sequence[int],
    ) -> npt.NDArray[np.bool_]:
        """Which records' patches (centre +- ``radius``) overlap the box [start, stop) of
        ``volume``."""
        if volume not in self.names:
            return np.zeros(len(self), bool)
        mine = self.volume == self.names.index(volume)
        lo = self.zyx - np.asarray(radius)
        hi = self.zyx + np.asarray(radius) + 1
        overlap = ((lo < np.asarray(stop)) & (hi > np.asarray(start))).all(axis=1)
        return mine & overlap  # type: ignore[no-any-return]

    def subset(self, index: npt.NDArray[np.integer] | slice) -> CoordinateTable:
        return CoordinateTable(
            self.names, self.volume[index], self.zyx[index], self.partition[index], self.meta
        )


def balanced_coordinates(
    partitions: Mapping[str, npt.NDArray[np.uint8]],
    margin: Sequence[int] | int,
    seed: int = 0,
    max_per_partition: int | None = None,
) -> CoordinateTable:
    """Samples every partition value equally from several named partition volumes.

    ``margin`` (z, y, x) keeps records at least that far from each volume's faces (use at least
    the training patch radius). ``max_per_partition`` caps the repeat length (None: the size of
    the largest partition, as the reference).
    """
    m = np.asarray(as_vec3(margin, "margin"))
    if (m < 0).any():
        raise ValueError(f"margin must not be negative, got {tuple(m)}")
    rng = np.random.default_rng(seed)
    names = tuple(partitions)
    by_value: dict[int, list[tuple[int, npt.NDArray[np.int64]]]] = {}
    inner_shapes = []
    for index, name in enumerate(names):
        volume = partitions[name]
        inner = volume[tuple(slice(a, n - a) for a, n in zip(m, volume.shape, strict=True))]
        inner_shapes.append(inner.shape)
        if inner.size == 0:
            raise ValueError(
                f"volume {name!r} of shape {volume.shape} has no voxel inside margin {tuple(m)}"
            )
        flat = inner.ravel()
        order = np.argsort(flat, kind="stable")
        present, starts = np.unique(flat[order], return_index=True)
        stops = [*starts[1:], flat.size]
        for v, a, b in zip(present, starts, stops, strict=True):
            if v != EXCLUDED:
                by_value.setdefault(int(v), []).append((index, order[a:b]))
    if not by_value:
        raise ValueError("no partition has any voxel inside the margin (all excluded)")

    sizes = {v: sum(len(idx) for _, idx in parts) for v, parts in by_value.items()}
    target = max(sizes.values()) if max_per_partition is None else max_per_partition
    volumes: list[npt.NDArray[np.uint16]] = []
    flats: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.uint8]] = []  # the partition of each record
    for v in sorted(by_value):
        vol_idx = np.concatenate([np.full(len(i), k, np.uint16) for k, i in by_value[v]])
        flat_idx = np.concatenate([i for _, i in by_value[v]])
        pick = np.resize(rng.permutation(len(flat_idx)), target)
        volumes.append(vol_idx[pick])
        flats.append(flat_idx[pick])
        values.append(np.full(target, v, np.uint8))
    record_volume = np.concatenate(volumes)
    record_flat = np.concatenate(flats)
    partition = np.concatenate(values)
    zyx = np.empty((record_flat.size, 3), dtype=np.int32)
    for k, shape in enumerate(inner_shapes):
        sel = record_volume == k
        zyx[sel] = np.stack(np.unravel_index(record_flat[sel], shape), axis=1) + m
    shuffle = rng.permutation(record_flat.size)
    meta = {"margin": [int(a) for a in m], "seed": seed, "partition_sizes": sizes}
    return CoordinateTable(names, record_volume[shuffle], zyx[shuffle], partition[shuffle], meta)
