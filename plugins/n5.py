"""N5 volumes through tensorstore: ``n5://path/to/container.n5/dataset`` (or ``...n5#dataset``).

N5 lists axes x, y, z (``dimensions``, ``blockSize``, ``resolution``), as the Java N5 libraries,
BigDataViewer and neuroglancer read it; ffnops shows the same data in (z, y, x) order. Voxel size
comes from ``resolution`` + ``units`` (written by tensorstore), the offset from a funlib-style
``offset`` attribute (x, y, z, nm).
"""

from __future__ import annotations

from typing import Any

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
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import Volume, VolumeSpec, funlib_metadata


@hookimpl
def ffnops_schemes() -> list[Scheme]:
    return [
        Scheme("n5", "N5 dataset (tensorstore)", read=True, write=True, example="n5://vol.n5/raw")
    ]


@hookimpl
def ffnops_open_volume(uri: VolumeURI, mode: str) -> Volume | None:
    if uri.scheme != "n5":
        return None
    location = dataset_location(uri)
    require_local_dataset(uri.raw, location, ("attributes.json",))
    store = open_store(
        uri.raw,
        {"driver": "n5", "kvstore": kvstore_url(location)},
        read=True,
        write=mode == "r+",
    )
    view = store.T.translate_to[0, 0, 0] if store.rank == 3 else store
    voxel_from_units = units_voxel_size(store)
    attrs_voxel, offset = funlib_metadata(read_json(location, "attributes.json"), reverse=True)
    voxel = voxel_from_units[::-1] if voxel_from_units else attrs_voxel
    return TensorStoreVolume(uri.raw, view, voxel_size=voxel, offset=offset, writable=mode == "r+")


@hookimpl
def ffnops_create_volume(uri: VolumeURI, spec: VolumeSpec, overwrite: bool) -> Volume | None:
    if uri.scheme != "n5":
        return None
    tmp, final = prepare_local_output(uri.raw, dataset_location(uri), spec, overwrite, "N5")
    metadata: dict[str, Any] = {
        "dimensions": list(spec.shape[::-1]),
        "blockSize": list(spec.chunks_or(64)[::-1]),
        "dataType": spec.dtype,
        "compression": {"type": "gzip", "level": 4},
        "units": ["nm", "nm", "nm"],
        "resolution": list(spec.voxel_size[::-1]),
    }
    store = open_store(
        uri.raw, {"driver": "n5", "kvstore": relocate(tmp), "metadata": metadata}, create=True
    )
    offset_nm = [o * v for o, v in zip(spec.offset, spec.voxel_size, strict=True)]
    update_json(tmp, "attributes.json", {"offset": offset_nm[::-1]})
    return TensorStoreVolume(
        uri.raw,
        store.T.translate_to[0, 0, 0],
        voxel_size=spec.voxel_size,
        offset=spec.offset,
        writable=True,
        publish_to=(tmp, final),
        shared_uri=f"n5://{tmp}",
    )
