"""3-D meshes and segment properties of a precomputed segmentation, for neuroglancer.

Neuroglancer draws an object in its 3-D panel from a mesh the data source lists, and names the
objects of its segment list from the source's segment properties; a volume alone gives an
empty 3-D panel. Both are written next to the segmentation's chunks, in neuroglancer's
precomputed formats (neuroglancer's ``src/datasource/precomputed/meshes.md`` and
``segment_properties.md``):

- ``mesh/``: the *legacy* (single-resolution) mesh format. ``mesh/info`` names it; each object
  has a manifest ``mesh/<id>:0`` listing its fragments, and each fragment is a file of vertices
  (float32 x, y, z in nm of the volume) and triangles (uint32 vertex indices). A block writes
  one fragment per object it holds, so an object that spans blocks is one mesh of several
  fragments, which the viewer draws together.
- ``segment_properties/``: the inline properties: each object's id and size in voxels.

The segmentation's ``info`` names both folders (keys ``mesh`` and ``segment_properties``).

Meshes come from zmesh (seung-lab's multi-label marching cubes with quadric simplification, the
mesher behind igneous-pipeline's mesh tasks): one call meshes every object of a block, which is
what a segmentation of thousands of objects needs; igneous itself would bring CloudVolume and a
task queue for what ffnops's executors already do. Arrays are (z, y, x) as everywhere in ffnops;
zmesh and neuroglancer's vertices are (x, y, z), so the axes are reversed here and nowhere else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import zmesh

MESH_DIR = "mesh"
PROPERTIES_DIR = "segment_properties"
# Simplification: keep at most a tenth of marching cubes' triangles, moving no vertex more than
# the finest voxel size (zmesh's quadric error bound, nm): the shape at the segmented resolution.
REDUCTION_FACTOR = 10


@dataclass(frozen=True)
class MeshSummary:
    """What meshing wrote: objects meshed, triangles in all, seconds it took."""

    objects: int
    triangles: int
    seconds: float


@dataclass(frozen=True)
class BlockMeshes:
    """One block's meshes: each object's fragment (precomputed bytes) and its triangles."""

    fragments: dict[int, bytes]
    triangles: int


def mesh_block(
    labels: npt.NDArray[np.integer], voxel_size: Sequence[float], offset: Sequence[int]
) -> BlockMeshes:
    """Meshes every object (id > 0) of ``labels`` (z, y, x), whose first voxel is ``offset`` of
    the volume (voxel size ``voxel_size``, nm, z, y, x). Vertices are in nm of the volume, where
    neuroglancer draws the voxels (voxel ``i`` spans ``[i, i + 1)``): a surface between two
    voxels lies on their shared face. Meshes stay open at the array's edges, ending at the edge
    voxels' centres, so a block read one voxel past its end on each axis meets the next
    block's fragments without a gap."""
    xyz_size = tuple(float(v) for v in voxel_size[::-1])
    mesher = zmesh.Mesher(xyz_size)
    mesher.mesh(np.asfortranarray(np.asarray(labels).T))  # (x, y, z), as zmesh reads it
    shift = np.asarray([(o + 0.5) * s for o, s in zip(offset[::-1], xyz_size, strict=True)])
    fragments, triangles = {}, 0
    for segment in mesher.ids():
        mesh = mesher.get(
            segment, normals=False, reduction_factor=REDUCTION_FACTOR, max_error=min(xyz_size)
        )
        if len(mesh.faces) == 0:
            continue
        mesh.vertices = (mesh.vertices + shift).astype(np.float32)
        fragments[int(segment)] = mesh.to_precomputed()
        triangles += len(mesh.faces)
    mesher.clear()
    return BlockMeshes(fragments, triangles)


def fragment_name(segment: int, block_start: Sequence[int]) -> str:
    """A fragment's file name: the object's id and the block's first voxel (z_y_x)."""
    return f"{segment}:0:{'_'.join(str(int(s)) for s in block_start)}"


