"""The plugin guide documents every hook, and the README lists every runtime dependency."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import ffnops.hookspecs

ROOT = Path(__file__).resolve().parents[1]


def _read(relative: str) -> str:
    path = ROOT / relative
    if not path.exists():
        pytest.skip(f"{relative} is not here (tests run without the source tree)")
    return path.read_text()


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    guide = _read("docs/plugins.md")
    hooks = [name for name in vars(ffnops.hookspecs) if name.startswith("ffnops_")]
    undocumented = [h for h in hooks if not re.search(rf"^#+ .*`{h}", guide, re.MULTILINE)]
    assert not undocumented, f"hooks without a section in docs/plugins.md: {undocumented}"


def test_readme_explains_every_dependency() -> None:
    readme = _read("README.md")
    project = tomllib.loads(_read("pyproject.toml"))["project"]
    names = [re.split(r"[<>=!~\[ ]", d)[0] for d in project["dependencies"]]
    missing = [n for n in names if f"`{n}`" not in readme]
    assert not missing, f"dependencies not explained in README.md: {missing}"


def test_every_subpackage_ships_in_the_wheel() -> None:
    packages = set(tomllib.loads(_read("pyproject.toml"))["tool"]["setuptools"]["packages"])
    on_disk = {"ffnops." + p.parent.name for p in (ROOT / "ffnops").glob("*/__init__.py")}
    assert on_disk <= packages, f"add to [tool.setuptools] packages: {sorted(on_disk - packages)}"
