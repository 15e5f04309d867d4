"""TIFF stacks for ffnops: ``tiff://stack.tif`` or ``tiff://slices_dir/`` (one 2-D TIFF per z).

This is the example third-party plugin: a separate distribution that registers this module in the
``ffnops`` entry-point group (see ``pyproject.toml``). It implements three hooks:

* ``ffnops_schemes`` says which URI scheme it serves (shown by ``ffnops plugins``);
* ``ffnops_open_volume`` opens ``tiff://...`` lazily and returns None for any other scheme;
* ``ffnops_create_volume`` collects written boxes in memory and writes a multi-page TIFF on
  ``commit()``, under a partial name that is renamed into place (``ffnops.atomic``).

Reading is lazy: opening reads TIFF headers only (a stack's page table, a directory's first
slice); ``read(box)`` decodes only the pages z0..z1 and crops y/x. Each page is one chunk, so the
chunk shape is (1, H, W). A directory's slices are checked (one page, same shape and dtype) when
they are read, so opening a directory of 50,000 slices touches only the first.

Voxel size (nm) comes from ImageJ calibration (``spacing`` for z, X/YResolution for y/x, with
``unit`` nm, um/micron or mm), else from the ``voxel_size`` tifffile writes in its JSON
description, else (1, 1, 1). TIFF has no place for an offset: volumes open with offset (0, 0, 0)
and a written volume's offset is not stored.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ffnops import hookimpl
from ffnops.atomic import fresh_partial, publish, refuse_existing, remove_path
from ffnops.errors import VolumeError
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import BBox, Volume, VolumeSpec

SCHEME = "tiff"
SUFFIXES = (".tif", ".tiff")
# Element types ImageJ/Fiji can open; others are written as plain (Big)TIFF.
IMAGEJ_DTYPES = ("uint8", "uint16", "int16", "float32")
# Above this size a stack is written as BigTIFF, which ImageJ's format does not allow.
BIGTIFF_BYTES = 2**31
_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
}


# ---- helpers -------------------------------------------------------------------------------------


def _path(uri: VolumeURI) -> Path:
    if not uri.path:
        raise VolumeError(f"{uri.raw}: no path given; expected tiff://stack.tif or tiff://slices/")
    if uri.fragment:
        raise VolumeError(
            f"{uri.raw}: tiff:// takes no '#{uri.fragment}' part; name a .tif file or a directory"
        )
    # Absolute, so a later chdir (Hydra jobs may change directory) cannot move the volume.
    return Path(uri.path).expanduser().absolute()


def _open_tiff(path: Path, uri: str) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except (OSError, tifffile.TiffFileError) as exc:
        raise VolumeError(f"{uri}: {path} is not a readable TIFF file ({exc})") from None


def _page_layout(page: Any, where: str, uri: str) -> tuple[tuple[int, int], np.dtype]:
    """(shape, dtype) of a page, which must be a 2-D grayscale image."""
    shape = tuple(int(n) for n in page.shape)
    if len(shape) != 2:
        raise VolumeError(
            f"{uri}: {where} has shape {shape}; expected 2-D grayscale (y, x) pages, "
            "one per z slice (RGB and multi-sample pages are not supported)"
        )
    return (shape[0], shape[1]), np.dtype(page.dtype)


def _check_same(
    found: tuple[tuple[int, int], np.dtype],
    expected: tuple[tuple[int, int], np.dtype],
    where: str,
    first: str,
    uri: str,
) -> None:
    if found != expected:
        raise VolumeError(
            f"{uri}: {where} has shape {found[0]} and dtype {found[1].name}, expected shape "
            f"{expected[0]} and dtype {expected[1].name} like {first}; all z slices must match"
        )


def _decode(page: Any, where: str, uri: str) -> np.ndarray:
    """A page's pixels; a damaged page becomes a one-line VolumeError naming it."""
    try:
        return page.asarray()  # type: ignore[no-any-return]
    except Exception as exc:  # zlib.error, ValueError, tifffile.TiffFileError, ...
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise VolumeError(f"{uri}: cannot decode {where} ({reason})") from None


def _pixel_size(page: Any, tag: str, scale: float) -> float:
    value = page.tags.get(tag)
    if value is None:
        return 1.0
    numerator, denominator = value.value  # pixels per unit, as a rational
    return float(denominator) / float(numerator) * scale if numerator else 1.0


