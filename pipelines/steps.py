"""What every pipeline step shares: a key for its arguments, running the ffnops command, and the
training precision that suits the machine."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Sequence

import torch

from ffnops.errors import FfnopsError
from ffnops.ffn.cpu import cpu_has_fast_bf16

# ``-P``: the folder a pipeline runs in is not put on sys.path, so a source checkout there cannot
# shadow the installed ffnops the pipeline itself runs on.
FFNOPS = (sys.executable, "-P", "-m", "ffnops")


def step_key(args: Sequence[str]) -> str:
    """A short hash of a step's arguments: the same arguments mean the same output."""
    return hashlib.sha1(json.dumps(list(args)).encode()).hexdigest()[:8]


def run_ffnops(step: str, args: Sequence[str], pipeline: str) -> None:
    """``ffnops ARGS`` in a subprocess, its output shown as it comes; a failure names the step."""
    print(f"\n== {step}: ffnops {' '.join(args)}", flush=True)
    proc = subprocess.Popen([*FFNOPS, *args])
    try:
        proc.wait()
    except BaseException:
        # Ctrl-C or SIGTERM of the pipeline: the step gets SIGTERM too and time to clean up
        # (its lock, partial output, run record) before it is killed.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if proc.returncode != 0:
        raise FfnopsError(
            f"step {step} failed (exit {proc.returncode}); fix the cause and run "
            f"`ffnops {pipeline}` again: finished steps are kept"
        )


def training_precision(requested: str) -> str:
    """``auto``: bf16 where it is fast (CUDA, AVX512-BF16 or AMX CPUs), else fp32."""
    if requested != "auto":
        return requested
    fast = torch.cuda.is_available() or cpu_has_fast_bf16()
    return "bf16-mixed" if fast else "32-true"
