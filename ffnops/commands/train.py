"""``ffnops train``: FOV-moving FFN training with Lightning, tracked and registered in MLflow.

The recipe: instantiate model, optimiser, data and trainer from the config; fit; register the
network with the settings inference needs. Checkpoints go to ``<run dir>/checkpoints``; after a
kill, ``ffnops train resume=<run dir>`` (or ``resume=latest``) continues from ``last.ckpt`` with the
same global step, in the same MLflow run.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from ffnops.atomic import write_text
from ffnops.config.checks import given_on_command_line, vec3_setting
from ffnops.config.schemas import MODEL_START_KEYS
from ffnops.data.coordinate_file import load_coordinates
from ffnops.data.dataset import Dataset
from ffnops.data.examples import Augmentation
from ffnops.errors import FfnopsError
from ffnops.ffn.lr_schedule import SPAN_MAX_STEPS, LRSchedule
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.training_moves import TrainingGeometry
from ffnops.inference.runner import face_mirror
from ffnops.locks import OutputLock
from ffnops.tracking.mlflow_tracking import (
    check_tracking_uri,
    log_config,
    make_logger,
    register_model,
    run_tags,
)
from ffnops.tracking.pictures import PicturesCallback
from ffnops.tracking.registry import RegisteredModel, load_registered_model
from ffnops.training.datamodule import FFNDataModule
from ffnops.training.hard_examples import (
    DEFAULT_HARD_WEIGHT,
    HardExamples,
    check_hard_examples,
)
from ffnops.training.module import FFNTrainingModule
from ffnops.training.progress import StepProgressBar
from ffnops.training.segment_validation import (
    SELECTION_METRICS,
    SegmentValidation,
    ValidationBox,
)
from ffnops.volume import BBox
from ffnops.volumes import box_of

RUN_FILE = "ffnops_run.json"  # the run's record: MLflow run id, status, registered version
CONFIG_FILE = "config.yaml"  # the run's composed config, which a resume continues with
# What a resume may change: how much longer to train, and how data is loaded.
RESUMABLE = ("resume", "trainer.max_steps", "data.num_workers")
UNFINISHED = ("running", "interrupted")  # a killed run stays "running"


def run_directory(cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """(directory for checkpoints, what a previous run there recorded) — fresh or resumed.

    ``resume=latest`` is the newest run that did not finish or fail; ``resume=<run dir>`` any
    run that did not finish (a failed one too, once its cause is fixed)."""
    if not cfg.resume:
        return Path(HydraConfig.get().runtime.output_dir), {}
    if cfg.resume == "latest":
        root = Path(cfg.paths.output_dir, "train")
        records = sorted(root.glob(f"*/{RUN_FILE}"))
        unfinished = [r for r in records if read_record(r).get("status") in UNFINISHED]
        if not unfinished:
            newest = f"; the newest, {records[-1].parent}, {read_record(records[-1]).get('status')}"
            raise FfnopsError(
                f"resume=latest: no unfinished run under {root}{newest if records else ''}"
            )
        directory = unfinished[-1].parent
    else:
        directory = Path(cfg.resume)
    record = directory / RUN_FILE
    if not record.is_file():
        raise FfnopsError(f"resume={cfg.resume}: {record} not found; is it an ffnops train run?")
    previous = read_record(record)
    if previous.get("status") == "finished":
        raise FfnopsError(
            f"resume={cfg.resume}: run {directory} finished and registered "
            f"{previous.get('registered', 'its model')}; nothing to resume"
        )
    return directory, previous


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FfnopsError(f"{path}: not an ffnops run record ({exc})") from None
    return record if isinstance(record, dict) else {}


def write_record(directory: Path, **values: Any) -> None:
    """Updates the run's record (atomically: a kill leaves the old one or the new)."""
    path = directory / RUN_FILE
    record = read_record(path) if path.is_file() else {}
    write_text(path, json.dumps({**record, **values}))


