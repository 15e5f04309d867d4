"""Agglomeration by resegmentation on FIB-25 (docs/agglomeration.md): ERL, ARAND and VOI before
and after, with the join threshold chosen on the validation box, and what it costs.

The input is Google's published segmentation of ``training_sample2`` (``sample-training2.npz``,
the one canvas of Google's checkpoint, which ffnops reproduces: docs/google-ffn.md), written once
as zarr in the work folder. On the boxes of docs/quality.md's protocol (validation
[125:175,0:125,125:250], evaluation [125:175,0:125,0:125]), each grown by ``--context`` voxels
as a whole-volume run sees them, ``ffnops agglomerate`` resegments every contact with Google's
checkpoint and request; its ``pairs.csv`` scores every pair once, so each ``merge_iou`` of
``--thresholds`` is applied to the same table (as the command applies one). The threshold is
the one with the highest ERL on the validation box whose VOI merge rises by at most 0.05 there;
the evaluation box is only reported. Scores are on the box itself, against the labels
(ARAND, VOI split/merge, ERL over kimimaro skeletons of the labels, objects).
``--whole`` also agglomerates the whole volume blockwise (``executor=daisy``, blocks of
``--block``) and reports its pairs, seconds and share of time in network calls.

Every step is the ordinary ``ffnops`` command in ``--workdir`` (its own sqlite MLflow store); a
step whose output exists is not run again. Run::

    FFNOPS_FIB25_DIR=... FFNOPS_GOOGLE_FIB25_DIR=... python benchmarks/agglomeration.py
        [--workdir DIR] [--context 16] [--thresholds 0.5,0.6,0.7,0.8,0.9] [--whole]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from datasets import FIB25_IMAGE, FIB25_LABELS, GOOGLE_SEGMENTATION, need
from ffnops_pipelines.steps import FFNOPS
from machine import cpu_model, library_versions, load_average
from mlflow.tracking import MlflowClient

from ffnops.agglomeration.resegmentation import joined_ids
from ffnops.evaluation.report import evaluate
from ffnops.evaluation.skeletons import Skeletons, skeletonize
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array

FIB25_NM = (8.0, 8.0, 8.0)
BOXES = {"validation": "125:175,0:125,125:250", "evaluation": "125:175,0:125,0:125"}
MODEL = "models:/google_fib25@baseline"
MIN_RECOVERY = 0.6


def store(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def ffnops(workdir: Path, *args: str) -> float:
    """One ffnops command in the work folder, its output on stderr; seconds."""
    args = (*args, f"tracking.tracking_uri={store(workdir)}")
    print(f"$ ffnops {' '.join(args)}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "FFNOPS_ROOT": str(workdir)}
    subprocess.run([*FFNOPS, *args], cwd=workdir, env=env, stdout=sys.stderr, check=True)
    return time.perf_counter() - start


def latest_run(workdir: Path, output: str) -> tuple[dict[str, float], Path]:
    """The agglomeration run that wrote ``output``: its metrics and its pairs table."""
    client = MlflowClient(tracking_uri=store(workdir))
    experiment = client.get_experiment_by_name("agglomeration")
    assert experiment is not None
    (run,) = client.search_runs(
        [experiment.experiment_id],
        f"tags.`ffnops.output` = '{output}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    folder = workdir / "tables" / run.info.run_id
    folder.mkdir(parents=True, exist_ok=True)
    table = Path(client.download_artifacts(run.info.run_id, "pairs.csv", str(folder)))
    return run.data.metrics, table


def joined_at(table: Path, threshold: float) -> npt.NDArray[np.int64]:
    with open(table) as f:
        rows = list(csv.DictReader(f))
    pairs = [
        (int(r["a"]), int(r["b"]))
        for r in rows
        if int(r["tried"])
        and float(r["iou"]) >= threshold
        and min(float(r["recovered_a"]), float(r["recovered_b"])) >= MIN_RECOVERY
    ]
    return np.array(pairs, np.int64).reshape(-1, 2)


def relabel(labels: npt.NDArray[np.int64], pairs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    ids = np.unique(labels[labels > 0])
    new = joined_ids(ids, pairs[np.isin(pairs, ids).all(axis=1)]).astype(np.int64)
    where = np.minimum(np.searchsorted(ids, labels), max(len(ids) - 1, 0))
    return np.where(labels > 0, new[where] if len(new) else 0, 0)


def scores(
    seg: npt.NDArray[np.int64], truth: npt.NDArray[np.int64], box: BBox, skeletons: Skeletons
) -> dict[str, float]:
    metrics = evaluate(seg, truth, FIB25_NM, box.start, 100, skeletons).metrics()
    return {k: metrics[k] for k in ("adapted_rand_error", "voi_split", "voi_merge", "erl_nm")}


def line(name: str, s: dict[str, float], objects: int) -> str:
    return (
        f"{name:<34} ARAND {s['adapted_rand_error']:.3f}  VOI split {s['voi_split']:.3f} merge "
        f"{s['voi_merge']:.3f}  ERL {s['erl_nm'] / 1000:.3f} um  objects {objects}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks_out/agglomeration"))
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,0.95")
    parser.add_argument("--whole", action="store_true")
    parser.add_argument("--block", default="125,125,125")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load {load_average()}")
    print(library_versions("ffnops", "numpy", "torch", "kimimaro"))
    image = f"h5://{need(FIB25_IMAGE, 'FFNOPS_FIB25_DIR')}#raw"
    labels_uri = f"h5://{need(FIB25_LABELS, 'FFNOPS_FIB25_DIR')}#stack"
    google = workdir / "google.zarr"
    if not google.exists():
        with np.load(need(GOOGLE_SEGMENTATION, "FFNOPS_GOOGLE_FIB25_DIR")) as data:
            write_array(
                f"zarr://{google}", data["segmentation"].astype(np.uint32), chunks=(64, 64, 64)
            )
    client = MlflowClient(tracking_uri=store(workdir))
    if not client.search_model_versions("name = 'google_fib25'"):
        ffnops(workdir, "import-checkpoint", "google", "model_name=google_fib25", "alias=baseline")
    with open_volume(image) as volume:
        shape = volume.shape
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results: dict[str, dict[float, tuple[dict[str, float], int]]] = {}
    before: dict[str, tuple[dict[str, float], int]] = {}
    for name, text in BOXES.items():
        box = BBox.parse(text)
        grown = BBox(
            tuple(max(s - args.context, 0) for s in box.start),  # type: ignore[arg-type]
            tuple(min(e + args.context, n) - max(s - args.context, 0)
                  for s, e, n in zip(box.start, box.stop, shape, strict=True)),  # type: ignore[arg-type]
        )  # fmt: skip
        output = f"zarr://{workdir / name}.zarr"
        if not (workdir / f"{name}.zarr").exists():
            ffnops(workdir, "agglomerate", f"model={MODEL}", f"image={image}",
                   f"seg=zarr://{google}", f"output={output}", f"bbox={grown}", "inference=fib25",
                   f"tracking.run_name=agglomerate_{name}")  # fmt: skip
        metrics, table = latest_run(workdir, output)
        print(
            f"\n## {name} box [{box}] (agglomerated over [{grown}]): {int(metrics['contacts'])} "
            f"touching pairs, {int(metrics['pairs'])} resegmented, {int(metrics['network_calls'])} "
            f"FOV steps, {metrics['seconds']:.0f} s ({100 * metrics['network_share']:.0f} % in "
            "network calls)"
        )
        with open_volume(labels_uri) as volume:
            truth = np.asarray(volume.read(box)).astype(np.int64)
        with open_volume(f"zarr://{google}") as volume:
            seg = np.asarray(volume.read(grown)).astype(np.int64)
        inner = box.shifted(grown.start).slices
        skeletons = skeletonize(truth, FIB25_NM, box.start)
        base = seg[inner]
        before[name] = (scores(base, truth, box, skeletons), len(np.unique(base[base > 0])))
        print(line("Google's segmentation", *before[name]))
        results[name] = {}
        for t in thresholds:
            after = relabel(seg, joined_at(table, t))[inner]
            results[name][t] = (
                scores(after, truth, box, skeletons),
                len(np.unique(after[after > 0])),
            )
            print(line(f"agglomerated, merge_iou {t}", *results[name][t]))
    base_val = before["validation"][0]
    allowed = [
        t for t in thresholds
        if results["validation"][t][0]["voi_merge"] <= base_val["voi_merge"] + 0.05
    ]  # fmt: skip
    chosen = max(allowed or thresholds, key=lambda t: results["validation"][t][0]["erl_nm"])
    b, a = before["evaluation"][0], results["evaluation"][chosen][0]
    print(
        f"\nchosen on the validation box: merge_iou {chosen} (min_recovery {MIN_RECOVERY}); "
        f"evaluation box: ERL {b['erl_nm'] / 1000:.3f} -> {a['erl_nm'] / 1000:.3f} um "
        f"({100 * (a['erl_nm'] / max(b['erl_nm'], 1e-9) - 1):+.0f} %, target >= +50 %), VOI merge "
        f"{b['voi_merge']:.3f} -> {a['voi_merge']:.3f} ({a['voi_merge'] - b['voi_merge']:+.3f}, "
        f"target <= +0.05), ARAND {b['adapted_rand_error']:.3f} -> {a['adapted_rand_error']:.3f}"
    )
    if args.whole:
        output = f"zarr://{workdir / 'whole.zarr'}"
        if not (workdir / "whole.zarr").exists():
            ffnops(workdir, "agglomerate", f"model={MODEL}", f"image={image}",
                   f"seg=zarr://{google}", f"output={output}", "inference=fib25",
                   "executor=daisy", f"executor.block_size=[{args.block}]", "executor.workers=2",
                   f"merge_iou={chosen}", "tracking.run_name=agglomerate_whole")  # fmt: skip
        metrics, _ = latest_run(workdir, output)
        print(
            f"\n## whole volume, blockwise ({args.block}): {int(metrics['objects_before'])} -> "
            f"{int(metrics['objects'])} objects; {int(metrics['pairs'])} pairs resegmented of "
            f"{int(metrics['contacts'])} touching, {int(metrics['pairs_joined'])} joined; "
            f"{int(metrics['network_calls'])} FOV steps; {metrics['seconds']:.0f} s "
            f"({100 * metrics['network_share']:.0f} % in network calls)"
        )


if __name__ == "__main__":
    main()
