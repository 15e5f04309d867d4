"""Shared fixtures: small crops of the real FIB-25 sample bundled with ffnops."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from ffnops.sample_data import sample_path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the CPU's cores: torch (and the commands they start, through
    # the environment) use one thread each instead of all cores each, which oversubscribed them.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))

CROP = (slice(10, 42), slice(20, 60), slice(30, 78))  # (32, 40, 48): not a multiple of any chunk


@pytest.fixture(scope="session")
def em_image() -> np.ndarray:
    """A real uint8 EM crop, (z, y, x) = (32, 40, 48)."""
    with h5py.File(sample_path("fib25_crop.h5"), "r") as f:
        return np.asarray(f["image"][CROP])


@pytest.fixture(scope="session")
def em_labels() -> np.ndarray:
    """The neuron labels of the same crop, as uint64 with large ids (as real datasets have)."""
    with h5py.File(sample_path("fib25_crop.h5"), "r") as f:
        labels = np.asarray(f["labels"][CROP]).astype(np.uint64)
    return np.where(labels > 0, labels + np.uint64(2**40), 0).astype(np.uint64)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served read-only over HTTP on 127.0.0.1; yields (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
