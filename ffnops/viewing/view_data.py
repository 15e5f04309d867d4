"""The copy of an image box and its segmentation that neuroglancer reads (precomputed).

Inference runs keep one next to their MLflow artifacts, so a run can be looked at later without
the original volumes (which may be HDF5, which neuroglancer cannot read). The image is stored with
JPEG chunks when it is uint8 (what neuroglancer's own EM datasets use: a tenth of the size), the
segmentation with compressed_segmentation; both get neuroglancer's lower-resolution scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ffnops.viewing.state import IMAGE_LAYER, SEGMENTATION_LAYER
from ffnops.volumes import write_array

# Where an inference run keeps this copy among its MLflow artifacts.
RUN_ARTIFACTS = "neuroglancer"


def viewable_image(image: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    """uint8 stays as it is (JPEG chunks); anything else is shown as float32."""
    return image if image.dtype == np.uint8 else image.astype(np.float32)


def viewable_labels(labels: npt.NDArray[np.integer]) -> npt.NDArray[np.integer]:
    """Neuroglancer segmentations are uint32 or uint64; negative ids (markers) become 0."""
    if np.issubdtype(labels.dtype, np.signedinteger):
        labels = np.where(labels < 0, 0, labels)
    top = int(labels.max()) if labels.size else 0
    return labels.astype(np.uint32 if top <= np.iinfo(np.uint32).max else np.uint64, copy=False)


def write_view_data(
    folder: Path,
    image: npt.NDArray[np.generic] | None,
    labels: npt.NDArray[np.integer] | None,
    voxel_size: Sequence[float],
    offset: Sequence[int],
) -> None:
    """Writes ``folder/image`` and ``folder/segmentation`` as precomputed volumes."""
    size = tuple(float(v) for v in voxel_size)
    start = tuple(int(o) for o in offset)
    if image is not None:
        data = viewable_image(image)
        write_array(
            f"precomputed://{folder.resolve()}/{IMAGE_LAYER}",
            data,
            voxel_size=size,  # type: ignore[arg-type]
            offset=start,  # type: ignore[arg-type]
            extra={"encoding": "jpeg"} if data.dtype == np.uint8 else None,
        )
    if labels is not None:
        write_array(
            f"precomputed://{folder.resolve()}/{SEGMENTATION_LAYER}",
            viewable_labels(labels),
            voxel_size=size,  # type: ignore[arg-type]
            offset=start,  # type: ignore[arg-type]
            kind="segmentation",
        )
