"""A settings search's runs, ranked (docs/inference.md, "Settings search").

A search is a set of finished ``ffnops infer`` runs of one model version under one run name (the
*evaluation*: the same image, box and ground truth for each, as for promotion), differing in
their inference options, e.g. ``ffnops infer -m inference.segment_threshold=0.5,0.6,0.7
tracking.run_name=val-box ...``. Each run logged the options it ran with as ``effective.<option>``
params; the best run by a metric gives the options ``ffnops tune`` stores with the model.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from ffnops.errors import FfnopsError
from ffnops.ffn.model_settings import INFERENCE_OPTIONS
from ffnops.ffn.options import InferenceOptions
from ffnops.tracking.promotion import lower_is_better

EFFECTIVE = "effective."  # the prefix of the options an inference run logged as params
# Options newer than the first ffnops that logged them, and the value a run logged before
# them ran with: such a run is still a trial of the search.
ADDED_OPTIONS = {"reflect_faces": False}
# What must be the same in every run of a search for their scores to compare.
SAME_IN_EVERY_RUN = (
    "bbox",
    "eval_bbox",
    "groundtruth",
    "image",
    "mask",
    "image_mean",
    "image_stddev",
    "evaluation.min_overlap",
)


@dataclass(frozen=True)
class Trial:
    """One run of the search: its options (those a model can store) and its score."""

    run_id: str
    options: dict[str, Any]
    value: float


@dataclass(frozen=True)
class Search:
    """The ranked trials (best first) of ``version`` on ``evaluation`` by ``metric``."""

    name: str
    version: str
    evaluation: str
    metric: str
    trials: list[Trial]

    @property
    def best(self) -> Trial:
        return self.trials[0]

    @property
    def varied(self) -> list[str]:
        """The options that differ between trials (what was searched)."""
        return [
            k for k in INFERENCE_OPTIONS if len({repr(t.options.get(k)) for t in self.trials}) > 1
        ]


def option_value(name: str, text: str) -> Any:
    """A logged option back as its type (``0.6``, ``1000``, ``[1, 1, 1]``, ``peaks``)."""
    declared = {f.name: f.type for f in fields(InferenceOptions)}[name]
    kind = declared if isinstance(declared, str) else declared.__name__
    try:
        if kind == "str":
            return text
        if kind == "float":
            return float(text)
        if kind == "int":
            return int(text)
        if kind == "bool":
            return {"true": True, "false": False}[text.lower()]
        return ast.literal_eval(text)  # lists
    except (ValueError, SyntaxError, KeyError):
        raise FfnopsError(f"logged option {EFFECTIVE}{name}={text!r} is not a value") from None


def logged_options(run: Run) -> dict[str, Any]:
    """The options (those a model can store) an ``ffnops infer`` run logged, as their types; an
    option newer than the run is the value the run ran with (``ADDED_OPTIONS``)."""
    params = run.data.params
    missing = [k for k in INFERENCE_OPTIONS if f"{EFFECTIVE}{k}" not in params]
    if missing and set(missing) - set(ADDED_OPTIONS):
        raise FfnopsError(
            f"run {run.info.run_id} logged no {EFFECTIVE}{missing[0]}: not an ffnops infer run"
        )
    if params.get(f"{EFFECTIVE}seed_policy_args", "{}") != "{}":
        raise FfnopsError(
            f"run {run.info.run_id} used inference.seed_policy_args="
            f"{params[f'{EFFECTIVE}seed_policy_args']}, which a model version does not store; "
            "search without it"
        )
    return {
        k: option_value(k, params[f"{EFFECTIVE}{k}"]) if k not in missing else ADDED_OPTIONS[k]
        for k in INFERENCE_OPTIONS
    }


def trial_of(run: Run, metric: str) -> Trial:
    return Trial(run.info.run_id, logged_options(run), float(run.data.metrics[metric]))


def find_search(
    client: MlflowClient, version: ModelVersion, evaluation: str, metric: str
) -> Search:
    """The finished runs of ``version`` named ``evaluation`` that logged ``metric``, ranked."""
    lower = lower_is_better(metric)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        experiments,
        filter_string=(
            f"tags.`ffnops.model_name` = '{version.name}' and "
            f"tags.`ffnops.model_version` = '{version.version}' and "
            f"attributes.run_name = '{evaluation}' and attributes.status = 'FINISHED'"
        ),
        max_results=5000,
    )
    runs = [r for r in found if metric in r.data.metrics]
    where = f"models:/{version.name}/{version.version}"
    if not runs:
        raise FfnopsError(
            f"{where} has no finished run named {evaluation!r} that logged {metric}; run the "
            f"search first (ffnops infer -m ... tracking.run_name={evaluation} groundtruth=...)"
        )
    for key in SAME_IN_EVERY_RUN:
        values = {r.data.params.get(key, r.data.tags.get(f"ffnops.{key}")) for r in runs}
        if len(values) > 1:
            raise FfnopsError(
                f"the runs named {evaluation!r} of {where} differ in {key} "
                f"({', '.join(sorted(map(str, values)))}): their scores do not compare; give "
                "each evaluation its own run name"
            )
    trials = [trial_of(r, metric) for r in runs]
    # Ties go to the earlier run (the search's order), so the choice does not depend on timing.
    start = {r.info.run_id: r.info.start_time for r in runs}
    trials.sort(key=lambda t: (t.value if lower else -t.value, start[t.run_id]))
    return Search(version.name, str(version.version), evaluation, metric, trials)


def search_table(search: Search) -> list[list[str]]:
    """Header and rows (best first): rank, the varied options, the metric, the run."""
    varied = search.varied
    rows = [["rank", *varied, search.metric, "run"]]
    for rank, trial in enumerate(search.trials, 1):
        values = [str(trial.options[k]) for k in varied]
        rows.append([str(rank), *values, f"{trial.value:.4f}", trial.run_id])
    return rows


def search_figure(search: Search) -> Figure:
    """The metric against each searched option, one panel each; the best trial marked."""
    varied = [k for k in search.varied if isinstance(search.best.options[k], int | float)] or [
        "run"
    ]
    figure, axes = plt.subplots(1, len(varied), figsize=(3.2 * len(varied), 3), squeeze=False)
    for axis, key in zip(axes[0], varied, strict=True):
        xs = (
            [t.options[key] for t in search.trials]
            if key != "run"
            else list(range(len(search.trials)))
        )
        axis.scatter(xs, [t.value for t in search.trials], s=18, color="tab:blue")
        axis.scatter([xs[0]], [search.best.value], s=60, color="tab:red", label="chosen")
        axis.set_xlabel(key if key != "run" else "trial")
        axis.set_ylabel(search.metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(
        f"models:/{search.name}/{search.version} on {search.evaluation!r}: "
        f"{len(search.trials)} trials"
    )
    figure.tight_layout()
    return figure


def options_text(options: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={options[k]}" for k in keys) or "no option varied"
