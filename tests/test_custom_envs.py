"""Custom envs as the RL zoo takes them (``dpd.envs.custom``): ``module:EnvClass`` ids registered on
the fly and ``--gym-packages`` imported before the id is looked up, in this process and in the
peers' processes (``--parallel``)."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import yaml

from dpd.cli import main
from dpd.envs import check_env_id, make_env
from dpd.envs.custom import class_env_id, resolve_env_id
from dpd.errors import UserError
from tests.conftest import expect_cli_error, read_manifest

CLASS_ID = "dpd.envs.tiny:PointReachEnv"
PACKAGE = "tests.gym_package_example"
PACKAGE_ENV = "PackageReach-v0"
# Short PPO iterations: a module:EnvClass id gets no per-env defaults (SB3's n_steps is 2048).
SMALL_PPO = ["--set", "algo_kwargs.n_steps=64", "--set", "algo_kwargs.batch_size=64", "--set", "eval.every=128"]


def test_a_class_id_is_registered_under_a_derived_id_and_builds():
    assert resolve_env_id(CLASS_ID) == class_env_id("dpd.envs.tiny", "PointReachEnv") == "dpd.envs.tiny.PointReachEnv-v0"
    assert resolve_env_id(CLASS_ID) == "dpd.envs.tiny.PointReachEnv-v0"  # registered once, the same id again
    env = make_env(CLASS_ID, seed=0, normalize=False)
    assert env.observation_space.shape == (4,) and env.action_space.shape == (2,)
    env.close()


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("dpd.envs.no_such_module:Env", "cannot import the module of env 'dpd.envs.no_such_module': ModuleNotFoundError"),
        ("dpd.envs.tiny:NoSuchEnv", "module 'dpd.envs.tiny' has no gymnasium.Env class and registered no env 'NoSuchEnv'"),
        ("dpd.envs.tiny:np", "has no gymnasium.Env class"),  # a module attribute that is not an Env class
    ],
)
def test_a_bad_class_id_is_a_user_error(env_id, message):
    with pytest.raises(UserError, match=message):
        check_env_id(env_id)
    assert class_env_id(*env_id.split(":")) not in gym.envs.registry


def test_gym_packages_are_imported_before_the_id_is_looked_up():
    with pytest.raises(UserError, match="cannot import gym package 'tests.no_such_package'"):
        check_env_id(PACKAGE_ENV, ["tests.no_such_package"])
    assert check_env_id(PACKAGE_ENV, [PACKAGE]) == PACKAGE_ENV


def test_train_with_a_class_id_in_parallel_peers(tmp_path, capsys):
    """The peers' processes register the class themselves: they start from an empty registry."""
    run_dir = tmp_path / "run"
    argv = ["train", "--env", CLASS_ID, "--peers", "2", "--total-steps", "256", "--parallel", "--no-progress"]
    assert main([*argv, "--run-dir", str(run_dir), *SMALL_PPO]) == 0
    manifest = read_manifest(run_dir)
    assert manifest["config"]["env"] == CLASS_ID
    assert manifest["progress"]["finished"] and manifest["progress"]["run_steps"] == 256
    # The RL zoo finds envs by registered id only: such a run is not exported, in one line.
    err = expect_cli_error(["export", str(run_dir), "--zoo", str(tmp_path / "logs")], capsys)
    assert "is a module:EnvClass id, which the RL zoo cannot look up" in err and not (tmp_path / "logs").exists()


def test_train_with_gym_packages_in_parallel_peers(tmp_path, capsys):
    """``--gym-packages``: the peers' processes import the package too."""
    run_dir = tmp_path / "run"
    argv = ["train", "--env", PACKAGE_ENV, "--gym-packages", PACKAGE, "--total-steps", "256", "--parallel"]
    assert main([*argv, "--no-progress", "--run-dir", str(run_dir), *SMALL_PPO]) == 0
    manifest = read_manifest(run_dir)
    assert manifest["config"]["gym_packages"] == PACKAGE
    assert all(learner["gym_packages"] == PACKAGE for learner in manifest["learners"])
    assert manifest["progress"]["finished"]
    # A fresh process rebuilds the run from its manifest, importing the package itself.
    evaluated = subprocess.run(
        [sys.executable, "-m", "dpd", "eval", str(run_dir), "--episodes", "1", "--json"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],  # where tests.gym_package_example imports from
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert [result["learner"] for result in json.loads(evaluated.stdout)] == ["peer0", "peer1"]
    # An export names the packages for rl_zoo3's enjoy, in args.yml and in the command it prints.
    capsys.readouterr()
    assert main(["export", str(run_dir), "--zoo", str(tmp_path / "logs")]) == 0
    command = capsys.readouterr().out.split("run it with: ")[1].strip()
    assert f"--env {PACKAGE_ENV} " in command and command.endswith(f"--gym-packages {PACKAGE} --no-render")
    (params,) = (tmp_path / "logs" / "ppo").glob(f"{PACKAGE_ENV}_1/{PACKAGE_ENV}")
    assert yaml.load((params / "args.yml").read_text(), Loader=yaml.UnsafeLoader)["gym_packages"] == [PACKAGE]
    # dpd fidelity takes --gym-packages too.
    checkpoint = run_dir / manifest["progress"]["checkpoint"]
    models = [str(checkpoint / name / "model.zip") for name in ("peer0", "peer1")]
    fidelity = ["fidelity", *models, "--env", PACKAGE_ENV, "--episodes", "1", "--states", "20", "--json"]
    assert main([*fidelity, "--gym-packages", PACKAGE]) == 0
    assert json.loads(capsys.readouterr().out)["return_ratio"] is not None
    err = expect_cli_error([*fidelity, "--gym-packages", "tests.no_such_package"], capsys)
    assert "cannot import gym package 'tests.no_such_package'" in err


def test_a_gym_package_that_does_not_import_is_one_line_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--env", PACKAGE_ENV, "--gym-packages", f"{PACKAGE},tests.no_such_package", "--run-dir", str(run_dir)]
    err = expect_cli_error(argv, capsys)
    assert "cannot import gym package 'tests.no_such_package': ModuleNotFoundError" in err
    assert not run_dir.exists()


def test_a_class_id_that_does_not_resolve_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    err = expect_cli_error(["train", "--env", "dpd.envs.tiny:Missing", "--run-dir", str(run_dir)], capsys)
    assert "no gymnasium.Env class" in err and not run_dir.exists()
