"""``ffnops quickstart``: from nothing to two registered models, scored side by side in MLflow,
and agglomeration where it wins.

A few CPU minutes cannot train a useful FFN from scratch (Google's model took 27 M steps), so the
quickstart starts where a lab starts: from a pretrained model, fine-tuned on its own labels.

1. ``import``: Google's released FIB-25 checkpoint (bundled) -> ``<model_name>@baseline``;
2. ``partitions`` and 3. ``coordinates`` on the training part of the bundled crop;
4. ``train``: fine-tune from ``@baseline`` (``quickstart.init=scratch``: a new model),
   segmenting the validation box every few steps and keeping the best weights (the starting
   ones included) -> ``@finetuned``;
5. ``infer`` with each version on the evaluation box, which neither training nor the selection
   saw, segmented with context around it and scored against its labels; 6. the better one
   (adapted Rand error; the baseline on a tie) gets ``@champion``, and the summary says by how
   much the fine-tuned version beat the baseline, or that it did not;
7. ``agglomerate`` (``agglomerate.enabled``): the champion segments the validation box and
   ``ffnops agglomerate`` joins its objects there; only if that wins (ERL up, VOI merge up by
   at most ``agglomerate.max_merge_rise``) is the champion's evaluation box agglomerated too.

Each step is the ordinary ``ffnops`` command in a subprocess, so what the quickstart does can be
typed by hand. All runs are children of one ``quickstart`` run in the ``quickstart`` experiment.
Steps are keyed by their arguments: a step whose output for the same arguments exists is
skipped, and a killed step resumes (training from its last checkpoint, inference from its last
canvas checkpoint), so running the quickstart again finishes with the same result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from ffnops_pipelines.steps import run_ffnops, step_key, training_precision
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ffnops.errors import FfnopsError
from ffnops.sample_data import GOOGLE_FIB25_CHECKPOINT, sample_path
from ffnops.tracking.mlflow_tracking import MLFLOW_PARENT_RUN_ID, check_tracking_uri
from ffnops.tracking.registry import alias_version
from ffnops.volume import BBox
from ffnops.volumes import open_volume

STEP_TAG = "quickstart_step"  # no dot: it is a Hydra override key
STATE_FILE = "quickstart.json"


@dataclass
class InferenceResult:
    label: str
    version: str
    run_id: str
    metrics: dict[str, float]
    link: str
    output: str  # the segmentation's URI


@dataclass
class AgglomerationResult:
    """An agglomerate step: its run, and the scores of its input and output on the box."""

    label: str
    run_id: str
    before: dict[str, float]
    after: dict[str, float]
    joined: int
    output: str

    def change(self) -> str:
        """The joins and the scores before -> after, as the summary prints them."""
        nan = float("nan")
        b, a = self.before, self.after
        return (
            f"{self.joined} pairs joined, ERL {b.get('erl_nm', nan) / 1000:.3f} -> "
            f"{a.get('erl_nm', nan) / 1000:.3f} um, VOI merge {b['voi_merge']:.4f} -> "
            f"{a['voi_merge']:.4f}, ARAND {b['adapted_rand_error']:.4f} -> "
            f"{a['adapted_rand_error']:.4f}"
        )

    def wins(self, max_merge_rise: float) -> bool:
        """Run length up, VOI merge up by at most ``max_merge_rise`` (docs/agglomeration.md)."""
        nan = float("nan")  # no ERL (evaluation.skeletonize=false): never a win
        return (
            self.after.get("erl_nm", nan) > self.before.get("erl_nm", nan)
            and self.after["voi_merge"] <= self.before["voi_merge"] + max_merge_rise
        )


class Quickstart:
    """Runs the steps in order; each is skipped when its output for the same arguments exists."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.settings = cfg.quickstart
        self.root = Path(self.settings.output_dir).absolute()
        self.tracking_uri = str(cfg.tracking.tracking_uri)
        self.experiment = str(cfg.tracking.experiment_name)
        self.name = str(self.settings.model_name)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.sample = sample_path("fib25_crop.h5")
        self.parent_run_id = ""
        self.started = time.monotonic()

    # -- plumbing ---------------------------------------------------------------------------

    def check_settings(self) -> None:
        """Choices a later step would refuse, refused before the first step runs."""
        if self.settings.init not in ("pretrained", "scratch"):
            raise FfnopsError(
                f"quickstart.init must be pretrained or scratch, got {self.settings.init!r}"
            )
        options = GlobalHydra.instance().config_loader().get_group_options("optimizer")
        if self.cfg.train.optimizer not in options:
            raise FfnopsError(
                f"train.optimizer={self.cfg.train.optimizer}: expected one of "
                f"{', '.join(sorted(options))} (conf/optimizer/)"
            )

    def check_writable(self) -> None:
        """A read-only folder or a full disk is reported before any work."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"\0" * 1_000_000)
            probe.unlink()
        except OSError as exc:
            raise FfnopsError(
                f"cannot write in {self.root} ({exc.strerror}); run the quickstart in a writable "
                "folder with free space, or set quickstart.output_dir="
            ) from None
        check_tracking_uri(self.tracking_uri)

    def tracking_args(self, step: str) -> list[str]:
        return [
            f"tracking.tracking_uri={self.tracking_uri}",
            f"tracking.experiment_name={self.experiment}",
            f"tracking.inference_experiment={self.experiment}",
            f"tracking.agglomeration_experiment={self.experiment}",
            f"tracking.parent_run_id={self.parent_run_id}",
            f"+tracking.tags.{STEP_TAG}={step}",
        ]

    def run_command(self, step: str, args: Sequence[str]) -> None:
        run_ffnops(step, args, "quickstart")

    def step_runs(self, step: str) -> list[Any]:
        """Finished MLflow runs tagged as this step (newest first)."""
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return []
        return list(
            self.client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`{STEP_TAG}` = '{step}' and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
            )
        )

    def record(self, step: str, args: Sequence[str], outputs: dict[str, str]) -> None:
        """A child run for a step that logs no run of its own (partitions, coordinates)."""
        with mlflow.start_run(
            experiment_id=self.client.get_experiment_by_name(self.experiment).experiment_id,
            run_name=step.rsplit("-", 1)[0],
            nested=True,
            tags={STEP_TAG: step, MLFLOW_PARENT_RUN_ID: self.parent_run_id},
        ):
            mlflow.log_param("command", "ffnops " + " ".join(args))
            mlflow.log_params(outputs)

    def skip(self, step: str, why: str) -> None:
        print(f"\n== {step}: skipped ({why})", flush=True)

    def with_context(self, box: str) -> BBox:
        """``box`` with ``quickstart.context`` voxels around it, cut to the crop."""
        with open_volume(f"h5://{self.sample}#image") as volume:
            whole = BBox.from_shape(volume.shape)
        return BBox.parse(box).grown(self.settings.context, whole)

    # -- steps ------------------------------------------------------------------------------

    def import_baseline(self) -> str:
        version = alias_version(self.client, self.name, "baseline")
        if version and version.tags.get("ffnops.origin", "").endswith(GOOGLE_FIB25_CHECKPOINT.name):
            self.skip("import", f"models:/{self.name}@baseline is version {version.version}")
            return str(version.version)
        args = ["import-checkpoint", "google", f"model_name={self.name}", "alias=baseline"]
        self.run_command("import", [*args, *self.tracking_args("import")])
        return str(self.client.get_model_version_by_alias(self.name, "baseline").version)

    def partitions(self) -> Path:
        s = self.settings
        args = [
            "partitions",
            f"labels=h5://{self.sample}#labels",
            f"bbox={s.train_box}",
            f"lom_radius={vector(s.lom_radius)}",
            f"min_size={s.min_size}",
        ]
        return self.file_step("partitions", args, ".h5", "output=h5://{path}#partitions")

    def coordinates(self, partitions: Path) -> Path:
        args = [
            "coordinates",
            f"volumes=[sample:h5://{partitions}#partitions]",
            "margin=[24,24,24]",  # the training patch radius: FOV 33 + one move of 8 each way
            "seed=0",
        ]
        return self.file_step("coordinates", args, ".npz", "output={path}")

    def file_step(self, name: str, args: list[str], suffix: str, output_arg: str) -> Path:
        """A step whose output is one file named by its key: skipped when the file exists."""
        key = f"{name}-{step_key(args)}"
        out = self.root / f"{key}{suffix}"
        if out.exists():
            self.skip(name, f"{out.name} exists")
            return out
        args = [*args, output_arg.format(path=out)]
        self.run_command(name, args)
        self.record(key, args, {"output": str(out)})
        return out

    def train(self, coordinates: Path, baseline: str) -> str:
        t = self.cfg.train
        args = [
            "train",
            f"data.coordinates={coordinates}",
            "model=convstack_3d",
            f"trainer.max_steps={t.max_steps}",
            f"trainer.precision={training_precision(t.precision)}",
            "trainer.limit_val_batches=0",  # patch F1 says little; val_box's segmentation decides
            f"training.validation.box={self.settings.val_box}",
            f"training.validation.context={vector(self.settings.context)}",
            f"training.validation.every_n_steps={t.validate_every_n_steps}",
            f"training.batch_size={t.batch_size}",
            "training.channels_last=true",
            f"optimizer={t.optimizer}",
            f"optimizer.lr={t.lr}",
            f"tracking.model_name={self.name}",
            "tracking.alias=finetuned",
            *t.overrides,
        ]
        if self.settings.init == "pretrained":
            args.append(f"model.init_from=models:/{self.name}/{baseline}")
        key = f"train-{step_key(args)}"
        for run in self.step_runs(key):
            versions = self.client.search_model_versions(f"run_id = '{run.info.run_id}'")
            if versions:
                self.skip("train", f"version {versions[0].version} was trained with these settings")
                return str(versions[0].version)
        directory = self.root / key
        resume = [f"resume={directory}"] if (directory / "ffnops_run.json").exists() else []
        self.run_command(
            "train",
            [
                *args,
                f"hydra.run.dir={directory}",
                f"paths.output_dir={self.root}",
                *resume,
                *self.tracking_args(key),
            ],
        )
        (run,) = self.step_runs(key)[:1]
        return str(self.client.search_model_versions(f"run_id = '{run.info.run_id}'")[0].version)

    def output_step(
        self, command: str, label: str, args: list[str], name: str, scheme: str
    ) -> tuple[Any, Path]:
        """A step that writes ``<key>/<name>`` and logs a run: skipped when its run exists, and
        run with ``overwrite=true`` when it was killed after writing but before logging."""
        key = f"{command}-{label}-{step_key(args)}"
        output = self.root / key / name
        done = self.step_runs(key)
        if done:
            self.skip(f"{command} {label}", f"run {done[0].info.run_id} has these settings")
            return done[0], output
        extra = ["overwrite=true"] if output.exists() else []
        self.run_command(
            f"{command} {label}",
            [
                *args,
                f"output={scheme}://{output}",
                f"paths.output_dir={self.root}",
                f"tracking.run_name={command}-{label}",
                *extra,
                *self.tracking_args(key),
            ],
        )
        return self.step_runs(key)[0], output

    def infer(self, label: str, version: str, box: str | None = None) -> InferenceResult:
        """``version`` on ``box`` (the evaluation box by default) with context, scored there."""
        i = self.cfg.infer
        box = box or self.settings.eval_box
        args = [
            "infer",
            f"model=models:/{self.name}/{version}",
            f"image=h5://{self.sample}#image",
            f"groundtruth=h5://{self.sample}#labels",
            f"bbox={self.with_context(box)}",
            f"eval_bbox={box}",
            f"executor={i.executor}",
            *i.overrides,
        ]
        run, output = self.output_step("infer", label, args, "segmentation", "precomputed")
        metrics = {k[5:]: v for k, v in run.data.metrics.items() if k.startswith("eval/")}
        metrics["objects"] = run.data.metrics.get("objects", float("nan"))
        return InferenceResult(
            label,
            version,
            run.info.run_id,
            metrics,
            run.data.tags.get("neuroglancer_url", ""),
            f"precomputed://{output}",
        )

    def agglomerate(
        self, label: str, model: InferenceResult, seg: InferenceResult, box: str
    ) -> AgglomerationResult:
        """``ffnops agglomerate`` of ``seg`` with ``model``'s version, scored on ``box``."""
        a = self.cfg.agglomerate
        args = [
            "agglomerate",
            f"model=models:/{self.name}/{model.version}",
            f"image=h5://{self.sample}#image",
            f"seg={seg.output}",
            f"groundtruth=h5://{self.sample}#labels",
            f"eval_bbox={box}",
            # the floods judge with the options the segmentation was made with
            *[o for o in self.cfg.infer.overrides if o.lstrip("+~").startswith("inference.")],
            *a.overrides,
        ]
        run, output = self.output_step("agglomerate", label, args, "agglomerated.zarr", "zarr")
        metrics = run.data.metrics
        return AgglomerationResult(
            label,
            run.info.run_id,
            {k[len("eval_input/") :]: v for k, v in metrics.items() if k.startswith("eval_input/")},
            {k[len("eval/") :]: v for k, v in metrics.items() if k.startswith("eval/")},
            int(metrics.get("pairs_joined", 0)),
            f"zarr://{output}",
        )

    def agglomeration(self, best: InferenceResult) -> tuple[AgglomerationResult, ...]:
        """Agglomeration of the champion's segmentation, tried on the validation box (which
        neither its scores on the evaluation box nor the crowning saw); applied to the
        evaluation box only when it wins there. Returns the trial, and the applied step."""
        trial_seg = self.infer(f"{best.label}-validation", best.version, self.settings.val_box)
        trial = self.agglomerate(f"{best.label}-validation", best, trial_seg, self.settings.val_box)
        won = trial.wins(self.cfg.agglomerate.max_merge_rise)
        mlflow.log_metrics({f"agglomeration/validation_{k}": v for k, v in trial.after.items()})
        mlflow.set_tag("agglomeration", "kept" if won else "not kept")
        if not won:
            return (trial,)
        applied = self.agglomerate(best.label, best, best, self.settings.eval_box)
        mlflow.log_metrics({f"agglomerated/{k}": v for k, v in applied.after.items()})
        return trial, applied

    def crown(self, results: Sequence[InferenceResult]) -> InferenceResult:
        """``@champion`` goes to the lower adapted Rand error (the baseline on a tie)."""
        best = min(results, key=lambda r: (r.metrics["adapted_rand_error"], r.label != "baseline"))
        self.client.set_registered_model_alias(self.name, "champion", best.version)
        for r in results:
            mlflow.log_metrics({f"{r.label}/{k}": v for k, v in r.metrics.items()})
        mlflow.set_tag("champion", f"models:/{self.name}/{best.version} ({best.label})")
        return best

    # -- the whole pipeline -----------------------------------------------------------------

    def parent_run(self) -> Any:
        """The quickstart's MLflow run: resumed if the last quickstart here did not finish."""
        state_path = self.root / STATE_FILE
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.experiment)
        if state.get("parent_run_id") and not state.get("finished"):
            run = mlflow.start_run(run_id=state["parent_run_id"])
        else:
            run = mlflow.start_run(run_name="quickstart")
        self.parent_run_id = run.info.run_id
        state_path.write_text(json.dumps({"parent_run_id": self.parent_run_id, "finished": False}))
        return run

    def run(self) -> None:
        self.check_settings()
        self.check_writable()
        with self.parent_run():
            mlflow.log_params(
                {
                    "init": self.settings.init,
                    "train_box": self.settings.train_box,
                    "val_box": self.settings.val_box,
                    "eval_box": self.settings.eval_box,
                    "context": vector(self.settings.context),
                    "train.max_steps": self.cfg.train.max_steps,
                }
            )
            baseline = self.import_baseline()
            coordinates = self.coordinates(self.partitions())
            finetuned = self.train(coordinates, baseline)
            results = [self.infer("baseline", baseline), self.infer("finetuned", finetuned)]
            best = self.crown(results)
            agglomerated = self.agglomeration(best) if self.cfg.agglomerate.enabled else ()
        (self.root / STATE_FILE).write_text(
            json.dumps({"parent_run_id": self.parent_run_id, "finished": True})
        )
        self.summary(results, best, agglomerated)

    def summary(
        self,
        results: Sequence[InferenceResult],
        best: InferenceResult,
        agglomerated: Sequence[AgglomerationResult] = (),
    ) -> None:
        minutes = (time.monotonic() - self.started) / 60
        print(f"\nquickstart done in {minutes:.1f} min; eval box [{self.settings.eval_box}]:\n")
        names = [f"models:/{self.name}/{r.version} ({r.label})" for r in results]
        width = max(len(n) for n in names)
        print(
            f"{'model':<{width}} {'ARAND':>7} {'VOI split':>9} {'VOI merge':>9} "
            f"{'ERL (um)':>8} {'of (um)':>7} {'objects':>7}"
        )
        for name, r in zip(names, results, strict=True):
            m = r.metrics
            print(
                f"{name:<{width}} {m['adapted_rand_error']:7.4f} {m['voi_split']:9.4f} "
                f"{m['voi_merge']:9.4f} {m.get('erl_nm', 0.0) / 1000:8.2f} "
                f"{m.get('groundtruth_erl_nm', 0.0) / 1000:7.2f} {int(m['objects']):7d}"
            )
        print(
            "(ERL: expected run length over the labels' skeletons, and the labels' own; "
            "docs/evaluation.md)"
        )
        base, tuned = results
        change = tuned.metrics["adapted_rand_error"] - base.metrics["adapted_rand_error"]
        verdict = "beat" if change < 0 else "did not beat"
        print(
            f"\nthe fine-tuned version {verdict} the baseline on the unseen box: ARAND "
            f"{base.metrics['adapted_rand_error']:.4f} -> {tuned.metrics['adapted_rand_error']:.4f}"
            f" ({change:+.4f}), VOI {voi(base):.4f} -> {voi(tuned):.4f} "
            f"({voi(tuned) - voi(base):+.4f})"
        )
        print(f"champion: models:/{self.name}@champion -> version {best.version} ({best.label})")
        if agglomerated:
            self.agglomeration_summary(agglomerated)
        print("\nLook at:")
        if self.tracking_uri.startswith(("http://", "https://")):
            print(f"  {self.tracking_uri} (the team's MLflow UI)")
        else:
            print(f"  mlflow ui --backend-store-uri {self.tracking_uri}")
        print(f"    experiment {self.experiment!r}: tick the two 'infer' runs, then Compare")
        for r in results:
            print(f"  ffnops view {r.run_id}    # {r.label}: neuroglancer, then open the link:")
            print(f"    {r.link}")

    def agglomeration_summary(self, agglomerated: Sequence[AgglomerationResult]) -> None:
        trial = agglomerated[0]
        print(
            "\nagglomeration of the champion's segmentation, tried on the validation box "
            f"[{self.settings.val_box}]: {trial.change()}"
        )
        if len(agglomerated) == 1:
            print(
                "  not a win there (ERL must rise, VOI merge by at most "
                f"{self.cfg.agglomerate.max_merge_rise}), so the champion's segmentation is the "
                "result (docs/agglomeration.md)"
            )
            return
        applied = agglomerated[1]
        print(f"  a win, so applied to the evaluation box: {applied.change()}; {applied.output}")


def voi(result: InferenceResult) -> float:
    """Total VOI (runs of an earlier ffnops logged only its two parts)."""
    return result.metrics["voi_split"] + result.metrics["voi_merge"]


def vector(values: Sequence[int]) -> str:
    return f"[{','.join(str(v) for v in values)}]"


def run(cfg: DictConfig) -> None:
    Quickstart(cfg).run()
