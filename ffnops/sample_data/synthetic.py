"""Synthetic EM-like volumes of any size, for tests and benchmarks that need one.

Objects are the Voronoi cells of random points (anisotropic if ``voxel_size`` says so), so every
voxel belongs to a cell, as in densely labelled EM. The image draws dark membranes on the cell
boundaries over a textured bright interior, blurred and noisy like FIB-SEM, in uint8.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.segmentation import find_boundaries


def synthetic_volume(
    shape: Sequence[int],
    objects: int = 20,
    seed: int = 0,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    noise: float = 12.0,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]:
    """(image, labels) of ``shape`` (z, y, x): ``objects`` cells with ids 1..objects."""
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (z, y, x), got {tuple(shape)}")
    if objects < 1:
        raise ValueError(f"objects must be at least 1, got {objects}")
    rng = np.random.default_rng(seed)
    markers = np.zeros(tuple(shape), np.uint32)
    points = [tuple(int(rng.integers(0, n)) for n in shape) for _ in range(objects)]
    for index, point in enumerate(points, start=1):
        markers[point] = index  # two points on one voxel: the later one wins
    _, nearest = ndimage.distance_transform_edt(
        markers == 0, sampling=voxel_size, return_indices=True
    )
    labels = markers[tuple(nearest)]
    _, labels = np.unique(labels, return_inverse=True)  # ids 0.. -> compact
    labels = (labels.reshape(tuple(shape)) + 1).astype(np.uint32)
    membrane = find_boundaries(labels, mode="inner").astype(np.float32)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, tuple(shape)), 1.5)
    image = 190 + 25 * texture - 120 * ndimage.gaussian_filter(membrane, 0.8)
    image += rng.normal(0, noise, tuple(shape))
    return np.clip(image, 0, 255).astype(np.uint8), labels
