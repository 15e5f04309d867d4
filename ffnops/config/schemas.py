"""Structured-config schemas: a misspelt key or a wrong type fails at start-up, naming the key.

Groups that build an object carry ``_target_`` (model, trainer); groups that are settings are
plain dataclasses that ``OmegaConf.to_object`` turns into typed objects (tracking, executor,
inference, dataset, paths). Command configs (``plugins``, ``info``, ``convert``) are schemas too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """``model/``: the FFN network, built with ``hydra.utils.instantiate``."""

    _target_: str = "ffnops.ffn.model.ConvStack3DFFNModel"
    fov_size: list[int] = field(default_factory=lambda: [33, 33, 33])
    deltas: list[int] = field(default_factory=lambda: [8, 8, 8])
    depth: int = 12
    features: int = 32


@dataclass
class TrainerConfig:
    """``trainer/``: a Lightning Trainer (the train command adds loggers and callbacks)."""

    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 10000
    val_check_interval: Any = 500
    check_val_every_n_epoch: Any = None
    log_every_n_steps: int = 10
    limit_val_batches: Any = 1.0
    enable_progress_bar: bool = True
    enable_checkpointing: bool = True
    deterministic: Any = False
    default_root_dir: str | None = None


@dataclass
class TrackingConfig:
    """``tracking/``: where runs and registered models go (MLflow)."""

    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    experiment_name: str = "ffnops"
    run_name: str | None = None
    model_name: str = "ffn"
    alias: str | None = None
    log_images_every_n_steps: int = 500
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecutorConfig:
    """``executor/``: where and how the network runs (device, threads, batching, precision)."""

    device: str = "auto"
    num_threads: int | None = None
    batch_size: int = 1
    precision: str = "fp32"
    channels_last: bool = True


@dataclass
class PathsConfig:
    """``paths/``: where outputs and data live, relative to the working directory by default."""

    root_dir: str = "."
    data_dir: str = "${paths.root_dir}/data"
    output_dir: str = "${paths.root_dir}/outputs"


@dataclass
class PluginsCommand:
    """``ffnops plugins``: list installed plugins."""

    verbose: bool = False


@dataclass
class InfoCommand:
    """``ffnops info uri=...``: show a volume's metadata without reading it."""

    uri: str = MISSING
    stats: bool = False
    bbox: str | None = None


@dataclass
class ConvertCommand:
    """``ffnops convert src=... dst=...``: copy a volume into another format, chunk by chunk."""

    src: str = MISSING
    dst: str = MISSING
    bbox: str | None = None
    kind: str = "auto"
    chunks: list[int] | None = None
    block: list[int] = field(default_factory=lambda: [128, 256, 256])
    overwrite: bool = False
    paths: PathsConfig = field(default_factory=PathsConfig)
