"""What every pipeline step shares: a key for its arguments, and running the ffnops command."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence

from ffnops.errors import FfnopsError

# ``-P``: the folder a pipeline runs in is not put on sys.path, so a source checkout there cannot
# shadow the installed ffnops the pipeline itself runs on.
FFNOPS = (sys.executable, "-P", "-m", "ffnops")


def step_key(args: Sequence[str]) -> str:
    """A short hash of a step's arguments: the same arguments mean the same output."""
    return hashlib.sha1(json.dumps(list(args)).encode()).hexdigest()[:8]


def run_ffnops(step: str, args: Sequence[str], pipeline: str) -> None:
    """``ffnops ARGS`` in a subprocess, its output shown as it comes; a failure names the step."""
    print(f"\n== {step}: ffnops {' '.join(args)}", flush=True)
    proc = subprocess.run([*FFNOPS, *args], check=False)
    if proc.returncode != 0:
        raise FfnopsError(
            f"step {step} failed (exit {proc.returncode}); fix the cause and run "
            f"`ffnops {pipeline}` again: finished steps are kept"
        )
