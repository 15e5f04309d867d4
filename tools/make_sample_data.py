"""Cuts ffnops's bundled sample (ffnops/sample_data/fib25_crop.h5) from FIB-25 training_sample2.

Run from the repository root with the FIB-25 data folder (grayscale_maps.h5, groundtruth.h5):
    python tools/make_sample_data.py DIR
The crop is z in [0, 160), y and x in [0, 128) of the labelled part (labels exist for z < 175).
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

CROP = (slice(0, 160), slice(0, 128), slice(0, 128))
OUT = Path(__file__).resolve().parents[1] / "ffnops" / "sample_data" / "fib25_crop.h5"


def main(source: Path) -> None:
    with h5py.File(source / "grayscale_maps.h5", "r") as f:
        image = f["raw"][CROP]
    with h5py.File(source / "groundtruth.h5", "r") as f:
        labels = f["stack"][CROP]
    _, relabelled = np.unique(labels, return_inverse=True)  # compact ids, 0 stays 0 (the smallest)
    relabelled = relabelled.reshape(labels.shape).astype(np.uint32)
    with h5py.File(OUT, "w") as f:
        for name, data in (("image", image), ("labels", relabelled)):
            ds = f.create_dataset(
                name, data=data, chunks=(32, 64, 64), compression="gzip", compression_opts=9
            )
            ds.attrs["resolution"] = np.array([10.0, 10.0, 10.0])
            ds.attrs["offset"] = np.array([0.0, 0.0, 0.0])
        f.attrs["source"] = (
            "janelia-flyem/neuroproof_examples training_sample2 (FIB-25), CC licence"
        )
        f.attrs["crop_zyx"] = "0:160,0:128,0:128"
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB), {len(np.unique(relabelled))} ids")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
