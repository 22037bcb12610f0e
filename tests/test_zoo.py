"""RL-zoo hyperparameter files: the safe reader of their Python strings, the entry -> config
mapping, and a zoo ``ppo.yml`` entry training a MuJoCo task through ``dpd train --hyperparams``.

The fixtures in ``tests/data/zoo`` are entries of rl_zoo3's own files, written by hand."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, TD3
from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise

from dpd.agents.learner import sb3_kwargs
from dpd.cli import main
from dpd.errors import UserError
from dpd.pyexpr import activation_class, format_python_value, parse_python_value
from dpd.zoo import zoo_layer
from tests.conftest import expect_cli_error

ZOO = Path(__file__).parent / "data" / "zoo"
ZOO_POLICY_KWARGS = """dict(
                    log_std_init=-2,
                    ortho_init=False,
                    activation_fn=nn.ReLU,
                    net_arch=dict(pi=[256, 256], vf=[256, 256])
                  )"""


def test_policy_kwargs_strings_read_without_eval():
    assert parse_python_value(ZOO_POLICY_KWARGS, "x") == {
        "log_std_init": -2,
        "ortho_init": False,
        "activation_fn": "nn.ReLU",
        "net_arch": {"pi": [256, 256], "vf": [256, 256]},
    }
    assert parse_python_value("dict(net_arch=(64, 64), activation_fn=th.nn.Tanh, x=None, y=+1.5e-3)", "x") == {
        "net_arch": [64, 64],
        "activation_fn": "nn.Tanh",
        "x": None,
        "y": 1.5e-3,
    }
    assert parse_python_value("{'norm_obs': True, 'norm_reward': False}", "x") == {"norm_obs": True, "norm_reward": False}
    assert parse_python_value("dict(activation_fn=torch.nn.LeakyReLU)", "x") == {"activation_fn": "nn.LeakyReLU"}


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo pwned')",
        "dict(activation_fn=os.system)",
        "dict(activation_fn=nn.Module)",
        "dict(net_arch=nn.ReLU)",  # a name only where an activation is expected
        "dict(**other)",
        "{**other}",
        "dict([('a', 1)])",
        "[x for x in range(3)]",
        "lambda: 0",
        "-'a'",
        "1 + 1",
        "dict(optimizer_class=RMSpropTFLike)",
        "dict(",
    ],
)
def test_anything_but_data_is_refused_in_one_line(text):
    with pytest.raises(UserError) as error:
        parse_python_value(text, "ppo.yml: Hopper-v4.policy_kwargs")
    message = str(error.value)
    assert "\n" not in message and message.startswith("ppo.yml: Hopper-v4.policy_kwargs: ")


def test_parsed_values_print_back_in_the_zoo_style():
    value = parse_python_value(ZOO_POLICY_KWARGS, "x")
    text = format_python_value(value)
    assert text.startswith("dict(") and "activation_fn=nn.ReLU" in text
    assert parse_python_value(text, "x") == value


def test_activation_names_become_torch_classes_only_when_a_learner_is_built():
    assert activation_class("nn.ReLU") is torch.nn.ReLU
    kwargs = sb3_kwargs({"policy_kwargs": {"activation_fn": "nn.Tanh"}, "train_freq": [1, "episode"], "learning_rate": 1e-3})
    assert kwargs["policy_kwargs"]["activation_fn"] is torch.nn.Tanh
    assert kwargs["train_freq"] == (1, "episode")


def test_a_ppo_entry_maps_to_dpd_settings():
    layer, _ = zoo_layer(ZOO / "ppo.yml", "HalfCheetah-v4", algorithms=["ppo", "sac"])
    assert layer["algo"] == "ppo"  # from the file's name, as the zoo's hyperparams/ppo.yml
    assert layer["total_steps"] == 1_000_000 and isinstance(layer["total_steps"], int)
    assert layer["normalize_obs"] is True and layer["normalize_reward"] is True
    kwargs = layer["algo_kwargs"]
    assert kwargs["policy"] == "MlpPolicy" and kwargs["n_steps"] == 512 and kwargs["learning_rate"] == 2.0633e-05
    assert kwargs["policy_kwargs"]["activation_fn"] == "nn.ReLU"
    assert not {"n_timesteps", "normalize", "n_envs"} & set(kwargs)


def test_the_default_entry_serves_other_envs_and_yaml_anchors_merge():
    layer, _ = zoo_layer(ZOO / "ppo.yml", "Walker2d-v5")
    assert layer["algo_kwargs"]["learning_rate"] == "lin_3e-4" and "algo" not in layer
    humanoid, _ = zoo_layer(ZOO / "sac.yml", "Humanoid-v4")
    assert humanoid["total_steps"] == 2_000_000 and humanoid["algo_kwargs"]["learning_starts"] == 10000
    # The zoo normalises only where an entry asks.
    assert humanoid["normalize_obs"] is False and humanoid["normalize_reward"] is False


def test_normalize_as_vecnormalize_arguments(tmp_path):
    path = tmp_path / "ppo.yml"
    path.write_text("Hopper-v5:\n  normalize: \"{'norm_obs': True, 'norm_reward': False}\"\n  n_timesteps: 1e5\n")
    layer, _ = zoo_layer(path, "Hopper-v5")
    assert (layer["normalize_obs"], layer["normalize_reward"], layer["total_steps"]) == (True, False, 100_000)
    for refused in ("{norm_reward: false, clip_obs: 5.0}", "{gamma: 0.9}"):  # gamma: only with the algorithm's
        path.write_text(f"Hopper-v5:\n  normalize: {refused}\n")
        with pytest.raises(UserError, match="clip_obs|gamma"):
            zoo_layer(path, "Hopper-v5")
    path.write_text("Hopper-v5:\n  normalize: {gamma: 0.9}\n  gamma: 0.9\n")
    assert zoo_layer(path, "Hopper-v5")[0]["algo_kwargs"] == {"gamma": 0.9}


@pytest.mark.parametrize(
    ("file", "env", "expected"),
    [
        ("ppo.yml", "atari", "env_wrapper, frame_stack"),
        ("sac.yml", "Walker2d-v5", "no entry for 'Walker2d-v5'"),
    ],
)
def test_what_dpd_cannot_honour_is_refused_by_name(file, env, expected):
    with pytest.raises(UserError, match=expected):
        zoo_layer(ZOO / file, env)


def test_a_zoo_ppo_entry_trains_a_mujoco_task(tmp_path, capsys):
    """``ppo.yml``'s tuned Hopper entry, one PPO iteration per peer (``--total-steps`` wins over
    ``n_timesteps``): the peers' SB3 models carry the entry's hyperparameters and policy."""
    run_dir = tmp_path / "hop"
    argv = ["train", "--hyperparams", str(ZOO / "ppo.yml"), "--env", "Hopper-v5", "--total-steps", "1024"]
    assert main([*argv, "--no-progress", "--set", "eval.final_episodes=1", "--run-dir", str(run_dir)]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["total_steps"] == 1024 and manifest["config"]["algo"] == "ppo"
    model = PPO.load(run_dir / manifest["progress"]["checkpoint"] / "peer0" / "model.zip")
    assert (model.n_steps, model.batch_size, model.n_epochs, model.gamma) == (512, 32, 5, 0.999)
    assert model.policy.activation_fn is torch.nn.ReLU and model.policy.ortho_init is False
    assert [layer.out_features for layer in model.policy.mlp_extractor.policy_net if hasattr(layer, "out_features")] == [
        256,
        256,
    ]
    assert model.policy.log_std.detach().mean().item() == pytest.approx(-2, abs=0.05)


def test_td3_noise_becomes_action_noise():
    layer, _ = zoo_layer(ZOO / "td3.yml", "Hopper-v4", algorithms=["td3"])
    assert layer["algo"] == "td3" and layer["algo_kwargs"]["action_noise"] == {"type": "normal", "std": 0.1}
    assert "noise_type" not in layer["algo_kwargs"] and "noise_std" not in layer["algo_kwargs"]
    assert layer["algo_kwargs"]["policy_kwargs"] == {"net_arch": [400, 300]}


TINY_TD3 = """DpdPointReach-v0:
  n_timesteps: !!float 1e6
  policy: 'MlpPolicy'
  learning_starts: 100
  noise_type: 'ornstein-uhlenbeck'
  noise_std: 0.3
  train_freq: [1, "episode"]
  batch_size: 64
  policy_kwargs: "dict(net_arch=[32, 32], activation_fn=nn.Tanh)"
