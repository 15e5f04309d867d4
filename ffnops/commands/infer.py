"""``ffnops infer``: segment a box of a volume with a registered model (FFN_SPEC section 6).

Model settings stored at registration (FOV, deltas, image mean/stddev, pad value, init activation,
move threshold) apply unless given on the command line. The segmentation goes to ``output``
through the output-sink plugins; with ``groundtruth`` it is scored; the run is logged to MLflow
in the ``tracking.inference_experiment`` experiment, linked to the model version.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import numpy.typing as npt
import torch
from hydra.core.hydra_config import HydraConfig
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ffnops.atomic import fresh_partial, publish, write_text
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError, VolumeError, VolumeExistsError
from ffnops.ffn.canvas import Canvas, Predict, run_canvas
from ffnops.ffn.geometry import as_vec3
from ffnops.ffn.metrics import score_segmentation
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.predictor import TorchPredictor
from ffnops.ffn.seeds import grid_seeds, peak_seeds
from ffnops.segmentation import SeedOrigin, SegmentationResult
from ffnops.tracking.mlflow_tracking import check_tracking_uri, flatten, run_tags
from ffnops.tracking.pictures import overlay_figure
from ffnops.tracking.registry import RegisteredModel, load_registered_model
from ffnops.viewing.state import served_run_state, state_json, state_url
from ffnops.viewing.view_data import RUN_ARTIFACTS, write_view_data
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_segmentation

MODEL_OPTIONS = ("pad_value", "init_activation", "move_threshold")
# EM images are uint8 or float32; integer ids are accepted as images for the oracle network.
IMAGE_DTYPES = ("uint8", "uint16", "uint32", "uint64", "float32")


def given_on_command_line(key: str) -> bool:
    """True if the user set ``key`` (e.g. ``inference.pad_value``) as an override."""
    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:
        return False
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in overrides)


def effective_options(cfg: DictConfig, registered: RegisteredModel) -> InferenceOptions:
    """The inference group's options, with the model's stored ones unless set by the user."""
    options: InferenceOptions = OmegaConf.to_object(cfg.inference)  # type: ignore[assignment]
    stored: dict[str, Any] = {
        k: float(registered.settings[k])
        for k in MODEL_OPTIONS
        if k in registered.settings and not given_on_command_line(f"inference.{k}")
    }
    return replace(options, **stored)


def refuse_existing_output(uri: str, overwrite: bool) -> None:
    """Checked before any work: an existing output is kept unless ``overwrite=true``."""
    if overwrite:
        return
    try:
        open_volume(uri).close()
    except VolumeError:
        return
    raise VolumeExistsError(f"{uri} already exists; pass overwrite=true to replace it")


def checkpoint_file(
    cfg: DictConfig, registered: RegisteredModel, options: InferenceOptions, box: BBox
) -> Path:
    """Where this exact inference (image, box, model version, options, output) checkpoints."""
    key = json.dumps(
        [cfg.image, str(box), registered.name, registered.version, vars(options), cfg.output],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return Path(cfg.paths.output_dir) / "checkpoints" / f"infer-{digest}.npz"


def save_state(path: Path, state: dict[str, np.ndarray]) -> None:
    """Writes the canvas state atomically (a kill leaves the previous checkpoint intact)."""
    tmp = fresh_partial(path)
    with open(tmp, "wb") as f:
        np.savez(f, **state)  # type: ignore[arg-type]
    publish(tmp, path)


def resume_from(path: Path, canvas: Canvas) -> int:
    """Restores a checkpoint of the same inference if there is one; returns the next seed."""
    if not path.exists():
        return 0
    try:
        with np.load(path, allow_pickle=False) as data:
            first = canvas.restore({k: data[k] for k in data.files})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FfnopsError(
            f"corrupt inference checkpoint {path} ({exc}); delete it to start over"
        ) from None
    print(f"resuming from {path}: {canvas.counters.objects} objects, seed {first}")
    return first


@dataclass(frozen=True)
class GroundTruthPart:
    """Where the ground truth is scored: its own voxels, and the same voxels in the box."""

    in_groundtruth: BBox
    in_box: BBox


def groundtruth_part(uri: str, box: BBox, image_offset: tuple[int, ...]) -> GroundTruthPart:
    """The part of ``box`` the ground truth labels (aligned by offsets), found before inference
    so a wrong ground truth fails at once. A ground truth that covers only part of the box (as
    FIB-25's, whose labels stop at z = 175) is scored on that part, and says so."""
    with open_volume(uri, dtypes=LABEL_DTYPES) as gt:
        # The ground truth's extent in the image's voxel grid.
        start = [g - i for g, i in zip(gt.offset, image_offset, strict=True)]
        extent = BBox(as_vec3(start), gt.shape)
        common = box.intersect(extent)
        if common is None:
            raise FfnopsError(
                f"groundtruth {uri} (shape {gt.shape}, offset {gt.offset}) does not overlap "
                f"the box [{box}] of the image (offset {tuple(image_offset)}): in the image's "
                f"voxels it covers [{extent}]"
            )
    if common != box:
        print(f"groundtruth {uri} covers [{common}] of the box [{box}]: scored there only")
    return GroundTruthPart(common.shifted(extent.start), common.shifted(box.start))


def device_name(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def run(cfg: DictConfig) -> None:
    check_tracking_uri(cfg.tracking.tracking_uri)
    refuse_existing_output(cfg.output, cfg.overwrite)
    registered = load_registered_model(cfg.tracking.tracking_uri, cfg.model_uri)
    settings = registered.settings
    fov, deltas = settings.get("fov_size"), settings.get("deltas")
    model_fov = getattr(registered.model, "fov_size", None)
    fov = list(fov or model_fov or [])
    if len(fov) != 3 or not deltas:
        raise FfnopsError(f"{cfg.model_uri}: the model version has no fov_size/deltas settings")
    options = effective_options(cfg, registered)
    mean = cfg.image_mean if cfg.image_mean is not None else settings.get("image_mean")
    stddev = cfg.image_stddev if cfg.image_stddev is not None else settings.get("image_stddev")
    if mean is None or stddev is None:
        raise FfnopsError(
            f"{cfg.model_uri} stores no image_mean/image_stddev; set them on the command line"
        )

    with open_volume(cfg.image, dtypes=IMAGE_DTYPES) as volume:
        box = BBox.parse(cfg.bbox) if cfg.bbox else BBox.from_shape(volume.shape)
        if any(f > n for f, n in zip(fov, box.size, strict=True)):
            raise FfnopsError(
                f"the model's FOV {tuple(fov)} is larger than the box [{box}] of size {box.size}"
            )
        raw = volume.read(box)
        voxel_size, offset = volume.voxel_size, volume.offset
    scored = groundtruth_part(cfg.groundtruth, box, offset) if cfg.groundtruth else None
    mask = None
    if cfg.mask:
        with open_volume(cfg.mask) as mask_volume:
            mask = np.asarray(mask_volume.read(box)) > 0
    image = (raw.astype(np.float32) - np.float32(mean)) / np.float32(stddev)
    canvas = Canvas(image, tuple(fov), tuple(deltas), options, mask=mask)  # type: ignore[arg-type]
    if options.seed_policy == "peaks":
        seeds = peak_seeds(image, canvas.fov_radius, mask, voxel_size)
    elif options.seed_policy == "grid":
        seeds = grid_seeds(image.shape, canvas.fov_radius, **options.seed_policy_args)
    else:
        raise FfnopsError(
            f"inference.seed_policy must be peaks or grid, got {options.seed_policy!r}"
        )
    predictor = TorchPredictor(
        registered.model,
        device_name(cfg.executor.device),
        cfg.executor.precision,
        cfg.executor.channels_last,
    )
    if cfg.executor.num_threads:
        torch.set_num_threads(cfg.executor.num_threads)

    checkpoint = checkpoint_file(cfg, registered, options, box)
    first_seed = resume_from(checkpoint, canvas)
    with inference_run(cfg, registered, options, box, checkpoint) as mlflow_run:
        run_id = mlflow_run.info.run_id
        started = time.perf_counter()
        progress = SeedProgress(canvas, len(seeds), first_seed)

        def after_seed(index: int) -> None:
            progress.seed_done()
            if progress.due_for_checkpoint(options.checkpoint_interval_s):
                save_state(checkpoint, canvas.state())
                progress.log_to_mlflow()

        run_canvas(canvas.segment_all(seeds, first_seed, after_seed), progress.wrap(predictor))
        progress.close()
        seconds = time.perf_counter() - started
        labels = canvas.final_segmentation()
        result = SegmentationResult(
            labels=labels,
            offset=tuple(o + s for o, s in zip(offset, box.start, strict=True)),  # type: ignore[arg-type]
            voxel_size=voxel_size,
            origins={
                i: SeedOrigin(o.start, o.iters, o.walltime_s) for i, o in canvas.origins.items()
            },
            counters={**canvas.counters.as_dict(), "seconds": seconds},
            probabilities=canvas.probabilities,
            image_uri=cfg.image,
            settings={**vars(options), "model": registered.uri, "bbox": str(box)},
        )
        written = write_segmentation(result, cfg.output, overwrite=cfg.overwrite)
        checkpoint.unlink(missing_ok=True)  # the output is complete
        metrics = run_metrics(canvas, seconds)
        if scored is not None:
            with open_volume(cfg.groundtruth) as gt_volume:
                truth = np.asarray(gt_volume.read(scored.in_groundtruth))
            scores = score_segmentation(labels[scored.in_box.slices], truth)
            metrics.update({f"eval/{k}": v for k, v in scores.as_dict().items()})
            mlflow.set_tag("ffnops.eval_bbox", str(scored.in_box))  # relative to the box
        log_inference_results(cfg, registered, metrics, raw, result, box, run_id)
    print(
        f"wrote {written}: {canvas.counters.objects} objects, {canvas.counters.network_calls} "
        f"FOV steps in {seconds:.1f} s ({metrics['ms_per_step']:.1f} ms/step)"
    )
    for key, value in metrics.items():
        if key.startswith("eval/"):
            print(f"  {key[5:]:<20} {value:.4f}")


def run_metrics(canvas: Canvas, seconds: float) -> dict[str, float]:
    """Size and speed of the finished inference (seconds count this process's work only)."""
    counters = canvas.counters
    return {
        "seconds": seconds,
        "objects": float(counters.objects),
        "network_calls": float(counters.network_calls),
        "voxels_segmented": float(counters.voxels_segmented),
        "voxels_per_s": counters.voxels_segmented / max(seconds, 1e-9),
        "fov_steps_per_s": counters.network_calls / max(seconds, 1e-9),
        "ms_per_step": 1000 * seconds / max(counters.network_calls, 1),
    }


class SeedProgress:
    """The progress bar over seeds, refreshed during long floods too (one object can take
    thousands of FOV steps), and the running counts logged to MLflow at each checkpoint."""

    def __init__(self, canvas: Canvas, seeds: int, first_seed: int) -> None:
        self.canvas = canvas
        self.calls_at_start = canvas.counters.network_calls
        self.started = self.last_shown = self.last_save = time.perf_counter()
        self.bar = tqdm(total=seeds, initial=first_seed, desc="infer", unit="seed")

    def show(self) -> None:
        counters = self.canvas.counters
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(
            objects=counters.objects,
            fov_steps=counters.network_calls,
            steps_s=f"{(counters.network_calls - self.calls_at_start) / elapsed:.2f}",
            refresh=True,
        )
        self.last_shown = time.perf_counter()

    def seed_done(self) -> None:
        self.bar.update(1)
        if time.perf_counter() - self.last_shown >= 1.0:
            self.show()

    def wrap(self, predict: Predict) -> Predict:
        def predict_and_show(inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            logits = predict(inputs)
            if time.perf_counter() - self.last_shown >= 1.0:
                self.show()
            return logits

        return predict_and_show

    def due_for_checkpoint(self, interval_s: float) -> bool:
        if interval_s <= 0 or time.perf_counter() - self.last_save < interval_s:
            return False
        self.last_save = time.perf_counter()
        return True

    def log_to_mlflow(self) -> None:
        counters = self.canvas.counters
        mlflow.log_metrics(
            {
                "progress/seeds_done": float(self.canvas.seeds_done),
                "progress/objects": float(counters.objects),
                "progress/voxels_segmented": float(counters.voxels_segmented),
            },
            step=counters.network_calls,
        )

    def close(self) -> None:
        self.show()
        self.bar.close()


@contextmanager
def inference_run(
    cfg: DictConfig,
    registered: RegisteredModel,
    options: InferenceOptions,
    box: BBox,
    checkpoint: Path,
) -> Iterator[mlflow.ActiveRun]:
    """The inference's MLflow run, opened before the work so the UI shows its real duration and
    state; an inference resumed after a kill continues the run its first start opened."""
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    mlflow.set_experiment(cfg.tracking.inference_experiment)
    run_id_file = checkpoint.with_suffix(".run_id")
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    if run_id is not None and not run_exists(run_id):
        run_id = None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else cfg.tracking.run_name) as run:
        if run_id is None:
            params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
            params.update({f"effective.{k}": str(v) for k, v in vars(options).items()})
            params["bbox"] = str(box)
            mlflow.log_params(params)
            mlflow.set_tags(
                {
                    "ffnops.model_uri": registered.uri,
                    "ffnops.model_name": registered.name,
                    "ffnops.model_version": registered.version,
                    "ffnops.output": cfg.output,
                    "ffnops.image": cfg.image,
                    **run_tags(cfg.tracking),
                }
            )
            write_text(run_id_file, run.info.run_id)
        yield run
    run_id_file.unlink(missing_ok=True)


def run_exists(run_id: str) -> bool:
    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def log_inference_results(
    cfg: DictConfig,
    registered: RegisteredModel,
    metrics: dict[str, float],
    image: np.ndarray,
    result: SegmentationResult,
    box: BBox,
    run_id: str,
) -> None:
    """Scores, an overlay picture and (``viewer.publish``) a neuroglancer copy of image and
    segmentation with a link to it, on the active inference run."""
    mlflow.log_metrics(metrics)
    figure = overlay_figure(
        image, result.labels, f"{registered.uri} on {Path(str(cfg.image)).name} [{box}]"
    )
    mlflow.log_figure(figure, "segmentation_overlay.png")
    plt.close(figure)
    print(f"MLflow run {run_id} in experiment {cfg.tracking.inference_experiment!r}")
    if cfg.viewer.publish:
        link = publish_view(cfg.viewer, run_id, image, result)
        print(f"neuroglancer (while `ffnops view {run_id}` runs): {link}")


def publish_view(
    viewer: DictConfig, run_id: str, image: np.ndarray, result: SegmentationResult
) -> str:
    """Logs the run's precomputed view copy, its neuroglancer state and the link tag."""
    with tempfile.TemporaryDirectory(prefix="ffnops-view-") as tmp:
        write_view_data(Path(tmp), image, result.labels, result.voxel_size, result.offset)
        mlflow.log_artifacts(tmp, RUN_ARTIFACTS)
    base_url = f"http://{viewer.host}:{viewer.port}"
    state = served_run_state(
        base_url, run_id, result.voxel_size, result.offset, result.labels.shape, viewer.layout
    )
    mlflow.log_dict(state_json(state), "neuroglancer_state.json")
    link = state_url(state, viewer.client_url)
    mlflow.set_tag("neuroglancer_url", link)
    return link
