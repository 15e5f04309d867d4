"""Outputs are checked and claimed before the work: location, room, existence, one writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ffnops.errors import FfnopsError
from ffnops.locks import OutputLock, lock_path, process_folder
from ffnops.outputs import claim_output, local_output_path, refuse_busy_output
from ffnops.processes import pid_alive
from ffnops.volumes import write_array


def dead_pid() -> int:
    """The PID of a process that has exited."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pid = int(proc.stdout)
    assert not pid_alive(pid)
    return pid


def refused(uri: str, nbytes: int = 1000, overwrite: bool = False) -> str:
    """The message with which ``claim_output`` refuses ``uri``."""
    with pytest.raises(FfnopsError) as error, claim_output(uri, overwrite, nbytes):
        pass
    return str(error.value)


def test_local_paths_of_output_uris(tmp_path: Path) -> None:
    assert local_output_path(f"zarr://{tmp_path}/s.zarr") == tmp_path / "s.zarr"
    assert local_output_path(f"precomputed://file://{tmp_path}/seg") == tmp_path / "seg"
    assert local_output_path(f"h5://{tmp_path}/f.h5#seg") == tmp_path / "f.h5"
    assert local_output_path(f"{tmp_path}/f.h5:seg") == tmp_path / "f.h5"
    assert local_output_path("precomputed://gs://bucket/seg") is None


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    output = tmp_path / "out" / "seg.zarr"
    with OutputLock(output, "output seg.zarr") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(FfnopsError) as error:
            OutputLock(output, "output seg.zarr").acquire()
        message = str(error.value)
        assert f"output seg.zarr is being written by another ffnops process (PID {os.getpid()}" in (
            message
        )
        # The early check refuses the same way, and takes nothing.
        with pytest.raises(FfnopsError, match="being written by another ffnops process"):
            refuse_busy_output(f"zarr://{output}")
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    # Released: the lock and the folder made for it are gone.
    assert not lock_path(output).exists() and not (tmp_path / "out").exists()
    lock_path(output).parent.mkdir()
    lock_path(output).write_text(json.dumps({"pid": dead_pid(), "host": os.uname().nodename}))
    refuse_busy_output(f"zarr://{output}")  # a stale lock does not refuse, and stays for acquire
    assert lock_path(output).exists()
    with OutputLock(output) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock_path(output).exists()


def test_claim_refuses_what_would_fail_after_the_work(tmp_path: Path) -> None:
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "notes.txt").write_text("not a volume")
    message = refused(f"zarr://{tmp_path}/folder.zarr")
    assert "folder.zarr exists (a folder that is not a volume" in message
    write_array(f"zarr://{tmp_path}/vol.zarr", np.zeros((4, 4, 4), np.uint8))
    assert "already exists; pass overwrite=true" in refused(f"zarr://{tmp_path}/vol.zarr")
    with claim_output(f"zarr://{tmp_path}/vol.zarr", True, 1000) as claim:
        assert claim.path == tmp_path / "vol.zarr" and lock_path(claim.path).exists()
    message = refused(f"zarr://{tmp_path}/big.zarr", nbytes=10**18)
    assert "MB free on the disk of" in message and "MB uncompressed" in message
    (tmp_path / "a-file").write_text("")
    message = refused(f"zarr://{tmp_path}/a-file/seg.zarr")
    assert "a-file is a file, and the output needs a folder there" in message
    # A new dataset in an existing HDF5 file is a new output.
    write_array(f"h5://{tmp_path}/f.h5#raw", np.zeros((4, 4, 4), np.uint8))
    with claim_output(f"h5://{tmp_path}/f.h5#seg", False, 1000):
        pass
    # Nothing was left behind by the refusals: no locks, no folders.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a-file", "f.h5", "folder.zarr", "vol.zarr"]


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write in: a read-only tmpfs for root (who ignores
    permissions), a mode-555 folder for anyone else."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("root, and no read-only tmpfs can be mounted here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_claim_refuses_a_read_only_folder(read_only_folder: Path) -> None:
    message = refused(f"zarr://{read_only_folder}/seg.zarr")
    assert "cannot write in" in message and "(read-only or no permission)" in message


def test_process_folders_are_removed_with_their_process(tmp_path: Path) -> None:
    host = os.uname().nodename
    stale = tmp_path / f"{host}-{dead_pid()}"
    stale.mkdir()
    (stale / "copy").write_text("left by a killed view")
    elsewhere = tmp_path / f"another-machine-{os.getpid()}"  # on a shared home folder
    elsewhere.mkdir()
    with process_folder(tmp_path) as mine:
        assert mine == tmp_path / f"{host}-{os.getpid()}" and not stale.exists()
        (mine / "copy").write_text("a copy")
    assert list(tmp_path.iterdir()) == [elsewhere]
