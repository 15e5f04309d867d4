"""ffnops: Flood-Filling Networks (Januszewski et al.) as a platform.

The public plugin marker lives here so that a plugin needs only ``from ffnops import hookimpl``.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("ffnops")
"""Marks a function in a plugin module as the implementation of an ffnops hook."""

__all__ = ["__version__", "hookimpl"]
