"""docker/: what can be checked without a Docker engine (docker/README.md says what was not)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from commands import ffnops

DOCKER = Path(__file__).resolve().parents[1] / "docker"
CI = (DOCKER.parent / ".ci" / "run").read_text()


def test_the_compose_stack_has_its_services_secrets_and_volumes() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "quickstart"}
    server = services["mlflow"]
    assert server["command"][0] == "server"
    assert server["ports"] == ["127.0.0.1:5000:5000"]  # the host's loopback only
    for secret in ("MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{secret}:\?.+\}}", server["environment"][secret])
    assert any(v.endswith(":/srv/mlflow") for v in server["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert set(compose["volumes"]) >= {"postgres-data", "mlflow-artifacts"}
    quickstart = services["quickstart"]
    assert quickstart["command"] == ["quickstart", "tracking=server"]
    assert quickstart["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "mlflow:5000" in next(a for a in server["command"] if a.startswith("allowed_hosts="))
    assert "CREATE DATABASE mlflow_auth" in (DOCKER / "postgres-init.sql").read_text()


def test_the_servers_command_is_a_valid_ffnops_server_config(tmp_path: Path) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    command = compose["services"]["mlflow"]["command"]
    args = [a.replace("${POSTGRES_PASSWORD}", "pw") for a in command]
    proc = ffnops(*args, "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = yaml.safe_load(proc.stdout)
    assert config["backend_store_uri"] == "postgresql://mlflow:pw@postgres:5432/mlflow"
    assert config["host"] == "0.0.0.0" and config["port"] == 5000
    assert "mlflow:5000" in config["allowed_hosts"]


def test_the_images_install_as_ci_does() -> None:
    assert "pip install --quiet torch==2.13.0" in CI and '".[test]"' in CI
    for name, index in (("Dockerfile", "whl/cpu"), ("Dockerfile.cuda", "whl/cu126")):
        text = (DOCKER / name).read_text()
        assert f"pip install torch==2.13.0 --index-url https://download.pytorch.org/{index}" in text
        assert 'pip install ".[server]"' in text and "USER ffnops" in text
        copied = re.findall(r"^COPY (\S+)", text, flags=re.M)
        assert copied == ["pyproject.toml", "ffnops", "conf", "plugins", "pipelines"]
    ignored = (DOCKER.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv", "outputs"} <= set(ignored)
