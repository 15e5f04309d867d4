"""Meshes and segment properties in a run's neuroglancer copy (ffnops/viewing/meshes.py): what
neuroglancer's precomputed formats ask for, read back with zmesh's own parser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zmesh
from commands import ffnops

from ffnops.viewing.meshes import (
    MESH_DIR,
    PROPERTIES_DIR,
    largest_segments,
    meshes_wanted,
    shown_segments,
)
from ffnops.viewing.state import SEGMENTATION_LAYER
from ffnops.viewing.view_data import copy_view_data, write_view_data
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array

VOXEL = (40.0, 8.0, 4.0)  # nm, z, y, x: anisotropic, so an axis swap shows
OFFSET = (10, 20, 30)


def two_objects() -> np.ndarray:
    """Object 7, a slab across the whole x range (so across blocks), and object 3, a cube."""
    labels = np.zeros((12, 16, 20), np.uint32)
    labels[2:10, 3:7, :] = 7
    labels[4:8, 10:14, 5:9] = 3
    return labels


def fragments(segmentation: Path, segment: int) -> list[zmesh.Mesh]:
    manifest = json.loads((segmentation / MESH_DIR / f"{segment}:0").read_text())
    return [
        zmesh.Mesh.from_precomputed((segmentation / MESH_DIR / name).read_bytes())
        for name in manifest["fragments"]
    ]


def bounds(meshes: list[zmesh.Mesh]) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.concatenate([m.vertices for m in meshes])
    return vertices.min(axis=0), vertices.max(axis=0)


def nm_box(start_zyx: tuple[int, int, int], stop_zyx: tuple[int, int, int]) -> np.ndarray:
    """A box's faces in nm of the volume, x, y, z (neuroglancer's vertex order)."""
    return np.asarray(
        [
            [(OFFSET[a] + c) * VOXEL[a] for a, c in reversed(list(enumerate(corner)))]
            for corner in (start_zyx, stop_zyx)
        ]
    )


def test_each_object_gets_a_mesh_on_its_voxels_faces_and_its_size(tmp_path: Path) -> None:
    labels = two_objects()
    meshed = write_view_data(tmp_path, None, labels, VOXEL, OFFSET, meshes=True)
    assert meshed is not None and meshed.objects == 2 and meshed.triangles > 0
    segmentation = tmp_path / SEGMENTATION_LAYER
    info = json.loads((segmentation / "info").read_text())
    assert (info["mesh"], info["segment_properties"]) == (MESH_DIR, PROPERTIES_DIR)
    assert json.loads((segmentation / MESH_DIR / "info").read_text()) == {
        "@type": "neuroglancer_legacy_mesh"
    }
    # The cube's surface lies on its voxels' outer faces, in nm of the volume (x, y, z), give
    # or take what simplification may move a vertex: the finest voxel size.
    low, high = bounds(fragments(segmentation, 3))
    np.testing.assert_allclose([low, high], nm_box((4, 10, 5), (8, 14, 9)), atol=min(VOXEL))
    # The slab touches the array's x edges: open there, ending at the edge voxels' centres.
    low, high = bounds(fragments(segmentation, 7))
    expected = nm_box((2, 3, 0), (10, 7, 20))
    expected[0, 0] += VOXEL[2] / 2
    expected[1, 0] -= VOXEL[2] / 2
    np.testing.assert_allclose([low, high], expected, atol=min(VOXEL))
    properties = json.loads((segmentation / PROPERTIES_DIR / "info").read_text())["inline"]
    assert properties["ids"] == ["7", "3"]  # largest first
    assert properties["properties"][0]["values"] == [8 * 4 * 20, 4 * 4 * 4]
    assert largest_segments(segmentation, 1) == [7]
    assert shown_segments(segmentation, 5) == [7, 3]
    # The volume itself is still tensorstore's: the added keys did not break it.
    with open_volume(f"precomputed://{segmentation}") as volume:
        np.testing.assert_array_equal(volume.read(BBox.from_shape(labels.shape)), labels)


def test_without_meshes_the_copy_still_lists_sizes_and_selects_nothing(tmp_path: Path) -> None:
    assert write_view_data(tmp_path, None, two_objects(), VOXEL, OFFSET) is None
    segmentation = tmp_path / SEGMENTATION_LAYER
    assert not (segmentation / MESH_DIR).exists()
    assert largest_segments(segmentation, 2) == [7, 3]
    assert shown_segments(segmentation, 2) == []  # nothing to draw in 3-D: 2-D shows all


def test_blockwise_meshes_are_fragments_that_meet_and_cover_the_same_object(
    tmp_path: Path,
) -> None:
    labels = two_objects()
    image = np.random.default_rng(0).integers(0, 255, labels.shape, dtype=np.uint8)
    write_array(f"zarr://{tmp_path}/labels.zarr", labels, voxel_size=VOXEL, offset=OFFSET)
    write_array(f"zarr://{tmp_path}/image.zarr", image, voxel_size=VOXEL, offset=OFFSET)
    whole = tmp_path / "whole"
    write_view_data(whole, None, labels, VOXEL, OFFSET, meshes=True)
    box = BBox.from_shape(labels.shape)
    with (
        open_volume(f"zarr://{tmp_path}/labels.zarr") as seg,
        open_volume(f"zarr://{tmp_path}/image.zarr") as img,
    ):
        meshed = copy_view_data(tmp_path / "blocks", img, box, seg, (6, 8, 8), meshes=True)
    assert meshed is not None and meshed.objects == 2
    blocks = tmp_path / "blocks" / SEGMENTATION_LAYER
    slab = fragments(blocks, 7)
    assert len(slab) == 3 * 2  # the slab's blocks: 3 along x, 2 along z (y: one)
    # Together the fragments span what the one-block mesh spans: no gap at the block faces.
    together = bounds(fragments(whole / SEGMENTATION_LAYER, 7))
    np.testing.assert_allclose(bounds(slab), together, atol=min(VOXEL))
    # At each block face across x (x = 8, 16), the fragments on both sides end on one plane: the
    # centres of the next block's first voxels, which the block before read one voxel past its end.
    for face in (8, 16):
        plane = (OFFSET[2] + face + 0.5) * VOXEL[2]
        sides = [m for m in slab if np.isclose(m.vertices[:, 0], plane).any()]
        assert len(sides) == 2 * 2, face  # two blocks along x meet there, in each of 2 along z
    same = json.loads((whole / SEGMENTATION_LAYER / PROPERTIES_DIR / "info").read_text())
    assert json.loads((blocks / PROPERTIES_DIR / "info").read_text()) == same


@pytest.mark.parametrize(
    ("asked", "shape", "wanted"),
    [(None, (256, 256, 256), True), (None, (257, 256, 256), False), (True, (512,) * 3, True)],
)
def test_meshes_are_on_by_default_for_boxes_up_to_the_limit(
    asked: bool | None, shape: tuple[int, int, int], wanted: bool
) -> None:
    assert meshes_wanted(asked, shape, 256**3) is wanted
    assert meshes_wanted(False, (8, 8, 8), 256**3) is False


def test_the_mesh_command_meshes_a_box_of_any_volume_block_by_block(tmp_path: Path) -> None:
    labels = two_objects()
    write_array(f"zarr://{tmp_path}/seg.zarr", labels, voxel_size=VOXEL, offset=OFFSET)
    output = tmp_path / "meshed"
    args = [f"seg=zarr://{tmp_path}/seg.zarr", f"output=precomputed://{output}"]
    done = ffnops("mesh", *args, "bbox=0:12,0:16,8:20", "block=[6,8,8]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 objects" in done.stdout
    # The box's voxels, where they lie in the volume, with sizes of what the box holds.
    with open_volume(f"precomputed://{output}") as volume:
        assert tuple(volume.offset) == (OFFSET[0], OFFSET[1], OFFSET[2] + 8)
        np.testing.assert_array_equal(volume.read(BBox.from_shape((12, 16, 12))), labels[..., 8:])
    properties = json.loads((output / PROPERTIES_DIR / "info").read_text())["inline"]
    assert properties["properties"][0]["values"] == [8 * 4 * 12, 4 * 4 * 1]
    slab = fragments(output, 7)
    assert len(slab) == 2 * 2  # blocks of the cropped slab: 2 along x, 2 along z
    low, _ = bounds(slab)
    assert low[0] == pytest.approx((OFFSET[2] + 8 + 0.5) * VOXEL[2], abs=min(VOXEL))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    again = ffnops("mesh", *args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_the_mesh_command_writes_nothing_for_an_empty_segmentation(tmp_path: Path) -> None:
    write_array(f"zarr://{tmp_path}/zeros.zarr", np.zeros((8, 8, 8), np.uint32))
    args = [f"seg=zarr://{tmp_path}/zeros.zarr", f"output=precomputed://{tmp_path}/meshed"]
    done = ffnops("mesh", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "has no objects" in done.stdout and "nothing written" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zeros.zarr"]
