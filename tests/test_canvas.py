"""The inference canvas with an oracle network reproduces ground truth.

The canvas is google/ffn's, ffn/inference/inference.py.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from skimage.metrics import adapted_rand_error

from ffnops.ffn.canvas import Canvas, run_canvas, run_canvases
from ffnops.ffn.movement import FaceMaxPolicy
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.oracle import OracleFFN
from ffnops.ffn.predictor import TorchPredictor
from ffnops.ffn.seeds import grid_seeds, peak_seeds, policy_seeds
from ffnops.sample_data import sample_path


def crop_labels(size: int = 64) -> np.ndarray:
    with h5py.File(sample_path("fib25_crop.h5"), "r") as f:
        return np.asarray(f["labels"][:size, :size, :size]).astype(np.int64)


def crop_image(size: int = 64) -> np.ndarray:
    with h5py.File(sample_path("fib25_crop.h5"), "r") as f:
        return (np.asarray(f["image"][:size, :size, :size], np.float32) - 128) / 33


def test_oracle_reproduces_the_labels() -> None:
    labels = crop_labels()
    options = InferenceOptions(min_segment_size=100)
    canvas = Canvas(labels.astype(np.float32), (17, 17, 17), (4, 4, 4), options)
    seeds = peak_seeds(crop_image(), canvas.margin)  # seeds from the real EM, as in inference
    assert len(seeds) > 100
    assert seeds == sorted(seeds) and all(8 <= c < 56 for s in seeds for c in s)
    run_canvas(canvas.segment_all(seeds), TorchPredictor(OracleFFN(), channels_last=False))
    segmentation = canvas.final_segmentation()
    # FOV centres stay a FOV radius inside the box, so objects that live only in that rim can
    # be neither seeded nor reached: score the region FOV centres can visit.
    inner = tuple(slice(m, n - m) for m, n in zip(canvas.margin, labels.shape))
    error, _, _ = adapted_rand_error(labels[inner], segmentation[inner])
    assert error < 0.01, f"adapted Rand error {error:.4f}"
    assert adapted_rand_error(labels, segmentation)[0] < 0.1  # the rim costs a little
    assert canvas.counters.objects == len(canvas.origins) >= 5
    assert canvas.counters.network_calls > canvas.counters.objects


def test_reverse_seed_order_floods_the_last_seed_first() -> None:
    """The second run of a consensus (docs/agglomeration.md): the same seeds, last first, so
    objects are claimed in the other order and the two runs disagree where flooding order
    decided."""
    labels, image = crop_labels(), crop_image()
    forward = policy_seeds(InferenceOptions(), image, (8, 8, 8))
    backward = policy_seeds(InferenceOptions(seed_order="reverse"), image, (8, 8, 8))
    assert len(forward) > 100 and backward == forward[::-1]
    results = []
    for order in ("forward", "reverse"):
        options = InferenceOptions(min_segment_size=100, seed_order=order)
        canvas = Canvas(labels.astype(np.float32), (17, 17, 17), (4, 4, 4), options)
        seeds = policy_seeds(options, image, canvas.margin)
        run_canvas(canvas.segment_all(seeds), TorchPredictor(OracleFFN(), channels_last=False))
        results.append(canvas)
    first_forward = min(results[0].origins)
    first_reverse = min(results[1].origins)
    assert results[0].origins[first_forward].start < results[1].origins[first_reverse].start
    with pytest.raises(ValueError, match=r"inference\.seed_order must be one of forward, reverse"):
        InferenceOptions(seed_order="backwards")


def test_batched_canvases_give_the_same_result_as_one_at_a_time() -> None:
    labels = crop_labels(48)
    predictor = TorchPredictor(OracleFFN(), channels_last=False)
    options = InferenceOptions(min_segment_size=50)

    def canvas() -> Canvas:
        return Canvas(labels.astype(np.float32), (17, 17, 17), (4, 4, 4), options)

    alone = canvas()
    seeds = grid_seeds(labels.shape, alone.margin, step=12)
    run_canvas(alone.segment_all(seeds), predictor)
    calls: list[int] = []

    def counting(inputs: np.ndarray) -> np.ndarray:
        calls.append(len(inputs))
        return predictor(inputs)

    pair = [canvas(), canvas()]
    run_canvases([c.segment_all(seeds) for c in pair], counting, batch_size=2)
    for c in pair:
        np.testing.assert_array_equal(c.segmentation, alone.segmentation)
    assert max(calls) == 2  # both canvases shared network calls


def test_face_max_policy_visits_each_cell_once_and_in_bfs_order() -> None:
    policy = FaceMaxPolicy((10, 10, 10), (4, 4, 4), threshold=1.0)
    assert policy.quantise((8, 10, 12)) == (0, 0, 1)  # floor division around the start
    assert policy.quantise((7, 10, 10)) == (-1, 0, 0)
    logits = np.full((9, 9, 9), -3.0, np.float32)
    logits[4, 4, 8] = 2.0  # +x face
    logits[0, 4, 4] = 1.5  # -z face
    visited = list(policy.positions(lambda p: True))
    assert visited == [(10, 10, 10)]
    policy.update(logits, (10, 10, 10))
    assert [p for _, p in policy.queue] == [(10, 10, 14), (6, 10, 10)]  # best score first
    policy.update(logits, (10, 10, 10))  # queues the same two candidates a second time
    seen = []
    for pos in policy.positions(lambda p: True):
        seen.append(pos)
        policy.update(np.full((9, 9, 9), -3.0, np.float32), pos)  # no new candidates
    assert seen == [(10, 10, 14), (6, 10, 10)]  # the repeats' cells are done: skipped


def test_seed_near_an_object_and_small_objects_are_rejected() -> None:
    labels = np.zeros((40, 40, 40), np.int64)
    labels[5:35, 5:35, 5:35] = 1
    labels[18:21, 18:21, 18:21] = 2  # a 27-voxel object inside
    options = InferenceOptions(min_segment_size=100)
    canvas = Canvas(labels.astype(np.float32), (9, 9, 9), (2, 2, 2), options)
    run_canvas(
        canvas.segment_all([(10, 10, 10), (19, 19, 19), (11, 11, 11)]),
        TorchPredictor(OracleFFN(), channels_last=False),
    )
    assert canvas.counters.objects == 1
    assert canvas.counters.rejected_too_small == 1  # object 2 is below min_segment_size
    assert canvas.counters.rejected_near_object == 0  # (11, 11, 11) is inside object 1: invalid
    assert canvas.segmentation[19, 19, 19] == -1 and canvas.final_segmentation()[19, 19, 19] == 0


def test_existing_objects_are_continued_and_keep_what_the_flood_leaves() -> None:
    """Objects segmented elsewhere (a finished neighbouring block's) hold their voxels; the
    canvas floods on from each piece inside its write box, and a flood that covers another
    existing object's voxels says so (``covers``), which is where blocks link them."""
    labels = np.zeros((48, 48, 48), np.int64)
    labels[:22] = 1  # A
    labels[26:] = 2  # B, beyond a membrane of 4 voxels
    x = np.arange(48)[None, None, :]
    existing = np.zeros_like(labels)
    existing[(labels == 1) & (x < 16)] = 1  # A, as the block on the left labelled it
    existing[(labels == 1) & (x >= 32)] = 2  # A again, seeded apart by the block on the right
    existing[(labels == 2) & (x < 16)] = 3  # B, from the left
    canvas = Canvas(labels.astype(np.float32), (17, 17, 17), (4, 4, 4), InferenceOptions())
    canvas.add_existing(existing)
    predictor = TorchPredictor(OracleFFN(), channels_last=False)
    write = (slice(None), slice(None), slice(10, 38))
    run_canvas(canvas.continue_existing(write, min_voxels=100), predictor)
    assert sorted(canvas.continued.values()) == [1, 2, 3]
    by_existing = {n: i for i, n in canvas.continued.items()}
    segmentation = canvas.final_segmentation()
    a1, a2, b = (segmentation == by_existing[n] for n in (1, 2, 3))
    assert (labels[a1] == 1).all() and (labels[a2] == 1).all() and (labels[b] == 2).all()
    assert a1[:22, 8:40, 16:32].all()  # A's middle, where no block had labelled it
    assert b[26:40, 8:40, 16:32].all()
    covered, held = canvas.covers[by_existing[1]][2]  # A's flood from the left met A's right
    assert covered >= 100 and covered > 0.5 * held
    assert 3 not in canvas.covers.get(by_existing[1], {})  # and never B
    assert canvas.counters.objects_continued == 3
    # What no flood claimed is still the existing objects' and is not this canvas's output.
    assert (segmentation[(existing > 0) & ~(a1 | a2 | b)] == 0).all()
    assert int(segmentation.max()) == max(canvas.origins)
