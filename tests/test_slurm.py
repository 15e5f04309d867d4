"""Blockwise inference on a real SLURM cluster (docs/inference.md, "On a SLURM cluster").

A one-node cluster (munged, slurmctld and slurmd on this machine, started by
``tools/slurm_one_node.sh`` in a folder of the test's own) runs daisy's workers as SLURM jobs
(``executor.worker_command=[srun,...]``) over the bundled FIB-25 sample, flooded by the oracle.
Without SLURM installed (a laptop) the tests skip saying why; ``.ci/run`` installs Debian's
``slurm-wlm`` and ``munge`` and sets ``FFNOPS_TEST_SLURM=require``, which turns the skip into a
failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from commands import free_port
from oracle import register_oracle

import ffnops.sample_data
from ffnops.volumes import open_volume

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "slurm_one_node.sh"
REQUIRE_ENV = "FFNOPS_TEST_SLURM"  # "require": fail, rather than skip, without SLURM
PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "srun", "squeue", "scancel", "sacct")
PROGRAMS += ("unshare",)  # util-linux: a node without the network or the job's folder
SAMPLE = Path(ffnops.sample_data.__file__).parent / "fib25_crop.h5"
BLOCKS = "executor.block_size=[80,64,64]"  # the sample's 160 x 128 x 128 in 2 x 2 x 2 blocks
TAKEN = re.compile(r"job (\d+): segment blocks \[([\d, ]+)\]")  # a worker's line per batch


def unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"SLURM is not installed (no {', '.join(missing)}; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the one-node SLURM cluster needs root (slurmd starts jobs as their user)"
    if not SCRIPT.exists():
        return f"{SCRIPT.relative_to(ROOT)} is not here (tests run without the source tree)"
    return None


@dataclass(frozen=True)
class Cluster:
    """A running one-node cluster: the environment its commands need (``SLURM_CONF``)."""

    env: dict[str, str]

    def slurm(self, *args: str) -> str:
        proc = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def jobs(self, name: str) -> dict[str, str]:
        """The finished jobs called ``name``: job id -> state (``sacct``, from the cluster's
        job-completion file)."""
        out = self.slurm("sacct", "-c", "-n", "-P", "-o", "jobid,jobname,state", "-S", "2000-01-01")
        rows = [line.split("|") for line in out.splitlines() if line.strip()]
        return {job: state for job, job_name, state in rows if job_name == name}

    def queue(self) -> dict[str, str]:
        """The jobs pending or running: job id -> state."""
        out = self.slurm("squeue", "-h", "-o", "%i|%T")
        return dict(line.split("|") for line in out.splitlines() if line.strip())


def port_pair() -> int:
    """A free port whose successor is free too (slurmctld's and slurmd's)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = unavailable()
    if reason:
        if os.environ.get(REQUIRE_ENV) == "require":
            pytest.fail(f"{REQUIRE_ENV}=require, but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    start = [str(SCRIPT), "start", str(folder), str(port_pair())]
    started = subprocess.run(start, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield Cluster({**os.environ, "SLURM_CONF": str(folder / "slurm.conf")})
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder)], timeout=120)


@dataclass(frozen=True)
class Sample:
    """The workspace: a store holding models:/oracle@truth, and where outputs go."""

    path: Path
    uri: str

    def args(self, output: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ffnops",
            "infer",
            "model=models:/oracle@truth",
            f"image=h5://{SAMPLE}#labels",
            f"output=zarr://{self.path}/{output}",
            f"tracking.tracking_uri={self.uri}",
            "inference.seed_policy=grid",
            "inference.min_segment_size=100",
            "viewer.publish=false",
            "executor=daisy",
            "executor.workers=2",
            BLOCKS,
            *extra,
        ]

    def read(self, output: str) -> np.ndarray:
        with open_volume(f"zarr://{self.path}/{output}") as volume:
            return np.asarray(volume.read())


def on_slurm(name: str) -> list[str]:
    """The keys that start each worker as a one-task SLURM job called ``name``."""
    return [
        f"executor.worker_command=[srun,--ntasks=1,--job-name={name}]",
        f"executor.scheduler_host={socket.gethostname()}",
    ]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    path = tmp_path_factory.mktemp("slurm-sample")
    return Sample(path, register_oracle(path))


