"""Meshing a blockwise output on the job's own executor (daisy workers or this process).

A blockwise run's output is meshed block by block, as ``copy_labels`` meshes a copy, but as a
task of the executor that segmented it (:class:`ffnops.executor.BlockTask`): each worker opens
the output, meshes its blocks (each read one voxel further on each axis, so fragments meet:
:func:`ffnops.viewing.meshes.mesh_block`) and writes their fragments and a small record per
block into the job's folder. A block whose record exists is done, so a killed job resumes with
the blocks it has not meshed. This process then gathers the records into each object's
manifest (:func:`attach_meshes`) when it writes the run's neuroglancer copy.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ffnops.atomic import write_text
from ffnops.blocks import Block, BlockLayout
from ffnops.executor import BlockTask
from ffnops.ffn.geometry import as_vec3
from ffnops.viewing.meshes import (
    MESH_DIR,
    MeshSummary,
    fragment_name,
    write_fragments,
    write_manifests,
)
from ffnops.viewing.view_data import block_meshes
from ffnops.volume import BBox
from ffnops.volumes import open_volume


@dataclass(frozen=True)
class MeshJob:
    """Meshing the volume at ``labels_uri`` (which every worker opens) in ``layout``'s blocks
    (its own voxels, no context); fragments and records go under ``folder``."""

    labels_uri: str
    layout: BlockLayout
    folder: Path

    @classmethod
    def plan(
        cls, labels_uri: str, shape: Sequence[int], block_size: Sequence[int], folder: Path
    ) -> MeshJob:
        box = BBox.from_shape(as_vec3(shape))
        size = as_vec3([min(b, n) for b, n in zip(block_size, box.size, strict=True)])
        return cls(labels_uri, BlockLayout(box, size, (0, 0, 0)), folder)

    def record(self, block: Block) -> Path:
        return self.folder / "blocks" / f"{block.index}.json"

    @property
    def fragments(self) -> Path:
        return self.folder / MESH_DIR

    def task(self) -> BlockTask:
        return BlockTask(
            "mesh", self.layout, partial(mesh_blocks, self), partial(meshed, self), self.folder
        )


def mesh_blocks(job: MeshJob, blocks: Sequence[Block]) -> None:
    """Meshes each block and writes its fragments, then its record (the done mark)."""
    with open_volume(job.labels_uri) as labels:
        for block in blocks:
            found, first = block_meshes(labels, job.layout.box, block.write)
            write_fragments(job.fragments, found, first)
            names = {str(s): fragment_name(s, first) for s in found.fragments}
            record = {"block": str(block.write), "fragments": names, "triangles": found.triangles}
            write_text(job.record(block), json.dumps(record))


def meshed(job: MeshJob, block: Block) -> bool:
    """A block is meshed when its record exists and is of this block."""
    path = job.record(block)
    return path.exists() and json.loads(path.read_text())["block"] == str(block.write)


def attach_meshes(segmentation: Path, job: MeshJob, seconds: float) -> MeshSummary:
    """Copies the job's fragments into ``segmentation/mesh`` with every object's manifest (the
    job's folder stays until the run is done, so a copy that fails can be made again)."""
    fragments: dict[int, list[str]] = defaultdict(list)
    triangles = 0
    for block in job.layout.blocks():
        record = json.loads(job.record(block).read_text())
        for segment, name in record["fragments"].items():
            fragments[int(segment)].append(name)
        triangles += int(record["triangles"])
    if job.fragments.exists():
        shutil.copytree(job.fragments, segmentation / MESH_DIR, dirs_exist_ok=True)
    write_manifests(segmentation, fragments)
    return MeshSummary(len(fragments), triangles, seconds)
