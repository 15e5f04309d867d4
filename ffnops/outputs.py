"""An output checked and claimed before the work that fills it (check, then work, then publish).

:func:`claim_output` runs before a command does its work and holds for as long as it does:

1. the output's folder (or the nearest one that exists) is a writable folder;
2. the disk there has room for the output: refused below a tenth of its uncompressed size
   (segmentations compress more than tenfold in every writable format here), warned below all of
   it;
3. no other ffnops process writes the same output (an :class:`~ffnops.locks.OutputLock`);
4. the output does not exist in any form (a volume, or any file or folder of that name), unless
   ``overwrite=true``. A new dataset in an existing HDF5 file is not an existing output.

Outputs on remote stores (``gs://``, ``s3://``, ``http://``) have no local path: given the
output's ``spec``, the plugin that writes the URI is asked to create it and the creation is
aborted at once, so what it refuses (a store it cannot write, an existing output) is refused
before the work.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ffnops.atomic import nearest_existing
from ffnops.errors import FfnopsError, MissingDatasetError, VolumeError, VolumeExistsError
from ffnops.locks import OutputLock
from ffnops.uri import VolumeURI
from ffnops.volume import VolumeSpec
from ffnops.volumes import create_volume, open_volume

# Segmentations compress far more than this in zarr/n5 (blosc, gzip), precomputed
# (compressed_segmentation) and HDF5 (gzip): the least room an output may be started with.
MIN_ROOM_FRACTION = 0.1


@dataclass(frozen=True)
class OutputClaim:
    """An output a command may write: its URI and the local file or folder it becomes."""

    uri: str
    path: Path | None  # None: a remote store


def local_output_path(uri: str) -> Path | None:
    """The local file or folder an output URI names, None for a remote one.

    ``zarr:///d/seg.zarr``, ``precomputed://file:///d/seg``, ``h5:///d/f.h5#key`` (the file),
    Google's ``/d/f.h5:key`` and ``npz:///d/out`` are local; ``precomputed://gs://b/seg`` is not.
    """
    parsed = VolumeURI.parse(uri)
    path = parsed.path if parsed.scheme else uri
    if not parsed.scheme and ":" in Path(path).name:
        path = str(Path(path).parent / Path(path).name.split(":", 1)[0])  # file.h5:key
    if path.startswith("file://"):
        path = path.removeprefix("file://")
    if "://" in path or not path:
        return None
    return Path(path).expanduser().absolute()


def check_location(uri: str, path: Path, nbytes: int) -> None:
    """(1) and (2) above: the folder is writable and has room for ``nbytes`` uncompressed."""
    folder = nearest_existing(path.parent)
    if not folder.is_dir():
        raise FfnopsError(f"output {uri}: {folder} is a file, and the output needs a folder there")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FfnopsError(
            f"output {uri}: cannot write in {folder} (read-only or no permission); choose "
            "another output"
        )
    free = shutil.disk_usage(folder).free
    if free < MIN_ROOM_FRACTION * nbytes:
        raise FfnopsError(
            f"output {uri}: {free / 1e6:.1f} MB free on the disk of {folder}, and the output is "
            f"{nbytes / 1e6:.1f} MB uncompressed; free space or choose another disk"
        )
    if free < nbytes:
        print(
            f"warning: output {uri}: {free / 1e6:.1f} MB free on the disk of {folder}, less than "
            f"the output's {nbytes / 1e6:.1f} MB uncompressed; it fits only if it compresses",
            file=sys.stderr,
        )


def refuse_existing_output(uri: str, path: Path | None, overwrite: bool) -> None:
    """(4) above: the output exists neither as a volume nor as any file or folder of its name."""
    if overwrite:
        return
    try:
        open_volume(uri).close()
    except MissingDatasetError:
        return  # a new dataset in an existing file
    except VolumeError:
        if path is not None and (path.exists() or path.is_symlink()):
            kind = "folder" if path.is_dir() else "file"
            raise VolumeExistsError(
                f"output {uri}: {path} exists (a {kind} that is not a volume ffnops reads); "
                "remove it, choose another output, or pass overwrite=true to replace it"
            ) from None
        return
    raise VolumeExistsError(f"output {uri} already exists; pass overwrite=true to replace it")


def refuse_busy_output(uri: str) -> None:
    """(3) above, without taking the lock: a command calls this before its slow checks (a model
    to load, an image to read), so a second identical command is refused in a moment."""
    path = local_output_path(uri)
    if path is not None:
        OutputLock(path, f"output {uri}").check()


@contextmanager
def claim_output(
    uri: str, overwrite: bool, nbytes: int, spec: VolumeSpec | None = None
) -> Iterator[OutputClaim]:
    """Checks ``uri`` as an output of about ``nbytes`` (uncompressed) and holds its lock while
    the caller works; see the module's docstring for what is checked."""
    path = local_output_path(uri)
    if path is None:
        if spec is not None:
            create_volume(uri, spec, overwrite=overwrite).abort()
        yield OutputClaim(uri, None)
        return
    check_location(uri, path, nbytes)
    with OutputLock(path, f"output {uri}"):
        refuse_existing_output(uri, path, overwrite)
        yield OutputClaim(uri, path)