@pytest.fixture(scope="module")
def local(sample: Sample) -> np.ndarray:
    """The same job on daisy workers started on this machine."""
    proc = subprocess.run(
        sample.args("local.zarr"), cwd=sample.path, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sample.read("local.zarr")


def taken(work: Path) -> list[tuple[str, int]]:
    """(cluster job, block) for every batch a worker took, from the job's worker logs."""
    found = []
    for log in sorted(work.glob("blockwise/*/daisy_logs/segment/*.out")):
        for job, blocks in TAKEN.findall(log.read_text(errors="replace")):
            found += [(job, int(b)) for b in blocks.split(", ")]
    return found


def test_workers_on_slurm_give_the_result_of_local_workers(
    cluster: Cluster, sample: Sample, local: np.ndarray
) -> None:
    work = sample.path / "work-slurm"
    proc = subprocess.run(
        sample.args("slurm.zarr", *on_slurm("ffw-same"), f"paths.output_dir={work}"),
        cwd=sample.path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"worker check: a worker on {socket.gethostname()} answered" in proc.stdout
    result = sample.read("slurm.zarr")
    assert len(np.unique(result)) > 10
    np.testing.assert_array_equal(result, local)
    jobs = cluster.jobs("ffw-same")
    assert len(jobs) >= 3, jobs  # the worker check's job and the two workers'
    assert set(jobs.values()) == {"COMPLETED"}, jobs
    assert cluster.queue() == {}


def test_a_worker_job_cancelled_mid_block_is_retried_and_the_result_is_identical(
    cluster: Cluster, sample: Sample, local: np.ndarray
) -> None:
    work = sample.path / "work-cancel"
    log = (sample.path / "cancel.log").open("w")
    process = subprocess.Popen(
        sample.args("cancelled.zarr", *on_slurm("ffw-cancel"), f"paths.output_dir={work}"),
        cwd=sample.path,
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cancelled: tuple[str, int] | None = None
    seen: set[tuple[str, int]] = set()  # the job's folder, logs too, goes once it is published
    try:
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            seen.update(taken(work))
            for job, block in sorted(seen) if cancelled is None else []:
                done = list(work.glob(f"blockwise/*/blocks/{block}.npz"))
                if not done and cluster.queue().get(job) == "RUNNING":
                    cluster.slurm("scancel", job)
                    cancelled = (job, block)
                    break
            time.sleep(0.1)
        assert process.wait(60) == 0, (sample.path / "cancel.log").read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert cancelled is not None, "no worker job was seen mid-block"
    job, block = cancelled
    retried = [j for j, b in seen if b == block and j != job]
    assert retried, f"block {block} was not taken again after job {job} was cancelled"
    np.testing.assert_array_equal(sample.read("cancelled.zarr"), local)
    states = cluster.jobs("ffw-cancel")
    assert states[job].startswith("CANCELLED"), states
    assert cluster.queue() == {}


def refused(cluster: Cluster, sample: Sample, name: str, *extra: str) -> str:
    """Runs a job that must be refused before any work; returns its one line of error after
    checking that nothing was written and nothing is left queued or running."""
    before = set(sample.path.rglob("*"))
    proc = subprocess.run(
        sample.args(f"{name}.zarr", *extra, f"paths.output_dir={sample.path}/work-{name}"),
        cwd=sample.path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert set(sample.path.rglob("*")) == before
    assert cluster.queue() == {}
    return lines[0]


def test_a_scheduler_address_the_workers_cannot_reach_is_one_line(
    cluster: Cluster, sample: Sample
) -> None:
    # A worker in a network namespace of its own: no route back to this machine.
    command = "executor.worker_command=[srun,--ntasks=1,--job-name=ffw-net,unshare,--net]"
    line = refused(cluster, sample, "no-route", command, on_slurm("x")[1])
    assert f"executor.scheduler_host={socket.gethostname()}: a worker on node" in line
    assert "cannot reach" in line
    assert set(cluster.jobs("ffw-net").values()) == {"FAILED"}


def test_a_cluster_that_starts_no_worker_times_out_on_one_line_and_cancels_it(
    cluster: Cluster, sample: Sample
) -> None:
    never = "executor.worker_command=[srun,--ntasks=1,--job-name=ffw-never,--begin=now+3600]"
    line = refused(cluster, sample, "never", never, "executor.worker_start_timeout_s=3")
    assert line.endswith(
        "executor.worker_start_timeout_s=3: no worker started within 3 s of `srun --ntasks=1 "
        "--job-name=ffw-never --begin=now+3600 ...` (a full queue or a partition that is "
        "down?); the check was cancelled and nothing was written. Raise the limit to wait longer"
    )
    states = cluster.jobs("ffw-never")
    assert len(states) == 1 and next(iter(states.values())).startswith("CANCELLED"), states


def test_an_output_the_workers_do_not_see_is_one_line(cluster: Cluster, sample: Sample) -> None:
    # The worker's node mounts an empty folder over the output's: not the same filesystem.
    hidden = sample.path / "not-shared"
    hidden.mkdir(exist_ok=True)
    node = sample.path / "node-without-the-folder.sh"
    node.write_text(
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c "
        f'\'mount -t tmpfs none {hidden} && exec "$@"\' sh "$@"\n'
    )
    node.chmod(0o755)
    command = f"executor.worker_command=[srun,--ntasks=1,--job-name=ffw-hidden,{node}]"
    line = refused(cluster, sample, "not-shared/out", command, on_slurm("x")[1])
    assert f"output: {hidden} is not on a filesystem the workers share" in line
    assert set(cluster.jobs("ffw-hidden").values()) == {"COMPLETED"}
