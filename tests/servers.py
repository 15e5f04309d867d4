"""Real servers for the team-mode tests: a throw-away PostgreSQL cluster and ``ffnops server``.

PostgreSQL comes from the machine (Debian's ``postgresql`` package: ``initdb``/``pg_ctl``;
``.ci/run`` installs it and sets ``FFNOPS_TEST_POSTGRES=require``). Where it is not installed
and not required, the tracking server runs on a sqlite store instead, so the team tests still
run a real ``mlflow server`` with basic-auth; the PostgreSQL-only test then says why it skips.
Every process started here is stopped when its context ends.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from commands import free_port

ADMIN = ("admin", "admin-password-for-tests")
SECRET_KEY = "test-secret-key-not-for-production"
REQUIRE_ENV = "FFNOPS_TEST_POSTGRES"  # "require": fail, rather than fall back to sqlite


def postgres_bin() -> Path | None:
    """The folder of ``pg_ctl`` (Debian keeps it out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster on a free loopback port with databases ``mlflow`` and
    ``mlflow_auth``; yields ``postgresql://postgres@127.0.0.1:PORT``. Its folder is a fresh
    one in the system's temporary directory (the ``postgres`` user must reach it), removed
    at the end."""
    binaries = postgres_bin()
    assert binaries is not None, "PostgreSQL is not installed (apt-get install postgresql)"
    folder = Path(tempfile.mkdtemp(prefix="ffnops-postgres-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()
    subprocess.run(
        _as_owner([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
    subprocess.run(_as_owner([*pg_ctl, "-o", options, "-w", "start"]), check=True)
    try:
        for name in ("mlflow", "mlflow_auth"):
            subprocess.run(
                _as_owner([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), name]),
                check=True,
                capture_output=True,
            )
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([*pg_ctl, "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class TeamServer:
    """A running ``ffnops server``: its URL, its stores and where it keeps artifacts."""

    url: str
    store_uri: str
    artifacts: Path
    log: Path

    def env(self, user: str | None, password: str | None) -> dict[str, str]:
        """This process's environment for a client signed in as ``user`` (None: anonymous)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        if user is not None:
            env["MLFLOW_TRACKING_USERNAME"] = user
            env["MLFLOW_TRACKING_PASSWORD"] = password or ""
        env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"  # a refusal is final; do not back off
        return env


@contextmanager
def team_server(folder: Path, store_uri: str, auth_uri: str) -> Iterator[TeamServer]:
    """``ffnops server`` on a free port, as docs/team.md starts it; stopped at the end."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": SECRET_KEY,
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
    }
    log = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "ffnops",
        "server",
        f"backend_store_uri={store_uri}",
        f"auth_database_uri={auth_uri}",
        f"artifacts_destination={folder / 'artifacts'}",
        f"state_dir={folder / 'state'}",
        f"port={port}",
        "workers=1",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-3000:]
                    raise AssertionError(f"ffnops server did not start:\n{tail}") from None
                time.sleep(1)
        yield TeamServer(url, store_uri, folder / "artifacts", log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
