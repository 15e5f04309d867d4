"""``ffnops plugins``: what is installed, from where, with which hooks, schemes and executors.

``ffnops plugins template=DIR`` copies the example plugin (TIFF stacks, a complete distribution:
module, ``pyproject.toml``, README) into ``DIR``, as the start of your own (docs/plugins.md).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig

from ffnops.errors import FfnopsError
from ffnops.executor import executor_names
from ffnops.plugins import get_plugins
from ffnops.volumes import installed_schemes


def example_plugin() -> Path:
    """The example plugin's source, shipped with ffnops (``ffnops_plugins/examples``)."""
    return Path(str(resources.files("ffnops_plugins"))) / "examples" / "ffnops-tiff"


def copy_template(target: Path) -> None:
    source = example_plugin()
    if not (source / "pyproject.toml").is_file():
        raise FfnopsError(f"the example plugin is missing from this installation ({source})")
    if target.exists():
        raise FfnopsError(f"template={target}: it exists; name a new folder")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(source, target, ignore=ignore)
    print(f"copied the example plugin (ffnops-tiff) to {target}; see its README.md, then")
    print(f"  pip install {target}   # and `ffnops plugins` lists it")


def run(cfg: DictConfig) -> None:
    if cfg.template:
        copy_template(Path(cfg.template))
        return
    plugins = get_plugins()
    records = sorted(plugins.records.values(), key=lambda r: (r.broken, r.name))
    rows = [("plugin", "version", "schemes", "hooks")]
    for r in records:
        version = f"{r.distribution} {r.version}".strip() or "-"
        hooks = ", ".join(h.removeprefix("ffnops_") for h in r.hooks) or "-"
        status = "BROKEN" if r.broken else (", ".join(r.schemes) or "-")
        rows.append((r.name, version, status, hooks))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
    broken = [r for r in records if r.broken]
    for r in broken:
        print(f"\nbroken plugin {r.name} ({r.module}): {r.error}")
    print(f"\nexecutors (executor.name=...): {', '.join(executor_names()) or 'none'}")
    if cfg.verbose:
        print("\nschemes:")
        for s in installed_schemes(plugins):
            mode = "read/write" if s.read and s.write else ("read" if s.read else "write")
            example = f"   e.g. {s.example}" if s.example else ""
            print(f"  {s.name + '://':<16} {mode:<10} {s.description}{example}")