def resumed_config(cfg: DictConfig, directory: Path) -> DictConfig:
    """The resumed run's own config; what is given again on the command line must agree with
    it, except the keys of ``RESUMABLE``."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FfnopsError(f"resume={cfg.resume}: {path} not found; the run cannot be continued")
    saved = OmegaConf.load(path)
    assert isinstance(saved, DictConfig)
    differ = []
    for override in HydraConfig.get().overrides.task:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.startswith("hydra") or key in RESUMABLE:
            continue
        ours, theirs = OmegaConf.select(cfg, key), OmegaConf.select(saved, key)
        if OmegaConf.is_config(ours):
            ours = OmegaConf.to_container(ours)
        if OmegaConf.is_config(theirs):
            theirs = OmegaConf.to_container(theirs)
        if ours != theirs:
            differ.append(f"{key}: the run has {theirs}, the command line {ours}")
    if differ:
        raise FfnopsError(
            f"resume={cfg.resume} continues {directory} with its own config, and the command "
            f"line differs: {'; '.join(differ)} (only {', '.join(RESUMABLE[1:])} may change)"
        )
    schedule = lr_schedule(saved)
    if schedule.name in SPAN_MAX_STEPS and cfg.trainer.max_steps != saved.trainer.max_steps:
        raise FfnopsError(
            f"resume={cfg.resume}: trainer.max_steps={cfg.trainer.max_steps}, but the run's "
            f"{schedule.name} learning-rate schedule ends at its "
            f"trainer.max_steps={saved.trainer.max_steps}; resume with that"
        )
    for key in RESUMABLE:
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    return saved


def launched_rank_zero() -> bool:
    """Whether this process is the one the user started (DDP's other ranks are started by it
    with ``LOCAL_RANK``/``NODE_RANK`` set, and must not take its lock)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def check_trainer(cfg: DictConfig) -> None:
    """What Lightning would only find out after the run is made: the device, the batch."""
    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise FfnopsError(
            f"trainer.accelerator={accelerator}: no CUDA device here (torch {torch.__version__}); "
            "use trainer=cpu"
        )
    if cfg.training.batch_size < 1:
        raise FfnopsError(f"training.batch_size must be at least 1, got {cfg.training.batch_size}")
    if cfg.trainer.max_steps < 1:
        raise FfnopsError(f"trainer.max_steps must be at least 1, got {cfg.trainer.max_steps}")
    lr_schedule(cfg).check(float(cfg.optimizer.lr), int(cfg.trainer.max_steps))


def lr_schedule(cfg: DictConfig) -> LRSchedule:
    """``training.lr_schedule`` as its dataclass (docs/training.md, "Learning-rate schedule")."""
    node = OmegaConf.select(cfg, "training.lr_schedule")  # None: a run saved before it existed
    return LRSchedule(**OmegaConf.to_container(node)) if node is not None else LRSchedule()  # type: ignore[arg-type]


def hard_examples(cfg: DictConfig, datasets: Mapping[str, Dataset]) -> HardExamples | None:
    """``data.hard_examples`` (docs/training.md, "Hard examples"), checked, or None when not
    asked for."""
    node = cfg.data.get("hard_examples") or {}
    segmentations = {str(k): str(v) for k, v in (node.get("segmentation") or {}).items()}
    weight = node.get("weight")
    if not segmentations:
        if weight is not None:
            raise FfnopsError(
                f"data.hard_examples.weight={weight} needs data.hard_examples.segmentation.NAME="
                "URI (a segmentation of data.volumes.NAME) to say which coordinates are hard"
            )
        return None
    hard = HardExamples(segmentations, DEFAULT_HARD_WEIGHT if weight is None else float(weight))
    check_hard_examples(hard, datasets)
    return hard


