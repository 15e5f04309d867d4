"""The README's commands work as written: its tour runs, start to end, in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_blocks(section: str) -> list[str]:
    """The ```bash blocks of a README section (up to the next ## heading)."""
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start : end if end > 0 else None], re.S)


def test_setup_is_two_commands_and_ci_runs_the_second() -> None:
    (block,) = bash_blocks("Set-up: two commands")
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "pip install torch==2.13.0 && pip install . && ffnops quickstart",
        'pip install torch==2.13.0 && pip install ".[test]" && pytest',
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "pip install --quiet torch==2.13.0" in ci and 'pip install --quiet ".[test]"' in ci
    assert ci.rstrip().endswith("pytest")


@pytest.mark.slow  # about five minutes: trains, fine-tunes Google's model, infers
def test_tour_runs_as_written(tmp_path: Path) -> None:
    (block,) = bash_blocks("Using it")
    script = []
    for line in block.replace("\\\n", " ").splitlines():  # join continued lines
        if line.startswith("mlflow ui"):
            continue  # a server that runs until stopped
        if line.startswith("ffnops view"):
            line = line.split("#")[0].strip() + " timeout_s=3"  # serves until Ctrl-C otherwise
        script.append(line)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "registered models:/ffn@champion" in proc.stdout
    assert "adapted_rand_error" in proc.stdout  # infer and evaluate printed their scores
    assert "initialised from models:/google_fib25@baseline" in proc.stdout
    assert "offline viewer: http://127.0.0.1:" in proc.stdout
    assert (tmp_path / "image" / "info").exists() and (tmp_path / "b.n5").exists()
