"""Partitions (Google's ``compute_partitions.py``): how "inside" its object every labelled voxel is.

For each voxel, the fraction of the (2r+1)^3 cube around it that carries the same label, quantised
by ``thresholds``. Training samples every partition equally, so thin processes and boundaries are
seen as often as the interiors of big bodies.

Values: 0 = background (label 0 or dust), 1..N+1 = object partitions (N = len(thresholds)),
255 = excluded (the border of width r, where the cube leaves the volume, and cubes touching a
masked voxel). The work is one box sum per label over that label's bounding box (found with
``scipy.ndimage.find_objects``), never a loop over voxels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ffnops.ffn.geometry import Vec3, as_vec3

EXCLUDED = 255

# Google's thresholds for FIB-25 (FFN README): 12 values -> partitions 0..13 ("part14").
FIB25_THRESHOLDS = (0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def clear_dust(labels: npt.NDArray[np.integer], min_size: int) -> npt.NDArray[np.integer]:
    """A copy of ``labels`` where every nonzero id with fewer than ``min_size`` voxels is 0."""
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = (counts >= min_size) | (ids == 0)
    ids = np.where(keep, ids, 0).astype(labels.dtype)
    cleared: npt.NDArray[np.integer] = ids[inverse.reshape(labels.shape)]
    return cleared


def box_sum(mask: npt.NDArray[np.bool_], diameter: Vec3) -> npt.NDArray[np.int32]:
    """Sum of ``mask`` over every ``diameter`` cube fully inside it ("valid" shape).

    Output voxel i sums input voxels [i, i + d) per axis, via a summed-volume table.
    """
    table = np.zeros(tuple(n + 1 for n in mask.shape), dtype=np.int32)
    table[1:, 1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1).cumsum(2)
    dz, dy, dx = diameter
    nz, ny, nx = (n - d + 1 for n, d in zip(mask.shape, diameter, strict=True))
    if min(nz, ny, nx) <= 0:
        return np.zeros((max(nz, 0), max(ny, 0), max(nx, 0)), dtype=np.int32)

    def t(z: int, y: int, x: int) -> npt.NDArray[np.int32]:
        return table[z : z + nz, y : y + ny, x : x + nx]

    return (
        t(dz, dy, dx)
        - t(0, dy, dx)
        - t(dz, 0, dx)
        - t(dz, dy, 0)
        + t(0, 0, dx)
        + t(0, dy, 0)
        + t(dz, 0, 0)
        - t(0, 0, 0)
    )


def compute_partitions(
    labels: npt.NDArray[np.integer],
    thresholds: Sequence[float],
    lom_radius: Sequence[int] | int,
    min_size: int = 10000,
    mask: npt.NDArray[np.bool_] | None = None,
    id_whitelist: Iterable[int] | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> npt.NDArray[np.uint8]:
    """Partitions of a (z, y, x) label volume, same shape as ``labels`` (border = 255).

    ``mask`` (True = excluded) marks voxels whose cube must not be used; ``id_whitelist`` limits
    the object partitions to those ids (other labels stay 0, as in the reference).
    ``progress`` wraps the loop over labels (e.g. ``tqdm``).
    """
    bins = np.asarray(sorted(thresholds), dtype=np.float64)
    if bins.size == 0 or bins.size > EXCLUDED - 2:
        raise ValueError(f"need 1 to {EXCLUDED - 2} thresholds, got {bins.size}")
    radius = np.asarray(as_vec3(lom_radius, "lom_radius"))
    diameter = as_vec3([2 * int(r) + 1 for r in radius])
    shape = np.asarray(labels.shape)
    valid = shape - 2 * radius
    if (valid <= 0).any():
        raise ValueError(
            f"lom_radius {tuple(radius)} leaves no voxel of a volume of shape {labels.shape}"
        )
    volume = float(np.prod(diameter))

    ids, compact = np.unique(clear_dust(labels, min_size), return_inverse=True)
    compact = compact.reshape(labels.shape).astype(np.int32)  # 0 stays 0: it sorts first
    out = np.zeros(tuple(valid), dtype=np.uint8)
    if mask is not None:
        out[box_sum(mask.astype(bool), diameter) > 0] = EXCLUDED

    allowed = None if id_whitelist is None else set(int(i) for i in id_whitelist)
    objects = ndimage.find_objects(compact)
    todo = [k for k, box in enumerate(objects, start=1) if box is not None]
    if allowed is not None:
        todo = [k for k in todo if int(ids[k]) in allowed]
    for k in progress(todo) if progress else todo:
        box = objects[k - 1]
        # Output voxels of label k: input box shifted by -r, clipped to the valid region.
        lo = np.maximum([s.start for s in box] - radius, 0)
        hi = np.minimum([s.stop for s in box] - radius, valid)
        if (hi <= lo).any():
            continue
        # Their cubes cover input [lo, hi + 2r).
        cubes = tuple(slice(a, b + 2 * r) for a, b, r in zip(lo, hi, radius, strict=True))
        fraction = box_sum(compact[cubes] == k, diameter) / volume
        centres = tuple(slice(a + r, b + r) for a, b, r in zip(lo, hi, radius, strict=True))
        target = out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        chosen = (compact[centres] == k) & (target == 0)
        target[chosen] = np.digitize(fraction[chosen], bins) + 1

    full = np.full(labels.shape, EXCLUDED, dtype=np.uint8)
    full[tuple(slice(r, n - r) for r, n in zip(radius, shape, strict=True))] = out
    return full


def partition_counts(partitions: npt.NDArray[np.uint8]) -> dict[int, int]:
    """How many voxels each partition value holds."""
    values, counts = np.unique(partitions, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}
