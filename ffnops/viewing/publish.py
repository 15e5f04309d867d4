"""An inference run's neuroglancer copy, viewer state and link, logged to its MLflow run."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import mlflow

from ffnops.viewing.meshes import MeshSummary, shown_segments
from ffnops.viewing.state import SEGMENTATION_LAYER, served_run_state, state_json, state_url
from ffnops.viewing.view_data import RUN_ARTIFACTS


def publish_view(
    write_copy: Callable[[Path], MeshSummary | None],
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
    shown: int = 10,
) -> str:
    """Logs the run's precomputed copy (``write_copy(folder)`` writes it, with the meshes it
    reports), its neuroglancer state (the ``shown`` largest objects selected when meshed) and
    the ``neuroglancer_url`` tag, which ``ffnops view RUN_ID`` serves; returns the link."""
    with tempfile.TemporaryDirectory(prefix="ffnops-view-") as tmp:
        meshed = write_copy(Path(tmp))
        segments = shown_segments(Path(tmp) / SEGMENTATION_LAYER, shown)
        mlflow.log_artifacts(tmp, RUN_ARTIFACTS)
    if meshed is not None:
        mlflow.log_metrics(
            {
                "mesh_objects": meshed.objects,
                "mesh_triangles": meshed.triangles,
                "seconds_mesh": meshed.seconds,
            }
        )
    url = f"http://{host}:{port}"
    state = served_run_state(
        url, run_id, voxel_size, offset, shape, layout, image, groundtruth, segments
    )
    mlflow.log_dict(state_json(state), "neuroglancer_state.json")
    link = state_url(state, client_url)
    mlflow.set_tag("neuroglancer_url", link)
    return link
