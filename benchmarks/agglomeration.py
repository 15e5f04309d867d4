"""Agglomeration by resegmentation on FIB-25 (docs/agglomeration.md): ERL, ARAND and VOI before
and after, with the join threshold chosen on the validation box, and what it costs.

Two inputs, on each box of docs/quality.md's protocol (validation [125:175,0:125,125:250],
evaluation [125:175,0:125,0:125]) grown by ``--context`` voxels as a whole-volume run sees them:

- Google's published segmentation of ``training_sample2`` (``sample-training2.npz``, the one
  canvas of Google's checkpoint, which ffnops reproduces: docs/google-ffn.md), cut to the box;
- the FFN paper's pipeline: its split consensus (``ffnops consensus``) with a run of the same
  checkpoint and request in reversed seed order (``inference.seed_order=reverse``) on the box.

``ffnops agglomerate`` resegments every contact of each with Google's checkpoint and request;
its ``pairs.csv`` scores every pair once, so each ``merge_iou`` of ``--thresholds`` is applied
to the same table (as the command applies one). The threshold is the one with the highest ERL
on the validation box whose VOI merge rises by at most 0.05 there (among equal ERLs the lowest
ARAND, then the highest threshold); the evaluation box is only reported. Each input also gets
an oracle row: every two of its objects that are mostly the same labelled neuron joined, the
most any agglomeration (which joins, never splits) can reach.
Scores are on the box itself, against the labels (ARAND, VOI split/merge, ERL over kimimaro
skeletons of the labels, objects). ``--whole`` also agglomerates Google's whole volume
blockwise (``executor=daisy``, blocks of ``--block``, 2 workers) and reports its pairs, seconds
and share of time in network calls.

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
from functools import partial
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
GOOGLE = "Google's segmentation"


def store(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def ffnops(workdir: Path, *args: str) -> float:
    """One ffnops command in the work folder (and its MLflow store, for the commands that log a
    run: all but consensus), its output on stderr; seconds."""
    if args[0] != "consensus":
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


def oracle_pairs(seg: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Every two objects whose voxels in the box are mostly the same labelled neuron: what a
    perfect agglomeration joins (it can join, never split)."""
    ids = np.unique(seg[seg > 0])
    by_label: dict[int, list[int]] = {}
    for i in ids.tolist():
        labels, counts = np.unique(truth[seg == i], return_counts=True)
        if labels[counts.argmax()] > 0:
            by_label.setdefault(int(labels[counts.argmax()]), []).append(i)
    pairs = [(g[0], other) for g in by_label.values() for other in g[1:]]
    return np.array(pairs, np.int64).reshape(-1, 2)


def scored_row(
    seg: npt.NDArray[np.int64],
    *,
    inner: tuple[slice, ...],
    truth: npt.NDArray[np.int64],
    box: BBox,
    skeletons: Skeletons,
) -> tuple[dict[str, float], int]:
    """Scores and objects of ``seg`` (the grown box) on the box itself."""
    part = seg[inner]
    return scores(part, truth, box, skeletons), len(np.unique(part[part > 0]))


