"""Finding an MLflow run and its artifacts by id, with errors that say what exists instead."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError


def recent_runs(tracking_uri: str, experiment: str, limit: int = 5) -> list[str]:
    """``run_id (run name)`` of the newest runs of ``experiment``, for error messages."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs(
        [found.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit
    )
    return [f"{r.info.run_id} ({r.info.run_name})" for r in runs]


def latest_run(tracking_uri: str, experiment: str) -> str:
    """The id of the newest finished run of ``experiment`` (``ffnops view latest``)."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [found.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found
        else []
    )
    if not runs:
        raise FfnopsError(f"no finished run in experiment {experiment!r} of {tracking_uri}")
    return str(runs[0].info.run_id)


def run_artifacts(
    tracking_uri: str, run_id: str, artifact_path: str, experiment: str, cache: Path
) -> Path:
    """A local folder holding ``artifact_path`` of run ``run_id``: the store's own folder where
    the artifacts are local files, else a copy downloaded into ``cache`` (the caller removes it)."""
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        listing = "; ".join(recent_runs(tracking_uri, experiment)) or "none"
        raise FfnopsError(
            f"no MLflow run {run_id} in {tracking_uri}; recent {experiment!r} runs: {listing}"
        ) from None
    try:
        is_local = urlsplit(run.info.artifact_uri).scheme in ("", "file")
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact_path,
            tracking_uri=tracking_uri,
            dst_path=None if is_local else str(cache),
        )
    except (MlflowException, OSError) as exc:
        raise FfnopsError(
            f"run {run_id} has no {artifact_path!r} artifacts ({str(exc).splitlines()[0]}); "
            "was it an `ffnops infer` run with viewer.publish=true?"
        ) from None
    return Path(local)
