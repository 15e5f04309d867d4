"""``ffnops infer``: segment a box of a volume with a registered model, as ``run_inference.py``.

A recipe: check everything that can be checked (tracking store, output, executor, model,
image and box, ground truth), then segment with one canvas (``executor=local``) or blockwise
(``executor.block_size``, ``executor=daisy``), write the output, score it, and log the MLflow
run with its picture and neuroglancer link. docs/inference.md explains each part.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ffnops.atomic import nearest_existing
from ffnops.blocks import BlockLayout
from ffnops.commands.scoring import (
    ScoringPlan,
    plan_scoring,
    print_evaluation,
    publish_candidates,
    publish_evaluation,
    score_box,
)
from ffnops.config.checks import given_on_command_line
from ffnops.config.schemas import ExecutorConfig
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.executor import Executor, TaskProgress, make_executor
from ffnops.ffn.cpu import cpp_compiler
from ffnops.ffn.geometry import as_vec3
from ffnops.ffn.options import InferenceOptions
from ffnops.inference.blockwise import (
    BlockwiseJob,
    StitchRule,
    clear_work,
    peak_rss_mb,
    run_blockwise,
)
from ffnops.inference.progress import BlockProgress
from ffnops.inference.request import BoxRequest, DeviceSettings
from ffnops.inference.runner import (
    IMAGE_DTYPES,
    BoxImage,
    device_name,
    read_image,
    segment_box,
)
from ffnops.outputs import claim_output, local_output_path, refuse_busy_output
from ffnops.processes import default_sigterm
from ffnops.tracking.inference_run import (
    BlockMetrics,
    inference_run,
    log_results,
    log_seed_progress,
    speed_metrics,
)
from ffnops.tracking.mlflow_tracking import check_tracking_uri, flatten, run_tags
from ffnops.tracking.pictures import overlay_figure, planes_figure, volume_centre_planes
from ffnops.tracking.registry import RegisteredModel, load_registered_model
from ffnops.viewing.mesh_task import MeshJob, attach_meshes
from ffnops.viewing.meshes import MeshSummary, meshes_wanted
from ffnops.viewing.publish import publish_view
from ffnops.viewing.state import SEGMENTATION_LAYER
from ffnops.viewing.view_data import copy_view_data, write_view_data
from ffnops.volume import VolumeSpec
from ffnops.volumes import box_of, create_volume, open_volume, write_segmentation


def effective_options(cfg: DictConfig, registered: RegisteredModel) -> InferenceOptions:
    """The inference options: the model's stored ones (pad value, move threshold, ...) over the
    default inference group's, unless the user chose a group (``inference=manual``, whose values
    then all hold) or set the option (``inference.pad_value=...``)."""
    try:
        options: InferenceOptions = OmegaConf.to_object(cfg.inference)  # type: ignore[assignment]
        if given_on_command_line("inference"):
            return options
        stored: dict[str, Any] = {
            k: v
            for k, v in registered.settings.inference_options().items()
            if not given_on_command_line(f"inference.{k}")
        }
        return replace(options, **stored)
    except ValueError as exc:  # InferenceOptions' own checks name the key
        raise FfnopsError(str(exc)) from None


def job_key(cfg: DictConfig, request: BoxRequest, registered: RegisteredModel, *extra: Any) -> str:
    """A digest of what decides this inference's result: image, box, model version, options,
    normalisation, mask, precision, output (and the block layout when blockwise)."""
    key = json.dumps(
        [
            cfg.image,
            str(request.box),
            registered.name,
            registered.version,
            vars(request.options),
            cfg.output,
            *extra,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def checkpoint_file(cfg: DictConfig, request: BoxRequest, registered: RegisteredModel) -> Path:
    """Where this exact single-canvas inference checkpoints."""
    digest = job_key(cfg, request, registered)
    return Path(cfg.paths.output_dir) / "checkpoints" / f"infer-{digest}.npz"


def device_settings(config: ExecutorConfig) -> DeviceSettings:
    """The executor's device settings, checked: CUDA must exist if asked for; worker processes
    share the CPU cores unless ``num_threads`` says otherwise."""
    device = device_name(config.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FfnopsError(
            f"executor.device={config.device}: no CUDA device here (torch "
            f"{torch.__version__}); use executor=cpu"
        )
    if config.batch_size < 1:
        raise FfnopsError(f"executor.batch_size must be at least 1, got {config.batch_size}")
    threads = config.num_threads
    if threads is None and config.workers > 1:
        threads = max(1, (os.cpu_count() or 1) // config.workers)
    if config.compile and device == "cpu" and cpp_compiler() is None:
        raise FfnopsError(
            "executor.compile=true: torch.compile needs a C++ compiler on a CPU and none was "
            "found (install g++ or set CXX); or set executor.compile=false"
        )
    return DeviceSettings(device, config.precision, config.channels_last, threads, config.compile)


def box_request(cfg: DictConfig, registered: RegisteredModel, device: DeviceSettings) -> BoxRequest:
    """The typed request for the runners, every input checked before any work."""
    settings = registered.settings
    mean = cfg.image_mean if cfg.image_mean is not None else settings.image_mean
    stddev = cfg.image_stddev if cfg.image_stddev is not None else settings.image_stddev
    if mean is None or stddev is None:
        raise FfnopsError(
            f"{cfg.model_uri} stores no image_mean/image_stddev; set them on the command line"
        )
    if not (np.isfinite(mean) and np.isfinite(stddev) and stddev > 0):
        raise FfnopsError(
            f"image_mean={mean}, image_stddev={stddev}: expected finite values and a positive "
            "stddev (intensities are normalised as (raw - mean) / stddev)"
        )
    with open_volume(cfg.image, dtypes=IMAGE_DTYPES) as volume:
        box = box_of(volume, cfg.bbox)
    if any(f > n for f, n in zip(settings.fov_size, box.size, strict=True)):
        raise FfnopsError(
            f"the model's FOV {settings.fov_size} is larger than the box [{box}] of size {box.size}"
        )
    if cfg.mask:
        open_volume(cfg.mask).close()
    return BoxRequest(
        model=registered.model,
        settings=settings,
        options=effective_options(cfg, registered),
        image_uri=cfg.image,
        box=box,
        image_mean=float(mean),
        image_stddev=float(stddev),
        model_uri=registered.uri,
        mask_uri=cfg.mask,
        device=device,
    )


def model_inputs(
    cfg: DictConfig,
) -> tuple[ExecutorConfig, Executor, RegisteredModel, BoxRequest]:
    """What a command that runs a registered model over an image checks first: the output is
    not busy (claimed later, after the slow checks), the store, the executor and its device,
    the model, and the typed request."""
    refuse_busy_output(cfg.output)
    check_tracking_uri(cfg.tracking.tracking_uri)
    config: ExecutorConfig = OmegaConf.to_object(cfg.executor)  # type: ignore[assignment]
    executor = make_executor(config)
    device = device_settings(config)
    registered = load_registered_model(cfg.tracking.tracking_uri, cfg.model_uri)
    return config, executor, registered, box_request(cfg, registered, device)


def run(cfg: DictConfig) -> None:
    config, executor, registered, request = model_inputs(cfg)
    with open_volume(cfg.image) as volume:
        scored = plan_scoring(cfg, request.box, volume.offset, volume.voxel_size)
    blockwise = executor.blockwise or config.block_size is not None
    if blockwise:
        executor.check_workers(shared_folders(cfg))
    else:
        refuse_one_canvas_options(config)
        box_image = read_image(request, request.box)  # intensities checked (blocks check theirs)
    # Last of the checks: held while the work runs, so a second identical command is refused.
    dtype = "uint64" if blockwise else "uint32"
    spec = VolumeSpec(request.box.size, dtype, kind="segmentation")  # type: ignore[arg-type]
    nbytes = request.box.num_voxels * np.dtype(dtype).itemsize
    with claim_output(cfg.output, cfg.overwrite, nbytes, spec):
        if blockwise:
            infer_blockwise(cfg, registered, request, executor, config, scored)
        else:
            infer_one_canvas(cfg, registered, request, scored, box_image)


def shared_folders(cfg: DictConfig) -> dict[str, Path]:
    """The folders every worker of a blockwise job writes in, by the key that sets each: the
    job's (under ``paths.output_dir``) and a local output's, where they exist so far."""
    folders = {"paths.output_dir": nearest_existing(Path(cfg.paths.output_dir).absolute())}
    path = local_output_path(cfg.output)
    if path is not None:
        folders["output"] = nearest_existing(path.parent)
    return folders


def refuse_one_canvas_options(config: ExecutorConfig) -> None:
    """Executor keys that only mean something blockwise are refused for one canvas."""
    if config.batch_size > 1:
        raise FfnopsError(
            f"executor.batch_size={config.batch_size} batches the FOVs of several canvases, "
            "and executor=local without executor.block_size runs one: set "
            "executor.block_size to cut the box into blocks, or executor.batch_size=1"
        )
    for key, what in (
        ("keep_blocks", "keeps a blockwise job's segmented blocks"),
        ("continue_objects", "continues a finished neighbour block's objects"),
        ("seed_context", "seeds a block's context too"),
    ):
        if getattr(config, key):
            raise FfnopsError(
                f"executor.{key}=true {what}, and executor=local without "
                f"executor.block_size runs one canvas: set executor.block_size, or "
                f"executor.{key}=false"
            )


def run_params(cfg: DictConfig, request: BoxRequest, extra: dict[str, str]) -> dict[str, str]:
    params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    params.update({f"effective.{k}": str(v) for k, v in vars(request.options).items()})
    params["bbox"] = str(request.box)
    return {**params, **extra}


def run_tags_for(cfg: DictConfig, registered: RegisteredModel) -> dict[str, str]:
    return {
        "ffnops.model_uri": registered.uri,
        "ffnops.model_name": registered.name,
        "ffnops.model_version": registered.version,
        "ffnops.output": cfg.output,
        "ffnops.image": cfg.image,
        **run_tags(cfg.tracking),
    }


def infer_one_canvas(
    cfg: DictConfig,
    registered: RegisteredModel,
    request: BoxRequest,
    scored: ScoringPlan | None,
    box_image: BoxImage,
) -> None:
    checkpoint = checkpoint_file(cfg, request, registered)
    request = replace(request, checkpoint=checkpoint)
    with inference_run(
        cfg.tracking.tracking_uri,
        cfg.tracking.inference_experiment,
        cfg.tracking.run_name,
        run_params(cfg, request, {}),
        run_tags_for(cfg, registered),
        checkpoint.with_suffix(".run_id"),
    ) as mlflow_run:
        run_id = mlflow_run.info.run_id
        result, raw = segment_box(request, log_seed_progress, box_image)
        written = write_segmentation(result, cfg.output, overwrite=cfg.overwrite)
        checkpoint.unlink(missing_ok=True)  # the output is complete
        metrics = speed_metrics(result.counters, result.counters["seconds"])
        labels = result.labels
        title = picture_title(cfg, registered, request)
        figure = overlay_figure(raw, labels, title)
        log_results(metrics, figure, run_id, cfg.tracking.inference_experiment)
        if cfg.viewer.publish:

            def write_copy(folder: Path) -> MeshSummary | None:
                meshes = meshes_wanted(cfg.viewer.meshes, labels.shape, cfg.viewer.mesh_auto_voxels)
                return write_view_data(
                    folder, raw, labels, result.voxel_size, result.offset, meshes
                )

            publish(cfg, run_id, write_copy, result.voxel_size, result.offset, labels.shape)
        evaluation = None
        if scored is not None:
            part = labels[scored.part.in_box.slices]
            evaluation, truth = score_box(cfg, scored, part, result.offset)
            publish_evaluation(cfg, evaluation, truth, run_id, title, result.voxel_size)
        threshold = request.options.segment_threshold
        publish_candidates(
            cfg, labels, result.probabilities, threshold, result.voxel_size, result.offset, run_id
        )
    print(
        f"wrote {written}: {int(metrics['objects'])} objects, {int(metrics['network_calls'])} "
        f"FOV steps in {metrics['seconds']:.1f} s ({metrics['ms_per_step']:.1f} ms/step)"
    )
    if evaluation is not None:
        print_evaluation(evaluation)


def publish(
    cfg: DictConfig,
    run_id: str,
    write_copy: Callable[[Path], MeshSummary | None],
    voxel_size: Sequence[float],
    offset: Sequence[int],
    shape: Sequence[int],
) -> None:
    """The run's neuroglancer copy and link (``viewer`` group), and the link printed."""
    viewer = cfg.viewer
    link = publish_view(
        write_copy,
        run_id,
        voxel_size,
        offset,
        shape,
        viewer.host,
        viewer.port,
        viewer.client_url,
        viewer.layout,
        groundtruth=bool(cfg.groundtruth),  # its layer joins the copy once scored
        shown=viewer.shown,
    )
    print(f"neuroglancer (while `ffnops view {run_id}` runs): {link}")


