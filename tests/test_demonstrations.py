"""Behaviour cloning from recorded demonstrations: a Minari dataset written here with Minari's own
writer (``create_dataset_from_buffers``; its ``DataCollector`` needs jax, which dpd does not
install), cloned by ``dpd distill --teacher minari:ID --mode bc``."""

import gymnasium as gym
import numpy as np
import pytest

from dpd.cli import main
from tests.conftest import TINY, beats_random, expect_cli_error, read_manifest

minari = pytest.importorskip("minari")
from minari.data_collector import EpisodeBuffer  # noqa: E402

DATASET = "dpd/pointreach/expert-v0"
EPISODES = 50  # of 40 steps: 2000 recorded steps


def expert(obs: np.ndarray) -> np.ndarray:
    """The tiny env's optimal controller: full speed towards the goal (observations are scaled by 10)."""
    return np.clip(5.0 * (obs[2:] - obs[:2]) / 10.0, -1.0, 1.0).astype(np.float32)


def record(dataset_id: str, episodes: int) -> float:
    """``episodes`` of the expert on the tiny env, written to Minari's store; their mean return."""
    import dpd.envs  # noqa: F401  registers the tiny env

    env = gym.make(TINY)
    buffers, returns = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        observations, actions, rewards, done = [obs], [], [], False
        while not done:
            action = expert(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            done = terminated or truncated
        steps = len(actions)
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations=np.array(observations),
                actions=np.array(actions),
                rewards=rewards,
                terminations=[False] * steps,
                truncations=[False] * (steps - 1) + [True],
            )
        )
        returns.append(sum(rewards))
    with pytest.warns(UserWarning):  # Minari asks for an author's email and a description
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name="scripted expert")
    env.close()
    return float(np.mean(returns))


@pytest.fixture
def expert_return(tmp_path, monkeypatch) -> float:
    """A Minari store of its own holding the expert's dataset."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return record(DATASET, EPISODES)


def clone(run_dir, *extra: str, dataset: str = DATASET, env: str = TINY):
    args = ["distill", "--teacher", f"minari:{dataset}", "--env", env, "--mode", "bc", "--student-net", "16"]
    return [*args, "--total-steps", "2000", "--run-dir", str(run_dir), "--no-progress", "--set", "eval.every=0", *extra]


def test_bc_clones_a_minari_dataset(expert_return, tmp_path, random_return, capsys):
    run_dir = tmp_path / "clone"
    assert main(clone(run_dir)) == 0
    assert "policy parameters: student" in capsys.readouterr().out
    (result,) = read_manifest(run_dir)["progress"]["final_eval"]
    assert beats_random(result["mean_return"], random_return), result
    metrics = result["metrics"]
    assert metrics["fidelity/teacher_return"] == pytest.approx(expert_return)  # the recording's score
    assert metrics["fidelity/return_ratio"] == pytest.approx(result["mean_return"] / expert_return)
    assert metrics["fidelity/recorded_states/agreement"] > 0.5, metrics  # within 0.1 of the expert's action
    assert "fidelity/teacher_us_per_action" not in metrics and metrics["fidelity/student_us_per_action"] > 0


def test_the_data_set_is_the_recording_and_bc_never_steps_the_env(expert_return, monkeypatch):
    from dpd.agents.assembly import assemble, fresh_learners
    from dpd.agents.checks import check_config
    from dpd.config import build_config

    cfg = build_config(
        {
            "env": TINY,
            "peers": 1,
            "total_steps": 2000,
            "teacher": {"path": f"minari:{DATASET}", "mode": "bc", "dataset_steps": 1500},
            "algo_kwargs": {"policy_kwargs": {"net_arch": [8]}},
        }
    )
    setups = check_config(cfg)
    assert setups[0].distill.loss == "mse"  # actions alone: no distribution to match
    agent = assemble(cfg, setups, fresh_learners(setups))
    student = agent.student
    student.start(None)
    monkeypatch.setattr(student.env, "step", lambda *args: pytest.fail("bc stepped the env"))
    agent.train()
    assert agent.done and student.num_timesteps == 1500 and len(student.states) == 1500
    recorded = minari.load_dataset(DATASET)
    observations = np.concatenate([episode.observations[:-1] for episode in recorded.iterate_episodes()])
    actions = np.concatenate([episode.actions for episode in recorded.iterate_episodes()])
    rows = np.arange(1500)
    np.testing.assert_array_equal(student.states.at(rows), observations[:1500])
    (answer,) = agent.labels.answers_at(rows)
    np.testing.assert_array_equal(answer.output.env_action.numpy(), actions[:1500])
    agent.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (clone("RUN", dataset="dpd/nothing-v0"), "no Minari dataset 'dpd/nothing-v0' in the local store"),
        (clone("RUN", "--set", "teacher.dataset_steps=5000"), "holds 2000 steps; teacher.dataset_steps asks for 5000"),
        ([*clone("RUN")[:6], "dagger", *clone("RUN")[7:]], "has no teacher to ask: it is cloned by mode bc alone"),
        (clone("RUN", env="Pendulum-v1"), "has observation space Box"),
    ],
)
def test_bad_datasets_end_in_one_line_and_nothing_written(expert_return, tmp_path, capsys, args, message):
    run_dir = tmp_path / "never"
    args = [str(run_dir) if arg == "RUN" else arg for arg in args]
    assert message in expect_cli_error(args, capsys)
    assert not run_dir.exists()
