"""The ``local`` executor: everything in this process.

Without ``executor.block_size`` a job is one canvas over the whole box (``blockwise = False``:
the single-canvas runner, whose output may go to any sink). With it, blocks run here one batch
after another, ``batch_size`` canvases sharing each network call.
"""

from __future__ import annotations

from ffnops import hookimpl
from ffnops.config.schemas import ExecutorConfig
from ffnops.errors import FfnopsError
from ffnops.executor import BlockTask, Executor, OnProgress, TaskProgress


class LocalExecutor(Executor):
    blockwise = False

    def __init__(self, config: ExecutorConfig) -> None:
        super().__init__(config)
        if config.workers != 1 or config.worker_command:
            raise FfnopsError(
                "executor=local runs in this process: executor.workers must be 1 and "
                "executor.worker_command empty (use executor=daisy for worker processes)"
            )

    def run(self, task: BlockTask, on_progress: OnProgress) -> TaskProgress:
        blocks = list(task.layout.blocks())
        todo = [b for b in blocks if not task.is_done(b)]
        skipped = len(blocks) - len(todo)
        progress = TaskProgress(len(blocks), skipped, skipped)
        on_progress(progress)
        for start in range(0, len(todo), task.batch_size):
            batch = todo[start : start + task.batch_size]
            task.process(batch)
            progress = TaskProgress(len(blocks), progress.done + len(batch), skipped)
            on_progress(progress)
        return progress


@hookimpl
def ffnops_executor_names() -> list[str]:
    return ["local"]


@hookimpl
def ffnops_make_executor(name: str, config: ExecutorConfig) -> Executor | None:
    return LocalExecutor(config) if name == "local" else None
