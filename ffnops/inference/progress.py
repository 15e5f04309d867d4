"""Progress a person can read while inference runs: rate and ETA on the console."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from ffnops.ffn.canvas import Canvas, Predict


class SeedProgress:
    """The progress bar over one canvas's seeds, refreshed during long floods too (one object
    can take thousands of FOV steps); ``on_checkpoint`` runs at each checkpoint (where the
    tracking layer logs the running counts)."""

    def __init__(self, canvas: Canvas, seeds: int, first_seed: int) -> None:
        self.canvas = canvas
        self.calls_at_start = canvas.counters.network_calls
        self.started = self.last_shown = self.last_save = time.perf_counter()
        self.bar = tqdm(total=seeds, initial=first_seed, desc="infer", unit="seed")

    def show(self) -> None:
        counters = self.canvas.counters
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(
            objects=counters.objects,
            fov_steps=counters.network_calls,
            steps_s=f"{(counters.network_calls - self.calls_at_start) / elapsed:.2f}",
            refresh=True,
        )
        self.last_shown = time.perf_counter()

    def seed_done(self) -> None:
        self.bar.update(1)
        if time.perf_counter() - self.last_shown >= 1.0:
            self.show()

    def wrap(self, predict: Predict) -> Predict:
        def predict_and_show(inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            logits = predict(inputs)
            if time.perf_counter() - self.last_shown >= 1.0:
                self.show()
            return logits

        return predict_and_show

    def due_for_checkpoint(self, interval_s: float) -> bool:
        if interval_s <= 0 or time.perf_counter() - self.last_save < interval_s:
            return False
        self.last_save = time.perf_counter()
        return True

    def close(self) -> None:
        self.show()
        self.bar.close()


class BlockProgress:
    """The bar over one blockwise phase: blocks done (with rate and ETA), failures, voxels/s."""

    def __init__(self, phase: str, total: int, voxels_per_block: float) -> None:
        self.phase = phase
        self.voxels_per_block = voxels_per_block
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, desc=phase, unit="block")
        self.done_at_start: int | None = None

    def update(self, done: int, failed: int, skipped: int) -> float:
        """Moves the bar to ``done`` blocks; returns the voxels/s of blocks done in this run."""
        if self.done_at_start is None:
            self.done_at_start = skipped
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = (done - self.done_at_start) * self.voxels_per_block / elapsed
        self.bar.n = done
        self.bar.set_postfix(failed=failed, skipped=skipped, voxels_s=f"{rate:.3g}", refresh=True)
        return rate

    def close(self) -> None:
        self.bar.close()
