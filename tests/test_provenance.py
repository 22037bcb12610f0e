"""What a run records beyond its config (the commit, every package, the CPU), and the claim it
rests on: the same seed with the same versions on the same machine repeats a run exactly, also
in two fresh processes."""

import json
import shutil
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
from stable_baselines3 import PPO

from dpd import provenance
from tests.conftest import TINY

X86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\nmodel name\t: other\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\n"


def test_cpu_model_and_instruction_sets_from_cpuinfo(tmp_path):
    (tmp_path / "x86").write_text(X86)
    (tmp_path / "arm").write_text(ARM)
    x86 = provenance.cpu_description(tmp_path / "x86")
    assert x86["model"] == "AMD EPYC 7B13" and x86["flags"] == ["avx2", "avx512f", "fpu", "sse2"]
    assert provenance.cpu_description(tmp_path / "arm")["flags"] == ["asimd", "fp", "sve"]
    missing = provenance.cpu_description(tmp_path / "none")  # not Linux: no flags, no error
    assert missing["flags"] == [] and missing["machine"]


def test_the_freeze_lists_every_installed_distribution():
    freeze = provenance.package_freeze()
    assert freeze["numpy"] == np.__version__ and freeze["torch"] == metadata.version("torch")
    assert len(freeze) == len({dist.metadata["Name"] for dist in metadata.distributions()})


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_the_commit_of_a_checkout_and_none_elsewhere(monkeypatch, tmp_path):
    head = subprocess.run(["git", "-C", str(provenance.SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("dpd does not run from a git checkout here")
    assert provenance.git_commit()["commit"] == head.stdout.strip()
    monkeypatch.setattr(provenance, "SOURCE_ROOT", tmp_path)  # an installed dpd: no checkout of its own
    assert provenance.git_commit() == {"commit": None, "dirty": None}


def _train_in_fresh_processes(*run_dirs):
    """The same tiny run in one fresh interpreter per directory, side by side."""
    processes = []
    for run_dir in run_dirs:
        command = [sys.executable, "-m", "dpd", "train", "--env", TINY, "--total-steps", "768", "--seed", "7"]
        command += ["--no-progress", "--set", "eval.final_episodes=3", "--run-dir", str(run_dir)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-2000:]
    finally:
        for process in processes:
            if process.poll() is None:  # the other one failed: do not leave this one behind
                process.kill()
                process.wait()
    return [json.loads((run_dir / "manifest.json").read_text()) for run_dir in run_dirs]


def test_same_seed_same_versions_same_results_in_fresh_processes(tmp_path):
    first, second = _train_in_fresh_processes(tmp_path / "a", tmp_path / "b")
    packages = first["provenance"]["packages"]
    assert packages == second["provenance"]["packages"]
    # (Not the whole of this process's freeze: Ray, once imported, puts its vendored packages on sys.path.)
    assert all(packages[name] == metadata.version(name) for name in ("torch", "numpy", "gymnasium", "mujoco"))
    assert first["provenance"]["cpu"]["flags"] == provenance.cpu_description()["flags"]
    assert [r["mean_return"] for r in first["progress"]["final_eval"]] == [
        r["mean_return"] for r in second["progress"]["final_eval"]
    ]
    for name in ("peer0", "peer1"):
        a, b = (
            PPO.load(tmp_path / run / m["progress"]["checkpoint"] / name / "model.zip")
            for run, m in (("a", first), ("b", second))
        )
        params_a, params_b = a.policy.state_dict(), b.policy.state_dict()
        assert params_a.keys() == params_b.keys()
        assert all(params_a[key].equal(params_b[key]) for key in params_a), name
