"""Every built-in format round-trips: written by ffnops and read by the format's own library, and
written by the library and read by ffnops, with voxel size and offset kept."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorstore as ts
import zarr

from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array

BOX = BBox((3, 5, 7), (20, 17, 33))
VOXEL = (10.0, 8.0, 6.0)
OFFSET = (4, 5, 6)


def _check_ffnops_read(uri: str, expected: np.ndarray, voxel=VOXEL, offset=OFFSET) -> None:
    with open_volume(uri) as volume:
        assert volume.shape == expected.shape
        assert volume.dtype == expected.dtype
        assert volume.voxel_size == voxel
        assert volume.offset == offset
        np.testing.assert_array_equal(volume.read(), expected)
        np.testing.assert_array_equal(volume.read(BOX), expected[BOX.slices])
        z, y, x = BOX.slices
        np.testing.assert_array_equal(volume[z, y, x], expected[BOX.slices])


def test_hdf5_written_by_ffnops_reads_in_h5py(tmp_path: Path, em_image: np.ndarray) -> None:
    write_array(f"h5://{tmp_path}/v.h5#em/raw", em_image, voxel_size=VOXEL, offset=OFFSET)
    with h5py.File(tmp_path / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["em/raw"][...], em_image)
        assert tuple(f["em/raw"].attrs["resolution"]) == VOXEL
        assert tuple(f["em/raw"].attrs["offset"]) == tuple(o * v for o, v in zip(OFFSET, VOXEL))
        assert f["em/raw"].compression == "gzip"


def test_hdf5_written_by_h5py_reads_in_ffnops_both_uri_forms(
    tmp_path: Path, em_labels: np.ndarray
) -> None:
    with h5py.File(tmp_path / "g.h5", "w") as f:
        ds = f.create_dataset("stack", data=em_labels, chunks=(16, 16, 16))
        ds.attrs["resolution"] = VOXEL
        ds.attrs["offset"] = [o * v for o, v in zip(OFFSET, VOXEL)]
    _check_ffnops_read(f"h5://{tmp_path}/g.h5#stack", em_labels)
    _check_ffnops_read(f"{tmp_path}/g.h5:stack", em_labels)  # Google's path:dataset form


def test_n5_written_by_ffnops_reads_in_tensorstore_as_xyz(
    tmp_path: Path, em_image: np.ndarray
) -> None:
    write_array(
        f"n5://{tmp_path}/v.n5/raw", em_image, voxel_size=VOXEL, offset=OFFSET, chunks=(16, 16, 16)
    )
    attrs = json.loads((tmp_path / "v.n5/raw/attributes.json").read_text())
    assert attrs["dimensions"] == list(em_image.shape[::-1])  # N5 lists x, y, z
    assert attrs["resolution"] == list(VOXEL[::-1])
    store = ts.open({"driver": "n5", "kvstore": f"file://{tmp_path}/v.n5/raw/"}).result()
    np.testing.assert_array_equal(store.read().result(), em_image.transpose(2, 1, 0))


def test_n5_written_by_tensorstore_reads_in_ffnops(tmp_path: Path, em_labels: np.ndarray) -> None:
    spec = {
        "driver": "n5",
        "kvstore": f"file://{tmp_path}/t.n5/seg/",
        "metadata": {
            "dimensions": list(em_labels.shape[::-1]),
            "blockSize": [16, 16, 16],
            "dataType": "uint64",
            "compression": {"type": "raw"},
            "units": ["nm"] * 3,
            "resolution": list(VOXEL[::-1]),
        },
    }
    store = ts.open(spec, create=True).result()
    store.write(em_labels.transpose(2, 1, 0)).result()
    _check_ffnops_read(f"n5://{tmp_path}/t.n5/seg", em_labels, offset=(0, 0, 0))
    _check_ffnops_read(f"n5://{tmp_path}/t.n5#seg", em_labels, offset=(0, 0, 0))


@pytest.mark.parametrize("scheme, zarr_format", [("zarr", 3), ("zarr3", 3), ("zarr2", 2)])
def test_zarr_written_by_ffnops_reads_in_zarr_python(
    tmp_path: Path, em_image: np.ndarray, scheme: str, zarr_format: int
) -> None:
    write_array(f"{scheme}://{tmp_path}/v.zarr", em_image, voxel_size=VOXEL, offset=OFFSET)
    array = zarr.open_array(str(tmp_path / "v.zarr"), mode="r")
    assert array.metadata.zarr_format == zarr_format
    np.testing.assert_array_equal(array[...], em_image)
    assert tuple(array.attrs["resolution"]) == VOXEL
    _check_ffnops_read(f"zarr://{tmp_path}/v.zarr", em_image)  # the version is detected


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_written_by_zarr_python_reads_in_ffnops(
    tmp_path: Path, em_labels: np.ndarray, zarr_format: int
) -> None:
    array = zarr.create_array(
        str(tmp_path / "z.zarr"),
        shape=em_labels.shape,
        chunks=(16, 16, 16),
        dtype=em_labels.dtype,
        zarr_format=zarr_format,
    )
    array[...] = em_labels
    array.attrs.update(
        {"resolution": list(VOXEL), "offset": [o * v for o, v in zip(OFFSET, VOXEL)]}
    )
    _check_ffnops_read(f"zarr://{tmp_path}/z.zarr", em_labels)


def test_precomputed_image_written_by_ffnops_is_multiscale(
    tmp_path: Path, em_image: np.ndarray
) -> None:
    uri = f"precomputed://file://{tmp_path}/img"
    write_array(uri, em_image, voxel_size=VOXEL, offset=OFFSET, chunks=(8, 8, 8))
    info = json.loads((tmp_path / "img/info").read_text())
    assert info["type"] == "image" and info["data_type"] == "uint8"
    resolutions = [s["resolution"] for s in info["scales"]]
    assert resolutions[0] == list(VOXEL[::-1])
    assert len(resolutions) >= 3
    for finer, coarser in itertools.pairwise(resolutions):
        assert all(c in (f, 2 * f) for f, c in zip(finer, coarser)) and coarser != finer
    assert info["scales"][0]["voxel_offset"] == list(OFFSET[::-1])
    store = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": f"file://{tmp_path}/img/"}
    ).result()
    np.testing.assert_array_equal(store[..., 0].read().result(), em_image.transpose(2, 1, 0))
    _check_ffnops_read(uri, em_image)
    with open_volume(uri + "#scale=1") as coarse:
        # Coarse voxels sit on the global grid: coarse voxel i covers global voxels 2i, 2i + 1.
        assert coarse.shape == tuple(
            -(-(o + n) // 2) - o // 2 for o, n in zip(OFFSET, em_image.shape)
        )
        assert coarse.offset == tuple(o // 2 for o in OFFSET)
        first = tuple(slice(0, 2 * (o // 2) + 2 - o) for o in OFFSET)
        expected = em_image[first].mean()
        assert abs(float(coarse.read(BBox((0, 0, 0), (1, 1, 1)))[0, 0, 0]) - expected) <= 1


@pytest.mark.parametrize(
    "dtype, encoding", [("uint64", None), ("uint32", None), ("uint64", "raw"), ("uint32", "raw")]
)
def test_precomputed_segmentation_keeps_ids_in_tensorstore(
    tmp_path: Path, em_labels: np.ndarray, dtype: str, encoding: str | None
) -> None:
    from ffnops.volume import VolumeSpec
    from ffnops.volumes import create_volume

    labels = em_labels if dtype == "uint64" else (em_labels % 2**31).astype(np.uint32)
    extra = {"encoding": encoding} if encoding else {}
    spec = VolumeSpec(labels.shape, dtype, VOXEL, OFFSET, (16, 16, 16), "segmentation", extra)
    with create_volume(f"precomputed://{tmp_path}/seg", spec) as volume:
        volume.write((0, 0, 0), labels)
    info = json.loads((tmp_path / "seg/info").read_text())
    assert info["type"] == "segmentation"
    assert info["scales"][0]["encoding"] == (encoding or "compressed_segmentation")
    store = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": f"file://{tmp_path}/seg/"}
    ).result()
    read_back = store[..., 0].read().result().transpose(2, 1, 0)
    np.testing.assert_array_equal(read_back, labels)
    assert set(np.unique(read_back)) == set(np.unique(labels))
    with open_volume(f"precomputed://{tmp_path}/seg#scale=1") as coarse:
        coarse_ids = set(np.unique(coarse.read()).tolist())
    assert coarse_ids <= set(np.unique(labels).tolist())  # mode downsampling invents no ids


def test_precomputed_written_by_tensorstore_reads_in_ffnops(
    tmp_path: Path, em_labels: np.ndarray
) -> None:
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": f"file://{tmp_path}/ext/",
        "multiscale_metadata": {"type": "segmentation", "data_type": "uint64", "num_channels": 1},
        "scale_metadata": {
            "size": list(em_labels.shape[::-1]),
            "resolution": list(VOXEL[::-1]),
            "voxel_offset": list(OFFSET[::-1]),
            "encoding": "compressed_segmentation",
            "chunk_size": [16, 16, 16],
            "compressed_segmentation_block_size": [8, 8, 8],
        },
    }
    store = ts.open(spec, create=True).result()
    store[ts.d["channel"][0]].write(em_labels.transpose(2, 1, 0)).result()
    _check_ffnops_read(f"precomputed://file://{tmp_path}/ext", em_labels)


def test_precomputed_reads_over_http(http_root: tuple[Path, str], em_image: np.ndarray) -> None:
    root, base = http_root
    write_array(f"precomputed://{root}/img", em_image, voxel_size=VOXEL, offset=OFFSET)
    _check_ffnops_read(f"precomputed://{base}/img", em_image)
