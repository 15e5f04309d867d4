"""A conformance suite for volume plugins: what every format plugin must do, as ffnops uses it.

Call it from your plugin's own tests with a function that names a fresh URI of your format::

    from ffnops.testing import check_volume_plugin

    def test_my_format(tmp_path):
        check_volume_plugin(lambda name: f"myfmt://{tmp_path}/{name}.myf", writes=True)

Each check raises ``AssertionError`` saying what the plugin did wrong. docs/plugins.md explains
the contract the checks hold it to; the built-in plugins and the example TIFF plugin pass it
(``tests/test_plugin_conformance.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from ffnops.errors import VolumeError, VolumeExistsError
from ffnops.uri import VolumeURI
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import create_volume, installed_schemes, open_volume

# (dtype, kind) pairs written by default; pass ``cases=`` for what your format stores.
DEFAULT_CASES: tuple[tuple[str, str], ...] = (("uint8", "image"), ("uint64", "segmentation"))
SHAPE = (13, 17, 19)  # no axis a multiple of a usual chunk size
VOXEL_SIZE = (40.0, 8.0, 4.0)
OFFSET = (3, 5, 7)


def sample(shape: Sequence[int], dtype: str, seed: int = 0) -> npt.NDArray[np.generic]:
    """A deterministic array whose every voxel differs from its neighbours' (for segmentations,
    ids beyond 2**32 where the type allows)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return rng.random(tuple(shape), dtype=np.float32).astype(kind)
    top = min(np.iinfo(kind).max, 2**40)
    return rng.integers(1, top, size=tuple(shape), dtype=np.uint64).astype(kind)


def check_volume_plugin(
    make_uri: Callable[[str], str],
    *,
    writes: bool = True,
    cases: Sequence[tuple[str, str]] = DEFAULT_CASES,
    stores_offset: bool = True,
    stores_voxel_size: bool = True,
) -> None:
    """Runs every check on the format of ``make_uri(name)`` (a new, unused URI per name).

    ``writes=False``: only the checks that need no writing (an unknown volume is a VolumeError);
    ``stores_offset``/``stores_voxel_size``: false for formats with no place for them (TIFF has no
    offset), which then must open with (0, 0, 0) / (1, 1, 1) or what they derive.
    """
    scheme = VolumeURI.parse(make_uri("probe")).scheme
    listed = {s.name: s for s in installed_schemes()}
    assert scheme in listed, f"scheme {scheme!r} is not listed by any plugin's ffnops_schemes"
    check_missing_volume(make_uri("missing"))
    if not writes:
        return
    assert listed[scheme].write, f"scheme {scheme!r} writes, but its Scheme says write=False"
    for index, (dtype, kind) in enumerate(cases):
        uri = make_uri(f"round_trip_{index}_{dtype}")
        check_round_trip(uri, dtype, kind, stores_offset, stores_voxel_size)
        check_read_errors(uri)
        check_existing_output(uri, dtype, kind)
    dtype, kind = cases[0]
    check_abort_leaves_nothing(make_uri("aborted"), dtype, kind)
    check_shared_writers(make_uri("shared"), dtype, kind)


def _spec(dtype: str, kind: str) -> VolumeSpec:
    return VolumeSpec(SHAPE, dtype, VOXEL_SIZE, OFFSET, kind=kind)  # type: ignore[arg-type]


def check_missing_volume(uri: str) -> None:
    """Opening a volume that does not exist is a VolumeError naming the URI, nothing else."""
    try:
        open_volume(uri).close()
    except VolumeError as error:
        assert uri in str(error) or VolumeURI.parse(uri).path in str(error), (
            f"the error for a missing volume does not name it: {error}"
        )
    else:
        raise AssertionError(f"{uri} does not exist, yet it opened")


