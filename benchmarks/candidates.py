"""How well the ground-truth-free proofreading queue finds real errors on FIB-25.

``ffnops evaluate seg=URI`` without ``gt=`` (and every single-canvas ``ffnops infer``) ranks
candidate errors by a heuristic score (``ffnops/evaluation/candidates.py``, docs/evaluation.md,
"Without ground truth"). This script scores that queue against the labels: it finds the
candidates of a segmentation as ffnops does (no probability map, so no ``weak`` kind), finds
the real splits and merges with the labels (``find_errors``, the error list's rules), and calls

- a ``contact`` candidate (segments a, b) *real* when both segments hold most of their labelled
  voxels in the same ground-truth object: a split runs between them;
- a ``face`` candidate (segment s) *real* when s is the cut-off piece of a split or a merging
  segment (an error list row names it as ``segment_id``).

For each kind it prints how many candidates there are, the fraction that are real (what a
proofreader checking them in random order would find), the fraction real among the queue's
first k, and their ratio (the queue's gain over random order), all measured in this run; and for
contacts, the share of the real splits that the first k contacts point at.

The segmentation defaults to Google's published one of ``training_sample2``
(``FFNOPS_GOOGLE_FIB25_DIR``, benchmarks/datasets.py), scored where the labels are (z < 175);
``--segmentation URI --bbox Z0:Z1,Y0:Y1,X0:X1`` scores another (e.g. an ``ffnops infer`` output)
on a box of the labels. Run::

    python benchmarks/candidates.py [--segmentation URI] [--bbox ...] [--min-overlap 100]
"""

from __future__ import annotations

import argparse

import numpy as np
from datasets import FIB25_LABELS, GOOGLE_SEGMENTATION, need
from machine import cpu_model

from ffnops.evaluation.candidates import CONTACT, FACE, Candidate, find_candidates
from ffnops.evaluation.errors import SPLIT, find_errors, main_matches
from ffnops.volume import BBox
from ffnops.volumes import open_volume

TOP = (10, 25, 50, 100)


def real(candidates: list[Candidate], main: dict[int, int], erring: set[int]) -> list[bool]:
    return [
        main.get(c.segment_id, -1) == main.get(c.other_id, -2)
        if c.kind == CONTACT
        else c.segment_id in erring
        for c in candidates
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmentation", help="URI; default Google's training_sample2 result")
    parser.add_argument("--bbox", help="box of the labels to score (default: all of them)")
    parser.add_argument("--labels", default=f"h5://{FIB25_LABELS}#stack")
    parser.add_argument("--min-overlap", type=int, default=100)
    args = parser.parse_args()

    with open_volume(args.labels) as volume:
        box = BBox.parse(args.bbox) if args.bbox else BBox.from_shape(volume.shape)
        truth = np.asarray(volume.read(box)).astype(np.int64)
    if args.segmentation:
        with open_volume(args.segmentation) as volume:
            segmentation = np.asarray(volume.read(box)).astype(np.int64)
        source = args.segmentation
    else:
        path = need(GOOGLE_SEGMENTATION, "FFNOPS_GOOGLE_FIB25_DIR")
        with np.load(path, allow_pickle=False) as npz:
            segmentation = npz["segmentation"][box.slices].astype(np.int64)
        source = f"Google's {path.name}"

    candidates = find_candidates(segmentation, min_voxels=args.min_overlap)
    errors, _ = find_errors(segmentation, truth, args.min_overlap)
    main = main_matches(segmentation, truth, min_overlap=1).object_of
    erring = {e.segment_id for e in errors}
    splits = {frozenset((e.segment_id, e.other_id)) for e in errors if e.kind == SPLIT}

    print(f"{source} on labels [{box}] ({cpu_model()})")
    print(
        f"{len(errors)} real errors ({len(splits)} split pairs, "
        f"{sum(e.kind != SPLIT for e in errors)} merges); {len(candidates)} candidates"
    )
    header = " | ".join(f"real in first {k}" for k in TOP)
    print(f"\n| kind | candidates | real (random order) | {header} |")
    print("|---|---|---|" + "---|" * len(TOP))
    for kind in (CONTACT, FACE):
        queue = [c for c in candidates if c.kind == kind]
        if not queue:
            continue
        truth_of = real(queue, main, erring)
        base = float(np.mean(truth_of))
        cells = []
        for k in TOP:
            if k <= len(queue):
                share = float(np.mean(truth_of[:k]))
                gain = f"{share / base:.1f}x" if base else "-"
                cells.append(f"{share:.2f} ({gain})")
            else:
                cells.append("-")
        print(f"| {kind} | {len(queue)} | {base:.2f} | " + " | ".join(cells) + " |")
    contacts = [frozenset((c.segment_id, c.other_id)) for c in candidates if c.kind == CONTACT]
    if splits:
        found = ", ".join(
            f"first {k}: {len(splits & set(contacts[:k])) / len(splits):.2f}" for k in TOP
        )
        print(f"\nshare of the {len(splits)} real split pairs among the contacts, {found}; "
              f"all {len(contacts)}: {len(splits & set(contacts)) / len(splits):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
