"""``training.lr_schedule``: the rate each optimizer step takes, against its formula."""

from __future__ import annotations

import math

import pytest
import torch

from ffnops.errors import FfnopsError
from ffnops.ffn.lr_schedule import LRSchedule

LR, STEPS = 1e-3, 20


def rates(schedule: LRSchedule) -> list[float]:
    """The lr of each of STEPS optimizer steps, stepped as Lightning does (after each)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = schedule.scheduler(optimizer, STEPS)
    out = []
    for _ in range(STEPS):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_constant_is_the_optimizers_rate() -> None:
    assert rates(LRSchedule()) == pytest.approx([LR] * STEPS)


def test_cosine_and_linear_reach_min_lr_at_the_last_step() -> None:
    cosine = rates(LRSchedule("cosine", min_lr=1e-4))
    expected = [1e-4 + (LR - 1e-4) * (1 + math.cos(math.pi * k / STEPS)) / 2 for k in range(STEPS)]
    assert cosine == pytest.approx(expected)
    linear = rates(LRSchedule("linear", min_lr=0.0))
    assert linear == pytest.approx([LR * (1 - k / STEPS) for k in range(STEPS)])


def test_exponential_is_tfs_smooth_exponential_decay() -> None:
    decayed = rates(LRSchedule("exponential", decay_factor=0.5, decay_steps=10))
    assert decayed == pytest.approx([LR * 0.5 ** (k / 10) for k in range(STEPS)])


def test_warmup_rises_linearly_then_the_decay_starts_from_lr() -> None:
    warm = rates(LRSchedule("cosine", warmup_steps=4))
    assert warm[:5] == pytest.approx([LR * (k + 1) / 5 for k in range(5)])
    span = STEPS - 4
    assert warm[4:] == pytest.approx(
        [LR * (1 + math.cos(math.pi * k / span)) / 2 for k in range(span)]
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (LRSchedule("step"), "training.lr_schedule.name='step'"),
        (LRSchedule(warmup_steps=STEPS), f"warmup_steps={STEPS}: expected 0 up to"),
        (LRSchedule("cosine", min_lr=LR), "min_lr=0.001: expected at least 0 and below"),
        (LRSchedule("exponential", decay_steps=0), "decay_steps=0"),
    ],
)
def test_bad_schedules_are_one_line(schedule: LRSchedule, expected: str) -> None:
    with pytest.raises(FfnopsError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        schedule.check(LR, STEPS)
