"""What every benchmark prints first: the CPU and the library versions it measured."""

from __future__ import annotations

import importlib.metadata
import os

from ffnops.ffn.cpu import cpu_model

__all__ = ["cpu_model", "library_versions", "load_average"]


def library_versions(*names: str) -> str:
    """``"ffnops 0.1.0, numpy 2.4.6, ..."`` for the installed distributions named."""
    return ", ".join(f"{n} {importlib.metadata.version(n)}" for n in names)


def load_average() -> str:
    """The 1/5/15-minute load: figures taken under other load are noise."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
