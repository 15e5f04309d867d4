"""The result of segmenting a box: what an output sink writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ffnops.ffn.geometry import Vec3
from ffnops.volume import VoxelSize


@dataclass(frozen=True)
class SeedOrigin:
    """Where an object was seeded (z, y, x, relative to the box), its FFN steps and time."""

    start: Vec3
    iters: int
    walltime_s: float


@dataclass
class SegmentationResult:
    """A segmented box: ``labels`` is (z, y, x), 0 = unsegmented, ids > 0 are objects.

    ``offset`` places voxel (0, 0, 0) of ``labels`` in the image volume's voxel grid.
    ``probabilities`` (optional, float32 in [0, 1], NaN = never visited) is the object map the
    labels were thresholded from; sinks that keep it (Google's ``.prob``) use it.
    """

    labels: npt.NDArray[np.integer]
    offset: Vec3 = (0, 0, 0)
    voxel_size: VoxelSize = (1.0, 1.0, 1.0)
    origins: dict[int, SeedOrigin] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    probabilities: npt.NDArray[np.floating] | None = None
    image_uri: str | None = None
    settings: dict[str, object] = field(default_factory=dict)  # what produced it (the "request")

    def __post_init__(self) -> None:
        if self.labels.ndim != 3:
            raise ValueError(f"labels must be 3-D (z, y, x), got shape {self.labels.shape}")
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {self.labels.dtype}")
