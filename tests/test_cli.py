"""The ffnops command line, run as a user runs it (a subprocess of the installed package)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffnops.volumes import open_volume, write_array


def ffnops(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ffnops", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    proc = ffnops("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("plugins", "info", "convert"):
        assert f"\n  {command} " in proc.stdout


def test_command_help_shows_config_groups(tmp_path: Path) -> None:
    proc = ffnops("convert", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "== Configuration groups ==" in proc.stdout
    for group in ("dataset:", "model: convstack_3d, tiny", "trainer: cpu, ddp, ddp_sim, gpu"):
        assert group in proc.stdout


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    proc = ffnops("convert", "--cfg", "job", "dst=zarr://x.zarr", "block=[32,32,32]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dst: zarr://x.zarr" in proc.stdout
    assert "block:\n- 32\n- 32\n- 32" in proc.stdout


def test_convert_default_writes_the_sample_as_precomputed(tmp_path: Path) -> None:
    proc = ffnops("convert", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "convert: 100%" in proc.stderr  # the progress bar ran to the end
    with open_volume(f"precomputed://{tmp_path}/outputs/sample/image") as volume:
        assert volume.shape == (160, 128, 128) and volume.voxel_size == (10.0, 10.0, 10.0)
    assert not (tmp_path / ".hydra").exists() and not (tmp_path / "outputs" / ".hydra").exists()


def test_convert_bbox_of_labels_to_segmentation(tmp_path: Path, em_labels: np.ndarray) -> None:
    write_array(f"h5://{tmp_path}/in.h5#labels", em_labels, offset=(1, 1, 1))
    proc = ffnops(
        "convert",
        f"src=h5://{tmp_path}/in.h5#labels",
        f"dst=precomputed://{tmp_path}/seg",
        "bbox=2:30,0:40,5:45",
        "block=[8,16,16]",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "seg/info").read_text())
    assert info["type"] == "segmentation"
    with open_volume(f"precomputed://{tmp_path}/seg") as volume:
        assert volume.offset == (3, 1, 6)
        np.testing.assert_array_equal(volume.read(), em_labels[2:30, 0:40, 5:45])


def test_info_reports_shape_and_stats(tmp_path: Path, em_image: np.ndarray) -> None:
    write_array(f"n5://{tmp_path}/v.n5", em_image, voxel_size=(8, 8, 8))
    proc = ffnops(
        "info", f"uri=n5://{tmp_path}/v.n5", "stats=true", "bbox=0:4,0:4,0:4", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["shape"] == [32, 40, 48] and info["voxel_size"] == [8.0, 8.0, 8.0]
    assert info["stats"]["max"] == int(em_image[:4, :4, :4].max())


@pytest.mark.parametrize(
    "args, expected",
    [
        (["info", "uri=h5://missing.h5#raw"], "file not found: missing.h5"),
        (["info", "uri=s3x://bucket/x"], "no installed plugin can open scheme s3x://"),
        (["info", "uri=x", "urii=y"], "Key 'urii' not in 'InfoCommand'"),
        (["info", "stats=perhaps"], "Value 'perhaps' is not a valid bool"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_traceback(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    proc = ffnops(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_existing_output_is_refused(tmp_path: Path) -> None:
    assert ffnops("convert", "dst=zarr://out.zarr", cwd=tmp_path).returncode == 0
    proc = ffnops("convert", "dst=zarr://out.zarr", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists; pass overwrite=true" in proc.stderr


def test_multirun_sweeps_every_value(tmp_path: Path) -> None:
    proc = ffnops("convert", "-m", "dst=zarr://a.zarr,n5://b.n5", "bbox=0:8,0:8,0:8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for uri in ("zarr://a.zarr", "n5://b.n5"):
        with open_volume(f"{uri.split('://')[0]}://{tmp_path}/{uri.split('://')[1]}") as volume:
            assert volume.shape == (8, 8, 8)


def test_user_config_dir_adds_options(tmp_path: Path) -> None:
    mine = tmp_path / "my_conf" / "paths"
    mine.mkdir(parents=True)
    (mine / "scratch.yaml").write_text(
        "defaults:\n  - /schema/paths@_here_\n  - _self_\noutput_dir: /scratch/lab\n"
    )
    env = {"FFNOPS_CONFIG_PATH": str(tmp_path / "my_conf")}
    proc = ffnops("convert", "paths=scratch", "--cfg", "job", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "output_dir: /scratch/lab" in proc.stdout
    assert ffnops("convert", "paths=scratch", "--cfg", "job", cwd=tmp_path).returncode != 0


def test_values_hydra_would_misread_are_quoted() -> None:
    from ffnops.cli import quote_values

    assert quote_values(["uri=h5://a.h5#raw", "bbox=0:8,0:8,0:8", "x=1,2"]) == [
        "uri='h5://a.h5#raw'",
        "bbox='0:8,0:8,0:8'",
        "x=1,2",  # a sweep stays a sweep
    ]
    assert quote_values(["volumes=[a:h5://p.h5#x,b:n5://q.n5]"]) == [
        "volumes=['a:h5://p.h5#x',b:n5://q.n5]"
    ]
    # overrides passed on to a step (the quickstart's train.overrides)
    assert quote_values(["train.overrides=[optimizer=adam,seed=1]"]) == [
        "train.overrides=['optimizer=adam','seed=1']"
    ]
    assert quote_values(["train.overrides=[data.volumes.a.bbox=0:8,0:8,0:8,seed=1]"]) == [
        "train.overrides=['data.volumes.a.bbox=0:8,0:8,0:8','seed=1']"
    ]
    # a cluster launcher's options, each its own item (executor.worker_command)
    assert quote_values(["executor.worker_command=[srun,--gres=gpu:1,-p,gpu,--ntasks=1]"]) == [
        "executor.worker_command=[srun,'--gres=gpu:1',-p,gpu,'--ntasks=1']"
    ]
    nested = ["x=[[a=1,b],c]", "x=[a=1],[b=2]"]  # left to Hydra, which names what is wrong
    assert quote_values(nested) == nested


def test_model_uri_shorthand() -> None:
    from ffnops.cli import quote_values

    assert quote_values(["model=models:/ffn@champion", "model=tiny"]) == [
        "model_uri=models:/ffn@champion",
        "model=tiny",  # a config group choice stays one
    ]
