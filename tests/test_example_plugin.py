"""The example third-party plugin (``plugins/examples/ffnops-tiff``), installed for real with pip.

The example is pip-installed with ``--target`` into a temporary directory, and ffnops is run in
subprocesses with ``PYTHONPATH`` pointing there, so ffnops finds the plugin through its entry
point exactly as it would after a lab's ``pip install``. Subprocesses also avoid the per-process
cache of ``ffnops.plugins.get_plugins()``. A generated plugin that fails at import shows that a
broken plugin is reported and does not take ffnops down with it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from ffnops.errors import UnknownSchemeError
from ffnops.volumes import installed_schemes, open_volume

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "examples" / "ffnops-tiff"
TIMEOUT_S = 300


# ---- helpers -------------------------------------------------------------------------------------


def pip_install(source: Path, target: Path) -> None:
    """``pip install --target`` of a source tree, offline and without its dependencies."""
    # find_spec, not import: importing setuptools here would clash with an earlier distutils.
    for module, why in (("pip", "installing a plugin"), ("setuptools", "--no-build-isolation")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{why} needs {module}, which this environment lacks")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
        "--target",
        str(target),
        str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"pip install {source} failed:\n{result.stdout}{result.stderr}"


def env_with(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env.pop("FFNOPS_TRACE_HOOKS", None)
    return env


def run_ffnops(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ffnops", *args],
        cwd=cwd,
        env=env_with(site),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def run_python(site: Path, cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env_with(site),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def single_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failing ``ffnops`` command prints (exit 2, no traceback)."""
    assert result.returncode == 2, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiff_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, pip-installed once for this module into ``<tmp>/site``."""
    if not (EXAMPLE / "pyproject.toml").is_file():
        pytest.skip(
            f"example plugin source not found at {EXAMPLE}: the tests run without the "
            "ffnops source tree (e.g. against an installed wheel)"
        )
    work = tmp_path_factory.mktemp("ffnops_tiff")
    # pip builds a local directory in place (build/, *.egg-info); build a copy so that running
    # the tests never writes into the source tree.
    source = work / "ffnops-tiff"
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(EXAMPLE, source, ignore=ignore)
    site = work / "site"
    pip_install(source, site)
    return site


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated plugin distribution whose entry-point module raises ImportError."""
    work = tmp_path_factory.mktemp("broken_plugin")
    source = work / "ffnops-broken-example"
    source.mkdir()
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["setuptools>=69"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "ffnops-broken-example"
            version = "0.0.1"

            [project.entry-points.ffnops]
            broken = "ffnops_broken_example"

            [tool.setuptools]
            py-modules = ["ffnops_broken_example"]
            """
        )
    )
    (source / "ffnops_broken_example.py").write_text(
        'raise ImportError("needs libfrobnicate, which is not installed")\n'
    )
    site = work / "site"
    pip_install(source, site)
    return site


def write_stack(path: Path, data: np.ndarray, **kwargs: object) -> None:
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, data, photometric="minisblack", **kwargs)


def write_slices(directory: Path, data: np.ndarray) -> None:
    tifffile = pytest.importorskip("tifffile")
    directory.mkdir()
    for z in reversed(range(len(data))):  # created out of order: the plugin must sort by name
        tifffile.imwrite(directory / f"z{z:03d}.tif", data[z])


# ---- without the plugin --------------------------------------------------------------------------


def test_tiff_scheme_is_unknown_without_the_plugin(tmp_path: Path) -> None:
    if any(ep.name == "tiff" for ep in metadata.entry_points(group="ffnops")):
        pytest.skip("ffnops-tiff is installed in this environment, so tiff:// is known")
    stack = tmp_path / "stack.tif"
    stack.write_bytes(b"II*\x00")  # the file exists: the error is about the scheme, not the path
    uri = f"tiff://{stack}"
    with pytest.raises(UnknownSchemeError) as caught:
        open_volume(uri)
    message = str(caught.value)
    assert message.startswith(f"{uri}: no installed plugin can open scheme tiff://"), message
    listed = re.search(r"schemes that can read: (.+)\. See `ffnops plugins`\.$", message)
    assert listed is not None, message
    readable = [f"{s.name}://" for s in installed_schemes() if s.read]
    assert listed.group(1).split(", ") == readable
    assert "h5://" in readable
    assert "tiff://" not in readable


# ---- the example plugin, pip-installed -----------------------------------------------------------


def test_installed_plugin_is_listed(tiff_site: Path, tmp_path: Path) -> None:
    result = run_ffnops(tiff_site, tmp_path, "plugins", "verbose=true")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    row = r"^tiff\s+ffnops-tiff 0\.1\.0\s+tiff\s+create_volume, open_volume, schemes$"
    assert re.search(row, out, re.MULTILINE), out
    assert re.search(r"^  tiff://\s+read/write\s+.*e\.g\. tiff://stack\.tif$", out, re.MULTILINE)
    assert re.search(r"^hdf5\s+ffnops \S+\s+h5, hdf5\s", out, re.MULTILINE), out
    assert "BROKEN" not in out


READ_SCRIPT = """
import json, sys
import numpy as np
from ffnops.volume import BBox
from ffnops.volumes import open_volume

uri, box, out = sys.argv[1], BBox.parse(sys.argv[2]), sys.argv[3]
with open_volume(uri) as volume:
    np.save(out, volume.read(box))
    module = sys.modules[type(volume).__module__]
    print(json.dumps({**volume.describe(), "module_file": module.__file__}))
"""


@pytest.mark.parametrize("layout", ["stack", "slices"])
def test_installed_plugin_reads_a_box(tiff_site: Path, tmp_path: Path, layout: str) -> None:
    data = np.random.default_rng(0).integers(0, 60000, size=(7, 10, 12), dtype=np.uint16)
    if layout == "stack":
        path = tmp_path / "stack.tif"
        calibration = {"axes": "ZYX", "spacing": 40.0, "unit": "nm"}
        # ImageJ calibration: 40 nm between slices, 8 nm pixels in y, 6 nm in x.
        write_stack(path, data, imagej=True, resolution=(1 / 6, 1 / 8), metadata=calibration)
        expected = {"format": "TiffStackVolume", "voxel_size": [40.0, 8.0, 6.0]}
    else:
        path = tmp_path / "slices"
        write_slices(path, data)
        (path / "notes.txt").write_text("not a slice: ignored")
        expected = {"format": "TiffDirectoryVolume", "voxel_size": [1.0, 1.0, 1.0]}
    box_file = tmp_path / "box.npy"
    result = run_python(
        tiff_site, tmp_path, READ_SCRIPT, f"tiff://{path}", "2:5,3:9,1:11", str(box_file)
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert Path(info["module_file"]).parent == tiff_site  # served by the pip-installed module
    assert info["format"] == expected["format"]
    assert info["shape"] == [7, 10, 12]
    assert info["dtype"] == "uint16"
    assert info["chunks"] == [1, 10, 12]
    assert info["voxel_size"] == pytest.approx(expected["voxel_size"])
    np.testing.assert_array_equal(np.load(box_file), data[2:5, 3:9, 1:11])


def test_ffnops_info_prints_the_shape(tiff_site: Path, tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    write_stack(path, np.zeros((5, 6, 7), dtype=np.uint8))
    result = run_ffnops(tiff_site, tmp_path, "info", f"uri=tiff://{path}")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["uri"] == f"tiff://{path}"
    assert info["shape"] == [5, 6, 7]
    assert info["dtype"] == "uint8"
    assert info["format"] == "TiffStackVolume"


def test_reads_only_the_slices_asked_for(tiff_site: Path, tmp_path: Path) -> None:
    data = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    directory = tmp_path / "slices"
    write_slices(directory, data)
    (directory / "z004.tif").write_bytes(b"this slice is damaged")
    uri = f"tiff://{directory}"

    first_four = run_ffnops(
        tiff_site, tmp_path, "info", f"uri={uri}", "stats=true", "bbox=0:4,0:4,0:3"
    )
    assert first_four.returncode == 0, first_four.stderr
    stats = json.loads(first_four.stdout)["stats"]
    assert (stats["min"], stats["max"]) == (int(data[:4].min()), int(data[:4].max()))

    everything = run_ffnops(tiff_site, tmp_path, "info", f"uri={uri}", "stats=true")
    error = single_error_line(everything)
    assert error.startswith(f"ffnops info: error: {uri}: {directory / 'z004.tif'} is not a ")


def test_a_damaged_page_is_read_only_when_asked_for(tiff_site: Path, tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    data = np.random.default_rng(1).integers(0, 255, size=(4, 16, 16), dtype=np.uint8)
    path = tmp_path / "stack.tif"
    write_stack(path, data, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[3]
        offset, count = last.dataoffsets[0], last.databytecounts[0]
    with path.open("r+b") as handle:  # damage the compressed pixels of page 3 only
        handle.seek(offset)
        handle.write(b"\xff" * count)
    uri = f"tiff://{path}"

    ok = run_ffnops(tiff_site, tmp_path, "info", f"uri={uri}", "stats=true", "bbox=0:3,0:16,0:16")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stats"]["max"] == int(data[:3].max())

    error = single_error_line(run_ffnops(tiff_site, tmp_path, "info", f"uri={uri}", "stats=true"))
    assert error.startswith(f"ffnops info: error: {uri}: cannot decode page 3 of {path} (")


def _missing(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "missing.tif"
    return path, f"no such TIFF file or directory: {path}; expected a multi-page .tif stack"


def _empty_directory(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "slices"
    path.mkdir()
    (path / "README.txt").write_text("no slices here")
    return path, f"directory {path} contains no .tif/.tiff files; expected one 2-D TIFF per z"


def _mixed_stack(tmp_path: Path) -> tuple[Path, str]:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((4, 3), np.uint8))
        writer.write(np.zeros((5, 3), np.uint8))
    return path, (
        f"page 1 of {path} has shape (5, 3) and dtype uint8, expected shape (4, 3) and dtype "
        "uint8 like page 0"
    )


def _mixed_slices(tmp_path: Path) -> tuple[Path, str]:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "slices"
    path.mkdir()
    tifffile.imwrite(path / "a.tif", np.zeros((4, 3), np.uint8))
    tifffile.imwrite(path / "b.tif", np.zeros((5, 3), np.uint16))
    return path, (
        f"slice {path / 'b.tif'} has shape (5, 3) and dtype uint16, expected shape (4, 3) and "
        f"dtype uint8 like {path / 'a.tif'}"
    )


@pytest.mark.parametrize(
    ("make", "stats"),
    [(_missing, False), (_empty_directory, False), (_mixed_stack, False), (_mixed_slices, True)],
    ids=["missing", "empty-directory", "mixed-stack", "mixed-slices"],
)
def test_bad_input_is_one_line_naming_the_file(
    tiff_site: Path, tmp_path: Path, make: object, stats: bool
) -> None:
    path, expected = make(tmp_path)  # type: ignore[operator]
    uri = f"tiff://{path}"
    result = run_ffnops(tiff_site, tmp_path, "info", f"uri={uri}", f"stats={str(stats).lower()}")
    error = single_error_line(result)
    assert error.startswith(f"ffnops info: error: {uri}: {expected}"), error
    assert result.stdout.strip() == ""


WRITE_SCRIPT = """
import json, sys
import numpy as np
from ffnops.errors import VolumeExistsError
from ffnops.volume import VolumeSpec
from ffnops.volumes import create_volume, open_volume, write_array

out, aborted, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 250).astype(dtype)
report = {}
write_array("tiff://" + out, data, voxel_size=(30.0, 4.0, 5.0))
with open_volume("tiff://" + out) as volume:
    report["equal"] = bool(np.array_equal(volume.read(), data))
    report["dtype"] = volume.dtype.name
    report["voxel_size"] = list(volume.voxel_size)
