"""The distribution installs one top-level module, ``dpd``: ``agents`` and ``envs`` are names other
PyPI packages install too (the openai-agents SDK installs ``agents``)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("dpd-*.whl")
    return path


def test_wheel_has_one_top_level_module(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level_file,) = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        top_level = archive.read(top_level_file).decode().split()
    assert top_level == ["dpd"]
    roots = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert roots == {"dpd"}
    # The layout's folders are inside the one module.
    assert "dpd/agents/peer_group.py" in names
    assert "dpd/envs/tiny.py" in names


@pytest.mark.parametrize("name", ["agents", "envs"])
def test_only_dpd_is_importable(name, tmp_path):
    """Outside the checkout (no repository root on sys.path), only the dpd names resolve."""
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is not None)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=tmp_path).returncode == 0
    found = f"import dpd.{name}; print(dpd.{name}.__name__)"
    result = subprocess.run([sys.executable, "-c", found], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"dpd.{name}"


def test_runs_do_not_write_mujoco_log_into_the_working_directory(tmp_path):
    """MuJoCo 4 warns at every HalfCheetah compile and, by default, appends the warning to
    ``MUJOCO_LOG.TXT`` in the working directory; dpd routes its warnings to stderr instead."""
    script = "from dpd.envs import make_env; env = make_env('HalfCheetah-v5', seed=0); env.reset(); env.close()"
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
