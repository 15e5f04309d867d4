"""Every ffnops hook, one docstring each: the whole plugin API on one page.

A plugin is a module (or object) with functions marked ``@ffnops.hookimpl`` whose names match these
specs; it is found through the ``ffnops`` entry-point group, exactly as the built-in formats are.
Dispatch is by URI scheme: a plugin returns ``None`` for a URI whose scheme it does not serve and
the next plugin is asked (``firstresult``: the first non-None answer wins, later-registered plugins
are asked first, so a user's plugin can take over a built-in scheme).

Later hooks (executors, publishers) follow the same two patterns: a ``*_names``/``schemes`` hook
that says what a plugin offers, and a ``firstresult`` hook that does the work or returns None.
``docs/plugins.md`` documents every hook (a test keeps it so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ffnops.config.schemas import ExecutorConfig
    from ffnops.executor import Executor
    from ffnops.segmentation import SegmentationResult
    from ffnops.uri import Scheme, VolumeURI
    from ffnops.volume import Volume, VolumeSpec

hookspec = pluggy.HookspecMarker("ffnops")


@hookspec
def ffnops_schemes() -> list[Scheme]:
    """Names the URI schemes this plugin serves, whether it reads and/or writes them."""


@hookspec(firstresult=True)
def ffnops_open_volume(uri: VolumeURI, mode: str) -> Volume | None:
    """Opens an existing volume (``mode`` "r" or "r+"), or returns None if the scheme isn't ours."""


@hookspec(firstresult=True)
def ffnops_create_volume(uri: VolumeURI, spec: VolumeSpec, overwrite: bool) -> Volume | None:
    """Creates a volume for writing under a temporary name, renamed on ``commit()``; else None."""


@hookspec(firstresult=True)
def ffnops_write_segmentation(
    result: SegmentationResult, uri: VolumeURI, overwrite: bool
) -> str | None:
    """Output sink: writes a segmentation result atomically and returns where; else None."""


@hookspec
def ffnops_executor_names() -> list[str]:
    """Names the executors this plugin offers (``executor.name=...``)."""


@hookspec(firstresult=True)
def ffnops_make_executor(name: str, config: ExecutorConfig) -> Executor | None:
    """Builds the executor called ``name`` from the ``executor`` config group; else None."""


@hookspec
def ffnops_config_dirs() -> list[str]:
    """Extra Hydra config search-path entries (``pkg://my_lab.conf`` or ``file:///...``)."""
