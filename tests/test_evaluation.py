"""ERL, skeletons and error lists on small hand-made volumes, against values worked out here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ffnops.errors import FfnopsError
from ffnops.evaluation.candidates import find_candidates
from ffnops.evaluation.errors import find_errors
from ffnops.evaluation.report import evaluate
from ffnops.evaluation.run_length import expected_run_length, node_segments
from ffnops.evaluation.skeletons import Skeletons, read_swc, skeletonize, write_swc


def line(object_id: int, start: tuple[float, float, float], nodes: int, step: float) -> Skeletons:
    """A straight skeleton along x of ``nodes`` nodes ``step`` nm apart."""
    positions = np.array([[start[0], start[1], start[2] + i * step] for i in range(nodes)])
    edges = np.array([[i, i + 1] for i in range(nodes - 1)], np.int64).reshape(-1, 2)
    return Skeletons(positions, edges, np.full(nodes, object_id, np.int64))


# Three skeletons in nm: A (id 1) 10 nm, B (id 2) 4 nm, C (id 3) 6 nm; L = 20 nm.
SKELETONS = Skeletons.join(
    [line(1, (0, 0, 0), 11, 1.0), line(2, (0, 5, 0), 5, 1.0), line(3, (0, 9, 0), 7, 1.0)]
)


def segments_of(a: list[int], b: list[int], c: list[int]) -> np.ndarray:
    return np.array([*a, *b, *c], np.int64)


def test_erl_of_a_split_an_omission_and_a_merge_as_worked_out_by_hand() -> None:
    own = (10**2 + 4**2 + 6**2) / 20  # the ground truth's own ERL: 7.6 nm
    perfect = expected_run_length(SKELETONS, segments_of([10] * 11, [12] * 5, [13] * 7))
    assert perfect.erl_nm == pytest.approx(own) and perfect.groundtruth_erl_nm == pytest.approx(own)
    assert perfect.nerl == pytest.approx(1.0)

    # A split between its nodes 5 and 6: runs of 5 and 4 nm (the split edge scores nothing).
    split = expected_run_length(SKELETONS, segments_of([10] * 6 + [11] * 5, [12] * 5, [13] * 7))
    assert split.erl_nm == pytest.approx((5**2 + 4**2 + 4**2 + 6**2) / 20)  # 5.65
    (a,) = [r for r in split.skeletons if r.object_id == 1]
    assert (a.split_edges, a.run_length_nm, a.merged) == (1, pytest.approx(4.1), False)

    # B's last node unsegmented: its last edge is omitted (1 nm), a run of 3 nm is left.
    omitted = expected_run_length(SKELETONS, segments_of([10] * 11, [12] * 4 + [0], [13] * 7))
    assert omitted.erl_nm == pytest.approx((10**2 + 3**2 + 6**2) / 20)
    assert [r.omitted_nm for r in omitted.skeletons] == [0.0, 1.0, 0.0]

    # Segment 10 also holds B's first node: A and B are merged and both score zero; only C runs.
    merged = expected_run_length(SKELETONS, segments_of([10] * 11, [10] + [12] * 4, [13] * 7))
    assert merged.erl_nm == pytest.approx(6**2 / 20)
    assert merged.merging_segments == {10: (1, 2)}
    assert [r.merged for r in merged.skeletons] == [True, True, False]

    # Background is never a merging segment: A and C both end in 0, neither is merged.
    gaps = expected_run_length(SKELETONS, segments_of([10] * 10 + [0], [12] * 5, [13] * 6 + [0]))
    assert gaps.erl_nm == pytest.approx((9**2 + 4**2 + 5**2) / 20)
    assert gaps.merging_segments == {}


def tubes(shape: tuple[int, int, int] = (24, 40, 64)) -> np.ndarray:
    """Four tubes along x (ids 1-4), radius 3 voxels, the full length of the volume."""
    z, y, _ = np.mgrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint32)
    for i, (cz, cy) in enumerate([(6, 8), (6, 30), (17, 8), (17, 30)], start=1):
        labels[(z - cz) ** 2 + (y - cy) ** 2 <= 9] = i
    return labels


def test_kimimaro_skeletons_of_a_tube_have_its_length_in_nm_with_anisotropic_voxels() -> None:
    labels = tubes()
    voxel_size = (40.0, 8.0, 8.0)
    skeletons = skeletonize(labels, voxel_size, origin_voxels=(2, 0, 10), dust_voxels=100)
    lengths = skeletons.lengths()
    assert sorted(lengths) == [1, 2, 3, 4]
    # Centre to centre of the end voxels: 63 voxels of 8 nm; kimimaro may stop short of the ends.
    for length in lengths.values():
        assert 0.95 * 63 * 8 <= length <= 63 * 8 + 1e-6
    (z0, y0, x0) = skeletons.positions[skeletons.objects == 1].min(axis=0)
    assert (z0, y0) == (pytest.approx((6 + 2) * 40.0), pytest.approx(8 * 8.0))  # the frame: nm
    assert x0 >= 10 * 8.0


def test_a_perfect_segmentation_has_the_ground_truths_own_erl_and_no_errors() -> None:
    labels = tubes()
    skeletons = skeletonize(labels, (8, 8, 8), (0, 0, 0), dust_voxels=100)
    result = evaluate(labels * 7, labels, (8, 8, 8), (0, 0, 0), skeletons=skeletons)
    assert result.run_lengths is not None
    assert result.run_lengths.erl_nm == pytest.approx(result.run_lengths.groundtruth_erl_nm)
    assert result.errors == [] and result.scores.adapted_rand_error == pytest.approx(0.0)
    assert [o.segments for o in result.objects] == [1, 1, 1, 1]


def test_an_injected_merge_of_two_long_neurons_lowers_erl_by_the_formula_and_leads_the_queue() -> (
    None
):
    labels = tubes()
    seg = labels.copy()
    seg[seg == 4] = 2  # tubes 2 and 4 merged into one segment
    seg[(labels == 1) & (np.arange(64) >= 40)] = 9  # tube 1 split at x = 40
    skeletons = skeletonize(labels, (8, 8, 8), (0, 0, 0), dust_voxels=100)
    lengths = skeletons.lengths()
    total = sum(lengths.values())
    result = evaluate(seg, labels, (8, 8, 8), (0, 0, 0), skeletons=skeletons)
    assert result.run_lengths is not None
    split_runs = node_segments(skeletons, seg, (8, 8, 8), (0, 0, 0))
    tube1 = skeletons.edges[skeletons.objects[skeletons.edges[:, 0]] == 1]
    ends = split_runs[tube1]
    pieces = [
        skeletons.edge_lengths[skeletons.objects[skeletons.edges[:, 0]] == 1][
            (ends == k).all(1)
        ].sum()
        for k in (1, 9)
    ]
    expected = (pieces[0] ** 2 + pieces[1] ** 2 + lengths[3] ** 2) / total  # 2 and 4 score 0
    assert result.run_lengths.erl_nm == pytest.approx(expected)
    assert result.run_lengths.merging_segments == {2: (2, 4)}
    first, second = result.errors
    assert (first.kind, first.segment_id, {first.groundtruth_id, first.other_id}) == (
        "merge",
        2,
        {2, 4},
    )
    assert first.skeleton_nm > 0.9 * lengths[4]  # the whole of tube 4 was swallowed
    assert (second.kind, second.groundtruth_id, {second.segment_id, second.other_id}) == (
        "split",
        1,
        {1, 9},
    )
    z, y, x = second.position  # where the two pieces of tube 1 touch
    assert labels[z, y, x] == 1 and x in (39, 40)
    z, y, x = first.position  # merges: tubes 2 and 4 do not touch, so inside the piece
    assert seg[z, y, x] == 2 and labels[z, y, x] in (2, 4)


def test_the_error_list_without_skeletons_ranks_by_voxels() -> None:
    labels = tubes()
    seg = labels.copy()
    seg[(labels == 3) & (np.arange(64) >= 50)] = 20  # a small piece of 3 split off
    seg[(labels == 1) & (np.arange(64) >= 40)] = 21  # a bigger piece of 1 split off
    errors, objects = find_errors(seg, labels)
    assert [(e.kind, e.groundtruth_id, e.segment_id) for e in errors] == [
        ("split", 1, 21),
        ("split", 3, 20),
    ]
    assert errors[0].voxels == int(((labels == 1) & (np.arange(64) >= 40)).sum())
    assert [(o.groundtruth_id, o.segments) for o in objects] == [(1, 2), (2, 1), (3, 2), (4, 1)]


def test_swc_files_round_trip_and_bad_ones_are_one_line_errors(tmp_path: Path) -> None:
    written = write_swc(SKELETONS, tmp_path / "swc")
    assert [p.name for p in written] == ["1.swc", "2.swc", "3.swc"]
    back = read_swc(tmp_path / "swc")
    assert back.lengths() == pytest.approx(SKELETONS.lengths())
    np.testing.assert_allclose(
        np.sort(back.positions, axis=0), np.sort(SKELETONS.positions, axis=0)
    )
    bad = tmp_path / "bad.swc"
    bad.write_text("1 0 1.0 2.0\n")
    with pytest.raises(FfnopsError, match=r"bad.swc: not an SWC file"):
        read_swc(bad)
    with pytest.raises(FfnopsError, match="no such file"):
        read_swc(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FfnopsError, match=r"no \.swc files"):
        read_swc(tmp_path / "empty")


def test_skeletons_outside_the_volume_and_an_empty_ground_truth_are_refused() -> None:
    labels = tubes()
    far = line(1, (0, 0, 10_000), 3, 8.0)
    with pytest.raises(FfnopsError, match=r"3 of 3 skeleton nodes lie outside the segmentation"):
        evaluate(labels, labels, (8, 8, 8), (0, 0, 0), skeletons=far)
    with pytest.raises(FfnopsError, match="labels no voxel"):
        evaluate(labels, np.zeros_like(labels), (8, 8, 8), (0, 0, 0))


def test_without_ground_truth_a_piece_split_off_and_a_weak_object_lead_the_queue() -> None:
    labels = tubes()
    seg = labels.copy()
    seg[(labels == 1) & (np.arange(64) >= 28) & (np.arange(64) < 36)] = 9  # a piece cut out
    probabilities = np.where(seg > 0, 0.95, np.nan).astype(np.float32)
    probabilities[seg == 3] = 0.65  # tube 3 claimed just above the 0.6 threshold
    queue = find_candidates(seg, probabilities, threshold=0.6)
    weak, contact = queue[0], queue[1]
    assert (weak.kind, weak.segment_id, weak.score) == ("weak", 3, 1.0)
    assert (contact.kind, {contact.segment_id, contact.other_id}) == ("contact", {1, 9})
    assert contact.voxels == int((seg == 9).sum())
    z, y, x = contact.position
    assert seg[z, y, x] in (1, 9) and 27 <= x <= 35  # on one of the two cuts
    faces = [c for c in queue if c.kind == "face"]
    assert {c.segment_id for c in faces} == {1, 2, 3, 4}  # all reach the x faces, 9 does not
    assert all(c.score < contact.score for c in faces)
    assert not [c for c in find_candidates(seg) if c.kind == "weak"]  # no map, no weak ones
