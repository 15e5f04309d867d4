"""Fidelity at full scale: ffnops with Google's FIB-25 checkpoint on all of ``training_sample2``
(250^3, about 26 k network calls) against Google's own published segmentation of it.

What runs is the ordinary ``ffnops infer`` command on Google's request (PolicyPeaks seeds, init
0.95, pad 0.05, move 0.9, segment threshold 0.6, min segment size 1000, min boundary distance 1),
with the checkpoint imported by ``ffnops import-checkpoint google``. The work folder keeps the
MLflow store, the inference checkpoint and the output, so a killed run resumes where it stopped
and a finished one is only compared again. On 2 CPU cores with AMX it took 106 min (25,803
calls at 246 ms, part of it beside a CI run; 180-190 ms undisturbed); Google's run took 394 s on
its GPU (``--device cuda`` here). Not a CI test: run it in the background.

It prints, ours against Google's ``sample-training2.npz``:

* adapted Rand error and VOI split/merge between the two segmentations (every voxel, background
  included; target ARAND <= 0.02), object counts (target: equal within 2 %), network calls
  and voxels segmented against Google's own counters (stored in its npz);
* per object, in Google's segmentation order: whether our object came from the same seed, and
  the IoU of the two objects' voxels (median, 5th percentile, minimum, how many >= 0.99);
* where the two first diverge (the first of Google's objects with an IoU below 0.99);
* both segmentations against the ground truth where it exists (z < 175);
* the device, CPU and wall time.

Run::

    python benchmarks/google_full_volume.py [--workdir DIR] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
from datasets import (
    FIB25_IMAGE,
    FIB25_LABELS,
    GOOGLE_ORIGINS,
    GOOGLE_SEGMENTATION,
    need,
)
from ffnops_pipelines.steps import FFNOPS
from machine import cpu_model, library_versions, load_average
from skimage.metrics import adapted_rand_error, variation_of_information

from ffnops.ffn.metrics import score_segmentation

LABELLED_Z = 175  # the ground truth stops here


def ffnops(workdir: Path, *args: str) -> None:
    """One ffnops command in the work folder, with its own sqlite store."""
    env = {**os.environ, "FFNOPS_ROOT": str(workdir)}
    store = f"tracking.tracking_uri=sqlite:///{workdir / 'mlflow.db'}"
    subprocess.run([*FFNOPS, *args, store], cwd=workdir, env=env, check=True)


def segment(workdir: Path, device: str, threads: int | None) -> Path:
    """Google's checkpoint imported and run on the whole volume (skipped when already done)."""
    output = workdir / "google_npz" / "0" / "0" / "seg-0_0_0.npz"
    if output.exists():
        return output
    if not (workdir / "mlflow.db").exists():
        ffnops(workdir, "import-checkpoint", "google", "model_name=google_fib25", "alias=baseline")
    ffnops(
        workdir,
        "infer",
        "model_uri=models:/google_fib25@baseline",
        f"image={FIB25_IMAGE.resolve()}:raw",
        f"output=npz://{workdir / 'google_npz'}",
        "bbox=0:250,0:250,0:250",
        f"executor.device={device}",
        *([f"executor.num_threads={threads}"] if threads else []),
        "inference.checkpoint_interval_s=300",
    )
    return output


def iou_by_seed(
    google: npt.NDArray[np.integer], ours: npt.NDArray[np.integer], same_seed: dict[int, int]
) -> dict[int, float]:
    """IoU of each Google object with ours from the same seed (``same_seed``: Google's id ->
    ours; 0 when we made none)."""
    pairs, inter = np.unique(
        google.astype(np.int64).ravel() << 32 | ours.astype(np.int64).ravel(), return_counts=True
    )
    g_size = np.bincount(google.ravel())
    o_size = np.bincount(ours.ravel())
    overlap = dict(zip(pairs.tolist(), inter.tolist(), strict=True))
    result = {g: 0.0 for g in np.flatnonzero(g_size).tolist() if g}  # every Google object
    for g, o in same_seed.items():
        shared = overlap.get(g << 32 | o, 0)
        result[g] = shared / (g_size[g] + o_size[o] - shared)
    return result


