"""The ``daisy`` executor: blocks in worker processes scheduled by daisy (funkelab's block
scheduler, ``daisy.v2``). Everything daisy-specific in ffnops is in this module.

Each task becomes a ``daisy.Task`` over the box with one block's write box as its read and write
ROI (ffnops reads each block's context itself) and ``read_write_conflict=False``: blocks of one
task are independent. daisy starts ``executor.workers`` worker processes; each opens
``batch_size`` connections to the scheduler and holds that many blocks at once, so their
canvases share network calls. A worker that dies mid-block loses it to another worker
(``executor.max_retries`` times). Finished blocks are found by the task's own done check
(its result file), so a killed job resumes where it was.

On a cluster, ``executor.worker_command`` (e.g. ``[srun, --gres=gpu:1, -p, gpu]`` or
``[bsub, -K, -q, gpu]``) runs each worker through the scheduler of the cluster: the worker
process started by daisy runs ``WORKER_COMMAND python -m ffnops_plugins.daisy_executor TASK``,
which connects back to the scheduler at ``executor.scheduler_host`` (by default this machine's
name; 127.0.0.1 for workers on this machine) with daisy's ``DAISY_CONTEXT`` from its
environment (``srun``/``bsub`` pass the environment on by default). Before any work, one worker
started the same way must start, reach that address and see the job's folders
(:mod:`ffnops.worker_check`). Each worker logs the blocks it takes, with its node and cluster
job, to the job's ``daisy_logs/``.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from ffnops import hookimpl
from ffnops.blocks import Block
from ffnops.config.schemas import ExecutorConfig
from ffnops.errors import FfnopsError
from ffnops.executor import BlockTask, Executor, OnProgress, TaskProgress
from ffnops.worker_check import bindable, check_worker_start

# Where a worker says which cluster job it is (the job a user would scancel or bkill).
JOB_ID_VARIABLES = ("SLURM_JOB_ID", "LSB_JOBID", "PBS_JOBID", "JOB_ID")


def _daisy() -> Any:
    try:
        import daisy.v2 as daisy
    except ImportError as exc:  # pragma: no cover - daisy is a dependency
        raise FfnopsError(f"executor=daisy needs the daisy package ({exc})") from None
    return daisy


def _roi(box: Any) -> Any:
    from funlib.geometry import Roi

    return Roi(box.start, box.size)


def _blocks_of(task: BlockTask, daisy_blocks: list[Any]) -> list[Block]:
    return [task.layout.block(task.layout.index_at(b.write_roi.offset)) for b in daisy_blocks]


def work(task: BlockTask) -> None:
    """A worker's loop: hold up to ``batch_size`` blocks (one scheduler connection each),
    process them together, release them, until the scheduler has none left."""
    daisy = _daisy()
    clients = [daisy.Client() for _ in range(task.batch_size)]
    while True:
        with ExitStack() as stack:
            held = []
            for client in clients:
                block = stack.enter_context(client.acquire_block())
                if block is None:
                    break
                held.append(block)
            if not held:
                return
            blocks = _blocks_of(task, held)
            print(f"{worker_name()}: {task.name} blocks {[b.index for b in blocks]}", flush=True)
            task.process(blocks)


def worker_name() -> str:
    """This worker as its log names it: node, process and cluster job, if any."""
    jobs = [f"job {os.environ[v]}" for v in JOB_ID_VARIABLES if os.environ.get(v)]
    return ", ".join([f"worker on {socket.gethostname()}", f"pid {os.getpid()}", *jobs[:1]])


def work_through(command: list[str], task_file: Path) -> None:
    """A worker started through the cluster's scheduler (``executor.worker_command``)."""
    run = [*command, sys.executable, "-m", "ffnops_plugins.daisy_executor", str(task_file)]
    status = subprocess.run(run).returncode
    if status != 0:
        # The blocks this worker held go back to the scheduler (executor.max_retries).
        raise FfnopsError(f"the worker started by {command[0]} ended with status {status}")


def scheduler_host(config: ExecutorConfig) -> str:
    """Where workers reach the scheduler: ``executor.scheduler_host``, else this machine's name
    for workers started through ``worker_command`` and 127.0.0.1 for workers started here."""
    if config.scheduler_host:
        return config.scheduler_host
    return socket.gethostname() if config.worker_command else "127.0.0.1"


def is_done(task: BlockTask, daisy_block: Any) -> bool:
    return task.is_done(_blocks_of(task, [daisy_block])[0])


