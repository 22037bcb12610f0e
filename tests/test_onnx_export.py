"""``dpd export --onnx``: one graph from the raw observation to SB3's deterministic action in the
env's units, normalisation and action squashing or clipping inside, checked against SB3."""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from dpd.agents import onnx_export
from dpd.agents.onnx_export import TOLERANCE, ExportCheckFailed, export_onnx, max_action_difference, onnx_session
from dpd.cli import main
from tests.conftest import TINY, expect_cli_error, read_manifest

ROOT = Path(__file__).resolve().parents[1]
# Pendulum's actions lie in [-2, 2]: a graph that forgot to rescale a squashed action, or to clip
# a Gaussian's, would be off by far more than the tolerance.
ENV = "Pendulum-v1"


def saved_model(algo_class, folder: Path, normalize: bool) -> Path:
    """A briefly trained model on Pendulum saved as SB3 saves it, with its VecNormalize statistics beside it."""
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(ENV)]), norm_obs=normalize, norm_reward=False)
    kwargs = {"n_steps": 64, "batch_size": 32} if algo_class is PPO else {"learning_starts": 64}
    model = algo_class("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [16, 16]}, **kwargs)
    model.learn(192)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    if normalize:
        venv.save(str(folder / "vecnormalize.pkl"))
    return folder / "model.zip"


def constructed_states(low: float, high: float, count: int = 500) -> np.ndarray:
    """Pendulum observations on a grid that reaches far past the normalisation's clip range."""
    rng = np.random.default_rng(0)
    return rng.uniform(low, high, size=(count, 3)).astype(np.float32)


def sb3_reference(zip_path: Path, algo_class, states: np.ndarray) -> np.ndarray:
    model = algo_class.load(zip_path, device="cpu")
    norm_path = zip_path.with_name("vecnormalize.pkl")
    if norm_path.is_file():
        norm = VecNormalize.load(str(norm_path), DummyVecEnv([lambda: gym.make(ENV)]))
        states = norm.normalize_obs(states)
    return model.predict(states, deterministic=True)[0]


@pytest.mark.parametrize("algo_class", [PPO, SAC, TD3], ids=["ppo", "sac", "td3"])
@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
def test_the_graph_acts_as_sb3_predict_on_env_and_constructed_states(algo_class, normalize, tmp_path, capsys):
    zip_path = saved_model(algo_class, tmp_path / "model", normalize)
    out = tmp_path / "policy.onnx"
    assert main(["export", str(zip_path), "--onnx", str(out), "--env", ENV, "--states", "2000"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    difference = float(re.search(r"max \|action - SB3 predict\| = (\S+)", last).group(1))
    assert difference <= TOLERANCE and f"on 2000 states from deterministic episodes on {ENV}" in last
    session = onnx_session(out)
    for states in (constructed_states(-1, 1), constructed_states(-50, 50)):  # the second: clipped observations
        got = session.run(None, {"observation": states})[0]
        expected = sb3_reference(zip_path, algo_class, states)
        assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE
    if algo_class is not PPO:  # the squashed actions were rescaled to Pendulum's [-2, 2]
        assert np.abs(got).max() > 1.0


def test_a_zip_without_an_env_is_checked_on_states_drawn_from_its_statistics(tmp_path, capsys):
    zip_path = saved_model(SAC, tmp_path / "model", normalize=True)
    assert main(["export", str(zip_path), "--onnx", str(tmp_path / "a.onnx")]) == 0
    assert "states from its normalisation statistics" in capsys.readouterr().out


def test_a_wrong_normalisation_fails_the_check_and_writes_nothing(tmp_path, monkeypatch):
    zip_path = saved_model(PPO, tmp_path / "model", normalize=True)
    model, norm = onnx_export.load_model(zip_path, zip_path.with_name("vecnormalize.pkl"))
    states = constructed_states(-1, 1)
    # A graph built with shifted statistics differs from SB3 behind the true ones.
    shifted = onnx_export.load_model(zip_path, zip_path.with_name("vecnormalize.pkl"))[1]
    shifted.obs_rms.mean = shifted.obs_rms.mean + 0.5
    wrong = tmp_path / "wrong.onnx"
    export_onnx(model, shifted, wrong, states, "constructed states")
    assert max_action_difference(onnx_session(wrong), model, norm, states) > 100 * TOLERANCE
    # The export's own check refuses it: nothing is left behind.
    true_actions = onnx_export.sb3_actions
    monkeypatch.setattr(onnx_export, "sb3_actions", lambda _model, _norm, s: true_actions(model, norm, s))
    out = tmp_path / "refused.onnx"
    with pytest.raises(ExportCheckFailed, match="nothing written"):
        export_onnx(model, shifted, out, states, "constructed states")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "wrong.onnx"]


def test_a_learner_of_a_dpd_run_exports_with_its_checkpoints_statistics(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--env", TINY, "--peers", "1", "--total-steps", "512", "--no-progress", "--run-dir", str(run_dir)]
    assert main([*argv, "--set", "eval.final_episodes=1"]) == 0
    out = tmp_path / "peer0.onnx"
    assert main(["export", str(run_dir), "--onnx", str(out), "--states", "1000"]) == 0
    assert f"deterministic episodes on {TINY}" in capsys.readouterr().out
    files = run_dir / read_manifest(run_dir)["progress"]["checkpoint"] / "peer0"
    model = PPO.load(files / "model.zip", device="cpu")
    norm = VecNormalize.load(str(files / "vecnormalize.pkl"), DummyVecEnv([lambda: gym.make(TINY)]))
    states = np.random.default_rng(1).normal(size=(300, model.observation_space.shape[0])).astype(np.float32)
    got = onnx_session(out).run(None, {"observation": states})[0]
    assert np.abs(got - model.predict(norm.normalize_obs(states), deterministic=True)[0]).max() <= TOLERANCE


def test_bad_exports_are_one_line_and_write_nothing(tmp_path, capsys):
    zip_path = saved_model(PPO, tmp_path / "model", normalize=False)
    out = tmp_path / "out"
    cases = [
        (["--onnx", str(tmp_path / "policy.txt")], "ending in .onnx"),
        (["--onnx", str(out / "policy.onnx")], "folder not found"),
        (["--onnx", str(tmp_path / "p.onnx"), "--states", "0"], "--states must be positive"),
        (["--onnx", str(tmp_path / "p.onnx"), "--learner", "peer0"], "a model zip holds one"),
        (["--onnx", str(tmp_path / "p.onnx"), "--norm", str(tmp_path / "none.pkl")], "normalisation file not found"),
        (["--onnx", str(tmp_path / "p.onnx"), "--env", "Nope-v0"], "Nope-v0"),
        (["--zoo", str(out), "--norm", "x.pkl"], "--norm and --env go with --onnx"),
    ]
    for extra, message in cases:
        assert message in expect_cli_error(["export", str(zip_path), *extra], capsys)
    missing = ["export", str(tmp_path / "nothing.zip"), "--onnx", str(tmp_path / "p.onnx")]
    assert "not found" in expect_cli_error(missing, capsys)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_the_documented_runner_needs_only_onnxruntime_and_numpy(tmp_path):
    zip_path = saved_model(TD3, tmp_path / "model", normalize=True)
    out = tmp_path / "student.onnx"
    assert main(["export", str(zip_path), "--onnx", str(out), "--env", ENV, "--states", "500"]) == 0
    text = (ROOT / "docs" / "EXPORT.md").read_text()
    (runner,) = re.findall(r"```python\n(# runner.*?)```", text, flags=re.S)
    assert "stable_baselines3" not in runner and "gymnasium" not in runner and "torch" not in runner
    namespace: dict = {}
    exec(runner.replace('"student.onnx"', repr(str(out))), namespace)
    state = np.array([0.3, -0.9, 4.0])
    assert np.abs(namespace["act"](state) - sb3_reference(zip_path, TD3, state[None].astype(np.float32))[0]).max() <= TOLERANCE
