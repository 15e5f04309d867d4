"""ffnops.testing's conformance suite, run on every built-in format and on the example plugin."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ffnops.commands.plugins import example_plugin
from ffnops.plugins import get_plugins
from ffnops.testing import check_volume_plugin


@pytest.mark.parametrize(
    ("scheme", "suffix", "cases"),
    [
        ("h5", ".h5#vol", (("uint8", "image"), ("float32", "image"), ("uint64", "segmentation"))),
        ("zarr", ".zarr", (("uint8", "image"), ("uint64", "segmentation"))),
        ("n5", ".n5", (("uint16", "image"), ("uint64", "segmentation"))),
        ("precomputed", "", (("uint8", "image"), ("uint32", "segmentation"))),
    ],
)
def test_built_in_formats_conform(
    tmp_path: Path, scheme: str, suffix: str, cases: tuple[tuple[str, str], ...]
) -> None:
    check_volume_plugin(lambda name: f"{scheme}://{tmp_path}/{name}{suffix}", cases=cases)


@pytest.fixture
def tiff_plugin() -> Iterator[None]:
    """The example plugin as shipped (``ffnops plugins template=DIR`` copies it), registered
    in this process as its entry point would register it."""
    spec = importlib.util.spec_from_file_location(
        "ffnops_tiff", example_plugin() / "ffnops_tiff.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manager = get_plugins().manager
    manager.register(module, name="tiff")
    yield
    manager.unregister(module)


def test_the_example_plugin_conforms(tmp_path: Path, tiff_plugin: None) -> None:
    check_volume_plugin(
        lambda name: f"tiff://{tmp_path}/{name}.tif",
        cases=(("uint8", "image"), ("uint16", "image")),
        stores_offset=False,  # TIFF has no place for one
    )


def test_the_suite_catches_a_plugin_that_is_not_atomic(tmp_path: Path) -> None:
    """A check that could not fail would prove nothing: a format whose created volume is
    readable before commit() is caught."""
    import ffnops_plugins.tensorstore_volume as tensorstore_volume

    original = tensorstore_volume.fresh_partial
    tensorstore_volume.fresh_partial = lambda final: Path(final)  # write in place: not atomic
    try:
        with pytest.raises(AssertionError, match="opened before commit"):
            check_volume_plugin(lambda name: f"zarr://{tmp_path}/{name}.zarr")
    finally:
        tensorstore_volume.fresh_partial = original


def test_plugins_template_copies_the_example_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ffnops.cli import main

    target = tmp_path / "my-format"
    handlers = list(logging.root.handlers)  # Hydra's logging of the in-process command, undone
    try:
        with pytest.raises(SystemExit) as done:
            main(["plugins", f"template={target}"])
            raise SystemExit(0)
        assert done.value.code == 0
        assert (target / "ffnops_tiff.py").is_file() and (target / "pyproject.toml").is_file()
        assert f"pip install {target}" in capsys.readouterr().out
        with pytest.raises(SystemExit) as refused:
            main(["plugins", f"template={target}"])
        assert refused.value.code == 2 and "it exists" in capsys.readouterr().err
    finally:
        logging.root.handlers = handlers
