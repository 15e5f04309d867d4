"""The plugin manager: built-ins arrive through entry points, user plugins take precedence,
broken plugins are reported, and hook calls can be traced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import ffnops.hookspecs
from ffnops import hookimpl
from ffnops.plugins import BUILTIN_PLUGINS, PluginRecord, build_plugin_manager, inspect_plugin
from ffnops.segmentation import SegmentationResult
from ffnops.uri import Scheme, VolumeURI
from ffnops.volume import BBox, Volume
from ffnops.volumes import installed_schemes, open_volume, write_segmentation


def test_builtins_are_registered_through_the_entry_point_group() -> None:
    plugins = build_plugin_manager()
    for name, module in BUILTIN_PLUGINS.items():
        record = plugins.records[name]
        assert record.module == module
        assert record.distribution == "ffnops" and record.version
        assert not record.broken
    assert plugins.records["hdf5"].schemes == ["h5", "hdf5"]
    assert "ffnops_open_volume" in plugins.records["zarr"].hooks


def test_builtins_register_without_entry_points() -> None:
    plugins = build_plugin_manager(load_entry_points=False)
    assert {s.name for s in installed_schemes(plugins)} >= {"h5", "n5", "zarr", "precomputed"}


class _ConstantVolume(Volume):
    def _read(self, box: BBox) -> np.ndarray:
        return np.full(box.size, 42, dtype=self.dtype)


def test_a_later_plugin_can_take_over_a_builtin_scheme() -> None:
    class Override:
        @hookimpl
        def ffnops_schemes(self) -> list[Scheme]:
            return [Scheme("zarr", "a lab's own zarr reader")]

        @hookimpl
        def ffnops_open_volume(self, uri: VolumeURI, mode: str) -> Volume | None:
            return _ConstantVolume(uri.raw, (2, 3, 4), "uint8") if uri.scheme == "zarr" else None

    plugins = build_plugin_manager()
    plugins.manager.register(Override(), name="override")
    volume = open_volume("zarr:///nowhere", plugins=plugins)
    assert volume.shape == (2, 3, 4) and (volume.read() == 42).all()


def test_volume_sink_writes_segmentations_through_any_writer(tmp_path: Path) -> None:
    labels = np.zeros((8, 8, 8), np.int64)
    labels[2:6, 2:6, 2:6] = 5
    result = SegmentationResult(labels, offset=(1, 2, 3), voxel_size=(8.0, 8.0, 8.0))
    written = write_segmentation(result, f"precomputed://{tmp_path}/seg")
    assert written == f"precomputed://{tmp_path}/seg"
    with open_volume(written) as volume:
        assert volume.dtype == np.uint32 and volume.offset == (1, 2, 3)
        np.testing.assert_array_equal(volume.read(), labels)


def test_trace_env_prints_hook_calls(tmp_path: Path) -> None:
    env = {**os.environ, "FFNOPS_TRACE_HOOKS": "1"}
    code = "from ffnops.volumes import installed_schemes; installed_schemes()"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "ffnops_schemes" in proc.stderr
    assert "finish ffnops_schemes" in proc.stderr


def test_every_hookspec_has_a_docstring() -> None:
    specs = [v for k, v in vars(ffnops.hookspecs).items() if k.startswith("ffnops_")]
    assert len(specs) >= 5
    assert all((spec.__doc__ or "").strip() for spec in specs)


def test_plugin_answers_none_for_other_schemes() -> None:
    import ffnops_plugins.hdf5 as hdf5

    assert hdf5.ffnops_open_volume(uri=VolumeURI.parse("zarr:///x"), mode="r") is None
    assert hdf5.ffnops_open_volume(uri=VolumeURI.parse("/data/x.zarr"), mode="r") is None


def test_a_misspelt_hook_marks_the_plugin_broken() -> None:
    class Typo:
        @hookimpl
        def ffnops_open_volum(self, uri: VolumeURI, mode: str) -> None:  # the typo under test
            return None

    plugins = build_plugin_manager()
    plugins.manager.register(Typo(), name="typo")
    record = PluginRecord("typo", "typo_module")
    inspect_plugin(plugins.manager, record)
    assert record.broken
    assert "unknown hook(s) ffnops_open_volum" in record.error
    assert plugins.manager.get_plugin("typo") is None
