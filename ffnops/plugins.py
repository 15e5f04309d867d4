"""The one plugin manager: built-in plugins and third-party ones, loaded the same way.

Everything in the ``ffnops`` entry-point group is loaded (ffnops's own formats are declared there
too); a plugin that fails to import is recorded as broken with its reason, and ffnops still starts.
If ffnops runs from a source tree whose entry points are not installed, the built-ins are
registered directly. ``FFNOPS_TRACE_HOOKS=1`` prints every hook call and its result to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from types import ModuleType

import pluggy

from ffnops import hookspecs

ENTRY_POINT_GROUP = "ffnops"
TRACE_ENV = "FFNOPS_TRACE_HOOKS"

BUILTIN_PLUGINS: dict[str, str] = {
    "hdf5": "ffnops_plugins.hdf5",
    "n5": "ffnops_plugins.n5",
    "zarr": "ffnops_plugins.zarr",
    "precomputed": "ffnops_plugins.precomputed",
    "volume_sink": "ffnops_plugins.volume_sink",
    "google_npz": "ffnops_plugins.google_npz",
    "local_executor": "ffnops_plugins.local_executor",
    "daisy_executor": "ffnops_plugins.daisy_executor",
}


@dataclass
class PluginRecord:
    """What ``ffnops plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    schemes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def broken(self) -> bool:
        return bool(self.error)


@dataclass
class Plugins:
    """The plugin manager plus what loading found (including broken plugins)."""

    manager: pluggy.PluginManager
    records: dict[str, PluginRecord]

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _register(pm: pluggy.PluginManager, record: PluginRecord, module: ModuleType) -> None:
    try:
        pm.register(module, name=record.name)
    except Exception as exc:  # a hook with a wrong signature, a duplicate name, ...
        record.error = _error_text(exc)


def inspect_plugin(pm: pluggy.PluginManager, record: PluginRecord) -> None:
    """Fills in a registered plugin's hooks and schemes; unregisters it if it is unusable."""
    plugin = pm.get_plugin(record.name)
    if plugin is None:
        return
    callers = pm.get_hookcallers(plugin) or []
    record.hooks = sorted(caller.name for caller in callers)
    unknown = [caller.name for caller in callers if caller.spec is None]
    if unknown:  # most likely a typo in a hook name: say so rather than never calling it
        record.error = f"implements unknown hook(s) {', '.join(unknown)}; see ffnops/hookspecs.py"
        pm.unregister(plugin)
        return
    if hasattr(plugin, "ffnops_schemes"):
        try:
            record.schemes = [s.name for s in plugin.ffnops_schemes()]
        except Exception as exc:
            record.error = f"ffnops_schemes failed: {_error_text(exc)}"
            pm.unregister(plugin)


def build_plugin_manager(load_entry_points: bool = True) -> Plugins:
    """Registers the built-ins and every ``ffnops`` entry point; never raises for a bad plugin."""
    pm = pluggy.PluginManager("ffnops")
    pm.add_hookspecs(hookspecs)
    records: dict[str, PluginRecord] = {}

    entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP) if load_entry_points else []
    for ep in entry_points:
        if ep.name in records:
            continue
        dist = ep.dist
        record = PluginRecord(
            name=ep.name,
            module=ep.value,
            distribution=dist.name if dist else "",
            version=dist.version if dist else "",
        )
        records[ep.name] = record
        try:
            plugin = ep.load()
        except Exception as exc:
            record.error = _error_text(exc)
            continue
        _register(pm, record, plugin)

    for name, module_name in BUILTIN_PLUGINS.items():
        if name in records:
            continue
        from ffnops import __version__

        record = PluginRecord(name, module_name, distribution="ffnops", version=__version__)
        records[name] = record
        try:
            _register(pm, record, importlib.import_module(module_name))
        except Exception as exc:
            record.error = _error_text(exc)

    for record in records.values():
        inspect_plugin(pm, record)

    if os.environ.get(TRACE_ENV, "") not in ("", "0", "false"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return Plugins(pm, records)


@cache
def get_plugins() -> Plugins:
    """The process-wide plugin manager (built once, on first use)."""
    return build_plugin_manager()


def reset_plugins() -> None:
    """Forgets the cached manager, e.g. after installing a plugin in a running process."""
    get_plugins.cache_clear()
