"""``ffnops models NAME`` and ``ffnops promote models:/NAME/VERSION ALIAS`` (docs/team.md)."""

from __future__ import annotations

import warnings

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import TAG_PREFIX, ModelSettings
from ffnops.tracking.mlflow_tracking import (
    MODEL_FORMAT_TAG,
    check_tracking_uri,
    experiment_id,
    register_model,
)
from ffnops.tracking.promotion import PROMOTED_TAG, current_user, version_rows
from ffnops.tracking.promotion import promote as move_alias
from ffnops.tracking.registry import PickledModelWarning, load_version_network


def list_models(cfg: DictConfig) -> None:
    check_tracking_uri(cfg.tracking.tracking_uri)
    if cfg.resave is not None:
        resave(cfg.tracking.tracking_uri, cfg.name, str(cfg.resave), cfg.tracking.experiment_name)
    rows = version_rows(cfg.tracking.tracking_uri, cfg.name, cfg.score)
    header = ("version", "aliases", "created (UTC)", "format", "parent", cfg.score, "promoted")
    table = [
        (
            r.version,
            " ".join(f"@{a}" for a in r.aliases) or "-",
            r.created,
            r.model_format,
            r.parent,
            f"{r.score.value:.4g} ({r.score.evaluation})" if r.score else "-",
            r.promoted,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table, strict=True)]
    print(f"models:/{cfg.name} in {cfg.tracking.tracking_uri}")
    for line in (header, *table):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def resave(tracking_uri: str, name: str, version: str, experiment: str) -> None:
    """Registers a pickled version again as safe files: a new version with the same settings."""
    client = MlflowClient(tracking_uri=tracking_uri)
    old = client.get_model_version(name, version)
    if (old.tags or {}).get(MODEL_FORMAT_TAG):
        raise FfnopsError(f"models:/{name}/{version} is already stored as safe files")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PickledModelWarning)  # that is what resave is for
        model = load_version_network(tracking_uri, name, version)
    run = client.create_run(experiment_id(client, experiment), run_name=f"resave {name} v{version}")
    history = (PROMOTED_TAG, "ffnops.demoted")  # an alias's history stays with the old version
    settings = {
        k: v
        for k, v in (old.tags or {}).items()
        if k.startswith(TAG_PREFIX) and not k.startswith(history)
    }
    new = register_model(
        tracking_uri,
        run.info.run_id,
        model,
        name,
        ModelSettings.from_tags(settings, f"models:/{name}/{version}"),
        description=f"models:/{name}/{version} saved again without pickle by {current_user()}",
        tags={"ffnops.resaved_from": version},
    )
    client.set_terminated(run.info.run_id)
    print(
        f"registered models:/{name}/{new.version}: version {version}'s network as safe files; "
        f"its aliases still name version {version} (move them with `ffnops promote "
        f"models:/{name}/{new.version} ALIAS`)"
    )


def promote(cfg: DictConfig) -> None:
    check_tracking_uri(cfg.tracking.tracking_uri)
    done = move_alias(
        cfg.tracking.tracking_uri,
        cfg.model_uri,
        cfg.alias,
        evaluation=cfg.evaluation,
        metric=cfg.metric,
        reason=cfg.reason,
        force=cfg.force,
    )
    left = f"from version {done.previous}" if done.previous else "(it named no version before)"
    print(f"models:/{done.name}@{done.alias} -> version {done.version} {left}")
    if done.score:
        against = f" against {done.previous_score.value:.4g}" if done.previous_score else ""
        print(f"  score: {done.score}{against}")
    if done.forced:
        print("  forced: the gate would have refused it (force=true)")
