"""Where the FOV may move next: the face-max rule of Google's FaceMaxMovementPolicy.

The rule and its name are those of ``ffn/inference/movement.py`` in google/ffn.

For each axis and sign, look at the face of the ``deltas`` cube around the FOV centre (a plane at
centre +/- delta spanning +/- delta in the other axes); if its largest logit reaches the threshold,
the FOV may move to that voxel. Used by inference and by the ``max_pred_moves`` training policy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from ffnops.ffn.geometry import Vec3


def face_max_candidates(
    logits: torch.Tensor | np.ndarray, deltas: Sequence[int], threshold: float
) -> list[tuple[float, Vec3]]:
    """Candidate moves ``(score, (dz, dy, dx))`` relative to the centre of ``logits`` (z, y, x).

    Sorted as the reference sorts them: by (score, dz, dy, dx), descending. Ties inside a face go
    to the first maximum in C order.
    """
    centre = [n // 2 for n in logits.shape]
    candidates: list[tuple[float, Vec3]] = []
    for axis, delta in enumerate(deltas):
        if delta <= 0:
            continue
        others = [a for a in range(3) if a != axis]
        for sign in (-1, 1):
            index: list[slice | int] = [slice(None)] * 3
            index[axis] = centre[axis] + sign * delta
            for a in others:
                index[a] = slice(centre[a] - deltas[a], centre[a] + deltas[a] + 1)
            face = logits[tuple(index)]
            flat = int(face.argmax())  # first maximum in C order (numpy and torch alike)
            score = float(face.reshape(-1)[flat])
            if score < threshold:
                continue
            row, col = divmod(flat, face.shape[1])
            offset = [0, 0, 0]
            offset[axis] = sign * delta
            offset[others[0]] = row - deltas[others[0]]
            offset[others[1]] = col - deltas[others[1]]
            candidates.append((score, (offset[0], offset[1], offset[2])))
    candidates.sort(key=lambda c: (c[0], *c[1]), reverse=True)
    return candidates


class FaceMaxPolicy:
    """Breadth-first exploration of one object along face-max candidates (Google's ``movement.py``).

    Positions are absolute (z, y, x) in the canvas. A position is taken at most once per cell of
    the ``deltas`` grid anchored at the start (``quantise`` uses floor division, so cells before
    the start do not merge); validity is checked when a position is popped, against the canvas
    as it is then.
    """

    def __init__(self, start: Sequence[int], deltas: Sequence[int], threshold: float) -> None:
        self.start = tuple(int(s) for s in start)
        self.deltas = tuple(int(d) for d in deltas)
        self.threshold = threshold
        self.queue: deque[tuple[float, Vec3]] = deque([(2 * threshold, self.start)])  # type: ignore[list-item]
        self.done: set[Vec3] = set()

    def quantise(self, pos: Sequence[int]) -> Vec3:
        return tuple(  # type: ignore[return-value]
            (p - s + d // 2) // d if d else 0
            for p, s, d in zip(pos, self.start, self.deltas, strict=True)
        )

    def positions(self, is_valid: Callable[[Vec3], bool]) -> Iterator[Vec3]:
        """Yields the next position to visit until none is left; call :meth:`update` after each."""
        while self.queue:
            _, pos = self.queue.popleft()
            if self.quantise(pos) in self.done or not is_valid(pos):
                continue
            yield pos

    def update(self, logits: torch.Tensor | np.ndarray, pos: Sequence[int]) -> None:
        """Marks ``pos`` done and queues the face-max candidates of the FOV's new logits."""
        self.done.add(self.quantise(pos))
        for score, offset in face_max_candidates(logits, self.deltas, self.threshold):
            target = tuple(p + o for p, o in zip(pos, offset, strict=True))
            self.queue.append((score, target))  # type: ignore[arg-type]
