"""MLflow runs and the model registry: where training results become a model inference can ask for.

A run gets the whole composed config as params (flattened: ``model.depth``), tags (ffnops version,
git commit, data URIs) and the config YAML as an artifact. A trained network is logged with
``mlflow.pytorch`` (input signature (B, 2, z, y, x)), registered under a name, given the settings
inference needs as version tags, and optionally an alias (``models:/ffn@champion``).
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger

from ffnops import __version__
from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import ModelSettings

MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"  # what the MLflow UI nests child runs by


def check_tracking_uri(uri: str) -> None:
    """Fails early, with the URI in the message, if a tracking server does not answer."""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).expanduser().absolute().parent.mkdir(
            parents=True, exist_ok=True
        )
        return
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
        except (urllib.error.URLError, OSError) as exc:
            raise FfnopsError(
                f"tracking URI {uri} is unreachable ({exc}); start `mlflow server` there or "
                "use tracking=local (a sqlite file, no server)"
            ) from None


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"depth": 12}}`` -> ``{"model.depth": "12"}`` (lists kept as text)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def git_commit() -> str | None:
    """The commit of the source tree ffnops runs from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_tags(tracking: Mapping[str, Any]) -> dict[str, str]:
    """A command's extra run tags: ``tracking.tags``, and the parent run when nested."""
    tags = {str(k): str(v) for k, v in (tracking.get("tags") or {}).items()}
    if tracking.get("parent_run_id"):
        tags[MLFLOW_PARENT_RUN_ID] = str(tracking["parent_run_id"])
    return tags


def make_logger(
    tracking_uri: str,
    experiment_name: str,
    run_name: str | None,
    run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> MLFlowLogger:
    """Lightning's MLflow logger for the configured store (resuming ``run_id`` if given)."""
    check_tracking_uri(tracking_uri)
    all_tags = {"ffnops.version": __version__, **(tags or {})}
    commit = git_commit()
    if commit:
        all_tags["ffnops.git_commit"] = commit
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=tracking_uri,
        tags=all_tags,
        run_id=run_id,
    )


def log_config(logger: MLFlowLogger, config: Mapping[str, Any], yaml_text: str) -> None:
    """The composed config as params (flattened) and as ``config.yaml``."""
    params = flatten(config)
    logger.log_hyperparams(params)
    logger.experiment.log_text(logger.run_id, yaml_text, "config.yaml")


def register_model(
    tracking_uri: str,
    run_id: str,
    model: torch.nn.Module,
    model_name: str,
    settings: ModelSettings | Mapping[str, Any],
    alias: str | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Logs ``model`` in the run, registers a new version with ``settings`` as tags, sets alias.

    ``settings`` are what inference needs (:class:`ModelSettings`: fov_size, deltas,
    image_mean, ...; a mapping is converted); they are stored as version tags ``ffnops.<key>``
    and in the logged model's metadata.
    """
    if not isinstance(settings, ModelSettings):
        settings = ModelSettings.from_dict(settings, f"settings of {model_name}")
    mlflow.set_tracking_uri(tracking_uri)
    fov = list(settings.fov_size)
    model = model.to("cpu").eval()
    example = np.zeros((1, 2, *fov), dtype=np.float32)
    with torch.no_grad():
        output = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, output)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            registered_model_name=model_name,
            metadata={"ffnops": {**settings.extra, **asdict(settings), "extra": None}},
            # pickle keeps the ffnops class (and its fov_size/deltas) on load; pt2 would trace it.
            serialization_format="pickle",
            pip_requirements=[
                f"ffnops=={__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
            ],
        )
    client = MlflowClient(tracking_uri=tracking_uri)
    version = str(info.registered_model_version)
    for key, value in settings.to_tags().items():
        client.set_model_version_tag(model_name, version, key, value)
    if description:
        client.update_model_version(model_name, version, description=description)
    if alias:
        client.set_registered_model_alias(model_name, alias, version)
    return client.get_model_version(model_name, version)
