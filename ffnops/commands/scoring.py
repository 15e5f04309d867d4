"""Scoring against a ground truth, shared by ``ffnops evaluate`` and ``ffnops infer
groundtruth=``: where the ground truth lies, its skeletons, the evaluation and its publication
(metrics, error list, neuroglancer links) in the MLflow run. docs/evaluation.md."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import numpy.typing as npt
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.evaluation.candidates import Candidate, find_candidates
from ffnops.evaluation.errors import MERGE, position_in_volume
from ffnops.evaluation.report import Evaluation, evaluate
from ffnops.evaluation.skeletons import Skeletons, read_swc, skeletonize
from ffnops.ffn.geometry import as_vec3
from ffnops.tracking.evaluation_log import log_candidates, log_evaluation
from ffnops.viewing.skeletons import write_skeletons
from ffnops.viewing.state import (
    GROUNDTRUTH_LAYER,
    IMAGE_LAYER,
    SEGMENTATION_LAYER,
    error_state,
    served_run_state,
    state_url,
)
from ffnops.viewing.view_data import RUN_ARTIFACTS, write_labels_view
from ffnops.volume import BBox
from ffnops.volumes import open_volume


@dataclass(frozen=True)
class GroundTruthPart:
    """Where the ground truth is scored: its own voxels, and the same voxels in the box."""

    in_groundtruth: BBox
    in_box: BBox


def groundtruth_part(
    uri: str,
    box: BBox,
    volume_offset: Sequence[int],
    voxel_size: Sequence[float],
    scored: BBox | None = None,
) -> GroundTruthPart:
    """The part of ``box`` (of a volume with ``volume_offset`` and ``voxel_size``) that the
    ground truth labels, aligned by offsets, found before any work so a wrong ground truth
    fails at once; only within ``scored`` (inside ``box``) if given. A ground truth that covers
    only part of it (as FIB-25's, whose labels stop at z = 175) is scored on that part, and
    says so."""
    target = scored if scored is not None else box
    with open_volume(uri, dtypes=LABEL_DTYPES) as gt:
        if not np.allclose(gt.voxel_size, voxel_size):
            raise FfnopsError(
                f"ground truth {uri} has voxels of {list(gt.voxel_size)} nm and the segmented "
                f"volume {list(voxel_size)} nm (z, y, x): they must be the same grid"
            )
        start = [g - i for g, i in zip(gt.offset, volume_offset, strict=True)]
        extent = BBox(as_vec3(start), gt.shape)
        common = target.intersect(extent)
        if common is None:
            raise FfnopsError(
                f"ground truth {uri} (shape {gt.shape}, offset {gt.offset}) does not overlap "
                f"the box [{target}] (offset {tuple(volume_offset)}): in that volume's voxels it "
                f"covers [{extent}]"
            )
    if common != target:
        print(f"ground truth {uri} covers [{common}] of the box [{target}]: scored there only")
    return GroundTruthPart(common.shifted(extent.start), common.shifted(box.start))


def given_skeletons(path: str | None) -> Skeletons | None:
    """SWC skeletons, read (and so checked) before any work."""
    return read_swc(Path(path)) if path else None


@dataclass(frozen=True)
class ScoringPlan:
    """``infer groundtruth=``, checked before the work: the part scored and given skeletons."""

    groundtruth: str
    part: GroundTruthPart
    skeletons: Skeletons | None


def plan_scoring(
    cfg: DictConfig, box: BBox, volume_offset: Sequence[int], voxel_size: Sequence[float]
) -> ScoringPlan | None:
    if not cfg.groundtruth:
        for key in ("skeletons", "eval_bbox"):
            if cfg[key]:
                raise FfnopsError(
                    f"{key}={cfg[key]} needs groundtruth=URI (the dense labels it scores against)"
                )
        return None
    scored = None
    if cfg.eval_bbox:
        try:
            scored = BBox.parse(str(cfg.eval_bbox))
        except ValueError as exc:
            raise FfnopsError(f"eval_bbox={cfg.eval_bbox}: {exc}") from None
        if min(scored.size) < 1 or box.intersect(scored) != scored:
            raise FfnopsError(
                f"eval_bbox=[{scored}] must be a non-empty part of the inferred bbox=[{box}] "
                "(the box segmented with its context around it)"
            )
    part = groundtruth_part(cfg.groundtruth, box, volume_offset, voxel_size, scored)
    return ScoringPlan(cfg.groundtruth, part, given_skeletons(cfg.skeletons))


def score_box(
    cfg: DictConfig, plan: ScoringPlan, labels: npt.NDArray[np.integer], box_offset: Sequence[int]
) -> tuple[Evaluation, npt.NDArray[np.integer]]:
    """The evaluation of ``labels`` (the scored part of a box whose voxel 0 is the volume's
    ``box_offset``) and the ground truth it was scored on."""
    with open_volume(plan.groundtruth, dtypes=LABEL_DTYPES) as gt:
        truth = np.asarray(gt.read(plan.part.in_groundtruth))
        voxel_size = gt.voxel_size
    origin = [int(o) + s for o, s in zip(box_offset, plan.part.in_box.start, strict=True)]
    mlflow.set_tag("ffnops.eval_bbox", str(plan.part.in_box))  # relative to the box
    evaluation = score_part(labels, truth, voxel_size, origin, cfg.evaluation, plan.skeletons)
    return evaluation, truth


def score_part(
    segmentation: npt.NDArray[np.integer],
    truth: npt.NDArray[np.integer],
    voxel_size: Sequence[float],
    origin_voxels: Sequence[int],
    options: DictConfig,
    skeletons: Skeletons | None,
) -> Evaluation:
    """The evaluation of one aligned pair of arrays that start at voxel ``origin_voxels``;
    without given skeletons, kimimaro's of the ground truth unless
    ``evaluation.skeletonize=false`` (then no ERL)."""
    if options.voxel_size is not None:
        voxel_size = [float(v) for v in options.voxel_size]
        if len(voxel_size) != 3 or not all(np.isfinite(v) and v > 0 for v in voxel_size):
            raise FfnopsError(
                f"evaluation.voxel_size={options.voxel_size}: expected three positive nm "
                "values (z, y, x)"
            )
    if skeletons is None and options.skeletonize and (truth > 0).any():
        objects = len(np.unique(truth[truth > 0]))
        print(f"skeletonizing {objects} ground-truth objects (kimimaro) for ERL")
        skeletons = skeletonize(
            truth, voxel_size, origin_voxels, options.skeleton_dust_voxels, progress=True
        )
    return evaluate(segmentation, truth, voxel_size, origin_voxels, options.min_overlap, skeletons)


def run_view_layers(tracking_uri: str, run_id: str) -> set[str]:
    """The layers of the neuroglancer copy a run already keeps."""
    listed = MlflowClient(tracking_uri).list_artifacts(run_id, RUN_ARTIFACTS)
    return {Path(f.path).name for f in listed}


def publish_evaluation(
    cfg: DictConfig,
    evaluation: Evaluation,
    truth: npt.NDArray[np.integer],
    run_id: str,
    title: str,
    voxel_size: Sequence[float],
) -> None:
    """On the active run: the ground truth as a layer of the run's neuroglancer copy (when
    ``viewer.publish`` and the run has a copy, whose voxels are ``voxel_size``), one link per
    error, and the evaluation."""
    links: list[str] = []
    layers = run_view_layers(cfg.tracking.tracking_uri, run_id) if cfg.viewer.publish else set()
    if SEGMENTATION_LAYER in layers:
        with tempfile.TemporaryDirectory(prefix="ffnops-gt-view-") as tmp:
            write_labels_view(
                Path(tmp) / GROUNDTRUTH_LAYER,
                truth,
                voxel_size,
                evaluation.origin_voxels,
            )
            if evaluation.skeletons is not None and len(evaluation.skeletons.positions):
                # The skeletons ERL was scored on, drawn with the ground-truth objects.
                write_skeletons(Path(tmp) / GROUNDTRUTH_LAYER, evaluation.skeletons)
            mlflow.log_artifacts(tmp, RUN_ARTIFACTS)
        links = error_links(cfg, evaluation, run_id, voxel_size, IMAGE_LAYER in layers)
    log_evaluation(evaluation, links, title)
    if links:
        print(
            f"{len(links)} errors, worst first, with neuroglancer links (while `ffnops view "
            f"{run_id}` runs): evaluation/errors.csv; the first: {links[0]}"
        )


def error_links(
    cfg: DictConfig,
    evaluation: Evaluation,
    run_id: str,
    voxel_size: Sequence[float],
    image: bool,
) -> list[str]:
    """Each error's link into the run's served copy: centred where its two parts meet, the
    segments involved selected, and the ground-truth objects involved shown."""
    viewer = cfg.viewer
    shape = [1, 1, 1]  # the centre and zoom are each error's own
    state = served_run_state(
        f"http://{viewer.host}:{viewer.port}",
        run_id,
        voxel_size,  # the copy's: the links' coordinates are its voxels
        evaluation.origin_voxels,
        shape,
        viewer.layout,
        image=image,
        groundtruth=True,
    )
    links = []
    for error in evaluation.errors:
        if error.kind == MERGE:
            segments, objects = [error.segment_id], [error.groundtruth_id, error.other_id]
        else:
            segments, objects = [error.segment_id, error.other_id], [error.groundtruth_id]
        where = position_in_volume(error, evaluation.origin_voxels)
        links.append(state_url(error_state(state, where, segments, objects), viewer.client_url))
    return links


def print_evaluation(evaluation: Evaluation) -> None:
    for key, value in evaluation.metrics().items():
        print(f"  {key:<20} {value:.4f}")


def publish_candidates(
    cfg: DictConfig,
    segmentation: npt.NDArray[np.integer],
    probabilities: npt.NDArray[np.floating] | None,
    threshold: float | None,
    voxel_size: Sequence[float],
    origin_voxels: Sequence[int],
    run_id: str,
) -> list[Candidate]:
    """The ground-truth-free queue of likely errors, with links when the run has a copy."""
    candidates = find_candidates(segmentation, probabilities, threshold, cfg.evaluation.min_overlap)
    links: list[str] = []
    layers = run_view_layers(cfg.tracking.tracking_uri, run_id) if cfg.viewer.publish else set()
    if SEGMENTATION_LAYER in layers:
        viewer = cfg.viewer
        state = served_run_state(
            f"http://{viewer.host}:{viewer.port}", run_id, voxel_size, origin_voxels, [1, 1, 1],
            viewer.layout, image=IMAGE_LAYER in layers, groundtruth=GROUNDTRUTH_LAYER in layers,
        )  # fmt: skip
        for candidate in candidates:
            segments = [s for s in (candidate.segment_id, candidate.other_id) if s]
            where = [
                int(p) + int(o) for p, o in zip(candidate.position, origin_voxels, strict=True)
            ]
            links.append(state_url(error_state(state, where, segments), viewer.client_url))
    log_candidates(candidates, origin_voxels, links)
    if candidates:
        first = candidates[0]
        print(
            f"{len(candidates)} places to check without ground truth (evaluation/candidates.csv);"
            f" the first: {first.kind} of segment {first.segment_id}, score {first.score:.2f}"
        )
    return candidates
