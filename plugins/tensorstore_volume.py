"""What the N5, zarr and precomputed plugins share: a Volume over a tensorstore view.

Each plugin opens its format with tensorstore and hands over a view already in (z, y, x) order
with its origin at 0; this module reads and writes boxes of it, turns tensorstore's errors into
one-line messages naming the URI, and publishes new outputs written under a partial name.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from ffnops.atomic import fresh_partial, publish, refuse_existing, remove_path
from ffnops.errors import VolumeError
from ffnops.uri import VolumeURI
from ffnops.volume import BBox, Volume, VolumeSpec

_REMOTE = re.compile(r"^(https?|gs|s3)://", re.IGNORECASE)


def is_remote(location: str) -> bool:
    return bool(_REMOTE.match(location))


def local_path(location: str) -> Path:
    """The filesystem path of a local location (plain path or ``file://`` URL)."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    return Path(location).expanduser()


def dataset_location(uri: VolumeURI) -> str:
    """The dataset's path: ``scheme://container#dataset`` joins to ``container/dataset``."""
    return f"{uri.path.rstrip('/')}/{uri.fragment.strip('/')}" if uri.fragment else uri.path


def kvstore_url(location: str) -> str:
    """A tensorstore kvstore URL for a local path, ``file://`` or ``http(s)://`` location."""
    if is_remote(location):
        return location.rstrip("/") + "/"
    return "file://" + str(local_path(location).absolute()) + "/"


def ts_error(uri: str, exc: Exception) -> VolumeError:
    """Shortens a tensorstore error to its first clause, without the spec dump."""
    text = str(exc).split(" [tensorstore_spec=")[0].split(" [source locations=")[0]
    return VolumeError(f"{uri}: {text}")


def open_store(uri: str, spec: dict[str, Any], **kwargs: Any) -> ts.TensorStore:
    """Opens a tensorstore spec, reporting any failure as a VolumeError naming ``uri``."""
    try:
        return ts.open(spec, **kwargs).result()
    except (ValueError, RuntimeError) as exc:
        raise ts_error(uri, exc) from None


def require_local_dataset(uri: str, location: str, marker_files: tuple[str, ...]) -> Path | None:
    """Checks a local dataset exists before tensorstore is asked; None for remote ones."""
    if is_remote(location):
        return None
    path = local_path(location)
    if not path.exists():
        raise VolumeError(f"{uri}: not found: {path}")
    if not any((path / marker).exists() for marker in marker_files):
        raise VolumeError(
            f"{uri}: {path} exists but holds no {' or '.join(marker_files)}; "
            "is the path the dataset itself (not its container)?"
        )
    return path


def read_json(location: str, key: str) -> dict[str, Any]:
    """A small JSON metadata file next to the data (local or over HTTP); {} if absent."""
    try:
        store = ts.KvStore.open(kvstore_url(location)).result()
        value = store.read(key).result().value
    except (ValueError, RuntimeError):
        return {}
    try:
        loaded = json.loads(bytes(value) or b"{}")
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def update_json(path: Path, key: str, values: dict[str, Any]) -> None:
    """Merges ``values`` into the JSON file ``path/key`` (created if missing)."""
    target = path / key
    current = json.loads(target.read_text()) if target.exists() else {}
    current.update(values)
    target.write_text(json.dumps(current, indent=1))


def units_voxel_size(store: ts.TensorStore) -> tuple[float, ...] | None:
    """Voxel size in nm from tensorstore's dimension units, if every axis has one in nm."""
    units = store.dimension_units
    if not units or any(u is None for u in units):
        return None
    scale = {"nm": 1.0, "um": 1000.0, "µm": 1000.0, "mm": 1e6}
    if any(u.base_unit not in scale for u in units):
        return None
    return tuple(u.multiplier * scale[u.base_unit] for u in units)


class TensorStoreVolume(Volume):
    """A Volume over a tensorstore view in (z, y, x) order with origin 0.

    ``on_commit`` runs before a newly created volume is renamed into place (the precomputed
    plugin builds its lower-resolution scales there); ``shared_uri`` opens the partial output
    from other processes (blockwise inference writes it from worker processes).
    """

    def __init__(
        self,
        uri: str,
        view: ts.TensorStore,
        *,
        voxel_size: tuple[float, ...] | None,
        offset: tuple[int, ...],
        writable: bool,
        publish_to: tuple[Path, Path] | None = None,
        on_commit: Callable[[ts.TensorStore], None] | None = None,
        shared_uri: str | None = None,
    ) -> None:
        if view.rank != 3:
            raise VolumeError(
                f"{uri}: expected a 3-D (z, y, x) volume, found {view.rank} dimensions "
                f"with shape {tuple(view.shape)}"
            )
        chunks = view.chunk_layout.read_chunk.shape
        super().__init__(
            uri,
            view.shape,
            view.dtype.numpy_dtype,
            chunks=chunks if chunks is not None and None not in chunks else None,
            voxel_size=voxel_size or (1.0, 1.0, 1.0),
            offset=offset,
            writable=writable,
        )
        self._view = view
        self._publish_to = publish_to
        self._on_commit = on_commit
        # Chunks are separate keys that tensorstore writes whole: processes writing disjoint,
        # chunk-aligned boxes of the partial output never touch one another's data.
        self.shared_uri = shared_uri
        self._write_failed = False

    def _read(self, box: BBox) -> np.ndarray:
        try:
            return self._view[box.slices].read().result()  # type: ignore[no-any-return]
        except ValueError as exc:
            raise ts_error(self.uri, exc) from None

    def _write(self, box: BBox, data: np.ndarray) -> None:
        try:
            self._view[box.slices].write(data).result()
        except ValueError as exc:
            self._write_failed = True
            raise ts_error(self.uri, exc) from None

    def _commit(self) -> None:
        if self._on_commit is not None:
            self._on_commit(self._view)
        if self._publish_to is not None:
            publish(*self._publish_to)

    def _abort(self) -> None:
        if self._publish_to is not None:
            remove_path(self._publish_to[0])
            if self._write_failed:
                settle_removed(self._publish_to[0])


def settle_removed(path: Path, quiet_s: float = 0.5, limit_s: float = 10.0) -> None:
    """Removes ``path`` until it stays gone for ``quiet_s``: when one chunk's write fails (a full
    disk), tensorstore's other chunk writes of that call still finish afterwards, recreating
    files in the folder just removed."""
    deadline = time.monotonic() + limit_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.05)
        if path.exists():
            remove_path(path)
            quiet_since = time.monotonic()


def prepare_local_output(
    uri: str, location: str, spec: VolumeSpec, overwrite: bool, fmt: str
) -> tuple[Path, Path]:
    """(partial dir to write, final dir) for a new local output; refuses remote or existing ones."""
    if is_remote(location):
        raise VolumeError(f"{uri}: {fmt} can only be written to local disk, not to {location}")
    final = local_path(location).absolute()
    refuse_existing(final, uri, overwrite)
    if min(spec.shape) < 1:
        raise VolumeError(f"{uri}: cannot create a volume of shape {spec.shape}")
    return fresh_partial(final), final


def relocate(path: Path) -> str:
    """``file://`` kvstore URL of a directory (tensorstore wants a trailing slash)."""
    return "file://" + str(path) + "/"