"""


def test_a_zoo_td3_entry_builds_its_noise_and_episodic_training(tmp_path):
    path = tmp_path / "td3.yml"
    path.write_text(TINY_TD3)
    run_dir = tmp_path / "td3"
    argv = ["train", "--hyperparams", str(path), "--env", "DpdPointReach-v0", "--total-steps", "200", "--peers", "1"]
    assert main([*argv, "--no-progress", "--set", "eval.final_episodes=1", "--run-dir", str(run_dir)]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    model = TD3.load(run_dir / manifest["progress"]["checkpoint"] / "peer0" / "model.zip")
    assert isinstance(model.action_noise, OrnsteinUhlenbeckActionNoise) and np.allclose(model.action_noise._sigma, 0.3)
    assert (model.train_freq.frequency, model.train_freq.unit.value) == (1, "episode")
    assert isinstance(model.policy.actor.mu[1], torch.nn.Tanh)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("action_noise={type: pink, std: 0.1}", "action_noise of peer0 (td3) must be"), ("action_noise=0.1", "must be")],
)
def test_bad_action_noise_is_refused(setting, expected, tmp_path, capsys):
    run_dir = tmp_path / "never"
    argv = [
        "train",
        "--algo",
        "td3",
        "--env",
        "DpdPointReach-v0",
        "--set",
        f"algo_kwargs.{setting}",
        "--run-dir",
        str(run_dir),
    ]
    assert expected in expect_cli_error(argv, capsys) and not run_dir.exists()


def test_a_refused_entry_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "never"
    message = expect_cli_error(
        ["train", "--hyperparams", str(ZOO / "ppo.yml"), "--env", "atari", "--run-dir", str(run_dir)], capsys
    )
    assert "frame_stack" in message and not run_dir.exists()
    bad = tmp_path / "ppo.yml"
    bad.write_text("Hopper-v5:\n  policy_kwargs: \"dict(activation_fn=__import__('os').system('touch pwned'))\"\n")
    message = expect_cli_error(["train", "--hyperparams", str(bad), "--env", "Hopper-v5", "--run-dir", str(run_dir)], capsys)
    assert "without running code" in message and not run_dir.exists()
    message = expect_cli_error(["train", "--hyperparams", str(ZOO / "ppo.yml"), "--run-dir", str(run_dir)], capsys)
    assert "--env" in message and not run_dir.exists()


def test_an_entry_can_be_named_and_is_reported(tmp_path):
    """``FILE.yml:ENTRY`` takes the named entry (the zoo's -v4 tuning for a -v5 task); the name used is returned."""
    layer, used = zoo_layer(f"{ZOO / 'ppo.yml'}:HalfCheetah-v4", "HalfCheetah-v5", algorithms=["ppo"])
    assert layer["algo_kwargs"]["n_steps"] == 512 and used.endswith("ppo.yml: HalfCheetah-v4")
    _, fallback = zoo_layer(ZOO / "ppo.yml", "HalfCheetah-v5")
    assert fallback.endswith("ppo.yml: default")
    with pytest.raises(UserError, match="no entry 'Nope-v4'; its entries: .*HalfCheetah-v4"):
        zoo_layer(f"{ZOO / 'ppo.yml'}:Nope-v4", "HalfCheetah-v5")