def inputs_for(workdir: Path, name: str, grown: BBox, image: str, google: Path) -> dict[str, Path]:
    """The segmentations agglomerated on one box: Google's (cut to the grown box), and the split
    consensus of it with a reversed-seed-order run of the same checkpoint on that box."""
    crop = workdir / f"google-{name}.zarr"
    if not crop.exists():
        with open_volume(f"zarr://{google}") as volume:
            data = np.asarray(volume.read(grown))
        write_array(f"zarr://{crop}", data, offset=grown.start, chunks=(64, 64, 64))
    reverse = workdir / f"reverse-{name}.zarr"
    if not reverse.exists():
        ffnops(workdir, "infer", f"model={MODEL}", f"image={image}", f"output=zarr://{reverse}",
               f"bbox={grown}", "inference=fib25", "inference.seed_order=reverse",
               "viewer.publish=false", f"tracking.run_name=reverse_{name}")  # fmt: skip
    consensus = workdir / f"consensus-{name}.zarr"
    if not consensus.exists():
        ffnops(workdir, "consensus", f"segs=[zarr://{crop},zarr://{reverse}]",
               f"output=zarr://{consensus}")  # fmt: skip
    return {GOOGLE: crop, "consensus with reversed seeds": consensus}


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
    # results[input][box] = (before, oracle, {threshold: after}), each (scores, objects)
    Row = tuple[dict[str, float], int]
    results: dict[str, dict[str, tuple[Row, Row, dict[float, Row]]]] = {}
    for name, text in BOXES.items():
        box = BBox.parse(text)
        grown = BBox(
            tuple(max(s - args.context, 0) for s in box.start),  # type: ignore[arg-type]
            tuple(min(e + args.context, n) - max(s - args.context, 0)
                  for s, e, n in zip(box.start, box.stop, shape, strict=True)),  # type: ignore[arg-type]
        )  # fmt: skip
        inner = box.shifted(grown.start).slices
        with open_volume(labels_uri) as volume:
            truth = np.asarray(volume.read(box)).astype(np.int64)
        skeletons = skeletonize(truth, FIB25_NM, box.start)

        row = partial(scored_row, inner=inner, truth=truth, box=box, skeletons=skeletons)

        for label, path in inputs_for(workdir, name, grown, image, google).items():
            output = f"zarr://{path.with_name(path.stem + '-agglomerated.zarr')}"
            if not Path(output[len("zarr://") :]).exists():
                ffnops(workdir, "agglomerate", f"model={MODEL}", f"image={image}",
                       f"seg=zarr://{path}", f"output={output}", "inference=fib25",
                       f"tracking.run_name=agglomerate_{name}")  # fmt: skip
            metrics, table = latest_run(workdir, output)
            print(
                f"\n## {name} box [{box}], {label} (agglomerated over [{grown}]): "
                f"{int(metrics['contacts'])} touching pairs, {int(metrics['pairs'])} resegmented, "
                f"{int(metrics['network_calls'])} FOV steps, {metrics['seconds']:.0f} s "
                f"({100 * metrics['network_share']:.0f} % in network calls)"
            )
            with open_volume(f"zarr://{path}") as volume:
                seg = np.asarray(volume.read()).astype(np.int64)
            before = row(seg)
            best = row(relabel(seg, oracle_pairs(seg[inner], truth)))
            print(line("input", *before))
            print(line("every true split joined (oracle)", *best))
            after = {}
            for t in thresholds:
                after[t] = row(relabel(seg, joined_at(table, t)))
                print(line(f"agglomerated, merge_iou {t}", *after[t]))
            results.setdefault(label, {})[name] = (before, best, after)
    print()
    chosen_for: dict[str, float] = {}
    for label, boxes in results.items():
        (val_before, _, val_after), (b, oracle, ev_after) = boxes["validation"], boxes["evaluation"]
        allowed = [
            t for t in thresholds
            if val_after[t][0]["voi_merge"] <= val_before[0]["voi_merge"] + 0.05
        ]  # fmt: skip
        # the highest ERL; among equal ones the lowest ARAND, then the highest (safest) threshold
        chosen = max(
            allowed or thresholds,
            key=lambda t: (val_after[t][0]["erl_nm"], -val_after[t][0]["adapted_rand_error"], t),
        )
        chosen_for[label] = chosen
        a = ev_after[chosen][0]
        gain = 100 * (a["erl_nm"] / max(b[0]["erl_nm"], 1e-9) - 1)
        print(
            f"{label}: merge_iou {chosen} chosen on the validation box (min_recovery "
            f"{MIN_RECOVERY}); evaluation box: ERL {b[0]['erl_nm'] / 1000:.3f} -> "
            f"{a['erl_nm'] / 1000:.3f} um ({gain:+.0f} %, target >= +50 %; an oracle: "
            f"{oracle[0]['erl_nm'] / 1000:.3f} um), VOI merge {b[0]['voi_merge']:.3f} -> "
            f"{a['voi_merge']:.3f} ({a['voi_merge'] - b[0]['voi_merge']:+.3f}, target <= +0.05), "
            f"ARAND {b[0]['adapted_rand_error']:.3f} -> "
            f"{a['adapted_rand_error']:.3f}, objects {b[1]} -> {ev_after[chosen][1]}"
        )
    if args.whole:
        output = f"zarr://{workdir / 'whole.zarr'}"
        if not (workdir / "whole.zarr").exists():
            ffnops(workdir, "agglomerate", f"model={MODEL}", f"image={image}",
                   f"seg=zarr://{google}", f"output={output}", "inference=fib25",
                   "executor=daisy", f"executor.block_size=[{args.block}]", "executor.workers=2",
                   "tracking.run_name=agglomerate_whole")  # fmt: skip
        metrics, table = latest_run(workdir, output)
        joined = len(joined_at(table, chosen_for[GOOGLE]))
        print(
            f"\n## whole volume, Google's segmentation, blockwise ({args.block}, 2 workers): "
            f"{int(metrics['pairs'])} pairs resegmented of {int(metrics['contacts'])} touching "
            f"({int(metrics['objects_before'])} objects), {joined} joined at merge_iou "
            f"{chosen_for[GOOGLE]}; {int(metrics['network_calls'])} FOV steps; "
            f"{metrics['seconds']:.0f} s, {metrics['seconds_resegment']:.0f} s of it resegmenting "
            f"({100 * metrics['network_share']:.0f} % of that in network calls)"
        )
        with open_volume(labels_uri) as volume:
            truth = np.asarray(volume.read()).astype(np.int64)
        labelled = BBox.from_shape(truth.shape)  # the labels stop at z = 175
        with open_volume(f"zarr://{google}") as volume:
            seg = np.asarray(volume.read(labelled)).astype(np.int64)
        skeletons = skeletonize(truth, FIB25_NM, labelled.start)
        inner = labelled.slices
        row = partial(scored_row, inner=inner, truth=truth, box=labelled, skeletons=skeletons)
        print(line(f"Google's, labelled part [{labelled}]", *row(seg)))
        print(line(f"agglomerated, merge_iou {chosen_for[GOOGLE]}", *row(
            relabel(seg, joined_at(table, chosen_for[GOOGLE]))
        )))  # fmt: skip


if __name__ == "__main__":
    main()
