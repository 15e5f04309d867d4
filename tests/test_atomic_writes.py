"""Outputs appear under their name only when complete; failed writes leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ffnops.volume import VolumeSpec
from ffnops.volumes import create_volume, open_volume, write_array

URIS = {
    "h5": "h5://{d}/out.h5#raw",
    "n5": "n5://{d}/out.n5",
    "zarr": "zarr://{d}/out.zarr",
    "precomputed": "precomputed://{d}/out",
}
FINAL = {"h5": "out.h5", "n5": "out.n5", "zarr": "out.zarr", "precomputed": "out"}


@pytest.mark.parametrize("scheme", sorted(URIS))
def test_output_is_invisible_until_commit(tmp_path: Path, scheme: str) -> None:
    uri = URIS[scheme].format(d=tmp_path)
    volume = create_volume(uri, VolumeSpec((8, 8, 8), "uint8"))
    volume.write((0, 0, 0), np.full((8, 8, 8), 7, np.uint8))
    assert not (tmp_path / FINAL[scheme]).exists()
    volume.commit()
    assert (tmp_path / FINAL[scheme]).exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    with open_volume(uri) as reread:
        assert (reread.read() == 7).all()


@pytest.mark.parametrize("scheme", sorted(URIS))
def test_error_inside_with_block_leaves_nothing(tmp_path: Path, scheme: str) -> None:
    uri = URIS[scheme].format(d=tmp_path)
    with pytest.raises(RuntimeError), create_volume(uri, VolumeSpec((8, 8, 8), "uint8")) as volume:
        volume.write((0, 0, 0), np.ones((4, 4, 4), np.uint8))
        raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_output(tmp_path: Path) -> None:
    uri = f"zarr://{tmp_path}/out.zarr"
    write_array(uri, np.full((4, 4, 4), 1, np.uint8))
    with (
        pytest.raises(RuntimeError),
        create_volume(uri, VolumeSpec((4, 4, 4), "uint8"), overwrite=True) as v,
    ):
        v.write((0, 0, 0), np.full((4, 4, 4), 2, np.uint8))
        raise RuntimeError("killed")
    with open_volume(uri) as volume:
        assert (volume.read() == 1).all()


def test_new_dataset_in_existing_hdf5_file_appears_on_commit(tmp_path: Path) -> None:
    write_array(f"h5://{tmp_path}/f.h5#image", np.zeros((4, 4, 4), np.uint8))
    volume = create_volume(f"h5://{tmp_path}/f.h5#labels", VolumeSpec((4, 4, 4), "uint64"))
    volume.write((0, 0, 0), np.full((4, 4, 4), 9, np.uint64))
    volume.commit()
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert sorted(f.keys()) == ["image", "labels"]
        assert (f["labels"][...] == 9).all()


def test_leftover_partial_from_a_killed_job_is_replaced(tmp_path: Path) -> None:
    leftover = tmp_path / ".out.zarr.partial"
    leftover.mkdir()
    (leftover / "junk").write_text("from a killed run")
    write_array(f"zarr://{tmp_path}/out.zarr", np.ones((4, 4, 4), np.uint8))
    assert not leftover.exists()
    with open_volume(f"zarr://{tmp_path}/out.zarr") as volume:
        assert (volume.read() == 1).all()
