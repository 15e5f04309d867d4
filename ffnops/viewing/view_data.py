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
from ffnops.volume import BBox, Volume, VolumeSpec
from ffnops.volumes import create_volume, write_array

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
        write_labels_view(folder / SEGMENTATION_LAYER, labels, voxel_size, offset)


def write_labels_view(
    path: Path, labels: npt.NDArray[np.integer], voxel_size: Sequence[float], offset: Sequence[int]
) -> None:
    """One label layer of the copy (a segmentation, or the ground truth it is scored on)."""
    write_array(
        f"precomputed://{path.resolve()}",
        viewable_labels(labels),
        voxel_size=tuple(float(v) for v in voxel_size),  # type: ignore[arg-type]
        offset=tuple(int(o) for o in offset),  # type: ignore[arg-type]
        kind="segmentation",
    )


def copy_view_data(
    folder: Path,
    image: Volume,
    image_box: BBox,
    labels: Volume,
    block_size: Sequence[int],
) -> None:
    """Writes the same copy as :func:`write_view_data` from volumes, one block at a time (the
    blockwise path: memory of one block, whatever the box). ``labels`` covers ``image_box``."""
    size = tuple(float(v) for v in labels.voxel_size)
    start = tuple(int(o) for o in labels.offset)
    image_spec = VolumeSpec(
        image_box.size,
        "uint8" if image.dtype == np.uint8 else "float32",
        size,  # type: ignore[arg-type]
        start,  # type: ignore[arg-type]
        extra={"encoding": "jpeg"} if image.dtype == np.uint8 else {},
    )
    top = "uint64" if labels.dtype.itemsize > 4 else "uint32"
    label_spec = VolumeSpec(image_box.size, top, size, start, kind="segmentation")  # type: ignore[arg-type]
    with (
        create_volume(f"precomputed://{folder.resolve()}/{IMAGE_LAYER}", image_spec) as out_image,
        create_volume(
            f"precomputed://{folder.resolve()}/{SEGMENTATION_LAYER}", label_spec
        ) as out_labels,
    ):
        for block in BBox.from_shape(image_box.size).blocks(block_size):
            source = BBox(
                tuple(a + b for a, b in zip(block.start, image_box.start, strict=True)),  # type: ignore[arg-type]
                block.size,
            )
            out_image.write(block, viewable_image(np.asarray(image.read(source))))
            out_labels.write(block, np.asarray(labels.read(block)).astype(top))
