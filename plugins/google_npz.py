"""Output sink for Google's FFN result files: ``npz://DIR`` writes ``seg-X_Y_Z.npz`` and ``.prob``.

Layout as Google's storage (``ffn/inference/storage.py``): ``DIR/<x>/<y>/seg-<x>_<y>_<z>.npz``
for the box corner (x, y, z), written atomically. Keys as Google's: ``segmentation`` (the
smallest unsigned type that holds the ids), ``origins``, ``request``, ``counters`` (JSON text),
``overlaps``. Deviation: Google pickles ``origins`` with its own class; here ``origins`` is a
structured array (id, seed z, y, x relative to the box, iters, walltime) and
``request``/``overlaps`` are JSON text, so the file loads with ``allow_pickle=False``.
``seg-....prob`` holds ``qprob``: probabilities quantised to 1..255
(``digitize(p, linspace(0, 1, 255))``), 0 where never segmented.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ffnops import hookimpl
from ffnops.atomic import fresh_partial, publish, refuse_existing
from ffnops.ffn.canvas import ORIGIN_DTYPE
from ffnops.segmentation import SegmentationResult
from ffnops.uri import Scheme, VolumeURI


def result_path(
    directory: str | os.PathLike[str], corner_zyx: tuple[int, int, int], suffix: str
) -> Path:
    """Google's name for a box's file: ``<dir>/<x>/<y>/seg-<x>_<y>_<z>.<suffix>``."""
    z, y, x = corner_zyx
    return Path(directory) / str(x) / str(y) / f"seg-{x}_{y}_{z}.{suffix}"


def quantise_probabilities(p: np.ndarray) -> np.ndarray:
    """Google's quantisation: 1..255 for p in [0, 1], 0 for NaN (never segmented)."""
    q = np.digitize(np.nan_to_num(p, nan=0.0), np.linspace(0.0, 1.0, 255)).astype(np.uint8)
    q[np.isnan(p)] = 0
    return q


def _smallest_unsigned(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return labels.astype(dtype)
    return labels.astype(np.uint64)


def _save(path: Path, overwrite: bool, uri: str, **arrays: Any) -> None:
    refuse_existing(path, uri, overwrite)
    tmp = fresh_partial(path)
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    publish(tmp, path)


@hookimpl
def ffnops_schemes() -> list[Scheme]:
    return [
        Scheme(
            "npz",
            "Google FFN result files seg-X_Y_Z.npz + .prob (output sink)",
            read=False,
            write=True,
            example="npz://results/fib25",
        )
    ]


@hookimpl
def ffnops_write_segmentation(
    result: SegmentationResult, uri: VolumeURI, overwrite: bool
) -> str | None:
    if uri.scheme != "npz":
        return None
    corner = result.offset
    origins = np.array(
        [(i, *o.start, o.iters, o.walltime_s) for i, o in sorted(result.origins.items())],
        dtype=ORIGIN_DTYPE,
    )
    seg_path = result_path(uri.path, corner, "npz")
    if result.probabilities is not None:  # the .prob first: the .npz marks the box as done
        _save(
            result_path(uri.path, corner, "prob"),
            overwrite,
            uri.raw,
            qprob=quantise_probabilities(np.asarray(result.probabilities)),
        )
    _save(
        seg_path,
        overwrite,
        uri.raw,
        segmentation=_smallest_unsigned(np.where(result.labels < 0, 0, result.labels)),
        origins=origins,
        request=np.asarray(json.dumps(result.settings, default=str)),
        counters=np.asarray(json.dumps(result.counters)),
        overlaps=np.asarray("{}"),
    )
    return str(seg_path)
