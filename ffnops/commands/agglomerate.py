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
from dataclasses import asdict, replace
from pathlib import Path

import mlflow
import numpy as np
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
from ffnops.commands.scoring import ScoringPlan, plan_scoring, score_box
from ffnops.data.dataset import LABEL_DTYPES
from ffnops.errors import FfnopsError
from ffnops.executor import TaskProgress
from ffnops.ffn.geometry import as_vec3
from ffnops.inference.progress import BlockProgress
from ffnops.outputs import claim_output
from ffnops.processes import default_sigterm
from ffnops.tracking.evaluation_log import log_evaluation
from ffnops.tracking.inference_run import inference_run
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import create_volume, open_volume, placed_in


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
    with open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg, open_volume(cfg.image) as image:
        seg_box = placed_in(seg, f"seg={cfg.seg}", image, f"image={cfg.image}")
        voxel_size, offset = image.voxel_size, image.offset
    if cfg.bbox is None:
        cfg.bbox = str(seg_box)  # all the segmentation holds
    config, executor, registered, request = model_inputs(cfg)
    settings = settings_of(cfg)
    try:
        settings.check(request.settings.fov_size)
    except ValueError as exc:
        raise FfnopsError(str(exc)) from None
    box = request.box
    if seg_box.intersect(box) != box:
        raise FfnopsError(
            f"bbox=[{box}] reaches outside seg={cfg.seg}, which holds [{seg_box}] of the image's "
            "voxels"
        )
    scored = plan_scoring(cfg, box, offset, voxel_size)
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
    job = AgglomerationJob(request, cfg.seg, seg_box, layout, settings, workdir)
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
                if scored is not None:
                    score_before_after(cfg, scored, box, seg_box)
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


def score_before_after(cfg: DictConfig, plan: ScoringPlan, box: BBox, seg_box: BBox) -> None:
    """The input and the output scored on the same part against ``groundtruth`` (one set of
    skeletons): ``eval_input/`` and ``eval/`` metrics and the output's error list, on the run."""
    in_volume = plan.part.in_box.shifted([-s for s in box.start])
    with open_volume(cfg.seg, dtypes=LABEL_DTYPES) as seg:
        before_labels = np.asarray(seg.read(in_volume.shifted(seg_box.start)))
    with open_volume(cfg.output, dtypes=LABEL_DTYPES) as output:
        after_labels = np.asarray(output.read(plan.part.in_box))
        box_offset = output.offset
    before, _ = score_box(cfg, plan, before_labels, box_offset)
    after, _ = score_box(cfg, replace(plan, skeletons=before.skeletons), after_labels, box_offset)
    mlflow.log_metrics({f"eval_input/{k}": v for k, v in before.metrics().items()})
    log_evaluation(after, [], f"{cfg.seg} agglomerated, scored on [{in_volume}]")
    print(f"scored against {cfg.groundtruth} on [{in_volume}]: input -> agglomerated")
    b, a = before.metrics(), after.metrics()
    for key in ("adapted_rand_error", "voi_split", "voi_merge", "erl_nm"):
        if key in b:
            print(f"  {key:<20} {b[key]:.4f} -> {a[key]:.4f}")


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
