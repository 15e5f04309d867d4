"""Executors: what runs the blocks of a blockwise job, found by name through the plugin hooks.

A blockwise job is a few *tasks* (segment, match, relabel), each a function of a batch of
blocks (daisy's model: a total box, read and write boxes, a function of one block). An executor
runs a task's blocks that are not done yet, ``batch_size`` at a time, and reports progress;
where and how is its business: ``local`` runs them in this process, ``daisy`` in worker
processes on this machine or a cluster (docs/inference.md, docs/plugins.md). A lab adds its own
scheduler with the ``ffnops_executor_names``/``ffnops_make_executor`` hooks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ffnops.blocks import Block, BlockLayout
from ffnops.config.schemas import ExecutorConfig
from ffnops.errors import FfnopsError
from ffnops.plugins import get_plugins


@dataclass(frozen=True)
class BlockTask:
    """One task of a blockwise job. ``process`` and ``is_done`` must pickle (module-level
    functions bound with ``functools.partial``): worker processes receive them."""

    name: str
    layout: BlockLayout
    process: Callable[[Sequence[Block]], None]
    is_done: Callable[[Block], bool]
    workdir: Path  # the job's folder: executors keep their logs and files under it
    batch_size: int = 1


@dataclass(frozen=True)
class TaskProgress:
    """Where a task stands: blocks in all, done (this run or before), skipped as done before
    the run, failed for good."""

    total: int
    done: int
    skipped: int = 0
    failed: int = 0


OnProgress = Callable[[TaskProgress], None]


class Executor(ABC):
    """Runs block tasks. ``blockwise`` says whether a job with no ``executor.block_size`` is
    still cut into blocks (one block, the whole box) or runs as one canvas in this process."""

    blockwise: ClassVar[bool] = True

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config

    @abstractmethod
    def run(self, task: BlockTask, on_progress: OnProgress) -> TaskProgress:
        """Runs every block of ``task`` not yet done; raises FfnopsError if any fails for good."""

    def check_workers(self, shared: Mapping[str, Path]) -> None:  # noqa: B027 - optional hook
        """Before any work: that the workers this executor starts start, and see the folders
        of ``shared`` (the key a user changes -> the folder); raises FfnopsError with one line
        naming the key if not. Executors that run blocks on this machine have nothing to check."""


def executor_names() -> list[str]:
    """Every executor an installed plugin offers."""
    names: list[str] = []
    for answer in reversed(get_plugins().hook.ffnops_executor_names()):
        names.extend(answer)
    return sorted(names)


def make_executor(config: ExecutorConfig) -> Executor:
    """The executor ``config.name`` names; an unknown name lists the installed ones."""
    executor = get_plugins().hook.ffnops_make_executor(name=config.name, config=config)
    if executor is None:
        raise FfnopsError(
            f"executor.name={config.name!r}: no installed plugin offers it; executors: "
            f"{', '.join(executor_names()) or 'none'}. See `ffnops plugins`."
        )
    if not isinstance(executor, Executor):
        raise FfnopsError(
            f"the plugin for executor {config.name!r} returned {type(executor).__name__}, "
            "not an ffnops.executor.Executor"
        )
    return executor
