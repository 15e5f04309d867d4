"""The MLflow run of one inference: opened before the work, resumed after a kill, progress and
results logged to it. Used by both the single-canvas and the blockwise path."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException

from ffnops.atomic import write_text
from ffnops.ffn.canvas import Counters


@contextmanager
def inference_run(
    tracking_uri: str,
    experiment: str,
    run_name: str | None,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    run_id_file: Path,
) -> Iterator[mlflow.ActiveRun]:
    """The inference's MLflow run, opened before the work so the UI shows its real duration and
    state; an inference resumed after a kill continues the run its first start opened (whose id
    ``run_id_file`` keeps, and which is removed when the run ends)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    if run_id is not None and not run_exists(run_id):
        run_id = None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name) as run:
        if run_id is None:
            mlflow.log_params(dict(params))
            mlflow.set_tags(dict(tags))
            write_text(run_id_file, run.info.run_id)
        yield run
    run_id_file.unlink(missing_ok=True)


def run_exists(run_id: str) -> bool:
    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def log_seed_progress(counters: Counters, seeds_done: int) -> None:
    """A single canvas's running counts, at each of its checkpoints."""
    mlflow.log_metrics(
        {
            "progress/seeds_done": float(seeds_done),
            "progress/objects": float(counters.objects),
            "progress/voxels_segmented": float(counters.voxels_segmented),
        },
        step=counters.network_calls,
    )


class BlockMetrics:
    """Blocks done / failed per phase and voxels/s, logged at most every ``interval_s``
    seconds (and whenever a phase finishes), stepped by blocks done."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.last = 0.0

    def log(self, phase: str, total: int, done: int, failed: int, voxels_per_s: float) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.interval_s:
            return
        self.last = now
        metrics = {
            f"progress/{phase}_blocks_done": float(done),
            f"progress/{phase}_blocks_failed": float(failed),
        }
        if phase == "segment":
            metrics["progress/voxels_per_s"] = voxels_per_s
        mlflow.log_metrics(metrics, step=done)


def log_results(metrics: Mapping[str, float], figure: Figure, run_id: str, experiment: str) -> None:
    """The final metrics and the overlay picture, on the active run."""
    mlflow.log_metrics(dict(metrics))
    mlflow.log_figure(figure, "segmentation_overlay.png")
    plt.close(figure)
    print(f"MLflow run {run_id} in experiment {experiment!r}")


def speed_metrics(counters: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Size and speed of a finished inference (``seconds``: the canvas work of this run)."""
    calls = counters.get("network_calls", 0.0)
    voxels = counters.get("voxels_segmented", 0.0)
    return {
        "seconds": seconds,
        "objects": float(counters.get("objects", 0.0)),
        "network_calls": float(calls),
        "voxels_segmented": float(voxels),
        "voxels_per_s": voxels / max(seconds, 1e-9),
        "fov_steps_per_s": calls / max(seconds, 1e-9),
        "ms_per_step": 1000 * seconds / max(calls, 1),
    }
