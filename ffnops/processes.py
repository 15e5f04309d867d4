"""Process lifetimes: whether a PID is alive, and children that die with their parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def die_with_parent(parent: int | None = None) -> None:
    """Asks Linux to kill this process when its parent dies, however the parent dies (also by
    ``kill -9``, which runs no cleanup): DataLoader workers and DDP ranks call it at start, so
    no orphan keeps a GPU or CPU busy. ``parent``: the PID the parent had, if known (a parent
    that died before the request took effect is then noticed). Elsewhere (macOS) it does
    nothing."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


@contextmanager
def default_sigterm() -> Iterator[None]:
    """SIGTERM's default action (the process ends at once) inside the block, then ffnops's
    handler again. For work whose main thread waits in native code that never returns to Python
    (daisy's scheduler), where a Python handler would run only when the whole job is done; the
    job's files are made for that: the rerun resumes."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
