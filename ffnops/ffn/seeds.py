"""Where objects are seeded: peaks of the distance to image edges, or a grid.

As in google/ffn's ``ffn/inference/seed.py``. Both return (z, y, x) positions sorted as the
reference sorts them, keeping only positions whose whole FOV fits in the volume (``margin`` = FOV
radius).
"""

from __future__ import annotations

from collections.abc import Sequence

import edt
import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.feature import peak_local_max

from ffnops.ffn.geometry import Vec3
from ffnops.ffn.options import InferenceOptions

SEED_POLICIES = ("peaks", "grid")


def _inside(
    points: npt.NDArray[np.integer], shape: Sequence[int], margin: Sequence[int]
) -> list[Vec3]:
    lo = np.asarray(margin)
    hi = np.asarray(shape) - np.asarray(margin)
    keep = ((points >= lo) & (points < hi)).all(axis=1)
    return [(int(z), int(y), int(x)) for z, y, x in points[keep]]


def peak_seeds(
    image: npt.NDArray[np.floating],
    margin: Sequence[int],
    mask: npt.NDArray[np.bool_] | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> list[Vec3]:
    """PolicyPeaks: maxima of the distance transform of non-edge voxels of the normalised image.

    Edges: Sobel gradient magnitude above its Gaussian smoothing (sigma 49/6); masked voxels count
    as edges. Uniform noise of 1e-4 from ``RandomState(42)`` breaks ties, as in the reference.
    """
    image = image.astype(np.float32)
    gradient = ndimage.generic_gradient_magnitude(image, ndimage.sobel)
    edges = gradient > ndimage.gaussian_filter(gradient, sigma=49.0 / 6.0, mode="reflect")
    if mask is not None:
        edges |= mask
    if edges.all():
        return []
    distance = edt.edt(~edges, anisotropy=tuple(float(v) for v in voxel_size)).astype(np.float64)
    if mask is not None:
        distance[mask] = -1
    distance[~np.isfinite(distance)] = -1
    distance += np.random.RandomState(42).rand(*distance.shape) * 1e-4
    peaks = peak_local_max(distance, min_distance=3, threshold_abs=0, threshold_rel=0)
    order = np.lexsort(peaks.T[::-1])  # ascending by z, then y, then x
    return _inside(peaks[order], image.shape, margin)


def grid_seeds(
    shape: Sequence[int],
    margin: Sequence[int],
    step: int = 16,
    offsets: Sequence[int] = (0, 8, 4, 12, 2, 10, 14),
    origin: Sequence[int] = (0, 0, 0),
) -> list[Vec3]:
    """PolicyGrid3d: a grid of ``step`` visited once per offset, finest cells last.

    ``origin`` is where this array starts in a larger one whose grid is meant (a block of a
    blockwise job): the points are that grid's, so blocks agree on where seeds are."""
    points = []
    for offset in offsets:
        axes = [np.arange((offset - o) % step, n, step) for n, o in zip(shape, origin, strict=True)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        points.append(grid)
    return _inside(np.concatenate(points), shape, margin)


def policy_seeds(
    options: InferenceOptions,
    image: npt.NDArray[np.floating],
    margin: Sequence[int],
    mask: npt.NDArray[np.bool_] | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[int] = (0, 0, 0),
) -> list[Vec3]:
    """The seeds ``options.seed_policy`` places in ``image`` (``seed_policy_args`` go to the
    grid; ``origin`` as :func:`grid_seeds`'s), in ``options.seed_order``."""
    if options.seed_policy == "peaks":
        seeds = peak_seeds(image, margin, mask, voxel_size)
    elif options.seed_policy == "grid":
        seeds = grid_seeds(image.shape, margin, origin=origin, **options.seed_policy_args)
    else:
        raise ValueError(
            f"inference.seed_policy must be one of {', '.join(SEED_POLICIES)}, "
            f"got {options.seed_policy!r}"
        )
    return seeds[::-1] if options.seed_order == "reverse" else seeds
