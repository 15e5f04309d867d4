"""Read throughput of the ffnops volume API against the format libraries called directly.

For each format ffnops serves -- HDF5 (h5py), N5, zarr v3 and neuroglancer precomputed (all three
through tensorstore) -- a ``size``^3 uint8 volume is written once with ffnops's writers (64^3
chunks; gzip for HDF5, N5 and zarr, raw encoding for precomputed, as ffnops writes images) into a
temporary directory, then read back two ways:

* **ffnops**: ``open_volume(uri).read(BBox(...))``, the API the rest of ffnops uses;
* **direct**: the library the plugin wraps, opened with the same spec and options as the plugin
  opens it (default tensorstore context, so no cache pool on either side; h5py's default chunk
  cache on both sides, the direct side reading a byte-identical copy of the file so that the two
  do not share one), returning the same C-contiguous (z, y, x) array as ffnops.

Two access patterns are timed:

* **random 64^3**: ``--reads`` boxes at random unaligned corners (seeded; both contenders read the
  same corners in the same order);
* **full**: the whole volume in one read, ``--full-reads`` times.

Each store is opened once per contender, outside the timed loop. Both contenders are checked to
return the same voxels, as C-contiguous (z, y, x) arrays, which also warms both up. A timed sample
runs the pattern's reads one at a time, each read done by both contenders back to back (A B, then
B A for the next read, ...), timing every read, so that background load on a shared machine hits
both sides alike. Throughput is voxels delivered (1 byte each) per second, in MB/s (10^6 bytes),
the median over ``--repeats`` samples; the ratio is the median over samples of the per-sample
ffnops / direct throughput. The target is a ratio >= 0.9 for every format and pattern; the exit
status is 1 if any row misses it.

The data is EM-like: the FIB-25 training sample (``grayscale_maps.h5``, ``raw``, 250^3) reflected
out to ``size``^3 when that file is present, else low-pass filtered noise.

Run::

    python benchmarks/io.py [--size 256] [--reads 50] [--full-reads 4] [--repeats 7]
                            [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import tensorstore as ts
from datasets import FIB25_IMAGE
from machine import cpu_model, library_versions

from ffnops.volume import BBox, Volume
from ffnops.volumes import open_volume, write_array

BLOCK = 64
TARGET_RATIO = 0.9
EM_SAMPLE = FIB25_IMAGE
EM_DATASET = "raw"

Vec3 = tuple[int, int, int]
Array = npt.NDArray[np.generic]
BoxReader = Callable[[Vec3, Vec3], Array]
FullReader = Callable[[], Array]


@dataclass(frozen=True)
class Contender:
    """One way of reading a volume: a box (start, size; both z, y, x) or everything."""

    name: str
    read_box: BoxReader
    read_all: FullReader


@dataclass(frozen=True)
class Format:
    """A format under test: its file name, its ffnops URI, and how to open it without ffnops."""

    name: str
    filename: str
    uri: Callable[[Path], str]
    open_direct: Callable[[Path, ExitStack], Contender]


@dataclass(frozen=True)
class Row:
    """One line of the result table: median MB/s of each contender, median paired ratio."""

    fmt: str
    pattern: str
    ffnops_mbps: float
    direct_mbps: float
    ratio: float

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGET_RATIO


# ---- data ------------------------------------------------------------------------------------


def em_like_volume(size: int, seed: int) -> tuple[Array, str]:
    """A ``size``^3 uint8 volume of EM data (or smooth noise if the sample is absent)."""
    if EM_SAMPLE.exists():
        with h5py.File(EM_SAMPLE, "r") as handle:
            raw = np.asarray(handle[EM_DATASET][...], dtype=np.uint8)
        pad = [(0, max(0, size - n)) for n in raw.shape]
        volume = np.pad(raw, pad, mode="reflect")[:size, :size, :size]
        return np.ascontiguousarray(volume), f"{EM_SAMPLE} [{EM_DATASET}] {raw.shape}, reflected"
    return smooth_noise(size, seed), "synthetic low-pass filtered noise"


def smooth_noise(size: int, seed: int, sigma: float = 3.0) -> Array:
    """Gaussian-filtered white noise (in Fourier space) plus a little grain, as uint8."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((size,) * 3)
    freq = np.fft.fftfreq(size)
    fz, fy, fx = np.meshgrid(freq, freq, np.fft.rfftfreq(size), indexing="ij")
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (fz**2 + fy**2 + fx**2))
    smooth = np.fft.irfftn(np.fft.rfftn(noise) * gain, s=noise.shape)
    smooth = (smooth - smooth.mean()) / smooth.std() + 0.15 * rng.standard_normal(smooth.shape)
    volume: Array = np.rint(128 + 40 * smooth).clip(0, 255).astype(np.uint8)
    return volume


