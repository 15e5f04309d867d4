"""``ffnops server``: a team's MLflow tracking server, started the way labs run one (docs/team.md).

A short recipe: check everything a start needs (the two secrets, the stores, the port), write
the basic-auth app's config file, then become ``mlflow server`` with a database backend store,
artifacts served through the server (clients upload and download over HTTP, never to a path
of their own) and MLflow's ``basic-auth`` app, bound to 127.0.0.1 unless ``host`` says otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ffnops.config.schemas import ServerCommand
from ffnops.errors import FfnopsError

SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # signs the UI's sessions and CSRF tokens
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"  # the admin's password, read at first start
AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
MIN_PASSWORD = 12  # MLflow's auth app refuses a shorter admin password
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def check_secrets(environ: dict[str, str]) -> None:
    if not environ.get(SECRET_KEY_ENV):
        raise FfnopsError(
            f"{SECRET_KEY_ENV} is not set: the server needs a secret key to sign its sessions "
            '(e.g. export it from `python -c "import secrets; print(secrets.token_hex(32))"`)'
        )
    password = environ.get(ADMIN_PASSWORD_ENV, "")
    if len(password) < MIN_PASSWORD:
        raise FfnopsError(
            f"{ADMIN_PASSWORD_ENV} must hold the admin's password, at least {MIN_PASSWORD} "
            f"characters (MLflow's rule); it has {len(password)}"
        )


def check_database(key: str, uri: str) -> None:
    """A database URI MLflow can use, reachable now (a database server that is down fails here)."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in STORE_SCHEMES:
        expected = ", ".join(f"{s}://" for s in STORE_SCHEMES)
        raise FfnopsError(f"{key}={uri!r}: expected a database URI ({expected})")
    if scheme == "sqlite":
        Path(uri[len("sqlite:///") :]).expanduser().absolute().parent.mkdir(
            parents=True, exist_ok=True
        )
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args=_connect_timeout(scheme))
        with engine.connect():
            pass
    except ModuleNotFoundError as exc:
        raise FfnopsError(
            f"{key}: the {scheme} driver is not installed ({exc.name}); "
            '`pip install "ffnops[server]"` installs PostgreSQL\'s'
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise FfnopsError(f"{key}: cannot connect to {_without_password(uri)} ({reason})") from None


def _connect_timeout(scheme: str) -> dict[str, int]:
    return {"connect_timeout": 10} if scheme == "postgresql" else {}


def _without_password(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(uri).render_as_string(hide_password=True)


def check_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = exc.strerror
            raise FfnopsError(f"port={port}: cannot listen on {host}:{port} ({reason})") from None


def auth_config(settings: ServerCommand) -> str:
    """The basic-auth app's config file (no password in it: that comes from the environment)."""
    return (
        "[mlflow]\n"
        f"default_permission = {settings.default_permission}\n"
        f"database_uri = {settings.auth_database_uri}\n"
        f"admin_username = {settings.admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def server_command(settings: ServerCommand) -> list[str]:
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    command = [
        mlflow,
        "server",
        "--backend-store-uri",
        settings.backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        settings.artifacts_destination,
        "--app-name",
        "basic-auth",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
    ]
    if settings.allowed_hosts:
        command += ["--allowed-hosts", ",".join(settings.allowed_hosts)]
    return command


def run(cfg: DictConfig) -> None:
    settings: ServerCommand = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    environ = dict(os.environ)
    check_secrets(environ)
    if settings.default_permission not in PERMISSIONS:
        raise FfnopsError(
            f"default_permission={settings.default_permission!r}: expected one of "
            f"{', '.join(PERMISSIONS)}"
        )
    if settings.workers < 1:
        raise FfnopsError(f"workers={settings.workers}: expected at least 1")
    check_database("backend_store_uri", settings.backend_store_uri)
    check_database("auth_database_uri", settings.auth_database_uri)
    if "://" not in settings.artifacts_destination:
        Path(settings.artifacts_destination).mkdir(parents=True, exist_ok=True)
    check_port(settings.host, settings.port)
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    config_file = state / "basic_auth.ini"
    config_file.write_text(auth_config(settings))
    environ[AUTH_CONFIG_ENV] = str(config_file.absolute())
    command = server_command(settings)
    where = f"http://{settings.host}:{settings.port}"
    print(
        f"ffnops server: {where} (store {_without_password(settings.backend_store_uri)}, "
        f"artifacts {settings.artifacts_destination}, basic-auth users in "
        f"{_without_password(settings.auth_database_uri)}, default permission "
        f"{settings.default_permission})",
        flush=True,
    )
    if settings.dry_run:
        print(" ".join(command))
        return
    os.execve(command[0], command, environ)