def compare(ours_path: Path) -> None:
    with np.load(ours_path, allow_pickle=False) as data:
        ours = data["segmentation"].astype(np.int64)
        origins = data["origins"]
        counters = json.loads(str(data["counters"]))
    with np.load(GOOGLE_SEGMENTATION, allow_pickle=False) as data:
        google = data["segmentation"].astype(np.int64)
        google_counters = json.loads(data["counters"].item())  # bytes: Google wrote np.bytes_
    google_objects = json.loads(GOOGLE_ORIGINS.read_text())["objects"]

    arand = adapted_rand_error(google, ours, ignore_labels=())[0]
    split, merge = variation_of_information(google.ravel(), ours.ravel())
    n_ours, n_google = len(np.unique(ours[ours > 0])), len(np.unique(google[google > 0]))
    print("\n## ffnops against Google's sample-training2.npz (all 250^3 voxels)")
    print(
        f"adapted Rand error {arand:.2e} (target <= 0.02)   VOI split {split:.2e} merge {merge:.2e}"
    )
    calls, google_calls = counters["network_calls"], google_counters["predict-calls"]
    print(
        f"objects: ffnops {n_ours}, Google {n_google} "
        f"({100 * (n_ours - n_google) / n_google:+.1f} %)"
        f"   network calls: ffnops {calls}, Google {google_calls} "
        f"({100 * (calls - google_calls) / google_calls:+.2f} %)"
    )
    print(
        f"voxels segmented: ffnops {counters['voxels_segmented']:,}, "
        f"Google {google_counters['voxels-segmented']:,}; "
        f"ffnops wall time {counters['seconds']:.0f} s "
        f"({1000 * counters['seconds'] / counters['network_calls']:.0f} ms a call)"
    )

    our_seeds = {(int(o["z"]), int(o["y"]), int(o["x"])): int(o["id"]) for o in origins}
    same_seed = {  # Google's id -> ours, where we made an object from the same seed
        o["id"]: our_seeds[tuple(o["seed_zyx"])]
        for o in google_objects
        if tuple(o["seed_zyx"]) in our_seeds
    }
    ious = iou_by_seed(google, ours, same_seed)
    values = np.array(list(ious.values()))
    print(
        f"Google's objects made by ffnops from the same seed: {len(same_seed)} of "
        f"{len(google_objects)}"
    )
    print(
        f"per-object IoU (Google's objects, by seed): median {np.median(values):.4f}, "
        f"5th percentile {np.percentile(values, 5):.4f}, min {values.min():.4f}, "
        f">= 0.99: {(values >= 0.99).sum()}, >= 0.9: {(values >= 0.9).sum()}"
    )
    as_google = np.zeros(int(ours.max()) + 1, np.int64)  # our id -> Google's id, same seed
    for g, o in same_seed.items():
        as_google[o] = g
    differing = int((as_google[ours] != google).sum())
    print(
        f"voxels labelled differently (ids matched by seed): {differing:,} "
        f"of {google.size:,} ({100 * differing / google.size:.3f} %)"
    )
    first = next((g for g, iou in ious.items() if iou < 0.99), None)
    if first is not None:
        print(f"first of Google's objects with IoU < 0.99: {google_objects[first - 1]}")
    worst = sorted(ious.items(), key=lambda item: item[1])[:5]
    print("lowest IoU:", ", ".join(f"#{g} {v:.3f}" for g, v in worst))

    print(f"\n## against the ground truth (z < {LABELLED_Z}, where labels exist)")
    with h5py.File(FIB25_LABELS, "r") as gt:
        labels = gt["stack"][:LABELLED_Z]
    for name, seg in (("ffnops", ours), ("Google", google)):
        s = score_segmentation(seg[:LABELLED_Z], labels)
        print(
            f"{name:7s} ARAND {s.adapted_rand_error:.4f}  VOI split {s.voi_split:.4f} "
            f"merge {s.voi_merge:.4f}  objects {s.objects} / {s.groundtruth_objects}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("google_full_volume"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    need(FIB25_IMAGE, "FFNOPS_FIB25_DIR")
    need(FIB25_LABELS, "FFNOPS_FIB25_DIR")
    need(GOOGLE_SEGMENTATION, "FFNOPS_GOOGLE_FIB25_DIR")
    need(GOOGLE_ORIGINS, "FFNOPS_GOOGLE_FIB25_DIR")
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir.resolve()
    print(f"CPU: {cpu_model()}; device {args.device}; load {load_average()}")
    print(library_versions("ffnops", "torch", "numpy", "scikit-image"))
    start = time.perf_counter()
    ours = segment(workdir, args.device, args.threads)
    print(f"inference: {time.perf_counter() - start:.0f} s in this call ({ours})")
    compare(ours)


if __name__ == "__main__":
    main()
