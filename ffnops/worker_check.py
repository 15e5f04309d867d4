"""Before a cluster job does any work: one worker, started exactly as the job will start its
workers, must start, reach this process and see the job's folders (docs/inference.md, "On a
SLURM cluster").

:func:`check_worker_start` listens on the scheduler's address, writes a marker file into each
folder the workers must share, and runs ``WORKER_COMMAND python -m ffnops.worker_check
HOST:PORT TOKEN MARKER...``. The worker reads the markers and connects back with what it found.
Whatever goes wrong is one line naming the key to change, and nothing stays behind: the markers
are removed and the worker's process group is ended (``srun`` cancels its job on SIGTERM, a
pending one too).

- the address is not one of this machine's: ``executor.scheduler_host``;
- the command fails before the worker answers (not found on a node, a bad option, a node
  that cannot run this Python): ``executor.worker_command``, with the command's last line;
- no worker starts within ``executor.worker_start_timeout_s`` (a full queue, a partition that is
  down): that key;
- the worker started but cannot connect to the address: ``executor.scheduler_host``;
- the worker does not see a marker: the key of that folder (``paths.output_dir``, ``output``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ffnops.errors import FfnopsError

MARKER_PREFIX = ".ffnops-worker-check-"
UNREACHABLE = 3  # the worker's exit status when it cannot connect back
CONNECT_TIMEOUT_S = 20.0
STOP_WAIT_S = 15.0


@dataclass(frozen=True)
class WorkerCheck:
    """The answer of the worker that was started: its node's name and how long it took to
    start and answer (seconds, queueing included)."""

    node: str
    seconds: float


def bindable(host: str) -> None:
    """Raises unless ``host`` is an address this machine can listen on."""
    try:
        socket.create_server((host, 0)).close()
    except OSError as exc:
        raise FfnopsError(
            f"executor.scheduler_host={host}: not an address of this machine "
            f"({exc.strerror or exc}); give this node's name or address, the one the workers "
            "reach it at"
        ) from None


def check_worker_start(
    command: Sequence[str],
    host: str,
    shared: Mapping[str, Path],
    timeout_s: float,
) -> WorkerCheck:
    """Starts one worker through ``command`` and checks it as the module's docstring says.
    ``shared`` maps the key a user changes to the folder the workers must see."""
    token = secrets.token_hex(8)
    try:
        server = socket.create_server((host, 0))
    except OSError as exc:
        bindable(host)  # the same error, worded once
        raise FfnopsError(f"executor.scheduler_host={host}: {exc}") from None
    with ExitStack() as cleanup:
        cleanup.callback(server.close)
        markers: dict[str, Path] = {}
        for i, (key, folder) in enumerate(shared.items()):
            marker = folder / f"{MARKER_PREFIX}{token}-{i}"
            try:
                marker.write_text(token)
            except OSError as exc:
                raise FfnopsError(
                    f"{key}: cannot write in {folder} ({exc.strerror or exc}); choose a folder "
                    "this machine and the workers can write"
                ) from None
            cleanup.callback(marker.unlink, missing_ok=True)
            markers[key] = marker
        port = server.getsockname()[1]
        argv = [
            *command,
            sys.executable,
            "-m",
            "ffnops.worker_check",
            f"{host}:{port}",
            token,
            *map(str, markers.values()),
        ]
        output = cleanup.enter_context(tempfile.TemporaryFile())
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its whole group is ended if it must be stopped
            )
        except OSError as exc:
            raise FfnopsError(
                f"executor.worker_command={list(command)}: cannot run it ({exc.strerror or exc})"
            ) from None
        cleanup.callback(stop, process)
        server.settimeout(0.2)
        while True:
            try:
                connection, _ = server.accept()
                break
            except TimeoutError:
                pass
            if process.poll() is not None:
                raise FfnopsError(failure(command, host, process.returncode, output)) from None
            if time.monotonic() - started > timeout_s:
                raise FfnopsError(
                    f"executor.worker_start_timeout_s={timeout_s:g}: no worker started within "
                    f"{timeout_s:g} s of `{' '.join(command)} ...` (a full queue or a partition "
                    "that is down?); the check was cancelled and nothing was written. Raise the "
                    "limit to wait longer"
                )
        with connection:
            connection.settimeout(CONNECT_TIMEOUT_S)
            reply = json.loads(connection.makefile().readline() or "{}")
        seconds = time.monotonic() - started
        # The worker exits once it has answered (its job ends as completed); else stop() ends it.
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_WAIT_S)
        node = str(reply.get("node", "?"))
        missing = set(reply.get("missing", []))
        for key, marker in markers.items():
            if str(marker) in missing:
                raise FfnopsError(
                    f"{key}: {marker.parent} is not on a filesystem the workers share (a worker "
                    f"on node {node} does not see the file {marker.name} written there); choose "
                    "a folder every node mounts at the same path"
                )
        return WorkerCheck(node, seconds)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises


def failure(command: Sequence[str], host: str, status: int, output: IO[bytes]) -> str:
    """The line for a worker command that ended before its worker answered."""
    output.seek(0)
    lines = [ln.strip() for ln in output.read().decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    unreachable = [ln for ln in lines if ln.startswith("ffnops worker check")]
    if unreachable:
        return (
            f"executor.scheduler_host={host}: {unreachable[-1].split(': ', 1)[-1]}; give this "
            "node's name or an address of it that the cluster's nodes reach"
        )
    said = f": {lines[-1]}" if lines else ""
    return (
        f"executor.worker_command={list(command)}: the worker it started exited with status "
        f"{status} before it answered{said}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ends the worker command's process group: SIGTERM (``srun`` cancels its job, pending or
    running), then SIGKILL after STOP_WAIT_S."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, STOP_WAIT_S)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def answer(address: str, token: str, markers: Sequence[str]) -> int:
    """The worker's side: which markers it does not see, sent back to ``address``."""
    node = socket.gethostname()
    missing = [m for m in markers if not _holds(Path(m), token)]
    host, _, port = address.rpartition(":")
    try:
        connection = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        print(
            f"ffnops worker check on {node}: a worker on node {node} cannot reach "
            f"{address} ({exc.strerror or exc})",
            file=sys.stderr,
        )
        return UNREACHABLE
    with connection:
        connection.sendall((json.dumps({"node": node, "missing": missing}) + "\n").encode())
    return 0


def _holds(marker: Path, token: str) -> bool:
    try:
        return marker.read_text() == token
    except OSError:
        return False


if __name__ == "__main__":  # the far end of the worker command
    sys.exit(answer(sys.argv[1], sys.argv[2], sys.argv[3:]))
