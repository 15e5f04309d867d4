"""The copy of an image box and its segmentation that neuroglancer reads (precomputed).

Inference runs keep one next to their MLflow artifacts, so a run can be looked at later without
the original volumes (which may be HDF5, which neuroglancer cannot read). The image is stored with
JPEG chunks when it is uint8 (what neuroglancer's own EM datasets use: a tenth of the size), the
segmentation with compressed_segmentation; both get neuroglancer's lower-resolution scales. The
segmentation always carries its objects' sizes (segment properties) and, when asked, their 3-D
meshes (:mod:`ffnops.viewing.meshes`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ffnops.atomic import remove_path
from ffnops.ffn.geometry import as_vec3
from ffnops.viewing.meshes import (
    MESH_DIR,
    BlockMeshes,
    MeshSummary,
    fragment_name,
    mesh_block,
    object_sizes,
    write_fragments,
    write_manifests,
    write_meshes,
    write_segment_properties,
)
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
    meshes: bool = False,
) -> MeshSummary | None:
    """Writes ``folder/image`` and ``folder/segmentation`` as precomputed volumes, the latter
    with its segment properties and, with ``meshes``, its objects' meshes (what they were)."""
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
    if labels is None:
        return None
    segmentation = folder / SEGMENTATION_LAYER
    write_labels_view(segmentation, labels, voxel_size, offset)
    if meshes:
        return write_meshes(segmentation, labels, voxel_size, offset)
    write_segment_properties(segmentation, object_sizes(labels))
    return None


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
    meshes: bool = False,
) -> MeshSummary | None:
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
    with create_volume(f"precomputed://{folder.resolve()}/{IMAGE_LAYER}", image_spec) as out:
        for block in BBox.from_shape(image_box.size).blocks(block_size):
            out.write(block, viewable_image(np.asarray(image.read(block.shifted(into(image_box))))))
    whole = BBox.from_shape(image_box.size)
    return copy_labels(folder / SEGMENTATION_LAYER, labels, whole, block_size, meshes)


def into(box: BBox) -> tuple[int, int, int]:
    """The shift (for :meth:`BBox.shifted`) that takes a block of ``box``'s own voxels to the
    volume's voxels."""
    return (-box.start[0], -box.start[1], -box.start[2])


def block_meshes(
    labels: Volume, box: BBox, block: BBox
) -> tuple[BlockMeshes, tuple[int, int, int]]:
    """The meshes of ``block`` (voxels of ``box``, a box of ``labels``' voxels) read one voxel
    further on each axis, so its fragments meet the next block's, and the block's first voxel
    in the volume (where its fragments are named)."""
    whole = BBox.from_shape(box.size)
    reach = BBox(block.start, as_vec3([n + 1 for n in block.size])).intersect(whole)
    assert reach is not None  # it holds the block
    starts = zip(labels.offset, box.start, block.start, strict=True)
    z, y, x = (int(o + b + a) for o, b, a in starts)
    size = tuple(float(v) for v in labels.voxel_size)
    data = np.asarray(labels.read(reach.shifted(into(box))))
    return mesh_block(data, size, (z, y, x)), (z, y, x)


def copy_labels(
    path: Path,
    labels: Volume,
    box: BBox,
    block_size: Sequence[int],
    meshes: bool = False,
    progress: Callable[[BBox], None] | None = None,
) -> MeshSummary | None:
    """Copies ``box`` of ``labels`` (its voxels) to a precomputed segmentation at ``path``, one
    block at a time, with segment properties and, with ``meshes``, every object's meshes
    (what they were); ``progress(block)`` after each block. A block's meshes are made from the
    block read one voxel further on each axis, so they meet the next block's
    (:func:`ffnops.viewing.meshes.mesh_block`)."""
    size = tuple(float(v) for v in labels.voxel_size)
    start = tuple(int(o + s) for o, s in zip(labels.offset, box.start, strict=True))
    top = "uint64" if labels.dtype.itemsize > 4 else "uint32"
    spec = VolumeSpec(box.size, top, size, start, kind="segmentation")  # type: ignore[arg-type]
    # Fragments wait beside the volume: its folder is replaced whole when it is committed.
    staging = path.with_name(f".{path.name}-{MESH_DIR}")
    remove_path(staging)
    started, sizes, triangles = time.perf_counter(), Counter[int](), 0
    fragments: dict[int, list[str]] = defaultdict(list)
    whole = BBox.from_shape(box.size)
    with create_volume(f"precomputed://{path.resolve()}", spec) as out:
        for block in whole.blocks(block_size):
            data = np.asarray(labels.read(block.shifted(into(box)))).astype(top)
            out.write(block, data)
            sizes.update(object_sizes(data))
            if meshes:
                meshed, first = block_meshes(labels, box, block)
                write_fragments(staging, meshed, first)
                for segment in meshed.fragments:
                    fragments[segment].append(fragment_name(segment, first))
                triangles += meshed.triangles
            if progress is not None:
                progress(block)
    write_segment_properties(path, sizes)
    if not meshes:
        return None
    if staging.exists():
        staging.replace(path / MESH_DIR)
    write_manifests(path, fragments)
    return MeshSummary(len(fragments), triangles, time.perf_counter() - started)
