"""Skeletons of a precomputed segmentation, for neuroglancer's 3-D panel.

Neuroglancer draws a selected object's skeleton (its centre lines) when the segmentation's
``info`` names a ``skeletons`` folder in its precomputed skeleton format (neuroglancer's
``src/datasource/precomputed/skeletons.md``): ``skeletons/info`` (``@type:
neuroglancer_skeletons``, an identity transform, no vertex attributes) and one file per object,
named by its id, holding its vertices (float32 x, y, z in nm of the volume) and edges (uint32
vertex pairs), encoded by osteoid (seung-lab's skeleton library, kimimaro's own).

Skeletons come from kimimaro (TEASAR, the skeletonizer of ``ffnops evaluate``'s ERL and of
igneous-pipeline). A large segmentation is skeletonized one block at a time, each block read one
voxel further on each axis: with kimimaro's ``fix_borders`` the pieces of an object on two
sides of a block face end on the same vertices of the shared plane, which osteoid's
``consolidate`` then joins, so an object across blocks is one connected skeleton (igneous's
method). Arrays are (z, y, x) here; the files hold (x, y, z).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import kimimaro
import numpy as np
import numpy.typing as npt
import osteoid

from ffnops.evaluation.skeletons import Skeletons
from ffnops.ffn.geometry import as_vec3
from ffnops.viewing.meshes import add_to_info
from ffnops.viewing.view_data import into
from ffnops.volume import BBox, Volume

SKELETON_DIR = "skeletons"
IDENTITY = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # stored model = nm


@dataclass(frozen=True)
class SkeletonSummary:
    """What skeletonizing wrote: objects, their vertices and cable length in all, seconds."""

    objects: int
    vertices: int
    cable_nm: float
    seconds: float


def skeletonize_block(
    labels: npt.NDArray[np.integer], voxel_size: Sequence[float], first_voxel: Sequence[int]
) -> dict[int, osteoid.Skeleton]:
    """kimimaro's skeleton of every object of one block (z, y, x), in nm of the volume
    (``labels[0, 0, 0]`` is voxel ``first_voxel``), vertices (z, y, x)."""
    found = kimimaro.skeletonize(
        np.ascontiguousarray(labels),
        anisotropy=tuple(float(v) for v in voxel_size),
        dust_threshold=0,  # a block holds only part of an object: nothing is dust yet
        fix_branching=True,
        fix_borders=True,
        parallel=1,
        progress=False,
    )
    shift = np.asarray(first_voxel, np.float64) * np.asarray(voxel_size, np.float64)
    for skeleton in found.values():
        skeleton.vertices = skeleton.vertices + shift.astype(skeleton.vertices.dtype)
    return {int(label): skeleton for label, skeleton in found.items()}


class BlockSkeletons:
    """Collects the block skeletons of each object and joins them (see the module's notes)."""

    def __init__(self) -> None:
        self.pieces: dict[int, list[osteoid.Skeleton]] = defaultdict(list)

    def add(self, found: Mapping[int, osteoid.Skeleton]) -> None:
        for label, skeleton in found.items():
            self.pieces[label].append(skeleton)

    def joined(self) -> Skeletons:
        parts = []
        for label in sorted(self.pieces):
            skeleton = osteoid.Skeleton.simple_merge(self.pieces[label]).consolidate()
            parts.append(
                Skeletons(
                    np.asarray(skeleton.vertices, np.float64),
                    np.asarray(skeleton.edges, np.int64).reshape(-1, 2),
                    np.full(len(skeleton.vertices), label, np.int64),
                )
            )
        return Skeletons.join(parts)


def skeletonize_volume(
    labels: Volume,
    box: BBox,
    block_size: Sequence[int],
    progress: Callable[[BBox], None] | None = None,
) -> Skeletons:
    """Every object's skeleton in ``box`` of ``labels`` (its voxels), one block at a time (each
    read one voxel further, so the pieces meet), joined per object; nm of the volume."""
    size = tuple(float(v) for v in labels.voxel_size)
    start = tuple(int(o + s) for o, s in zip(labels.offset, box.start, strict=True))
    whole = BBox.from_shape(box.size)
    collected = BlockSkeletons()
    for block in whole.blocks(block_size):
        reach = BBox(block.start, as_vec3([n + 1 for n in block.size])).intersect(whole)
        assert reach is not None  # it holds the block
        data = np.asarray(labels.read(reach.shifted(into(box))))
        first = tuple(o + a for o, a in zip(start, block.start, strict=True))
        collected.add(skeletonize_block(data, size, first))
        if progress is not None:
            progress(block)
    return collected.joined()


def write_skeletons(
    segmentation: Path, skeletons: Skeletons, started: float | None = None
) -> SkeletonSummary:
    """Writes every object of ``skeletons`` (nm, z y x) into ``segmentation/skeletons`` and
    names the folder in the segmentation's ``info``; the summary's seconds count from
    ``started`` (a ``time.perf_counter()``; None: from now)."""
    started = time.perf_counter() if started is None else started
    folder = segmentation / SKELETON_DIR
    folder.mkdir(parents=True, exist_ok=True)
    info = {"@type": "neuroglancer_skeletons", "transform": IDENTITY, "vertex_attributes": []}
    (folder / "info").write_text(json.dumps(info))
    for object_id in skeletons.ids:
        nodes = np.flatnonzero(skeletons.objects == object_id)
        index = np.full(len(skeletons.objects), -1, np.int64)
        index[nodes] = np.arange(len(nodes))
        mine = skeletons.edges[skeletons.objects[skeletons.edges[:, 0]] == object_id]
        skeleton = osteoid.Skeleton(
            skeletons.positions[nodes][:, ::-1],  # z y x -> x y z
            index[mine].reshape(-1, 2),
            extra_attributes=[],
        )
        (folder / str(object_id)).write_bytes(skeleton.to_precomputed())
    add_to_info(segmentation, skeletons=SKELETON_DIR)
    cable = float(skeletons.edge_lengths.sum()) if len(skeletons.edges) else 0.0
    return SkeletonSummary(
        len(skeletons.ids), len(skeletons.positions), cable, time.perf_counter() - started
    )


def read_skeleton(segmentation: Path, object_id: int) -> npt.NDArray[np.float32]:
    """One object's vertices (x, y, z nm) as written: for checks and tests."""
    data = (segmentation / SKELETON_DIR / str(object_id)).read_bytes()
    vertices, _ = np.frombuffer(data[:8], "<u4")
    return np.frombuffer(data[8 : 8 + 12 * int(vertices)], "<f4").reshape(-1, 3)
