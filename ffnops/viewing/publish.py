"""An inference run's neuroglancer copy, viewer state and link, logged to its MLflow run."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import mlflow

from ffnops.viewing.state import served_run_state, state_json, state_url
from ffnops.viewing.view_data import RUN_ARTIFACTS


def publish_view(
    write_copy: Callable[[Path], None],
    run_id: str,
    voxel_size: Sequence[float],
    offset: Sequence[int],
    shape: Sequence[int],
    host: str,
    port: int,
    client_url: str,
    layout: str,
    image: bool = True,
    groundtruth: bool = False,
) -> str:
    """Logs the run's precomputed copy (``write_copy(folder)`` writes it), its neuroglancer
    state and the ``neuroglancer_url`` tag, which ``ffnops view RUN_ID`` serves; returns it."""
    with tempfile.TemporaryDirectory(prefix="ffnops-view-") as tmp:
        write_copy(Path(tmp))
        mlflow.log_artifacts(tmp, RUN_ARTIFACTS)
    url = f"http://{host}:{port}"
    state = served_run_state(url, run_id, voxel_size, offset, shape, layout, image, groundtruth)
    mlflow.log_dict(state_json(state), "neuroglancer_state.json")
    link = state_url(state, client_url)
    mlflow.set_tag("neuroglancer_url", link)
    return link
