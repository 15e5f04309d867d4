"""``ffnops <command> [hydra overrides]``: one Hydra app per command, all sharing ``conf/``.

Each command has a top-level config of the same name in ``conf/`` and a ``run(cfg)`` function in
``ffnops.commands``; modules are imported only when their command runs, so ``ffnops --help`` is
quick. Errors caused by input (:class:`ffnops.errors.FfnopsError`) print one line and exit 2, and
so do the operating system's (a file that cannot be read or written, a full disk, ``OSError``).
SIGTERM becomes ``SystemExit`` and Ctrl-C a one-line "interrupted": either way every ``finally``
and ``with`` block runs, so locks, partial outputs and temporary copies are removed.
Extra config directories come from ``FFNOPS_CONFIG_PATH`` (``os.pathsep``-separated) and from the
``ffnops_config_dirs`` hook; they are searched before ffnops's own ``conf/``.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ffnops import __version__

CONFIG_PATH_ENV = "FFNOPS_CONFIG_PATH"
# Set while a command runs, so processes that re-run this program with only the overrides
# (Lightning's DDP launcher starts one per extra device) know which command they are.
COMMAND_ENV = "FFNOPS_COMMAND"
# Set (to anything) to see the traceback behind an operating-system error's one line.
TRACEBACK_ENV = "FFNOPS_TRACEBACK"
_MAIN_PID = os.getpid()  # set again when a command starts


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
            "tune",
            "Register a version with the best inference options of a settings search.",
            "ffnops.commands.tune:run",
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
        Command(
            "mesh",
            "Write a segmentation with every object's 3-D mesh, as neuroglancer draws it.",
            "ffnops.commands.mesh:run",
        ),
        Command(
            "skeletons",
            "Write a segmentation with every object's skeleton (kimimaro), for neuroglancer.",
            "ffnops.commands.skeletons:run",
        ),
        Command(
            "consensus",
            "Combine two or more segmentations where they agree (google/ffn's split consensus).",
            "ffnops.commands.consensus:run",
        ),
        Command(
            "agglomerate",
            "Join objects the FFN, run again on their contact, floods into each other.",
            "ffnops.commands.agglomerate:run",
        ),
    )
}


# Commands whose first arguments may be given without their keys.
POSITIONAL = {
    "import-checkpoint": ("checkpoint",),
    "view": ("target",),
    "models": ("name",),
    "promote": ("model_uri", "alias"),
    "tune": ("model_uri",),
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
_LIST_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\-/@]*=")  # not an option (--key=value)
_BOX_KEY = re.compile(r"(^|[._])(bbox|\w+_box)$")


def _quote(value: str) -> str:
    return f"'{value}'" if "#" in value or _BBOX.match(value) else value


def list_items(inner: str) -> list[str]:
    """The items of a list's text. In a list of overrides, a piece without '=' continues the
    override before it: ``[bbox=0:8,0:8,0:8,seed=1]`` is two items. A command's option is not an
    override: ``[srun,--gres=gpu:1,-p,gpu]`` is four items."""
    items: list[str] = []
    for piece in (p.strip() for p in inner.split(",")):
        if items and _LIST_OVERRIDE.match(items[-1]) and "=" not in piece:
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


def quote_values(overrides: Sequence[str]) -> list[str]:
    """Quotes values Hydra's grammar would misread: URIs with '#' (``h5://f.h5#raw``, also inside
    a list), boxes (``bbox=0:64,0:64,0:64``, which Hydra would take for a sweep) and overrides
    inside a list (``train.overrides=[optimizer=adam,seed=1]``).

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
            inner = value[1:-1]
            flat = "[" not in inner and "]" not in inner  # nested lists and list sweeps as given
            if (
                value.startswith("[")
                and value.endswith("]")
                and flat
                and ("#" in value or "=" in value)
            ):
                items = list_items(inner)
                value = "[" + ",".join(f"'{v}'" if "=" in v else _quote(v) for v in items) + "]"
            elif _BOX_KEY.search(match["key"]) and value and value != "null":
                value = f"'{value}'"  # a box, however malformed, is a string for BBox.parse
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
    from hydra.errors import HydraException
    from omegaconf import DictConfig
    from omegaconf.errors import OmegaConfBaseException

    from ffnops.config.store import register_configs
    from ffnops.errors import FfnopsError

    register_configs()
    conf_dir = str(config_dir())

    @hydra.main(version_base="1.3", config_path=conf_dir, config_name=command.name)
    def app(cfg: DictConfig) -> None:
        def fail(message: str, code: int = 2) -> None:
            if os.environ.get(TRACEBACK_ENV):
                raise  # the exception being handled, with its traceback
            print(f"ffnops {command.name}: {message}", file=sys.stderr)
            if code == 2:
                _remove_empty_run_dir(started)
            sys.exit(code)

        try:
            command.load()(cfg)
        except FfnopsError as exc:
            fail(f"error: {exc}")
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # The reader of our output went away (`ffnops plugins | head`): not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (HydraException, OmegaConfBaseException) as exc:
            fail(f"error: {config_error_line(exc)}")
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"error: {where}{exc.strerror or exc}")
        except Exception as exc:
            refusal = _store_refusal(exc, cfg)
            if refusal is None:
                raise
            fail(f"error: {refusal}")

    global _MAIN_PID
    _MAIN_PID = os.getpid()  # set again when a command starts
    started = time.time()
    signal.signal(signal.SIGTERM, _terminated)
    search = config_search_path()
    extra = [f"hydra.searchpath=[{','.join(search)}]"] if search else []
    os.environ[COMMAND_ENV] = command.name
    # Hydra then raises its errors instead of printing them, so they become one line here.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [sys.argv[0], *extra, *quote_values(overrides)]
    try:
        app()
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"ffnops {command.name}: error: {config_error_line(exc)}", file=sys.stderr)
        sys.exit(2)


