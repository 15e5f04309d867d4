"""Who owns an output while a command writes it, and where a process keeps temporary copies.

An :class:`OutputLock` is a file ``.<name>.lock`` beside an output, created atomically
(``O_CREAT | O_EXCL``) and holding the owner's PID and host. A second command that would write
the same output finds it and is refused at start, naming the owner; a lock whose process is gone
(killed with ``kill -9``) is stale and is taken over; one left on another machine (a cluster
node) cannot be checked from here, and the error names it so it can be deleted. The lock is
removed on exit, on failure, on Ctrl-C and on SIGTERM (ffnops turns SIGTERM into ``SystemExit``).

:func:`process_folder` gives each process one folder of its own under a cache root for copies it
downloads; folders of this machine's processes that are gone are removed before a new one is made.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ffnops.errors import FfnopsError
from ffnops.processes import pid_alive

LOCK_SUFFIX = ".lock"
# A lock file that names no owner (a writer killed between creating and filling it) is stale
# once it is this old.
UNREADABLE_STALE_S = 10.0


def lock_path(output: str | os.PathLike[str]) -> Path:
    """The lock file of ``output``: ``dir/.name.lock``."""
    output = Path(output)
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


class OutputLock:
    """Exclusive ownership of ``output`` by this process (a context manager)."""

    def __init__(self, output: str | os.PathLike[str], what: str | None = None):
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.what = what or str(self.output)
        self.held = False
        self._made: list[Path] = []  # folders made for the lock, removed with it if left empty

    def _owner(self) -> dict[str, object] | None:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or not ours: treated as held

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _stale(self, owner: dict[str, object]) -> bool:
        pid = owner.get("pid")
        if owner.get("host") == socket.gethostname() and isinstance(pid, int):
            return not pid_alive(pid)
        return not owner and self._age() > UNREADABLE_STALE_S

    def _refusal(self, owner: dict[str, object]) -> FfnopsError:
        return FfnopsError(
            f"{self.what} is being written by another ffnops process (PID {owner.get('pid')} on "
            f"{owner.get('host')}, lock {self.path}); wait for it, or delete the lock if that "
            "process is gone"
        )

    def check(self) -> None:
        """Refuses, as :meth:`acquire` would, if another live process holds the lock; takes
        nothing (a command checks this first, and acquires only when its other checks pass)."""
        owner = self._owner()
        if owner is not None and not self._stale(owner):
            raise self._refusal(owner)

    def acquire(self) -> OutputLock:
        folder = self.path.parent
        while not folder.exists():
            self._made.append(folder)
            folder = folder.parent
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FfnopsError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue  # released meanwhile
                if self._stale(owner):
                    self.path.unlink(missing_ok=True)  # its process is gone
                    continue
                raise self._refusal(owner) from None
            except OSError as exc:
                raise FfnopsError(f"cannot create {self.path}: {exc.strerror}") from None
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as exc:
                self.path.unlink(missing_ok=True)
                raise FfnopsError(f"cannot write {self.path}: {exc.strerror}") from None
            self.held = True
            return self
        raise FfnopsError(f"cannot take {self.path}: other processes keep taking it")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner is not None and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
        for folder in self._made:  # innermost first; stops at one the command filled
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def process_folder(root: str | os.PathLike[str]) -> Iterator[Path]:
    """``root/<host>-<pid>``, this process's folder for temporary copies, removed on exit;
    folders left by this machine's processes that are gone are removed first (another
    machine's, on a shared home folder, are left alone)."""
    root = Path(root).expanduser()
    prefix = f"{socket.gethostname()}-"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for child in root.iterdir():
            pid = child.name.removeprefix(prefix)
            if child.name.startswith(prefix) and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(child, ignore_errors=True)
        folder = root / f"{prefix}{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    except OSError as exc:
        raise FfnopsError(f"cannot use the cache folder {root}: {exc.strerror}") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
