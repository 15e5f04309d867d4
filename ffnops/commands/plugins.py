"""``ffnops plugins``: what is installed, from where, with which hooks, schemes and executors."""

from __future__ import annotations

from omegaconf import DictConfig

from ffnops.executor import executor_names
from ffnops.plugins import get_plugins
from ffnops.volumes import installed_schemes


def run(cfg: DictConfig) -> None:
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
