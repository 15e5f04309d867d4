"""``ffnops fib25``: Google's published FIB-25 recipe, end to end, on ``training_sample2``.

partitions (Google's 12 thresholds, lom_radius 24, min_size 10000) on the training part ->
balanced coordinates (margin 24) -> training of ConvStack3D (depth 12, FOV 33^3, deltas 8^3, image
mean 128 / stddev 33, SGD 1e-3, batch 4; ``recipe=finetune``: Google's released model fine-tuned
with Adam at 1e-5), the registered weights chosen by segmenting the validation box -> inference
with Google's request on the evaluation box (with context), scored against its labels. Each step
is the ordinary ``ffnops`` command with the arguments listed in ``conf/fib25.yaml`` and
``conf/recipe/``; outputs are keyed by those arguments, so a finished step is skipped and a
killed training resumes from its last checkpoint. ``trainer=ddp`` trains on several GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ffnops_pipelines.steps import run_ffnops, step_key
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ffnops.errors import FfnopsError
from ffnops.tracking.registry import alias_version
from ffnops.volume import BBox
from ffnops.volumes import open_volume


def group_args(cfg: DictConfig, group: str, default: str) -> list[str]:
    """``group=<option>`` plus every value of the composed group, so what was chosen and
    overridden here (``trainer=ddp trainer.devices=8``) is what the step runs with."""
    try:
        option = str(HydraConfig.get().runtime.choices.get(group, default))
    except ValueError:
        option = default
    values = OmegaConf.to_container(cfg[group], resolve=True)
    assert isinstance(values, dict)
    return [f"{group}={option}"] + [
        f"{group}.{key}={_override_value(value)}"
        for key, value in values.items()
        if not key.startswith("_")
    ]


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


class Recipe:
    """The four steps, each skipped when its output for the same arguments exists."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.output_dir).absolute()
        self.tracking = [
            f"tracking.tracking_uri={cfg.tracking.tracking_uri}",
            f"tracking.experiment_name={cfg.tracking.experiment_name}",
            f"tracking.model_name={cfg.tracking.model_name}",
        ]

    def step(self, name: str, args: list[str], output: Path, output_arg: str) -> Path:
        key = f"{name}-{step_key(args)}"
        target = self.root / key / output
        if target.exists():
            print(f"\n== {name}: skipped ({target} exists)")
            return target
        command = [*args, output_arg.format(path=target)]
        if self.cfg.dry_run:
            print(f"ffnops {' '.join(command)}")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        run_ffnops(name, command, "fib25")
        return target

    def train(self, train_args: list[str]) -> str:
        """Trains (or resumes the killed training of) these arguments, or skips a finished one;
        returns the exact version it registered (``models:/NAME/VERSION``), which inference then
        uses: the ``fib25`` alias may have moved since."""
        run_dir = self.root / f"train-{step_key(train_args)}"
        record = run_dir / "ffnops_run.json"
        done = json.loads(record.read_text()) if record.is_file() else {}
        if done.get("status") == "finished":
            print(f"\n== train: skipped ({run_dir} finished, registered {done['registered']})")
            return str(done["registered"])
        resume = [f"resume={run_dir}"] if record.is_file() else []
        command = [*train_args, f"hydra.run.dir={run_dir}", *resume]
        if self.cfg.dry_run:
            print(f"ffnops {' '.join(command)}")
            return f"models:/{self.cfg.tracking.model_name}@fib25"
        run_ffnops("train", command, "fib25")
        return str(json.loads(record.read_text())["registered"])

    def initial_weights(self) -> list[str]:
        """``recipe=finetune`` (``init: google``): Google's released checkpoint, imported once
        as ``<model_name>@google``, is where training starts."""
        if self.cfg.init == "scratch":
            return []
        name = self.cfg.tracking.model_name
        args = ["import-checkpoint", "google", f"model_name={name}", "alias=google", *self.tracking]
        weights = [f"model.init_from=models:/{name}@google"]
        if self.cfg.dry_run:  # touches no store
            print(f"ffnops {' '.join(args)}")
            return weights
        client = MlflowClient(tracking_uri=self.cfg.tracking.tracking_uri)
        if alias_version(client, name, "google") is None:
            run_ffnops("import", args, "fib25")
        else:
            print(f"\n== import: skipped (models:/{name}@google is registered)")
        return weights

    def infer_box(self) -> BBox:
        """The evaluation box with ``data.context`` around it, cut at the image's faces (a dry
        run without the image cuts at 0 only)."""
        data = self.cfg.data
        try:
            with open_volume(data.image) as image:
                whole = BBox.from_shape(image.shape)
        except (OSError, FfnopsError):
            if not self.cfg.dry_run:
                raise
            whole = BBox.from_shape([2**31] * 3)
        return BBox.parse(data.eval_box).grown(data.context, whole)

    def run(self) -> None:
        if self.cfg.init not in ("scratch", "google"):  # before any step runs
            raise FfnopsError(f"init must be scratch or google, got {self.cfg.init!r}")
        data = self.cfg.data
        partitions = self.step(
            "partitions",
            ["partitions", f"labels={data.labels}", f"bbox={data.train_box}", *self.cfg.partitions],
            Path("partitions.h5"),
            "output=h5://{path}#partitions",
        )
        coordinates = self.step(
            "coordinates",
            [
                "coordinates",
                f"volumes=[training_sample2:h5://{partitions}#partitions]",
                *self.cfg.coordinates,
            ],
            Path("coordinates.npz"),
            "output={path}",
        )
        train_args = [
            "train",
            f"data.coordinates={coordinates}",
            "~data.volumes.sample",
            "+dataset@data.volumes.training_sample2=fib25_sample2",
            f"data.volumes.training_sample2.image={data.image}",
            f"data.volumes.training_sample2.labels={data.labels}",
            f"data.volumes.training_sample2.bbox={data.train_box}",  # patches stay in it
            f"training.validation.box={data.val_box}",
            f"training.validation.context={_override_value(list(data.context))}",
            f"training.validation.every_n_steps={self.cfg.validate_every_n_steps}",
            *self.initial_weights(),
            *group_args(self.cfg, "trainer", "cpu"),
            *self.cfg.train,
            *self.tracking,
            "tracking.alias=fib25",
        ]
        model = self.train(train_args)
        self.step(
            "infer",
            [
                "infer",
                f"model={model}",
                f"image={data.image}",
                f"groundtruth={data.labels}",
                f"evaluation.voxel_size=[{','.join(str(v) for v in data.voxel_size)}]",
                f"bbox={self.infer_box()}",
                f"eval_bbox={data.eval_box}",
                *group_args(self.cfg, "executor", "cpu"),
                *self.cfg.infer,
                *self.tracking,
            ],
            Path("segmentation"),
            "output=precomputed://{path}",
        )


def run(cfg: DictConfig) -> None:
    Recipe(cfg).run()
