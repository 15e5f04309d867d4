"""Block layouts, the stitching rule and global ids on small hand-made arrays, and a user's own
executor plugin running a blockwise job in this process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ffnops import hookimpl
from ffnops.blocks import BlockLayout
from ffnops.config.schemas import ExecutorConfig
from ffnops.errors import FfnopsError
from ffnops.executor import BlockTask, Executor, OnProgress, TaskProgress, make_executor
from ffnops.ffn.model_settings import ModelSettings
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.oracle import OracleFFN
from ffnops.ffn.stitching import count_overlaps, fragment_keys, global_ids, link_blocks, links
from ffnops.inference.blockwise import BlockwiseJob, run_blockwise
from ffnops.inference.request import BoxRequest
from ffnops.plugins import get_plugins
from ffnops.sample_data.synthetic import synthetic_volume
from ffnops.volume import BBox, VolumeSpec
from ffnops.volumes import create_volume, open_volume, write_array


def test_write_boxes_tile_the_box_and_read_boxes_add_the_context() -> None:
    box = BBox((10, 0, 5), (100, 70, 64))
    layout = BlockLayout.plan(box, [32, 32, 32], fov_size=[9, 9, 9], overlap=[4, 4, 4])
    assert layout.context == (8, 8, 8) and layout.grid == (4, 3, 2) and len(layout) == 24
    covered = np.zeros(box.size, np.int32)
    for block in layout.blocks():
        covered[block.write.shifted(box.start).slices] += 1
        grown = BBox(
            tuple(s - 8 for s in block.write.start), tuple(n + 16 for n in block.write.size)
        )
        assert block.read == grown.intersect(box)
        assert layout.index_at(block.write.start) == block.index
    assert (covered == 1).all()  # every voxel in exactly one write box
    last = layout.block(23)
    assert last.write.size == (4, 6, 32)  # far faces: what is left of the box
    corner = layout.block(0)
    seen = {b.index for b in layout.neighbours(corner)}
    assert seen == {1, 2, 3, 6, 7, 8, 9}  # face, edge and corner neighbours
    for other in layout.neighbours(corner):
        assert corner.index in {b.index for b in layout.neighbours(other)}  # symmetric
    assert {b.index for b in layout.later_neighbours(layout.block(9))} < set(range(10, 24))


def test_output_chunks_divide_the_block_size() -> None:
    def chunks(size: int) -> int:
        box = BBox((0, 0, 0), (1000, 1000, 1000))
        return BlockLayout.plan(box, [size] * 3, [33] * 3, [8] * 3).write_chunks()[0]

    assert (chunks(125), chunks(128), chunks(100), chunks(127)) == (25, 64, 50, 127)


def test_the_stitching_rule_links_fragments_that_lie_mostly_in_one_another() -> None:
    # One shared region of 10 x 10 x 10 voxels seen by two blocks.
    a = np.zeros((10, 10, 10), np.uint32)
    b = np.zeros((10, 10, 10), np.uint32)
    a[:, :5] = 1  # A's object 1: half the region
    b[:, :4] = 7  # B's object 7: inside A's object 1 (400 of its 400 voxels)
    a[:, 5:] = 2  # A's object 2 ...
    b[:, 4:7] = 8  # ... overlapped by B's 8 on 200 voxels, 100 of which are in A's 1
    b[:, 9:] = 9  # B's 9: 100 voxels inside A's 2
    ka, kb = fragment_keys(0, a), fragment_keys(5, b)
    overlaps = count_overlaps(ka, kb)
    pairs = {
        (int(x) & 0xFFFF, int(y) & 0xFFFF): int(n)
        for x, y, n in zip(overlaps.a, overlaps.b, overlaps.shared, strict=True)
    }
    assert pairs == {(1, 7): 400, (1, 8): 100, (2, 8): 200, (2, 9): 100}
    linked = {(int(x) & 0xFFFF, int(y) & 0xFFFF) for x, y in links(overlaps, 100, 0.5)}
    # 8 has 300 voxels here: 200 in A's 2 is more than half of it, 100 in A's 1 is not.
    assert linked == {(1, 7), (2, 8), (2, 9)}
    assert len(links(overlaps, 101, 0.5)) == 2  # 9's 100 shared voxels are below 101
    # "each": more than half of both. A's 2 (500 voxels here) is not mostly 8 (200) or 9 (100).
    each = {(int(x) & 0xFFFF, int(y) & 0xFFFF) for x, y in links(overlaps, 100, 0.5, "each")}
    assert each == {(1, 7)}
    fragments = np.unique(np.concatenate([ka.ravel(), kb.ravel()]))
    fragments = fragments[fragments > 0]
    ids = global_ids(fragments, [links(overlaps, 100, 0.5)])
    by = dict(zip((int(f) for f in fragments), ids.tolist(), strict=True))
    one, two = (
        by[int(fragment_keys(0, np.array([1]))[0])],
        by[int(fragment_keys(0, np.array([2]))[0])],
    )
    assert (one, two) == (1, 2)  # numbered by first fragment
    assert by[int(fragment_keys(5, np.array([7]))[0])] == one
    assert (
        by[int(fragment_keys(5, np.array([8]))[0])]
        == by[int(fragment_keys(5, np.array([9]))[0])]
        == two
    )


def _linked(a: np.ndarray, b: np.ndarray, owner: np.ndarray, disputes: str) -> set:
    found = link_blocks(
        fragment_keys(0, a), fragment_keys(5, b), owner, 10, 0.5, "smaller", disputes
    )
    return {(int(x) & 0xFFFF, int(y) & 0xFFFF) for x, y in found.pairs}


def _owned_below(z: int) -> np.ndarray:
    """A shared region of 10^3 whose planes below ``z`` are block A's write box, the rest B's."""
    owner = np.full((10, 10, 10), 2, np.int8)
    owner[:z] = 1
    return owner


def test_a_boundary_two_blocks_dispute_is_decided_by_the_block_that_owns_it() -> None:
    # B separates 7 (y < 5) from 8 (y >= 5) everywhere; A separates its 1 from its 2 only in
    # its own write box (z < 3) and lets 1 flood across in B's (z >= 3): a leak near A's edge.
    a = np.ones((10, 10, 10), np.uint32)
    a[:3, :, 5:] = 2
    b = np.full((10, 10, 10), 7, np.uint32)
    b[:, :, 5:] = 8
    owner = _owned_below(3)
    # Every voxel link joins 1, 7, 8 and 2 into one object: the leak merges two neurons.
    assert _linked(a, b, owner, "join") == {(1, 7), (1, 8), (2, 8)}
    # B owns the boundary A's 1 crosses: 1 keeps its stronger link (7), 8 goes with 2.
    assert _linked(a, b, owner, "owner") == {(1, 7), (2, 8)}
    # Where A owns most of the same boundary (z < 8), A's view wins: B split one object.
    b_split = np.where(a == 2, 8, b)
    a_joined = np.ones_like(a)
    assert _linked(a_joined, b_split, _owned_below(8), "owner") == {(1, 7), (1, 8)}
    assert _linked(a_joined, b_split, _owned_below(2), "owner") == {(1, 7)}


def test_fragments_that_meet_only_outside_the_shared_region_stay_linked() -> None:
    # B sees two branches, 7 and 8, apart (background between them); A's 1 holds both: they
    # join in A's part of the volume, which B never saw. Nothing is disputed.
    a = np.ones((10, 10, 10), np.uint32)
    b = np.zeros((10, 10, 10), np.uint32)
    b[:, :, :4] = 7
    b[:, :, 6:] = 8
    assert _linked(a, b, _owned_below(2), "owner") == {(1, 7), (1, 8)}


class InOrderReversed(Executor):
    """A lab's own executor: blocks in reverse order, in this process."""

    def run(self, task: BlockTask, on_progress: OnProgress) -> TaskProgress:
        blocks = [b for b in reversed(list(task.layout.blocks())) if not task.is_done(b)]
        for block in blocks:
            task.process([block])
        return TaskProgress(len(task.layout), len(task.layout))


