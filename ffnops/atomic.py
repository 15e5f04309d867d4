"""Write-then-rename for outputs on local disk: a reader sees the old output or the new, never half.

Plugins write a new file or directory at :func:`partial_path` and call :func:`publish` when it is
complete. The partial name is fixed (not random) so an interrupted job can find its own leftovers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ffnops.errors import VolumeExistsError

PARTIAL_SUFFIX = ".partial"


def partial_path(final: str | os.PathLike[str]) -> Path:
    """The hidden sibling a new output is written to: ``dir/.name.partial``."""
    final = Path(final)
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def remove_path(path: str | os.PathLike[str]) -> None:
    """Deletes a file or directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` or its closest ancestor that exists (where a new output's folders would start)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def refuse_existing(final: str | os.PathLike[str], uri: str, overwrite: bool) -> None:
    """Raises unless ``final`` is free or may be overwritten."""
    if Path(final).exists() and not overwrite:
        raise VolumeExistsError(f"{uri}: {final} already exists; pass overwrite=true to replace it")


def fresh_partial(final: str | os.PathLike[str]) -> Path:
    """A clean partial path for ``final`` (leftovers of an earlier, killed write removed)."""
    tmp = partial_path(final)
    remove_path(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


def publish(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Moves a completed partial output to its final name, replacing what was there."""
    final = Path(final)
    if final.is_dir() and not final.is_symlink():
        # A directory cannot be replaced in one rename: move the old one aside first, so the final
        # name is never empty for longer than two renames.
        old = final.with_name(f".{final.name}.old")
        remove_path(old)
        final.rename(old)
        os.replace(tmp, final)
        remove_path(old)
    else:
        os.replace(tmp, final)


def write_text(final: str | os.PathLike[str], text: str) -> None:
    """Writes a small text file whole or not at all."""
    tmp = fresh_partial(final)
    tmp.write_text(text)
    publish(tmp, final)


def write_npz(path: Path, **arrays: Any) -> None:
    """Writes ``path`` (compressed npz) whole or not at all; the temporary name is this
    process's own, so two workers that run the same block (a retried one) never write into one
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
