"""A run continued from a checkpoint is the run made in one go, bit for bit
(``dpd.agents.resume_state``): a run killed right after a checkpoint and resumed ends with the
parameters and evaluation returns of the same run made without stopping."""

import pickle
import shutil
import threading
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC

from dpd import envs
from dpd.agents.resume_state import RESUME_FILE, SavedEnv, dumps, read_state, write_state
from dpd.cli import main
from dpd.rundir import RunDirectory
from tests.conftest import TINY, read_manifest


class Killed(BaseException):
    """The process ends right after a checkpoint, as at a kill: none of dpd's handlers runs."""


def made_twice(args: List[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> List[Path]:
    """``dpd ARGS`` made in one go, and made again up to its first checkpoint, killed there: the
    two run directories (the second to be continued with ``--resume``)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*args, "--no-progress", "--run-dir", str(whole)]) == 0
    save = RunDirectory.save_checkpoint

    def save_then_die(self, *positional, **named):
        save(self, *positional, **named)
        raise Killed

    monkeypatch.setattr(RunDirectory, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        main([*args, "--no-progress", "--run-dir", str(killed)])
    monkeypatch.setattr(RunDirectory, "save_checkpoint", save)
    progress = read_manifest(killed)["progress"]
    assert 0 < progress["run_steps"] < read_manifest(whole)["progress"]["run_steps"] and not progress["finished"]
    return [whole, killed]


def resume(run_dir: Path) -> None:
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


def assert_same_run(whole: Path, resumed: Path, algo_class: type) -> None:
    """The same evaluations on the way (where it evaluates on the way: its evaluation env goes on
    from one to the next), the same final returns and the same final parameters."""
    done, again = read_manifest(whole)["progress"], read_manifest(resumed)["progress"]
    assert again["finished"] and again["evaluations"] == done["evaluations"]
    returns = [(result["mean_return"], result["std_return"]) for result in done["final_eval"]]
    assert [(result["mean_return"], result["std_return"]) for result in again["final_eval"]] == returns
    for name in done["learners"]:
        expected = algo_class.load(whole / done["checkpoint"] / name / "model.zip").policy.state_dict()
        found = algo_class.load(resumed / again["checkpoint"] / name / "model.zip").policy.state_dict()
        assert all(torch.equal(found[key], expected[key]) for key in expected), name


def test_the_state_of_a_mujoco_env_round_trips_exactly():
    """HalfCheetah's MjData, its generator, TimeLimit's and Monitor's counts and VecNormalize's
    return come back as they were: both copies step on alike, across an episode's end."""
    env = envs.make_env("HalfCheetah-v5", seed=0, n_envs=2, env_kwargs={"max_episode_steps": 150})
    rng = np.random.default_rng(0)
    env.reset()
    for _ in range(100):
        env.step(rng.uniform(-1, 1, size=(2, 6)))
    copy = pickle.loads(dumps(SavedEnv.of(env))).restore()
    for _ in range(200):  # the episodes end at 150, and new ones start from the envs' generators
        actions = rng.uniform(-1, 1, size=(2, 6))
        (obs, rewards, dones, infos), (obs_copy, rewards_copy, dones_copy, infos_copy) = env.step(actions), copy.step(actions)
        assert np.array_equal(obs, obs_copy) and np.array_equal(rewards, rewards_copy) and np.array_equal(dones, dones_copy)
        assert np.array_equal(env.get_original_obs(), copy.get_original_obs())
        assert [info.get("episode", {}).get("r") for info in infos] == [
            info.get("episode", {}).get("r") for info in infos_copy
        ]
    assert dones_copy is not None and env.venv.envs[0].unwrapped.data.time == copy.venv.envs[0].unwrapped.data.time


def test_a_state_that_does_not_pickle_is_left_out_with_a_warning(tmp_path):
    """A user's env that holds a lock: its checkpoints are written without a resume state, and
    a run continued from them starts its episodes afresh, as before resume states."""
    with pytest.warns(UserWarning, match=r"peer0: its env does not pickle \(TypeError: .*lock"):
        write_state({"env": threading.Lock()}, tmp_path / RESUME_FILE, "peer0")
    assert read_state(tmp_path / RESUME_FILE) is None


def test_a_ppo_pair_continued_from_its_checkpoint_is_the_run_made_in_one_go(tmp_path, monkeypatch, capsys):
    """Peers that distill every iteration from a ring of states that has wrapped, evaluated on the way."""
    args = ["train", "--env", TINY, "--total-steps", "2048", "--seed", "5"]
    for setting in ("algo_kwargs.n_steps=256", "turn_steps=256", "checkpoint_every=1024", "eval.every=512"):
        args += ["--set", setting]
    args += ["--set", "eval.episodes=2", "--set", "distill.every=1", "--set", "distill.buffer_size=300"]
    whole, killed = made_twice(args, tmp_path, monkeypatch)
    older = tmp_path / "older"  # the same checkpoint as an older dpd wrote it: without resume states
    shutil.copytree(killed, older)
    for path in older.rglob(RESUME_FILE):
        path.unlink()
    resume(killed)
    assert len(read_manifest(whole)["progress"]["evaluations"]) == 4  # at 512 and 1024 own steps
    assert_same_run(whole, killed, PPO)
    capsys.readouterr()
    resume(older)  # as before resume states: the envs are reset and reseeded, and a line says so
    assert "holds no resume state: peer0's environments are reset and reseeded" in capsys.readouterr().err
    assert read_manifest(older)["progress"]["finished"]


def test_a_sac_pair_that_shares_and_follows_its_leader_continues_exactly(tmp_path, monkeypatch):
    """Off-policy peers: the replay buffers, the random actions before learning starts, shared
    transitions, guidance statistics gathered since the last election, and Ornstein-Uhlenbeck
    action noise in the middle of an episode (30 steps long: the checkpoint is at 200)."""
    args = ["train", "--env", TINY, "--algo", "sac", "--total-steps", "800", "--seed", "2"]
    settings = [
        "algo_kwargs.learning_starts=100",
        "algo_kwargs.batch_size=32",
        "algo_kwargs.policy_kwargs={net_arch: [32, 32]}",
        "algo_kwargs.action_noise={type: ornstein-uhlenbeck, std: 0.1}",
        "env_kwargs={max_steps: 30}",
        "turn_steps=100",
        "checkpoint_every=400",
        "eval.every=200",
        "eval.episodes=2",
        "share=on",
        "guide=best",
        "guide.every=300",
    ]
    for setting in settings:
        args += ["--set", setting]
    whole, killed = made_twice(args, tmp_path, monkeypatch)
    resume(killed)
    assert len(read_manifest(whole)["progress"]["evaluations"]) == 4  # at 200 and 400 own steps
    assert_same_run(whole, killed, SAC)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A small PPO teacher saved by plain SB3, with its VecNormalize statistics beside it."""
    directory = tmp_path_factory.mktemp("teacher")
    env = envs.make_env(TINY, seed=0, gamma=0.95)
    model = PPO("MlpPolicy", env, seed=0, n_steps=256, batch_size=64, gamma=0.95, policy_kwargs={"net_arch": [16]})
    model.learn(256)
    model.save(directory / "teacher.zip")
    env.save(str(directory / "vecnormalize.pkl"))
    return directory / "teacher.zip"


STUDENTS = {  # mode: the student's algorithm and settings (evaluated at the end only: a student's
    # evaluations roll out episodes for its fidelity, which takes longer than its training here)
    "dagger": ["--student-algo", "ppo", "--total-steps", "1536", "--set", "checkpoint_every=512"],
    "offline": ["--student-algo", "ppo", "--total-steps", "1536", "--set", "checkpoint_every=512"],
    "online": ["--student-algo", "sac", "--total-steps", "240", "--set", "checkpoint_every=120"]
    + ["--set", "algo_kwargs.learning_starts=50", "--set", "distill.every=10", "--set", "distill.steps=2"],
}


@pytest.mark.parametrize("mode", sorted(STUDENTS))
def test_a_student_continues_exactly(mode, teacher, tmp_path, monkeypatch):
    """DAgger: the mixture's rollouts in the student's env, its beta and sampling, its data set.
    Offline: the teacher's own episodes, which go on from one iteration to the next, and the
    states it visited, which the student samples. Online, a SAC student: the labels of its
    states, each labelled as it came (labelled again in one batch, some differ in their last bits)."""
    args = ["distill", "--teacher", str(teacher), "--env", TINY, "--student-net", "8", "--mode", mode, *STUDENTS[mode]]
    args += ["--set", "eval.every=0"]
    whole, killed = made_twice(args, tmp_path, monkeypatch)
    resume(killed)
    assert_same_run(whole, killed, SAC if mode == "online" else PPO)