class ReversedPlugin:
    @hookimpl
    def ffnops_executor_names(self) -> list[str]:
        return ["reversed"]

    @hookimpl
    def ffnops_make_executor(self, name: str, config: ExecutorConfig) -> Executor | None:
        return InOrderReversed(config) if name == "reversed" else None


def _segment(tmp_path: Path, executor: Executor, name: str) -> np.ndarray:
    settings = ModelSettings((9, 9, 9), (2, 2, 2))
    request = BoxRequest(
        OracleFFN(9, 2),
        settings,
        InferenceOptions(min_segment_size=50, seed_policy="grid"),
        f"zarr://{tmp_path}/labels.zarr",
        BBox((0, 0, 0), (48, 48, 48)),
        0.0,
        1.0,
    )
    layout = BlockLayout.plan(request.box, [16, 24, 48], settings.fov_size, [2, 2, 2])
    job = BlockwiseJob(request, layout, tmp_path / f"work-{name}")
    spec = VolumeSpec((48, 48, 48), "uint64", chunks=layout.write_chunks(), kind="segmentation")
    output = create_volume(f"zarr://{tmp_path}/{name}.zarr", spec)
    assert output.shared_uri is not None
    run_blockwise(job, executor, output.shared_uri, 1, lambda phase, progress: None)
    output.commit()
    with open_volume(f"zarr://{tmp_path}/{name}.zarr") as volume:
        return np.asarray(volume.read())


def test_a_users_executor_plugin_is_found_by_name_and_runs_blockwise_jobs(tmp_path: Path) -> None:
    _, labels = synthetic_volume((48, 48, 48), objects=6, seed=2)
    write_array(f"zarr://{tmp_path}/labels.zarr", labels)
    plugins = get_plugins()
    with pytest.raises(FfnopsError, match="executors: daisy, local"):
        make_executor(ExecutorConfig(name="reversed"))
    plugins.manager.register(ReversedPlugin(), name="reversed-test")
    try:
        mine = make_executor(ExecutorConfig(name="reversed"))
        assert isinstance(mine, InOrderReversed)
        theirs = make_executor(ExecutorConfig(name="local"))
        reference = _segment(tmp_path, theirs, "local")
        assert len(np.unique(reference)) > 4  # objects, stitched across 3 x 2 x 1 blocks
        np.testing.assert_array_equal(_segment(tmp_path, mine, "mine"), reference)
    finally:
        plugins.manager.unregister(name="reversed-test")


def test_a_block_smaller_than_the_fov_is_refused() -> None:
    with pytest.raises(FfnopsError, match="smaller than the model's FOV"):
        BlockLayout.plan(BBox((0, 0, 0), (64, 64, 64)), [16, 64, 64], [33] * 3, [8] * 3)
    with pytest.raises(FfnopsError, match="reads only"):  # a sliver at the far face
        BlockLayout.plan(BBox((0, 0, 0), (70, 64, 64)), [34, 64, 64], [33] * 3, [0] * 3)
