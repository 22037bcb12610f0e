"""``dpd export RUN_DIR --zoo OUT_DIR``: a learner in the RL zoo's layout, which ``rl_zoo3.enjoy``
runs (that last test only where rl_zoo3 is installed beside dpd)."""

import importlib.util
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import yaml
from stable_baselines3 import PPO

from dpd.cli import main
from dpd.pyexpr import parse_python_value
from dpd.zoo_export import zoo_hyperparams
from tests.conftest import TINY, expect_cli_error, read_manifest

EXPERIMENT = f"{TINY}_1"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two PPO peers of one iteration each on the tiny env."""
    run_dir = tmp_path_factory.mktemp("runs") / "pair"
    argv = ["train", "--env", TINY, "--total-steps", "512", "--no-progress", "--set", "eval.final_episodes=2"]
    assert main([*argv, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_export_writes_the_zoo_layout(tiny_run, tmp_path, capsys):
    out = tmp_path / "logs"
    assert main(["export", str(tiny_run), "--zoo", str(out), "--learner", "peer1"]) == 0
    assert "python -m rl_zoo3.enjoy --algo ppo --env DpdPointReach-v0" in capsys.readouterr().out
    experiment = out / "ppo" / EXPERIMENT
    params = experiment / TINY
    assert sorted(path.name for path in params.iterdir()) == ["args.yml", "config.yml", "vecnormalize.pkl"]
    # The zoo reads both files with PyYAML's unsafe loader, as OrderedDicts of sorted keys.
    config = yaml.load((params / "config.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert isinstance(config, OrderedDict) and list(config) == sorted(config)
    assert (config["n_timesteps"], config["n_envs"], config["normalize"], config["n_steps"]) == (256, 1, True, 256)
    assert parse_python_value(config["policy_kwargs"], "policy_kwargs") == {"net_arch": [32, 32]}
    args = yaml.load((params / "args.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert (args["algo"], args["env"], args["env_kwargs"], args["seed"]) == ("ppo", TINY, None, 1000)
    # The zip is the learner's own model.
    manifest = read_manifest(tiny_run)
    ours = PPO.load(tiny_run / manifest["progress"]["checkpoint"] / "peer1" / "model.zip")
    exported = PPO.load(experiment / f"{TINY}.zip")
    obs = np.linspace(-1, 1, 4 * ours.observation_space.shape[0], dtype=np.float32).reshape(4, -1)
    assert np.array_equal(ours.predict(obs, deterministic=True)[0], exported.predict(obs, deterministic=True)[0])


def test_a_second_export_is_a_new_experiment_and_the_best_learner_is_the_default(tiny_run, tmp_path, capsys):
    out = tmp_path / "logs"
    for _ in range(2):
        assert main(["export", str(tiny_run), "--zoo", str(out)]) == 0
    assert sorted(path.name for path in (out / "ppo").iterdir()) == [EXPERIMENT, f"{TINY}_2"]
    final = read_manifest(tiny_run)["progress"]["final_eval"]
    best = max(final, key=lambda result: result["mean_return"])["learner"]
    seed = {"peer0": 0, "peer1": 1000}[best]
    args = yaml.load((out / "ppo" / f"{TINY}_2" / TINY / "args.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert args["seed"] == seed


def test_bad_exports_write_nothing(tiny_run, tmp_path, capsys):
    out = tmp_path / "logs"
    assert "unknown learner 'peer7'" in expect_cli_error(
        ["export", str(tiny_run), "--zoo", str(out), "--learner", "peer7"], capsys
    )
    assert "no dpd run" in expect_cli_error(["export", str(tmp_path), "--zoo", str(out)], capsys)
    assert not out.exists()


def zoo_runs() -> bool:
    """Whether rl_zoo3 runs here: installed with its own requirements, not only its files
    (``pip install --no-deps rl_zoo3`` is enough for ``--hyperparams``, not for ``rl_zoo3.enjoy``)."""
    if importlib.util.find_spec("rl_zoo3") is None:
        return False
    done = subprocess.run([sys.executable, "-c", "import rl_zoo3.enjoy"], capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(not zoo_runs(), reason="rl_zoo3 and its requirements are not installed (pip install rl_zoo3)")
def test_rl_zoo_enjoy_runs_an_export(tiny_run, tmp_path):
    out = tmp_path / "logs"
    assert main(["export", str(tiny_run), "--zoo", str(out)]) == 0
    command = [sys.executable, "-m", "rl_zoo3.enjoy", "--algo", "ppo", "--env", TINY, "-f", str(out)]
    command += ["--gym-packages", "dpd.envs", "--no-render", "-n", "200"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(Path(out) / "ppo" / EXPERIMENT / f"{TINY}.zip") in done.stdout


def test_config_yml_spells_settings_as_the_zoo():
    spec = {"budget": 1000, "n_envs": 2, "normalize_obs": True, "normalize_reward": False, "env_kwargs": {"x": 1}}
    algo_kwargs = {"action_noise": {"type": "normal", "std": 0.1}, "policy_kwargs": {"activation_fn": "nn.ReLU"}}
    hyperparams = zoo_hyperparams(spec, algo_kwargs)
    assert (hyperparams["noise_type"], hyperparams["noise_std"]) == ("normal", 0.1) and "action_noise" not in hyperparams
    assert hyperparams["policy_kwargs"] == "dict(activation_fn=nn.ReLU)" and hyperparams["env_kwargs"] == {"x": 1}
    # rl_zoo3's enjoy evaluates this string into VecNormalize's keyword arguments.
    assert parse_python_value(hyperparams["normalize"], "normalize") == {"norm_obs": True, "norm_reward": False}
    assert zoo_hyperparams(dict(spec, normalize_obs=False), {})["normalize"] is False
