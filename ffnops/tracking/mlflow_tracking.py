"""MLflow runs and the model registry: where training results become a model inference can ask for.

A run gets the whole composed config as params (flattened: ``model.depth``), tags (ffnops version,
git commit, data URIs) and the config YAML as an artifact. A trained network is logged as safe
files (:mod:`ffnops.ffn.networks`), registered under a name, given the settings inference needs
as version tags, and optionally an alias (``models:/ffn@champion``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger

from ffnops import __version__
from ffnops.atomic import nearest_existing
from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.networks import FORMAT, save_network

MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
MODEL_ARTIFACT = "model"  # the run's artifact folder a registered version points at
MODEL_FORMAT_TAG = "ffnops.model_format"  # version tag: how the version's files are stored
# How long a command waits for an SQLite store another process is writing: Python's sqlite3
# default, which is also what MLflow's own connections wait.
SQLITE_BUSY_S = 5.0


def check_tracking_uri(uri: str) -> None:
    """Fails early, with the URI in the message, if a tracking server does not answer."""
    if uri.startswith("sqlite:///"):
        check_sqlite_store(uri, Path(uri[len("sqlite:///") :]).expanduser().absolute())
        return
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
        except (urllib.error.URLError, OSError) as exc:
            raise FfnopsError(
                f"tracking URI {uri} is unreachable ({exc}); start `ffnops server` there or "
                "use tracking=local (a sqlite file, no server)"
            ) from None
        try:  # the credentials, before any work (a server with basic-auth refuses none or bad)
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except MlflowException as exc:
            raise FfnopsError(server_refusal(exc, uri) or str(exc).splitlines()[0]) from None


def check_sqlite_store(uri: str, path: Path) -> None:
    """An existing file must be an SQLite database; a new one needs a folder it can be made in
    (made now if missing: MLflow creates the file, not its folders)."""
    if path.exists():
        try:
            with path.open("rb") as f:
                header = f.read(16)
            if header != b"SQLite format 3\x00":
                raise sqlite3.DatabaseError("file is not a database")
            with closing(sqlite3.connect(path, timeout=SQLITE_BUSY_S)) as db:
                db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            pass  # busy or locked by another command (a store in use is not a corrupt one)
        except (OSError, sqlite3.Error) as exc:
            raise FfnopsError(
                f"tracking store {uri}: {path} is not a readable SQLite database ({exc}); "
                "point tracking.tracking_uri at an MLflow store, or move the file away"
            ) from None
        return
    folder = path.parent
    existing = nearest_existing(folder)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise FfnopsError(
            f"tracking store {uri}: cannot create {path} (cannot write in {existing})"
        )
    folder.mkdir(parents=True, exist_ok=True)


_ENDPOINT = re.compile(r"endpoint (?P<endpoint>/\S+) failed")


def server_refusal(exc: MlflowException, uri: str | None) -> str | None:
    """One line for a tracking server's refusal (credentials, permission), or None if it is
    another error. Names the server, the user and what was refused (docs/team.md)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    where = uri or "the tracking server"
    endpoint = _ENDPOINT.search(str(exc))
    what = f" ({endpoint['endpoint']})" if endpoint else ""
    if exc.error_code == "UNAUTHENTICATED":
        given = f"user {user!r}" if user else "no user (MLFLOW_TRACKING_USERNAME is not set)"
        return (
            f"{where} refused the credentials of {given}{what}: set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD to an account on that server (docs/team.md)"
        )
    if exc.error_code == "PERMISSION_DENIED":
        return (
            f"{where} refused user {user!r} permission{what}: ask a user with MANAGE on the "
            "experiment or registered model (or the admin) for EDIT (docs/team.md, Permissions)"
        )
    return None


def store_busy(exc: BaseException, uri: str | None) -> str | None:
    """One line for an SQLite store another process holds locked longer than SQLite waits
    (``database is locked``), or None if ``exc`` is another error."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause):
            return (
                f"tracking store {uri or 'sqlite'} is locked by another process (SQLite waited "
                f"{SQLITE_BUSY_S:.0f} s); run again when it is done, or share one MLflow server "
                "between commands that run at once (`ffnops server`, docs/team.md)"
            )
        cause = cause.__cause__ or cause.__context__  # SQLAlchemy raises from the sqlite3 error
    return None


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
    tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Logs ``model`` in the run, registers a new version with ``settings`` as tags, sets alias.

    The network is stored without pickle (:mod:`ffnops.ffn.networks`: ``model/network.json``
    and ``model/weights.safetensors`` in the run's artifacts, uploaded through the tracking
    server when there is one). ``settings`` are what inference needs (:class:`ModelSettings`:
    fov_size, deltas, image_mean, ...; a mapping is converted), stored as version tags
    ``ffnops.<key>``; ``tags`` are further version tags (provenance).
    """
    if not isinstance(settings, ModelSettings):
        settings = ModelSettings.from_dict(settings, f"settings of {model_name}")
    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ffnops-model-") as folder:
        save_network(model.to("cpu").eval(), Path(folder))
        client.log_artifacts(run_id, folder, MODEL_ARTIFACT)
    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
    version = client.create_model_version(
        model_name,
        source,
        run_id=run_id,
        tags={**settings.to_tags(), **(tags or {}), MODEL_FORMAT_TAG: FORMAT},
        description=description,
    )
    if alias:
        client.set_registered_model_alias(model_name, alias, version.version)
    return client.get_model_version(model_name, version.version)


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment ``name``, made if it does not exist yet."""
    found = client.get_experiment_by_name(name)
    return str(found.experiment_id) if found else str(client.create_experiment(name))
