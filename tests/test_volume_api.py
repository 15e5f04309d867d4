"""The volume API: boxes, reads, writes and the checks that guard them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ffnops.errors import VolumeError
from ffnops.volume import BBox, VolumeSpec, funlib_metadata
from ffnops.volumes import create_volume, open_volume, write_array


def test_bbox_parse_and_properties() -> None:
    box = BBox.parse("1:5, 2:10,0:3")
    assert box.start == (1, 2, 0) and box.size == (4, 8, 3) and box.stop == (5, 10, 3)
    assert str(box) == "1:5,2:10,0:3"
    assert box.num_voxels == 96
    assert box.inside((5, 10, 3)) and not box.inside((5, 9, 3))
    with pytest.raises(ValueError, match="z0:z1,y0:y1,x0:x1"):
        BBox.parse("1:5,2:10")
    with pytest.raises(ValueError, match="stop before its start"):
        BBox.parse("5:1,0:1,0:1")
    # context around a box, cut at the volume's faces
    grown = BBox.parse("2:6,0:4,10:12").grown((4, 2, 1), BBox.from_shape((8, 8, 12)))
    assert str(grown) == "0:8,0:6,9:12"


def test_blocks_tile_the_box_exactly() -> None:
    box = BBox((2, 3, 4), (10, 7, 5))
    blocks = box.blocks((4, 4, 4))
    covered = np.zeros((20, 20, 20), dtype=int)
    for block in blocks:
        covered[block.slices] += 1
    expected = np.zeros_like(covered)
    expected[box.slices] = 1
    np.testing.assert_array_equal(covered, expected)
    assert len(blocks) == 3 * 2 * 2


def test_funlib_metadata_converts_nm_offset_to_voxels() -> None:
    voxel, offset = funlib_metadata({"resolution": [40, 4, 4], "offset": [400, 80, 8]})
    assert voxel == (40.0, 4.0, 4.0) and offset == (10, 20, 2)
    voxel, offset = funlib_metadata({"resolution": [4, 4, 40], "offset": [8, 80, 400]}, True)
    assert voxel == (40.0, 4.0, 4.0) and offset == (10, 20, 2)
    assert funlib_metadata({}) == (None, (0, 0, 0))


@pytest.mark.parametrize("scheme", ["h5", "n5", "zarr", "precomputed"])
def test_block_writes_assemble_the_volume(
    tmp_path: Path, em_image: np.ndarray, scheme: str
) -> None:
    suffix = "#raw" if scheme == "h5" else ""
    uri = f"{scheme}://{tmp_path}/out{suffix}"
    spec = VolumeSpec(em_image.shape, "uint8", chunks=(16, 16, 16))
    with create_volume(uri, spec) as volume:
        for block in BBox.from_shape(em_image.shape).blocks((16, 32, 32)):
            volume.write(block, em_image[block.slices])
    with open_volume(uri) as volume:
        np.testing.assert_array_equal(volume.read(), em_image)


def test_open_for_update_writes_in_place(tmp_path: Path, em_image: np.ndarray) -> None:
    uri = f"zarr://{tmp_path}/v.zarr"
    write_array(uri, em_image)
    with open_volume(uri, mode="r+") as volume:
        volume.write((1, 2, 3), np.zeros((2, 2, 2), np.uint8))
    expected = em_image.copy()
    expected[1:3, 2:4, 3:5] = 0
    with open_volume(uri) as volume:
        np.testing.assert_array_equal(volume.read(), expected)


def test_read_only_volume_refuses_writes(tmp_path: Path, em_image: np.ndarray) -> None:
    write_array(f"h5://{tmp_path}/v.h5#raw", em_image)
    with (
        open_volume(f"h5://{tmp_path}/v.h5#raw") as volume,
        pytest.raises(VolumeError, match="read-only"),
    ):
        volume.write((0, 0, 0), em_image[:1, :1, :1])


def test_write_refuses_lossy_dtype_and_misplaced_data(tmp_path: Path) -> None:
    spec = VolumeSpec((4, 4, 4), "uint8")
    volume = create_volume(f"zarr://{tmp_path}/v.zarr", spec)
    with pytest.raises(VolumeError, match="cannot store float64 data in a uint8 volume"):
        volume.write((0, 0, 0), np.zeros((2, 2, 2)))
    with pytest.raises(VolumeError, match=r"lies outside the volume, whose shape is \(4, 4, 4\)"):
        volume.write((3, 0, 0), np.zeros((2, 2, 2), np.uint8))
    volume.abort()
    assert not (tmp_path / "v.zarr").exists()


def test_describe_reports_metadata(tmp_path: Path, em_image: np.ndarray) -> None:
    write_array(f"n5://{tmp_path}/v.n5", em_image, voxel_size=(8, 4, 4), chunks=(8, 16, 16))
    with open_volume(f"n5://{tmp_path}/v.n5") as volume:
        info = volume.describe()
    assert info["shape"] == list(em_image.shape)
    assert info["chunks"] == [8, 16, 16]
    assert info["voxel_size"] == [8.0, 4.0, 4.0]
    assert info["dtype"] == "uint8"