class ProgressObserver:
    """daisy's progress observer protocol, forwarded to ffnops's callback."""

    def __init__(self, task_id: str, on_progress: OnProgress) -> None:
        self.task_id = task_id
        # Not ``self.on_progress``: that is daisy's hook below, which an attribute would hide
        # (daisy then called ffnops's callback with its states and dropped the error).
        self.callback = on_progress
        self.last: TaskProgress | None = None

    def _forward(self, states: dict[str, Any]) -> None:
        state = states.get(self.task_id)
        if state is None:
            return
        progress = TaskProgress(
            state.total_block_count,
            state.completed_count,
            state.skipped_count,
            state.failed_count + state.orphaned_count,
        )
        if progress != self.last:
            self.last = progress
            self.callback(progress)

    on_start = on_progress = on_finish = _forward


class DaisyExecutor(Executor):
    def __init__(self, config: ExecutorConfig) -> None:
        super().__init__(config)
        if config.workers < 1:
            raise FfnopsError(f"executor.workers must be at least 1, got {config.workers}")
        if config.max_retries < 0:
            raise FfnopsError(f"executor.max_retries must be >= 0, got {config.max_retries}")
        if config.block_timeout_s is not None and not config.block_timeout_s > 0:
            raise FfnopsError(
                f"executor.block_timeout_s must be positive seconds or null (no limit), got "
                f"{config.block_timeout_s}"
            )
        if not config.worker_start_timeout_s > 0:
            raise FfnopsError(
                "executor.worker_start_timeout_s must be positive seconds, got "
                f"{config.worker_start_timeout_s}"
            )
        command = list(config.worker_command)
        if command and shutil.which(command[0]) is None:
            raise FfnopsError(
                f"executor.worker_command={command}: {command[0]!r} is not a command on PATH "
                "(the cluster's launcher, e.g. srun or bsub, must be installed on this node)"
            )
        self.host = scheduler_host(config)
        bindable(self.host)

    def check_workers(self, shared: Mapping[str, Path]) -> None:
        """Workers on this machine share its filesystem; a cluster's are checked by starting
        one (:mod:`ffnops.worker_check`)."""
        command: Sequence[str] = self.config.worker_command
        if command:
            found = check_worker_start(
                command, self.host, shared, self.config.worker_start_timeout_s
            )
            print(f"worker check: a worker on {found.node} answered in {found.seconds:.1f} s")

    def run(self, task: BlockTask, on_progress: OnProgress) -> TaskProgress:
        daisy = _daisy()
        from daisy.logging import set_log_basedir

        set_log_basedir(str(task.workdir / "daisy_logs"))
        config = self.config
        if config.worker_command:
            task_file = task.workdir / f"{task.name}.task.pkl"
            with open(task_file, "wb") as f:
                pickle.dump(task, f)
            process = partial(work_through, list(config.worker_command), task_file)
        else:
            process = partial(work, task)
        total = _roi(task.layout.box)
        block = _roi(task.layout.block(0).write)
        with warnings.catch_warnings():
            # daisy suggests its own done markers; ours are the result files themselves.
            warnings.filterwarnings("ignore", message=".*check_function.*")
            daisy_task = daisy.Task(
                task.name,
                total,
                block,
                block,
                process_function=process,
                check_function=partial(is_done, task),
                read_write_conflict=False,
                fit="shrink",
                max_workers=config.workers,
                max_retries=config.max_retries,
                # daisy's default kills a block after 600 s; an FFN block on a CPU takes longer.
                timeout=config.block_timeout_s or float("inf"),
            )
        observer = ProgressObserver(task.name, on_progress)
        logging.getLogger("daisy").setLevel(logging.WARNING)
        states = daisy.run_blockwise(
            daisy_task,
            progress=observer,
            return_states=True,
            summary=False,
            host=self.host,
        )
        state = states[task.name]
        if state.completed_count != state.total_block_count:
            error = (state.last_worker_error or "").strip().splitlines()
            reason = error[-1] if error else state.abandon_reason or "see the worker logs"
            raise FfnopsError(
                f"{task.name}: {state.failed_count + state.orphaned_count} of "
                f"{state.total_block_count} blocks failed after {config.max_retries} retries "
                f"({reason}); worker logs: {task.workdir / 'daisy_logs'}. Run the same command "
                "again to redo only the unfinished blocks"
            )
        return TaskProgress(state.total_block_count, state.completed_count, state.skipped_count)


@hookimpl
def ffnops_executor_names() -> list[str]:
    return ["daisy"]


@hookimpl
def ffnops_make_executor(name: str, config: ExecutorConfig) -> Executor | None:
    return DaisyExecutor(config) if name == "daisy" else None


if __name__ == "__main__":  # a worker at the far end of executor.worker_command
    with open(sys.argv[1], "rb") as f:
        work(pickle.load(f))