def segment_validation(
    cfg: DictConfig, datasets: dict[str, Dataset], model: ConvStack3DFFNModel, patch: Any
) -> SegmentValidation | None:
    """The checkpoint selection ``training.validation`` asks for (None when its box is unset),
    checked: the volume and box exist, the box holds the FOV, and no training patch reaches
    into it (the score would then be of data the network trained on)."""
    settings = cfg.training.validation
    if settings.box is None:
        for key in ("context", "volume", "every_n_steps", "metric", "inference"):
            if given_on_command_line(f"training.validation.{key}", below=True):
                raise FfnopsError(
                    f"training.validation.{key} is set, but training.validation.box is not: "
                    "set the box to validate on"
                )
        return None
    if settings.every_n_steps < 1:
        raise FfnopsError(
            f"training.validation.every_n_steps must be at least 1, got {settings.every_n_steps}"
        )
    if settings.metric not in SELECTION_METRICS:
        raise FfnopsError(
            f"training.validation.metric={settings.metric}: expected one of "
            f"{', '.join(SELECTION_METRICS)}"
        )
    name = settings.volume or next(iter(datasets))
    if name not in datasets:
        raise FfnopsError(
            f"training.validation.volume={name}: not one of data.volumes ({', '.join(datasets)})"
        )
    dataset = datasets[name]
    context = vec3_setting(settings.context, "training.validation.context", minimum=0)
    with dataset.open_image() as image_volume:
        box = box_of(image_volume, settings.box, "training.validation.box")
        segmented = box.grown(context, BBox.from_shape(image_volume.shape))
        raw = np.asarray(image_volume.read(segmented), dtype=np.float32)
        voxel_size = image_volume.voxel_size
    with dataset.open_labels() as label_volume:
        labels = np.asarray(label_volume.read(box))
    if not labels.any():
        raise FfnopsError(
            f"training.validation.box=[{box}]: {dataset.labels} has no labelled voxel there "
            "(all 0), so nothing could be scored"
        )
    if any(b < f for b, f in zip(segmented.size, model.fov_size, strict=True)):
        raise FfnopsError(
            f"training.validation.box=[{box}] with its context is [{segmented}], smaller than "
            f"the model's FOV {model.fov_size}"
        )
    table = load_coordinates(cfg.data.coordinates)
    reaching = table.reaching(name, box.start, box.stop, [p // 2 for p in patch])
    if reaching.any():
        first = tuple(int(v) for v in table.zyx[np.flatnonzero(reaching)[0]])
        raise FfnopsError(
            f"training.validation.box=[{box}]: {int(reaching.sum())} training patches of "
            f"{cfg.data.coordinates} reach into it (the first centred at {first}, z, y, x; "
            f"patches are {tuple(patch)}); validate on a box training never sees"
        )
    try:
        options: InferenceOptions = OmegaConf.to_object(settings.inference)  # type: ignore[assignment]
    except ValueError as exc:  # InferenceOptions' own checks name the key
        raise FfnopsError(f"training.validation.{exc}") from None
    image = (raw - np.float32(dataset.image_mean)) / np.float32(dataset.image_stddev)
    scored = box.shifted(segmented.start)
    if options.reflect_faces:  # as `ffnops infer` mirrors it (docs/inference.md, "Volume faces")
        radius = tuple(f // 2 for f in model.fov_size)
        before, after = face_mirror(segmented, image_volume.shape, radius)  # type: ignore[arg-type]
        image = np.pad(image, list(zip(before, after, strict=True)), mode="reflect")
        scored = scored.shifted([-b for b in before])
    return SegmentValidation(
        ValidationBox(image.astype(np.float32), labels, f"{name}[{box}]", scored, voxel_size),
        model.fov_size,
        model.deltas,
        options,
        settings.every_n_steps,
        settings.metric,
    )


def settings_for_inference(
    cfg: DictConfig, model: ConvStack3DFFNModel, volume: Dataset, provenance: dict[str, Any]
) -> ModelSettings:
    """What a registered model version must carry for ``ffnops infer`` to use it alone."""
    return ModelSettings(
        model_class=f"{type(model).__module__}.{type(model).__qualname__}",
        fov_size=model.fov_size,
        deltas=model.deltas,
        depth=model.depth,
        features=model.features,
        image_mean=volume.image_mean,
        image_stddev=volume.image_stddev,
        pad_value=cfg.training.seed_pad,
        init_activation=0.95,
        move_threshold=cfg.training.threshold,
        extra={"fov_policy": cfg.training.fov_policy, **provenance},
    )


ARCHITECTURE = ("fov_size", "deltas", "depth", "features")


def initialise_from(model: ConvStack3DFFNModel, model_uri: str, cfg: DictConfig) -> RegisteredModel:
    """Copies a registered model's weights into ``model`` (same architecture, or a clear error)."""
    parent = load_registered_model(cfg.tracking.tracking_uri, model_uri)
    mismatched = []
    for key in ARCHITECTURE:
        registered = _as_tuple(getattr(parent.model, key, None))
        asked = _as_tuple(getattr(model, key))
        if registered != asked:
            mismatched.append(f"{key}: registered {registered}, model= asks {asked}")
    if type(parent.model) is not type(model) or mismatched:
        raise FfnopsError(
            f"model.init_from={model_uri}: its network ({type(parent.model).__name__}) does not "
            f"match model= ({type(model).__name__}): {'; '.join(mismatched) or 'class differs'}. "
            "Pick the model group and sizes the registered model was trained with."
        )
    model.load_state_dict(parent.model.state_dict())
    for name, dataset in cfg.data.volumes.items():
        stored = (parent.settings.image_mean, parent.settings.image_stddev)
        if None not in stored and stored != (dataset.image_mean, dataset.image_stddev):
            print(
                f"warning: {model_uri} was trained with image mean/stddev {stored}, dataset "
                f"{name} uses ({dataset.image_mean}, {dataset.image_stddev})"
            )
    print(f"initialised from {model_uri} (version {parent.version})")
    return parent


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def parent_tags(parent: RegisteredModel) -> dict[str, str]:
    """Run tags naming the registered model a fine-tuning run started from."""
    return {
        "ffnops.parent_model_uri": parent.uri,
        "ffnops.parent_model": f"models:/{parent.name}/{parent.version}",
    }


def parent_settings(parent: RegisteredModel | None, init_from: str | None) -> dict[str, Any]:
    """The parent model recorded on the new version (also kept across a resumed run)."""
    if parent is not None:
        return {"parent_model": f"models:/{parent.name}/{parent.version}"}
    return {"parent_model": init_from} if init_from else {}


def run(cfg: DictConfig) -> None:
    # One process trains a run at a time: a second (a resume started twice) is refused here.
    directory, _ = run_directory(cfg)
    lock = OutputLock(directory / "checkpoints", f"training run {directory}")
    with lock if launched_rank_zero() else nullcontext():
        train(cfg)


def train(cfg: DictConfig) -> None:
    # Lightning calls the dataloader_iter step "experimental"; it is what lets slots refill.
    warnings.filterwarnings("ignore", message=".*dataloader_iter.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    directory, previous = run_directory(cfg)
    if previous:
        cfg = resumed_config(cfg, directory)
    check_tracking_uri(cfg.tracking.tracking_uri)
    check_trainer(cfg)
    model_cfg: dict[str, Any] = OmegaConf.to_container(cfg.model)  # type: ignore[assignment]
    start = {key: model_cfg.pop(key, None) for key in MODEL_START_KEYS}
    init_from = start["init_from"]
    model = hydra.utils.instantiate(model_cfg)
    parent = initialise_from(model, init_from, cfg) if init_from and not previous else None
    geometry = TrainingGeometry(
        model.fov_size, model.deltas, cfg.training.fov_policy, cfg.training.fov_moves
    )
    datasets: dict[str, Dataset] = {
        # typed again: a resumed run's config is read back from its YAML, without the schema
        str(name): OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Dataset), node))  # type: ignore[misc]
        for name, node in cfg.data.volumes.items()
    }
    if not datasets:
        raise FfnopsError("data.volumes is empty: name at least one dataset (image + labels)")
    augmentation = Augmentation(**OmegaConf.to_container(cfg.data.augmentation))  # type: ignore[arg-type]
    data = FFNDataModule(
        cfg.data.coordinates,
        datasets,
        geometry.patch_size,
        augmentation,
        val_coordinates=cfg.data.val_coordinates,
        val_fraction=cfg.data.val_fraction,
        max_val_examples=cfg.data.max_val_examples,
        num_workers=cfg.data.num_workers,
        seed=cfg.seed,
        hard_examples=hard_examples(cfg, datasets),
    )
    data.setup("fit")  # coordinates and volumes checked here, before any run is made
    validation = segment_validation(cfg, datasets, model, geometry.patch_size)
    module = FFNTrainingModule(
        model,
        hydra.utils.instantiate(cfg.optimizer),
        geometry,
        batch_size=cfg.training.batch_size,
        threshold=cfg.training.threshold,
        seed_pad=cfg.training.seed_pad,
        shuffle_moves=cfg.training.shuffle_moves,
        move_seed=cfg.seed,
        channels_last=cfg.training.channels_last,
        lr_schedule=lr_schedule(cfg),
        max_steps=int(cfg.trainer.max_steps),
    )
    tracking = cfg.tracking
    data_tags = {f"ffnops.data.{n}.image": d.image for n, d in datasets.items()}
    data_tags.update({f"ffnops.data.{n}.labels": str(d.labels) for n, d in datasets.items()})
    data_tags["ffnops.data.coordinates"] = str(Path(cfg.data.coordinates).absolute())
    if parent:
        data_tags.update(parent_tags(parent))
    logger = make_logger(
        tracking.tracking_uri,
        tracking.experiment_name,
        tracking.run_name,
        run_id=previous.get("mlflow_run_id"),
        tags={**data_tags, **run_tags(tracking)},
    )
    if not previous:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        log_config(logger, resolved, OmegaConf.to_yaml(cfg, resolve=True))  # type: ignore[arg-type]
    checkpoints = ModelCheckpoint(  # the best, by validation F1
        dirpath=directory / "checkpoints",
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        monitor="val/f1",
        mode="max",
        every_n_train_steps=cfg.training.checkpoint_every_n_steps,
    )
    last = ModelCheckpoint(  # what a resume continues from, validated or not
        dirpath=directory / "checkpoints",
        save_top_k=0,
        save_last=True,
        every_n_train_steps=cfg.training.last_checkpoint_every_n_steps,
    )
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        enable_progress_bar=True,  # ours, which counts FOV steps
        logger=logger,
        callbacks=[
            checkpoints,
            last,
            StepProgressBar(),
            LearningRateMonitor("step"),  # lr-<Optimizer> in MLflow, as Google's learning_rate
            PicturesCallback(cfg.training.log_images_every_n_steps),
            *([validation] if validation else []),
        ],
        default_root_dir=str(directory),
    )
    if trainer.is_global_zero:
        directory.mkdir(parents=True, exist_ok=True)
        if not previous:
            OmegaConf.save(cfg, directory / CONFIG_FILE)
        write_record(
            directory,
            mlflow_run_id=logger.run_id,
            tracking_uri=tracking.tracking_uri,
            status="running",
        )
    resume_from = directory / "checkpoints" / "last.ckpt"
    if previous:
        print(
            f"resuming {directory}: "
            + (f"from {resume_from}" if resume_from.exists() else "no checkpoint yet, from step 0")
        )
    try:
        trainer.fit(
            module,
            data,
            ckpt_path=str(resume_from) if previous and resume_from.exists() else None,
        )
    except (KeyboardInterrupt, SystemExit):
        if trainer.is_global_zero:
            write_record(directory, status="interrupted")
            print(f"interrupted; `ffnops train resume={directory}` continues it", file=sys.stderr)
        raise
    except BaseException:
        if trainer.is_global_zero:
            write_record(directory, status="failed")
        raise
    if not trainer.is_global_zero:
        return
    checkpoint = checkpoints.best_model_path or last.last_model_path
    if checkpoint:
        logger.experiment.log_artifact(logger.run_id, checkpoint, "checkpoints")
    reference = next(iter(datasets.values()))
    assert logger.run_id is not None, "rank 0 has an MLflow run"
    description = f"trained by ffnops train, run {logger.run_id}, {trainer.global_step} steps"
    selected: dict[str, Any] = {}
    if validation is not None and validation.best is not None:
        chosen = validation.best
        module.model.load_state_dict(chosen.weights)
        selected = {
            "selected_step": chosen.step,
            "validation_box": validation.box.name,
            f"validation_{validation.metric}": chosen.value,
        }
        description += (
            f"; the weights of step {chosen.step}, the best {validation.metric} "
            f"({chosen.value:.4f}) on {validation.box.name}"
        )
        print(
            f"selected the weights of step {chosen.step}: {validation.metric} "
            f"{chosen.value:.4f} on {validation.box.name}"
        )
    version = register_model(
        tracking.tracking_uri,
        logger.run_id,
        module.model,
        tracking.model_name,
        settings_for_inference(
            cfg, model, reference, {**parent_settings(parent, init_from), **selected}
        ),
        alias=tracking.alias,
        description=description,
    )
    write_record(
        directory,
        status="finished",
        registered=f"models:/{tracking.model_name}/{version.version}",
    )
    alias = f"@{tracking.alias}" if tracking.alias else f"/{version.version}"
    print(
        f"registered models:/{tracking.model_name}{alias} (version {version.version}) after "
        f"{trainer.global_step} steps; run {logger.run_id} in {tracking.tracking_uri}"
    )