try:
    write_array("tiff://" + out, data)
    report["refused"] = ""
except VolumeExistsError as exc:
    report["refused"] = str(exc)
write_array("tiff://" + out, data[:2], overwrite=True)
try:
    with create_volume("tiff://" + aborted, VolumeSpec(shape=(2, 3, 4), dtype=dtype)) as volume:
        volume.write((0, 0, 0), np.ones((2, 3, 4), dtype))
        raise RuntimeError("stop before commit")
except RuntimeError:
    pass
print(json.dumps(report))
"""


@pytest.mark.parametrize("dtype", ["uint8", "float32", "uint64", "bool"])
def test_writes_a_stack_atomically(tiff_site: Path, tmp_path: Path, dtype: str) -> None:
    tifffile = pytest.importorskip("tifffile")
    out, aborted = tmp_path / "out" / "stack.tif", tmp_path / "out" / "aborted.tif"
    result = run_python(tiff_site, tmp_path, WRITE_SCRIPT, str(out), str(aborted), dtype)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["equal"] is True
    assert report["dtype"] == dtype
    assert report["voxel_size"] == pytest.approx([30.0, 4.0, 5.0])
    assert report["refused"] == (
        f"tiff://{out}: {out} already exists; pass overwrite=true to replace it"
    )
    # The overwrite replaced the file; the aborted volume and every partial name left nothing.
    assert sorted(p.name for p in out.parent.iterdir()) == ["stack.tif"]
    data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 250).astype(dtype)
    np.testing.assert_array_equal(tifffile.imread(out), data[:2])


def test_ffnops_convert_writes_tiff(tiff_site: Path, tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    h5py = pytest.importorskip("h5py")
    source = tmp_path / "source.h5"
    data = np.random.default_rng(2).integers(0, 255, size=(9, 20, 30), dtype=np.uint8)
    with h5py.File(source, "w") as handle:
        handle.create_dataset("raw", data=data)
        handle["raw"].attrs["resolution"] = [40.0, 8.0, 8.0]
    out = tmp_path / "raw.tif"
    result = run_ffnops(
        tiff_site, tmp_path, "convert", f"src=h5://{source}#raw", f"dst=tiff://{out}"
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote tiff://{out}: image, shape (9, 20, 30)" in result.stdout
    np.testing.assert_array_equal(tifffile.imread(out), data)
    info = json.loads(run_ffnops(tiff_site, tmp_path, "info", f"uri=tiff://{out}").stdout)
    assert info["voxel_size"] == pytest.approx([40.0, 8.0, 8.0])


# ---- a broken plugin -----------------------------------------------------------------------------


def test_broken_plugin_is_listed_with_its_reason(broken_site: Path, tmp_path: Path) -> None:
    result = run_ffnops(broken_site, tmp_path, "plugins")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^broken\s+ffnops-broken-example 0\.0\.1\s+BROKEN\s+-$", out, re.M), out
    reason = (
        "broken plugin broken (ffnops_broken_example): "
        "ImportError: needs libfrobnicate, which is not installed"
    )
    assert reason in out.splitlines(), out
    assert re.search(r"^hdf5\s+ffnops \S+\s+h5, hdf5\s", out, re.M), out


def test_other_plugins_work_beside_a_broken_one(broken_site: Path, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("raw", data=np.zeros((3, 4, 5), np.uint8))
    result = run_ffnops(broken_site, tmp_path, "info", f"uri=h5://{path}#raw")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["format"], info["shape"]) == ("HDF5Volume", [3, 4, 5])
