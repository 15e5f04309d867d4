"""HDF5 volumes through h5py: ``h5://path/file.h5#dataset`` and Google's ``path/file.h5:dataset``.

Metadata follows the funlib/gunpowder convention: dataset attributes ``resolution`` (z, y, x, nm)
and ``offset`` (z, y, x, nm). New datasets are chunked and gzip-compressed.

A new file of up to 2 GiB (uncompressed) is built in memory and written to disk only on commit
(as ``.name.partial``, then renamed): HDF5 cannot recover from a write that fails on a full disk,
and a process that then releases the file crashes (a segmentation fault inside the library), so
the bytes reach the disk through plain file writes, whose failure is an ordinary error. A larger
new file is written as ``.name.partial`` directly, and a new dataset in an existing file under a
temporary key (moved to its name on commit): both only after checking that the disk holds the
dataset uncompressed. Blockwise jobs write zarr, n5 or precomputed.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np

from ffnops import hookimpl
from ffnops.atomic import fresh_partial, nearest_existing, publish, remove_path
from ffnops.errors import MissingDatasetError, VolumeError, VolumeExistsError
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import BBox, Volume, VolumeSpec, funlib_metadata

SCHEMES = ("h5", "hdf5")
_GOOGLE_FORM = re.compile(r"^(?P<path>.+\.(?:h5|hdf5|hdf)):(?P<key>[^:]+)$", re.IGNORECASE)
_TMP_KEY_SUFFIX = ".partial"
# New files up to this size (uncompressed) are built in memory; larger ones on disk, after
# checking the disk holds them uncompressed.
IN_MEMORY_BYTES = 2 * 2**30


def _split(uri: VolumeURI) -> tuple[Path, str] | None:
    """(file, dataset key) for URIs this plugin serves, else None."""
    if uri.scheme in SCHEMES:
        return Path(uri.path), uri.fragment.strip("/")
    if not uri.scheme:
        match = _GOOGLE_FORM.match(uri.raw)
        if match:
            return Path(match["path"]), match["key"].strip("/")
    return None


def _dataset_keys(group: h5py.Group) -> list[str]:
    keys: list[str] = []
    group.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return keys


def _open_file(path: Path, uri: str, mode: str) -> h5py.File:
    if not path.exists():
        raise VolumeError(f"{uri}: file not found: {path}")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise VolumeError(f"{uri}: {path} is not a readable HDF5 file ({exc})") from None


def _open_dataset(handle: h5py.File, key: str, uri: str) -> h5py.Dataset:
    keys = _dataset_keys(handle)
    if not key:
        raise VolumeError(
            f"{uri}: no dataset given; name one after '#' (h5://file.h5#key), "
            f"datasets present: {', '.join(keys) or 'none'}"
        )
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        error = MissingDatasetError if key not in handle else VolumeError
        raise error(
            f"{uri}: no dataset {key!r} in {handle.filename}; "
            f"datasets present: {', '.join(keys) or 'none'}"
        )
    return handle[key]


class HDF5Volume(Volume):
    """A 3-D HDF5 dataset, read one box at a time with h5py slicing."""

    def __init__(
        self,
        uri: str,
        handle: h5py.File,
        dataset: h5py.Dataset,
        *,
        writable: bool,
        publish_to: tuple[io.BytesIO, Path] | tuple[Path, Path] | tuple[str, str] | None = None,
    ) -> None:
        voxel_size, offset = funlib_metadata(dataset.attrs)
        super().__init__(
            uri,
            dataset.shape,
            dataset.dtype,
            chunks=dataset.chunks,
            voxel_size=voxel_size or (1.0, 1.0, 1.0),
            offset=offset,
            writable=writable,
        )
        self._handle = handle
        self._dataset = dataset
        # (in-memory file, final file) or (temporary key, final key) to publish on commit.
        self._publish_to = publish_to

    def _read(self, box: BBox) -> np.ndarray:
        return self._dataset[box.slices]  # type: ignore[no-any-return]

    def _write(self, box: BBox, data: np.ndarray) -> None:
        self._dataset[box.slices] = data

    def _commit(self) -> None:
        target = self._publish_to
        if target is not None and isinstance(target[0], str):
            tmp_key, final_key = target
            if final_key in self._handle:
                del self._handle[final_key]
            self._handle.move(tmp_key, final_key)
        self._handle.close()
        if target is not None and isinstance(target[0], io.BytesIO):
            buffer, final = target
            tmp = fresh_partial(final)
            try:
                with open(tmp, "wb") as f:
                    f.write(buffer.getbuffer())
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                remove_path(tmp)
                raise VolumeError(f"{self.uri}: writing {final} failed: {exc.strerror}") from None
            publish(tmp, final)
        elif target is not None and isinstance(target[0], Path):
            publish(target[0], target[1])

    def _abort(self) -> None:
        target = self._publish_to
        if target is not None and isinstance(target[0], str) and self._handle:
            del self._handle[target[0]]
        self._handle.close()
        if target is not None and isinstance(target[0], Path):
            remove_path(target[0])

    def _release(self) -> None:
        self._handle.close()


@hookimpl
def ffnops_schemes() -> list[Scheme]:
    return [
        Scheme("h5", "HDF5 dataset (h5py)", read=True, write=True, example="h5://vol.h5#raw"),
        Scheme("hdf5", "HDF5 dataset (h5py), same as h5://", read=True, write=True),
    ]


@hookimpl
def ffnops_open_volume(uri: VolumeURI, mode: str) -> Volume | None:
    split = _split(uri)
    if split is None:
        return None
    path, key = split
    handle = _open_file(path, uri.raw, mode)
    try:
        dataset = _open_dataset(handle, key, uri.raw)
        return HDF5Volume(uri.raw, handle, dataset, writable=mode == "r+")
    except BaseException:
        handle.close()
        raise


def _require_room(uri: str, path: Path, need: int, what: str) -> None:
    """Refuses to start a write HDF5 could not finish: its disk must hold ``need`` bytes."""
    free = shutil.disk_usage(nearest_existing(path.parent)).free
    if free < need:
        raise VolumeError(
            f"{uri}: {what} {path} needs up to {need / 1e6:.1f} MB and {free / 1e6:.1f} MB are "
            "free there"
        )


@hookimpl
def ffnops_create_volume(uri: VolumeURI, spec: VolumeSpec, overwrite: bool) -> Volume | None:
    split = _split(uri)
    if split is None:
        return None
    path, key = split
    if not key:
        raise VolumeError(f"{uri.raw}: name the dataset to create after '#' (h5://file.h5#key)")
    publish_to: tuple[io.BytesIO, Path] | tuple[Path, Path] | tuple[str, str]
    need = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    if path.exists():
        if path.is_file():
            _require_room(uri.raw, path, need, "a new dataset in")
        handle = _open_file(path, uri.raw, "r+")
        if key in handle and not overwrite:
            handle.close()
            raise VolumeExistsError(
                f"{uri.raw}: dataset {key!r} already exists in {path}; pass overwrite=true"
            )
        write_key = key + _TMP_KEY_SUFFIX
        if write_key in handle:
            del handle[write_key]
        publish_to = (write_key, key)
    else:
        if not path.parent.is_dir() and path.parent.exists():
            raise VolumeError(f"{uri.raw}: {path.parent} is not a folder")
        write_key = key
        if need <= IN_MEMORY_BYTES:
            buffer = io.BytesIO()
            handle = h5py.File(buffer, "w")
            publish_to = (buffer, path.absolute())
        else:
            _require_room(uri.raw, path, need, "a new file")
            tmp = fresh_partial(path)
            handle = h5py.File(tmp, "w")
            publish_to = (tmp, path.absolute())
    dataset = handle.create_dataset(
        write_key,
        shape=spec.shape,
        dtype=spec.dtype,
        chunks=spec.chunks_or(64),
        compression="gzip",
        compression_opts=int(spec.extra.get("gzip_level", 4)),  # type: ignore[call-overload]
        fillvalue=0,
    )
    dataset.attrs["resolution"] = np.asarray(spec.voxel_size, dtype=np.float64)
    dataset.attrs["offset"] = (
        np.asarray(spec.offset, dtype=np.float64) * dataset.attrs["resolution"]
    )
    return HDF5Volume(uri.raw, handle, dataset, writable=True, publish_to=publish_to)
