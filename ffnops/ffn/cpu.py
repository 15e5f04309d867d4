"""What the CPU is and can do: these machines differ from day to day, and bf16 is fast only on
some of them."""

from __future__ import annotations

import functools
import platform
import shutil
from pathlib import Path


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name, for benchmark and report headers."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 is 2-6x faster than fp32. Without them
    oneDNN emulates bf16, which measured 50x *slower* than fp32 on an AVX2-only EPYC."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def cpu_has_avx512() -> bool:
    """True where oneDNN's fp32 convolutions can use AVX-512: a depth-12 FFN forward measured
    0.09-0.13 s on such CPUs here and 0.6 s on an AVX2-only EPYC (2 threads)."""
    return "avx512f" in _cpuinfo().split()


def cpp_compiler() -> str | None:
    """The C++ compiler torch's inductor would build CPU kernels with, or None if there is none
    (``torch.compile`` on a CPU needs one; ``CXX``, read when torch starts, names another).
    Searched as inductor searches its ``cpp.cxx`` list, without its cache."""
    from torch._inductor import config

    names = config.cpp.cxx if isinstance(config.cpp.cxx, list | tuple) else (config.cpp.cxx,)
    return next((name for name in names if name and shutil.which(name)), None)