def random_corners(size: int, count: int, seed: int) -> list[Vec3]:
    """``count`` random (z, y, x) corners of BLOCK^3 boxes inside the volume, none chunk-aligned."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(1, size - BLOCK, size=(count, 3))
    corners[corners % BLOCK == 0] -= 1
    return [(int(z), int(y), int(x)) for z, y, x in corners]


# ---- contenders ------------------------------------------------------------------------------


def kvstore(path: Path) -> str:
    """The kvstore URL the tensorstore plugins build for a local path."""
    return "file://" + str(path.absolute()) + "/"


def open_ts(spec: dict[str, object]) -> ts.TensorStore:
    """Opens a store the way ``ffnops_plugins.tensorstore_volume.open_store`` does (read-only)."""
    return ts.open(spec, read=True, write=False).result()


def direct_hdf5(path: Path, stack: ExitStack) -> Contender:
    # HDF5 shares one open file, and with it each dataset's chunk cache, among all handles of the
    # same file in a process: h5py.File(path) here would get the very dataset ffnops has open, and
    # with reads interleaved each side would find the chunks the other just decompressed. A
    # byte-identical copy gives the direct contender its own cache, of the same default size.
    copy = path.with_name(f"{path.stem}.direct{path.suffix}")
    shutil.copyfile(path, copy)
    dataset = stack.enter_context(h5py.File(copy, "r"))[EM_DATASET]

    def read_box(start: Vec3, size: Vec3) -> Array:
        (z, y, x), (nz, ny, nx) = start, size
        return np.asarray(dataset[z : z + nz, y : y + ny, x : x + nx])

    return Contender("direct", read_box, lambda: np.asarray(dataset[:, :, :]))


def read_xyz(store: ts.TensorStore, start: Vec3, size: Vec3) -> Array:
    """Reads a (z, y, x) box of an x, y, z(, channel 0) store; returns it as a (z, y, x) view.

    N5 and precomputed list axes x, y, z and keep each chunk's x fastest, i.e. their native
    layout is Fortran order in (x, y, z) = C order in (z, y, x), which is also what ffnops returns
    (a C-order read of the ``.T`` view). Reading with ``order="F"`` and taking ``.T`` (a zero-copy
    view) gives the caller the same C-contiguous (z, y, x) array. Tensorstore's default
    ``order="C"`` would add a transposing copy that ffnops does not make (1.2x to 14x slower on a
    2-core EPYC VM), so it would flatter the wrapper rather than measure it.
    """
    (z, y, x), (nz, ny, nx) = start, size
    box = store[x : x + nx, y : y + ny, z : z + nz]
    if box.rank == 4:
        box = box[..., 0]
    return np.asarray(box.read(order="F").result()).T


def whole_xyz(store: ts.TensorStore) -> tuple[Vec3, Vec3]:
    """(start, size), both (z, y, x), of the whole of an x, y, z(, channel) store."""
    nx, ny, nz = (int(n) for n in store.shape[:3])
    return (0, 0, 0), (nz, ny, nx)


def direct_n5(path: Path, stack: ExitStack) -> Contender:
    store = open_ts({"driver": "n5", "kvstore": kvstore(path)})
    return Contender("direct", partial(read_xyz, store), lambda: read_xyz(store, *whole_xyz(store)))


def direct_zarr3(path: Path, stack: ExitStack) -> Contender:
    store = open_ts({"driver": "zarr3", "kvstore": kvstore(path)})

    def read_box(start: Vec3, size: Vec3) -> Array:
        (z, y, x), (nz, ny, nx) = start, size
        return np.asarray(store[z : z + nz, y : y + ny, x : x + nx].read().result())

    return Contender("direct", read_box, lambda: np.asarray(store.read().result()))


def direct_precomputed(path: Path, stack: ExitStack) -> Contender:
    spec = {"driver": "neuroglancer_precomputed", "kvstore": kvstore(path), "scale_index": 0}
    store = open_ts(spec)  # axes x, y, z, channel
    return Contender("direct", partial(read_xyz, store), lambda: read_xyz(store, *whole_xyz(store)))


def ffnops_contender(volume: Volume) -> Contender:
    def read_box(start: Vec3, size: Vec3) -> Array:
        return volume.read(BBox(start, size))

    return Contender("ffnops", read_box, volume.read)


FORMATS = (
    Format("hdf5", "vol.h5", lambda p: f"h5://{p}#{EM_DATASET}", direct_hdf5),
    Format("n5", "vol.n5", lambda p: f"n5://{p}", direct_n5),
    Format("zarr3", "vol.zarr", lambda p: f"zarr://{p}", direct_zarr3),
    Format("precomputed", "vol.precomputed", lambda p: f"precomputed://{p}", direct_precomputed),
)


@contextmanager
def contenders(fmt: Format, path: Path) -> Iterator[tuple[Contender, Contender]]:
    """(ffnops, direct) readers of one written volume, each opened once; closed on exit."""
    with ExitStack() as stack:
        volume = open_volume(fmt.uri(path))
        stack.callback(volume.close)
        yield ffnops_contender(volume), fmt.open_direct(path, stack)


# ---- timing ----------------------------------------------------------------------------------


def check_same(data: Array, corners: list[Vec3], pair: tuple[Contender, Contender]) -> None:
    """Both contenders return the written voxels as C-contiguous (z, y, x) arrays.

    Doubles as the warm-up (first reads, page cache, thread pools) of both contenders.
    """
    for contender in pair:
        results = [(corner, contender.read_box(corner, (BLOCK,) * 3)) for corner in corners[:5]]
        results.append(((0, 0, 0), contender.read_all()))
        for (z, y, x), got in results:
            expected = data[z : z + got.shape[0], y : y + got.shape[1], x : x + got.shape[2]]
            if got.shape != expected.shape or not np.array_equal(got, expected):
                raise AssertionError(f"{contender.name}: read at {(z, y, x)} differs")
            if not got.flags.c_contiguous:
                print(
                    f"note: {contender.name} returns a non-C-contiguous array (strides "
                    f"{got.strides}); callers needing C order pay for a copy"
                )


Op = Callable[[Contender], object]


def read_box_at(corner: Vec3, contender: Contender) -> Array:
    return contender.read_box(corner, (BLOCK,) * 3)


def read_all(contender: Contender) -> Array:
    return contender.read_all()


def paired_sample(pair: tuple[Contender, Contender], ops: list[Op]) -> tuple[float, float]:
    """Seconds each contender spends on ``ops``, run back to back per op (A B, then B A, ...).

    Interleaving at the level of single reads puts both contenders under the same background
    load, however quickly it changes; alternating who goes first cancels any benefit of going
    second (CPU caches holding what the other just read).
    """
    gc.collect()
    spent = [0.0, 0.0]
    for i, op in enumerate(ops):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.perf_counter()
            op(pair[k])
            spent[k] += time.perf_counter() - start
    return spent[0], spent[1]


def measure(
    fmt: str,
    pattern: str,
    pair: tuple[Contender, Contender],
    ops: list[Op],
    nbytes: int,
    repeats: int,
) -> Row:
    """``repeats`` paired samples: median MB/s of each contender and median per-sample ratio."""
    samples = [paired_sample(pair, ops) for _ in range(repeats)]
    ffnops_mbps = statistics.median(nbytes / a / 1e6 for a, _ in samples)
    direct_mbps = statistics.median(nbytes / b / 1e6 for _, b in samples)
    ratio = statistics.median(b / a for a, b in samples)
    return Row(fmt, pattern, ffnops_mbps, direct_mbps, ratio)


def benchmark_format(
    fmt: Format, data: Array, workdir: Path, args: argparse.Namespace
) -> list[Row]:
    """Writes ``data`` with ffnops in ``fmt``, then times both contenders on both patterns."""
    path = workdir / fmt.filename
    write_array(fmt.uri(path), data, voxel_size=(8, 8, 8), chunks=(BLOCK,) * 3, overwrite=True)
    corners = random_corners(data.shape[0], args.reads, args.seed)
    box_bytes = len(corners) * BLOCK**3 * data.itemsize
    random_ops: list[Op] = [partial(read_box_at, corner) for corner in corners]
    full_ops: list[Op] = [read_all] * args.full_reads
    with contenders(fmt, path) as pair:
        check_same(data, corners, pair)
        return [
            measure(
                fmt.name,
                f"random {BLOCK}^3 x{len(corners)}",
                pair,
                random_ops,
                box_bytes,
                args.repeats,
            ),
            measure(
                fmt.name,
                f"full {data.shape[0]}^3 x{args.full_reads}",
                pair,
                full_ops,
                args.full_reads * data.nbytes,
                args.repeats,
            ),
        ]


# ---- report ----------------------------------------------------------------------------------


def versions() -> str:
    return library_versions("ffnops", "numpy", "h5py", "tensorstore")


def table(rows: list[Row]) -> str:
    header = (
        f"{'format':<12} {'pattern':<18} {'ffnops MB/s':>12} {'direct MB/s':>12} {'ratio':>6}"
        "  result"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        verdict = "PASS" if r.passed else "FAIL"
        lines.append(
            f"{r.fmt:<12} {r.pattern:<18} {r.ffnops_mbps:>12.1f} {r.direct_mbps:>12.1f} "
            f"{r.ratio:>6.3f}  {verdict}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic volume (256)")
    parser.add_argument("--reads", type=int, default=50, help="random 64^3 reads per sample (50)")
    parser.add_argument(
        "--full-reads", type=int, default=4, help="full-volume reads per sample (4)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed paired samples (7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of corners and synthetic data")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp directory")
    args = parser.parse_args(argv)
    if args.size <= BLOCK + 1:
        parser.error(f"--size must exceed {BLOCK + 1} to fit unaligned {BLOCK}^3 boxes")
    if min(args.reads, args.full_reads, args.repeats) < 1:
        parser.error("--reads, --full-reads and --repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"CPU: {cpu_model()} ({len(os.sched_getaffinity(0))} usable cores)")
    print(f"Python {platform.python_version()}; {versions()}")
    data, source = em_like_volume(args.size, args.seed)
    print(f"Data: {data.shape} {data.dtype} from {source}; chunks {BLOCK}^3")
    print(
        f"{args.repeats} samples; in each, every read is done by both contenders back to back, "
        "alternating who goes first."
    )
    print(
        "MB/s: median over samples; ratio: median of per-sample ffnops/direct; "
        f"target ratio >= {TARGET_RATIO}"
    )
    print()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ffnops-io-bench-", dir=args.workdir) as tmp:
        for fmt in FORMATS:
            rows.extend(benchmark_format(fmt, data, Path(tmp), args))
    print(table(rows))
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
