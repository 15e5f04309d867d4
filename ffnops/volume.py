"""The volume API: lazy, chunk-aware 3-D arrays in (z, y, x) order.

A :class:`Volume` is what every data-source plugin returns. It knows its shape, dtype, voxel size
(nm), offset and chunk shape without reading any voxels; :meth:`Volume.read` reads only the box
asked for. Coordinates given to ``read``/``write`` are voxel indices of this volume, starting at 0;
``offset`` says where voxel (0, 0, 0) sits in the dataset's global voxel grid (e.g. precomputed's
``voxel_offset``), so two volumes of one dataset can be aligned without reading them.

Volumes created for writing (:func:`ffnops.volumes.create_volume`) write to a temporary name;
:meth:`Volume.commit` (or leaving the ``with`` block without an error) renames it to its final name,
so a reader never sees a half-written output.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt

from ffnops.errors import FfnopsError, VolumeError
from ffnops.ffn.geometry import Vec3, as_vec3

VoxelSize = tuple[float, float, float]
VolumeKind = Literal["image", "segmentation"]


def funlib_metadata(
    attrs: Mapping[str, Any], reverse: bool = False
) -> tuple[VoxelSize | None, Vec3]:
    """(voxel size or None, offset in voxels) from ``resolution``/``offset`` attributes (nm).

    The funlib/gunpowder convention, common in connectomics HDF5, zarr and N5 files; ``reverse``
    for formats that list axes x, y, z (N5).
    """
    order = slice(None, None, -1) if reverse else slice(None)
    resolution = attrs.get("resolution")
    voxel = None
    if resolution is not None and len(resolution) == 3:
        voxel = tuple(float(v) for v in resolution)[order]
    offset_nm = attrs.get("offset")
    offset: Vec3 = (0, 0, 0)
    if offset_nm is not None and len(offset_nm) == 3:
        scale = voxel or (1.0, 1.0, 1.0)
        nm = tuple(float(o) for o in offset_nm)[order]
        offset = as_vec3([round(o / s) for o, s in zip(nm, scale, strict=True)])
    return voxel, offset  # type: ignore[return-value]


@dataclass(frozen=True)
class BBox:
    """A box of voxels: ``start`` (inclusive) and ``size``, both (z, y, x)."""

    start: Vec3
    size: Vec3

    def __post_init__(self) -> None:
        # Boxes are made for every read: skip the conversion when given plain 3-tuples already.
        if type(self.start) is not tuple or len(self.start) != 3:
            object.__setattr__(self, "start", as_vec3(self.start, "bbox start"))
        if type(self.size) is not tuple or len(self.size) != 3:
            object.__setattr__(self, "size", as_vec3(self.size, "bbox size"))
        if min(self.size) < 0:
            raise ValueError(f"bbox size must not be negative, got {self.size}")

    @classmethod
    def from_shape(cls, shape: Sequence[int]) -> BBox:
        return cls((0, 0, 0), as_vec3(shape, "shape"))

    @classmethod
    def from_slices(cls, slices: Sequence[slice], shape: Sequence[int]) -> BBox:
        """The box numpy-style slices (step 1, no negative bounds past the start) select."""
        if len(slices) != 3:
            raise ValueError(f"expected 3 slices (z, y, x), got {len(slices)}")
        start, size = [], []
        for s, n in zip(slices, shape, strict=True):
            lo, hi, step = s.indices(n)
            if step != 1:
                raise ValueError(
                    "volumes are read with step 1; subsample the returned array instead"
                )
            start.append(lo)
            size.append(max(hi - lo, 0))
        return cls(as_vec3(start), as_vec3(size))

    @classmethod
    def parse(cls, text: str) -> BBox:
        """Parses ``"z0:z1,y0:y1,x0:x1"`` (the form the CLI takes)."""
        match = re.fullmatch(r"\s*(\d+):(\d+)\s*,\s*(\d+):(\d+)\s*,\s*(\d+):(\d+)\s*", text)
        if not match:
            raise ValueError(f"bbox {text!r} is not of the form 'z0:z1,y0:y1,x0:x1'")
        v = [int(g) for g in match.groups()]
        starts, stops = v[0::2], v[1::2]
        if any(b < a for a, b in zip(starts, stops, strict=True)):
            raise ValueError(f"bbox {text!r} has a stop before its start")
        return cls(as_vec3(starts), as_vec3([b - a for a, b in zip(starts, stops, strict=True)]))

    @property
    def stop(self) -> Vec3:
        (z, y, x), (dz, dy, dx) = self.start, self.size
        return (z + dz, y + dy, x + dx)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        (z0, y0, x0), (z1, y1, x1) = self.start, self.stop
        return (slice(z0, z1), slice(y0, y1), slice(x0, x1))

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.size))

    def inside(self, shape: Sequence[int]) -> bool:
        (z0, y0, x0), (z1, y1, x1) = self.start, self.stop
        return min(z0, y0, x0) >= 0 and z1 <= shape[0] and y1 <= shape[1] and x1 <= shape[2]

    def intersect(self, other: BBox) -> BBox | None:
        """The voxels both boxes hold, or None when they do not overlap."""
        start = as_vec3([max(a, b) for a, b in zip(self.start, other.start, strict=True)])
        stop = [min(a, b) for a, b in zip(self.stop, other.stop, strict=True)]
        if any(e <= s for s, e in zip(start, stop, strict=True)):
            return None
        return BBox(start, as_vec3([e - s for s, e in zip(start, stop, strict=True)]))

    def grown(self, by: Sequence[int], within: BBox) -> BBox:
        """This box with ``by`` voxels more on each side (z, y, x), cut to ``within``."""
        lo = [max(s - b, w) for s, b, w in zip(self.start, by, within.start, strict=True)]
        hi = [min(e + b, w) for e, b, w in zip(self.stop, by, within.stop, strict=True)]
        return BBox(as_vec3(lo), as_vec3([max(h - a, 0) for a, h in zip(lo, hi, strict=True)]))

    def shifted(self, by: Sequence[int]) -> BBox:
        """The same box with ``by`` subtracted from its start (a change of origin)."""
        return BBox(as_vec3([s - b for s, b in zip(self.start, by, strict=True)]), self.size)

    def blocks(self, block: Sequence[int]) -> list[BBox]:
        """Tiles this box with boxes of shape ``block`` (smaller at the far edges), C order."""
        step = as_vec3(block, "block")
        if min(step) < 1:
            raise ValueError(f"block must be positive, got {step}")
        ranges = [range(a, b, s) for a, b, s in zip(self.start, self.stop, step, strict=True)]
        corners = [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]
        return [
            BBox(c, as_vec3([min(s, e - o) for o, s, e in zip(c, step, self.stop, strict=True)]))
            for c in corners
        ]

    def __str__(self) -> str:
        return ",".join(f"{a}:{b}" for a, b in zip(self.start, self.stop, strict=True))


@dataclass(frozen=True)
class VolumeSpec:
    """What a writer needs to create a volume. ``chunks=None`` lets the format choose."""

    shape: Vec3
    dtype: str
    voxel_size: VoxelSize = (1.0, 1.0, 1.0)
    offset: Vec3 = (0, 0, 0)
    chunks: Vec3 | None = None
    kind: VolumeKind = "image"
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_vec3(self.shape, "shape"))
        object.__setattr__(self, "offset", as_vec3(self.offset, "offset"))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "voxel_size", tuple(float(v) for v in self.voxel_size))
        if self.chunks is not None:
            object.__setattr__(self, "chunks", as_vec3(self.chunks, "chunks"))
        if self.kind not in ("image", "segmentation"):
            raise ValueError(f"kind must be 'image' or 'segmentation', got {self.kind!r}")

    def chunks_or(self, default: int = 64) -> Vec3:
        """The chunk shape to use: the one asked for, else ``default`` clipped to the shape."""
        if self.chunks is not None:
            return self.chunks
        return tuple(max(1, min(default, n)) for n in self.shape)  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class Volume(ABC):
    """A lazy 3-D array on disk or over HTTP.

    Plugins implement ``_read`` (and ``_write``), plus ``_commit``/``_abort``/``_release`` for
    their files; the base class checks boxes, dtypes and the open/closed life cycle, and turns a
    format library's exceptions into a :class:`VolumeError` naming the volume. Attributes come
    from the format's metadata when the volume is opened; no voxels are read until :meth:`read`.
    """

    def __init__(
        self,
        uri: str,
        shape: Sequence[int],
        dtype: npt.DTypeLike,
        *,
        chunks: Sequence[int] | None = None,
        voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
        offset: Sequence[int] = (0, 0, 0),
        writable: bool = False,
    ) -> None:
        if len(shape) != 3:
            raise VolumeError(
                f"{uri}: expected a 3-D (z, y, x) volume, found {len(shape)} dimensions "
                f"with shape {tuple(shape)}"
            )
        if min(int(n) for n in shape) < 1:
            raise VolumeError(f"{uri}: empty volume, shape {tuple(shape)} (z, y, x)")
        sizes = tuple(float(v) for v in voxel_size)
        if len(sizes) != 3 or not all(math.isfinite(v) and v > 0 for v in sizes):
            raise VolumeError(
                f"{uri}: voxel size {sizes} (z, y, x): expected three positive, finite numbers"
            )
        self.uri = uri
        self.shape: Vec3 = as_vec3(shape)
        self.dtype = np.dtype(dtype)
        self.chunks: Vec3 = as_vec3(chunks) if chunks is not None else self.shape
        self.voxel_size: VoxelSize = tuple(float(v) for v in voxel_size)  # type: ignore[assignment]
        self.offset: Vec3 = as_vec3(offset)
        self.writable = writable
        self._closed = False
        # Where other processes open this created volume (mode "r+") to write disjoint,
        # chunk-aligned boxes before it is committed; None if the format takes one writer.
        self.shared_uri: str | None = None

    # ---- reading and writing -------------------------------------------------------------------

    def read(self, bbox: BBox | None = None) -> npt.NDArray[np.generic]:
        """Reads ``bbox`` (the whole volume if None) into a numpy array of shape ``bbox.size``."""
        box = bbox if bbox is not None else BBox.from_shape(self.shape)
        self._check_open()
        self._check_inside(box)
        try:
            return self._read(box)
        except FfnopsError:
            raise
        except Exception as exc:  # a format library's own error: name the volume and box
            raise VolumeError(f"{self.uri}: reading [{box}] failed: {_describe(exc)}") from exc

    def write(self, start: BBox | Sequence[int], data: npt.ArrayLike) -> None:
        """Writes ``data`` with its first voxel at ``start`` (a (z, y, x) corner or a BBox)."""
        self._check_open()
        if not self.writable:
            raise VolumeError(f"{self.uri}: opened read-only; open it for writing to change it")
        array = np.asarray(data)
        if array.ndim != 3:
            raise VolumeError(
                f"{self.uri}: can only write 3-D (z, y, x) arrays, got {array.ndim}-D"
            )
        corner = start.start if isinstance(start, BBox) else as_vec3(start, "start")
        box = BBox(corner, as_vec3(array.shape))
        if isinstance(start, BBox) and start.size != box.size:
            raise VolumeError(f"{self.uri}: array shape {array.shape} does not fit bbox {start}")
        self._check_inside(box)
        if not np.can_cast(array.dtype, self.dtype, casting="same_kind"):
            raise VolumeError(
                f"{self.uri}: cannot store {array.dtype} data in a {self.dtype} volume"
            )
        try:
            self._write(box, array.astype(self.dtype, copy=False))
        except FfnopsError:
            raise
        except Exception as exc:
            raise VolumeError(f"{self.uri}: writing [{box}] failed: {_describe(exc)}") from exc

    def __getitem__(self, key: tuple[slice, slice, slice]) -> npt.NDArray[np.generic]:
        """``volume[z0:z1, y0:y1, x0:x1]`` reads that box."""
        if not isinstance(key, tuple) or not all(isinstance(k, slice) for k in key):
            raise TypeError("index a volume with three slices, e.g. vol[0:64, 0:64, 0:64]")
        return self.read(BBox.from_slices(key, self.shape))

    def _check_open(self) -> None:
        if self._closed:
            raise VolumeError(f"{self.uri}: the volume is closed; open it again to use it")

    def _check_inside(self, box: BBox) -> None:
        if not box.inside(self.shape):
            raise VolumeError(
                f"{self.uri}: bbox [{box}] (z, y, x) lies outside the volume, whose shape is "
                f"{self.shape}"
            )

    @abstractmethod
    def _read(self, box: BBox) -> npt.NDArray[np.generic]:
        """Reads a box known to lie inside the volume."""

    def _write(self, box: BBox, data: npt.NDArray[np.generic]) -> None:
        raise VolumeError(f"{self.uri}: this format's plugin cannot write")

    # ---- life cycle ----------------------------------------------------------------------------

    def commit(self) -> None:
        """Publishes a created volume under its final name and closes it; safe to call twice.

        For a volume opened from an existing one this only releases its handles.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._commit()
        except BaseException:
            with suppress(Exception):
                self._abort()
            raise

    def abort(self) -> None:
        """Discards what a created volume has written (nothing is published) and closes it."""
        if self._closed:
            return
        self._closed = True
        self._abort()

    def close(self) -> None:
        """Closes the volume; a created volume is committed (as leaving a ``with`` block does)."""
        self.commit()

    # Plugins override these three; the public methods above keep the life-cycle rules.
    def _commit(self) -> None:
        """Makes written data visible under the final name, then releases handles."""
        self._release()

    def _abort(self) -> None:
        """Removes partial output, then releases handles."""
        self._release()

    def _release(self) -> None:  # noqa: B027 - optional: not every format holds a handle
        """Closes file handles."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def describe(self) -> dict[str, object]:
        """The volume's metadata as plain values (for ``ffnops info`` and MLflow params)."""
        return {
            "uri": self.uri,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "chunks": list(self.chunks),
            "voxel_size": list(self.voxel_size),
            "offset": list(self.offset),
            "format": type(self).__name__,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.uri!r}, shape={self.shape}, dtype={self.dtype.name}, "
            f"chunks={self.chunks}, voxel_size={self.voxel_size}, offset={self.offset})"
        )
