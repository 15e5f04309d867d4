"""Loading a registered model (``models:/name@alias`` or ``models:/name/3``) with its settings.

The network is rebuilt from its safe files (:mod:`ffnops.ffn.networks`); no code from the
registry runs. A version registered before that format (a pickled module) still loads, through
the weights-only unpickler, with a warning saying how to register it again.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.networks import UnsafeModelFile, is_saved_network, load_network, load_pickled

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass
class RegisteredModel:
    """A loaded network, the version it came from and the settings stored with it."""

    model: torch.nn.Module
    name: str
    version: str
    uri: str
    settings: ModelSettings


def _registered_listing(client: MlflowClient) -> str:
    entries = []
    for model in client.search_registered_models():
        aliases = ", ".join(f"@{a}" for a in sorted(model.aliases or {})) or "no aliases"
        entries.append(f"{model.name} ({aliases})")
    return "; ".join(entries) or "none"


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``models:/NAME@ALIAS`` points at, or None when the model or alias is not
    registered (what a pipeline checks before a step that would register it)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def find_version(client: MlflowClient, model_uri: str, tracking_uri: str) -> ModelVersion:
    """The version ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` names; a wrong name or
    alias lists what is registered. A server's refusal (credentials, permission) is raised as
    it is, for the command line to report (docs/team.md)."""
    match = _MODEL_URI.match(model_uri)
    if not match:
        raise FfnopsError(
            f"model={model_uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    try:
        if match["alias"]:
            return client.get_model_version_by_alias(match["name"], match["alias"])
        return client.get_model_version(match["name"], match["version"])
    except MlflowException as exc:
        if exc.error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            raise
        raise FfnopsError(
            f"model={model_uri}: not registered in {tracking_uri}; registered models: "
            f"{_registered_listing(client)}"
        ) from None


def load_registered_model(tracking_uri: str, model_uri: str) -> RegisteredModel:
    """Loads the network of ``model_uri`` (:func:`find_version`) with its settings."""
    client = MlflowClient(tracking_uri=tracking_uri)
    version = find_version(client, model_uri, tracking_uri)
    name = version.name
    model = load_version_network(tracking_uri, name, str(version.version))
    try:
        settings = ModelSettings.from_tags(version.tags, f"{model_uri} (version {version.version})")
    except ValueError as exc:
        raise FfnopsError(str(exc)) from None
    return RegisteredModel(model, name, str(version.version), model_uri, settings)


class PickledModelWarning(UserWarning):
    """A registered version stored as a pickle (registered before ffnops's safe model files)."""


@contextmanager
def quiet_download() -> Iterator[None]:
    """No progress bar (a few small files) and no INFO lines from MLflow's artifact copy: the
    command's own line says what went wrong."""
    previous = os.environ.get(BAR)
    os.environ[BAR] = "false"
    logger = logging.getLogger("mlflow.store.artifact.artifact_repo")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        if previous is None:
            os.environ.pop(BAR, None)
        else:
            os.environ[BAR] = previous


BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def load_version_network(tracking_uri: str, name: str, version: str) -> torch.nn.Module:
    """The network of ``models:/name/version``, built from its files without running their code."""
    mlflow.set_tracking_uri(tracking_uri)  # models:/ URIs resolve through the current store
    with (
        tempfile.TemporaryDirectory(prefix="ffnops-model-") as copy,  # removed once loaded
        quiet_download(),
    ):
        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}", dst_path=copy
                )
            )
        except (MlflowException, OSError) as exc:
            raise FfnopsError(
                f"models:/{name}/{version}: its files do not download from {tracking_uri} "
                f"({str(exc).splitlines()[0]})"
            ) from None
        try:
            if is_saved_network(folder):
                return load_network(folder)
            pickled = folder / "data" / "model.pth"
            if not pickled.is_file():
                raise UnsafeModelFile("no network.json (nor a legacy data/model.pth) in its files")
            model = load_pickled(pickled)
        except UnsafeModelFile as exc:
            raise FfnopsError(f"models:/{name}/{version}: {exc}") from None
    warnings.warn(
        f"models:/{name}/{version} is stored as a pickle (registered before ffnops's safe model "
        f"files); it was read by the weights-only unpickler. Register it again without pickle: "
        f"`ffnops models {name} resave={version}` (docs/team.md)",
        PickledModelWarning,
        stacklevel=2,
    )
    return model
