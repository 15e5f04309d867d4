"""A registered model's versions and the aliases that point at them (docs/team.md, "Promotion").

A version's *score* on an evaluation is a metric of the newest finished inference or evaluation
run of that version (tags ``ffnops.model_name``/``ffnops.model_version``, which ``ffnops infer``
sets) whose run name is the evaluation's name: the same box and ground truth for every version,
because the run name says so. Promotion moves an alias and records on the version who moved it,
from which version, when and why; its gate refuses a version whose score is worse than the
current holder's.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError
from ffnops.tracking.mlflow_tracking import MODEL_FORMAT_TAG
from ffnops.tracking.registry import find_version

# Metrics the gate can compare, and which way is better (ffnops.ffn.metrics, ffnops.evaluation).
LOWER_IS_BETTER = (
    "adapted_rand_error",
    "voi",
    "voi_split",
    "voi_merge",
    "false_merges",
    "false_splits",
    "split_errors",
    "merge_errors",
    "merged_skeletons",
)
HIGHER_IS_BETTER = ("erl_nm", "nerl")
PROMOTED_TAG = "ffnops.promoted"  # + ".<alias>.by|at|from_version|reason|score"


@dataclass(frozen=True)
class Score:
    """A version's value of ``metric`` in the run ``run_id`` (named ``evaluation``)."""

    metric: str
    value: float
    run_id: str
    evaluation: str

    def __str__(self) -> str:
        return f"{self.metric}={self.value:.4g} (run {self.run_id}, {self.evaluation!r})"


def lower_is_better(metric: str) -> bool:
    base = metric.rsplit("/", 1)[-1]
    if base in LOWER_IS_BETTER:
        return True
    if base in HIGHER_IS_BETTER:
        return False
    known = ", ".join(f"eval/{m}" for m in (*LOWER_IS_BETTER, *HIGHER_IS_BETTER))
    raise FfnopsError(f"metric={metric!r}: the gate compares one of {known}")


def current_user() -> str:
    """Who is acting: the tracking server's user name if one is set, else the login name."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    aliases = client.get_registered_model(name).aliases or {}
    return client.get_model_version(name, aliases[alias]) if alias in aliases else None


def scored_runs(client: MlflowClient, version: ModelVersion, metric: str) -> list[Run]:
    """Finished runs of ``version`` that logged ``metric``, newest first."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    runs = client.search_runs(
        experiments,
        filter_string=(
            f"tags.`ffnops.model_name` = '{version.name}' and "
            f"tags.`ffnops.model_version` = '{version.version}' and "
            "attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    return [r for r in runs if metric in r.data.metrics]


def score_of(
    client: MlflowClient, version: ModelVersion, metric: str, evaluation: str | None
) -> Score | None:
    """The version's newest score (on the runs named ``evaluation``, if given)."""
    for run in scored_runs(client, version, metric):
        if evaluation is None or run.info.run_name == evaluation:
            name = run.info.run_name or ""
            return Score(metric, float(run.data.metrics[metric]), run.info.run_id, name)
    return None


@dataclass(frozen=True)
class Promotion:
    """What ``ffnops promote`` did: the alias, the version it now names and the one it left."""

    name: str
    alias: str
    version: str
    previous: str | None
    score: Score | None
    previous_score: Score | None
    forced: bool


def gate(
    candidate: Score | None, incumbent: Score | None, metric: str, evaluation: str
) -> str | None:
    """Why the candidate may not take the alias, or None if it may."""
    if candidate is None:
        return f"it has no finished run named {evaluation!r} that logged {metric}"
    if incumbent is None:
        return None
    lower = lower_is_better(metric)
    worse = candidate.value > incumbent.value if lower else candidate.value < incumbent.value
    if worse:
        return (
            f"it scores {candidate}, worse than the holder's {incumbent.value:.4g} "
            f"(run {incumbent.run_id}; {'lower' if lower else 'higher'} is better)"
        )
    return None


def promote(
    tracking_uri: str,
    model_uri: str,
    alias: str,
    *,
    evaluation: str | None,
    metric: str,
    reason: str | None,
    force: bool,
) -> Promotion:
    """Moves ``alias`` to ``model_uri``'s version unless the gate refuses (see module doc)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    version = find_version(client, model_uri, tracking_uri)
    name, number = version.name, str(version.version)
    previous = holder(client, name, alias)
    before = str(previous.version) if previous is not None else None
    if before == number:
        raise FfnopsError(f"models:/{name}@{alias} already is version {number}")
    score = previous_score = None
    if evaluation is not None:
        lower_is_better(metric)
        score = score_of(client, version, metric, evaluation)
        if previous is not None:
            previous_score = score_of(client, previous, metric, evaluation)
        refused = gate(score, previous_score, metric, evaluation)
    elif previous is not None:
        refused = (
            f"@{alias} is held by version {before}; name the evaluation both are "
            f"scored on (evaluation=RUN_NAME, metric={metric})"
        )
    else:
        refused = None
    if refused and not force:
        raise FfnopsError(
            f"promote refused: models:/{name}/{number} cannot take @{alias} from "
            f"version {before or '(none)'}: {refused}; force=true "
            "promotes it anyway"
        )
    tags = {
        "by": current_user(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "from_version": before or "none",
        "reason": reason or "",
        "score": str(score) if score else "",
        "forced": refused or "",  # what the gate said, when force=true overrode it
    }
    client.set_registered_model_alias(name, alias, number)
    for key, value in tags.items():
        client.set_model_version_tag(name, number, f"{PROMOTED_TAG}.{alias}.{key}", value)
    if before is not None:
        client.set_model_version_tag(name, before, f"ffnops.demoted.{alias}.at", tags["at"])
    return Promotion(
        name,
        alias,
        number,
        before,
        score,
        previous_score,
        forced=bool(refused),
    )


@dataclass(frozen=True)
class VersionRow:
    """One line of ``ffnops models NAME``."""

    version: str
    aliases: tuple[str, ...]
    created: str
    model_format: str
    parent: str
    promoted: str
    score: Score | None


def version_rows(tracking_uri: str, name: str, metric: str) -> list[VersionRow]:
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = ", ".join(m.name for m in client.search_registered_models()) or "none"
        raise FfnopsError(
            f"no registered model {name!r} in {tracking_uri}; registered: {names}"
        ) from None
    by_version: dict[str, list[str]] = {}
    for alias, number in (model.aliases or {}).items():
        by_version.setdefault(str(number), []).append(alias)
    rows = []
    versions = client.search_model_versions(f"name = '{name}'")
    for version in sorted(versions, key=lambda v: int(v.version)):
        tags = version.tags or {}
        promoted = [
            f"@{key.split('.')[2]} by {tags[key]} at {tags.get(key[:-3] + '.at', '?')}"
            for key in sorted(tags)
            if key.startswith(PROMOTED_TAG + ".") and key.endswith(".by")
        ]
        created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        rows.append(
            VersionRow(
                version=str(version.version),
                aliases=tuple(sorted(by_version.get(str(version.version), []))),
                created=created.strftime("%Y-%m-%d %H:%M"),
                model_format=tags.get(MODEL_FORMAT_TAG, "pickle (legacy)"),
                parent=_tag_text(tags.get("ffnops.parent_model")),
                promoted="; ".join(promoted) or "-",
                score=score_of(client, version, metric, None),
            )
        )
    return rows


def _tag_text(value: str | None) -> str:
    """A settings tag's value (JSON, see ModelSettings.to_tags) as plain text."""
    if not value:
        return "-"
    try:
        return str(json.loads(value))
    except json.JSONDecodeError:
        return value
