"""Neuroglancer precomputed volumes through tensorstore, local or over HTTP.

``precomputed://file:///abs/dir``, ``precomputed:///abs/dir`` or ``precomputed://rel/dir`` for
local data, ``precomputed://https://host/path`` over HTTP (read-only). ``#scale=N`` picks a scale
(0, the finest, by default). The format lists axes x, y, z (+ channel); ffnops shows (z, y, x), so
only single-channel volumes are served.

Writing: images (uint8/float32, ``raw`` encoding) and segmentations (uint32/uint64,
``compressed_segmentation``; ``spec.extra["encoding"] = "raw"`` to opt out). On commit the
lower-resolution scales are built by downsampling by 2 per axis (mean for images, mode for
segmentations) until the volume fits in one chunk, so neuroglancer opens the result at any zoom.
"""

from __future__ import annotations

from typing import Any

import tensorstore as ts
from ffnops_plugins.tensorstore_volume import (
    TensorStoreVolume,
    is_remote,
    kvstore_url,
    open_store,
    prepare_local_output,
    read_json,
    relocate,
    require_local_dataset,
)

from ffnops import hookimpl
from ffnops.errors import VolumeError
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import Volume, VolumeSpec

IMAGE_DTYPES = ("uint8", "uint16", "float32")
SEGMENTATION_DTYPES = ("uint32", "uint64")


def _scale_index(uri: VolumeURI) -> int:
    if not uri.fragment:
        return 0
    key, _, value = uri.fragment.partition("=")
    if key != "scale" or not value.isdigit():
        raise VolumeError(f"{uri.raw}: fragment must be '#scale=N', got '#{uri.fragment}'")
    return int(value)


def _zyx_view(uri: str, store: ts.TensorStore) -> ts.TensorStore:
    channels = store.shape[3]
    if channels != 1:
        raise VolumeError(f"{uri}: has {channels} channels; ffnops reads single-channel volumes")
    return store[ts.d["channel"][0]].T.translate_to[0, 0, 0]


@hookimpl
def ffnops_schemes() -> list[Scheme]:
    return [
        Scheme(
            "precomputed",
            "neuroglancer precomputed, local or http(s) (tensorstore); multi-scale on write",
            read=True,
            write=True,
            example="precomputed://file:///data/seg",
        )
    ]


@hookimpl
def ffnops_open_volume(uri: VolumeURI, mode: str) -> Volume | None:
    if uri.scheme != "precomputed":
        return None
    if mode == "r+" and is_remote(uri.path):
        raise VolumeError(f"{uri.raw}: precomputed over HTTP is read-only")
    require_local_dataset(uri.raw, uri.path, ("info",))
    info = read_json(uri.path, "info")
    scales = info.get("scales", [])
    index = _scale_index(uri)
    if scales and index >= len(scales):
        raise VolumeError(f"{uri.raw}: scale {index} asked for, the volume has {len(scales)}")
    spec = {"driver": "neuroglancer_precomputed", "kvstore": kvstore_url(uri.path)}
    store = open_store(uri.raw, {**spec, "scale_index": index}, read=True, write=mode == "r+")
    resolution = scales[index]["resolution"] if scales else (1.0, 1.0, 1.0)
    offset = scales[index].get("voxel_offset", (0, 0, 0)) if scales else (0, 0, 0)
    return TensorStoreVolume(
        uri.raw,
        _zyx_view(uri.raw, store),
        voxel_size=tuple(float(r) for r in resolution[::-1]),
        offset=tuple(int(o) for o in offset[::-1]),
        writable=mode == "r+",
    )


def _scale_metadata(
    spec: VolumeSpec, size_xyz: list[int], resolution_xyz: list[float], offset_xyz: list[int]
) -> dict[str, Any]:
    chunk = [min(c, n) for c, n in zip(spec.chunks_or(64)[::-1], size_xyz, strict=True)]
    encoding = str(spec.extra.get("encoding", _default_encoding(spec)))
    scale: dict[str, Any] = {
        "size": size_xyz,
        "resolution": resolution_xyz,
        "voxel_offset": offset_xyz,
        "chunk_size": chunk,
        "encoding": encoding,
    }
    if encoding == "compressed_segmentation":
        scale["compressed_segmentation_block_size"] = [8, 8, 8]
    return scale


def _default_encoding(spec: VolumeSpec) -> str:
    return "compressed_segmentation" if spec.kind == "segmentation" else "raw"


def _check_dtype(uri: str, spec: VolumeSpec) -> None:
    allowed = SEGMENTATION_DTYPES if spec.kind == "segmentation" else IMAGE_DTYPES
    if spec.kind == "segmentation" and spec.extra.get("encoding") == "raw":
        allowed = ("uint8", "uint16", *SEGMENTATION_DTYPES)
    if spec.dtype not in allowed:
        raise VolumeError(
            f"{uri}: a precomputed {spec.kind} must be {' or '.join(allowed)}, got {spec.dtype}"
        )


def _build_lower_scales(location: str, spec: VolumeSpec) -> Any:
    """Returns the commit hook that writes the downsampled scales of a finished scale 0."""
    method = "mode" if spec.kind == "segmentation" else "mean"

    def build(_: ts.TensorStore) -> None:
        base_spec = {"driver": "neuroglancer_precomputed", "kvstore": location}
        current = ts.open({**base_spec, "scale_index": 0}).result()
        resolution = [float(r) for r in spec.voxel_size[::-1]]
        chunk = spec.chunks_or(64)[::-1]
        while any(n > c for n, c in zip(current.shape[:3], chunk, strict=True)):
            factors = [2 if n > 1 else 1 for n in current.shape[:3]]
            lower = ts.downsample(current, [*factors, 1], method)
            resolution = [r * f for r, f in zip(resolution, factors, strict=True)]
            domain = lower.domain
            scale = _scale_metadata(
                spec,
                [int(n) for n in domain.shape[:3]],
                resolution,
                [int(o) for o in domain.inclusive_min[:3]],
            )
            target = ts.open(
                {**base_spec, "scale_metadata": scale}, create=True, open=True
            ).result()
            target.write(lower).result()
            current = target

    return build


@hookimpl
def ffnops_create_volume(uri: VolumeURI, spec: VolumeSpec, overwrite: bool) -> Volume | None:
    if uri.scheme != "precomputed":
        return None
    _check_dtype(uri.raw, spec)
    tmp, final = prepare_local_output(uri.raw, uri.path, spec, overwrite, "precomputed")
    multiscale = {
        "type": spec.kind,
        "data_type": spec.dtype,
        "num_channels": 1,
    }
    scale = _scale_metadata(
        spec,
        list(spec.shape[::-1]),
        [float(v) for v in spec.voxel_size[::-1]],
        list(spec.offset[::-1]),
    )
    location = relocate(tmp)
    store = open_store(
        uri.raw,
        {
            "driver": "neuroglancer_precomputed",
            "kvstore": location,
            "multiscale_metadata": multiscale,
            "scale_metadata": scale,
        },
        create=True,
    )
    return TensorStoreVolume(
        uri.raw,
        _zyx_view(uri.raw, store),
        voxel_size=spec.voxel_size,
        offset=spec.offset,
        writable=True,
        publish_to=(tmp, final),
        shared_uri=f"precomputed://file://{tmp}",
        on_commit=_build_lower_scales(location, spec),
    )
