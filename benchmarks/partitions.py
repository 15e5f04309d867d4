"""Seconds for ``compute_partitions`` on a full FIB-25 training sample, with Google's settings.

The labels are FIB-25 ``training_sample2`` (``groundtruth.h5``, dataset ``stack``, 175 x 250 x
250 uint64), read once into memory (not timed). ``compute_partitions`` runs on them with the
settings of Google's FFN README for FIB-25: the 12 ``FIB25_THRESHOLDS``, ``lom_radius`` 24 and
``min_size`` 10000 (one process; numpy and scipy run single-threaded here). Each of
``--repeats`` runs is timed with ``time.perf_counter()``; the table shows the median and the
fastest run, in seconds and in input voxels per second. The partition counts (voxels per
partition value; 255 = excluded border) of the result follow. The load average is printed
before and after: times taken under other load are not comparable.

For context, unless ``--no-reference``, a port of Google's own algorithm
(``ffn/training/compute_partitions.py``: a summed-volume table of the *whole* volume for every
label, then one masked assignment per threshold) is timed once in the same run on the same
labels, and its output is checked to be identical to ffnops's inside the valid region (Google
returns only that region; ffnops marks the border 255). Neither is a per-voxel brute force.

If the FIB-25 sample is absent, the benchmark says so and exits with status 0 without timing.

Run::

    python benchmarks/partitions.py [--repeats 3] [--no-reference] [--labels PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
from datasets import FIB25_LABELS
from machine import cpu_model, library_versions, load_average

from ffnops.ffn.partitions import (
    FIB25_THRESHOLDS,
    clear_dust,
    compute_partitions,
    partition_counts,
)

LABELS = FIB25_LABELS
DATASET = "stack"
LOM_RADIUS = 24
MIN_SIZE = 10000

Labels = npt.NDArray[np.integer]
Partitions = npt.NDArray[np.uint8]


# ---- contenders ------------------------------------------------------------------------------


def ffnops_partitions(labels: Labels) -> Partitions:
    return compute_partitions(labels, FIB25_THRESHOLDS, LOM_RADIUS, min_size=MIN_SIZE)


def google_partitions(labels: Labels) -> Partitions:
    """Google's algorithm (same radius on every axis): the valid region only, no border."""
    seg = clear_dust(labels, MIN_SIZE)
    diam = 2 * LOM_RADIUS + 1
    inner = (slice(LOM_RADIUS, -LOM_RADIUS),) * 3
    output = np.zeros(seg[inner].shape, dtype=np.uint8)
    thresholds = sorted(FIB25_THRESHOLDS)
    for label in np.unique(seg):
        if label == 0:
            continue
        object_mask = seg == label
        svt = np.pad(object_mask.astype(np.int32).cumsum(0).cumsum(1).cumsum(2), [(1, 0)] * 3)
        active = (
            svt[diam:, diam:, diam:]
            - svt[:-diam, diam:, diam:]
            - svt[diam:, :-diam, diam:]
            - svt[diam:, diam:, :-diam]
            + svt[:-diam, :-diam, diam:]
            + svt[:-diam, diam:, :-diam]
            + svt[diam:, :-diam, :-diam]
            - svt[:-diam, :-diam, :-diam]
        ) / diam**3
        object_mask = object_mask[inner]
        for i, th in enumerate(thresholds):
            output[object_mask & (active < th) & (output == 0)] = i + 1
        output[object_mask & (active >= thresholds[-1]) & (output == 0)] = len(thresholds) + 1
    return output


# ---- timing ----------------------------------------------------------------------------------


def timed(fn: Callable[[Labels], Partitions], labels: Labels) -> tuple[float, Partitions]:
    start = time.perf_counter()
    out = fn(labels)
    return time.perf_counter() - start, out


def load_labels(path: Path) -> Labels:
    with h5py.File(path, "r") as handle:
        return np.asarray(handle[DATASET][...])


# ---- report ----------------------------------------------------------------------------------


def versions() -> str:
    return library_versions("ffnops", "numpy", "scipy", "h5py")


def timing_table(rows: Sequence[tuple[str, Sequence[float]]], voxels: int) -> str:
    header = (
        f"{'contender':<22} {'runs':>4} {'median s':>9} {'best s':>8} {'Mvoxels/s':>10} "
        f"{'vs ffnops':>10}"
    )
    lines = [header, "-" * len(header)]
    base = statistics.median(rows[0][1])
    for name, seconds in rows:
        median = statistics.median(seconds)
        lines.append(
            f"{name:<22} {len(seconds):>4} {median:>9.2f} {min(seconds):>8.2f} "
            f"{voxels / median / 1e6:>10.2f} {median / base:>9.2f}x"
        )
    return "\n".join(lines)


def counts_table(counts: dict[int, int]) -> str:
    total = sum(counts.values())
    lines = [f"{'partition':>9} {'voxels':>10} {'share':>7}", "-" * 28]
    for value, n in counts.items():
        lines.append(f"{value:>9} {n:>10} {n / total:>7.2%}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed ffnops runs (3)")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip Google's algorithm (one run)"
    )
    parser.add_argument("--labels", type=Path, default=LABELS, help=f"HDF5 file ({LABELS})")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.labels.is_file():
        print(f"SKIPPED: FIB-25 labels {args.labels} not found (need its '{DATASET}' dataset)")
        return 0
    print(
        f"CPU: {cpu_model()} ({len(os.sched_getaffinity(0))} usable cores); "
        f"load average {load_average()}"
    )
    print(f"Python {platform.python_version()}; {versions()}")
    labels = load_labels(args.labels)
    ids, sizes = np.unique(labels, return_counts=True)
    kept = int(((sizes >= MIN_SIZE) & (ids != 0)).sum())
    print(
        f"Labels: {args.labels} [{DATASET}] {labels.shape} {labels.dtype}, {labels.size} voxels; "
        f"{int((ids != 0).sum())} nonzero ids, {kept} with >= {MIN_SIZE} voxels"
    )
    print(
        f"Settings: thresholds {list(FIB25_THRESHOLDS)}, lom_radius {LOM_RADIUS}, "
        f"min_size {MIN_SIZE}"
    )
    print()
    seconds, result = [], None
    for _ in range(args.repeats):
        t, result = timed(ffnops_partitions, labels)
        seconds.append(t)
    assert result is not None
    rows: list[tuple[str, Sequence[float]]] = [("ffnops", seconds)]
    same = None
    if not args.no_reference:
        t, reference = timed(google_partitions, labels)
        rows.append(("Google's algorithm", [t]))
        inner = (slice(LOM_RADIUS, -LOM_RADIUS),) * 3
        same = np.array_equal(result[inner], reference)
    print(f"Load average after: {load_average()}")
    print(timing_table(rows, labels.size))
    if same is not None:
        print(f"Google's algorithm output identical to ffnops's inside the border: {same}")
    print()
    print(counts_table(partition_counts(result)))
    return 0 if same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
