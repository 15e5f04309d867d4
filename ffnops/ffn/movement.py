"""Where the FOV may move next: the face-max rule of FaceMaxMovementPolicy (FFN_SPEC 6.4).

For each axis and sign, look at the face of the ``deltas`` cube around the FOV centre (a plane at
centre +/- delta spanning +/- delta in the other axes); if its largest logit reaches the threshold,
the FOV may move to that voxel. Used by inference and by the ``max_pred_moves`` training policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ffnops.ffn.geometry import Vec3


def face_max_candidates(
    logits: torch.Tensor, deltas: Sequence[int], threshold: float
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
            flat = int(torch.argmax(face))  # first maximum in C order
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
