"""Output sink that writes a segmentation's labels as a volume, through the volume writers.

Serves every scheme some installed plugin can write (h5, n5, zarr, precomputed, a user's own), so
``output=precomputed://file:///out/seg`` needs nothing but a writer plugin for that scheme. Labels
are stored as uint64 (uint32 if the ids fit), which every segmentation format here accepts.
"""

from __future__ import annotations

import numpy as np

from ffnops import hookimpl
from ffnops.errors import UnknownSchemeError, VolumeError
from ffnops.segmentation import SegmentationResult
from ffnops.uri import VolumeURI
from ffnops.volume import VolumeSpec
from ffnops.volumes import create_volume


def _label_dtype(labels: np.ndarray) -> np.dtype:
    if labels.size and labels.min() < 0:
        raise VolumeError("segmentation has negative ids; map them to 0 before writing")
    top = int(labels.max()) if labels.size else 0
    return np.dtype(np.uint32) if top <= np.iinfo(np.uint32).max else np.dtype(np.uint64)


@hookimpl(trylast=True)
def ffnops_write_segmentation(
    result: SegmentationResult, uri: VolumeURI, overwrite: bool
) -> str | None:
    labels = result.labels.astype(_label_dtype(result.labels), copy=False)
    spec = VolumeSpec(
        shape=labels.shape,  # type: ignore[arg-type]
        dtype=labels.dtype.name,
        voxel_size=result.voxel_size,
        offset=result.offset,
        kind="segmentation",
    )
    try:
        volume = create_volume(uri, spec, overwrite=overwrite)
    except UnknownSchemeError:
        return None  # not a volume scheme: another sink may serve it
    with volume:
        volume.write((0, 0, 0), labels)
    return uri.raw
