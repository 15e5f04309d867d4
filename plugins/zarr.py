"""Zarr v2 and v3 volumes through tensorstore: ``zarr://``, ``zarr2://``, ``zarr3://``.

``zarr://`` reads either version (found by its ``zarr.json`` or ``.zarray``) and writes v3;
``zarr2://``/``zarr3://`` pick the version to write. Arrays are (z, y, x) in C order. Metadata
follows funlib: attributes ``resolution`` (z, y, x, nm) and ``offset`` (z, y, x, nm); v3 arrays
also get ``dimension_names`` and tensorstore's ``dimension_units``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ffnops_plugins.tensorstore_volume import (
    TensorStoreVolume,
    dataset_location,
    kvstore_url,
    open_store,
    prepare_local_output,
    read_json,
    relocate,
    require_local_dataset,
    units_voxel_size,
    update_json,
)

from ffnops import hookimpl
from ffnops.errors import VolumeError
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import Volume, VolumeSpec, funlib_metadata

SCHEMES = ("zarr", "zarr2", "zarr3")
_DRIVER = {"zarr2": "zarr", "zarr3": "zarr3"}


def _detect_version(uri: VolumeURI, location: str) -> str:
    if uri.scheme != "zarr":
        return uri.scheme
    if read_json(location, "zarr.json"):
        return "zarr3"
    if read_json(location, ".zarray"):
        return "zarr2"
    raise VolumeError(f"{uri.raw}: no zarr array at {location} (neither zarr.json nor .zarray)")


@hookimpl
def ffnops_schemes() -> list[Scheme]:
    return [
        Scheme(
            "zarr", "zarr v2 or v3 array (tensorstore); writes v3", True, True, "zarr://vol.zarr"
        ),
        Scheme("zarr2", "zarr v2 array (tensorstore)", read=True, write=True),
        Scheme("zarr3", "zarr v3 array (tensorstore)", read=True, write=True),
    ]


@hookimpl
def ffnops_open_volume(uri: VolumeURI, mode: str) -> Volume | None:
    if uri.scheme not in SCHEMES:
        return None
    location = dataset_location(uri)
    require_local_dataset(uri.raw, location, ("zarr.json", ".zarray"))
    version = _detect_version(uri, location)
    store = open_store(
        uri.raw,
        {"driver": _DRIVER[version], "kvstore": kvstore_url(location)},
        read=True,
        write=mode == "r+",
    )
    if version == "zarr3":
        attrs = read_json(location, "zarr.json").get("attributes", {})
    else:
        attrs = read_json(location, ".zattrs")
    voxel, offset = funlib_metadata(attrs)
    voxel = voxel or units_voxel_size(store)
    view = store.translate_to[(0,) * store.rank]
    return TensorStoreVolume(uri.raw, view, voxel_size=voxel, offset=offset, writable=mode == "r+")


@hookimpl
def ffnops_create_volume(uri: VolumeURI, spec: VolumeSpec, overwrite: bool) -> Volume | None:
    if uri.scheme not in SCHEMES:
        return None
    version = "zarr3" if uri.scheme == "zarr" else uri.scheme
    tmp, final = prepare_local_output(uri.raw, dataset_location(uri), spec, overwrite, "zarr")
    offset_nm = [o * v for o, v in zip(spec.offset, spec.voxel_size, strict=True)]
    attrs = {"resolution": list(spec.voxel_size), "offset": offset_nm}
    chunks = list(spec.chunks_or(64))
    ts_spec: dict[str, Any]
    if version == "zarr3":
        ts_spec = {
            "driver": "zarr3",
            "kvstore": relocate(tmp),
            "metadata": {
                "shape": list(spec.shape),
                "data_type": spec.dtype,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                "dimension_names": ["z", "y", "x"],
                "codecs": [{"name": "bytes"}, {"name": "gzip", "configuration": {"level": 4}}],
                "attributes": attrs,
            },
            "schema": {"dimension_units": [f"{v} nm" for v in spec.voxel_size]},
        }
    else:
        ts_spec = {
            "driver": "zarr",
            "kvstore": relocate(tmp),
            "metadata": {
                "shape": list(spec.shape),
                "dtype": np.dtype(spec.dtype).str,
                "chunks": chunks,
                "compressor": {"id": "zlib", "level": 4},
                "dimension_separator": "/",
            },
        }
    store = open_store(uri.raw, ts_spec, create=True)
    if version == "zarr2":
        update_json(tmp, ".zattrs", attrs)
    return TensorStoreVolume(
        uri.raw,
        store,
        voxel_size=spec.voxel_size,
        offset=spec.offset,
        writable=True,
        publish_to=(tmp, final),
        shared_uri=f"{version}://{tmp}",
    )