def config_error_line(exc: BaseException) -> str:
    """A Hydra or OmegaConf error (a misspelt key, a wrong type, a bad override) as one line:
    the key it concerns, then the first line of each message in its chain."""
    parts: list[str] = []
    key = None
    error: BaseException | None = exc
    while error is not None:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        for line in lines:
            if line.startswith("full_key:"):
                key = line.removeprefix("full_key:").strip() or key
        if lines and lines[0] not in parts:
            parts.append(lines[0])
        error = error.__cause__
    prefix = f"{key}: " if key and not any(key in p for p in parts) else ""
    return prefix + "; ".join(parts) + " (see `ffnops COMMAND --help`, docs/configs.md)"


def _remove_empty_run_dir(started: float) -> None:
    """After an input error, Hydra's run folder of this command holds only its own files (the
    composed config, an empty log): nothing to keep, so it goes, with parents it leaves empty.
    A folder that existed before this command (``hydra.run.dir`` of an earlier run) stays."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    try:
        folder = Path(HydraConfig.get().runtime.output_dir).resolve()
        cwd = Path.cwd().resolve()
        if folder == cwd or cwd not in folder.parents:
            return
        if {p.name for p in folder.iterdir()} - {".hydra", "cli.log", f"{folder.name}.log"}:
            return  # the command wrote something there
        if any(log.stat().st_size for log in folder.glob("*.log")):
            return
        if (
            folder.stat().st_ctime < started - 1
            or (folder / ".hydra").stat().st_ctime < started - 1
        ):
            return
    except (ValueError, OSError):
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == cwd:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's kill, ``kill PID``): unwind like ``sys.exit`` so cleanup runs.
    A forked child (a DataLoader worker) that inherited this handler dies as it would have."""
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    print("ffnops: terminated", file=sys.stderr)
    sys.exit(128 + signum)


def _store_refusal(exc: Exception, cfg: object) -> str | None:
    """A tracking server's refusal (bad credentials, no permission) or an SQLite store locked
    by another process, as one line; else None."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.exceptions import MlflowException

    from ffnops.tracking.mlflow_tracking import server_refusal, store_busy

    uri = getattr(getattr(cfg, "tracking", None), "tracking_uri", None)
    refusal = server_refusal(exc, uri) if isinstance(exc, MlflowException) else None
    return refusal or store_busy(exc, uri)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if args[0] in ("-V", "--version"):
        print(f"ffnops {__version__}")
        return
    # MLflow's own INFO lines (creating tables, creating an experiment) are not the command's
    # output; MLFLOW_LOGGING_LEVEL=INFO brings them back.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    command = COMMANDS.get(args[0])
    if command is None and os.environ.get(COMMAND_ENV) in COMMANDS:
        command = COMMANDS[os.environ[COMMAND_ENV]]  # a re-launched worker: all args are overrides
        args = ["", *args]
        from ffnops.processes import die_with_parent

        die_with_parent()  # a DDP rank: it must not outlive the rank-0 process that started it
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
