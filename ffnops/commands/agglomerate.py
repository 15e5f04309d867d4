"""``ffnops agglomerate model=models:/... seg=URI image=URI output=URI``: join objects the FFN,
run again on their contact, floods into each other (docs/agglomeration.md, "Agglomeration").

A recipe over :mod:`ffnops.agglomeration.job`: every input is checked first (the model, the
segmentation against the image: shape and voxel size; the settings against the model's FOV;
the output), then the job runs on the executor, in an MLflow run of the ``agglomeration``
experiment with the resegmented pairs and their scores as ``pairs.csv``, and the output is
committed whole. A segmentation without contacts is written unchanged, and the command says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from ffnops.agglomeration.job import (
    AgglomerationJob,
    AgglomerationSummary,
    run_agglomeration,
    write_pairs_csv,
)
from ffnops.agglomeration.resegmentation import PairScore, ResegmentationSettings
from ffnops.atomic import remove_path
from ffnops.blocks import BlockLayout
from ffnops.commands.infer import model_inputs, run_params, run_tags_for
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.executor import TaskProgress
from ffnops.ffn.geometry import as_vec3
from ffnops.inference.progress import BlockProgress
from ffnops.outputs import claim_output
from ffnops.processes import default_sigterm
from ffnops.tracking.inference_run import inference_run
from ffnops.volume import VolumeSpec
from ffnops.volumes import check_same_voxels, create_volume, open_volume


def settings_of(cfg: DictConfig) -> ResegmentationSettings:
    return ResegmentationSettings(
        radius=as_vec3(cfg.radius, "radius"),
        analysis_radius=as_vec3(cfg.analysis_radius, "analysis_radius"),
        min_contact=int(cfg.min_contact),
        min_voxels=int(cfg.min_voxels),
        merge_iou=float(cfg.merge_iou),
        min_recovery=float(cfg.min_recovery),
    )


def run(cfg: DictConfig) -> None:
    config, executor, registered, request = model_inputs(cfg)
    settings = settings_of(cfg)
    try:
        settings.check(request.settings.fov_size)
    except ValueError as exc:
        raise FfnopsError(str(exc)) from None
    with open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg, open_volume(cfg.image) as image:
        check_same_voxels(
            seg, f"seg={cfg.seg}", image, f"image={cfg.image}",
            "the segmentation must be of the image's voxels",
        )  # fmt: skip
        voxel_size, offset = seg.voxel_size, seg.offset
    box = request.box
    layout = BlockLayout.plan(box, config.block_size, request.settings.fov_size, [0, 0, 0])
    if config.block_size is not None or executor.blockwise:
        executor.check_workers({"paths.output_dir": Path(cfg.paths.output_dir).absolute()})
    key = json.dumps(
        [cfg.seg, cfg.image, str(box), registered.uri, registered.version,
         vars(request.options), asdict(settings), cfg.output, list(layout.block_size)],
        sort_keys=True,
        default=str,
    )  # fmt: skip
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    workdir = Path(cfg.paths.output_dir).absolute() / "agglomerate" / f"agglomerate-{digest}"
    job = AgglomerationJob(request, cfg.seg, layout, settings, workdir)
    spec = VolumeSpec(
        box.size,
        "uint64",
        voxel_size,
        tuple(o + s for o, s in zip(offset, box.start, strict=True)),  # type: ignore[arg-type]
        layout.write_chunks(),
        "segmentation",  # type: ignore[arg-type]
    )
    bars: dict[str, BlockProgress] = {}

    def on_progress(phase: str, progress: TaskProgress) -> None:
        bar = bars.setdefault(
            phase, BlockProgress(phase, progress.total, box.num_voxels / len(layout))
        )
        bar.update(progress.done, progress.failed, progress.skipped)
        if progress.done >= progress.total:
            bar.close()

    with claim_output(cfg.output, cfg.overwrite, box.num_voxels * 8, spec):
        output = create_volume(cfg.output, spec, overwrite=cfg.overwrite)
        if output.shared_uri is None:
            output.abort()
            raise FfnopsError(
                f"output={cfg.output}: this format takes one writer, and agglomeration writes "
                "from every worker; use a chunked format: zarr://, n5:// or precomputed://"
            )
        params = run_params(
            cfg, request, {f"agglomeration.{k}": str(v) for k, v in asdict(settings).items()}
        )
        committed = False
        try:
            with inference_run(
                cfg.tracking.tracking_uri,
                cfg.tracking.agglomeration_experiment,
                cfg.tracking.run_name,
                params,
                {**run_tags_for(cfg, registered), "ffnops.seg": cfg.seg},
                workdir / "run_id",
            ) as mlflow_run:
                with default_sigterm():
                    summary, scores = run_agglomeration(
                        job, executor, output.shared_uri, config.batch_size, on_progress
                    )
                output.commit()
                committed = True
                log_run(summary, scores, settings, workdir / "pairs.csv")
                run_id = mlflow_run.info.run_id
        except BaseException:
            if not committed:
                output.abort()
            raise
        finally:
            for bar in bars.values():
                bar.close()
    remove_path(workdir)
    if summary.contacts == 0:
        print(f"seg={cfg.seg} has no two objects that touch: wrote it unchanged to {cfg.output}")
    print(
        f"wrote {cfg.output}: {summary.objects_after} objects from {summary.objects_before}; "
        f"{summary.joined} of {summary.pairs} resegmented pairs joined ({summary.contacts} "
        f"touching), {summary.steps} FOV steps in {summary.block_seconds:.1f} s "
        f"({100 * summary.network_share:.0f} % in "
        f"network calls); MLflow run {run_id}"
    )


def log_run(
    summary: AgglomerationSummary,
    scores: list[PairScore],
    settings: ResegmentationSettings,
    table: Path,
) -> None:
    """The pairs table and the figures, on the active run."""
    write_pairs_csv(table, scores, settings)
    mlflow.log_artifact(str(table))
    mlflow.log_metrics(
        {
            "objects_before": float(summary.objects_before),
            "objects": float(summary.objects_after),
            "contacts": float(summary.contacts),
            "pairs": float(summary.pairs),
            "pairs_joined": float(summary.joined),
            "network_calls": float(summary.steps),
            "network_share": summary.network_share,
            "seconds": sum(summary.seconds.values()),
            **{f"seconds_{k}": v for k, v in summary.seconds.items()},
        }
    )
