"""Skeletons of a segmentation as neuroglancer reads them (ffnops/viewing/skeletons.py and
``ffnops skeletons``): where the vertices are, that an object across blocks is one skeleton,
and what an empty segmentation does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import osteoid
from commands import ffnops

from ffnops.evaluation.skeletons import Skeletons
from ffnops.viewing.skeletons import SKELETON_DIR, read_skeleton, write_skeletons
from ffnops.volumes import write_array

VOXEL = (40.0, 8.0, 8.0)  # nm, z y x: anisotropic, so a swapped axis shows
OFFSET = (10, 20, 30)  # voxels


def tube_and_ball() -> np.ndarray:
    """Object 1: a tube along x through the whole box; object 2: a block in one corner."""
    labels = np.zeros((12, 24, 60), np.uint32)
    labels[4:9, 8:16, 2:58] = 1
    labels[0:4, 18:24, 0:8] = 2
    return labels


def skeleton_of(data: bytes) -> osteoid.Skeleton:
    vertices, edges = np.frombuffer(data[:8], "<u4")
    body = np.frombuffer(data[8 : 8 + 12 * int(vertices)], "<f4").reshape(-1, 3)
    pairs = np.frombuffer(data[8 + 12 * int(vertices) :], "<u4").reshape(-1, 2)
    assert len(pairs) == edges and len(data) == 8 + 12 * vertices + 8 * edges  # no attributes
    return osteoid.Skeleton(body, pairs)


def test_an_object_across_blocks_is_one_skeleton_in_nm_of_the_volume(tmp_path: Path) -> None:
    labels = tube_and_ball()
    write_array(f"zarr://{tmp_path}/seg.zarr", labels, voxel_size=VOXEL, offset=OFFSET)
    output = tmp_path / "view" / "seg"
    args = [f"seg=zarr://{tmp_path}/seg.zarr", f"output=precomputed://{output}"]
    done = ffnops("skeletons", *args, "block=[12,24,20]", cwd=tmp_path)  # 3 blocks along x
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote" in done.stdout and "2 skeletons" in done.stdout
    info = json.loads((output / "info").read_text())
    assert info["skeletons"] == SKELETON_DIR and "segment_properties" in info
    skeleton_info = json.loads((output / SKELETON_DIR / "info").read_text())
    assert skeleton_info["@type"] == "neuroglancer_skeletons"
    assert skeleton_info["vertex_attributes"] == []
    tube = skeleton_of((output / SKELETON_DIR / "1").read_bytes())
    assert len(tube.components()) == 1  # the three blocks' pieces joined at their faces
    x, y, z = tube.vertices.T  # x y z in nm of the volume
    lo = (np.array([2, 8, 4]) + OFFSET[::-1]) * np.array(VOXEL[::-1])
    hi = (np.array([58, 16, 9]) + OFFSET[::-1]) * np.array(VOXEL[::-1])
    assert (tube.vertices >= lo - 1).all() and (tube.vertices <= hi + 1).all()
    assert x.max() - x.min() > 0.8 * (hi[0] - lo[0])  # it runs the tube's length
    assert np.ptp(y) < 8 * 8 and np.ptp(z) < 5 * 40  # along x, not across
    ball = read_skeleton(output, 2)
    corner = (np.array([0, 18, 0]) + OFFSET[::-1]) * np.array(VOXEL[::-1])
    assert (ball >= corner - 1).all() and (ball[:, 0] <= corner[0] + 8 * 8).all()


def test_written_skeletons_keep_each_objects_edges(tmp_path: Path) -> None:
    skeletons = Skeletons(
        np.array([[0, 0, 0], [0, 0, 80], [40, 8, 8], [40, 16, 8.0]]),
        np.array([[0, 1], [2, 3]]),
        np.array([5, 5, 9, 9]),
    )
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "info").write_text("{}")
    summary = write_skeletons(tmp_path / "seg", skeletons, started=0.0)
    assert (summary.objects, summary.vertices) == (2, 4)
    assert summary.cable_nm == 80 + 8
    nine = skeleton_of((tmp_path / "seg" / SKELETON_DIR / "9").read_bytes())
    np.testing.assert_array_equal(nine.vertices, [[8, 8, 40], [8, 16, 40]])  # x y z
    np.testing.assert_array_equal(nine.edges, [[0, 1]])


def test_an_empty_segmentation_writes_no_skeletons(tmp_path: Path) -> None:
    write_array(f"zarr://{tmp_path}/zeros.zarr", np.zeros((8, 8, 8), np.uint32))
    output = tmp_path / "seg"
    done = ffnops(
        "skeletons", f"seg=zarr://{tmp_path}/zeros.zarr", f"output=precomputed://{output}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "has no objects" in done.stdout and "nothing written" in done.stdout
    assert not output.exists()
    assert not list(tmp_path.glob(".seg*"))  # no partial output left
