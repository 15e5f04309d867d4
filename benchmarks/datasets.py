"""Where the benchmarks find the public FIB-25 files, which are too large to ship with ffnops.

- ``FFNOPS_FIB25_DIR``: FIB-25 ``training_sample2`` as HDF5, the folder the ``fib25`` dataset and
  recipe read (docs/fib25.md): ``grayscale_maps.h5`` (``raw``, 250³ uint8) and ``groundtruth.h5``
  (``stack``, neuron labels). Default ``data/fib25/training_sample2``.
- ``FFNOPS_GOOGLE_FIB25_DIR``: Google's published result for that volume, google/ffn's
  ``results/fib25/sample-training2.npz`` (read with ``allow_pickle=False``; only
  ``segmentation``), and beside it ``sample-training2-origins.json``, the same file's seeds
  (its pickled ``origins`` entry written out as ``{"objects": [{"id", "z", "y", "x"}, ...]}``).
  Default ``data/google_fib25``.

A benchmark that needs a missing file stops with one line naming the variable; most fall back to
ffnops's bundled sample data where one will do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FIB25_DIR = Path(os.environ.get("FFNOPS_FIB25_DIR", "data/fib25/training_sample2"))
GOOGLE_FIB25_DIR = Path(os.environ.get("FFNOPS_GOOGLE_FIB25_DIR", "data/google_fib25"))
FIB25_IMAGE = FIB25_DIR / "grayscale_maps.h5"
FIB25_LABELS = FIB25_DIR / "groundtruth.h5"
GOOGLE_SEGMENTATION = GOOGLE_FIB25_DIR / "sample-training2.npz"
GOOGLE_ORIGINS = GOOGLE_FIB25_DIR / "sample-training2-origins.json"


def need(path: Path, variable: str) -> Path:
    """``path``, or exit with one line saying which variable should point where."""
    if not path.exists():
        sys.exit(f"{path}: not found; set {variable} (benchmarks/datasets.py says what goes there)")
    return path
