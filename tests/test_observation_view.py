"""A student that sees less than its teacher (``student.obs``): the view's transforms, the teacher's
labels on the full observation of the same step, and a run with a view from start to export."""

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from dpd.agents.ppd import flat_order
from dpd.agents.teacher_student import TeacherStudent
from dpd.cli import main
from dpd.config import ObservationViewConfig
from dpd.envs import make_env
from dpd.envs.observation_view import ObservationView, observation_groups, seen_and_full
from tests.conftest import TINY, expect_cli_error, interrupt, resume

# The tiny env's observation is (x, y, goal_x, goal_y) * 10: the student below loses goal_x and
# sees its last two observations, so its view is (x, y, goal_y) of the step before, then of this one.
DROP, KEEP = 2, [0, 1, 3]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A PPO teacher of the tiny env, briefly trained by plain SB3: its labels need not be good."""
    directory = tmp_path_factory.mktemp("teacher")
    env = make_env(TINY, seed=0, gamma=0.95)
    model = PPO("MlpPolicy", env, seed=0, n_steps=256, batch_size=64, gamma=0.95, policy_kwargs={"net_arch": [16]})
    model.learn(512)
    model.save(directory / "teacher.zip")
    env.save(str(directory / "vecnormalize.pkl"))
    return directory / "teacher.zip"


def frames(view: ObservationView, readings) -> list:
    """The view after each reading: ``("reset", x)`` starts an episode, a bare number steps it."""
    seen = []
    for reading in readings:
        start, value = reading if isinstance(reading, tuple) else (None, reading)
        obs = np.array([float(value)])
        seen.append(list(view.reset(obs) if start else view.step(obs)))
    return seen


def test_drop_velocities_leaves_halfcheetah_its_eight_positions():
    """Gymnasium's docs: HalfCheetah-v5's 17 observations are 8 positions (qpos) then 9 velocities (qvel)."""
    env = make_env("HalfCheetah-v5", seed=0, view=ObservationViewConfig(drop="velocities"), norm_obs=False)
    env.reset()
    for _ in range(5):
        seen, full = seen_and_full(env)
        assert seen.shape == (1, 8) and full.shape == (1, 17)
        np.testing.assert_allclose(seen, full[:, :8], rtol=1e-6)
        env.step(np.random.default_rng(0).uniform(-1, 1, size=(1, 6)))
    env.close()
    import gymnasium as gym

    layouts = {"HalfCheetah-v5": (8, 17), "Walker2d-v5": (8, 17), "Hopper-v5": (5, 11)}
    for env_id, velocities in layouts.items():
        assert observation_groups(gym.make(env_id))["velocities"] == velocities, env_id


def test_a_stack_starts_each_episode_with_its_first_observation():
    view = ObservationView(np.array([0]), noise=0.0, delay=0, stack=3)
    assert frames(view, [("reset", 1), 2, 3, 4, ("reset", 9), 10]) == [
        [1, 1, 1], [1, 1, 2], [1, 2, 3], [2, 3, 4], [9, 9, 9], [9, 9, 10],
    ]  # fmt: skip
    # In the env: an episode of the tiny env ends after 3 steps and SB3 resets it inside step.
    env = make_env(TINY, seed=0, env_kwargs={"max_steps": 3}, view=ObservationViewConfig(stack=2), norm_obs=False)
    env.reset()
    for step in range(1, 5):
        obs, _, dones, _ = env.step(np.zeros((1, 2)))
        seen, full = seen_and_full(env)
        np.testing.assert_allclose(seen[0, 4:], full[0], rtol=1e-6)  # the newest frame is this step's
        if step == 3:  # the reset's observation, twice: nothing of the episode that ended
            assert dones[0]
            np.testing.assert_allclose(seen[0, :4], full[0], rtol=1e-6)
    env.close()


def test_delay_shows_the_observation_of_d_steps_ago_and_the_first_at_a_start():
    view = ObservationView(np.array([0]), noise=0.0, delay=2, stack=1)
    assert frames(view, [("reset", 1), 2, 3, 4, ("reset", 7), 8]) == [[1], [1], [1], [2], [7], [7]]
    delayed_stack = ObservationView(np.array([0]), noise=0.0, delay=1, stack=2)
    assert frames(delayed_stack, [("reset", 1), 2, 3, 4]) == [[1, 1], [1, 1], [1, 2], [2, 3]]


def test_noise_is_the_same_for_the_same_seed_and_differs_for_another():
    def noise(seed: int) -> np.ndarray:
        env = make_env(TINY, seed=seed, view=ObservationViewConfig(noise=0.5), norm_obs=False)
        env.reset()
        draws = []
        for _ in range(50):
            seen, full = seen_and_full(env)
            draws.append(seen - full)
            env.step(np.zeros((1, 2)))
        env.close()
        return np.concatenate(draws)

    first, again, other = noise(3), noise(3), noise(4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert 0.4 < first.std() < 0.6  # in the observation's units


def student_of(teacher, mode: str, total_steps: int, **teacher_keys) -> TeacherStudent:
    """A started student of ``teacher`` on the tiny env that sees ``DROP`` dropped, two frames stacked."""
    from dpd.agents.assembly import assemble, fresh_learners
    from dpd.agents.checks import check_config
    from dpd.config import build_config

    cfg = build_config(
        {
            "env": TINY,
            "peers": 1,
            "total_steps": total_steps,
            "teacher": {"path": str(teacher), "mode": mode, **teacher_keys},
            "algo_kwargs": {"policy_kwargs": {"net_arch": [8]}, "n_steps": 128},
            "student": {"obs": {"drop": DROP, "stack": 2}},
        }
    )
    setups = check_config(cfg)
    agent = assemble(cfg, setups, fresh_learners(setups))
    assert isinstance(agent, TeacherStudent)
    agent.student.start(None)
    return agent


def labelled_on(monkeypatch, teacher) -> list:
    """Every batch of states ``teacher.policy_on`` is asked about, as it receives them."""
    received, original = [], teacher.policy_on

    def recording(states):
        received.append(np.array(states))
        return original(states)

    monkeypatch.setattr(teacher, "policy_on", recording)
    return received


def assert_views_of(views: np.ndarray, full: np.ndarray) -> None:
    """``views`` are the student's of the same consecutive steps as ``full``: their newest frame
    is the full observation less goal_x, their older one the step before's, or at an episode's
    start (a new goal) the newest again."""
    assert views.shape[1] == 2 * len(KEEP) and full.shape[1] == 4
    older, newest = views[:, : len(KEEP)], views[:, len(KEEP) :]
    np.testing.assert_allclose(newest, full[:, KEEP], rtol=1e-6)
    same_episode = np.all(full[1:, 2:] == full[:-1, 2:], axis=1)
    assert 0 < same_episode.sum() < len(same_episode)  # episodes of 40 steps: some starts among the rows
    np.testing.assert_allclose(older[1:], np.where(same_episode[:, None], newest[:-1], newest[1:]), rtol=1e-6)


@pytest.mark.parametrize("mode", ["dagger", "bc"])
def test_the_teacher_labels_the_full_observation_of_each_stored_view(teacher, mode, monkeypatch):
    agent = student_of(teacher, mode, total_steps=200, round_steps=200, dataset_steps=200, epochs=1.0)
    received = labelled_on(monkeypatch, agent.teacher)
    agent.train_iteration()
    buffer = agent.student.states
    rows = np.arange(len(buffer))
    assert len(buffer) == 200 and np.concatenate(received).shape == (200, 4)
    np.testing.assert_array_equal(np.concatenate(received), buffer.full_at(rows))  # labelled from the full ones
    assert_views_of(buffer.at(rows), buffer.full_at(rows))
    (stored,) = agent.labels.answers_at(rows)
    assert torch.allclose(stored.output.mean, agent.teacher.policy_on(buffer.full_at(rows)).mean)
    agent.close()


def test_ppd_labels_each_rollout_state_from_its_full_observation(teacher, monkeypatch):
    agent = student_of(teacher, "ppd", total_steps=256)
    received = labelled_on(monkeypatch, agent.teacher)
    recorder, rollouts = agent.student.recorder, []
    take = recorder.take
    monkeypatch.setattr(recorder, "take", lambda: rollouts.append(take()) or rollouts[-1])
    for _ in range(2):  # the second rollout starts where the first left off
        agent.train_iteration()
    for rollout, full in zip(rollouts, received):
        assert_views_of(flat_order(rollout.observations), full)
    agent.close()


def test_a_run_with_a_view_resumes_evaluates_and_exports(teacher, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "view"
    args = ["distill", "--teacher", str(teacher), "--env", TINY, "--student-net", "8", "--total-steps", "1024"]
    view = ["--set", f"student.obs.drop={DROP}", "--set", "student.obs.stack=2", "--set", "student.obs.noise=0.1"]
    settings = ["--set", "teacher.round_steps=256", "--set", "checkpoint_every=256", "--set", "eval.every=0"]
    restore = interrupt(monkeypatch, TeacherStudent, "train_iteration", after_calls=2)
    assert main([*args, *view, *settings, "--set", "eval.final_episodes=2", "--run-dir", str(run_dir), "--no-progress"]) == 130
    restore()
    manifest = resume(run_dir)
    assert manifest["progress"]["finished"] and manifest["config"]["student"]["obs"]["stack"] == 2
    student = run_dir / manifest["progress"]["checkpoint"] / "student"
    views, full = np.load(student / "states.npy"), np.load(student / "states.full.npy")
    assert views.shape == (1024, 6) and full.shape == (1024, 4)  # the data set came back and grew on
    assert np.abs(views[:, 3:] - full[:, KEEP]).max() < 1.0  # the same steps, 0.1 noise apart
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    assert "student" in capsys.readouterr().out
    message = expect_cli_error(["fidelity", str(teacher), str(run_dir), "--env", TINY], capsys)
    assert "sees a view of the observation (student.obs)" in message
    pytest.importorskip("onnxruntime")
    from dpd.agents.onnx_export import onnx_session

    assert main(["export", str(run_dir), "--onnx", str(tmp_path / "student.onnx"), "--states", "200"]) == 0
    assert onnx_session(tmp_path / "student.onnx").get_inputs()[0].shape[1] == 6  # the student's view
    assert "as the student saw them" in capsys.readouterr().out


def test_a_student_from_python_takes_its_view_as_a_config_section(teacher, tmp_path):
    from dpd import Student
    from dpd.config import build_config

    student = Student(teacher, TINY, run_dir=tmp_path / "py", student={"obs": {"drop": [0, 1], "delay": 1}})
    cfg = build_config({**student._layer, "total_steps": 1000}, student._settings)  # as learn() builds it
    assert cfg.student.obs == ObservationViewConfig(drop="0,1", delay=1)
