"""Bad input gives a one-line error naming the file or key and what was expected."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ffnops.errors import UnknownSchemeError, VolumeError, VolumeExistsError
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import create_volume, open_volume, write_array


def test_unknown_scheme_lists_installed_schemes() -> None:
    with pytest.raises(UnknownSchemeError) as err:
        open_volume("s4://bucket/vol")
    message = str(err.value)
    assert "s4://bucket/vol" in message and "no installed plugin" in message
    for scheme in ("h5://", "n5://", "zarr://", "precomputed://"):
        assert scheme in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(VolumeError, match=f"file not found: {missing}"):
        open_volume(f"h5://{missing}#raw")
    with pytest.raises(VolumeError, match="not found"):
        open_volume(f"n5://{tmp_path}/nope.n5")
    with pytest.raises(VolumeError, match="not found"):
        open_volume(f"precomputed://{tmp_path}/nope")


def test_missing_dataset_key_lists_keys_present(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = np.zeros((2, 2, 2), np.uint8)
        f["labels/neurons"] = np.zeros((2, 2, 2), np.uint64)
    with pytest.raises(
        VolumeError, match=r"no dataset 'stack'.*datasets present: labels/neurons, raw"
    ):
        open_volume(f"h5://{tmp_path}/v.h5#stack")
    with pytest.raises(VolumeError, match=r"no dataset given.*datasets present"):
        open_volume(f"h5://{tmp_path}/v.h5")


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(VolumeError, match="is not a readable HDF5 file"):
        open_volume(f"h5://{tmp_path}/text.h5#raw")


def test_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "c.n5").mkdir()
    with pytest.raises(VolumeError, match=r"holds no attributes\.json"):
        open_volume(f"n5://{tmp_path}/c.n5")


def test_wrong_ndim_is_reported(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["slice"] = np.zeros((5, 6), np.uint8)
    with pytest.raises(VolumeError, match=r"expected a 3-D \(z, y, x\) volume, found 2 dimensions"):
        open_volume(f"h5://{tmp_path}/v.h5#slice")


def test_wrong_dtype_is_reported(tmp_path: Path) -> None:
    write_array(f"h5://{tmp_path}/v.h5#raw", np.zeros((2, 2, 2), np.float64))
    with pytest.raises(VolumeError, match="expected dtype uint8, float32, found float64"):
        open_volume(f"h5://{tmp_path}/v.h5#raw", dtypes=["uint8", "float32"])


def test_bbox_outside_volume(tmp_path: Path, em_image: np.ndarray) -> None:
    write_array(f"zarr://{tmp_path}/v.zarr", em_image)
    with (
        open_volume(f"zarr://{tmp_path}/v.zarr") as volume,
        pytest.raises(
            VolumeError,
            match=r"bbox \[30:40,0:1,0:1\].*outside the volume, whose shape is \(32, 40, 48\)",
        ),
    ):
        volume.read(BBox((30, 0, 0), (10, 1, 1)))


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path, em_image: np.ndarray) -> None:
    for uri in (f"zarr://{tmp_path}/v.zarr", f"h5://{tmp_path}/v.h5#raw"):
        write_array(uri, em_image)
        with pytest.raises(VolumeExistsError, match="overwrite=true"):
            write_array(uri, em_image)
        write_array(uri, em_image[::-1].copy(), overwrite=True)
        with open_volume(uri) as volume:
            np.testing.assert_array_equal(volume.read(), em_image[::-1])


def test_precomputed_segmentation_dtype_is_checked(tmp_path: Path) -> None:
    spec = VolumeSpec((4, 4, 4), "int16", kind="segmentation")
    with pytest.raises(VolumeError, match="segmentation must be uint32 or uint64, got int16"):
        create_volume(f"precomputed://{tmp_path}/seg", spec)


def test_writing_over_http_is_refused() -> None:
    with pytest.raises(VolumeError, match="only be written to local disk"):
        create_volume("precomputed://http://127.0.0.1:9/seg", VolumeSpec((4, 4, 4), "uint8"))
