"""Running ``ffnops`` as a user does, in a subprocess, for the tests of its commands."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def ffnops(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m ffnops ARGS`` in ``cwd`` (with ``env``, else this process's environment),
    its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "ffnops", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