def check_round_trip(
    uri: str, dtype: str, kind: str, stores_offset: bool, stores_voxel_size: bool
) -> None:
    """Written in two boxes, committed, reopened: metadata and every box read back equal."""
    data = sample(SHAPE, dtype)
    volume = create_volume(uri, _spec(dtype, kind))
    with volume:
        assert volume.writable, "a created volume must be writable"
        assert volume.shape == SHAPE and volume.dtype == np.dtype(dtype), (
            f"created volume has shape {volume.shape}, dtype {volume.dtype}"
        )
        try:
            open_volume(uri).close()
        except VolumeError:
            pass
        else:
            raise AssertionError(f"{uri} opened before commit(): writes must be atomic")
        volume.write((0, 0, 0), data[:6])
        volume.write(BBox((6, 0, 0), (7, *SHAPE[1:])), data[6:])
    with open_volume(uri) as opened:
        assert opened.shape == SHAPE, f"shape {opened.shape} read back, {SHAPE} written"
        assert opened.dtype == np.dtype(dtype), f"dtype {opened.dtype} read back, {dtype} written"
        if stores_voxel_size:
            assert opened.voxel_size == VOXEL_SIZE, f"voxel size {opened.voxel_size} read back"
        if stores_offset:
            assert opened.offset == OFFSET, f"offset {opened.offset} read back, {OFFSET} written"
        np.testing.assert_array_equal(opened.read(), data, err_msg="the whole volume differs")
        corners = (BBox((0, 0, 0), (1, 1, 1)), BBox((12, 16, 18), (1, 1, 1)))
        for box in (*corners, BBox((5, 3, 2), (4, 9, 11))):
            np.testing.assert_array_equal(
                opened.read(box), data[box.slices], err_msg=f"box [{box}] differs"
            )
        np.testing.assert_array_equal(opened[2:9, 1:3, 4:19], data[2:9, 1:3, 4:19])
        assert not opened.writable, "a volume opened with mode 'r' must not be writable"


def check_read_errors(uri: str) -> None:
    """Boxes outside the volume, writes to a read-only volume and reads after close are
    VolumeErrors (the base class checks them; a plugin must not bypass it)."""
    volume = open_volume(uri)
    for bad, what in (
        (lambda: volume.read(BBox((0, 0, 0), (SHAPE[0] + 1, 1, 1))), "a box outside"),
        (lambda: volume.write((0, 0, 0), np.zeros((1, 1, 1), volume.dtype)), "a read-only write"),
    ):
        try:
            bad()
        except VolumeError:
            pass
        else:
            raise AssertionError(f"{what} was not refused with a VolumeError")
    volume.close()
    try:
        volume.read(BBox((0, 0, 0), (1, 1, 1)))
    except VolumeError:
        pass
    else:
        raise AssertionError("a closed volume could still be read")


def check_existing_output(uri: str, dtype: str, kind: str) -> None:
    """An existing volume is refused without ``overwrite`` (VolumeExistsError, the old data
    untouched) and replaced with it."""
    with open_volume(uri) as opened:
        before = opened.read()
    try:
        create_volume(uri, _spec(dtype, kind)).abort()
    except VolumeExistsError:
        pass
    else:
        raise AssertionError(f"{uri} exists, and creating it again was not refused")
    with open_volume(uri) as opened:
        np.testing.assert_array_equal(opened.read(), before, err_msg="a refused create changed it")
    replacement = sample(SHAPE, dtype, seed=1)
    with create_volume(uri, _spec(dtype, kind), overwrite=True) as volume:
        volume.write((0, 0, 0), replacement)
    with open_volume(uri) as opened:
        np.testing.assert_array_equal(opened.read(), replacement, err_msg="overwrite=True kept it")


def check_abort_leaves_nothing(uri: str, dtype: str, kind: str) -> None:
    """A created volume that is aborted (or left by an exception) never appears."""
    try:
        with create_volume(uri, _spec(dtype, kind)) as volume:
            volume.write((0, 0, 0), sample(SHAPE, dtype))
            raise RuntimeError("the work failed")
    except RuntimeError:
        pass
    try:
        open_volume(uri).close()
    except VolumeError:
        return
    raise AssertionError(f"{uri} appeared although its writer failed before commit()")


def check_shared_writers(uri: str, dtype: str, kind: str) -> None:
    """A format that sets ``shared_uri`` must let another opener (mode ``r+``) write disjoint
    chunk-aligned boxes of the partial output, all of which the committed volume holds."""
    data = sample(SHAPE, dtype, seed=2)
    volume = create_volume(uri, _spec(dtype, kind))
    if volume.shared_uri is None:
        volume.abort()
        return
    chunk_z = volume.chunks[0]
    with open_volume(volume.shared_uri, "r+") as other:
        assert other.writable, "shared_uri opened with mode 'r+' must be writable"
        other.write((0, 0, 0), data[:chunk_z])
    if chunk_z < SHAPE[0]:
        volume.write((chunk_z, 0, 0), data[chunk_z:])
    volume.commit()
    with open_volume(uri) as opened:
        np.testing.assert_array_equal(
            opened.read(), data, err_msg="writes through shared_uri are missing"
        )
