"""Probabilities <-> logits, rounded as the reference rounds them (``ffn/inference/inference.py``).

The reference keeps thresholds as float32 protobuf fields and computes logit(float32(p)) before
rounding back to float32; a float64 logit differs in the 7th digit and can flip a decision.
"""

from __future__ import annotations

import numpy as np


def logit(p: float) -> float:
    """log(p / (1 - p)) of float32(p), rounded to float32 (e.g. 0.9 -> 2.1972243785858154)."""
    p32 = float(np.float32(p))
    return float(np.float32(np.log(p32 / (1.0 - p32))))


def expit(x: float) -> float:
    """The inverse of :func:`logit`: 1 / (1 + exp(-x))."""
    return float(1.0 / (1.0 + np.exp(-x)))
