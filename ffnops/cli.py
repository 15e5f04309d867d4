"""``ffnops <command> [hydra overrides]``: one Hydra app per command, all sharing ``conf/``.

Each command has a top-level config of the same name in ``conf/`` and a ``run(cfg)`` function in
``ffnops.commands``; modules are imported only when their command runs, so ``ffnops --help`` is
quick. Errors caused by input (:class:`ffnops.errors.FfnopsError`) print one line and exit 2.
Extra config directories come from ``FFNOPS_CONFIG_PATH`` (``os.pathsep``-separated) and from the
``ffnops_config_dirs`` hook; they are searched before ffnops's own ``conf/``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ffnops import __version__

CONFIG_PATH_ENV = "FFNOPS_CONFIG_PATH"
# Set while a command runs, so processes that re-run this program with only the overrides
# (Lightning's DDP launcher starts one per extra device) know which command they are.
COMMAND_ENV = "FFNOPS_COMMAND"


@dataclass(frozen=True)
class Command:
    """A CLI command: its config in ``conf/`` and where its ``run(cfg)`` lives."""

    name: str
    summary: str
    target: str  # "module:function"

    def load(self) -> Callable[..., object]:
        module_name, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module_name), function)  # type: ignore[no-any-return]


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "plugins",
            "List installed plugins, their versions, hooks and schemes.",
            "ffnops.commands.plugins:run",
        ),
        Command(
            "info",
            "Describe a volume (shape, dtype, chunks, voxel size) by URI.",
            "ffnops.commands.info:run",
        ),
        Command(
            "partitions",
            "Label each voxel by how inside its object it is (Google's compute_partitions).",
            "ffnops.commands.partitions:run",
        ),
        Command(
            "coordinates",
            "Sample training coordinates balanced over partitions (build_coordinates).",
            "ffnops.commands.coordinates:run",
        ),
        Command(
            "train",
            "Train an FFN with a moving FOV (Lightning), tracked and registered in MLflow.",
            "ffnops.commands.train:run",
        ),
        Command(
            "infer",
            "Segment a volume with a registered model; write outputs; evaluate; log to MLflow.",
            "ffnops.commands.infer:run",
        ),
        Command(
            "evaluate",
            "Score a segmentation against ground truth (VOI, adapted Rand, merges, splits).",
            "ffnops.commands.evaluate:run",
        ),
        Command(
            "import-checkpoint",
            "Register Google's TensorFlow FFN checkpoint as an MLflow model (no TF needed).",
            "ffnops.commands.import_checkpoint:run",
        ),
        Command(
            "quickstart",
            "Bundled data to two registered models, scored side by side in MLflow (pipelines/).",
            "ffnops_pipelines.quickstart:run",
        ),
        Command(
            "fib25",
            "Google's FIB-25 recipe end to end: partitions, coordinates, train, infer, evaluate.",
            "ffnops_pipelines.fib25:run",
        ),
        Command(
            "view",
            "Show an inference run (or any segmentation) over its image in neuroglancer.",
            "ffnops.commands.view:run",
        ),
        Command(
            "models",
            "List a registered model's versions, aliases, parents and scores.",
            "ffnops.commands.models:list_models",
        ),
        Command(
            "promote",
            "Move an alias (e.g. champion) to a version, gated by an evaluation score.",
            "ffnops.commands.models:promote",
        ),
        Command(
            "server",
            "Start a team's MLflow server: PostgreSQL store, served artifacts, basic-auth.",
            "ffnops.commands.server:run",
        ),
        Command(
            "convert",
            "Copy a volume into another format (hdf5, n5, zarr, precomputed).",
            "ffnops.commands.convert:run",
        ),
    )
}


# Commands whose first arguments may be given without their keys.
POSITIONAL = {
    "import-checkpoint": ("checkpoint",),
    "view": ("target",),
    "models": ("name",),
    "promote": ("model_uri", "alias"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"ffnops {__version__}: Flood-Filling Networks for connectomics",
        "",
        "usage: ffnops <command> [key=value ...] [--help] [--cfg job] [-m]",
        "",
        "commands:",
        *(f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS.values()),
        "",
        "Every config value can be overridden as key=value; `ffnops <command> --help` lists the",
        "config groups and the composed config; `-m a=1,2` runs a sweep.",
    ]
    return "\n".join(lines)


def config_search_path() -> list[str]:
    """Extra config dirs from the environment and from plugins, as Hydra search-path entries."""
    entries = [p for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    from ffnops.plugins import get_plugins

    for answer in get_plugins().hook.ffnops_config_dirs():
        entries.extend(answer)
    return [e if "://" in e else f"file://{Path(e).absolute()}" for e in entries]


_OVERRIDE = re.compile(r"^(?P<key>[+~]{0,2}[\w.\-/@]+)=(?P<value>[^'\"{}]*)$")
_BBOX = re.compile(r"^\s*\d+:\d+\s*,\s*\d+:\d+\s*,\s*\d+:\d+\s*$")


def _quote(value: str) -> str:
    return f"'{value}'" if "#" in value or _BBOX.match(value) else value


def quote_values(overrides: Sequence[str]) -> list[str]:
    """Quotes values Hydra's grammar would misread: URIs with '#' (``h5://f.h5#raw``, also inside
    a list) and boxes (``bbox=0:64,0:64,0:64``, which Hydra would take for a sweep).

    ``model=models:/NAME@ALIAS`` becomes ``model_uri=...``: ``model`` is also the name of a
    config group, which Hydra would try to select.
    """
    quoted = []
    for item in overrides:
        if item.startswith("model=models:/"):
            item = "model_uri=" + item[len("model=") :]
        match = _OVERRIDE.match(item)
        if match:
            value = match["value"]
            if value.startswith("[") and value.endswith("]") and "#" in value:
                value = "[" + ",".join(_quote(v.strip()) for v in value[1:-1].split(",")) + "]"
            elif "[" not in value:
                value = _quote(value)
            item = f"{match['key']}={value}"
        quoted.append(item)
    return quoted


def config_dir() -> Path:
    """The Hydra configs: ``conf/`` installed as ``ffnops.conf``, or beside the package when
    ffnops runs from a source checkout (``python -m ffnops`` in the repository root)."""
    try:
        import ffnops.conf  # type: ignore[import-not-found]  # conf/, mapped into the package
    except ModuleNotFoundError:
        source = Path(__file__).resolve().parents[1] / "conf"
        if (source / "infer.yaml").is_file():
            return source
        raise SystemExit(
            f"ffnops: error: its configs are missing (no ffnops.conf, no {source}); "
            "reinstall with `pip install .`"
        ) from None
    return Path(ffnops.conf.__file__).parent


def run_command(command: Command, overrides: Sequence[str]) -> None:
    """Runs one command as a Hydra app with ``overrides`` as its command line."""
    import hydra
    from omegaconf import DictConfig

    from ffnops.config.store import register_configs
    from ffnops.errors import FfnopsError

    register_configs()
    conf_dir = str(config_dir())

    @hydra.main(version_base="1.3", config_path=conf_dir, config_name=command.name)
    def app(cfg: DictConfig) -> None:
        try:
            command.load()(cfg)
        except FfnopsError as exc:
            print(f"ffnops {command.name}: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except Exception as exc:
            refusal = _server_refusal(exc, cfg)
            if refusal is None:
                raise
            print(f"ffnops {command.name}: error: {refusal}", file=sys.stderr)
            sys.exit(2)

    search = config_search_path()
    extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
    os.environ[COMMAND_ENV] = command.name
    sys.argv = [sys.argv[0], *extra, *quote_values(overrides)]
    app()


def _server_refusal(exc: Exception, cfg: object) -> str | None:
    """A tracking server's refusal (bad credentials, no permission) as one line, else None."""
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is None or not isinstance(exc, mlflow_exceptions.MlflowException):
        return None
    from ffnops.tracking.mlflow_tracking import server_refusal

    tracking = getattr(cfg, "tracking", None)
    return server_refusal(exc, getattr(tracking, "tracking_uri", None))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if args[0] in ("-V", "--version"):
        print(f"ffnops {__version__}")
        return
    command = COMMANDS.get(args[0])
    if command is None and os.environ.get(COMMAND_ENV) in COMMANDS:
        command = COMMANDS[os.environ[COMMAND_ENV]]  # a re-launched worker: all args are overrides
        args = ["", *args]
    if command is None:
        print(f"ffnops: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    overrides = args[1:]
    for index, key in enumerate(POSITIONAL.get(command.name, ())):
        if index < len(overrides) and "=" not in overrides[index] and overrides[index][:1] != "-":
            overrides[index] = f"{key}={overrides[index]}"  # e.g. `ffnops view RUN_ID`
        else:
            break
    run_command(command, overrides)


if __name__ == "__main__":
    main()