def picture_title(cfg: DictConfig, registered: RegisteredModel, request: BoxRequest) -> str:
    return f"{registered.uri} on {Path(str(cfg.image)).name} [{request.box}]"


def infer_blockwise(
    cfg: DictConfig,
    registered: RegisteredModel,
    request: BoxRequest,
    executor: Executor,
    config: ExecutorConfig,
    scored: ScoringPlan | None,
) -> None:
    """Blocks, stitched to global ids, written blockwise into a chunked output."""
    layout = BlockLayout.plan(
        request.box, config.block_size, request.settings.fov_size, config.overlap
    )
    stitch = StitchRule(
        config.stitch_min_voxels,
        config.stitch_min_fraction,
        config.stitch_fraction_of,
        config.stitch_disputes,
    )
    if config.continue_objects and any(
        2 * c > b for c, b in zip(layout.context, layout.block_size, strict=True)
    ):
        raise FfnopsError(
            f"executor.continue_objects needs twice the context (FOV radius + executor.overlap = "
            f"{list(layout.context)}) no larger than executor.block_size "
            f"{list(layout.block_size)}, so that no two blocks of a wave overlap"
        )
    # What a block's canvas depends on besides the rest: its continuations (and their size) and
    # the seeds of its context.
    segmenting = ["continue_objects", config.stitch_min_voxels] if config.continue_objects else []
    segmenting += ["seed_context"] if config.seed_context else []
    digest = job_key(
        cfg,
        request,
        registered,
        layout,
        request.device.precision,
        request.device.compile,
        *segmenting,
    )
    job = BlockwiseJob(
        request,
        layout,
        Path(cfg.paths.output_dir).absolute() / "blockwise" / f"infer-{digest}",
        stitch,
        config.continue_objects,
        config.seed_context,
    )
    with open_volume(cfg.image) as volume:
        voxel_size = volume.voxel_size
        offset = as_vec3([o + s for o, s in zip(volume.offset, request.box.start, strict=True)])
    spec = VolumeSpec(
        request.box.size,
        "uint64",
        voxel_size,
        offset,
        layout.write_chunks(),
        "segmentation",  # type: ignore[arg-type]
    )
    output = create_volume(cfg.output, spec, overwrite=cfg.overwrite)
    if output.shared_uri is None:
        output.abort()
        raise FfnopsError(
            f"output={cfg.output}: this format takes one writer, and blockwise inference writes "
            "from every worker; use a chunked format: zarr://, n5:// or precomputed://"
        )
    if (job.workdir / "blocks").exists():
        print(f"resuming {job.workdir}: finished blocks are skipped")
    voxels_per_block = request.box.num_voxels / len(layout)
    bars: dict[str, BlockProgress] = {}
    metrics_log = BlockMetrics()

    def on_progress(phase: str, progress: TaskProgress) -> None:
        bar = bars.setdefault(phase, BlockProgress(phase, progress.total, voxels_per_block))
        rate = bar.update(progress.done, progress.failed, progress.skipped)
        metrics_log.log(phase, progress.total, progress.done, progress.failed, rate)
        if progress.done >= progress.total:
            bar.close()

    params = run_params(cfg, request, layout.describe())
    with inference_run(
        cfg.tracking.tracking_uri,
        cfg.tracking.inference_experiment,
        cfg.tracking.run_name,
        params,
        run_tags_for(cfg, registered),
        job.workdir / "run_id",
    ) as mlflow_run:
        run_id = mlflow_run.info.run_id
        meshing, mesh_seconds = None, 0.0
        if cfg.viewer.publish and meshes_wanted(
            cfg.viewer.meshes, request.box.size, cfg.viewer.mesh_auto_voxels
        ):
            meshing = MeshJob.plan(
                output.shared_uri, request.box.size, layout.block_size, job.workdir / "meshes"
            )
        try:
            with default_sigterm():  # daisy's scheduler would hold a Python handler back
                summary = run_blockwise(
                    job, executor, output.shared_uri, config.batch_size, on_progress
                )
                if meshing is not None:  # the output's meshes, on the same executor
                    started = time.perf_counter()
                    executor.run(meshing.task(), partial(on_progress, "mesh"))
                    mesh_seconds = time.perf_counter() - started
        except BaseException:
            output.abort()
            raise
        finally:
            for bar in bars.values():
                bar.close()
        output.commit()
        metrics = speed_metrics(summary.counters, summary.block_seconds)
        metrics.update(
            {
                "fragments": float(summary.fragments),
                "stitch_links": float(summary.links),
                "stitch_links_dropped": float(summary.dropped_links),
                "objects_continued": summary.counters["objects_continued"],
                "blocks": float(len(layout)),
                "peak_rss_mb_per_worker": summary.peak_rss_mb,
                **{f"seconds_{k}": v for k, v in summary.seconds.items()},
            }
        )
        mlflow.log_artifact(str(job.objects_file))
        with (
            open_volume(cfg.output, dtypes=LABEL_DTYPES) as labels,
            open_volume(cfg.image) as image,
        ):
            planes = volume_centre_planes(image, request.box, labels)
            title = picture_title(cfg, registered, request)
            log_results(
                metrics, planes_figure(planes, title), run_id, cfg.tracking.inference_experiment
            )
            if cfg.viewer.publish:

                def copy(folder: Path) -> MeshSummary | None:
                    copy_view_data(folder, image, request.box, labels, layout.block_size)
                    if meshing is None:
                        return None
                    return attach_meshes(folder / SEGMENTATION_LAYER, meshing, mesh_seconds)

                publish(cfg, run_id, copy, labels.voxel_size, labels.offset, labels.shape)
            evaluation = None
            if scored is not None:
                part = np.asarray(labels.read(scored.part.in_box))
                evaluation, truth = score_box(cfg, scored, part, labels.offset)
                publish_evaluation(cfg, evaluation, truth, run_id, title, labels.voxel_size)
        # This process: the scheduler, the numbering of objects, the picture and the viewer's copy.
        mlflow.log_metric("peak_rss_mb_scheduler", peak_rss_mb())
    clear_work(job, config.keep_blocks)
    if config.keep_blocks:
        print(f"kept the segmented blocks in {job.workdir / 'blocks'} (executor.keep_blocks)")
    print(
        f"wrote {cfg.output}: {summary.objects} objects from {summary.fragments} block fragments "
        f"in {len(layout)} blocks {list(layout.grid)}, {int(metrics['network_calls'])} FOV steps "
        f"({summary.seconds.get('segment', 0.0):.1f} s segmenting)"
    )
    if evaluation is not None:
        print_evaluation(evaluation)
