"""An evaluation in its MLflow run: ``eval/*`` metrics, the error list with its neuroglancer
links (a CSV artifact and a table in the UI), every ground-truth object's row, and a picture."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import mlflow
import numpy as np
from matplotlib.figure import Figure

from ffnops.evaluation.candidates import Candidate
from ffnops.evaluation.errors import MERGE, SPLIT, position_in_volume
from ffnops.evaluation.report import Evaluation

FOLDER = "evaluation"
ERRORS_FILE = f"{FOLDER}/errors.csv"
OBJECTS_FILE = f"{FOLDER}/groundtruth_objects.csv"
CANDIDATES_FILE = f"{FOLDER}/candidates.csv"


def error_rows(evaluation: Evaluation, links: Sequence[str]) -> list[dict[str, object]]:
    """The error list, worst first, in the volume's voxels, each with its link (if any)."""
    rows = []
    for rank, error in enumerate(evaluation.errors, start=1):
        row = error.as_row()
        z, y, x = position_in_volume(error, evaluation.origin_voxels)
        row.update(rank=rank, z=z, y=y, x=x)
        row["neuroglancer_url"] = links[rank - 1] if rank <= len(links) else ""
        rows.append({"rank": row.pop("rank"), **row})
    return rows


def _csv(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def evaluation_figure(evaluation: Evaluation, title: str) -> Figure:
    """Left: each ground-truth object's run against its skeleton length (merged ones in red);
    right: the sizes of the split and merge errors."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    runs = evaluation.run_lengths
    if runs is not None and runs.skeletons:
        length = np.array([r.length_nm for r in runs.skeletons]) / 1000
        run = np.array([r.run_length_nm for r in runs.skeletons]) / 1000
        merged = np.array([r.merged for r in runs.skeletons])
        left.scatter(length[~merged], run[~merged], s=12, label="not merged")
        left.scatter(length[merged], run[merged], s=12, c="tab:red", label="merged (run 0)")
        top = max(float(length.max()), 1e-3)
        left.plot([0, top], [0, top], "k:", lw=1, label="no error")
        left.set_xlabel("skeleton length (µm)")
        left.set_ylabel("expected run along it (µm)")
        left.set_title(f"ERL {runs.erl_nm / 1000:.2f} µm of {runs.groundtruth_erl_nm / 1000:.2f}")
        left.legend(fontsize=8)
    else:
        left.text(0.5, 0.5, "no skeletons: no ERL", ha="center", va="center")
        left.set_axis_off()
    sizes = {
        kind: [e.voxels for e in evaluation.errors if e.kind == kind] for kind in (SPLIT, MERGE)
    }
    every = [v for values in sizes.values() for v in values]
    if every:
        bins = np.logspace(np.log10(max(min(every), 1)), np.log10(max(every) + 1), 20)
        for kind, values in sizes.items():
            right.hist(values, bins=bins, alpha=0.6, label=f"{kind} ({len(values)})")
        right.set_xscale("log")
        right.legend(fontsize=8)
    right.set_xlabel("voxels of the piece")
    right.set_ylabel("errors")
    right.set_title("error sizes")
    fig.suptitle(title)
    return fig


def log_evaluation(
    evaluation: Evaluation, links: Sequence[str], title: str, prefix: str = "eval/"
) -> None:
    """On the active run: the metrics, ``evaluation/errors.csv`` (and the same as an MLflow
    table), ``evaluation/groundtruth_objects.csv`` and ``evaluation/errors.png``."""
    mlflow.log_metrics({f"{prefix}{k}": v for k, v in evaluation.metrics().items()})
    rows = error_rows(evaluation, links)
    columns = [
        "rank", "kind", "groundtruth_id", "segment_id", "other_id", "voxels", "skeleton_nm",
        "z", "y", "x", "neuroglancer_url",
    ]  # fmt: skip
    mlflow.log_text(_csv(rows, columns), ERRORS_FILE)
    if rows:
        mlflow.log_table({c: [r[c] for r in rows] for c in columns}, f"{FOLDER}/errors.json")
    objects = [vars(o) for o in evaluation.objects]
    mlflow.log_text(
        _csv(objects, list(objects[0]) if objects else ["groundtruth_id"]), OBJECTS_FILE
    )
    figure = evaluation_figure(evaluation, title)
    mlflow.log_figure(figure, f"{FOLDER}/errors.png")
    plt.close(figure)


def log_candidates(
    candidates: Sequence[Candidate], origin_voxels: Sequence[int], links: Sequence[str]
) -> None:
    """On the active run: the ground-truth-free queue, ``evaluation/candidates.csv`` (and as an
    MLflow table), positions in the volume's voxels, and the counts as metrics."""
    rows = []
    for rank, candidate in enumerate(candidates, start=1):
        row = candidate.as_row()
        row["z"], row["y"], row["x"] = (
            int(p) + int(o) for p, o in zip(candidate.position, origin_voxels, strict=True)
        )
        row["neuroglancer_url"] = links[rank - 1] if rank <= len(links) else ""
        rows.append({"rank": rank, **row})
    columns = ["rank", "kind", "segment_id", "other_id", "voxels", "score", "z", "y", "x",
               "neuroglancer_url"]  # fmt: skip
    mlflow.log_text(_csv(rows, columns), CANDIDATES_FILE)
    if rows:
        mlflow.log_table({c: [r[c] for r in rows] for c in columns}, f"{FOLDER}/candidates.json")
    kinds = [c.kind for c in candidates]
    mlflow.log_metrics({f"candidates/{k}": float(kinds.count(k)) for k in sorted(set(kinds))})
