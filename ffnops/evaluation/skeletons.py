"""Ground-truth skeletons: made from a dense ground truth by kimimaro, or read from SWC files.

Positions are in nm, in (z, y, x), in the volume's physical frame: voxel ``i`` of a volume with
offset ``o`` (voxels) and voxel size ``s`` (nm) is at ``(i + o) * s``, so a skeleton and any
segmentation of the same space meet whatever box either was read at. SWC files (one neuron per
file, the common exchange format) keep ``x y z`` in nm in that same frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kimimaro
import numpy as np
import numpy.typing as npt
import osteoid

from ffnops.errors import FfnopsError


@dataclass(frozen=True)
class Skeletons:
    """Skeleton graphs of several objects: node ``i`` at ``positions[i]`` (nm, z y x) belongs to
    object ``objects[i]``; ``edges`` join nodes of one object."""

    positions: npt.NDArray[np.float64]  # (n, 3)
    edges: npt.NDArray[np.int64]  # (m, 2)
    objects: npt.NDArray[np.int64]  # (n,)

    def __post_init__(self) -> None:
        if (
            len(self.edges)
            and (self.objects[self.edges[:, 0]] != self.objects[self.edges[:, 1]]).any()
        ):
            raise ValueError("a skeleton edge joins nodes of two objects")

    @property
    def edge_lengths(self) -> npt.NDArray[np.float64]:
        """The length of each edge in nm."""
        u, v = self.positions[self.edges[:, 0]], self.positions[self.edges[:, 1]]
        lengths: npt.NDArray[np.float64] = np.linalg.norm(u - v, axis=1)
        return lengths

    def lengths(self) -> dict[int, float]:
        """Each object's cable length in nm."""
        objects = self.objects[self.edges[:, 0]]
        ids, where = np.unique(objects, return_inverse=True)
        total = np.bincount(where, weights=self.edge_lengths, minlength=len(ids))
        return {int(i): float(t) for i, t in zip(ids, total, strict=True)}

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in np.unique(self.objects)]

    @staticmethod
    def join(parts: Sequence[Skeletons]) -> Skeletons:
        offsets = np.cumsum([0, *(len(p.positions) for p in parts)])
        return Skeletons(
            np.concatenate([p.positions for p in parts] or [np.zeros((0, 3))]),
            np.concatenate(
                [p.edges + o for p, o in zip(parts, offsets, strict=False)]
                or [np.zeros((0, 2), np.int64)]
            ).astype(np.int64),
            np.concatenate([p.objects for p in parts] or [np.zeros(0, np.int64)]).astype(np.int64),
        )


def skeletonize(
    labels: npt.NDArray[np.integer],
    voxel_size: Sequence[float],
    origin_voxels: Sequence[int],
    dust_voxels: int = 1000,
    progress: bool = False,
) -> Skeletons:
    """kimimaro's TEASAR skeletons of every object of ``labels`` (0 is background) with at least
    ``dust_voxels`` voxels; ``labels[0, 0, 0]`` is voxel ``origin_voxels`` of the volume."""
    found = kimimaro.skeletonize(
        np.ascontiguousarray(labels),
        anisotropy=tuple(float(v) for v in voxel_size),
        dust_threshold=dust_voxels,
        progress=progress,
        parallel=1,
        fix_branching=True,
        fix_borders=True,
    )
    shift = np.asarray(origin_voxels, np.float64) * np.asarray(voxel_size, np.float64)
    parts = [
        Skeletons(
            np.asarray(skeleton.vertices, np.float64) + shift,
            np.asarray(skeleton.edges, np.int64).reshape(-1, 2),
            np.full(len(skeleton.vertices), int(label), np.int64),
        )
        for label, skeleton in sorted(found.items())
    ]
    return Skeletons.join(parts)


def swc_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.swc`` files of a folder, in name order."""
    if not path.exists():
        raise FfnopsError(f"skeletons={path}: no such file or folder")
    files = sorted(path.glob("*.swc")) if path.is_dir() else [path]
    if not files:
        raise FfnopsError(f"skeletons={path}: a folder with no .swc files")
    return files


def read_swc(path: Path) -> Skeletons:
    """SWC skeletons (``x y z`` in nm), one object per file: the file's stem if it is a number
    (a ground-truth id), else its place in name order from 1."""
    parts = []
    for number, file in enumerate(swc_files(path), start=1):
        try:
            skeleton = osteoid.Skeleton.from_swc(file.read_text())
        except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
            raise FfnopsError(
                f"skeletons={file}: not an SWC file (lines of 'id type x y z radius parent', "
                f"parents listed before use; {type(exc).__name__}: {exc})"
            ) from None
        except OSError as exc:
            raise FfnopsError(f"skeletons={file}: cannot be read ({exc.strerror})") from None
        if len(skeleton.vertices) == 0:
            raise FfnopsError(f"skeletons={file}: no nodes")
        positions = np.asarray(skeleton.vertices, np.float64)[:, ::-1]  # x y z -> z y x
        if not np.isfinite(positions).all():
            raise FfnopsError(f"skeletons={file}: a node position is not a finite number")
        object_id = int(file.stem) if file.stem.isdigit() else number
        parts.append(
            Skeletons(
                np.ascontiguousarray(positions),
                np.asarray(skeleton.edges, np.int64).reshape(-1, 2),
                np.full(len(positions), object_id, np.int64),
            )
        )
    return Skeletons.join(parts)


def write_swc(skeletons: Skeletons, folder: Path) -> list[Path]:
    """One ``<object id>.swc`` per object (``x y z`` in nm), readable by :func:`read_swc`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for object_id in skeletons.ids:
        nodes = np.flatnonzero(skeletons.objects == object_id)
        index = {int(n): i for i, n in enumerate(nodes)}
        mine = skeletons.edges[np.isin(skeletons.edges[:, 0], nodes)]
        skeleton = osteoid.Skeleton(
            skeletons.positions[nodes][:, ::-1],
            np.array([[index[int(u)], index[int(v)]] for u, v in mine], np.int64).reshape(-1, 2),
        )
        path = folder / f"{object_id}.swc"
        path.write_text(skeleton.to_swc())
        written.append(path)
    return written
