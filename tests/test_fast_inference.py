"""The fast modes of inference: a compiled network computes what the eager one does, and the
GPU benchmark script (benchmarks/gpu.py) runs its modes end to end on a CPU with a tiny network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ffnops.sample_data.synthetic import synthetic_volume

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


COMPILED_AGAINST_EAGER = """
import numpy as np, torch
from ffnops.ffn.model import ConvStack3DFFNModel
from ffnops.ffn.predictor import TorchPredictor
torch.manual_seed(0)
model = ConvStack3DFFNModel((9, 9, 9), (2, 2, 2), depth=2, features=8)
inputs = np.random.default_rng(0).normal(size=(2, 2, 9, 9, 9)).astype(np.float32)
eager = TorchPredictor(model, "cpu", "fp32")(inputs)
compiled = TorchPredictor(model, "cpu", "fp32", compile=True)
assert compiled.network is not compiled.model  # really compiled, not the eager module
np.testing.assert_allclose(compiled(inputs), eager, atol=1e-4)
np.testing.assert_allclose(compiled(inputs[:1]), eager[:1], atol=1e-4)  # another batch size
assert np.abs(eager - inputs[:, 1]).max() > 1e-3  # the network changed the logits
print("same logits")
"""


def test_a_compiled_network_gives_the_eager_networks_logits() -> None:
    # In a fresh interpreter, as `ffnops infer` runs it: inductor's C++ build imports
    # setuptools, which refuses a process where another test already imported the stdlib's
    # distutils.
    done = subprocess.run(
        [sys.executable, "-c", COMPILED_AGAINST_EAGER], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "same logits" in done.stdout, done.stderr[-3000:]


def test_the_gpu_benchmark_runs_its_modes_on_a_cpu_with_a_tiny_network(tmp_path: Path) -> None:
    _, labels = synthetic_volume((40, 40, 40), objects=8, seed=3)
    with h5py.File(tmp_path / "tiny.h5", "w") as f:
        f["labels"] = labels
    np.savez(tmp_path / "reference.npz", segmentation=labels)
    done = subprocess.run(
        [
            sys.executable,
            "gpu.py",
            "--device=cpu",
            "--tiny",
            f"--image=h5://{tmp_path}/tiny.h5#labels",
            f"--reference={tmp_path}/reference.npz",
            "--modes=fp32,bf16,fp32-batch4",
            "--block=20",
        ],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    for mode in ("fp32", "bf16", "fp32-batch4"):
        seconds, calls, _, steps, _, _, arand, *_, objects = rows[mode][1:]
        assert float(seconds) > 0 and int(calls) > 0 and int(steps) >= int(calls)
        assert float(arand) < 0.05, rows[mode]  # the oracle finds the reference's objects
        assert int(objects) >= 6
    assert int(rows["fp32-batch4"][2]) < int(rows["fp32-batch4"][4])  # 4 FOVs share a call
    assert "whole run" in done.stdout


@pytest.mark.parametrize("mode", ["fp32-batch0x", "int8"])
def test_the_gpu_benchmark_refuses_an_unknown_mode(mode: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "gpu.py", "--device=cpu", f"--modes={mode}"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"--modes: {mode!r} is not fp32, bf16 or <precision>-batch<N>" in done.stderr
