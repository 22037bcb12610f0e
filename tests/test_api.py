"""The Python API (``dpd.Peers``, ``dpd.Student``): the README's example, callbacks, models,
save and load."""

import re
from pathlib import Path

import pytest
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from dpd.config import TeacherConfig
from dpd.errors import UserError
from tests.conftest import TINY

README = Path(__file__).resolve().parents[1] / "README.md"


class CountSteps(BaseCallback):
    """Counts ``on_step`` calls; returns False (stop) after ``stop_after`` of them."""

    def __init__(self, stop_after: int = 0) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.steps = 0

    def _on_step(self) -> bool:
        self.steps += 1
        return not (self.stop_after and self.steps >= self.stop_after)


def test_the_readme_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its API example"
    code = block.group(1).replace('"Hopper-v5"', repr(TINY)).replace("200_000", "2048").replace("50_000", "1024")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace["model"], PPO) and namespace["model"].num_timesteps == 1024
    assert (tmp_path / "runs" / "api-hopper" / "manifest.json").is_file()
    # One CheckpointCallback, copied per peer: each peer writes its own files, none overwrites another's.
    saved = sorted(path.name for path in (tmp_path / "runs" / "api-hopper" / "sb3-checkpoints").iterdir())
    assert saved == ["rl_model_peer0_1024_steps.zip", "rl_model_peer1_1024_steps.zip"], saved


def test_a_callback_per_learner_runs_in_it_and_a_false_one_stops_its_learner(tmp_path):
    from dpd import Peers

    peers = Peers("ppo", TINY, peers=2, run_dir=tmp_path / "run", eval={"every": 0, "final_episodes": 2})
    callbacks = [CountSteps(), CountSteps(stop_after=300)]
    peers.learn(total_timesteps=4096, callback=callbacks)
    steps = [result.env_steps for result in peers.results]
    assert callbacks[0].steps == 2048 and callbacks[1].steps == 300  # the local backend runs these very objects
    assert steps == [2048, 300]  # the second learner stopped when its callback said so


def test_models_save_load_and_bad_callbacks(tmp_path):
    from dpd import Peers

    peers = Peers("ppo", TINY, peers=2, run_dir=tmp_path / "run", eval={"every": 0, "final_episodes": 2})
    with pytest.raises(UserError, match="nothing trained yet"):
        peers.evaluate()
    with pytest.raises(UserError, match="one per learner"):
        peers.learn(total_timesteps=2048, callback=[CountSteps()])
    shared = CountSteps()
    peers.learn(total_timesteps=2048, callback=shared)
    assert shared.steps == 0  # one callback binds to one model: each learner ran a copy
    models = peers.models
    assert [type(model) for model in models] == [PPO, PPO] and all(model.num_timesteps == 1024 for model in models)
    copy = peers.save(tmp_path / "copy")
    loaded = Peers.load(copy)
    assert [r.env_steps for r in loaded.evaluate(2)] == [1024, 1024]
    with pytest.raises(UserError, match="trains to 2048 env steps"):
        loaded.learn(total_timesteps=4096)
    with pytest.raises(UserError, match="no dpd run"):
        Peers.load(tmp_path / "nowhere")


def test_a_student_learns_from_a_peers_model(tmp_path):
    from dpd import Peers, Student

    peers = Peers("ppo", TINY, peers=2, run_dir=tmp_path / "peers", eval={"every": 0, "final_episodes": 2})
    peers.learn(total_timesteps=2048)
    checkpoint = sorted((tmp_path / "peers" / "checkpoints").iterdir())[-1]
    student = Student(checkpoint / "peer0" / "model.zip", TINY, mode="offline", run_dir=tmp_path / "student")
    student.learn(total_timesteps=1024)
    (result,) = student.results
    assert result.learner == "student" and result.env_steps == 1024
    assert Student.load(tmp_path / "student").models[0].num_timesteps == 1024
    # Without a mode, a Student takes dpd distill's default (the config's), not one of its own.
    default = Student(checkpoint / "peer0" / "model.zip", TINY, run_dir=tmp_path / "default")
    default.learn(total_timesteps=512)
    config = yaml.safe_load((tmp_path / "default" / "config.yaml").read_text())
    assert config["teacher"]["mode"] == TeacherConfig().mode


def test_callbacks_reach_peers_in_other_processes(tmp_path):
    """On the process backend each learner's callback is pickled to its process; the stop it
    asks for comes back as the learner's steps."""
    from dpd import Peers

    peers = Peers("ppo", TINY, peers=2, run_dir=tmp_path / "run", backend="process", eval={"every": 0, "final_episodes": 2})
    peers.learn(total_timesteps=4096, callback=[None, CountSteps(stop_after=300)])
    assert [result.env_steps for result in peers.results] == [2048, 300]