def write_fragments(folder: Path, block: BlockMeshes, block_start: Sequence[int]) -> None:
    """Writes one block's fragments into ``folder`` (a segmentation's ``mesh/`` in the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    for segment, data in block.fragments.items():
        (folder / fragment_name(segment, block_start)).write_bytes(data)


def write_manifests(segmentation: Path, fragments: Mapping[int, Iterable[str]]) -> None:
    """Each object's manifest (its fragments' names) and ``mesh/info``; names the folder in the
    segmentation's ``info``."""
    folder = segmentation / MESH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "info").write_text(json.dumps({"@type": "neuroglancer_legacy_mesh"}))
    for segment, names in fragments.items():
        (folder / f"{segment}:0").write_text(json.dumps({"fragments": sorted(names)}))
    add_to_info(segmentation, mesh=MESH_DIR)


def write_segment_properties(segmentation: Path, sizes: Mapping[int, int]) -> None:
    """The objects' ids and sizes (voxels), largest first: the viewer's segment list shows and
    sorts them; names the folder in the segmentation's ``info``."""
    order = sorted(sizes, key=lambda s: (-sizes[s], s))
    folder = segmentation / PROPERTIES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "@type": "neuroglancer_segment_properties",
        "inline": {
            "ids": [str(s) for s in order],
            "properties": [
                {
                    "id": "voxels",
                    "type": "number",
                    "data_type": "uint32" if max(sizes.values(), default=0) < 2**32 else "float32",
                    "values": [int(sizes[s]) for s in order],
                },
            ],
        },
    }
    (folder / "info").write_text(json.dumps(info))
    add_to_info(segmentation, segment_properties=PROPERTIES_DIR)


def add_to_info(segmentation: Path, **keys: str) -> None:
    """Adds ``keys`` to the precomputed ``info`` that tensorstore wrote (replaced whole)."""
    path = segmentation / "info"
    info = json.loads(path.read_text())
    info.update(keys)
    partial = path.with_name(".info.partial")
    partial.write_text(json.dumps(info))
    partial.replace(path)


def object_sizes(labels: npt.NDArray[np.integer]) -> dict[int, int]:
    """Voxels per object (id > 0)."""
    ids, counts = np.unique(np.asarray(labels), return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts, strict=True) if i > 0}


def write_meshes(
    segmentation: Path,
    labels: npt.NDArray[np.integer],
    voxel_size: Sequence[float],
    offset: Sequence[int],
) -> MeshSummary:
    """Meshes of every object of ``labels`` (z, y, x; one block: the whole array) and their
    segment properties, added to the precomputed segmentation at ``segmentation``."""
    started = time.perf_counter()
    block = mesh_block(labels, voxel_size, offset)
    write_fragments(segmentation / MESH_DIR, block, offset)
    write_manifests(segmentation, {s: [fragment_name(s, offset)] for s in block.fragments})
    write_segment_properties(segmentation, object_sizes(labels))
    return MeshSummary(len(block.fragments), block.triangles, time.perf_counter() - started)


def largest_segments(segmentation: Path, count: int) -> list[int]:
    """The ``count`` largest objects of the segmentation's properties (none without them)."""
    path = segmentation / PROPERTIES_DIR / "info"
    if not path.exists():
        return []
    inline = json.loads(path.read_text())["inline"]
    sizes = next(p["values"] for p in inline["properties"] if p["id"] == "voxels")
    order = sorted(zip(inline["ids"], sizes, strict=True), key=lambda p: (-p[1], int(p[0])))
    return [int(i) for i, _ in order[:count]]


def shown_segments(segmentation: Path, count: int) -> list[int]:
    """The objects a link opens with selected: the ``count`` largest when the segmentation has
    meshes (the 3-D panel draws them), else none (every object stays coloured in 2-D)."""
    if not (segmentation / MESH_DIR / "info").exists():
        return []
    return largest_segments(segmentation, count)


def meshes_wanted(meshes: bool | None, shape: Sequence[int], auto_voxels: int) -> bool:
    """``viewer.meshes``: true or false as asked; null (the default) meshes a box of at most
    ``viewer.mesh_auto_voxels`` voxels."""
    if meshes is None:
        return int(np.prod(shape)) <= auto_voxels
    return bool(meshes)
