"""``ffnops convert src=URI dst=URI``: copy a volume into another format, one block at a time.

Memory stays bounded by ``block`` (aligned to the destination's chunks); the output appears under
its name only when complete. ``kind=auto`` treats integer volumes of 32 bits or more as
segmentations (stored as unsigned ids) and everything else as images.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from ffnops.config.checks import vec3_setting
from ffnops.errors import VolumeError
from ffnops.outputs import claim_output
from ffnops.volume import BBox, Volume, VolumeSpec
from ffnops.volumes import box_of, create_volume, open_volume


def output_kind(volume: Volume, kind: str) -> str:
    if kind == "auto":
        return (
            "segmentation" if volume.dtype.kind in "iu" and volume.dtype.itemsize >= 4 else "image"
        )
    if kind not in ("image", "segmentation"):
        raise VolumeError(f"kind must be auto, image or segmentation, got {kind!r}")
    return kind


def output_dtype(volume: Volume, kind: str) -> np.dtype:
    """Segmentations are stored unsigned (what neuroglancer and precomputed expect)."""
    if kind == "segmentation" and volume.dtype.kind == "i":
        return np.dtype(f"uint{volume.dtype.itemsize * 8}")
    return volume.dtype


def aligned_block(block: tuple[int, int, int], chunks: tuple[int, int, int]) -> tuple[int, ...]:
    """``block`` rounded up to whole destination chunks, so no chunk is written twice."""
    return tuple(max(c, -(-b // c) * c) for b, c in zip(block, chunks, strict=True))


def _as_dtype(data: np.ndarray, dtype: np.dtype, uri: str) -> np.ndarray:
    if data.dtype == dtype:
        return data
    if data.dtype.kind == "i" and data.size and data.min() < 0:
        raise VolumeError(f"{uri}: negative ids cannot be stored as {dtype.name} segment ids")
    return data.astype(dtype)


def run(cfg: DictConfig) -> None:
    chunks = vec3_setting(cfg.chunks, "chunks") if cfg.chunks else None
    block = vec3_setting(cfg.block, "block")
    with open_volume(cfg.src) as src:
        box = box_of(src, cfg.bbox)
        kind = output_kind(src, cfg.kind)
        dtype = output_dtype(src, kind)
        spec = VolumeSpec(
            shape=box.size,
            dtype=dtype.name,
            voxel_size=src.voxel_size,
            offset=tuple(o + s for o, s in zip(src.offset, box.start, strict=True)),  # type: ignore[arg-type]
            chunks=chunks,
            kind=kind,  # type: ignore[arg-type]
        )
        total = box.num_voxels * dtype.itemsize
        with (
            claim_output(cfg.dst, cfg.overwrite, total, spec),
            create_volume(cfg.dst, spec, overwrite=cfg.overwrite) as dst,
        ):
            step = aligned_block(block, dst.chunks)
            local = BBox.from_shape(box.size)
            with tqdm(total=total, desc="convert", unit="B", unit_scale=True) as bar:
                for part in local.blocks(step):
                    corner = tuple(a + b for a, b in zip(part.start, box.start, strict=True))
                    data = _as_dtype(src.read(BBox(corner, part.size)), dtype, cfg.src)  # type: ignore[arg-type]
                    dst.write(part.start, data)
                    bar.update(data.nbytes)
            print(f"finalising {cfg.dst} ...")
    print(f"wrote {cfg.dst}: {kind}, shape {box.size} (z, y, x), {dtype.name}")
