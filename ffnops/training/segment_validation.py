"""Checkpoint selection by segmentation: every N steps, segment a validation box and keep the best.

The patch metrics of ``val/`` (F1 of single FOV predictions) do not say how well a network
floods whole objects; what a lab cares about is the segmentation. This callback runs the
inference method itself (one canvas, the seed policy and acceptance rules of ``inference``)
over a labelled validation box, with context around it, with the current weights; scores the
box (adapted Rand error, VOI); logs ``val/adapted_rand_error``, ``val/voi_split``,
``val/voi_merge`` and ``val/objects`` at that step; and keeps the weights of the best score.
It validates at the first step too, so a fine-tuning run that never beats its starting model
keeps the starting weights. The kept weights and score are part of Lightning's checkpoint (a
resumed run keeps its best). Rank 0 validates; the others wait at their next synchronisation.
docs/training.md, "Checkpoint selection".
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytorch_lightning as pl
import torch
from tqdm import tqdm

from ffnops.ffn.canvas import Canvas, run_canvas
from ffnops.ffn.metrics import SegmentationScores, score_segmentation
from ffnops.ffn.options import InferenceOptions
from ffnops.ffn.predictor import TorchPredictor
from ffnops.ffn.seeds import policy_seeds
from ffnops.volume import BBox

# Scores the selection can use; lower is better for each.
SELECTION_METRICS = ("adapted_rand_error", "voi_split", "voi_merge", "voi")


@dataclass(frozen=True)
class ValidationBox:
    """The labelled box validation scores, and the image it segments: the box with context
    around it, normalised as training sees it. ``scored`` is where the box lies in ``image``
    (None: all of it); ``labels`` are the box's."""

    image: npt.NDArray[np.float32]
    labels: npt.NDArray[np.integer]
    name: str  # where it is, for logs and tags: "volume[z0:z1,y0:y1,x0:x1]"
    scored: BBox | None = None
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)  # for the seeds' distance transform


@dataclass(frozen=True)
class Selection:
    """The best validation so far: its step, score and the weights it had."""

    step: int
    value: float
    scores: dict[str, float]
    weights: dict[str, torch.Tensor]


class SegmentValidation(pl.Callback):
    """Segments ``box`` every ``every_n_steps`` and keeps the weights of the lowest ``metric``."""

    def __init__(
        self,
        box: ValidationBox,
        fov_size: tuple[int, int, int],
        deltas: tuple[int, int, int],
        options: InferenceOptions,
        every_n_steps: int,
        metric: str = "adapted_rand_error",
        min_overlap: int = 100,
    ) -> None:
        if metric not in SELECTION_METRICS:
            raise ValueError(f"metric must be one of {', '.join(SELECTION_METRICS)}, got {metric}")
        self.box = box
        self.fov_size = fov_size
        self.deltas = deltas
        self.options = options
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.metric = metric
        self.min_overlap = min_overlap
        self.best: Selection | None = None
        self.validated_step = -1

    # ---- when -------------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == 0:
            self.validate(trainer, pl_module)  # the starting weights are a candidate too

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.validate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.validate(trainer, pl_module)  # the last weights, unless just validated

    # ---- what -------------------------------------------------------------------------------

    def segment(self, model: torch.nn.Module) -> tuple[SegmentationScores, int, float]:
        """The box segmented with ``model`` (a copy runs, in eval mode, on the CPU or the
        training device): scores, network calls, seconds."""
        started = time.perf_counter()
        device = next(model.parameters()).device
        network = copy.deepcopy(model).float()
        # The predictor turns TF32 off for fp32 on CUDA (as the reference ran); training keeps
        # its own setting.
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        try:
            predictor = TorchPredictor(network, device, "fp32", channels_last=device.type == "cpu")
            canvas = Canvas(self.box.image, self.fov_size, self.deltas, self.options)
            seeds = policy_seeds(
                self.options, self.box.image, canvas.fov_radius, voxel_size=self.box.voxel_size
            )
            run_canvas(canvas.segment_all(seeds), predictor)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        segmentation = canvas.final_segmentation()
        if self.box.scored is not None:
            segmentation = segmentation[self.box.scored.slices]
        scores = score_segmentation(segmentation, self.box.labels, self.min_overlap)
        return scores, canvas.counters.network_calls, time.perf_counter() - started

    def validate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if step == self.validated_step or not trainer.is_global_zero:
            return
        self.validated_step = step
        model = pl_module.model
        assert isinstance(model, torch.nn.Module)
        was_training = model.training
        with torch.no_grad():
            scores, calls, seconds = self.segment(model)
        model.train(was_training)
        value = float(getattr(scores, self.metric))
        if math.isnan(value):
            value = math.inf  # never the best
        metrics = {
            "val/adapted_rand_error": scores.adapted_rand_error,
            "val/voi_split": scores.voi_split,
            "val/voi_merge": scores.voi_merge,
            "val/voi": scores.voi,
            "val/objects": float(scores.objects),
            "val/segment_seconds": seconds,
        }
        if self.best is None or value < self.best.value:
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best = Selection(step, value, metrics, weights)
        metrics[f"val/best_{self.metric}"] = self.best.value
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=step)
        tqdm.write(  # above the progress bar
            f"validation at step {step} on {self.box.name}: {self.metric} {value:.4f}, "
            f"{scores.objects} objects ({calls} FOV steps, {seconds:.0f} s); best "
            f"{self.best.value:.4f} at step {self.best.step}"
        )

    # ---- resume -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.best is None:
            return {}
        best = self.best
        return {
            "step": best.step,
            "value": best.value,
            "scores": best.scores,
            "weights": best.weights,
            "validated_step": self.validated_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self.best = Selection(
                int(state_dict["step"]),
                float(state_dict["value"]),
                dict(state_dict["scores"]),
                dict(state_dict["weights"]),
            )
            self.validated_step = int(state_dict["validated_step"])