def _voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float]:
    """(z, y, x) in nm from ImageJ calibration or tifffile's own metadata; else (1, 1, 1)."""
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        scale = _UNIT_NM.get(str(meta.get("unit", "")).strip().lower())
        if scale is None:  # "pixel" or a unit we cannot convert to nm
            return (1.0, 1.0, 1.0)
        page = tif.pages.first
        z = float(meta["spacing"]) * scale if "spacing" in meta else 1.0
        return (z, _pixel_size(page, "YResolution", scale), _pixel_size(page, "XResolution", scale))
    if tif.is_shaped and tif.shaped_metadata:
        stored = tif.shaped_metadata[0].get("voxel_size")
        if isinstance(stored, list) and len(stored) == 3:
            return tuple(float(v) for v in stored)  # type: ignore[return-value]
    return (1.0, 1.0, 1.0)


# ---- reading -------------------------------------------------------------------------------------


class TiffVolume(Volume):
    """A read-only stack of 2-D pages; subclasses say how to get page ``z``."""

    def _read(self, box: BBox) -> np.ndarray:
        (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
        out = np.empty(box.size, dtype=self.dtype)
        for z in range(z0, z1):  # only the pages asked for are decoded
            out[z - z0] = self._page(z)[y0:y1, x0:x1]
        return out

    def _page(self, z: int) -> np.ndarray:
        raise NotImplementedError


class TiffStackVolume(TiffVolume):
    """A multi-page TIFF file, one page per z slice."""

    def __init__(self, uri: str, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._tif = _open_tiff(path, uri)
        self._pid = os.getpid()
        try:
            pages = self._tif.pages
            count = len(pages)  # walks the page table; no pixel data is read
            layout = _page_layout(pages.first, f"page 0 of {path}", uri)
            self._check_imagej(uri, count)
            for i in range(1, count):
                where = f"page {i} of {path}"
                _check_same(_page_layout(pages[i], where, uri), layout, where, "page 0", uri)
            voxel_size = _voxel_size(self._tif)
        except BaseException:
            self._tif.close()
            raise
        (height, width), dtype = layout
        super().__init__(
            uri, (count, height, width), dtype, chunks=(1, height, width), voxel_size=voxel_size
        )

    def _check_imagej(self, uri: str, count: int) -> None:
        if not self._tif.is_imagej:
            return
        meta = self._tif.imagej_metadata or {}
        if int(meta.get("channels", 1)) > 1 or (
            int(meta.get("slices", 1)) > 1 and int(meta.get("frames", 1)) > 1
        ):
            raise VolumeError(
                f"{uri}: {self._path} is an ImageJ hyperstack with channels or both slices and "
                "frames; expected a single-channel z stack (split it in Fiji first)"
            )
        if int(meta.get("images", count)) > count:
            raise VolumeError(
                f"{uri}: {self._path} holds {meta['images']} images behind {count} page "
                "header(s) (an ImageJ file over 4 GiB); expected one page per z slice; "
                "re-save it as BigTIFF"
            )

    def _page(self, z: int) -> np.ndarray:
        with self._lock:
            if self._pid != os.getpid():  # a forked worker must not share the parent's file offset
                self._tif = _open_tiff(self._path, self.uri)
                self._pid = os.getpid()
            return _decode(self._tif.pages[z], f"page {z} of {self._path}", self.uri)

    def _release(self) -> None:
        self._tif.close()


class TiffDirectoryVolume(TiffVolume):
    """A directory of single-page 2-D TIFF files, one per z slice, in name order."""

    def __init__(self, uri: str, path: Path, files: list[Path]) -> None:
        self._files = files
        with _open_tiff(files[0], uri) as tif:
            self._layout = self._slice_layout(tif, files[0], uri)
            voxel_size = _voxel_size(tif)
        (height, width), dtype = self._layout
        super().__init__(
            uri,
            (len(files), height, width),
            dtype,
            chunks=(1, height, width),
            voxel_size=voxel_size,
        )

    @staticmethod
    def _slice_layout(
        tif: tifffile.TiffFile, path: Path, uri: str
    ) -> tuple[tuple[int, int], np.dtype]:
        if len(tif.pages) != 1:
            raise VolumeError(
                f"{uri}: slice {path} has {len(tif.pages)} pages; a slice directory must hold "
                "single-page 2-D TIFFs, one per z (use tiff://file.tif for a multi-page stack)"
            )
        return _page_layout(tif.pages.first, f"slice {path}", uri)

    def _page(self, z: int) -> np.ndarray:
        path = self._files[z]
        if not path.is_file():
            raise VolumeError(f"{self.uri}: slice {path} (z={z}) has disappeared")
        with _open_tiff(path, self.uri) as tif:
            layout = self._slice_layout(tif, path, self.uri)
            _check_same(layout, self._layout, f"slice {path}", str(self._files[0]), self.uri)
            return _decode(tif.pages.first, f"slice {path}", self.uri)


def _slice_files(path: Path, uri: str) -> list[Path]:
    files = sorted(
        p
        for p in path.iterdir()
        if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise VolumeError(
            f"{uri}: directory {path} contains no .tif/.tiff files; expected one 2-D TIFF "
            "per z slice (sorted by name)"
        )
    return files


# ---- writing -------------------------------------------------------------------------------------


class TiffWriterVolume(Volume):
    """Collects a new volume in memory; ``commit()`` writes it as one multi-page TIFF."""

    def __init__(self, uri: str, final: Path, spec: VolumeSpec) -> None:
        super().__init__(
            uri,
            spec.shape,
            spec.dtype,
            chunks=(1, spec.shape[1], spec.shape[2]),  # what the written file will have
            voxel_size=spec.voxel_size,
            offset=spec.offset,
            writable=True,
        )
        self._final = final
        # np.zeros asks the OS for zeroed pages: memory is used only where data is written.
        self._data = np.zeros(spec.shape, dtype=spec.dtype)

    def _read(self, box: BBox) -> np.ndarray:
        return self._data[box.slices].copy()

    def _write(self, box: BBox, data: np.ndarray) -> None:
        self._data[box.slices] = data

    def _write_tiff(self, tmp: Path, data: np.ndarray) -> None:
        z, y, x = self.voxel_size
        resolution = (1.0 / x, 1.0 / y)  # pixels per unit, (x, y) as TIFF orders them
        if data.dtype.name in IMAGEJ_DTYPES and data.nbytes < BIGTIFF_BYTES:
            # ImageJ calibration: Fiji shows the voxel size, and this plugin reads it back.
            metadata = {"axes": "ZYX", "spacing": z, "unit": "nm"}
            tifffile.imwrite(tmp, data, imagej=True, resolution=resolution, metadata=metadata)
        else:
            tifffile.imwrite(
                tmp,
                data,
                photometric="minisblack",  # never take a last axis of 3 or 4 for RGB(A)
                bigtiff=data.nbytes >= BIGTIFF_BYTES,
                resolution=resolution,
                metadata={"axes": "ZYX", "voxel_size": [z, y, x]},
            )

    def _commit(self) -> None:
        # The base class makes this run once, and aborts if it raises.
        tmp = fresh_partial(self._final)
        try:
            self._write_tiff(tmp, self._data)
        except Exception as exc:
            remove_path(tmp)
            raise VolumeError(f"{self.uri}: could not write {self._final} ({exc})") from None
        publish(tmp, self._final)

    def _release(self) -> None:
        self._data = np.zeros((0, 0, 0), dtype=self.dtype)  # free the memory


# ---- hooks ---------------------------------------------------------------------------------------


@hookimpl
def ffnops_schemes() -> list[Scheme]:
    return [
        Scheme(
            SCHEME,
            "multi-page TIFF stack or directory of 2-D TIFF slices (tifffile); writes stacks",
            read=True,
            write=True,
            example="tiff://stack.tif",
        )
    ]


@hookimpl
def ffnops_open_volume(uri: VolumeURI, mode: str) -> Volume | None:
    if uri.scheme != SCHEME:
        return None  # not ours: the next plugin is asked
    path = _path(uri)
    if mode != "r":
        raise VolumeError(
            f"{uri.raw}: TIFF volumes open read-only (mode 'r'), not {mode!r}; "
            "write a new stack with create_volume or `ffnops convert` instead"
        )
    if path.is_dir():
        return TiffDirectoryVolume(uri.raw, path, _slice_files(path, uri.raw))
    if not path.exists():
        raise VolumeError(
            f"{uri.raw}: no such TIFF file or directory: {path}; expected a multi-page .tif "
            "stack or a directory of 2-D .tif slices"
        )
    return TiffStackVolume(uri.raw, path)


@hookimpl
def ffnops_create_volume(uri: VolumeURI, spec: VolumeSpec, overwrite: bool) -> Volume | None:
    if uri.scheme != SCHEME:
        return None
    final = _path(uri)
    if final.is_dir() or final.suffix.lower() not in SUFFIXES:
        raise VolumeError(
            f"{uri.raw}: tiff:// writes one multi-page .tif/.tiff file, got {final}; "
            "name a file such as tiff://out.tif"
        )
    refuse_existing(final, uri.raw, overwrite)
    if min(spec.shape) < 1:
        raise VolumeError(f"{uri.raw}: cannot create a TIFF stack of shape {spec.shape}")
    if np.dtype(spec.dtype).kind not in "biuf":
        raise VolumeError(
            f"{uri.raw}: TIFF stacks hold bool, integer or float voxels, not {spec.dtype}"
        )
    return TiffWriterVolume(uri.raw, final, spec)
