"""``ffnops consensus`` (docs/agglomeration.md): google/ffn's split consensus, block by block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from commands import ffnops

from ffnops.agglomeration.consensus import consensus_map, count_pairs
from ffnops.volume import BBox
from ffnops.volumes import open_volume, write_array


def reference_split(a: np.ndarray, b: np.ndarray, min_size: int) -> np.ndarray:
    """google/ffn's split_segmentation_by_intersection, as its docstring states it, written
    plainly: the partition it makes (which pieces exist and which keep a's id)."""
    out = np.zeros(a.shape, np.int64)
    next_id = int(a.max()) + 1
    for label in np.unique(a[a > 0]):
        inside = a == label
        ids, counts = np.unique(b[inside], return_counts=True)
        best = ids[np.argmax(counts)]  # the first (lowest id) of the largest
        for other, count in zip(ids, counts, strict=True):
            piece = inside & (b == other)
            if count < min_size:
                continue
            if other == best:
                out[piece] = label
            else:
                out[piece] = next_id
                next_id += 1
    return out


def same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    pairs = np.unique(np.stack([x.ravel(), y.ravel()], 1), axis=0)
    return len(pairs) == len(np.unique(x)) == len(np.unique(y))


def test_the_split_rule_is_googles_and_counting_by_blocks_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, (24, 24, 24)).repeat(2, 0)
    b = rng.integers(0, 4, (24, 24, 24)).repeat(2, 1)[:, :24]
    a, b = a[:24], b[:24]
    pairs = count_pairs([(a, b)])
    size = int(np.median(pairs.count))  # some pieces are smaller
    whole = consensus_map(pairs, "split", min_size=size)
    boxes = BBox.from_shape(a.shape).blocks((10, 7, 24))
    counted = count_pairs((a[p.slices], b[p.slices]) for p in boxes)
    blocks = consensus_map(counted, "split", size)
    np.testing.assert_array_equal(blocks.new, whole.new)
    ours = np.zeros(a.shape, np.uint64)
    for p in boxes:
        ours[p.slices] = blocks.apply(a[p.slices], b[p.slices])
    expected = reference_split(a, b, size)
    assert same_partition(ours, expected)
    kept = expected <= a.max()  # pieces that keep the first's id keep exactly it
    np.testing.assert_array_equal(ours[kept], expected[kept])
    assert whole.too_small > 0 and whole.renumbered > 0  # both cases were met


def test_consensus_cuts_where_two_runs_disagree(tmp_path: Path) -> None:
    truth = np.zeros((32, 32, 32), np.uint32)
    truth[:, :, :10], truth[:, :, 11:21], truth[:, :, 22:] = 1, 2, 3
    forward = np.where(truth == 3, 2, truth)  # merges 2 and 3
    reverse = np.where(truth == 2, 1, truth) * 10  # merges 1 and 2, other ids
    reverse[:, :, 28:] = 0  # and leaves a strip unsegmented
    for name, labels in (("forward", forward), ("reverse", reverse)):
        write_array(f"zarr://{tmp_path}/{name}.zarr", labels, chunks=(16, 16, 16))
    segs = f"segs=[zarr://{tmp_path}/forward.zarr,zarr://{tmp_path}/reverse.zarr]"
    for rule in ("split", "agree"):
        out = f"zarr://{tmp_path}/{rule}.zarr"
        proc = ffnops(
            "consensus", segs, f"output={out}", f"rule={rule}", "block=[16,16,16]", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        with open_volume(out) as volume:
            result = np.asarray(volume.read())
        both = (truth > 0) & (reverse > 0)
        assert same_partition(result[both], truth[both])  # both merges are cut
        strip = (truth > 0) & (reverse == 0)  # only the forward run segmented it
        if rule == "split":  # a piece of its own: the forward object's, minus what was cut
            (strip_id,) = np.unique(result[strip])
            assert strip_id > 0 and not (result[~strip] == strip_id).any()
        else:
            assert (result[strip] == 0).all()
        assert (result[truth == 0] == 0).all()
    assert "3 objects" in proc.stdout
    # bbox= takes the consensus of that part only: the part of the whole one, as pieces go.
    out = f"zarr://{tmp_path}/part.zarr"
    proc = ffnops("consensus", segs, f"output={out}", "bbox=0:32,0:32,12:32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open_volume(out) as volume:
        part = np.asarray(volume.read())
    assert part.shape == (32, 32, 20)
    with open_volume(f"zarr://{tmp_path}/split.zarr") as volume:
        whole = np.asarray(volume.read())[:, :, 12:]
    assert same_partition(part, whole)  # agree: the three true ones


@pytest.mark.parametrize(
    ("segs", "message"),
    [
        ("[{a}]", "at least two segmentations"),
        ("[{a},{small}]", "has shape [16, 32, 32]"),
        ("[{a},{coarse}]", "has voxel_size"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path: Path, segs: str, message: str) -> None:
    labels = np.ones((32, 32, 32), np.uint32)
    write_array(f"zarr://{tmp_path}/a.zarr", labels)
    write_array(f"zarr://{tmp_path}/small.zarr", labels[:16])
    write_array(f"zarr://{tmp_path}/coarse.zarr", labels, voxel_size=(16, 16, 16))
    uris = {n: f"zarr://{tmp_path}/{n}.zarr" for n in ("a", "small", "coarse")}
    proc = ffnops(
        "consensus",
        f"segs={segs.format(**uris)}",
        f"output=zarr://{tmp_path}/out.zarr",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert message in line
    assert not (tmp_path / "out.zarr").exists()
