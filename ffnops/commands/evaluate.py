"""``ffnops evaluate seg=URI gt=URI [skeletons=SWC]``: score a segmentation against ground truth.

Prints and logs VOI split/merge, adapted Rand error, ERL and NERL over skeletons (given as SWC,
or kimimaro's of the ground truth), and the error list worst first with a neuroglancer link per
error (docs/evaluation.md). A ground truth that covers part of the segmentation is scored on
that part. The run is ``run_id``'s (an inference run: its neuroglancer copy gains the ground
truth), or a new one in ``tracking.evaluation_experiment`` with its own copy of the scored part.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig

from ffnops.commands.scoring import (
    given_skeletons,
    groundtruth_part,
    print_evaluation,
    publish_candidates,
    publish_evaluation,
    run_view_layers,
    score_part,
)
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.tracking.inference_run import run_exists
from ffnops.tracking.mlflow_tracking import check_tracking_uri
from ffnops.viewing.meshes import MeshSummary, meshes_wanted
from ffnops.viewing.publish import publish_view
from ffnops.viewing.state import SEGMENTATION_LAYER
from ffnops.viewing.view_data import write_view_data
from ffnops.volume import BBox
from ffnops.volumes import box_of, open_volume


def run(cfg: DictConfig) -> None:
    check_tracking_uri(cfg.tracking.tracking_uri)
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    if cfg.run_id and not run_exists(cfg.run_id):
        raise FfnopsError(f"run_id={cfg.run_id}: no such MLflow run in {cfg.tracking.tracking_uri}")
    if cfg.skeletons and not cfg.gt:
        raise FfnopsError(f"skeletons={cfg.skeletons} needs gt=URI (the dense labels they score)")
    skeletons = given_skeletons(cfg.skeletons)
    with open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg:
        box = box_of(seg, cfg.bbox)
        voxel_size = tuple(float(v) for v in seg.voxel_size)
        part = groundtruth_part(cfg.gt, box, seg.offset, voxel_size) if cfg.gt else None
        # The scored part, in seg's voxels: where the ground truth covers the box (or the box).
        in_seg = part.in_box.shifted(tuple(-s for s in box.start)) if part else box  # type: ignore[arg-type]
        origin = tuple(int(o + s) for o, s in zip(seg.offset, in_seg.start, strict=True))
        image = read_image(cfg.image, in_seg) if cfg.image else None
        labels = np.asarray(seg.read(in_seg))
    evaluation = truth = None
    if part is not None:
        with open_volume(cfg.gt, dtypes=LABEL_DTYPES) as gt:
            truth = np.asarray(gt.read(part.in_groundtruth))
        evaluation = score_part(labels, truth, voxel_size, origin, cfg.evaluation, skeletons)
        print_evaluation(evaluation)
    against = f" against {Path(str(cfg.gt)).name}" if cfg.gt else ""
    title = f"{Path(str(cfg.seg)).name}{against} [{in_seg}]"
    if cfg.run_id:
        run = mlflow.start_run(run_id=cfg.run_id)
    else:
        mlflow.set_experiment(cfg.tracking.evaluation_experiment)
        run = mlflow.start_run(run_name=cfg.tracking.run_name)
        params = {"seg": cfg.seg, "gt": cfg.gt, "bbox": str(in_seg), "skeletons": cfg.skeletons}
        mlflow.log_params({k: str(v) for k, v in params.items()})
    with run:
        run_id = run.info.run_id
        layers = run_view_layers(cfg.tracking.tracking_uri, run_id)
        if cfg.viewer.publish and SEGMENTATION_LAYER not in layers:
            publish_copy(
                cfg, run_id, labels, image, voxel_size, origin, groundtruth=part is not None
            )
        if evaluation is not None and truth is not None:
            publish_evaluation(cfg, evaluation, truth, run_id, title, voxel_size)
        else:
            publish_candidates(cfg, labels, None, None, voxel_size, origin, run_id)
    print(f"logged to MLflow run {run_id}")


def read_image(uri: str, box: BBox) -> np.ndarray:
    """The image under the scored part, for the error links (checked before any work)."""
    with open_volume(uri) as volume:
        if not box.inside(volume.shape):
            raise FfnopsError(f"image={uri} (shape {volume.shape}) does not cover [{box}] of seg")
        return np.asarray(volume.read(box))


def publish_copy(
    cfg: DictConfig,
    run_id: str,
    labels: np.ndarray,
    image: np.ndarray | None,
    voxel_size: tuple[float, ...],
    origin: tuple[int, ...],
    groundtruth: bool,
) -> None:
    """A neuroglancer copy of the scored part (and image) for a run that has none."""

    viewer = cfg.viewer
    meshes = meshes_wanted(viewer.meshes, labels.shape, viewer.mesh_auto_voxels)

    def write_copy(folder: Path) -> MeshSummary | None:
        return write_view_data(folder, image, labels, voxel_size, origin, meshes)

    publish_view(
        write_copy, run_id, voxel_size, origin, labels.shape, viewer.host, viewer.port,
        viewer.client_url, viewer.layout, image=image is not None, groundtruth=groundtruth,
        shown=viewer.shown,
    )  # fmt: skip
