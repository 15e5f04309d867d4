"""Runs an FFN network on batches of FOVs: numpy in, numpy out, on the chosen device/precision."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ffnops.ffn.cpu import cpu_has_fast_bf16


class TorchPredictor:
    """``predict(inputs (B, 2, f, f, f)) -> logits (B, f, f, f)``, float32 numpy both ways.

    ``precision="bf16"`` runs the network under bfloat16 autocast (fast on CPUs with AMX /
    AVX512-BF16 and on GPUs; changes results slightly). ``channels_last`` uses the 3-D
    channels-last layout, which brings the fp32 CPU forward to parity with Google's TF code.
    On CUDA, TF32 is switched off so fp32 means fp32 (as the reference ran).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.channels_last = channels_last
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            warnings.warn(
                "bf16 on a CPU without AVX512-BF16 or AMX is emulated and far slower than fp32 "
                "(50x measured on an AVX2-only CPU); use executor=cpu (fp32) here",
                stacklevel=2,
            )
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False

    @torch.inference_mode()
    def __call__(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            logits = self.model(x)
        out: npt.NDArray[np.float32] = logits.float()[:, 0].cpu().numpy()
        return out
