"""Opening, creating and writing volumes by URI, through whichever plugin serves the scheme.

This is the only way the rest of ffnops touches data: it never imports a file-format library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from ffnops.errors import FfnopsError, UnknownSchemeError, VolumeError
from ffnops.ffn.geometry import as_vec3
from ffnops.plugins import Plugins, get_plugins
from ffnops.segmentation import SegmentationResult
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import BBox, Volume, VolumeSpec


def installed_schemes(plugins: Plugins | None = None) -> list[Scheme]:
    """Every scheme an installed (working) plugin serves, in registration order."""
    plugins = plugins or get_plugins()
    schemes: list[Scheme] = []
    for answer in reversed(plugins.hook.ffnops_schemes()):
        schemes.extend(answer)
    return schemes


def _unknown_scheme(uri: VolumeURI, action: str, plugins: Plugins) -> UnknownSchemeError:
    wanted = "write" if action != "open" else "read"
    served = [s for s in installed_schemes(plugins) if getattr(s, wanted)]
    listing = ", ".join(f"{s.name}://" for s in served) or "none"
    what = f"scheme {uri.scheme}://" if uri.scheme else "a path without a scheme"
    hint = " (for Google's form use path/file.h5:dataset)" if not uri.scheme else ""
    return UnknownSchemeError(
        f"{uri.raw}: no installed plugin can {action} {what}{hint}; "
        f"schemes that can {wanted}: {listing}. See `ffnops plugins`."
    )


def open_volume(
    uri: str | VolumeURI,
    mode: str = "r",
    *,
    dtypes: Iterable[npt.DTypeLike] | None = None,
    plugins: Plugins | None = None,
) -> Volume:
    """Opens an existing volume lazily. ``dtypes``, if given, are the element types accepted."""
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
    parsed = uri if isinstance(uri, VolumeURI) else VolumeURI.parse(uri)
    plugins = plugins or get_plugins()
    volume = plugins.hook.ffnops_open_volume(uri=parsed, mode=mode)
    if volume is None:
        raise _unknown_scheme(parsed, "open", plugins)
    if dtypes is not None:
        require_dtype(volume, dtypes)
    return volume  # type: ignore[no-any-return]


def check_same_voxels(
    volume: Volume, named: str, reference: Volume, reference_named: str, why: str
) -> None:
    """``volume`` covers the voxels ``reference`` does (shape, voxel size and offset), or one
    line naming both as ``named`` / ``reference_named`` and ``why`` it matters."""
    for what in ("shape", "voxel_size", "offset"):
        mine, theirs = getattr(volume, what), getattr(reference, what)
        if tuple(mine) != tuple(theirs):
            raise FfnopsError(
                f"{named} has {what} {list(mine)}, {reference_named} has {list(theirs)} "
                f"(z, y, x): {why}"
            )


def placed_in(volume: Volume, named: str, reference: Volume, reference_named: str) -> BBox:
    """Where ``volume`` lies in ``reference``'s voxels (all of it, or a part, as ``infer
    bbox=`` writes one), placed by their offsets; one line if their voxel sizes differ or it
    reaches outside."""
    if not np.allclose(volume.voxel_size, reference.voxel_size):
        raise FfnopsError(
            f"{named} has voxels of {list(volume.voxel_size)} nm, {reference_named} of "
            f"{list(reference.voxel_size)} nm (z, y, x): they must be the same grid"
        )
    start = [int(a) - int(b) for a, b in zip(volume.offset, reference.offset, strict=True)]
    box = BBox(as_vec3(start), as_vec3(volume.shape))
    if not box.inside(reference.shape):
        raise FfnopsError(
            f"{named} (shape {list(volume.shape)}, offset {list(volume.offset)}) covers "
            f"[{box}] of {reference_named}'s voxels, which are [{BBox.from_shape(reference.shape)}]"
            f" (offset {list(reference.offset)}): it must lie inside them"
        )
    return box


def box_of(volume: Volume, text: str | None, key: str = "bbox") -> BBox:
    """The box ``key=text`` names in ``volume`` (all of it when unset), checked: of the form
    ``z0:z1,y0:y1,x0:x1``, not empty, and inside the volume."""
    if not text:
        return BBox.from_shape(volume.shape)
    try:
        box = BBox.parse(str(text))
    except ValueError as exc:
        raise FfnopsError(f"{key}={text}: {exc}") from None
    if min(box.size) < 1:
        raise FfnopsError(f"{key}={text}: the box is empty (sizes {box.size}, z, y, x)")
    if not box.inside(volume.shape):
        raise FfnopsError(
            f"{key}=[{box}] lies outside the volume {volume.uri}, whose shape is {volume.shape} "
            "(z, y, x)"
        )
    return box


def require_dtype(volume: Volume, dtypes: Iterable[npt.DTypeLike]) -> None:
    """Raises a VolumeError naming the volume unless its dtype is one of ``dtypes``."""
    allowed = [np.dtype(d) for d in dtypes]
    if volume.dtype not in allowed:
        names = ", ".join(d.name for d in allowed)
        raise VolumeError(f"{volume.uri}: expected dtype {names}, found {volume.dtype.name}")


def create_volume(
    uri: str | VolumeURI,
    spec: VolumeSpec,
    *,
    overwrite: bool = False,
    plugins: Plugins | None = None,
) -> Volume:
    """Creates a volume under a temporary name; it appears at ``uri`` on ``commit()``."""
    parsed = uri if isinstance(uri, VolumeURI) else VolumeURI.parse(uri)
    plugins = plugins or get_plugins()
    volume = plugins.hook.ffnops_create_volume(uri=parsed, spec=spec, overwrite=overwrite)
    if volume is None:
        raise _unknown_scheme(parsed, "create", plugins)
    return volume  # type: ignore[no-any-return]


def write_array(
    uri: str | VolumeURI,
    data: npt.NDArray[np.generic],
    *,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    offset: tuple[int, int, int] = (0, 0, 0),
    kind: str = "image",
    chunks: tuple[int, int, int] | None = None,
    overwrite: bool = False,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Writes a whole in-memory array as a new volume (atomically).

    ``extra`` carries format-specific choices the plugin understands (e.g. a precomputed
    ``encoding``); formats ignore keys they do not know.
    """
    spec = VolumeSpec(
        shape=data.shape,  # type: ignore[arg-type]
        dtype=data.dtype.name,
        voxel_size=voxel_size,
        offset=offset,
        chunks=chunks,
        kind=kind,  # type: ignore[arg-type]
        extra=dict(extra or {}),
    )
    with create_volume(uri, spec, overwrite=overwrite) as volume:
        volume.write((0, 0, 0), data)


def write_segmentation(
    result: SegmentationResult,
    uri: str | VolumeURI,
    *,
    overwrite: bool = False,
    plugins: Plugins | None = None,
) -> str:
    """Hands a segmentation to the output sink that serves ``uri``; returns where it went."""
    parsed = uri if isinstance(uri, VolumeURI) else VolumeURI.parse(uri)
    plugins = plugins or get_plugins()
    written = plugins.hook.ffnops_write_segmentation(result=result, uri=parsed, overwrite=overwrite)
    if written is None:
        raise _unknown_scheme(parsed, "write a segmentation to", plugins)
    return str(written)
