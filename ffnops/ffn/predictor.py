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
    ``compile`` runs the network through ``torch.compile`` (inductor) with its weights frozen
    as constants, so oneDNN fuses each convolution with the ReLU or residual sum after it
    (docs/inference.md measures it; each batch size compiles once, on its first call).
    On CUDA, TF32 is switched off so fp32 means fp32 (as the reference ran).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        compile: bool = False,
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
        self.network: nn.Module = self.model
        if compile:
            import torch._inductor.config as inductor_config

            # Freezing folds the weights into the graph: what lets inductor pre-pack them for
            # oneDNN and fuse conv+ReLU / conv+sum. Safe here: inference never changes weights.
            inductor_config.freezing = True
            # Frozen weights are guarded by identity: each new model would be one more
            # recompilation of the same forward until dynamo's limit (8) turns it back to eager.
            # One compiled network per process at a time, so start from a clean cache.
            torch._dynamo.reset()
            self.network = torch.compile(self.model, dynamic=False)  # type: ignore[assignment]
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
            logits = self.network(x)
        out: npt.NDArray[np.float32] = logits.float()[:, 0].cpu().numpy()
        return out