def test_sb3s_eval_callback_evaluates_a_peer_and_saves_its_best_model(tmp_path):
    """SB3's own ``EvalCallback`` works as a learner's callback: it evaluates every ``eval_freq``
    of that learner's steps, writes ``evaluations.npz`` and a ``best_model.zip`` SB3 loads."""
    import numpy as np
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from dpd import Peers

    eval_env = VecNormalize(make_vec_env(TINY, n_envs=1, seed=5), training=False, norm_reward=False)
    evaluation = EvalCallback(
        eval_env,
        eval_freq=500,
        n_eval_episodes=2,
        best_model_save_path=str(tmp_path / "best"),
        log_path=str(tmp_path / "log"),
        verbose=0,
    )
    peers = Peers("ppo", TINY, peers=2, run_dir=tmp_path / "run", eval={"every": 0, "final_episodes": 2})
    peers.learn(total_timesteps=4096, callback=[evaluation, None])
    log = np.load(tmp_path / "log" / "evaluations.npz")
    assert list(log["timesteps"]) == [500, 1000, 1500, 2000] and log["results"].shape == (4, 2)
    assert np.isfinite(evaluation.best_mean_reward)
    assert PPO.load(tmp_path / "best" / "best_model.zip").observation_space == peers.models[0].observation_space


def test_supervised_kd_from_python_writes_the_run_dpd_kd_writes_and_refuses_unknown_settings(tmp_path):
    import json

    import dpd

    report, run_dir = dpd.supervised_kd("hinton", epochs=3, seed=1, options={"temperature": 2.0}, run_dir=tmp_path / "kd")
    assert run_dir == tmp_path / "kd" and report.method == "hinton" and report.epochs == 3
    assert (
        json.loads((run_dir / "results.json").read_text())["fidelity"] == json.loads(json.dumps(report.to_dict()))["fidelity"]
    )
    assert json.loads((run_dir / "config.json").read_text())["options"]["temperature"] == 2.0
    assert report.fidelity.student_accuracy > 0.5  # ten digit classes: chance is 0.1
    with pytest.raises(UserError, match="unknown kd setting 'epoch'"):
        dpd.supervised_kd("hinton", epoch=3)
    with pytest.raises(UserError, match="unknown kd option 'temp'"):
        dpd.supervised_kd("hinton", options={"temp": 2.0})


@pytest.mark.parametrize(
    "args, settings, message",
    [
        (("dqn", TINY), {}, "unknown algorithm 'dqn'"),
        (("ppo", "Nope-v0"), {}, "Nope-v0"),
        (("ppo", TINY), {"distil": {"alpha": 1.0}}, "distil"),
    ],
)
def test_bad_peers_fail_in_the_constructor(args, settings, message, tmp_path):
    """As SB3's constructors do: the error comes at once, and nothing is written."""
    from dpd import Peers

    with pytest.raises(UserError, match=message):
        Peers(*args, run_dir=tmp_path / "run", **settings)
    assert not (tmp_path / "run").exists()


def test_the_python_faces_take_their_defaults_from_the_config_declarations():
    import inspect

    from dpd import Peers, Student

    assert Peers()._layer == {}  # nothing of its own: build_config supplies RunConfig's defaults
    for face in (Peers, Student):
        defaults = {name: p.default for name, p in inspect.signature(face).parameters.items() if name != "settings"}
        assert all(value is None for name, value in defaults.items() if name not in ("teacher", "env")), defaults


def test_the_readme_plain_sb3_example_runs_a_saved_student(tmp_path, monkeypatch):
    """The README's snippet loads a dpd checkpoint with SB3 and VecNormalize alone."""
    from dpd import Peers

    peers = Peers("ppo", TINY, peers=1, run_dir=tmp_path / "run", eval={"every": 0, "final_episodes": 1})
    peers.learn(total_timesteps=1024)
    checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1] / "peer0"
    block = re.search(r"<!-- sb3-example[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its plain-SB3 example"
    code = re.sub(r'directory = ".*"', f"directory = {str(checkpoint)!r}", block.group(1)).replace(
        '"HalfCheetah-v5"', repr(TINY)
    )
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["action"].shape == (1, *namespace["env"].action_space.shape)
    assert namespace["env"].training is False and namespace["env"].norm_reward is False
