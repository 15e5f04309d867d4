"""``ffnops tune models:/NAME/VERSION evaluation=RUN_NAME``: keep a settings search's best options.

The search is ordinary inference runs (``ffnops infer -m`` over option values, all named
``evaluation``, scored against ground truth on a validation box); this command ranks them by
``metric`` and registers a new version of the model: the same network, with the best run's
inference options as its stored settings, so ``ffnops infer model=models:/NAME@ALIAS`` uses them.
The new version's MLflow run (in ``tracking.experiment_name``) holds the ranked table and a
picture of the metric against each searched option. docs/inference.md, "Settings search".
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace

from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ffnops.ffn.model_settings import ModelSettings
from ffnops.tracking.mlflow_tracking import (
    check_tracking_uri,
    experiment_id,
    register_model,
    run_tags,
)
from ffnops.tracking.promotion import current_user
from ffnops.tracking.registry import find_version, load_version_network
from ffnops.tracking.search import (
    Search,
    find_search,
    options_text,
    search_figure,
    search_table,
)


def run(cfg: DictConfig) -> None:
    uri = cfg.tracking.tracking_uri
    check_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    version = find_version(client, cfg.model_uri, uri)
    search = find_search(client, version, cfg.evaluation, cfg.metric)
    settings = ModelSettings.from_tags(version.tags, f"{cfg.model_uri} (version {version.version})")
    print_search(search)
    if cfg.dry_run:
        return
    network = load_version_network(uri, version.name, str(version.version))
    provenance = {
        "tuned_from": int(version.version),
        "tuned_on": search.evaluation,
        "tuned_run": search.best.run_id,
        "parent_model": f"models:/{version.name}/{version.version}",
    }
    tuned = replace(settings, **search.best.options, extra={**settings.extra, **provenance})
    experiment = experiment_id(client, cfg.tracking.experiment_name)
    run = client.create_run(
        experiment,
        run_name=f"tune {version.name} v{version.version} on {search.evaluation}",
        tags=run_tags(cfg.tracking),
    )
    run_id = run.info.run_id
    try:
        params = {
            "model_uri": cfg.model_uri,
            "evaluation": search.evaluation,
            "metric": search.metric,
            "trials": str(len(search.trials)),
            "searched": " ".join(search.varied) or "-",
            "best_run": search.best.run_id,
            **{f"chosen.{k}": str(v) for k, v in search.best.options.items()},
        }
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        client.log_metric(run_id, f"best/{search.metric}", search.best.value)
        table = io.StringIO()
        csv.writer(table).writerows(search_table(search))
        client.log_text(run_id, table.getvalue(), "search.csv")
        client.log_figure(run_id, search_figure(search), "search.png")
        new = register_model(
            uri,
            run_id,
            network,
            version.name,
            tuned,
            alias=cfg.alias,
            description=(
                f"models:/{version.name}/{version.version}'s network with the inference options "
                f"of run {search.best.run_id}, the best of {len(search.trials)} on "
                f"{search.evaluation!r} by {search.metric} (ffnops tune, {current_user()})"
            ),
        )
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    alias = f" (@{cfg.alias})" if cfg.alias else ""
    print(
        f"registered models:/{version.name}/{new.version}{alias}: version {version.version}'s "
        f"network with {options_text(search.best.options, search.varied)} "
        f"({search.metric}={search.best.value:.4f} on {search.evaluation!r}); "
        f"score it on your evaluation box: ffnops infer model=models:/{version.name}/{new.version}"
    )


def print_search(search: Search) -> None:
    rows = search_table(search)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(
        f"models:/{search.name}/{search.version}: {len(search.trials)} runs named "
        f"{search.evaluation!r}, by {search.metric}, best first"
    )
    for row in rows[:1] + rows[1:21]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if len(rows) > 21:
        print(f"... {len(rows) - 21} more in the run's search.csv")
